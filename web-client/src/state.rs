//! The client as a pure state machine: what the page shows and what it does next, given the
//! events of its WebSocket and of its user. No DOM, no socket, no clock, no randomness: the
//! DOM layer feeds inputs in (with a random number where jitter is wanted) and carries the
//! returned [`Effect`]s out, the same sans-IO shape as `chat-core`'s room.
//!
//! It keeps the message numbering (`epoch` and the last public `seq`) so that a reconnect
//! resumes where it left off and a duplicate is dropped, the roster, and the connection's
//! life: connect, join, rejoin after a drop with back-off, or stop after `/quit`.

use chat_core::codec::line;
use chat_core::{ChatMessage, ErrorCode, Event, Request, Resume, Roster, name_key, validate_name};

use crate::input;

/// The first reconnect waits up to this long; each further attempt doubles it.
pub const BACKOFF_BASE_MS: u32 = 250;
/// The longest wait between two reconnect attempts.
pub const BACKOFF_MAX_MS: u32 = 4_000;
/// How often a rejoin refused with `name_taken` is tried again before giving up: the server
/// may not yet have noticed that this client's old connection died.
pub const NAME_TAKEN_RETRIES: u32 = 5;

/// The notice shown when a resumed `history` says some messages are gone.
pub const GAP_NOTICE: &str = "Some messages were missed while you were disconnected.";
/// The notice shown in the log when the connection drops while joined.
pub const LOST_NOTICE: &str = "Connection lost; reconnecting…";
/// The notice shown when the client rejoined by itself after a drop.
pub const REJOINED_NOTICE: &str = "Reconnected.";
/// The notice shown when a message is typed while not in the room.
pub const NOT_JOINED_NOTICE: &str = "You are not in the chat right now; nothing was sent.";

/// How long to wait before reconnect attempt `attempt` (1 for the first): 250 ms doubling up
/// to 4 s, of which a random half is taken off (`random` in `0.0..1.0`) so that many clients
/// dropped at once do not all come back in the same instant.
pub fn backoff_ms(attempt: u32, random: f64) -> u32 {
    let doublings = attempt.saturating_sub(1).min(16);
    let ceiling = BACKOFF_BASE_MS
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX_MS);
    let half = ceiling / 2;
    half + (f64::from(half) * random.clamp(0.0, 1.0)) as u32
}

/// The kind of a log entry; each looks different on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Someone else's public message.
    Message,
    /// Your own public message, as the server echoed it back with its place in the order.
    Own,
    /// Someone entered the room.
    Joined,
    /// Someone left the room.
    Left,
    /// A private message to you.
    Private,
    /// Your private message, delivered.
    PrivateSent,
    /// Anything else: answers to `/who` and `/help`, refusals, notices.
    System,
}

impl Kind {
    /// The CSS class that marks the kind (besides `entry`).
    pub fn class(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Own => "own",
            Kind::Joined => "joined",
            Kind::Left => "left",
            Kind::Private => "private",
            Kind::PrivateSent => "private-sent",
            Kind::System => "system",
        }
    }
}

/// A run of an entry's text, with the class of the `span` it goes in (none: plain text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// `from`, `to`, `name` or `text`; `None` for the words in between.
    pub class: Option<&'static str>,
    /// The text, shown as text, never as markup.
    pub text: String,
}

/// One line of the message log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What kind of line.
    pub kind: Kind,
    /// The public message's `seq`, for public messages.
    pub seq: Option<u64>,
    /// The text, in runs.
    pub parts: Vec<Part>,
}

impl Entry {
    fn new(kind: Kind, parts: Vec<Part>) -> Self {
        Entry {
            kind,
            seq: None,
            parts,
        }
    }

    /// A system line.
    pub fn system(text: impl Into<String>) -> Self {
        Entry::new(Kind::System, vec![span("text", text)])
    }

    /// The whole text, as a user reads it.
    pub fn text(&self) -> String {
        self.parts.iter().map(|p| p.text.as_str()).collect()
    }
}

fn span(class: &'static str, text: impl Into<String>) -> Part {
    Part {
        class: Some(class),
        text: text.into(),
    }
}

fn words(text: &str) -> Part {
    Part {
        class: None,
        text: text.to_owned(),
    }
}

/// Which input box gets the keyboard focus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The name box of the join form.
    Name,
    /// The message box.
    Message,
}

/// Something the DOM layer must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Open a new WebSocket (the old one, if any, is gone).
    Connect,
    /// Send this request on the open WebSocket.
    Send(Request),
    /// Call [`ClientState::timer_fired`] with `token` after `delay_ms`.
    Timer {
        /// How long to wait.
        delay_ms: u32,
        /// Hand this back; a stale token is ignored.
        token: u32,
    },
    /// Add this line at the end of the log.
    Append(Entry),
    /// Empty the message box: what it held was sent.
    ClearMessage,
    /// Move the keyboard focus.
    Focus(Field),
}

/// The WebSocket, as far as the client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Opening.
    Connecting,
    /// Open.
    Open,
    /// Closed; a new attempt is due after this many milliseconds.
    Waiting {
        /// The wait, as scheduled.
        delay_ms: u32,
    },
    /// Closed, and staying so until the user joins again.
    Closed,
}

/// What a pending timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Reconnect,
    RetryJoin,
}

/// The client: everything the page shows, and the connection's life.
#[derive(Debug)]
pub struct ClientState {
    connection: Connection,
    /// The name to join and rejoin with (the room's spelling once welcomed).
    name: Option<String>,
    /// Welcomed on the current connection.
    joined: bool,
    /// Welcomed at least once: the chat is shown from then on.
    ever_joined: bool,
    /// Join as soon as the socket opens (the user asked, or a rejoin after a drop).
    want_join: bool,
    /// A join was sent and its answer has not come.
    join_in_flight: bool,
    /// The join wanted is the client's own rejoin, not the user's: no form, retries on
    /// `name_taken`.
    auto_rejoin: bool,
    /// The welcome just shown was the user's join, not a silent rejoin: a `history` after it
    /// is framed as the recent messages, as nc shows it; after a rejoin it simply continues.
    frame_history: bool,
    /// The server said it was shutting down: everything it had sent before reached us, so a
    /// restarted server (a new epoch) can miss us nothing of the old numbering.
    saw_shutdown: bool,
    /// The last welcome started a new epoch (the server restarted since the previous one).
    new_epoch: bool,
    name_taken_retries: u32,
    /// Reconnect attempts since the last success.
    attempt: u32,
    /// Reconnect when the current socket closes; false after `goodbye`, `idle_timeout`, `full`.
    reconnect_on_close: bool,
    name_error: String,
    epoch: Option<u64>,
    last_seq: u64,
    /// The last public message shown, to find it again in the history of a restarted server,
    /// which reloads its recent messages (with their `seq`) under a new epoch.
    last_shown: Option<ChatMessage>,
    /// Who is online, kept by the core's rule.
    roster: Roster,
    /// One more each time the roster changes.
    roster_version: u64,
    /// `who` answers still expected for the client's own silent asking.
    silent_who: u32,
    timer_token: u32,
    pending: Option<Pending>,
}

impl Default for ClientState {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientState {
    /// A client that has not connected yet.
    pub fn new() -> Self {
        ClientState {
            connection: Connection::Closed,
            name: None,
            joined: false,
            ever_joined: false,
            want_join: false,
            join_in_flight: false,
            auto_rejoin: false,
            frame_history: false,
            saw_shutdown: false,
            new_epoch: false,
            name_taken_retries: 0,
            attempt: 0,
            reconnect_on_close: true,
            name_error: String::new(),
            epoch: None,
            last_seq: 0,
            last_shown: None,
            roster: Roster::new(),
            roster_version: 0,
            silent_who: 0,
            timer_token: 0,
            pending: None,
        }
    }

    // ----- what the page shows -----

    /// The WebSocket's state.
    pub fn connection(&self) -> Connection {
        self.connection
    }

    /// The status line's text.
    pub fn status_text(&self) -> String {
        match self.connection {
            Connection::Connecting => "Connecting…".to_owned(),
            Connection::Open if self.pending == Some(Pending::RetryJoin) => "Rejoining…".to_owned(),
            Connection::Open => "Connected".to_owned(),
            Connection::Waiting { delay_ms } => {
                format!("Reconnecting in {} s…", delay_ms.div_ceil(1000).max(1))
            }
            Connection::Closed => "Disconnected".to_owned(),
        }
    }

    /// The status line's `data-state`: `open`, `connecting` (also while waiting to reconnect
    /// by itself) or `closed` (and staying so until the user joins).
    pub fn status_state(&self) -> &'static str {
        match self.connection {
            Connection::Connecting | Connection::Waiting { .. } => "connecting",
            Connection::Open => "open",
            Connection::Closed => "closed",
        }
    }

    /// In the room on the current connection.
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// The join form is shown: not in the room, and not about to rejoin by itself.
    pub fn show_join_form(&self) -> bool {
        !self.joined && !self.auto_rejoin
    }

    /// The chat (log, users, message box) is shown: from the first welcome on.
    pub fn show_chat(&self) -> bool {
        self.ever_joined
    }

    /// Why the name was refused, by this client or by the server; empty when it was not.
    pub fn name_error(&self) -> &str {
        &self.name_error
    }

    /// The name joined with, or being joined with.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Who is online, in the room's order (case-insensitive).
    pub fn roster(&self) -> &[String] {
        self.roster.names()
    }

    /// How many are online; more than [`roster`](Self::roster) lists while the full list is
    /// being asked for.
    pub fn count(&self) -> usize {
        self.roster.count()
    }

    /// Changes whenever the roster or the count does, so that the page redraws the list only
    /// then.
    pub fn roster_version(&self) -> u64 {
        self.roster_version
    }

    /// Where a rejoin would resume: the last welcome's epoch and the highest public `seq`
    /// seen in it.
    pub fn resume(&self) -> Option<Resume> {
        self.epoch.map(|epoch| Resume {
            epoch,
            seq: self.last_seq,
        })
    }

    // ----- inputs -----

    /// The page has loaded: connect, so that the status line tells whether the server is there.
    pub fn start(&mut self) -> Vec<Effect> {
        self.connect()
    }

    /// The name box changed: say at once what is wrong with it (an empty box is not wrong
    /// yet).
    pub fn name_typed(&mut self, raw: &str) {
        self.name_error = match validate_name(raw) {
            Err(err) if !raw.trim().is_empty() => err.to_string(),
            _ => String::new(),
        };
    }

    /// The join form was submitted.
    pub fn submit_name(&mut self, raw: &str) -> Vec<Effect> {
        if self.joined || self.join_in_flight {
            return Vec::new();
        }
        let name = match validate_name(raw) {
            Ok(name) => name,
            Err(err) => {
                self.name_error = err.to_string();
                return vec![Effect::Focus(Field::Name)];
            }
        };
        self.name_error.clear();
        self.name = Some(name);
        self.want_join = true;
        self.auto_rejoin = false;
        self.name_taken_retries = 0;
        match self.connection {
            Connection::Open => {
                self.cancel_timer();
                vec![self.send_join()]
            }
            Connection::Connecting => Vec::new(),
            Connection::Waiting { .. } | Connection::Closed => self.connect(),
        }
    }

    /// The message form was submitted with `text`.
    pub fn submit_message(&mut self, text: &str) -> Vec<Effect> {
        match input::parse_input(text) {
            Ok(None) => Vec::new(),
            Err(sentence) => vec![Effect::Append(Entry::system(sentence))],
            Ok(Some(_)) if !self.joined => {
                vec![Effect::Append(Entry::system(NOT_JOINED_NOTICE))]
            }
            Ok(Some(request)) => vec![Effect::Send(request), Effect::ClearMessage],
        }
    }

    /// The WebSocket opened.
    pub fn opened(&mut self) -> Vec<Effect> {
        self.connection = Connection::Open;
        if self.want_join {
            vec![self.send_join()]
        } else {
            self.attempt = 0;
            Vec::new()
        }
    }

    /// The WebSocket closed (or never opened). `random` in `0.0..1.0` jitters the back-off.
    pub fn closed(&mut self, random: f64) -> Vec<Effect> {
        self.cancel_timer();
        self.join_in_flight = false;
        let was_joined = std::mem::take(&mut self.joined);
        if !self.reconnect_on_close {
            self.connection = Connection::Closed;
            self.want_join = false;
            self.auto_rejoin = false;
            self.forget_roster();
            return Vec::new();
        }
        let mut effects = Vec::new();
        if was_joined {
            // Rejoin with the same name and pick up where the log stopped.
            self.want_join = true;
            self.auto_rejoin = true;
            effects.push(Effect::Append(Entry::system(LOST_NOTICE)));
        }
        self.attempt += 1;
        let delay_ms = backoff_ms(self.attempt, random);
        self.connection = Connection::Waiting { delay_ms };
        effects.push(self.schedule(Pending::Reconnect, delay_ms));
        effects
    }

    /// A timer set by an [`Effect::Timer`] went off.
    pub fn timer_fired(&mut self, token: u32) -> Vec<Effect> {
        if token != self.timer_token {
            return Vec::new();
        }
        match self.pending.take() {
            Some(Pending::Reconnect) if matches!(self.connection, Connection::Waiting { .. }) => {
                self.connect()
            }
            Some(Pending::RetryJoin) if self.connection == Connection::Open && self.want_join => {
                vec![self.send_join()]
            }
            _ => Vec::new(),
        }
    }

    /// A text message arrived on the WebSocket.
    pub fn received(&mut self, text: &str) -> Vec<Effect> {
        match chat_core::codec::json::decode_event(text) {
            Ok(event) => self.apply(event),
            Err(_) => vec![Effect::Append(Entry::system(
                "The server sent something this client does not understand.",
            ))],
        }
    }

    /// Applies one event from the server.
    pub fn apply(&mut self, event: Event) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.roster.apply(&event) {
            self.roster_version += 1;
        }
        match event {
            Event::Prompt => {}
            Event::Full => {
                if self.ever_joined {
                    fx.push(Effect::Focus(Field::Name));
                }
                self.stop_joining(line::render(&Event::Full));
                self.reconnect_on_close = false;
            }
            Event::Welcome {
                name,
                count,
                online,
                epoch,
            } => self.welcome(&mut fx, name, count, online, epoch),
            Event::History { mut messages, gap } => {
                // After a restart the room flags a gap, since it cannot know the old run's
                // tail. But a server that reloaded its recent messages keeps their `seq`: if
                // the last message shown here is among them, what follows it is exactly what
                // was missed, and nothing is lost.
                let found = self
                    .new_epoch
                    .then_some(self.last_shown.as_ref())
                    .flatten()
                    .and_then(|last| messages.iter().position(|m| m == last));
                if let Some(at) = found {
                    self.last_seq = messages[at].seq;
                    messages.drain(..=at);
                }
                // Otherwise: if the old server said goodbye with `shutdown`, we had all of its
                // tail; and a replay from seq 1 is all of the new run (with `--history 0`
                // nothing is replayed and this cannot be told, so the notice stays away).
                let whole_new_run = messages.first().is_none_or(|m| m.seq == 1);
                let restart_only = self.new_epoch && self.saw_shutdown && whole_new_run;
                if gap && found.is_none() && !restart_only {
                    fx.push(Effect::Append(Entry::system(GAP_NOTICE)));
                }
                // nc's own frame lines, with the count: "--- Recent messages (2) ---".
                let frame = std::mem::take(&mut self.frame_history) && !messages.is_empty();
                if frame {
                    let header = line::history_header(messages.len());
                    fx.push(Effect::Append(Entry::system(header)));
                }
                for m in messages {
                    self.message(&mut fx, m);
                }
                if frame {
                    fx.push(Effect::Append(Entry::system(line::HISTORY_FOOTER)));
                }
                self.saw_shutdown = false;
            }
            Event::Message(m) => self.message(&mut fx, m),
            Event::Joined { name } => {
                fx.push(Effect::Append(Entry::new(
                    Kind::Joined,
                    vec![span("name", name), words(" joined the chat")],
                )));
            }
            Event::Left { name } => {
                fx.push(Effect::Append(Entry::new(
                    Kind::Left,
                    vec![span("name", name), words(" left the chat")],
                )));
            }
            // The digest of a large room, shown as nc users read it.
            event @ Event::Presence { .. } => {
                fx.push(Effect::Append(Entry::system(line::render(&event))))
            }
            Event::Private { from, text } => fx.push(Effect::Append(Entry::new(
                Kind::Private,
                vec![
                    words("Private from "),
                    span("from", from),
                    words(": "),
                    span("text", text),
                ],
            ))),
            Event::PrivateSent { to, text } => fx.push(Effect::Append(Entry::new(
                Kind::PrivateSent,
                vec![
                    words("Private to "),
                    span("to", to),
                    words(": "),
                    span("text", text),
                ],
            ))),
            event @ Event::Who { .. } => {
                // The answer to the client's own asking, after a welcome cut short, is not shown.
                if self.silent_who > 0 {
                    self.silent_who -= 1;
                } else {
                    fx.push(Effect::Append(Entry::system(line::render(&event))));
                }
            }
            event @ Event::Help { .. } => {
                fx.push(Effect::Append(Entry::system(line::render(&event))))
            }
            Event::Error { code, message } => self.error(&mut fx, code, message),
            event @ (Event::Goodbye | Event::IdleTimeout | Event::NameTimeout) => {
                if self.ever_joined {
                    fx.push(Effect::Append(Entry::system(line::render(&event))));
                }
                self.reconnect_on_close = false;
                self.leave();
                self.forget_roster();
                self.want_join = false;
                self.auto_rejoin = false;
                if self.ever_joined {
                    fx.push(Effect::Focus(Field::Name));
                }
            }
            event @ Event::Shutdown => {
                // The close that follows reconnects with back-off until the server is back.
                self.saw_shutdown = true;
                fx.push(Effect::Append(Entry::system(line::render(&event))));
            }
        }
        fx
    }

    // ----- the steps -----

    fn welcome(
        &mut self,
        fx: &mut Vec<Effect>,
        name: String,
        count: usize,
        online: Vec<String>,
        epoch: u64,
    ) {
        self.new_epoch = self.epoch.is_some_and(|known| known != epoch);
        if !self.new_epoch {
            self.saw_shutdown = false;
        }
        if self.epoch != Some(epoch) {
            // Another run of the server's numbering: the old seqs mean nothing in it.
            self.epoch = Some(epoch);
            self.last_seq = 0;
        }
        let rejoined = self.auto_rejoin;
        self.frame_history = !rejoined;
        self.cancel_timer();
        self.name = Some(name.clone());
        self.joined = true;
        self.ever_joined = true;
        self.want_join = false;
        self.join_in_flight = false;
        self.auto_rejoin = false;
        self.name_taken_retries = 0;
        self.attempt = 0;
        self.name_error.clear();
        let line = if rejoined {
            REJOINED_NOTICE.to_owned()
        } else {
            line::render(&Event::Welcome {
                name,
                count,
                online: online.clone(),
                epoch,
            })
        };
        fx.push(Effect::Append(Entry::system(line)));
        if !self.roster.is_complete() {
            // The welcome lists only the first names: ask for all, without showing the answer.
            self.silent_who += 1;
            fx.push(Effect::Send(Request::Who));
        }
        if !rejoined {
            fx.push(Effect::Focus(Field::Message));
        }
    }

    fn message(&mut self, fx: &mut Vec<Effect>, m: ChatMessage) {
        if m.seq <= self.last_seq {
            return; // Seen already, before a reconnect.
        }
        self.last_seq = m.seq;
        self.last_shown = Some(m.clone());
        let own = self
            .name
            .as_deref()
            .is_some_and(|me| name_key(me) == name_key(&m.from));
        let kind = if own { Kind::Own } else { Kind::Message };
        fx.push(Effect::Append(Entry {
            kind,
            seq: Some(m.seq),
            parts: vec![span("from", m.from), words(": "), span("text", m.text)],
        }));
    }

    fn error(&mut self, fx: &mut Vec<Effect>, code: ErrorCode, message: String) {
        if self.joined {
            fx.push(Effect::Append(Entry::system(message)));
            return;
        }
        self.join_in_flight = false;
        if code == ErrorCode::NameTaken
            && self.auto_rejoin
            && self.name_taken_retries < NAME_TAKEN_RETRIES
        {
            // Most likely our own old connection, which the server has not seen die yet.
            self.name_taken_retries += 1;
            let delay_ms = backoff_ms(self.name_taken_retries, 1.0);
            fx.push(self.schedule(Pending::RetryJoin, delay_ms));
            return;
        }
        let was_auto = self.auto_rejoin;
        self.stop_joining(message);
        if was_auto || self.ever_joined {
            fx.push(Effect::Focus(Field::Name));
        }
    }

    /// Gives up on joining and shows the join form with `why`.
    fn stop_joining(&mut self, why: String) {
        self.cancel_timer();
        self.want_join = false;
        self.join_in_flight = false;
        self.auto_rejoin = false;
        self.name_error = why;
    }

    fn leave(&mut self) {
        self.joined = false;
        self.join_in_flight = false;
    }

    /// Out of the room for good: who is in it is no longer known.
    fn forget_roster(&mut self) {
        if self.roster.clear() {
            self.roster_version += 1;
        }
    }

    fn send_join(&mut self) -> Effect {
        self.join_in_flight = true;
        Effect::Send(Request::Join {
            name: self.name.clone().unwrap_or_default(),
            resume: self.resume(),
        })
    }

    fn connect(&mut self) -> Vec<Effect> {
        self.cancel_timer();
        self.connection = Connection::Connecting;
        self.reconnect_on_close = true;
        vec![Effect::Connect]
    }

    fn schedule(&mut self, what: Pending, delay_ms: u32) -> Effect {
        self.timer_token = self.timer_token.wrapping_add(1);
        self.pending = Some(what);
        Effect::Timer {
            delay_ms,
            token: self.timer_token,
        }
    }

    fn cancel_timer(&mut self) {
        self.timer_token = self.timer_token.wrapping_add(1);
        self.pending = None;
    }
}

#[cfg(test)]
mod tests;
