//! One connection as the room holds it: its id and wire, and its state from open to close.

use std::net::IpAddr;

use super::flood::Bucket;
use crate::command::Resume;
use crate::lobby::Ticket;
use crate::time::Timestamp;

/// A connection, named by the driver. Ids must not be reused while the connection is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Which codec a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wire {
    /// nc / telnet text lines (`docs/protocol.md`). Senders get no echo of their public
    /// messages.
    Line,
    /// One JSON object per message (WebSocket). A sender's public message comes back to it
    /// once, with its sequence number, as the confirmation of its place in the room's order.
    Json,
}

/// Per-connection state.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) wire: Wire,
    /// The peer's address, as the driver reported it; logged on join.
    pub(super) peer: Option<IpAddr>,
    /// `None` while at the name prompt.
    pub(super) name: Option<String>,
    /// When it opened: the name timeout counts from here.
    pub(super) opened: Timestamp,
    pub(super) last_active: Timestamp,
    /// Where this connection's entry in the timer table is, so it can be removed exactly.
    pub(super) timer: Option<Timestamp>,
    /// Its flood control bucket.
    pub(super) flood: Bucket,
    /// Its place in the room's lobby while at the name prompt, if it counts there.
    pub(super) waiting: Option<Ticket>,
    /// Cluster mode: the name it asked the shared log for, and its resume point, while the
    /// claim is pending.
    pub(super) claim: Option<(String, Option<Resume>)>,
    /// It gave the operator secret.
    pub(super) operator: bool,
    /// When it joined.
    pub(super) joined: Timestamp,
}

impl Conn {
    /// A connection opened at `now`, at the name prompt.
    pub(super) fn new(now: Timestamp, wire: Wire, peer: Option<IpAddr>) -> Self {
        Conn {
            wire,
            peer,
            name: None,
            opened: now,
            last_active: now,
            timer: None,
            flood: Bucket::new(now),
            waiting: None,
            claim: None,
            operator: false,
            joined: now,
        }
    }
}
