//! The client's life as one value: which phase it is in, and what only that phase needs.
//!
//! Eight booleans used to say this (joined, ever joined, want to join, join in flight, an
//! automatic rejoin, frame the history, a new epoch, reconnect on close), and most of their
//! combinations could not happen. Here each phase is a variant and carries its own data, so a
//! join in flight on a closed socket, a retry timer without an open socket or a history
//! framed after a silent rejoin cannot be written down. What outlives every phase (the name,
//! the numbering and whether the last run announced its shutdown, the roster, the back-off's
//! attempts) stays in [`ClientState`](super::ClientState); "ever joined" is the numbering's
//! epoch being known.

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

/// Where the client is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Session {
    /// No socket, and none until the user joins: before `start`, and once the server has
    /// closed a connection after saying why (`goodbye`, `idle_timeout`, `name_timeout`,
    /// `full`, a kick or a ban: `you_were`, `banned`).
    Closed,
    /// A socket is opening; `join`, if any, is sent as soon as it is open.
    Connecting {
        /// The join to send once open.
        join: Option<Join>,
    },
    /// Open, at the name prompt, asking nothing: the name form waits for the user.
    Prompt,
    /// Open; this join was sent and its answer has not come.
    Joining(Join),
    /// Open; the client's own rejoin was refused as taken and goes out again when the timer
    /// fires.
    RetryingJoin {
        /// `name_taken` refusals retried so far, this one included.
        retries: u32,
    },
    /// In the room.
    Joined {
        /// How to read the `history` that follows the welcome; taken when it comes.
        replay: Option<Replay>,
    },
    /// Open, but the server has said it closes this connection (`goodbye`, `idle_timeout`,
    /// `name_timeout`, `full`, `you_were` kicked or banned, `banned`): when it does, the
    /// client stays closed. A kicked or banned user who came back by itself would undo the
    /// operator's kick at once, and be turned away again and again.
    Ending {
        /// The user submitted a name in the moment before the close, and it was sent on this
        /// socket: a second submit sends nothing more.
        join_sent: bool,
    },
    /// Closed; a new socket once the reconnect timer fires, then `join`, if any.
    Waiting {
        /// The wait, as scheduled.
        delay_ms: u32,
        /// The join to send once open again.
        join: Option<Join>,
    },
}

/// A join the client means to make, and whose it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Join {
    /// The user's, from the name form: the form stays up, and a refusal is shown on it.
    User,
    /// The client's own after a drop, with the same name: no form, and a `name_taken`
    /// refusal is retried, since the server may not yet have noticed that the old connection
    /// died.
    Rejoin {
        /// `name_taken` refusals retried so far.
        retries: u32,
    },
}

/// How to read the `history` that follows a welcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Replay {
    /// The welcome was the user's join: the history is framed as nc frames it. After a silent
    /// rejoin it simply continues the log.
    pub(super) framed: bool,
    /// The welcome came from another run of the server than the last one (a new epoch).
    pub(super) restart: Option<Restart>,
}

/// How the server's previous run ended, as far as the client saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Restart {
    /// It said `shutdown` first: everything it had sent before reached the client.
    Announced,
    /// It went away without a word (a crash, a network cut).
    Unannounced,
}

impl Session {
    /// The socket's state in this phase.
    pub(super) fn connection(&self) -> Connection {
        match *self {
            Session::Closed => Connection::Closed,
            Session::Connecting { .. } => Connection::Connecting,
            Session::Waiting { delay_ms, .. } => Connection::Waiting { delay_ms },
            Session::Prompt
            | Session::Joining(_)
            | Session::RetryingJoin { .. }
            | Session::Joined { .. }
            | Session::Ending { .. } => Connection::Open,
        }
    }

    /// The join wanted in this phase, sent or not.
    pub(super) fn join(&self) -> Option<Join> {
        match *self {
            Session::Connecting { join } | Session::Waiting { join, .. } => join,
            Session::Joining(join) => Some(join),
            Session::RetryingJoin { retries } => Some(Join::Rejoin { retries }),
            Session::Closed | Session::Prompt | Session::Joined { .. } | Session::Ending { .. } => {
                None
            }
        }
    }

    /// The client is rejoining by itself: the form stays hidden meanwhile.
    pub(super) fn rejoining(&self) -> bool {
        matches!(self.join(), Some(Join::Rejoin { .. }))
    }
}
