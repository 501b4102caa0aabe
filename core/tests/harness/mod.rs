//! An in-memory driver for [`Room`], in the style of quinn's `Pair` and str0m's `TestRtc`.
//!
//! The harness owns a room and a fake clock and plays the driver's part exactly as the
//! contract in `room/mod.rs` describes it: it feeds inputs with the current time, drains
//! `poll_output` after every input, and calls `handle_timeout` whenever a deadline from
//! `poll_timeout` has passed. Line-wire bytes go through a per-connection [`LineDecoder`],
//! as a real driver's would. Time only moves when a test calls [`Harness::advance`], so an
//! idle timeout of five minutes takes no time at all.
//!
//! After every drain it checks the invariants any driver relies on: nothing is sent to a
//! connection after its `Close` (or after the driver reported it gone), the line wire only
//! ever carries whole UTF-8 lines (and the prompt), the JSON wire only well-formed events,
//! nobody is ever sent a control character that could drive a terminal, and `poll_timeout`
//! is never in the past, so a driver's loop cannot spin. It also keeps every JSON client's
//! roster as a browser does, with the core's [`Roster`] (from `welcome`, `who`, `joined`, `left`
//! and `presence`), and checks that, whenever no digest of joins and leaves is pending, each
//! one that lists everyone equals the room's.

// Each test binary uses its own subset of the harness.
#![allow(dead_code)]

pub mod checks;
pub mod ops;

use std::net::IpAddr;
use std::time::Duration;

use chat_core::codec::{json, line};
use chat_core::{
    CloseReason, Config, ConnId, Disconnect, Event, Line, LineDecoder, LogRecord, Output, Room,
    Roster, Timestamp, Wire,
};

/// Outputs one input may produce before the harness calls it a livelock.
const MAX_OUTPUTS_PER_INPUT: usize = 1_000_000;

/// The room, a fake clock, and what every connection has received.
pub struct Harness {
    room: Room,
    now: Timestamp,
    /// Every connection ever opened; `ConnId(n)` is at index `n - 1`.
    conns: Vec<Peer>,
    log: Vec<LogRecord>,
    /// The bans and mutes as the room last asked for them to be stored.
    stored: Option<Vec<chat_core::moderation::Sanction>>,
}

/// The driver's side of one connection.
struct Peer {
    wire: Wire,
    decoder: LineDecoder,
    /// Received and not yet taken: lines (line wire) or JSON objects (JSON wire).
    inbox: Vec<String>,
    /// The JSON wire's `inbox`, decoded.
    events: Vec<Event>,
    /// The room asked to close it, and why.
    closed: Option<CloseReason>,
    /// The driver reported it gone (dropped, too slow): the room must never address it again.
    gone: bool,
    /// The roster a JSON client keeps from what it was told; incomplete before its welcome
    /// and while its welcome listed only part of the room (until a `who` answer).
    roster: Roster,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(Config::default())
    }
}

impl Harness {
    /// A room with `config`, at time zero.
    pub fn new(config: Config) -> Self {
        Harness {
            room: Room::new(config),
            now: Timestamp::ZERO,
            conns: Vec::new(),
            log: Vec::new(),
            stored: None,
        }
    }

    /// The bans and mutes as the room last asked for them to be stored (`None`: never).
    pub fn stored(&self) -> Option<&[chat_core::moderation::Sanction]> {
        self.stored.as_deref()
    }

    /// The admin API's `request`, answered by the room at the harness's time; its outputs
    /// are carried out.
    pub fn admin(
        &mut self,
        request: chat_core::moderation::AdminRequest,
    ) -> chat_core::moderation::AdminReply {
        let reply = self.room.handle_admin(self.now, request);
        self.drain();
        reply
    }

    /// The names in the roster JSON client `conn` keeps from what it was told.
    pub fn roster(&self, conn: ConnId) -> Vec<String> {
        self.get(conn).roster.names().to_vec()
    }

    /// The room, for its getters.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// The room, to seed it before the first connection (say, with restored history).
    pub fn room_mut(&mut self) -> &mut Room {
        &mut self.room
    }

    /// The fake clock.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Opens a connection with no known peer address.
    pub fn connect(&mut self, wire: Wire) -> ConnId {
        self.open(wire, None)
    }

    /// Opens a connection from `peer`.
    pub fn connect_from(&mut self, wire: Wire, peer: IpAddr) -> ConnId {
        self.open(wire, Some(peer))
    }

    fn open(&mut self, wire: Wire, peer: Option<IpAddr>) -> ConnId {
        self.conns.push(Peer {
            wire,
            decoder: LineDecoder::new(self.room.config().max_line),
            inbox: Vec::new(),
            events: Vec::new(),
            closed: None,
            gone: false,
            roster: Roster::new(),
        });
        let conn = ConnId(self.conns.len() as u64);
        self.room.handle_open(self.now, conn, wire, peer);
        self.drain();
        conn
    }

    /// A line-wire connection sends one complete line, as the decoder would hand it over.
    pub fn line(&mut self, conn: ConnId, text: &str) {
        self.expect_open(conn, Wire::Line);
        self.room
            .handle_line(self.now, conn, Line::Text(text.to_owned()));
        self.drain();
    }

    /// Bytes arrive on a line-wire connection: they go through its [`LineDecoder`], and
    /// every line they complete is handed to the room, as a real driver does.
    pub fn raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.expect_open(conn, Wire::Line);
        let mut lines = Vec::new();
        self.peer(conn).decoder.feed(bytes, &mut lines);
        for l in lines {
            if self.is_closed(conn) {
                break; // A driver stops reading once the room closes the connection.
            }
            self.room.handle_line(self.now, conn, l);
            self.drain();
        }
    }

    /// End of input on a line-wire connection: an unfinished last line still counts, then
    /// the connection is gone.
    pub fn eof(&mut self, conn: ConnId) {
        self.expect_open(conn, Wire::Line);
        if let Some(l) = self.peer(conn).decoder.finish() {
            self.room.handle_line(self.now, conn, l);
            self.drain();
        }
        if !self.is_closed(conn) {
            self.disconnect(conn, Disconnect::Dropped);
        }
    }

    /// A JSON-wire connection sends one message.
    pub fn json(&mut self, conn: ConnId, text: &str) {
        self.expect_open(conn, Wire::Json);
        self.room.handle_json(self.now, conn, text);
        self.drain();
    }

    /// A JSON-wire connection sends a binary message.
    pub fn binary(&mut self, conn: ConnId) {
        self.expect_open(conn, Wire::Json);
        self.room.handle_binary(self.now, conn);
        self.drain();
    }

    /// The connection dropped (reset, end of input, write error).
    pub fn drop_conn(&mut self, conn: ConnId) {
        self.disconnect(conn, Disconnect::Dropped);
    }

    /// The driver gave up on a connection that stopped reading.
    pub fn too_slow(&mut self, conn: ConnId) {
        self.disconnect(conn, Disconnect::TooSlow);
    }

    fn disconnect(&mut self, conn: ConnId, why: Disconnect) {
        assert!(
            !self.is_closed(conn),
            "test bug: {conn:?} is already closed"
        );
        self.peer(conn).gone = true;
        self.room.handle_disconnect(self.now, conn, why);
        self.drain();
    }

    /// Moves the clock forward by `by`, waking the room at each deadline on the way, as a
    /// driver sleeping on `poll_timeout` would.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(deadline) = self.room.poll_timeout() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.room.handle_timeout(self.now);
            // Checks the deadline moved past `now`, so this loop always ends.
            self.drain();
        }
        self.now = target;
    }

    /// The server stops.
    pub fn shutdown(&mut self) {
        self.room.shutdown(self.now);
        self.drain();
    }

    /// What `conn` received since the last take. On the line wire, one item per line
    /// without its `\n`; the prompt, which has no newline, is an item of its own. On the
    /// JSON wire, one item per message.
    pub fn take(&mut self, conn: ConnId) -> Vec<String> {
        let peer = self.peer(conn);
        peer.events.clear();
        std::mem::take(&mut peer.inbox)
    }

    /// What a JSON-wire connection received since the last take, as typed events.
    pub fn take_events(&mut self, conn: ConnId) -> Vec<Event> {
        let peer = self.peer(conn);
        assert_eq!(peer.wire, Wire::Json, "{conn:?} is not a JSON client");
        peer.inbox.clear();
        std::mem::take(&mut peer.events)
    }

    /// Empties every inbox and the log.
    pub fn clear(&mut self) {
        for peer in &mut self.conns {
            peer.inbox.clear();
            peer.events.clear();
        }
        self.log.clear();
    }

    /// The room closed it, or the driver reported it gone.
    pub fn is_closed(&self, conn: ConnId) -> bool {
        let peer = self.get(conn);
        peer.closed.is_some() || peer.gone
    }

    /// Why the room closed it, if it did.
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.get(conn).closed
    }

    /// The log records written since the last call.
    pub fn log(&mut self) -> Vec<LogRecord> {
        std::mem::take(&mut self.log)
    }

    /// A line-wire user who has joined as `name`; its prompt and welcome are cleared.
    pub fn join(&mut self, name: &str) -> ConnId {
        let conn = self.connect(Wire::Line);
        self.line(conn, name);
        self.expect_joined(conn, name)
    }

    /// A JSON-wire user who has joined as `name`; its prompt and welcome are cleared.
    pub fn join_json(&mut self, name: &str) -> ConnId {
        let conn = self.connect(Wire::Json);
        let request = serde_json::json!({ "type": "join", "name": name });
        self.json(conn, &request.to_string());
        self.expect_joined(conn, name)
    }

    fn expect_joined(&mut self, conn: ConnId, name: &str) -> ConnId {
        let items = self.take(conn);
        assert_eq!(
            self.room.name_of(conn),
            Some(name),
            "{name:?} should have joined; it got {items:?}"
        );
        conn
    }

    fn expect_open(&self, conn: ConnId, wire: Wire) {
        let peer = self.get(conn);
        assert_eq!(peer.wire, wire, "test bug: {conn:?} speaks {:?}", peer.wire);
        assert!(!self.is_closed(conn), "test bug: input on closed {conn:?}");
    }

    fn get(&self, conn: ConnId) -> &Peer {
        let index = conn.0.checked_sub(1).map(|i| i as usize);
        index
            .and_then(|i| self.conns.get(i))
            .unwrap_or_else(|| panic!("{conn:?} never connected"))
    }

    fn peer(&mut self, conn: ConnId) -> &mut Peer {
        let index = conn.0.checked_sub(1).map(|i| i as usize);
        index
            .and_then(|i| self.conns.get_mut(i))
            .unwrap_or_else(|| panic!("{conn:?} never connected"))
    }

    /// Does what the room asks, checking the driver's invariants.
    fn drain(&mut self) {
        let mut count = 0;
        while let Some(output) = self.room.poll_output() {
            count += 1;
            assert!(
                count <= MAX_OUTPUTS_PER_INPUT,
                "livelock: more than {MAX_OUTPUTS_PER_INPUT} outputs for one input"
            );
            match output {
                Output::Send { conn, data } => {
                    let peer = self.peer(conn);
                    assert!(
                        peer.closed.is_none(),
                        "Send to {conn:?} after its Close: {data:?}"
                    );
                    assert!(!peer.gone, "Send to {conn:?} after it was gone: {data:?}");
                    assert!(!data.is_empty(), "empty Send to {conn:?}");
                    let text = std::str::from_utf8(&data)
                        .unwrap_or_else(|e| panic!("Send to {conn:?} is not UTF-8: {e}"));
                    match peer.wire {
                        Wire::Line => {
                            assert!(
                                text.ends_with('\n') || text == line::PROMPT,
                                "the line wire sent a partial line other than the prompt: \
                                 {text:?}"
                            );
                            for l in text.split_inclusive('\n') {
                                let l = l.strip_suffix('\n').unwrap_or(l);
                                assert!(
                                    !l.chars().any(is_forbidden),
                                    "{conn:?} was sent a control or invisible character: {l:?}"
                                );
                                peer.inbox.push(l.to_owned());
                            }
                        }
                        Wire::Json => {
                            let event = json::decode_event(text).unwrap_or_else(|e| {
                                panic!(
                                    "the JSON wire sent something that is no event ({e}): {text}"
                                )
                            });
                            assert!(
                                !json_has_forbidden_control(text),
                                "{conn:?} was sent a control or invisible character: {text}"
                            );
                            keep_roster(&mut peer.roster, &event);
                            peer.inbox.push(text.to_owned());
                            peer.events.push(event);
                        }
                    }
                }
                Output::Close { conn, reason } => {
                    let peer = self.peer(conn);
                    assert!(
                        peer.closed.is_none(),
                        "{conn:?} closed twice: {:?}, then {reason:?}",
                        peer.closed
                    );
                    assert!(!peer.gone, "Close of {conn:?} after it was gone");
                    peer.closed = Some(reason);
                }
                Output::Log(record) => {
                    let texts = match &record {
                        LogRecord::Join { name, .. } | LogRecord::Leave { name, .. } => {
                            [name.as_str(), ""]
                        }
                        LogRecord::Message(m) => [m.from.as_str(), m.text.as_str()],
                        LogRecord::Local { from, text } => [from.as_str(), text.as_str()],
                        LogRecord::OpRefused { name, .. } => [name.as_str(), ""],
                        LogRecord::Moderation { .. } => ["", ""],
                    };
                    assert!(
                        !texts.iter().any(|t| t.chars().any(is_forbidden)),
                        "the log was given a control or invisible character: {record:?}"
                    );
                    self.log.push(record);
                }
                Output::Publish(publish) => {
                    panic!("a room without `cluster` published {publish:?}")
                }
                Output::Sanctions(all) => self.stored = Some(all),
            }
        }
        if let Some(deadline) = self.room.poll_timeout() {
            assert!(
                deadline > self.now,
                "poll_timeout {deadline:?} is not after now {:?}: a driver would spin",
                self.now
            );
        }
        if self.room.presence_due().is_none() {
            self.check_rosters();
        }
    }

    /// Every joined JSON client that knows the whole roster knows the room's.
    fn check_rosters(&self) {
        let online = self.room.online();
        for (i, peer) in self.conns.iter().enumerate() {
            let conn = ConnId(i as u64 + 1);
            if peer.closed.is_some() || peer.gone || self.room.name_of(conn).is_none() {
                continue;
            }
            if peer.roster.is_complete() {
                assert_eq!(
                    peer.roster.names(),
                    online,
                    "{conn:?}'s roster, kept from what it was told, is not the room's"
                );
            }
        }
    }
}

/// Keeps a roster from one event as a browser client does, and checks that a digest to a
/// client that knows everyone online is not empty and counts what its roster then lists.
fn keep_roster(roster: &mut Roster, event: &Event) {
    roster.apply(event);
    if let Event::Presence {
        joined,
        left,
        count,
    } = event
        && roster.is_complete()
    {
        assert!(
            !joined.is_empty() || !left.is_empty(),
            "an empty digest was sent"
        );
        assert_eq!(
            roster.names().len(),
            *count,
            "a digest's count is not its roster's"
        );
    }
}

/// What `docs/protocol.md` says nobody may receive: C0 controls but tab, DEL, C1 controls.
pub fn is_forbidden_control(c: char) -> bool {
    (c < ' ' && c != '\t') || c == '\x7f' || ('\u{80}'..='\u{9f}').contains(&c)
}

/// What `docs/protocol.md` says nobody may receive beside the controls: the bidirectional
/// controls and marks, the zero-width and other invisible format characters it names, and
/// the line and paragraph separators (which become spaces). Written here independently of
/// `chat_core::text`, as the protocol states it.
pub fn is_forbidden_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{61c}'
            | '\u{200b}'
            | '\u{200c}'
            | '\u{2060}'
            | '\u{feff}'
            | '\u{ad}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Either of the above.
fn is_forbidden(c: char) -> bool {
    is_forbidden_control(c) || is_forbidden_invisible(c)
}

/// Whether any string in a JSON text holds a forbidden character, raw or escaped.
fn json_has_forbidden_control(text: &str) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if is_forbidden(c) {
                return true;
            }
            continue;
        }
        match chars.next() {
            Some('n' | 'r' | 'b' | 'f') => return true,
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16).unwrap_or(0);
                if char::from_u32(code).is_some_and(is_forbidden) {
                    return true;
                }
            }
            _ => {} // \\, \", \/ or \t
        }
    }
    false
}

/// Shorthand for the test files.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Shorthand for the test files.
pub fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// Shorthand for the test files.
pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
