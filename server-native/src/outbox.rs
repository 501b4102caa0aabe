//! A connection's outbox: the two ends between the room task, which hands it encoded frames,
//! and the connection's writer, which sends them.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use chat_core::CloseReason;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::frames::{self, FrameReceiver, FrameSender};
use crate::metrics::Probe;

/// The room's end of a connection: already encoded frames go to its writer; `queued` counts
/// the bytes not yet written, which bounds what a peer that does not read can cost.
#[derive(Debug)]
pub struct Outbox {
    pub frames: FrameSender,
    pub queued: Arc<AtomicUsize>,
    /// Cancelled to drop the connection at once, without flushing what is queued: the peer
    /// does not read it anyway.
    pub abort: CancellationToken,
    /// Told why, just before `frames` closes, when the room closes the connection; for a
    /// transport (WebSocket) whose close says why.
    pub close: Option<oneshot::Sender<CloseReason>>,
    /// Counts what the room hands over, and stamps a frame that finds the queue empty.
    pub probe: Probe,
}

/// The connection's end of its [`Outbox`]: the frames its writer drains, the count of bytes
/// not yet written, and the room's signal to drop the connection at once.
#[derive(Debug)]
pub struct Outgoing {
    pub frames: FrameReceiver,
    pub queued: Arc<AtomicUsize>,
    pub abort: CancellationToken,
    /// The writer records a stamped frame's latency with it.
    pub probe: Probe,
}

impl Outbox {
    /// A connection's outbox and its own end of it; `close` for a transport whose close says
    /// why (WebSocket).
    pub fn new(close: Option<oneshot::Sender<CloseReason>>, probe: Probe) -> (Outbox, Outgoing) {
        let (frames, outgoing) = frames::queue();
        let (queued, abort) = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
        let outbox = Outbox {
            frames,
            queued: queued.clone(),
            abort: abort.clone(),
            close,
            probe: probe.clone(),
        };
        let outgoing = Outgoing {
            frames: outgoing,
            queued,
            abort,
            probe,
        };
        (outbox, outgoing)
    }
}
