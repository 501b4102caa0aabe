//! A connection as the driver names it, and the wire it speaks.

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
