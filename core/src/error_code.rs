//! The kinds of refusal an `error` event names: a code for programs beside the sentence.
//!
//! A leaf of its own so that the command parser (whose refusals carry a code) and the events
//! (which list the commands in `/help`) both take it from here without importing each other.

use serde::{Deserialize, Serialize};

/// The kinds of refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A line or WebSocket message over `--max-line`; it was discarded.
    LineTooLong,
    /// The name breaks the name rules.
    NameInvalid,
    /// Someone online already has that name (compared case-insensitively).
    NameTaken,
    /// The name looks too much like the name of someone online (the same confusable
    /// skeleton, UTS #39, whatever the case).
    NameConfusable,
    /// A `/word` that is not a command.
    UnknownCommand,
    /// A command with missing arguments.
    Usage,
    /// `/msg` to a name nobody online has.
    NoSuchUser,
    /// Flood control dropped your line.
    TooFast,
    /// A JSON message that is not a request.
    BadRequest,
    /// A request that needs a name, before joining.
    NotJoined,
    /// A second `join` after joining.
    AlreadyJoined,
    /// The address has joined too often of late; the message says how long to wait.
    TooManyJoins,
    /// The address already has its share of connections at the name prompt; this one is
    /// closed.
    TooManyConnections,
    /// Cluster mode: the queue to the shared log is full; nothing was sent, try again.
    Busy,
    /// `/op` with a token that is not the operator secret.
    WrongToken,
    /// `/op` tried too often from one address; wait a minute.
    TooManyTries,
    /// An operator's command from someone who is not one.
    NotOperator,
    /// You are muted: your public line reached nobody.
    Muted,
    /// `/unban` or `/unmute` of a name with no ban or mute.
    NoSuchSanction,
}
