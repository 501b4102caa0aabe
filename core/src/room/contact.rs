//! Cluster mode's contact with the shared log: losing it (the room goes on as alone, for this
//! node's users) and regaining it from a snapshot (the room is one again).

use std::collections::BTreeSet;

use super::Room;
use super::output::{LogRecord, Output};
use super::reason::LeaveReason;
use crate::cluster::{Member, Publish, Snapshot};
use crate::command::Resume;
use crate::error_code::ErrorCode;
use crate::event::Event;
use crate::name::{look_key, name_key};
use crate::room::conn::ConnId;
use crate::time::Timestamp;

impl Room {
    /// Cluster mode: this node lost contact with the shared log. Until the next
    /// [`handle_snapshot`](Room::handle_snapshot) the room runs as alone for this node's users:
    /// they are told once; messages reach only them ([`Event::LocalMessage`], outside the
    /// order); names are given out if free here and in what the room last knew of the others
    /// (they are claimed in the log when contact is back); leaves are made here at once. Joins
    /// that were waiting for the log are decided here now. Nobody of the other nodes is
    /// announced as leaving: the room does not know that they left.
    ///
    /// Also right after start, when the driver gives up waiting for the log: the room is out
    /// of contact from the start, and this only records that its users are to be told.
    pub fn handle_link_down(&mut self, now: Timestamp) {
        self.advance(now);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let was_down = cluster.down;
        cluster.down = true;
        cluster.told_down = true;
        if was_down {
            return;
        }
        self.broadcast(&Event::Degraded, |_, _| true);
        let waiting: Vec<(ConnId, String, Option<Resume>)> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.name.is_none())
            .filter_map(|(&id, c)| c.claim.take().map(|(name, resume)| (id, name, resume)))
            .collect();
        for (conn, name, resume) in waiting {
            self.join_here(conn, name, resume);
        }
    }

    /// A join that was waiting for the log when contact was lost, decided as alone would.
    fn join_here(&mut self, conn: ConnId, name: String, resume: Option<Resume>) {
        // Banned while its claim was on its way: turned away, as at the prompt.
        if self.turned_away_if_banned(conn, &name) {
            return;
        }
        let (key, look) = (name_key(&name), look_key(&name));
        if let Some((code, message)) = self.name_refusal(&name, &key, &look) {
            return self.refuse(conn, code, message);
        }
        self.admit(conn, name, key, look, resume);
    }

    /// Cluster mode: the room as the log holds it, when this node (re)gains contact: at start
    /// and after a loss. Afterwards the room applies what is logged after the snapshot.
    ///
    /// - Users told that contact was lost are told it is back.
    /// - A new epoch (the log began afresh or lost its tail) restarts the numbering from the
    ///   snapshot's; in the same epoch, the messages this node missed are delivered now, in
    ///   order (those beyond what the snapshot holds are lost to it; a JSON client's resume
    ///   says so with `gap`).
    /// - The other nodes' users are now those of the snapshot: who is new is announced as
    ///   joined, who is gone as left.
    /// - A user of this node whose name the log gives to someone else goes back to the prompt
    ///   with the taken sentence; the log's holder keeps it.
    /// - This node's users the log does not hold (they joined while out of contact, or this
    ///   node's lease ran out) are claimed again; this node's members the log holds but who
    ///   are no longer here are released. The log holds a user only on its own connection and
    ///   under its own spelling: a name it holds for a connection gone (or for this one, spelled
    ///   otherwise) is released, then claimed for the one here.
    pub fn handle_snapshot(&mut self, now: Timestamp, snapshot: Snapshot) {
        self.advance(now);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let node = cluster.node.clone();
        let told_down = std::mem::take(&mut cluster.told_down);
        let Snapshot {
            epoch,
            seq,
            members,
            recent,
            sanctions,
        } = snapshot;
        let now_ms = self.wall_ms();
        self.sanctions.replace(sanctions, now_ms);
        // Also when the epoch changed under a room that never lost contact (the log was
        // emptied): its users must learn the new numbering.
        if told_down || epoch != self.config.epoch {
            self.broadcast(&Event::Restored { epoch }, |_, _| true);
        }
        // Banned while this node was apart: put out, and released below if the log holds them.
        let banned = self.put_out_banned();
        if let Some(cluster) = &mut self.cluster {
            cluster.down = false;
        }
        self.announce_operators();
        let epoch_changed = epoch != self.config.epoch;
        if !epoch_changed {
            let next = self.history.next_seq();
            for m in recent.into_iter().filter(|m| m.seq >= next) {
                let message = self.history.apply(m.seq, m.from, m.text);
                self.outputs
                    .push_back(Output::Log(LogRecord::Message(message.clone())));
                self.broadcast(&Event::Message(message), |_, _| true);
            }
        } else {
            self.config.epoch = epoch;
            self.history.renumber(0);
            self.history.restore(recent);
        }
        self.history.skip_to(seq);

        let mut held = BTreeSet::new();
        // This node's users the log holds as they are here: same connection, same name.
        let mut kept = BTreeSet::new();
        for member in members {
            held.insert(member.key.clone());
            if member.node == node {
                let key = member.key.clone();
                let reason = if banned.contains(&key) {
                    LeaveReason::Banned
                } else {
                    LeaveReason::Dropped
                };
                if self.mine_in_log(member, reason) {
                    kept.insert(key);
                }
            } else {
                self.theirs_in_log(member);
            }
        }
        let afresh = epoch_changed;
        // The other nodes' users the log no longer holds have left; when the log began
        // afresh, they are listed a while more for their nodes to claim them again.
        let gone: Vec<Member> = self
            .cluster
            .as_ref()
            .map(|c| {
                c.remote
                    .values()
                    .filter(|m| !held.contains(&m.key))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for member in gone {
            if afresh {
                let due = self.now + self.config.cluster_grace;
                if let Some(cluster) = &mut self.cluster {
                    cluster.doubtful.insert(member.key, due);
                }
                continue;
            }
            let gathered = self.gathers(self.count());
            let mut shown = false;
            if let Some(cluster) = &mut self.cluster {
                // Its kick or ban was told here already.
                shown = cluster.put_out.contains_key(&member.key);
                cluster.remove(&member.key, &look_key(&member.name));
            }
            if !shown {
                self.announce(gathered, Some(member.name.clone()), None);
            }
            self.outputs.push_back(Output::Log(LogRecord::Leave {
                name: member.name,
                reason: LeaveReason::Lost,
            }));
        }
        // This node's users the log does not hold (it may hold their name for a connection
        // gone, released above): claimed again, after that release.
        let unclaimed: Vec<(ConnId, String)> = self
            .names
            .iter()
            .filter(|(key, _)| !kept.contains(*key))
            .filter_map(|(_, &id)| Some((id, self.name_of(id)?.to_owned())))
            .collect();
        for (conn, name) in unclaimed {
            let claim = Publish::Claim {
                conn,
                key: name_key(&name),
                look: look_key(&name),
                name,
            };
            self.outputs.push_back(Output::Publish(claim));
        }
    }

    /// A member of this node in the snapshot: still here (true), or gone, with its leave on
    /// the way or while out of contact (its leave already shown here): released now. A
    /// connection here under another spelling of the name (its claim was carried out though
    /// it was told otherwise, and it joined again out of contact) is not the member: released,
    /// and claimed again.
    fn mine_in_log(&mut self, member: Member, reason: LeaveReason) -> bool {
        let here = self
            .conns
            .get(&member.conn)
            .and_then(|c| c.name.as_deref())
            .is_some_and(|n| n == member.name);
        if here {
            return true;
        }
        // Gone with its leave on the way, it is still counted here (`remote`) until the leave
        // is logged. Gone while out of contact, it is not, and its leave is not shown again;
        // whoever else this node still counts under that name (someone who left meanwhile)
        // goes when that leave is logged.
        let release = Publish::Release {
            conn: member.conn,
            key: member.key,
            name: member.name,
            reason,
        };
        self.outputs.push_back(Output::Publish(release));
        false
    }

    /// A member of another node in the snapshot: the name is its holder's; a user here who
    /// was given it (or a look-alike) while out of contact goes back to the prompt.
    fn theirs_in_log(&mut self, member: Member) {
        if let Some(cluster) = &mut self.cluster {
            cluster.doubtful.remove(&member.key);
            // Told of this node's operators just now, with the snapshot.
            cluster.nodes_seen.insert(member.node.clone());
        }
        let look = look_key(&member.name);
        let clash = [self.names.get(&member.key), self.looks.get(&look)]
            .into_iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<ConnId>>();
        for conn in clash {
            self.bounce(conn);
        }
        let known = self
            .cluster
            .as_ref()
            .and_then(|c| c.remote.get(&member.key))
            .cloned();
        let shown = self
            .cluster
            .as_ref()
            .is_some_and(|c| c.put_out.contains_key(&member.key));
        if shown {
            // This node's users were told it was kicked or banned. Still banned, and the same:
            // its node puts it out when it applies the ban. Otherwise (the ban was lifted or
            // lost with a log begun afresh, or it is in again) it is back.
            let now_ms = self.wall_ms();
            let banned = self.sanctions.ban_on_name(&member.name, now_ms).is_some();
            if banned && known.as_ref() == Some(&member) {
                return;
            }
            let name = member.name.clone();
            if let Some(cluster) = &mut self.cluster {
                cluster.remove(&member.key, &look);
                cluster.insert(look, member);
            }
            return self.back(name);
        }
        match known {
            Some(known) if known == member => {}
            Some(known) => {
                // The same name, now on another connection or node: nothing to announce,
                // unless it is spelled otherwise (the one this node knew left and someone
                // took the name meanwhile): then one left and the other joined.
                let name = member.name.clone();
                if let Some(cluster) = &mut self.cluster {
                    cluster.remove(&member.key, &look);
                    cluster.insert(look, member);
                }
                if known.name != name {
                    let gathered = self.gathers(self.count());
                    self.announce(gathered, Some(known.name.clone()), None);
                    self.outputs.push_back(Output::Log(LogRecord::Leave {
                        name: known.name,
                        reason: LeaveReason::Lost,
                    }));
                    let gathered = self.gathers(self.count());
                    self.announce(gathered, None, Some(name.clone()));
                    self.outputs
                        .push_back(Output::Log(LogRecord::Join { name, peer: None }));
                }
            }
            None => {
                let gathered = self.gathers(self.count() + 1);
                let name = member.name.clone();
                if let Some(cluster) = &mut self.cluster {
                    cluster.insert(look, member);
                }
                self.announce(gathered, None, Some(name.clone()));
                self.outputs
                    .push_back(Output::Log(LogRecord::Join { name, peer: None }));
            }
        }
    }

    /// `conn` holds a name the log gives to a user of another node: it leaves (shown here, as
    /// the log never had it) and goes back to the prompt with the taken sentence.
    pub(super) fn bounce(&mut self, conn: ConnId) {
        let Some(name) = self.name_of(conn).map(str::to_owned) else {
            return;
        };
        let gathered = self.gathers(self.count());
        self.names.remove(&name_key(&name));
        self.looks.remove(&look_key(&name));
        let now = self.now;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.name = None;
            c.claim = None;
            // The name prompt's clock starts again.
            c.opened = now;
        }
        self.digest.seen(conn);
        if gathered {
            let due = self.digest_due();
            self.digest.elsewhere(due, Some(name.clone()), None);
        } else {
            self.broadcast(&Event::Left { name: name.clone() }, |_, _| true);
        }
        self.outputs.push_back(Output::Log(LogRecord::Leave {
            name: name.clone(),
            reason: LeaveReason::Lost,
        }));
        self.refuse(conn, ErrorCode::NameTaken, super::taken(&name));
        self.schedule(conn);
    }
}
