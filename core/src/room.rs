//! The room: every rule of the chat as a state machine over inputs that carry the time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec::{json, line};
use crate::command::{ParseError, Request, Resume, parse_line};
use crate::event::{ChatMessage, ErrorCode, Event, WELCOME_NAMES};
use crate::name::{name_key, validate_name};
use crate::stats::Stats;
use crate::text::{clean_message, strip_controls};
use crate::time::Timestamp;

/// A connection, named by the driver. Ids must not be reused while the connection is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Which codec a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wire {
    /// nc / telnet text lines (`PROTOCOL.md`). Senders get no echo of their public messages.
    Line,
    /// One JSON object per message (WebSocket). A sender's public message comes back to it
    /// once, with its sequence number, as the confirmation of its place in the room's order.
    Json,
}

/// The room's limits and policies.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connections admitted at once, named or not, all wires together.
    pub max_users: usize,
    /// Silence after which a connection is dropped; `None` never drops anyone.
    pub idle_timeout: Option<Duration>,
    /// Longest accepted line or JSON message, in bytes.
    pub max_line: usize,
    /// Public messages kept and replayed to newcomers.
    pub history: usize,
    /// Flood control; `None` turns it off.
    pub flood: Option<FloodConfig>,
    /// Names this run of the message numbering (sent in every welcome). A driver that starts
    /// the numbering afresh should pick a new value, such as its start time in milliseconds,
    /// so that a client's resume point from an earlier run is not mistaken for one of this run.
    pub epoch: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_users: 1024,
            idle_timeout: Some(Duration::from_secs(300)),
            max_line: 4096,
            history: 50,
            flood: Some(FloodConfig::default()),
            epoch: 0,
        }
    }
}

/// Flood control as a token bucket (in its GCRA form): a burst of `burst` lines at once,
/// then one line per `interval`. A person typing, or pasting a few lines, never reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodConfig {
    /// Lines that may arrive at once.
    pub burst: u32,
    /// The sustained pace: one line per this much time.
    pub interval: Duration,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            burst: 20,
            interval: Duration::from_millis(200),
        }
    }
}

/// Why the room asks the driver to close a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The user typed `/quit`.
    Quit,
    /// Silent for longer than the idle timeout.
    IdleTimeout,
    /// Refused at the door: `max_users` reached.
    Full,
    /// The server is stopping.
    Shutdown,
}

/// Why a connection went away without the room asking, as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disconnect {
    /// End of input, a reset, or a write error.
    Dropped,
    /// Its unsent output passed the driver's bound: it was not reading.
    TooSlow,
}

/// Why a named user left, as the message log records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// `/quit`.
    Quit,
    /// Idle timeout.
    IdleTimeout,
    /// The connection dropped.
    Dropped,
    /// Too slow reading its output.
    TooSlow,
    /// Server shutdown.
    Shutdown,
}

/// One record of the message log. Private messages are never logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogRecord {
    /// A user joined.
    Join {
        /// Who.
        name: String,
        /// From where, when the driver knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<IpAddr>,
    },
    /// A user left.
    Leave {
        /// Who.
        name: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A public message.
    Message(ChatMessage),
}

/// What the room wants done. Drain with [`Room::poll_output`] after every input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write `data` to `conn`, encoded for its wire: for the line wire, text to write as is;
    /// for the JSON wire, one JSON object to send as one message. A broadcast is encoded once
    /// per wire and shares its bytes between recipients.
    Send {
        /// The recipient.
        conn: ConnId,
        /// The encoded event.
        data: Bytes,
    },
    /// Finish sending what was queued for `conn`, then close it. The room has forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Append this record to the message log.
    Log(LogRecord),
}

/// Per-connection state.
#[derive(Debug)]
struct Conn {
    wire: Wire,
    /// The peer's address, as the driver reported it; logged on join.
    peer: Option<IpAddr>,
    /// `None` while at the name prompt.
    name: Option<String>,
    last_active: Timestamp,
    /// Where this connection's entry in the timer table is, so it can be removed exactly.
    timer: Option<Timestamp>,
    /// GCRA's "theoretical arrival time" of the next line.
    flood_tat: Timestamp,
    /// The user has been told to slow down and has not had a line accepted since.
    throttled: bool,
}

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
    history: VecDeque<ChatMessage>,
    next_seq: u64,
    /// Idle deadlines: at most one entry per connection. An entry may be earlier than the
    /// connection's real deadline (activity does not move it); it is moved when it fires.
    timers: BTreeSet<(Timestamp, ConnId)>,
    outputs: VecDeque<Output>,
    now: Timestamp,
    stats: Stats,
}

impl Room {
    /// An empty room.
    pub fn new(config: Config) -> Self {
        Room {
            config,
            conns: BTreeMap::new(),
            names: BTreeMap::new(),
            history: VecDeque::new(),
            next_seq: 1,
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            now: Timestamp::ZERO,
            stats: Stats::default(),
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
        self.names
            .values()
            .filter_map(|id| self.conns.get(id).and_then(|c| c.name.clone()))
            .take(limit)
            .collect()
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
        self.next_seq
    }

    /// Seeds the history with public messages of an earlier run, such as those read back from
    /// the message log at start, oldest first: newcomers are replayed them like any others, and
    /// the numbering goes on after the last one. Only the last `history` of them are kept.
    /// Meant for an empty room before the first connection; messages whose `seq` is not above
    /// below the room's next number are skipped, so the order stays strict.
    pub fn restore_history(&mut self, messages: impl IntoIterator<Item = ChatMessage>) {
        for message in messages {
            if message.seq < self.next_seq {
                continue;
            }
            self.next_seq = message.seq.saturating_add(1);
            if self.config.history > 0 {
                if self.history.len() == self.config.history {
                    self.history.pop_front();
                }
                self.history.push_back(message);
            }
        }
    }

    /// The next thing the driver must do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Room::handle_timeout`] should next be called; `None` when nothing waits.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// A connection opened. Over `max_users` it is refused: it gets `Full`, then `Close`.
    pub fn handle_open(&mut self, now: Timestamp, conn: ConnId, wire: Wire, peer: Option<IpAddr>) {
        self.advance(now);
        if self.conns.contains_key(&conn) {
            return; // A driver bug; the open connection keeps its state.
        }
        if self.conns.len() >= self.config.max_users {
            self.send_to_wire(conn, wire, &Event::Full);
            self.outputs.push_back(Output::Close {
                conn,
                reason: CloseReason::Full,
            });
            return;
        }
        self.conns.insert(
            conn,
            Conn {
                wire,
                peer,
                name: None,
                last_active: self.now,
                timer: None,
                flood_tat: self.now,
                throttled: false,
            },
        );
        self.schedule(conn, self.now);
        self.send(conn, &Event::Prompt);
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
                        self.send(conn, &parse_error_event(err));
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
                    let message = format!("Error: bad request: {}", strip_controls(&err));
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

    /// Time has passed: drops every connection silent for longer than the idle timeout.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
        while let Some(&(at, conn)) = self.timers.first() {
            if at > self.now {
                break;
            }
            self.timers.pop_first();
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.timer = None;
            let last_active = c.last_active;
            if self.deadline(last_active).is_some_and(|d| d <= self.now) {
                self.send(conn, &Event::IdleTimeout);
                self.close(conn, CloseReason::IdleTimeout, LeaveReason::IdleTimeout);
            } else {
                self.schedule(conn, last_active);
            }
        }
    }

    /// The server is stopping: everyone is told, then every connection is closed. The room is
    /// empty afterwards and can be reused.
    pub fn shutdown(&mut self, now: Timestamp) {
        self.advance(now);
        let mut line_data = None;
        let mut json_data = None;
        for (&conn, c) in &self.conns {
            let data = encoded(c.wire, &Event::Shutdown, &mut line_data, &mut json_data);
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
        self.timers.clear();
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
            (Request::Say { text }, Some(from)) => self.say(conn, from, &text),
            (Request::Msg { to, text }, Some(from)) => self.private(conn, from, &to, &text),
            (Request::Who, Some(_)) => {
                let online = self.online();
                self.send(conn, &Event::Who { online });
            }
            (Request::Help, Some(_)) => self.send(conn, &Event::help()),
        }
    }

    fn join(&mut self, conn: ConnId, raw: &str, resume: Option<Resume>) {
        let name = match validate_name(raw) {
            Ok(name) => name,
            Err(err) => return self.refuse(conn, ErrorCode::NameInvalid, err.to_string()),
        };
        let key = name_key(&name);
        if self.names.contains_key(&key) {
            let message = format!("The name '{name}' is already taken; choose another.");
            return self.refuse(conn, ErrorCode::NameTaken, message);
        }
        self.names.insert(key, conn);
        let mut peer = None;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.name = Some(name.clone());
            peer = c.peer;
        }
        let welcome = Event::Welcome {
            name: name.clone(),
            count: self.names.len(),
            online: self.roster(WELCOME_NAMES),
            epoch: self.config.epoch,
        };
        self.send(conn, &welcome);
        if let Some(history) = self.history_for(resume) {
            self.send(conn, &history);
        }
        self.broadcast(&Event::Joined { name: name.clone() }, |id, _| id != conn);
        self.outputs
            .push_back(Output::Log(LogRecord::Join { name, peer }));
    }

    /// What a joining client is replayed: the whole ring on a first join; after a resume, the
    /// messages past its resume point, and whether some it missed are no longer held.
    fn history_for(&self, resume: Option<Resume>) -> Option<Event> {
        let from_here = resume.filter(|r| r.epoch == self.config.epoch && r.seq < self.next_seq);
        let (messages, gap): (Vec<ChatMessage>, bool) = match (resume, from_here) {
            (None, _) => (self.history.iter().cloned().collect(), false),
            (Some(_), Some(r)) => {
                let oldest_held = self.history.front().map_or(self.next_seq, |m| m.seq);
                let missed = self.history.iter().filter(|m| m.seq > r.seq).cloned();
                (missed.collect(), oldest_held > r.seq + 1)
            }
            // A resume point from another run of the numbering (or from its future): the
            // recent messages, and a warning that the client may have missed others.
            (Some(_), None) => (self.history.iter().cloned().collect(), true),
        };
        (!messages.is_empty() || gap).then_some(Event::History { messages, gap })
    }

    fn say(&mut self, conn: ConnId, from: String, text: &str) {
        let text = clean_message(text);
        if text.is_empty() {
            return;
        }
        let message = ChatMessage {
            seq: self.next_seq,
            from,
            text,
        };
        self.next_seq += 1;
        if self.config.history > 0 {
            if self.history.len() == self.config.history {
                self.history.pop_front();
            }
            self.history.push_back(message.clone());
        }
        self.outputs
            .push_back(Output::Log(LogRecord::Message(message.clone())));
        // The JSON wire gets its own message back as the confirmation of its place.
        self.broadcast(&Event::Message(message), |id, c| {
            id != conn || c.wire == Wire::Json
        });
    }

    fn private(&mut self, conn: ConnId, from: String, to: &str, text: &str) {
        let text = clean_message(text);
        let to = strip_controls(to);
        let to = to.trim();
        if to.is_empty() || text.is_empty() {
            let usage = parse_error_event(ParseError::Usage(crate::command::MSG_USAGE));
            return self.send(conn, &usage);
        }
        let target = self.names.get(&name_key(to)).copied();
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

    /// Charges one line to `conn`'s flood bucket. When the bucket is empty the line is refused
    /// and the user is told so, once until a line gets through again.
    fn flood_allows(&mut self, conn: ConnId) -> bool {
        let Some(flood) = self.config.flood else {
            return true;
        };
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let tat = c.flood_tat.max(now);
        let allowance = flood.interval.saturating_mul(flood.burst.saturating_sub(1));
        if tat > now + allowance {
            self.stats.flood_rejections += 1;
            if !std::mem::replace(&mut c.throttled, true) {
                let message = "Error: you are sending too fast; slow down. \
                               Lines are dropped until you do.";
                self.send(conn, &Event::error(ErrorCode::TooFast, message));
            }
            return false;
        }
        c.flood_tat = tat + flood.interval;
        c.throttled = false;
        true
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

    fn deadline(&self, last_active: Timestamp) -> Option<Timestamp> {
        self.config.idle_timeout.map(|t| last_active + t)
    }

    /// Puts `conn`'s entry in the timer table at its deadline counted from `last_active`.
    fn schedule(&mut self, conn: ConnId, last_active: Timestamp) {
        let Some(at) = self.deadline(last_active) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(old) = c.timer.replace(at) {
                self.timers.remove(&(old, conn));
            }
            self.timers.insert((at, conn));
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
        if let Some(at) = c.timer {
            self.timers.remove(&(at, conn));
        }
        if let Some(name) = c.name {
            self.names.remove(&name_key(&name));
            self.broadcast(&Event::Left { name: name.clone() }, |_, _| true);
            self.outputs
                .push_back(Output::Log(LogRecord::Leave { name, reason }));
        }
    }

    fn send(&mut self, conn: ConnId, event: &Event) {
        if let Some(c) = self.conns.get(&conn) {
            self.send_to_wire(conn, c.wire, event);
        }
    }

    fn send_to_wire(&mut self, conn: ConnId, wire: Wire, event: &Event) {
        let data = encoded(wire, event, &mut None, &mut None);
        self.outputs.push_back(Output::Send { conn, data });
    }

    /// Sends `event` to every joined user for whom `to` says yes, encoding it once per wire.
    fn broadcast(&mut self, event: &Event, to: impl Fn(ConnId, &Conn) -> bool) {
        let mut line_data = None;
        let mut json_data = None;
        for (&conn, c) in &self.conns {
            if c.name.is_some() && to(conn, c) {
                let data = encoded(c.wire, event, &mut line_data, &mut json_data);
                self.outputs.push_back(Output::Send { conn, data });
            }
        }
    }
}

/// `event` encoded for `wire`, reusing an earlier encoding for the same wire if given one.
fn encoded(
    wire: Wire,
    event: &Event,
    line_data: &mut Option<Bytes>,
    json_data: &mut Option<Bytes>,
) -> Bytes {
    match wire {
        Wire::Line => line_data.get_or_insert_with(|| line::encode(event)).clone(),
        Wire::Json => json_data
            .get_or_insert_with(|| json::encode_event(event))
            .clone(),
    }
}

fn parse_error_event(err: ParseError) -> Event {
    Event::error(err.code(), err.to_string())
}
