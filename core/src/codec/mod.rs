//! Pure codecs: bytes to requests and events to bytes, for each wire.
//!
//! - [`line`](mod@line): the nc / telnet text protocol of `docs/protocol.md`, with an
//!   incremental, bounded line decoder, and the words of each event for clients that show
//!   them as nc does.
//! - [`json`]: the WebSocket protocol, one JSON object per message, for the same events.

pub mod json;
pub mod line;
