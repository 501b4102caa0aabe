//! Several nodes, one room: what a [`Room`](crate::Room) in cluster mode asks of the shared log
//! and what it is told back. Pure data, no I/O.
//!
//! In cluster mode ([`Config::cluster`](crate::Config::cluster)) one ordered log, held by an
//! engine every node reaches (Redis in the tokio driver, an in-memory one in the simulation),
//! is the room's truth. The room never numbers a message, admits a name or announces a join by
//! itself: it asks ([`Publish`], as [`Output::Publish`](crate::Output::Publish)) and applies
//! what the log says happened ([`Logged`], through `Room::handle_logged`), in log order, on
//! every node alike. So every node shows the same order, `seq` is a position in that log, and
//! any node can answer a resume.
//!
//! The engine's side of the contract, which both engines keep:
//! - `Claim` appends `Joined` unless the name key (or the look key) is held by a member of a
//!   node whose lease is live: then it is refused ([`Refusal::Taken`], [`Refusal::LooksLike`]).
//!   A member of a node whose lease ran out is reaped first. A claim repeated for a connection
//!   that already holds the key appends nothing.
//! - `Say` appends `Message` with the next `seq`, unless the sender's node lapsed or does not
//!   hold `key` for `conn` ([`Refusal::NotMember`]), or the log keeps a mute on `key` that has
//!   not ended ([`Refusal::Muted`]: so that no line the log orders after a mute is heard, even
//!   one on its way when the mute was made); a `(node, origin)` seen before appends nothing (a
//!   retry after an ambiguous timeout).
//! - `Release` appends `Left` if `key` is held by that node and connection, else nothing.
//! - `Moderate` appends `Moderated` as it is; a ban or mute is also kept (replacing the one
//!   of that kind on that name key) until it ends, and a lift drops it, for the snapshot. A
//!   kick also writes out the member of its name key, if any (`Left` with
//!   [`LeaveReason::Kicked`] right after): so that a node that never applies the entry (out of
//!   contact then) leaves no one in the room whom everyone else was told was kicked. Like a
//!   claim or a message, it is refused when the sender's node lapsed.
//! - `Tell` reaches the room of `node` as `Room::handle_told`, and the sender's room learns
//!   whether anyone was there to hear it (`Room::handle_tell_result`). It is never logged.
//! - A node whose lease runs out has each of its members written out as `Left` with
//!   [`LeaveReason::Lost`], by whichever node reaps first.
//! - A [`Snapshot`] is one atomic view: the epoch, the last `seq`, every member and the recent
//!   messages; the entries after it are read from where it was taken.

use crate::event::ChatMessage;
use crate::moderation::{Moderation, Sanction};
use crate::room::conn::ConnId;
use crate::room::reason::LeaveReason;

/// What the room asks the shared log to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    /// `conn` (at the name prompt, or already in and rejoining after its node was out of
    /// contact) asks for `name`.
    Claim {
        /// The asking connection, on this node.
        conn: ConnId,
        /// [`name_key`](crate::name_key) of `name`: what must be unique.
        key: String,
        /// [`look_key`](crate::look_key) of `name`: no two online names may share it.
        look: String,
        /// The name as it will be shown.
        name: String,
    },
    /// A public message.
    Say {
        /// The sender, on this node.
        conn: ConnId,
        /// This node's number for the message, increasing: the log drops a repeat.
        origin: u64,
        /// The sender's name key: the log checks the sender is still a member.
        key: String,
        /// The sender's name.
        from: String,
        /// The text, already cleaned.
        text: String,
    },
    /// A user of this node left.
    Release {
        /// Its connection, on this node.
        conn: ConnId,
        /// Its name key.
        key: String,
        /// Its name.
        name: String,
        /// Why.
        reason: LeaveReason,
    },
    /// An operator's action, for every node to apply in the log's order. A ban, mute or
    /// lift is also kept with the log (its [`Snapshot::sanctions`]) until it ends.
    Moderate {
        /// The operator's connection on this node, told if it cannot be sent (`None` for
        /// the admin API's and the room's own).
        conn: Option<ConnId>,
        /// What it does.
        moderation: Moderation,
    },
    /// A private message to a user on another node.
    Tell {
        /// The recipient's node.
        node: String,
        /// The sender's connection, on this node: told the outcome.
        from_conn: ConnId,
        /// The sender's name.
        from: String,
        /// The recipient's name key.
        to_key: String,
        /// The recipient's name, as the room spells it.
        to: String,
        /// The text, already cleaned.
        text: String,
    },
}

/// One entry of the shared log, as every node applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logged {
    /// An operator's action ([`Publish::Moderate`]).
    Moderated(Moderation),
    /// A public message, numbered.
    Message {
        /// Its place in the room's order.
        seq: u64,
        /// The sender's name.
        from: String,
        /// The text.
        text: String,
        /// The sender's node.
        node: String,
        /// The sender node's number for it.
        origin: u64,
    },
    /// A user joined, on `node`.
    Joined {
        /// The name key.
        key: String,
        /// The name.
        name: String,
        /// Where the user is connected.
        node: String,
        /// Its connection there.
        conn: ConnId,
    },
    /// A user left.
    Left {
        /// The name key.
        key: String,
        /// The name.
        name: String,
        /// Why; [`LeaveReason::Lost`] when its node stopped answering.
        reason: LeaveReason,
    },
}

/// A user of the room, as the log's members say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The name key.
    pub key: String,
    /// The name.
    pub name: String,
    /// Its node.
    pub node: String,
    /// Its connection there.
    pub conn: ConnId,
}

/// The room as the log holds it at one instant: what a node starts from when it gets in
/// contact, at start and after a loss.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The log's epoch: `seq`s are comparable within one epoch only. A log lost and begun
    /// afresh, or whose tail was lost, has a new one, so no number is ever reused.
    pub epoch: u64,
    /// The last message's `seq` (0 before the first).
    pub seq: u64,
    /// Everyone in the room, sorted by key.
    pub members: Vec<Member>,
    /// The recent messages, oldest first, the last one numbered `seq` (when any are held).
    pub recent: Vec<ChatMessage>,
    /// The bans and mutes the log keeps (those over may be among them).
    pub sanctions: Vec<Sanction>,
}

/// Why the log refused a [`Publish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The name key is held by a user of a live node.
    Taken,
    /// The look key is held: by this name.
    LooksLike(String),
    /// The sender is not a member (its node lapsed, or it is rejoining).
    NotMember,
    /// The sender is muted in the sanctions the log keeps.
    Muted,
    /// The queue to the engine is full: nothing was sent.
    Busy,
}
