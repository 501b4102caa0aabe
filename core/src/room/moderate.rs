//! Operators and moderation in the room: `/op` and the operators' commands, bans at the door
//! and the prompt, mutes, and the bans' ends. The admin API's requests (`admin.rs`) are
//! resolved and enacted here too.
//!
//! An operator's request is resolved here into a [`Moderation`] (whom it names, as the room
//! spells them, and until when), then enacted: at once in a room alone (and while a cluster
//! node is out of contact), through the shared log in cluster mode, so that every node applies
//! it in the log's order (`apply_moderation`).

use std::collections::BTreeSet;

use super::Room;
use super::conn::{ConnId, Wire};
use super::output::{LogRecord, Output};
use super::reason::{CloseReason, LeaveReason};
use crate::admission::AddrKey;
use crate::cluster::Publish;
use crate::command::{ParseError, Request};
use crate::error_code::ErrorCode;
use crate::event::{Action, BanEntry, Change, Event};
use crate::moderation::{
    DEFAULT_MINUTES, MAX_MINUTES, Moderation, Sanction, SanctionKind, TryKey, ban_address,
    token_matches,
};
use crate::name::{look_key, name_key, validate_name};
use crate::text::{clean_message, clean_text};
use crate::time::Timestamp;

/// A request refused: its code and sentence.
pub(super) type Refused = (ErrorCode, String);

impl Room {
    /// Whether anyone can be an operator (`Config::op_token`).
    pub(super) fn operators_enabled(&self) -> bool {
        self.config.op_token.is_some()
    }

    /// Now as Unix milliseconds.
    pub(super) fn wall_ms(&self) -> u64 {
        let since = u64::try_from(self.now.as_duration().as_millis()).unwrap_or(u64::MAX);
        self.config.wall_clock.saturating_add(since)
    }

    /// Seeds the bans and mutes with those of an earlier run (as the driver stored them from
    /// [`Output::Sanctions`]); those already over are dropped. Meant for a room alone at start.
    ///
    /// What no operator could have made is dropped: a name that is no name, an address that is
    /// not an IPv4 address or an IPv6 /64 as a ban writes it. An end further off than the
    /// longest ban is brought back to it.
    pub fn restore_sanctions(&mut self, all: impl IntoIterator<Item = Sanction>) {
        let now = self.wall_ms();
        let latest = now.saturating_add(MAX_MINUTES.saturating_mul(60_000));
        let all = all.into_iter().filter_map(|s| {
            let name = validate_name(&s.name).ok()?;
            if s.address.as_deref().is_some_and(|a| !ban_address_form(a)) {
                return None;
            }
            Some(Sanction {
                name,
                reason: s.reason.map(clean_message).filter(|r| !r.is_empty()),
                until: s.until.min(latest),
                ..s
            })
        });
        self.sanctions.replace(all, now);
    }

    /// The bans and mutes in force now.
    pub fn sanctions(&self) -> Vec<Sanction> {
        self.sanctions.in_force(self.wall_ms()).cloned().collect()
    }

    /// When the next ban or mute ends, as the room's time.
    pub(super) fn sanction_due(&self) -> Option<Timestamp> {
        let end = self.sanctions.next_end()?;
        let after = end.saturating_sub(self.config.wall_clock);
        Some(Timestamp::from_millis(after))
    }

    /// Drops the bans and mutes that are over; a room alone asks for them to be stored again.
    /// Cluster mode: a user of another node told banned here whom its node never put out (by
    /// its clock the ban was over, or it came back in contact after the end) is back.
    pub(super) fn expire_sanctions(&mut self) {
        let now = self.wall_ms();
        if !self.sanctions.expire(now) {
            return;
        }
        self.store_sanctions();
        self.relist_unbanned();
    }

    /// Cluster mode: the users of other nodes told banned here whose ban no longer holds, and
    /// whom their nodes did not put out, are back.
    fn relist_unbanned(&mut self) {
        let now = self.wall_ms();
        let Some(cluster) = &self.cluster else {
            return;
        };
        let back: Vec<(String, String)> = cluster
            .put_out
            .iter()
            .filter(|&(_, &action)| action == Action::Ban)
            .filter_map(|(key, _)| {
                let m = cluster.remote.get(key).filter(|m| m.node != cluster.node)?;
                Some((key.clone(), m.name.clone()))
            })
            .filter(|(_, name)| self.sanctions.ban_on_name(name, now).is_none())
            .collect();
        for (key, name) in back {
            if let Some(cluster) = &mut self.cluster {
                cluster.put_out.remove(&key);
            }
            self.back(name);
        }
    }

    fn store_sanctions(&mut self) {
        if self.cluster.is_none() {
            self.outputs
                .push_back(Output::Sanctions(self.sanctions.all()));
        }
    }

    /// The ban holding `conn` out, by its address (or, given, by `name`), if any.
    pub(super) fn ban_on(&self, conn: ConnId, name: Option<&str>) -> Option<&Sanction> {
        let now = self.wall_ms();
        let peer = self.conns.get(&conn).and_then(|c| c.peer);
        name.and_then(|name| self.sanctions.ban_on_name(name, now))
            .or_else(|| self.sanctions.ban_on_address(peer, now))
    }

    /// Turns `conn`, at the prompt, away if a ban holds its address or the `name` it asks
    /// for: told for how long, then closed. Whether it was.
    pub(super) fn turned_away_if_banned(&mut self, conn: ConnId, name: &str) -> bool {
        let now_ms = self.wall_ms();
        let Some(minutes) = self
            .ban_on(conn, Some(name))
            .map(|b| b.minutes_left(now_ms))
        else {
            return false;
        };
        let wire = self.conns.get(&conn).map_or(Wire::Line, |c| c.wire);
        self.send_to_wire(conn, wire, &Event::Banned { minutes });
        self.outputs.push_back(Output::Close {
            conn,
            reason: CloseReason::Banned,
        });
        // Never joined: nobody is told, nothing is logged.
        self.remove(conn, LeaveReason::Banned);
        true
    }

    /// Whether `conn` may say something in public; a muted user is told not.
    pub(super) fn unmuted(&mut self, conn: ConnId, name: &str) -> bool {
        if self.sanctions.mute_on(name, self.wall_ms()).is_none() {
            return true;
        }
        self.send(conn, &super::muted());
        false
    }

    /// Whether `key` names an operator, here or (cluster mode) on another node.
    pub(super) fn is_operator(&self, key: &str) -> bool {
        let here = self
            .names
            .get(key)
            .and_then(|id| self.conns.get(id))
            .is_some_and(|c| c.operator);
        here || self
            .cluster
            .as_ref()
            .is_some_and(|c| c.remote_ops.contains(key))
    }

    /// The operators among `online`, for `/who`.
    pub(super) fn operators_among(&self, online: &[String]) -> Vec<String> {
        online
            .iter()
            .filter(|name| self.is_operator(&name_key(name)))
            .cloned()
            .collect()
    }

    /// A parse error of a joined user's line: an operator's command where nobody can be one
    /// is unknown.
    pub(super) fn parse_refusal(&self, err: ParseError) -> Event {
        let err = match err.operator_word() {
            Some(word) if !self.operators_enabled() => {
                ParseError::UnknownCommand(format!("/{word}"))
            }
            _ => err,
        };
        super::parse_error_event(err)
    }

    /// An operator's request (or `/op`) from `conn`, joined as `name`.
    pub(super) fn operator_request(&mut self, conn: ConnId, name: String, request: Request) {
        let Some(word) = request.operator_word() else {
            return;
        };
        if !self.operators_enabled() {
            let err = ParseError::UnknownCommand(format!("/{word}"));
            return self.send(conn, &super::parse_error_event(err));
        }
        if let Request::Op { token } = request {
            return self.try_op(conn, name, &token);
        }
        if !self.conns.get(&conn).is_some_and(|c| c.operator) {
            let refusal = Event::error(ErrorCode::NotOperator, "You are not an operator.");
            return self.send(conn, &refusal);
        }
        let resolved = match request {
            Request::Kick {
                name: target,
                reason,
            } => self.resolve_kick(&target, name, reason),
            Request::Ban {
                name: target,
                minutes,
                reason,
            } => self.resolve_sanction(SanctionKind::Ban, &target, minutes, name, reason),
            Request::Mute {
                name: target,
                minutes,
            } => self.resolve_sanction(SanctionKind::Mute, &target, minutes, name, None),
            Request::Unban { name: target } => self.resolve_lift(SanctionKind::Ban, &target, name),
            Request::Unmute { name: target } => {
                self.resolve_lift(SanctionKind::Mute, &target, name)
            }
            _ => {
                let bans = self.ban_entries();
                return self.send(conn, &Event::Bans { bans });
            }
        };
        match resolved {
            Ok((moderation, confirm)) => {
                self.enact(Some(conn), moderation);
                if let Some(confirm) = confirm {
                    self.send(conn, &confirm);
                }
            }
            Err((code, message)) => self.send(conn, &Event::error(code, message)),
        }
    }

    /// `/op TOKEN` from `conn`: counted against its address first.
    fn try_op(&mut self, conn: ConnId, name: String, token: &str) {
        let peer = self.conns.get(&conn).and_then(|c| c.peer);
        let key = peer.map_or(TryKey::Conn(conn.0), |ip| TryKey::Addr(AddrKey::of(ip)));
        let now = self.now;
        let refused = if !self.op_tries.charge(key, now) {
            Some((ErrorCode::TooManyTries, "Too many tries; wait a minute."))
        } else if !self
            .config
            .op_token
            .as_deref()
            .is_some_and(|secret| token_matches(secret, token))
        {
            Some((ErrorCode::WrongToken, "Wrong operator token."))
        } else {
            None
        };
        if let Some((code, message)) = refused {
            self.outputs
                .push_back(Output::Log(LogRecord::OpRefused { name, peer }));
            return self.send(conn, &Event::error(code, message));
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.operator = true;
        }
        self.send(conn, &Event::Operator);
        self.enact(Some(conn), Moderation::Operator { name });
    }

    /// The bans and mutes in force, as `/bans` lists them.
    fn ban_entries(&self) -> Vec<BanEntry> {
        let now = self.wall_ms();
        self.sanctions
            .in_force(now)
            .map(|s| BanEntry {
                kind: s.kind,
                name: s.name.clone(),
                address: s.address.clone(),
                minutes: s.minutes_left(now),
                by: s.by.clone(),
                reason: s.reason.clone(),
            })
            .collect()
    }

    /// The user online as `typed` (cleaned, compared by name key): its spelling, connection
    /// here (if here) and address (if known here).
    fn find_online(&self, typed: &str) -> Option<(String, Option<ConnId>)> {
        let key = name_key(typed);
        if let Some(&id) = self.names.get(&key) {
            return Some((self.conns.get(&id)?.name.clone()?, Some(id)));
        }
        let cluster = self.cluster.as_ref()?;
        let m = cluster
            .remote
            .get(&key)
            .filter(|m| m.node != cluster.node)?;
        Some((m.name.clone(), None))
    }

    /// The refusal of a reason or notice longer than a line may be.
    pub(super) fn too_long(&self, what: &str) -> String {
        format!("{what} is at most {} bytes.", self.config.max_line)
    }

    /// A reason as given, cleaned; `None` if nothing is left; refused past a line's length.
    fn reason(&self, reason: Option<String>) -> Result<Option<String>, Refused> {
        let reason = reason.map(clean_message).filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.len() > self.config.max_line)
        {
            return Err((ErrorCode::Usage, self.too_long("A reason")));
        }
        Ok(reason)
    }

    pub(super) fn resolve_kick(
        &self,
        typed: &str,
        by: String,
        reason: Option<String>,
    ) -> Result<(Moderation, Option<Event>), Refused> {
        let typed = clean_text(typed.trim()).into_owned();
        let Some((name, here)) = self.find_online(&typed) else {
            return Err(no_such_user(&typed));
        };
        if here.is_none() && self.cluster.as_ref().is_some_and(|c| c.down) {
            // On another node, out of reach: nothing can be done to them from here now.
            return Err((ErrorCode::Busy, super::BUSY.to_owned()));
        }
        let reason = self.reason(reason)?;
        Ok((Moderation::Kick { name, by, reason }, None))
    }

    pub(super) fn resolve_sanction(
        &self,
        kind: SanctionKind,
        typed: &str,
        minutes: Option<u64>,
        by: String,
        reason: Option<String>,
    ) -> Result<(Moderation, Option<Event>), Refused> {
        let minutes = minutes.unwrap_or(DEFAULT_MINUTES);
        if !(1..=MAX_MINUTES).contains(&minutes) {
            let message = format!("Minutes must be between 1 and {MAX_MINUTES}.");
            return Err((ErrorCode::Usage, message));
        }
        let typed = clean_text(typed.trim()).into_owned();
        let (name, conn) = match self.find_online(&typed) {
            Some(found) => found,
            // Nobody online by that name: held for when they come back, if it is a name.
            None => match validate_name(&typed) {
                Ok(name) => (name, None),
                Err(err) => return Err((ErrorCode::NameInvalid, err.to_string())),
            },
        };
        let address = match kind {
            SanctionKind::Ban => {
                ban_address(conn.and_then(|id| self.conns.get(&id)).and_then(|c| c.peer))
            }
            SanctionKind::Mute => None,
        };
        let until = self
            .wall_ms()
            .saturating_add(minutes.saturating_mul(60_000));
        let reason = self.reason(reason)?;
        let change = match kind {
            SanctionKind::Ban => Change::Banned,
            SanctionKind::Mute => Change::Muted,
        };
        let confirm = Event::Moderated {
            change,
            name: name.clone(),
            minutes: Some(minutes),
        };
        let sanction = Sanction {
            kind,
            name,
            address,
            until,
            by,
            reason,
        };
        Ok((Moderation::Sanction(sanction), Some(confirm)))
    }

    pub(super) fn resolve_lift(
        &self,
        kind: SanctionKind,
        typed: &str,
        by: String,
    ) -> Result<(Moderation, Option<Event>), Refused> {
        let typed = clean_text(typed.trim()).into_owned();
        let key = name_key(&typed);
        let now = self.wall_ms();
        let held = self
            .sanctions
            .in_force(now)
            .find(|s| s.kind == kind && name_key(&s.name) == key);
        let (what, change) = match kind {
            SanctionKind::Ban => ("ban", Change::Unbanned),
            SanctionKind::Mute => ("mute", Change::Unmuted),
        };
        let Some(held) = held else {
            let message = format!("No {what} on '{typed}'.");
            return Err((ErrorCode::NoSuchSanction, message));
        };
        let name = held.name.clone();
        let confirm = Event::Moderated {
            change,
            name: name.clone(),
            minutes: None,
        };
        Ok((Moderation::Lift { kind, name, by }, Some(confirm)))
    }

    /// Cluster mode, in contact with the shared log.
    fn in_contact(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| !c.down)
    }

    /// Does `moderation`: here at once when alone or out of contact, else through the log.
    /// `conn` is the operator's connection, told if the log cannot take it.
    pub(super) fn enact(&mut self, conn: Option<ConnId>, moderation: Moderation) {
        if self.in_contact() {
            let publish = Publish::Moderate { conn, moderation };
            return self.outputs.push_back(Output::Publish(publish));
        }
        self.apply_moderation(moderation);
    }

    /// Applies `moderation`, logged: the same on every node (cluster mode), in the log's order.
    pub(super) fn apply_moderation(&mut self, moderation: Moderation) {
        self.outputs.push_back(Output::Log(LogRecord::Moderation {
            action: moderation.clone(),
        }));
        match moderation {
            Moderation::Operator { name } => {
                let key = name_key(&name);
                let here = self.names.contains_key(&key);
                if let Some(cluster) = self.cluster.as_mut().filter(|_| !here) {
                    cluster.remote_ops.insert(key);
                }
            }
            Moderation::Kick { name, by, reason } => {
                self.put_out_by(Action::Kick, &name, by, reason);
            }
            // Over already (it waited long on its way): it ends the one it replaces, and puts
            // nobody out.
            Moderation::Sanction(sanction) if sanction.until <= self.wall_ms() => {
                if self
                    .sanctions
                    .remove(sanction.kind, &sanction.name)
                    .is_some()
                {
                    self.store_sanctions();
                    self.relist_unbanned();
                }
            }
            Moderation::Sanction(sanction) => {
                let kind = sanction.kind;
                let (name, by, reason) = (
                    sanction.name.clone(),
                    sanction.by.clone(),
                    sanction.reason.clone(),
                );
                let mut sanction = sanction;
                let here = self.names.get(&name_key(&name)).copied();
                let peer = here.and_then(|id| self.conns.get(&id)).and_then(|c| c.peer);
                let refine = sanction.address.is_none() && ban_address(peer).is_some();
                let mut refined = None;
                if kind == SanctionKind::Ban && refine {
                    // Banned from another node, which could not know the address: this node
                    // can, and tells every node.
                    sanction.address = ban_address(peer);
                    if self.cluster.as_ref().is_some_and(|c| !c.down) {
                        refined = Some(Publish::Moderate {
                            conn: None,
                            moderation: Moderation::Sanction(sanction.clone()),
                        });
                    }
                }
                self.sanctions.insert(sanction);
                self.store_sanctions();
                match kind {
                    SanctionKind::Ban => {
                        self.put_out_by(Action::Ban, &name, by, reason);
                        // After the banned user's leave, so that no node, applying it, finds
                        // the user still in and puts it out a second time.
                        if let Some(refined) = refined {
                            self.outputs.push_back(Output::Publish(refined));
                        }
                    }
                    SanctionKind::Mute => {
                        if let Some(id) = here {
                            let event = Event::YouWere {
                                action: Action::Mute,
                                by,
                                reason: None,
                            };
                            self.send(id, &event);
                        }
                    }
                }
            }
            Moderation::Lift { kind, name, .. } => {
                self.sanctions.remove(kind, &name);
                self.store_sanctions();
                self.relist_unbanned();
            }
            Moderation::Notice { text, .. } => {
                self.broadcast(&Event::Notice { text }, |_, _| true);
            }
        }
    }

    /// `name`, if online, is kicked or banned by `by`: told why and closed if here, and
    /// everyone else here told. A ban puts out a look-alike of the name too (`b0b` when `bob`
    /// is banned), as it holds it out.
    fn put_out_by(&mut self, action: Action, name: &str, by: String, reason: Option<String>) {
        let (key, look) = (name_key(name), look_key(name));
        let by_look = action == Action::Ban;
        let here = self
            .names
            .get(&key)
            .or_else(|| self.looks.get(&look).filter(|_| by_look))
            .copied();
        // Out of contact, only this node's users are within reach.
        let elsewhere = self.cluster.as_ref().filter(|c| !c.down).and_then(|c| {
            let key = match c.remote_looks.get(&look) {
                Some(alike) if by_look && !c.remote.contains_key(&key) => alike,
                _ => &key,
            };
            // One told put out already is gone for this node's users.
            c.remote
                .get(key)
                .filter(|m| m.node != c.node && !c.put_out.contains_key(key))
        });
        let Some(name) = here
            .and_then(|id| self.name_of(id).map(str::to_owned))
            .or_else(|| elsewhere.map(|m| m.name.clone()))
        else {
            return; // Not online (a ban held for when they come back).
        };
        if let Some(id) = here {
            self.send_off(id, action, by.clone(), reason.clone());
        }
        // Still counted until the log has its leave (of another node, or of this one in
        // contact): that leave is not told again.
        let key = name_key(&name);
        if let Some(cluster) = self.cluster.as_mut()
            && cluster.remote.contains_key(&key)
        {
            cluster.put_out.insert(key, action);
        }
        self.tell_put_out(action, name, by, reason);
    }

    /// Everyone here is told `name` was kicked or banned: for their rosters, a leave.
    fn tell_put_out(&mut self, action: Action, name: String, by: String, reason: Option<String>) {
        self.digest.told_gone(&name);
        let event = Event::Sanctioned {
            action,
            name,
            by,
            reason,
        };
        self.broadcast(&event, |_, _| true);
    }

    /// `conn` is told it was kicked or banned by `by`, and closed.
    fn send_off(&mut self, conn: ConnId, action: Action, by: String, reason: Option<String>) {
        let told = Event::YouWere { action, by, reason };
        self.send(conn, &told);
        let (close, leave) = match action {
            Action::Ban => (CloseReason::Banned, LeaveReason::Banned),
            _ => (CloseReason::Kicked, LeaveReason::Kicked),
        };
        self.close(conn, close, leave);
    }

    /// Cluster mode, when a snapshot brought the bans: this node's users under a name banned
    /// meanwhile (while this node was out of contact, or its lease ran out) are put out, as
    /// when the ban's entry is applied; their leaves are made here, as out of contact (the
    /// log, if it holds them, is told by the snapshot's release). Their name keys.
    pub(super) fn put_out_banned(&mut self) -> BTreeSet<String> {
        let now = self.wall_ms();
        let banned: Vec<(ConnId, String, Sanction)> = self
            .names
            .values()
            .filter_map(|&id| {
                let name = self.name_of(id)?;
                let ban = self.sanctions.ban_on_name(name, now)?;
                Some((id, name.to_owned(), ban.clone()))
            })
            .collect();
        let down = self
            .cluster
            .as_mut()
            .map(|c| std::mem::replace(&mut c.down, true));
        let mut keys = BTreeSet::new();
        for (id, name, ban) in banned {
            keys.insert(name_key(&name));
            self.send_off(id, Action::Ban, ban.by.clone(), ban.reason.clone());
            self.tell_put_out(Action::Ban, name, ban.by, ban.reason);
        }
        if let (Some(cluster), Some(down)) = (self.cluster.as_mut(), down) {
            cluster.down = down;
        }
        keys
    }

    /// Cluster mode: once contact is back, this node's operators are told to the others again
    /// (the log keeps no operators: they are this node's connections).
    pub(super) fn announce_operators(&mut self) {
        let ops: Vec<String> = self
            .conns
            .values()
            .filter(|c| c.operator)
            .filter_map(|c| c.name.clone())
            .collect();
        for name in ops {
            let publish = Publish::Moderate {
                conn: None,
                moderation: Moderation::Operator { name },
            };
            self.outputs.push_back(Output::Publish(publish));
        }
    }
}

fn no_such_user(name: &str) -> Refused {
    (ErrorCode::NoSuchUser, format!("No user named '{name}'."))
}

/// Whether `address` is written as a ban writes one: an IPv4 address, or an IPv6 network
/// ending in `/64` with its host bits clear; never loopback.
fn ban_address_form(address: &str) -> bool {
    let ip = match address.strip_suffix("/64") {
        Some(net) => net
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(std::net::IpAddr::V6),
        None => address
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(std::net::IpAddr::V4),
    };
    ip.and_then(|ip| ban_address(Some(ip)))
        .is_some_and(|written| written == address)
}
