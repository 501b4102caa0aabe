//! Why connections close and users leave: [`CloseReason`], [`Disconnect`], [`LeaveReason`].

use serde::{Deserialize, Serialize};

/// Why the room asks the driver to close a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The user typed `/quit`.
    Quit,
    /// Silent for longer than the idle timeout.
    IdleTimeout,
    /// Still at the name prompt when the name timeout ran out.
    NameTimeout,
    /// Refused at the door: `max_users` reached.
    Full,
    /// The server is stopping.
    Shutdown,
    /// An operator kicked the user.
    Kicked,
    /// Banned: by an operator just now, or turned away because a ban holds.
    Banned,
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
    /// Its server stopped answering the others (cluster mode): it is gone from the room.
    Lost,
    /// Kicked by an operator.
    Kicked,
    /// Banned by an operator.
    Banned,
}

impl LeaveReason {
    /// Put out by an operator: everyone was told by the kick or ban line, which stands for
    /// the leave.
    pub fn put_out(self) -> bool {
        matches!(self, LeaveReason::Kicked | LeaveReason::Banned)
    }
}
