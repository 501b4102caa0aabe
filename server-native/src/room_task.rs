//! The room actor: one task owns the [`Room`], feeds it the inputs that connection tasks send,
//! wakes it at its deadlines, and routes what it outputs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use chat_core::{CloseReason, ConnId, Disconnect, Line, Output, Room, Timestamp, Wire};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::frames::{self, FrameReceiver, FrameSender};
use crate::log::MessageLog;
use crate::metrics::{Metrics, Probe};

/// Inputs taken per wake-up before the loop looks at timers and shutdown again.
const INPUT_BATCH: usize = 64;

/// What connection tasks tell the room.
#[derive(Debug)]
pub enum RoomInput {
    /// A connection was accepted; its outbox is where the room's output for it goes.
    Open {
        conn: ConnId,
        wire: Wire,
        peer: Option<IpAddr>,
        outbox: Outbox,
    },
    /// A line from a line-wire connection.
    Line { conn: ConnId, line: Line },
    /// A text message from a JSON-wire (WebSocket) connection.
    Json { conn: ConnId, text: Utf8Bytes },
    /// A binary message from a WebSocket connection, which the room refuses.
    Binary { conn: ConnId },
    /// The connection ended on its side.
    Disconnect { conn: ConnId, why: Disconnect },
}

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

/// The room's clock: `Timestamp`s count from `epoch`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.epoch.elapsed())
    }

    pub fn instant(&self, at: Timestamp) -> Instant {
        self.epoch + at.as_duration()
    }
}

/// Runs the room until `shutdown` is cancelled (or every sender is gone), then tells everyone
/// and closes every connection.
pub async fn run(
    mut room: Room,
    mut inputs: mpsc::Receiver<RoomInput>,
    shutdown: CancellationToken,
    log: Option<&MessageLog>,
    max_queue: usize,
    metrics: Metrics,
) {
    let clock = metrics.clock();
    let mut router = Router {
        outboxes: HashMap::new(),
        log,
        max_queue,
        metrics,
    };
    loop {
        let deadline = room.poll_timeout().map(|at| clock.instant(at));
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            input = inputs.recv() => {
                let Some(input) = input else { break };
                router.feed(&mut room, clock.now(), input);
                // Take whatever else is already waiting, up to a bound so that timers and
                // shutdown are still looked at under load.
                for _ in 0..INPUT_BATCH {
                    let Ok(input) = inputs.try_recv() else { break };
                    router.feed(&mut room, clock.now(), input);
                }
            }
            () = sleep_until(deadline) => {
                room.handle_timeout(clock.now());
                router.drain(&mut room, clock.now());
            }
        }
    }
    room.shutdown(clock.now());
    router.drain(&mut room, clock.now());
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Router<'a> {
    outboxes: HashMap<ConnId, Outbox>,
    log: Option<&'a MessageLog>,
    max_queue: usize,
    metrics: Metrics,
}

impl Router<'_> {
    fn feed(&mut self, room: &mut Room, now: Timestamp, input: RoomInput) {
        match input {
            RoomInput::Open {
                conn,
                wire,
                peer,
                outbox,
            } => {
                self.metrics.track(&outbox.queued);
                self.outboxes.insert(conn, outbox);
                room.handle_open(now, conn, wire, peer);
            }
            RoomInput::Line { conn, line } => room.handle_line(now, conn, line),
            RoomInput::Json { conn, text } => room.handle_json(now, conn, &text),
            RoomInput::Binary { conn } => room.handle_binary(now, conn),
            RoomInput::Disconnect { conn, why } => {
                self.outboxes.remove(&conn);
                room.handle_disconnect(now, conn, why);
            }
        }
        self.drain(room, now);
    }

    fn drain(&mut self, room: &mut Room, now: Timestamp) {
        while let Some(output) = room.poll_output() {
            match output {
                Output::Send { conn, data } => self.send(room, now, conn, data),
                Output::Close { conn, reason } => {
                    tracing::debug!(?conn, ?reason, "closing");
                    self.metrics.closed(reason);
                    // Dropping the sender lets the writer flush what is queued, then close.
                    if let Some(mut outbox) = self.outboxes.remove(&conn) {
                        if let Some(close) = outbox.close.take() {
                            let _ = close.send(reason);
                        }
                    }
                }
                Output::Log(record) => {
                    self.metrics.logged(&record);
                    if let Some(log) = self.log {
                        log.append(SystemTime::now(), record);
                    }
                }
            }
        }
        self.metrics.room_stats(room.stats());
    }

    fn send(&mut self, room: &mut Room, now: Timestamp, conn: ConnId, data: Bytes) {
        let Some(outbox) = self.outboxes.get(&conn) else {
            return;
        };
        let len = data.len();
        let queued = outbox.queued.load(Ordering::Acquire);
        // One frame always fits in an empty queue, so a large history replay is never a
        // reason to drop anyone; beyond that, the bound holds.
        let why = if queued > 0 && queued + len > self.max_queue {
            tracing::info!(?conn, queued, "dropping a connection that does not read");
            self.metrics.too_slow();
            Disconnect::TooSlow
        } else {
            // Counted before the writer can see the frame, so its subtraction never underflows.
            let was = outbox.queued.fetch_add(len, Ordering::AcqRel);
            self.metrics.enqueued(&outbox.probe, was, len, now);
            match outbox.frames.send(data) {
                Ok(()) => return,
                Err(_) => Disconnect::Dropped, // The writer has already gone.
            }
        };
        if let Some(outbox) = self.outboxes.remove(&conn) {
            outbox.abort.cancel();
        }
        room.handle_disconnect(now, conn, why);
    }
}
