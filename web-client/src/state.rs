//! [`ClientState`]: the client as a pure state machine, from socket and user events to effects.
//!
//! What the page shows and what it does next, given the events of its WebSocket and of its
//! user. No DOM, no socket, no clock, no randomness: the DOM layer feeds inputs in (with a
//! random number where jitter is wanted) and carries the returned [`Effect`]s out, the same
//! sans-IO shape as `chat-core`'s room.
//!
//! It keeps the message numbering (`epoch` and the last public `seq`) so that a reconnect
//! resumes where it left off and a duplicate is dropped, the roster (the core's [`Roster`])
//! with the operators among it, and the connection's life as one `Session` value
//! (`state/session.rs`): connect, join, rejoin after a drop with back-off, or stop after
//! `/quit`, a kick, a ban or a full room.

use std::collections::BTreeSet;

use chat_core::codec::line;
use chat_core::event::Action;
use chat_core::{ChatMessage, ErrorCode, Event, Request, Resume, Roster, name_key, validate_name};

use crate::input;

mod session;

pub use self::session::Connection;
use self::session::{Join, Replay, Restart, Session};

/// The first reconnect waits up to this long; each further attempt doubles it.
pub const BACKOFF_BASE_MS: u32 = 250;
/// The longest wait between two reconnect attempts.
pub const BACKOFF_MAX_MS: u32 = 4_000;
/// How often a rejoin refused with `name_taken` is tried again before giving up: the server
/// may not yet have noticed that this client's old connection died. With several nodes the
/// old connection may have been on a node that crashed, whose names are free only once the
/// others notice (`--node-timeout`, 10 s, and 2 more): 8 tries wait about 20 s in all.
pub const NAME_TAKEN_RETRIES: u32 = 8;

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
    /// Someone else was put out of the room by an operator (kicked or banned).
    Removed,
    /// What an operator did to you: kicked, banned or muted you, a ban turning you away, a
    /// line of yours that reached nobody because you are muted.
    Sanction,
    /// A notice to everyone from the operators.
    Notice,
    /// An operator's own lines: becoming one, and the confirmation of a ban, mute, unban or
    /// unmute.
    Operator,
    /// The answer to `/bans`: the bans and mutes in force, one a line.
    Bans,
    /// Anything else: answers to `/who` and `/help`, refusals, the client's own notices.
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
            Kind::Removed => "removed",
            Kind::Sanction => "sanction",
            Kind::Notice => "notice",
            Kind::Operator => "operator",
            Kind::Bans => "bans",
            Kind::System => "system",
        }
    }
}

/// A run of an entry's text, with the class of the element it goes in (none: plain text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// `from`, `to`, `name`, `by` (an operator) or `text`; `None` for the words in between.
    pub class: Option<&'static str>,
    /// The text, shown as text, never as markup.
    pub text: String,
}

impl Part {
    /// The element the run goes in, if any: a name in a `<bdi>`, any other text in a
    /// `<span>`, each with `dir="auto"`, so that its direction is its own (a Hebrew or Arabic
    /// name or message reads right to left) and cannot reorder the rest of the line.
    pub fn element(&self) -> Option<&'static str> {
        match self.class? {
            "from" | "to" | "name" | "by" => Some("bdi"),
            _ => Some("span"),
        }
    }
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

/// An entry in the core's own words, each of `fields`' values in a run of its class: `event`
/// is built with a marker in place of each value (a character of Unicode's private use area,
/// which the core's sentences never hold), its sentence rendered by `line::render`, and each
/// marker replaced by its value's run. The entry reads as the rendered event does, with every
/// name and reason isolated from the words around it.
fn worded(
    kind: Kind,
    fields: Vec<(&'static str, String)>,
    event: impl FnOnce(&[String]) -> Event,
) -> Entry {
    let markers: Vec<char> = (0..fields.len() as u32)
        .filter_map(|i| char::from_u32(0xE000 + i))
        .collect();
    let stand_ins: Vec<String> = markers.iter().map(|&m| String::from(m)).collect();
    let sentence = line::render(&event(&stand_ins));
    let mut fields: Vec<Option<(&'static str, String)>> = fields.into_iter().map(Some).collect();
    let mut parts = Vec::new();
    let mut between = String::new();
    for c in sentence.chars() {
        let field = markers
            .iter()
            .position(|&m| m == c)
            .and_then(|i| fields[i].take());
        match field {
            Some((class, value)) => {
                if !between.is_empty() {
                    parts.push(words(&std::mem::take(&mut between)));
                }
                parts.push(span(class, value));
            }
            None => between.push(c),
        }
    }
    if !between.is_empty() {
        parts.push(words(&between));
    }
    Entry::new(kind, parts)
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

/// The client: everything the page shows, and the connection's life.
#[derive(Debug)]
pub struct ClientState {
    /// The phase, with what only it needs.
    session: Session,
    /// The name to join and rejoin with (the room's spelling once welcomed).
    name: Option<String>,
    name_error: String,
    /// Reconnect attempts since the last success.
    attempt: u32,
    /// The room's run the log follows: the last welcome's epoch, `None` before the first
    /// welcome (the chat is shown from then on).
    epoch: Option<u64>,
    last_seq: u64,
    /// The last public message shown, to find it again in the history of a restarted server,
    /// which reloads its recent messages (with their `seq`) under a new epoch.
    last_shown: Option<ChatMessage>,
    /// The server said `shutdown`, and no history and no welcome of the same run has come
    /// since: everything the old run sent reached us, so a restarted server can have missed
    /// us nothing of its numbering.
    shutdown_seen: bool,
    /// Who is online, kept by the core's rule.
    roster: Roster,
    /// The operators among the roster, by [`name_key`]: yourself from the `operator` answer
    /// to your `/op`, the others from the last `who` answer (the room tells nobody when
    /// someone else becomes one). Whoever leaves is no longer one.
    operators: BTreeSet<String>,
    /// One more each time the roster, or who among it is an operator, changes.
    roster_version: u64,
    /// `who` answers still expected for the client's own silent asking.
    silent_who: u32,
    /// The token of the last timer set; a timer acts only with it, and only in the phase
    /// that set it (waiting to reconnect, or to retry a rejoin).
    timer_token: u32,
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
            session: Session::Closed,
            name: None,
            name_error: String::new(),
            attempt: 0,
            epoch: None,
            last_seq: 0,
            last_shown: None,
            shutdown_seen: false,
            roster: Roster::new(),
            operators: BTreeSet::new(),
            roster_version: 0,
            silent_who: 0,
            timer_token: 0,
        }
    }

    // ----- what the page shows -----

    /// The WebSocket's state.
    pub fn connection(&self) -> Connection {
        self.session.connection()
    }

    /// The status line's text.
    pub fn status_text(&self) -> String {
        match self.session.connection() {
            Connection::Connecting => "Connecting…".to_owned(),
            Connection::Open if matches!(self.session, Session::RetryingJoin { .. }) => {
                "Rejoining…".to_owned()
            }
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
        match self.session.connection() {
            Connection::Connecting | Connection::Waiting { .. } => "connecting",
            Connection::Open => "open",
            Connection::Closed => "closed",
        }
    }

    /// In the room on the current connection.
    pub fn joined(&self) -> bool {
        matches!(self.session, Session::Joined { .. })
    }

    /// The join form is shown: not in the room, and not about to rejoin by itself.
    pub fn show_join_form(&self) -> bool {
        !self.joined() && !self.session.rejoining()
    }

    /// The chat (log, users, message box) is shown: from the first welcome on.
    pub fn show_chat(&self) -> bool {
        self.epoch.is_some()
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

    /// Whether `name`, online, is known to be an operator (the list marks them `@`).
    pub fn is_operator(&self, name: &str) -> bool {
        self.operators.contains(&name_key(name))
    }

    /// You are an operator: your `/op` was answered so on this connection.
    pub fn operator(&self) -> bool {
        self.joined() && self.name.as_deref().is_some_and(|me| self.is_operator(me))
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
        self.connect(None)
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
        if matches!(
            self.session,
            Session::Joined { .. } | Session::Joining(_) | Session::Ending { join_sent: true }
        ) {
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
        match self.session {
            Session::Prompt | Session::RetryingJoin { .. } => vec![self.send_join(Join::User)],
            Session::Ending { .. } => {
                // The server is closing this socket: the join goes out on it all the same, and
                // is lost with it.
                let join = self.join_request();
                self.session = Session::Ending { join_sent: true };
                vec![join]
            }
            Session::Connecting { .. } => {
                self.session = Session::Connecting {
                    join: Some(Join::User),
                };
                Vec::new()
            }
            Session::Waiting { .. } | Session::Closed => self.connect(Some(Join::User)),
            // Turned away above.
            Session::Joined { .. } | Session::Joining(_) => Vec::new(),
        }
    }

    /// The message form was submitted with `text`.
    pub fn submit_message(&mut self, text: &str) -> Vec<Effect> {
        match input::parse_input(text) {
            Ok(None) => Vec::new(),
            Err(sentence) => vec![Effect::Append(Entry::system(sentence))],
            Ok(Some(_)) if !self.joined() => {
                vec![Effect::Append(Entry::system(NOT_JOINED_NOTICE))]
            }
            Ok(Some(request)) => vec![Effect::Send(request), Effect::ClearMessage],
        }
    }

    /// The WebSocket opened (once per [`Effect::Connect`]).
    pub fn opened(&mut self) -> Vec<Effect> {
        let join = match self.session {
            Session::Connecting { join } | Session::Waiting { join, .. } => join,
            Session::Closed => None,
            // Open already.
            _ => return Vec::new(),
        };
        match join {
            Some(join) => vec![self.send_join(join)],
            None => {
                self.session = Session::Prompt;
                self.attempt = 0;
                Vec::new()
            }
        }
    }

    /// The WebSocket closed (or never opened). `random` in `0.0..1.0` jitters the back-off.
    pub fn closed(&mut self, random: f64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let join = match self.session {
            Session::Ending { .. } | Session::Closed => {
                self.session = Session::Closed;
                self.forget_roster();
                return effects;
            }
            Session::Joined { .. } => {
                // Rejoin with the same name and pick up where the log stopped; an operator
                // was one on the lost connection only.
                if let Some(me) = &self.name
                    && self.operators.remove(&name_key(me))
                {
                    self.roster_version += 1;
                }
                effects.push(Effect::Append(Entry::system(LOST_NOTICE)));
                Some(Join::Rejoin { retries: 0 })
            }
            ref session => session.join(),
        };
        self.attempt += 1;
        let delay_ms = backoff_ms(self.attempt, random);
        self.session = Session::Waiting { delay_ms, join };
        effects.push(self.set_timer(delay_ms));
        effects
    }

    /// A timer set by an [`Effect::Timer`] went off.
    pub fn timer_fired(&mut self, token: u32) -> Vec<Effect> {
        if token != self.timer_token {
            return Vec::new();
        }
        match self.session {
            Session::Waiting { join, .. } => self.connect(join),
            Session::RetryingJoin { retries } => vec![self.send_join(Join::Rejoin { retries })],
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

    /// Applies one event from the server, received on the open socket.
    pub fn apply(&mut self, event: Event) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.roster.apply(&event) {
            self.roster_version += 1;
        }
        self.track_operators(&event);
        match event {
            Event::Prompt => {}
            Event::Full => {
                if self.show_chat() {
                    fx.push(Effect::Focus(Field::Name));
                }
                self.name_error = line::render(&Event::Full);
                self.session = Session::Ending { join_sent: false };
            }
            Event::Welcome {
                name,
                count,
                online,
                epoch,
            } => self.welcome(&mut fx, name, count, online, epoch),
            Event::History { messages, gap } => self.history(&mut fx, messages, gap),
            Event::Message(m) => self.message(&mut fx, m),
            // Out of contact with the other servers: shown, but no place in the order.
            Event::LocalMessage { from, text } => {
                let own = self
                    .name
                    .as_deref()
                    .is_some_and(|me| name_key(me) == name_key(&from));
                let kind = if own { Kind::Own } else { Kind::Message };
                fx.push(Effect::Append(Entry {
                    kind,
                    seq: None,
                    parts: vec![span("from", from), words(": "), span("text", text)],
                }));
            }
            event @ Event::Degraded => fx.push(Effect::Append(Entry::system(line::render(&event)))),
            Event::Restored { epoch } => {
                if self.epoch.is_some_and(|known| known != epoch) {
                    // The shared log began afresh: numbering starts again, and a resume
                    // from the old epoch will say what was missed.
                    self.epoch = Some(epoch);
                    self.last_seq = 0;
                }
                fx.push(Effect::Append(Entry::system(line::render(
                    &Event::Restored { epoch },
                ))));
            }
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
            event @ Event::Operator => fx.push(Effect::Append(Entry::new(
                Kind::Operator,
                vec![span("text", line::render(&event))],
            ))),
            Event::Sanctioned {
                action,
                name,
                by,
                reason,
            } => {
                // In place of the `left` line: who, by whom and why, in the core's words.
                let said = reason.is_some();
                let mut fields = vec![("name", name), ("by", by)];
                fields.extend(reason.map(|reason| ("text", reason)));
                let entry = worded(Kind::Removed, fields, |m| Event::Sanctioned {
                    action,
                    name: m[0].clone(),
                    by: m[1].clone(),
                    reason: said.then(|| m[2].clone()),
                });
                fx.push(Effect::Append(entry));
            }
            Event::YouWere { action, by, reason } => {
                let sentence = line::render(&Event::YouWere {
                    action,
                    by: by.clone(),
                    reason: reason.clone(),
                });
                let said = reason.is_some();
                let mut fields = vec![("by", by)];
                fields.extend(reason.map(|reason| ("text", reason)));
                let entry = worded(Kind::Sanction, fields, |m| Event::YouWere {
                    action,
                    by: m[0].clone(),
                    reason: said.then(|| m[1].clone()),
                });
                match action {
                    // Still in, unheard: said, and nothing else changes.
                    Action::Mute => fx.push(Effect::Append(entry)),
                    // Put out: back to the name form with the sentence, and never back in
                    // by itself, or a kick would be undone at once.
                    Action::Kick | Action::Ban => self.sent_away(&mut fx, entry, sentence),
                }
            }
            event @ Event::Banned { .. } => {
                // Turned away at the door or at the name: the form says for how long, and
                // nothing is tried again by itself.
                let sentence = line::render(&event);
                let entry = Entry::new(Kind::Sanction, vec![span("text", sentence.clone())]);
                self.sent_away(&mut fx, entry, sentence);
            }
            Event::Moderated {
                change,
                name,
                minutes,
            } => {
                let entry = worded(Kind::Operator, vec![("name", name)], |m| Event::Moderated {
                    change,
                    name: m[0].clone(),
                    minutes,
                });
                fx.push(Effect::Append(entry));
            }
            // One line for the heading, one for each ban or mute, as nc shows them.
            event @ Event::Bans { .. } => fx.push(Effect::Append(Entry::new(
                Kind::Bans,
                vec![span("text", line::render(&event))],
            ))),
            Event::Notice { text } => {
                let entry = worded(Kind::Notice, vec![("text", text)], |m| Event::Notice {
                    text: m[0].clone(),
                });
                fx.push(Effect::Append(entry));
            }
            Event::Error { code, message } => self.error(&mut fx, code, message),
            event @ (Event::Goodbye | Event::IdleTimeout | Event::NameTimeout) => {
                if self.show_chat() {
                    fx.push(Effect::Append(Entry::system(line::render(&event))));
                }
                self.session = Session::Ending { join_sent: false };
                self.forget_roster();
                if self.show_chat() {
                    fx.push(Effect::Focus(Field::Name));
                }
            }
            event @ Event::Shutdown => {
                // The close that follows reconnects with back-off until the server is back.
                self.shutdown_seen = true;
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
        let restart = match self.epoch {
            Some(known) if known != epoch => Some(if self.shutdown_seen {
                Restart::Announced
            } else {
                Restart::Unannounced
            }),
            _ => {
                // The same run (or the first): its shutdown, if any, is behind us.
                self.shutdown_seen = false;
                None
            }
        };
        if self.epoch != Some(epoch) {
            // Another run of the server's numbering: the old seqs mean nothing in it.
            self.epoch = Some(epoch);
            self.last_seq = 0;
        }
        let rejoined = self.session.rejoining();
        self.session = Session::Joined {
            replay: Some(Replay {
                framed: !rejoined,
                restart,
            }),
        };
        self.name = Some(name.clone());
        self.attempt = 0;
        self.name_error.clear();
        let line = if rejoined {
            REJOINED_NOTICE.to_owned()
        } else {
            line::render(&Event::Welcome {
                name,
                count,
                online,
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

    fn history(&mut self, fx: &mut Vec<Effect>, mut messages: Vec<ChatMessage>, gap: bool) {
        let replay = match &mut self.session {
            Session::Joined { replay } => replay.take(),
            _ => None,
        };
        let (framed, restart) = replay.map_or((false, None), |r| (r.framed, r.restart));
        // After a restart the room flags a gap, since it cannot know the old run's tail. But
        // a server that reloaded its recent messages keeps their `seq`: if the last message
        // shown here is among them, what follows it is exactly what was missed, and nothing
        // is lost.
        let found = restart
            .and(self.last_shown.as_ref())
            .and_then(|last| messages.iter().position(|m| m == last));
        if let Some(at) = found {
            self.last_seq = messages[at].seq;
            messages.drain(..=at);
        }
        // Otherwise: if the old server said goodbye with `shutdown`, we had all of its tail;
        // and a replay from seq 1 is all of the new run (with `--history 0` nothing is
        // replayed and this cannot be told, so the notice stays away).
        let whole_new_run = messages.first().is_none_or(|m| m.seq == 1);
        let restart_only = restart == Some(Restart::Announced) && whole_new_run;
        if gap && found.is_none() && !restart_only {
            fx.push(Effect::Append(Entry::system(GAP_NOTICE)));
        }
        // nc's own frame lines, with the count: "--- Recent messages (2) ---".
        let frame = framed && !messages.is_empty();
        if frame {
            let header = line::history_header(messages.len());
            fx.push(Effect::Append(Entry::system(header)));
        }
        for m in messages {
            self.message(fx, m);
        }
        if frame {
            fx.push(Effect::Append(Entry::system(line::HISTORY_FOOTER)));
        }
        self.shutdown_seen = false;
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
        let join = match self.session {
            Session::Joined { .. } => {
                let kind = if code == ErrorCode::Muted {
                    // Your line reached nobody: said where it cannot be missed.
                    Kind::Sanction
                } else {
                    Kind::System
                };
                fx.push(Effect::Append(Entry::new(
                    kind,
                    vec![span("text", message)],
                )));
                return;
            }
            ref session => session.join(),
        };
        if let Some(Join::Rejoin { retries }) = join
            && code == ErrorCode::NameTaken
            && retries < NAME_TAKEN_RETRIES
        {
            // Most likely our own old connection, which the server has not seen die yet.
            let retries = retries + 1;
            self.session = Session::RetryingJoin { retries };
            fx.push(self.set_timer(backoff_ms(retries, 1.0)));
            return;
        }
        // Given up: the form shows why.
        self.name_error = message;
        self.session = match self.session {
            Session::Ending { .. } => Session::Ending { join_sent: false },
            Session::Connecting { .. } => Session::Connecting { join: None },
            Session::Waiting { delay_ms, .. } => Session::Waiting {
                delay_ms,
                join: None,
            },
            Session::Closed => Session::Closed,
            Session::Prompt
            | Session::Joining(_)
            | Session::RetryingJoin { .. }
            | Session::Joined { .. } => Session::Prompt,
        };
        if matches!(join, Some(Join::Rejoin { .. })) || self.show_chat() {
            fx.push(Effect::Focus(Field::Name));
        }
    }

    /// The server put this client out (a kick, a ban) or turned it away (a ban) and closes
    /// the connection: `entry` goes in the log (once the chat is shown), `sentence` on the
    /// name form, and when the socket closes the client stays closed until the user joins
    /// again.
    fn sent_away(&mut self, fx: &mut Vec<Effect>, entry: Entry, sentence: String) {
        self.name_error = sentence;
        self.session = Session::Ending { join_sent: false };
        self.forget_roster();
        if self.show_chat() {
            fx.push(Effect::Append(entry));
            fx.push(Effect::Focus(Field::Name));
        }
    }

    /// Out of the room for good: who is in it is no longer known.
    fn forget_roster(&mut self) {
        let knew_operators = !self.operators.is_empty();
        self.operators.clear();
        if self.roster.clear() || knew_operators {
            self.roster_version += 1;
        }
    }

    /// Keeps the operators among the roster with what `event` says: a `who` answer names
    /// them all, `operator` makes you one, and whoever leaves (or joins anew, you included)
    /// is none.
    fn track_operators(&mut self, event: &Event) {
        let before = self.operators.len();
        let mut changed = false;
        match event {
            Event::Who { operators, .. } => {
                let now: BTreeSet<String> = operators.iter().map(|n| name_key(n)).collect();
                changed = now != self.operators;
                self.operators = now;
            }
            Event::Operator => {
                if let Some(me) = &self.name {
                    self.operators.insert(name_key(me));
                }
            }
            Event::Welcome { name, online, .. } => {
                // A welcome is a new connection, never an operator's; of the others, those
                // still listed keep their mark.
                self.operators.remove(&name_key(name));
                if !self.operators.is_empty() {
                    let listed: BTreeSet<String> = online.iter().map(|n| name_key(n)).collect();
                    self.operators.retain(|key| listed.contains(key));
                }
            }
            Event::Left { name } | Event::Sanctioned { name, .. } => {
                self.operators.remove(&name_key(name));
            }
            Event::Presence { left, .. } => {
                for name in left {
                    self.operators.remove(&name_key(name));
                }
            }
            _ => {}
        }
        if changed || self.operators.len() != before {
            self.roster_version += 1;
        }
    }

    /// Sends `join` on the open socket and waits for its answer.
    fn send_join(&mut self, join: Join) -> Effect {
        self.session = Session::Joining(join);
        self.join_request()
    }

    fn join_request(&self) -> Effect {
        Effect::Send(Request::Join {
            name: self.name.clone().unwrap_or_default(),
            resume: self.resume(),
        })
    }

    /// Opens a new socket, to send `join` on once it is open.
    fn connect(&mut self, join: Option<Join>) -> Vec<Effect> {
        self.session = Session::Connecting { join };
        vec![Effect::Connect]
    }

    /// A timer for the phase just entered: its token makes every earlier timer stale.
    fn set_timer(&mut self, delay_ms: u32) -> Effect {
        self.timer_token = self.timer_token.wrapping_add(1);
        Effect::Timer {
            delay_ms,
            token: self.timer_token,
        }
    }
}

#[cfg(test)]
mod tests;
