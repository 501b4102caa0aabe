//! The room in cluster mode: its replica of the users of other nodes, and what it waits for
//! from the shared log ([`crate::cluster`]).

use std::collections::{BTreeMap, BTreeSet};

use super::Room;
use super::conn::{ConnId, Wire};
use super::output::{LogRecord, Output};
use super::reason::LeaveReason;
use crate::cluster::{Logged, Member, Publish, Refusal};
use crate::error_code::ErrorCode;
use crate::event::{Action, Event};
use crate::name::{look_key, name_key};
use crate::time::Timestamp;

/// What a room in cluster mode holds beside its own connections.
#[derive(Debug)]
pub(super) struct Cluster {
    /// This node's name in the log.
    pub(super) node: String,
    /// Users the log says are in the room but who are not joined here: those of other nodes,
    /// and this node's users who have gone while their leave is not yet logged. By name key.
    pub(super) remote: BTreeMap<String, Member>,
    /// The look keys of `remote`, to their name keys.
    pub(super) remote_looks: BTreeMap<String, String>,
    /// This node's number for its next public message.
    pub(super) next_origin: u64,
    /// The public messages published and not yet read back: origin to sender.
    pub(super) says: BTreeMap<u64, ConnId>,
    /// Out of contact with the log (from the start until the first snapshot, and from a
    /// `handle_link_down` to the next snapshot): the room runs as alone, for this node's users.
    pub(super) down: bool,
    /// Whether this node's users were told contact was lost, so are told when it is back.
    pub(super) told_down: bool,
    /// Users of other nodes that a log begun afresh does not hold (yet): listed until their
    /// node claims them again, or until the deadline, when they leave. By name key.
    pub(super) doubtful: BTreeMap<String, Timestamp>,
    /// The operators among `remote`, by name key.
    pub(super) remote_ops: BTreeSet<String>,
    /// The other nodes whose users this node has seen: a user of one not seen before means a
    /// node that may not know this node's operators (the log keeps none), so they are told
    /// again.
    pub(super) nodes_seen: BTreeSet<String>,
    /// Those of `remote` whose kick or ban this node's users were told (`*** NAME was kicked
    /// by OP ***`), by name key, with which: gone for this node's users, their leave is not
    /// told again when the log has it.
    pub(super) put_out: BTreeMap<String, Action>,
}

impl Cluster {
    /// A node named `node`, knowing nobody else yet.
    pub(super) fn new(node: String) -> Self {
        Cluster {
            node,
            remote: BTreeMap::new(),
            remote_looks: BTreeMap::new(),
            next_origin: 1,
            says: BTreeMap::new(),
            down: true,
            told_down: false,
            doubtful: BTreeMap::new(),
            remote_ops: BTreeSet::new(),
            nodes_seen: BTreeSet::new(),
            put_out: BTreeMap::new(),
        }
    }

    /// Counts `member` among the room's users held elsewhere.
    pub(super) fn insert(&mut self, look: String, member: Member) {
        self.remote_looks.insert(look, member.key.clone());
        self.remote.insert(member.key.clone(), member);
    }

    /// Forgets the user held elsewhere under `key`, if any.
    pub(super) fn remove(&mut self, key: &str, look: &str) -> Option<Member> {
        let member = self.remote.remove(key)?;
        self.remote_ops.remove(key);
        self.put_out.remove(key);
        if self.remote_looks.get(look).is_some_and(|k| k == key) {
            self.remote_looks.remove(look);
        }
        Some(member)
    }

    /// The name of the user held elsewhere whose look key is `look`.
    pub(super) fn looks_like(&self, look: &str) -> Option<&str> {
        let key = self.remote_looks.get(look)?;
        self.remote.get(key).map(|m| m.name.as_str())
    }
}

impl Room {
    /// Cluster mode: the shared log recorded `entry`; every node applies the same entries in
    /// the same order. A room alone ignores it.
    pub fn handle_logged(&mut self, now: Timestamp, entry: Logged) {
        self.advance(now);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        match entry {
            Logged::Moderated(moderation) => self.apply_moderation(moderation),
            Logged::Message {
                seq,
                from,
                text,
                node,
                origin,
            } => {
                let sender = (node == cluster.node)
                    .then(|| cluster.says.remove(&origin))
                    .flatten();
                let message = self.history.apply(seq, from, text);
                self.outputs
                    .push_back(Output::Log(LogRecord::Message(message.clone())));
                // As alone: the line wire gets no echo, the JSON wire its message back.
                self.broadcast(&Event::Message(message), |id, c| {
                    Some(id) != sender || c.wire == Wire::Json
                });
            }
            Logged::Joined {
                key,
                name,
                node,
                conn,
            } => {
                let look = look_key(&name);
                let mine = node == cluster.node;
                if !mine && cluster.nodes_seen.insert(node.clone()) {
                    self.announce_operators();
                }
                let waiting = mine
                    && self.conns.get(&conn).is_some_and(|c| {
                        c.name.is_none()
                            && c.claim.as_ref().is_some_and(|(n, _)| name_key(n) == key)
                    });
                // Banned while its claim was on its way: turned away, and released from the
                // log, which holds it now (the other nodes tell its join and leave; nobody
                // here is told either).
                if waiting && self.turned_away_if_banned(conn, &name) {
                    let release = Publish::Release {
                        conn,
                        key,
                        name,
                        reason: LeaveReason::Banned,
                    };
                    return self.outputs.push_back(Output::Publish(release));
                }
                if waiting {
                    let resume = self
                        .conns
                        .get_mut(&conn)
                        .and_then(|c| c.claim.take())
                        .and_then(|(_, resume)| resume);
                    return self.admit(conn, name, key, look, resume);
                }
                let Some(cluster) = &mut self.cluster else {
                    return;
                };
                if cluster.doubtful.remove(&key).is_some() {
                    let same = |m: &Member| m.node == node && m.conn == conn && m.name == name;
                    if cluster.remote.get(&key).is_some_and(same) {
                        // Listed all along, claimed again by its node in the new log: as it
                        // was, nothing to announce; unless this node's users were told it was
                        // put out (the new log lost that, and its node kept it): it is back.
                        let shown = cluster.put_out.contains_key(&key);
                        cluster.remove(&key, &look);
                        let member = Member {
                            key,
                            name: name.clone(),
                            node,
                            conn,
                        };
                        cluster.insert(look, member);
                        if shown {
                            self.back(name);
                        }
                        return;
                    }
                    // Someone else has the name in the new log: the one listed left.
                    let old = cluster.remote.get(&key).map(|m| m.name.clone());
                    if let Some(old) = old {
                        let gathered = self.gathers(self.count());
                        let mut shown = false;
                        if let Some(cluster) = &mut self.cluster {
                            // Its kick or ban was told here already.
                            shown = cluster.put_out.contains_key(&key);
                            cluster.remove(&key, &look_key(&old));
                        }
                        if !shown {
                            self.announce(gathered, Some(old.clone()), None);
                        }
                        self.outputs.push_back(Output::Log(LogRecord::Leave {
                            name: old,
                            reason: LeaveReason::Lost,
                        }));
                    }
                }
                match self.names.get(&key) {
                    // Its own, claimed again: already in.
                    Some(&holder) if mine && holder == conn => return,
                    // The log gives the name to someone else: the one here had it only while
                    // out of contact, and its claim is on the way to be refused.
                    Some(&holder) => self.bounce(holder),
                    None => {}
                }
                let Some(cluster) = &mut self.cluster else {
                    return;
                };
                match cluster.remote.get(&key) {
                    // Already in: a repeated entry changes nothing.
                    Some(m) if m.node == node && m.conn == conn => return,
                    // One of this node's users gone meanwhile, its claim refused or on its
                    // way: the log holds someone else under that name.
                    Some(_) => self.gone_unclaimed(&key, None),
                    None => {}
                }
                // Counted with the join, as a local one is (`admit`).
                let gathered = self.gathers(self.count() + 1);
                let Some(cluster) = &mut self.cluster else {
                    return;
                };
                let member = Member {
                    key: key.clone(),
                    name: name.clone(),
                    node,
                    conn,
                };
                cluster.insert(look, member);
                if mine {
                    // Its connection went while the claim was on its way: it joined and
                    // leaves, here as everywhere.
                    let release = Publish::Release {
                        conn,
                        key,
                        name: name.clone(),
                        reason: LeaveReason::Dropped,
                    };
                    self.outputs.push_back(Output::Publish(release));
                }
                self.announce(gathered, None, Some(name.clone()));
                self.outputs
                    .push_back(Output::Log(LogRecord::Join { name, peer: None }));
            }
            Logged::Left { key, name, reason } => {
                cluster.doubtful.remove(&key);
                if !cluster.remote.contains_key(&key) {
                    return; // Nobody of that name was in.
                }
                // A kick or ban told here by its own line is not told again as a leave; one
                // this node did not tell (it took a snapshot meanwhile, or the user joined
                // after the ban's entry and was turned away by its node) is.
                let shown = cluster.put_out.contains_key(&key);
                // Counted before the leave, as a local one is (`remove`).
                let gathered = self.gathers(self.count());
                if let Some(cluster) = &mut self.cluster {
                    cluster.remove(&key, &look_key(&name));
                }
                if !shown {
                    self.announce(gathered, Some(name.clone()), None);
                }
                self.outputs
                    .push_back(Output::Log(LogRecord::Leave { name, reason }));
            }
        }
    }

    /// Cluster mode: the log refused `publish`, or it could not be sent.
    pub fn handle_refused(&mut self, now: Timestamp, publish: Publish, refusal: Refusal) {
        self.advance(now);
        match publish {
            Publish::Claim {
                conn, key, name, ..
            } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    // Claimed again when contact came back and gone since: the log never had
                    // it, and no leave will come back.
                    return self.gone_unclaimed(&key, Some(conn));
                };
                if c.name.is_some() {
                    // A user of this node claimed again after contact came back: a name the
                    // log gives to someone else sends it back to the prompt; otherwise it stays
                    // here and is claimed again at the next snapshot.
                    if matches!(refusal, Refusal::Taken | Refusal::LooksLike(_)) {
                        self.bounce(conn);
                    }
                    return;
                }
                if c.claim.take().is_none() {
                    return;
                }
                match refusal {
                    Refusal::Taken => {
                        self.refuse(conn, ErrorCode::NameTaken, super::taken(&name));
                    }
                    Refusal::LooksLike(other) => {
                        let message = super::looks_like(&name, &other);
                        self.refuse(conn, ErrorCode::NameConfusable, message);
                    }
                    Refusal::NotMember | Refusal::Muted | Refusal::Busy => {
                        self.send(conn, &super::busy());
                        self.send(conn, &Event::Prompt);
                    }
                }
            }
            Publish::Say { conn, origin, .. } => {
                if let Some(cluster) = &mut self.cluster {
                    cluster.says.remove(&origin);
                }
                if refusal == Refusal::Muted {
                    // Muted while the line was on its way: it reaches nobody, as after.
                    self.send(conn, &super::muted());
                } else {
                    self.send(conn, &super::busy());
                }
            }
            Publish::Tell { from_conn, .. } => self.send(from_conn, &super::busy()),
            Publish::Moderate { conn, .. } => {
                if let Some(conn) = conn {
                    self.send(conn, &super::busy());
                }
            }
            // A leave is never refused for want of room; a member gone already is gone.
            Publish::Release { .. } => {}
        }
    }

    /// The user of this node held under `key` among those still counted while their leave is
    /// on its way (of connection `conn`, if given), whom the log does not hold: it leaves now.
    fn gone_unclaimed(&mut self, key: &str, conn: Option<ConnId>) {
        let leaving = self.cluster.as_ref().and_then(|c| {
            c.remote
                .get(key)
                .filter(|m| m.node == c.node && conn.is_none_or(|conn| m.conn == conn))
                .map(|m| m.name.clone())
        });
        let Some(name) = leaving else {
            return;
        };
        let gathered = self.gathers(self.count());
        if let Some(cluster) = &mut self.cluster {
            cluster.remove(key, &look_key(&name));
        }
        self.announce(gathered, Some(name.clone()), None);
        self.outputs.push_back(Output::Log(LogRecord::Leave {
            name,
            reason: LeaveReason::Dropped,
        }));
    }

    /// Cluster mode: a private message relayed from another node, for the user `to_key` of
    /// this one. Whether that user is here to get it.
    pub fn handle_told(
        &mut self,
        now: Timestamp,
        to_key: &str,
        from: String,
        text: String,
    ) -> bool {
        self.advance(now);
        let Some(&conn) = self.names.get(to_key) else {
            return false;
        };
        self.stats.private_messages += 1;
        self.send(conn, &Event::Private { from, text });
        true
    }

    /// Cluster mode: a private message of `from_conn` to `to` on another node was `heard`, or
    /// nobody was there to hear it.
    pub fn handle_tell_result(
        &mut self,
        now: Timestamp,
        from_conn: ConnId,
        to: String,
        text: String,
        heard: bool,
    ) {
        self.advance(now);
        if heard {
            self.send(from_conn, &Event::PrivateSent { to, text });
        } else {
            let message = format!("No user named '{to}'.");
            self.send(from_conn, &Event::error(ErrorCode::NoSuchUser, message));
        }
    }

    /// Cluster mode: how many users of other nodes are listed in doubt, after the log began
    /// afresh without them, until their nodes claim them again or the grace
    /// (`Config::cluster_grace`) runs out.
    pub fn in_doubt(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.doubtful.len())
    }

    /// When the first user listed in doubt leaves, if none is claimed again by then.
    pub(super) fn doubt_due(&self) -> Option<Timestamp> {
        self.cluster.as_ref()?.doubtful.values().min().copied()
    }

    /// The users in doubt whose deadline has passed leave.
    pub(super) fn expire_doubts(&mut self) {
        let now = self.now;
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let due: Vec<String> = cluster
            .doubtful
            .iter()
            .filter(|&(_, &at)| at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let gathered = self.gathers(self.count());
            let Some(cluster) = &mut self.cluster else {
                return;
            };
            cluster.doubtful.remove(&key);
            let Some(name) = cluster.remote.get(&key).map(|m| m.name.clone()) else {
                continue;
            };
            // Its kick or ban was told here already.
            let shown = cluster.put_out.contains_key(&key);
            cluster.remove(&key, &look_key(&name));
            if !shown {
                self.announce(gathered, Some(name.clone()), None);
            }
            self.outputs.push_back(Output::Log(LogRecord::Leave {
                name,
                reason: LeaveReason::Lost,
            }));
        }
    }

    /// A user of another node whose kick or ban this node's users were told is in the room
    /// after all (its node never applied it, and the log lost it): told as joined again.
    pub(super) fn back(&mut self, name: String) {
        let gathered = self.gathers(self.count());
        self.announce(gathered, None, Some(name.clone()));
        self.outputs
            .push_back(Output::Log(LogRecord::Join { name, peer: None }));
    }

    /// A join (`after`) or leave (`before`) of a user not connected here, told to everyone
    /// here at once, or `gathered` into the digest as the room's size says (`gathers`).
    pub(super) fn announce(
        &mut self,
        gathered: bool,
        before: Option<String>,
        after: Option<String>,
    ) {
        if gathered {
            let due = self.digest_due();
            self.digest.elsewhere(due, before, after);
        } else if let Some(name) = after {
            self.broadcast(&Event::Joined { name }, |_, _| true);
        } else if let Some(name) = before {
            self.broadcast(&Event::Left { name }, |_, _| true);
        }
    }
}
