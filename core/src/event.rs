//! What the room tells a user: one typed value per event, whatever the wire.
//!
//! The codecs in [`crate::codec`] render each as nc text or as JSON, so every wire carries the
//! same events.

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;

/// A public message with its place in the room's single order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The room's sequence number: 1 for the first public message, one more for each after.
    /// A client that remembers the last one it saw can tell a gap or a duplicate.
    pub seq: u64,
    /// The sender's name.
    pub from: String,
    /// The text, already cleaned.
    pub text: String,
}

/// Something the room sends to one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Asks for a name.
    Prompt,
    /// The room is at `--max-users`; the connection is closed after this.
    Full,
    /// You are in: your name, and who is online (at most [`WELCOME_NAMES`] of them listed).
    Welcome {
        /// Your name as the room spells it.
        name: String,
        /// How many users are online, you included.
        count: usize,
        /// Their names, sorted; cut short in a large room (`/who` lists everyone).
        online: Vec<String>,
        /// Names this run of the room's message numbering: `seq`s are comparable only within
        /// one epoch. A client that reconnects sends it back with the last `seq` it saw.
        epoch: u64,
    },
    /// The recent public messages, oldest first, sent once right after `Welcome`. After a
    /// join that resumes, only the messages after the resume point (and nothing if none).
    History {
        /// The messages.
        messages: Vec<ChatMessage>,
        /// True when messages between the resume point and the first one listed are gone
        /// (the room keeps only `--history` of them, or it restarted): the client missed some.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        gap: bool,
    },
    /// A public message.
    Message(ChatMessage),
    /// A public message while this node has lost contact with the others (cluster mode's local
    /// mode): only the people of this node get it, it has no place in the room's order and is
    /// no resume point.
    LocalMessage {
        /// The sender's name.
        from: String,
        /// The text, already cleaned.
        text: String,
    },
    /// Someone entered the room.
    Joined {
        /// Who.
        name: String,
    },
    /// Someone left the room.
    Left {
        /// Who.
        name: String,
    },
    /// Who came and went in a large room (above `--announce-limit` users), gathered over up to
    /// `--announce-interval` instead of a `Joined` or `Left` each: what changed since you last
    /// saw the roster (your welcome, a `who` answer or the previous digest). Apply `left`
    /// before `joined`: a name may leave and come back spelled differently.
    Presence {
        /// Names now online that were not, sorted like the roster.
        joined: Vec<String>,
        /// Names no longer online (as they were spelled), sorted like the roster.
        left: Vec<String>,
        /// How many users are online now.
        count: usize,
    },
    /// A private message to you.
    Private {
        /// The sender.
        from: String,
        /// The message.
        text: String,
    },
    /// Your private message was delivered.
    PrivateSent {
        /// The recipient, as the room spells the name.
        to: String,
        /// The message.
        text: String,
    },
    /// The answer to `/who`.
    Who {
        /// Everyone online, sorted.
        online: Vec<String>,
        /// Those of them who are operators (the line wire marks them `@`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        operators: Vec<String>,
    },
    /// The answer to `/help`.
    Help {
        /// Each command's usage and description.
        commands: Vec<HelpEntry>,
    },
    /// Something you sent was refused; you stay connected.
    Error {
        /// What kind of refusal, for programs.
        code: ErrorCode,
        /// The sentence a person reads.
        message: String,
    },
    /// The answer to `/quit`; the connection is closed after this.
    Goodbye,
    /// You were silent for `--idle-timeout`; the connection is closed after this.
    IdleTimeout,
    /// You did not join within `--name-timeout` of connecting; the connection is closed after
    /// this.
    NameTimeout,
    /// The server is stopping; the connection is closed after this.
    Shutdown,
    /// Cluster mode: this node lost contact with the other servers; until [`Event::Restored`]
    /// only the people on this node hear you.
    Degraded,
    /// Cluster mode: back in contact with the other servers; the room is one again.
    Restored {
        /// The room's epoch now: a new one when the shared log began afresh (the `seq`s
        /// seen before mean nothing in it); otherwise the welcome's.
        epoch: u64,
    },
    /// The answer to a right `/op`: you are an operator until you leave.
    Operator,
    /// `name` was put out of the room by an operator (a kick or a ban), told to everyone
    /// else; it stands for the `left` event.
    Sanctioned {
        /// Kick or ban.
        action: Action,
        /// Who was put out.
        name: String,
        /// The operator.
        by: String,
        /// Why, when the operator said (`no reason given` on the line wire otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator kicked, banned or muted you. After a kick or a ban the connection is
    /// closed.
    YouWere {
        /// Kick, ban or mute.
        action: Action,
        /// The operator.
        by: String,
        /// Why, when the operator said (never shown for a mute).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// This address or name is banned for `minutes` more; the connection is closed after this.
    Banned {
        /// Whole minutes left, rounded up.
        minutes: u64,
    },
    /// The operator's confirmation of a ban, mute, unban or unmute.
    Moderated {
        /// What now holds.
        change: Change,
        /// Whose.
        name: String,
        /// For how many minutes (a ban or mute).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes: Option<u64>,
    },
    /// The answer to `/bans`: the bans and mutes in force.
    Bans {
        /// Each one, bans first.
        bans: Vec<BanEntry>,
    },
    /// A notice to everyone from the operators (the admin API).
    Notice {
        /// The text.
        text: String,
    },
}

/// What an operator did to someone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Put out, free to come back.
    Kick,
    /// Put out and kept out.
    Ban,
    /// Kept from being heard.
    Mute,
}

impl Action {
    /// The participle the lines use: `kicked`, `banned`, `muted`.
    pub fn done(self) -> &'static str {
        match self {
            Action::Kick => "kicked",
            Action::Ban => "banned",
            Action::Mute => "muted",
        }
    }
}

/// What an operator's ban, mute, unban or unmute made hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The name is banned.
    Banned,
    /// The name is muted.
    Muted,
    /// The ban is lifted.
    Unbanned,
    /// The mute is lifted.
    Unmuted,
}

/// One ban or mute in force, as `/bans` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    /// Ban or mute.
    pub kind: crate::moderation::SanctionKind,
    /// The name it holds.
    pub name: String,
    /// The address a ban also holds (IPv4, or an IPv6 /64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whole minutes left, rounded up.
    pub minutes: u64,
    /// The operator who made it.
    pub by: String,
    /// Why, when said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How many names the welcome lists before saying "and N more".
pub const WELCOME_NAMES: usize = 50;

/// How many names of each list a digest shows on the line wire before "and N others"; the
/// JSON wire always carries them all.
pub const PRESENCE_NAMES: usize = 10;

/// One line of `/help`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpEntry {
    /// How to type it.
    pub usage: String,
    /// What it does.
    pub description: String,
}

impl Event {
    /// An error event with its code and sentence.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Event {
        Event::Error {
            code,
            message: message.into(),
        }
    }

    /// The `/help` answer, from [`crate::command::COMMANDS`], and for an operator
    /// [`crate::command::OPERATOR_COMMANDS`] after them.
    pub fn help_for(operator: bool) -> Event {
        let extra: &[(&str, &str)] = if operator {
            crate::command::OPERATOR_COMMANDS
        } else {
            &[]
        };
        Event::Help {
            commands: crate::command::COMMANDS
                .iter()
                .chain(extra)
                .map(|(usage, description)| HelpEntry {
                    usage: (*usage).to_owned(),
                    description: (*description).to_owned(),
                })
                .collect(),
        }
    }

    /// The `/help` answer of someone who is not an operator.
    pub fn help() -> Event {
        Event::help_for(false)
    }
}
