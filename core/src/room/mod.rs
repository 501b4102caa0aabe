//! The room: every rule of the chat as a state machine over inputs that carry the time.
//!
//! [`Room`] is the state machine itself: its getters, its inputs (`handle_*`, `shutdown`) and
//! its outputs (`poll_output`, `poll_timeout`). Each other role sits in a file of its own,
//! in the shape of quinn-proto's `connection/` folder:
//!
//! - `config.rs`: [`Config`] and [`FloodConfig`], the limits and policies.
//! - `output.rs`: [`Output`] and the [`LogRecord`] it carries, and the encoding of an event
//!   once per wire.
//! - `reason.rs`: why connections close and users leave ([`CloseReason`], [`Disconnect`],
//!   [`LeaveReason`]).
//! - `conn.rs`: [`ConnId`], [`Wire`], and what the room holds for each connection.
//! - `timers.rs`: the idle and name timeouts and their table of deadlines.
//! - `flood.rs`: flood control, a GCRA token bucket per connection.
//! - `history.rs`: the public messages' numbering and the ring replayed to newcomers.
//! - `digest.rs`: the digest of joins and leaves above `announce_limit`.
//! - `joins.rs`: how often one address may join (`joins_per_minute`).
//! - `moderate.rs`: operators and their commands, bans and mutes; `admin.rs`, the admin
//!   API's requests.
//! - `cluster.rs`: cluster mode's replica of the other nodes' users ([`crate::cluster`]).
//! - `contact.rs`: cluster mode losing contact with the log, and regaining it from a snapshot.

mod admin;
mod cluster;
mod config;
pub(crate) mod conn;
mod contact;
mod digest;
mod flood;
mod history;
mod joins;
mod moderate;
mod output;
pub(crate) mod reason;
mod timers;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

pub use self::config::{Config, FloodConfig};
pub use self::conn::{ConnId, Wire};
pub use self::output::{LogRecord, Output};
pub use self::reason::{CloseReason, Disconnect, LeaveReason};

use self::cluster::Cluster;
use self::conn::Conn;
use self::digest::{Digest, Told};
use self::flood::Verdict;
use self::history::History;
use self::joins::Joins;
use self::output::Encoded;
use self::timers::{Expired, TimerTable};
use crate::admission::{AddrKey, TOO_MANY_CONNECTIONS};
use crate::cluster::{Member, Publish};
use crate::codec::{json, line};
use crate::command::{ParseError, Request, Resume, parse_line};
use crate::error_code::ErrorCode;
use crate::event::{ChatMessage, Event, WELCOME_NAMES};
use crate::lobby::Lobby;
use crate::moderation::{OpTries, Sanctions};
use crate::name::{look_key, name_key, validate_name};
use crate::stats::Stats;
use crate::text::{clean_message, clean_text};
use crate::time::Timestamp;

/// The chat room: connections, names, history, timers. Sans-IO: it never touches a socket, a
/// clock, a thread or a random generator.
///
/// # The contract
///
/// 1. The driver assigns a [`ConnId`] to each connection and feeds every input through a
///    `handle_*` method, passing the current time. Time never goes backwards for the room: an
///    earlier `now` than one already seen is taken as the later one.
/// 2. After each input, the driver drains [`Room::poll_output`] until it returns `None` and
///    does what each [`Output`] says.
/// 3. The driver asks [`Room::poll_timeout`] when the next deadline is, and calls
///    [`Room::handle_timeout`] once it has passed (early or late calls are harmless).
///
/// # Inputs during a drain
///
/// A driver may call `handle_*` (or `shutdown`) before the queue is empty, as the tokio
/// driver does when it drops a connection too slow to read in the middle of a drain
/// (`handle_disconnect` with [`Disconnect::TooSlow`]). Outputs form one queue in the order
/// the room decided them: those of the new input go behind every output still waiting, so
/// the driver carries out the earlier input's outputs first, then the new one's, and the
/// order each connection sees stays the room's. The outputs still waiting may include
/// `Send`s to the connection just reported gone, queued before it went: the room has
/// forgotten it and queues nothing more for it, and the driver drops those as it drops
/// anything for a connection it no longer has.
///
/// ```
/// use chat_core::{ConnId, Config, Output, Room, Timestamp, Wire, codec::line::Line};
///
/// let mut room = Room::new(Config::default());
/// let t = Timestamp::from_secs(0);
/// let (alice, bob) = (ConnId(1), ConnId(2));
/// room.handle_open(t, alice, Wire::Line, None);
/// room.handle_open(t, bob, Wire::Line, None);
/// room.handle_line(t, alice, Line::Text("alice".into()));
/// room.handle_line(t, bob, Line::Text("bob".into()));
/// while room.poll_output().is_some() {} // prompts, welcomes, "bob has joined"
///
/// room.handle_line(t, alice, Line::Text("hello".into()));
/// let mut to_bob = Vec::new();
/// while let Some(out) = room.poll_output() {
///     if let Output::Send { conn, data } = out {
///         assert_eq!(conn, bob, "no echo to alice");
///         to_bob.push(data);
///     }
/// }
/// assert_eq!(to_bob, ["alice: hello\n"]);
/// // Nobody says anything for five minutes:
/// let deadline = room.poll_timeout().unwrap();
/// assert_eq!(deadline, Timestamp::from_secs(300));
/// room.handle_timeout(deadline);
/// assert!(room.is_empty());
/// ```
#[derive(Debug)]
pub struct Room {
    config: Config,
    /// Ordered so that broadcasts go out in the same order on every run.
    conns: BTreeMap<ConnId, Conn>,
    /// [`name_key`] of every joined user, sorted, for uniqueness, lookups and `/who`.
    names: BTreeMap<String, ConnId>,
    /// [`look_key`] of every joined user, so that no name joins that looks like one online.
    looks: BTreeMap<String, ConnId>,
    history: History,
    timers: TimerTable,
    /// The digest being gathered, above `announce_limit`.
    digest: Digest,
    /// Each address's recent joins, for `joins_per_minute`.
    joins: Joins,
    /// The connections at the name prompt, by address (`Config::lobby`).
    lobby: Lobby<ConnId>,
    outputs: VecDeque<Output>,
    now: Timestamp,
    stats: Stats,
    /// Cluster mode (`Config::cluster`): the users of other nodes, and the log's pending work.
    cluster: Option<Cluster>,
    /// The bans and mutes, in force or over but not yet dropped.
    sanctions: Sanctions,
    /// The `/op` tries of each address of late.
    op_tries: OpTries,
}

impl Room {
    /// An empty room.
    pub fn new(config: Config) -> Self {
        Room {
            cluster: config.cluster.clone().map(Cluster::new),
            history: History::new(config.history),
            lobby: Lobby::new(config.lobby),
            config,
            conns: BTreeMap::new(),
            names: BTreeMap::new(),
            looks: BTreeMap::new(),
            timers: TimerTable::default(),
            digest: Digest::default(),
            joins: Joins::default(),
            outputs: VecDeque::new(),
            now: Timestamp::ZERO,
            stats: Stats::default(),
            sanctions: Sanctions::default(),
            op_tries: OpTries::default(),
        }
    }

    /// The configuration the room runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connections admitted, named or not.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// No connection at all.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The names of everyone who has joined, sorted case-insensitively.
    pub fn online(&self) -> Vec<String> {
        self.roster(usize::MAX)
    }

    /// The first `limit` names of the sorted roster.
    fn roster(&self, limit: usize) -> Vec<String> {
        if let Some(cluster) = &self.cluster {
            let local = self.names.iter().filter_map(|(key, id)| {
                let name = self.conns.get(id)?.name.as_deref()?;
                Some((key.as_str(), name))
            });
            // One whose kick or ban was told here is gone for this node's users, though the
            // log has not had its leave yet.
            let remote = cluster
                .remote
                .iter()
                .filter(|(key, _)| !cluster.put_out.contains_key(*key))
                .map(|(key, m)| (key.as_str(), m.name.as_str()));
            let mut all: Vec<(&str, &str)> = local.chain(remote).collect();
            all.sort_unstable();
            return all
                .into_iter()
                .take(limit)
                .map(|(_, name)| name.to_owned())
                .collect();
        }
        self.names
            .values()
            .filter_map(|id| self.conns.get(id).and_then(|c| c.name.clone()))
            .take(limit)
            .collect()
    }

    /// Joined users in the whole room: here, and (cluster mode) on the other nodes.
    fn count(&self) -> usize {
        let remote = self
            .cluster
            .as_ref()
            .map_or(0, |c| c.remote.len().saturating_sub(c.put_out.len()));
        self.names.len() + remote
    }

    /// The name `conn` joined with, if it has.
    pub fn name_of(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn).and_then(|c| c.name.as_deref())
    }

    /// What the room has counted so far, for metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The sequence number the next public message will get.
    pub fn next_seq(&self) -> u64 {
        self.history.next_seq()
    }

    /// Seeds the history with public messages of an earlier run, such as those read back from
    /// the message log at start, oldest first: newcomers are replayed them like any others, and
    /// the numbering goes on after the last one. Only the last `history` of them are kept.
    /// Meant for an empty room before the first connection; messages whose `seq` is below the
    /// room's next number are skipped, so the order stays strict.
    /// They are cleaned as text said now is (an older run may have kept what is now removed);
    /// one left empty is skipped.
    pub fn restore_history(&mut self, messages: impl IntoIterator<Item = ChatMessage>) {
        self.history.restore(messages.into_iter().filter_map(|m| {
            let text = clean_message(m.text);
            let from = clean_text(&m.from).into_owned();
            (!text.is_empty()).then_some(ChatMessage { text, from, ..m })
        }));
    }

    /// The next thing the driver must do, if any.
    #[must_use = "every output is something the driver must do"]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Room::handle_timeout`] should next be called; `None` when nothing waits.
    #[must_use = "a driver that does not wake the room at this deadline misses its timeouts"]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        [
            self.timers.next(),
            self.presence_due(),
            self.doubt_due(),
            self.sanction_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the join and leave digest being gathered goes out; `None` when none is.
    pub fn presence_due(&self) -> Option<Timestamp> {
        self.digest.due()
    }

    /// A connection opened, from `peer` if the driver knows it. It waits at the name prompt, in
    /// the lobby of its address ([`Config::lobby`]): one past its address's share there is
    /// refused (`TooManyConnections`, then `Close`). When the room holds `max_users`, or the
    /// lobby is past its capacity, room is made: the oldest at the prompt of the address with
    /// the most there (two or more) gets `Full` and is closed. A newcomer to a full room for
    /// whom nobody can make room gets `Full`, then `Close`.
    pub fn handle_open(&mut self, now: Timestamp, conn: ConnId, wire: Wire, peer: Option<IpAddr>) {
        self.advance(now);
        if self.conns.contains_key(&conn) {
            return; // A driver bug; the open connection keeps its state.
        }
        let now_ms = self.wall_ms();
        if let Some(ban) = self.sanctions.ban_on_address(peer, now_ms) {
            let minutes = ban.minutes_left(now_ms);
            self.send_to_wire(conn, wire, &Event::Banned { minutes });
            return self.outputs.push_back(Output::Close {
                conn,
                reason: CloseReason::Banned,
            });
        }
        let full = self.conns.len() >= self.config.max_users;
        let key = peer
            .map(AddrKey::of)
            .filter(|key| self.config.limit_loopback || !key.is_loopback());
        let now = self.now;
        let entered = key.map(|key| self.lobby.enter(now, key, false, conn, full));
        let (waiting, put_out) = match entered {
            None => (None, full.then(|| self.lobby.make_room(now)).flatten()),
            Some(Ok(entered)) => (Some(entered.ticket), entered.put_out),
            Some(Err(_)) => {
                let refusal = Event::error(ErrorCode::TooManyConnections, TOO_MANY_CONNECTIONS);
                return self.turn_away(conn, wire, &refusal);
            }
        };
        match put_out {
            Some(victim) => self.put_out(victim),
            None if full => {
                if let Some(ticket) = waiting {
                    self.lobby.leave(ticket);
                }
                return self.turn_away(conn, wire, &Event::Full);
            }
            None => {}
        }
        let mut c = Conn::new(self.now, wire, peer);
        c.waiting = waiting;
        self.conns.insert(conn, c);
        self.schedule(conn);
        self.send(conn, &Event::Prompt);
    }

    /// Tells a connection never let in why, and closes it.
    fn turn_away(&mut self, conn: ConnId, wire: Wire, event: &Event) {
        self.send_to_wire(conn, wire, event);
        self.outputs.push_back(Output::Close {
            conn,
            reason: CloseReason::Full,
        });
    }

    /// Closes `conn`, waiting at the name prompt, to make room for a newcomer: it is told the
    /// room is full, as if it had come a moment later.
    fn put_out(&mut self, conn: ConnId) {
        self.send(conn, &Event::Full);
        // Never joined: nobody is told, nothing is logged.
        self.close(conn, CloseReason::Full, LeaveReason::Dropped);
    }

    /// A line arrived from a line-wire connection, as the [`line::LineDecoder`] split it.
    pub fn handle_line(&mut self, now: Timestamp, conn: ConnId, input: line::Line) {
        self.advance(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_active = self.now;
        let joined = c.name.is_some();
        let text = match input {
            line::Line::TooLong => return self.refuse_too_long(conn),
            line::Line::Text(text) => text,
        };
        let request = if joined {
            match parse_line(&text) {
                Ok(Some(request)) => request,
                Ok(None) => {
                    // Blank lines are ignored, but they still cost: a flood of them is a flood.
                    self.flood_allows(conn);
                    return;
                }
                Err(err) => {
                    if self.flood_allows(conn) {
                        let refusal = self.parse_refusal(err);
                        self.send(conn, &refusal);
                    }
                    return;
                }
            }
        } else if matches!(parse_line(&text), Ok(Some(Request::Quit))) {
            Request::Quit
        } else {
            Request::Join {
                name: text,
                resume: None,
            }
        };
        self.handle_request(conn, request);
    }

    /// A message arrived from a JSON-wire connection.
    pub fn handle_json(&mut self, now: Timestamp, conn: ConnId, text: &str) {
        self.advance(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_active = self.now;
        if text.len() > self.config.max_line {
            return self.refuse_too_long(conn);
        }
        match json::decode_request(text) {
            Ok(request) => self.handle_request(conn, request),
            Err(err) => {
                if self.flood_allows(conn) {
                    // serde quotes bits of the input: no control characters back either.
                    let err = err.to_string();
                    let message = format!("Error: bad request: {}", clean_text(&err));
                    self.send(conn, &Event::error(ErrorCode::BadRequest, message));
                }
            }
        }
    }

    /// A binary message on the JSON wire (a WebSocket binary frame), which carries no request:
    /// refused like JSON that is not a request, and the connection stays.
    pub fn handle_binary(&mut self, now: Timestamp, conn: ConnId) {
        self.advance(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_active = self.now;
        if self.flood_allows(conn) {
            let message = "Error: bad request: binary messages are not supported; \
                           send each request as JSON text.";
            self.send(conn, &Event::error(ErrorCode::BadRequest, message));
        }
    }

    /// A connection went away on its own (end of input, reset, too slow to read). Everyone
    /// else hears that its user left. Unknown ids are ignored, so reporting a connection the
    /// room already closed is harmless.
    pub fn handle_disconnect(&mut self, now: Timestamp, conn: ConnId, why: Disconnect) {
        self.advance(now);
        let reason = match why {
            Disconnect::Dropped => LeaveReason::Dropped,
            Disconnect::TooSlow => LeaveReason::TooSlow,
        };
        self.remove(conn, reason);
    }

    /// Time has passed: drops every connection silent for longer than the idle timeout, or at
    /// the name prompt for longer than the name timeout, and sends the digest of joins and
    /// leaves when it is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
        while let Some(conn) = self.timers.pop_due(self.now) {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.timer = None;
            match timers::expired(&self.config, c, self.now) {
                Some(Expired::Idle) => {
                    self.send(conn, &Event::IdleTimeout);
                    self.close(conn, CloseReason::IdleTimeout, LeaveReason::IdleTimeout);
                }
                Some(Expired::Name) => {
                    self.send(conn, &Event::NameTimeout);
                    // Never joined: nobody is told, nothing is logged.
                    self.close(conn, CloseReason::NameTimeout, LeaveReason::IdleTimeout);
                }
                None => self.schedule(conn),
            }
        }
        if self.doubt_due().is_some_and(|due| due <= self.now) {
            self.expire_doubts();
        }
        if self.sanction_due().is_some_and(|due| due <= self.now) {
            self.expire_sanctions();
        }
        if self.presence_due().is_some_and(|due| due <= self.now) {
            self.flush_presence();
        }
    }

    /// The server is stopping: everyone is told, then every connection is closed. The room is
    /// empty afterwards and can be reused.
    pub fn shutdown(&mut self, now: Timestamp) {
        self.advance(now);
        let mut shutdown = Encoded::new(&Event::Shutdown);
        for (&conn, c) in &self.conns {
            let data = shutdown.on(c.wire);
            self.outputs.push_back(Output::Send { conn, data });
            self.outputs.push_back(Output::Close {
                conn,
                reason: CloseReason::Shutdown,
            });
            if let Some(name) = &c.name {
                self.outputs.push_back(Output::Log(LogRecord::Leave {
                    name: name.clone(),
                    reason: LeaveReason::Shutdown,
                }));
            }
        }
        self.conns.clear();
        self.names.clear();
        self.looks.clear();
        self.timers.clear();
        self.digest.clear();
        self.lobby.clear();
        if let Some(cluster) = &mut self.cluster {
            cluster.remote.clear();
            cluster.remote_looks.clear();
            cluster.remote_ops.clear();
            cluster.put_out.clear();
            cluster.says.clear();
        }
    }

    fn handle_request(&mut self, conn: ConnId, request: Request) {
        if request != Request::Quit && !self.flood_allows(conn) {
            return;
        }
        let Some(name) = self.conns.get(&conn).map(|c| c.name.clone()) else {
            return;
        };
        match (request, name) {
            (Request::Quit, _) => {
                self.send(conn, &Event::Goodbye);
                self.close(conn, CloseReason::Quit, LeaveReason::Quit);
            }
            (Request::Join { name, resume }, None) => self.join(conn, &name, resume),
            (Request::Join { .. }, Some(name)) => self.send(
                conn,
                &Event::error(
                    ErrorCode::AlreadyJoined,
                    format!("Error: you have already joined as {name}."),
                ),
            ),
            (_, None) => self.send(
                conn,
                &Event::error(ErrorCode::NotJoined, "Error: choose a name first."),
            ),
            (Request::Say { text }, Some(from)) => {
                if self.unmuted(conn, &from) {
                    self.say(conn, from, text);
                }
            }
            (Request::Msg { to, text }, Some(from)) => {
                // A muted user may still ask an operator why.
                if self.is_operator(&name_key(&to)) || self.unmuted(conn, &from) {
                    self.private(conn, from, &to, text);
                }
            }
            (Request::Who, Some(_)) => {
                let online = self.online();
                let operators = self.operators_among(&online);
                self.send(conn, &Event::Who { online, operators });
                self.digest.seen(conn);
            }
            (Request::Help, Some(_)) => {
                let operator = self.conns.get(&conn).is_some_and(|c| c.operator);
                self.send(conn, &Event::help_for(operator));
            }
            (request, Some(name)) => self.operator_request(conn, name, request),
        }
    }

    fn join(&mut self, conn: ConnId, raw: &str, resume: Option<Resume>) {
        let name = match validate_name(raw) {
            Ok(name) => name,
            Err(err) => return self.refuse(conn, ErrorCode::NameInvalid, err.to_string()),
        };
        if self.turned_away_if_banned(conn, &name) {
            return;
        }
        let (key, look) = (name_key(&name), look_key(&name));
        if let Some((code, message)) = self.name_refusal(&name, &key, &look) {
            return self.refuse(conn, code, message);
        }
        if let Err(wait) = self.charge_join(conn) {
            // Rounded up, so that trying again then succeeds.
            let secs = wait.as_millis().div_ceil(1000).max(1);
            let unit = if secs == 1 { "second" } else { "seconds" };
            let message = format!("Too many joins from your address; try again in {secs} {unit}.");
            return self.refuse(conn, ErrorCode::TooManyJoins, message);
        }
        if self.cluster.as_ref().is_some_and(|c| !c.down) {
            // The log decides: the join is made when it comes back (`handle_logged`).
            if let Some(c) = self.conns.get_mut(&conn) {
                c.claim = Some((name.clone(), resume));
            }
            let claim = Publish::Claim {
                conn,
                key,
                look,
                name,
            };
            return self.outputs.push_back(Output::Publish(claim));
        }
        self.admit(conn, name, key, look, resume);
    }

    /// Why `name` (with its name and look keys) cannot be given out now, as far as this room
    /// knows: held here or (cluster mode) by a user of another node, or too like one online.
    fn name_refusal(&self, name: &str, key: &str, look: &str) -> Option<(ErrorCode, String)> {
        let elsewhere = self
            .cluster
            .as_ref()
            .is_some_and(|c| c.remote.contains_key(key));
        if self.names.contains_key(key) || elsewhere {
            return Some((ErrorCode::NameTaken, taken(name)));
        }
        let other = match self.looks.get(look).and_then(|&id| self.name_of(id)) {
            Some(other) => Some(other),
            None => self.cluster.as_ref().and_then(|c| c.looks_like(look)),
        }?;
        Some((ErrorCode::NameConfusable, looks_like(name, other)))
    }

    /// `conn` is in, as `name`: it is welcomed and replayed the history, and everyone else
    /// told.
    fn admit(
        &mut self,
        conn: ConnId,
        name: String,
        key: String,
        look: String,
        resume: Option<Resume>,
    ) {
        // Counted after the join: above the limit, or while a digest gathers, it waits for
        // the digest; otherwise it is announced now.
        let gathered = self.gathers(self.count() + 1);
        self.names.insert(key, conn);
        self.looks.insert(look, conn);
        let mut peer = None;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.name = Some(name.clone());
            c.joined = self.now;
            peer = c.peer;
            // In: no longer one of its address's connections at the prompt.
            if let Some(ticket) = c.waiting.take() {
                self.lobby.leave(ticket);
            }
        }
        // No name timeout any more: only the idle one, if any, is left to wait for.
        self.schedule(conn);
        let welcome = Event::Welcome {
            name: name.clone(),
            count: self.count(),
            online: self.roster(WELCOME_NAMES),
            epoch: self.config.epoch,
        };
        self.send(conn, &welcome);
        if let Some(history) = self.history.replay(self.config.epoch, resume) {
            self.send(conn, &history);
        }
        if self.cluster.as_ref().is_some_and(|c| c.down) {
            // In on this node only, for now: told so, like everyone here.
            self.send(conn, &Event::Degraded);
        }
        if gathered {
            // The welcome showed the roster as it is now, the join included.
            self.digest.joined(self.digest_due(), conn, name.clone());
        } else {
            self.broadcast(&Event::Joined { name: name.clone() }, |id, _| id != conn);
        }
        self.outputs
            .push_back(Output::Log(LogRecord::Join { name, peer }));
    }

    fn say(&mut self, conn: ConnId, from: String, text: String) {
        let text = clean_message(text);
        if text.is_empty() {
            return;
        }
        if self.cluster.as_ref().is_some_and(|c| c.down) {
            self.outputs.push_back(Output::Log(LogRecord::Local {
                from: from.clone(),
                text: text.clone(),
            }));
            let local = Event::LocalMessage { from, text };
            return self.broadcast(&local, |id, c| id != conn || c.wire == Wire::Json);
        }
        if let Some(cluster) = &mut self.cluster {
            let origin = cluster.next_origin;
            cluster.next_origin += 1;
            cluster.says.insert(origin, conn);
            let key = name_key(&from);
            let say = Publish::Say {
                conn,
                origin,
                key,
                from,
                text,
            };
            return self.outputs.push_back(Output::Publish(say));
        }
        let message = self.history.push(from, text);
        self.outputs
            .push_back(Output::Log(LogRecord::Message(message.clone())));
        // The JSON wire gets its own message back as the confirmation of its place.
        self.broadcast(&Event::Message(message), |id, c| {
            id != conn || c.wire == Wire::Json
        });
    }

    fn private(&mut self, conn: ConnId, from: String, to: &str, text: String) {
        let text = clean_message(text);
        let to = clean_text(to);
        let to = to.trim();
        if to.is_empty() || text.is_empty() {
            let usage = parse_error_event(ParseError::Usage(crate::command::MSG_USAGE));
            return self.send(conn, &usage);
        }
        let to_key = name_key(to);
        if let Some(member) = self.cluster.as_ref().and_then(|c| c.remote.get(&to_key)) {
            let tell = Publish::Tell {
                node: member.node.clone(),
                from_conn: conn,
                from,
                to_key,
                to: member.name.clone(),
                text,
            };
            return self.outputs.push_back(Output::Publish(tell));
        }
        let target = self.names.get(&to_key).copied();
        let Some((target, target_name)) = target.and_then(|id| {
            let name = self.conns.get(&id)?.name.clone()?;
            Some((id, name))
        }) else {
            let message = format!("No user named '{to}'.");
            return self.send(conn, &Event::error(ErrorCode::NoSuchUser, message));
        };
        self.stats.private_messages += 1;
        self.send(
            target,
            &Event::Private {
                from,
                text: text.clone(),
            },
        );
        self.send(
            conn,
            &Event::PrivateSent {
                to: target_name,
                text,
            },
        );
    }

    /// Charges a join to the address of `conn`, if it has one; `Err` with the wait when that
    /// address has joined `joins_per_minute` times of late.
    fn charge_join(&mut self, conn: ConnId) -> Result<(), Duration> {
        let (Some(per_minute), Some(peer)) = (
            self.config.joins_per_minute,
            self.conns.get(&conn).and_then(|c| c.peer),
        ) else {
            return Ok(());
        };
        let limit_loopback = self.config.limit_loopback;
        self.joins
            .charge(per_minute, limit_loopback, peer, self.now)
    }

    /// Charges one line to `conn`'s flood bucket. When the bucket is empty the line is refused
    /// and the user is told so, once until a line gets through again.
    fn flood_allows(&mut self, conn: ConnId) -> bool {
        let Some(flood) = self.config.flood else {
            return true;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        match c.flood.charge(flood, self.now) {
            Verdict::Pass => true,
            Verdict::Drop { tell } => {
                self.stats.flood_rejections += 1;
                if tell {
                    let message = "Error: you are sending too fast; slow down. \
                                   Lines are dropped until you do.";
                    self.send(conn, &Event::error(ErrorCode::TooFast, message));
                }
                false
            }
        }
    }

    /// A line or message over `max_line` was discarded: say so.
    fn refuse_too_long(&mut self, conn: ConnId) {
        if !self.flood_allows(conn) {
            return;
        }
        let message = format!(
            "Error: line too long (the limit is {} bytes); it was discarded.",
            self.config.max_line
        );
        self.refuse(conn, ErrorCode::LineTooLong, message);
    }

    /// Tells `conn` why what it sent was refused; at the name prompt, asks for a name again.
    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        self.send(conn, &Event::error(code, message));
        if self.name_of(conn).is_none() {
            self.send(conn, &Event::Prompt);
        }
    }

    fn advance(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
    }

    /// Puts `conn`'s entry in the timer table at its next deadline.
    fn schedule(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            self.timers.schedule(&self.config, conn, c);
        }
    }

    /// Asks the driver to close `conn` and forgets it.
    fn close(&mut self, conn: ConnId, reason: CloseReason, leave: LeaveReason) {
        self.outputs.push_back(Output::Close { conn, reason });
        self.remove(conn, leave);
    }

    /// Forgets `conn`; if it had joined, everyone else hears that it left.
    fn remove(&mut self, conn: ConnId, reason: LeaveReason) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.timers.remove(conn, &c);
        if let Some(ticket) = c.waiting {
            self.lobby.leave(ticket);
        }
        if let Some(name) = c.name {
            // Counted before the leave, like a join after it: crossing the limit either way is
            // gathered.
            let key = name_key(&name);
            let look = look_key(&name);
            if let Some(cluster) = self.cluster.as_mut().filter(|c| !c.down) {
                self.names.remove(&key);
                self.looks.remove(&look);
                // Still in the room until the log says it left, on every node at once.
                let member = Member {
                    key: key.clone(),
                    name: name.clone(),
                    node: cluster.node.clone(),
                    conn,
                };
                cluster.insert(look, member);
                let release = Publish::Release {
                    conn,
                    key,
                    name,
                    reason,
                };
                return self.outputs.push_back(Output::Publish(release));
            }
            // Out of contact (cluster mode), a leave is made here at once, as alone; the log
            // learns of it when contact is back (`handle_snapshot`).
            let gathered = self.gathers(self.count());
            self.names.remove(&key);
            self.looks.remove(&look);
            if gathered {
                self.digest.left(self.digest_due(), conn, name.clone());
            } else if !reason.put_out() {
                // A kick or ban is told everyone by its own line.
                self.broadcast(&Event::Left { name: name.clone() }, |_, _| true);
            }
            self.outputs
                .push_back(Output::Log(LogRecord::Leave { name, reason }));
        }
    }

    /// Whether a join or leave, with the room counted at `count` users, goes into the digest
    /// rather than out at once: above `announce_limit`, and also at or below it while a digest
    /// is gathering, until that digest goes out. This is the switch's hysteresis: a room
    /// hovering at the limit gets one digest per interval and, between two, single lines only
    /// for the changes made before it crosses the limit again, never a digest cut short and a
    /// line per change.
    fn gathers(&mut self, count: usize) -> bool {
        // A digest whose time has come goes out first, on time (a driver that wakes the room
        // late must not make it gather past its interval).
        if self.presence_due().is_some_and(|due| due <= self.now) {
            self.flush_presence();
        }
        count > self.config.announce_limit || self.presence_due().is_some()
    }

    /// When a digest window opened now would go out. A zero interval is taken as one
    /// millisecond.
    fn digest_due(&self) -> Timestamp {
        self.now + self.config.announce_interval.max(Duration::from_millis(1))
    }

    /// Sends the digest being gathered, if any: each joined user gets what changed since they
    /// last saw the roster (nothing, if nothing did).
    fn flush_presence(&mut self) {
        let count = self.count();
        let joined = self
            .conns
            .iter()
            .filter(|(_, c)| c.name.is_some())
            .map(|(&id, _)| id);
        for Told { event, to } in self.digest.flush(joined, count) {
            let mut encoded = Encoded::new(&event);
            for conn in to {
                if let Some(c) = self.conns.get(&conn) {
                    let data = encoded.on(c.wire);
                    self.outputs.push_back(Output::Send { conn, data });
                }
            }
        }
    }

    fn send(&mut self, conn: ConnId, event: &Event) {
        if let Some(c) = self.conns.get(&conn) {
            self.send_to_wire(conn, c.wire, event);
        }
    }

    fn send_to_wire(&mut self, conn: ConnId, wire: Wire, event: &Event) {
        let data = Encoded::new(event).on(wire);
        self.outputs.push_back(Output::Send { conn, data });
    }

    /// Sends `event` to every joined user for whom `to` says yes, encoding it once per wire.
    fn broadcast(&mut self, event: &Event, to: impl Fn(ConnId, &Conn) -> bool) {
        let mut encoded = Encoded::new(event);
        for (&conn, c) in &self.conns {
            if c.name.is_some() && to(conn, c) {
                let data = encoded.on(c.wire);
                self.outputs.push_back(Output::Send { conn, data });
            }
        }
    }
}

/// The refusal of a name someone holds.
fn taken(name: &str) -> String {
    format!("The name '{name}' is already taken; choose another.")
}

/// The refusal of a name too like `other`'s, who is online.
fn looks_like(name: &str, other: &str) -> String {
    format!("The name '{name}' looks too much like '{other}', who is online; choose another.")
}

/// What a user is told when the shared log could not take what it asked.
fn busy() -> Event {
    Event::error(ErrorCode::Busy, BUSY)
}

/// The sentence of [`busy`].
const BUSY: &str = "Error: the server is busy; nothing was sent. Try again in a moment.";

/// What a muted user is told for a public line.
fn muted() -> Event {
    Event::error(ErrorCode::Muted, "You are muted.")
}

fn parse_error_event(err: ParseError) -> Event {
    Event::error(err.code(), err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &Output) -> (ConnId, &str) {
        match out {
            Output::Send { conn, data } => (*conn, std::str::from_utf8(data).unwrap_or("?")),
            other => panic!("expected a Send, got {other:?}"),
        }
    }

    #[test]
    fn an_input_in_the_middle_of_a_drain_queues_its_outputs_behind_the_rest() {
        let mut room = Room::new(Config::default());
        let t = Timestamp::ZERO;
        let (ann, bob, cy) = (ConnId(1), ConnId(2), ConnId(3));
        for (conn, name) in [(ann, "ann"), (bob, "bob"), (cy, "cy")] {
            room.handle_open(t, conn, Wire::Line, None);
            room.handle_line(t, conn, line::Line::Text(name.into()));
        }
        while room.poll_output().is_some() {}
        room.handle_line(t, ann, line::Line::Text("hi".into()));
        assert!(matches!(room.poll_output(), Some(Output::Log(_))));
        assert_eq!(text(&room.poll_output().unwrap()), (bob, "ann: hi\n"));
        // The driver finds bob too slow before it has drained the rest.
        room.handle_disconnect(t, bob, Disconnect::TooSlow);
        let rest: Vec<Output> = std::iter::from_fn(|| room.poll_output()).collect();
        let sent: Vec<(ConnId, &str)> = rest[..3].iter().map(text).collect();
        assert_eq!(
            sent,
            [
                (cy, "ann: hi\n"),
                (ann, "*** bob has left the chat ***\n"),
                (cy, "*** bob has left the chat ***\n"),
            ]
        );
        assert_eq!(
            rest[3..],
            [Output::Log(LogRecord::Leave {
                name: "bob".into(),
                reason: LeaveReason::TooSlow
            })]
        );
    }
}
