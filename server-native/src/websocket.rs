//! One WebSocket connection, upgraded on `/ws` by the HTTP listener: the core's JSON wire, one
//! event per text message, with keepalive pings and a close that says why.
//!
//! A connection is a reader and a writer, like a line one (`line.rs`), over the two halves
//! of one `WebSocketStream`. The reader hands each text message to the room; the writer drains
//! the same kind of outbox as TCP (pre-encoded `Bytes`, counted in `queued`, bounded by
//! `--max-queue`), feeding whatever is queued and flushing once, and sends the keepalive pings.
//! Whoever ends first decides how the connection closes (see [`Settings`] and `docs/protocol.md`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chat_core::{CloseReason, ConnId, Disconnect, Wire};
use futures_util::stream::{FusedStream, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::frames::FrameReceiver;
use crate::http::upgrade::Upgraded;
use crate::metrics::{Metrics, Probe};
use crate::outbox::Outgoing;
use crate::room_task::{self, RoomInput};
use crate::stream::{WRITE_BATCH, linger};

/// How long a closing connection waits for the peer to answer its close frame (or, when the
/// peer closed first, for the last frames to go out). Well within the shutdown grace period.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Room in the write buffer for pongs and the close frame beyond the events.
const CONTROL_ROOM: usize = 64 * 1024;
/// tungstenite's read buffer, held by every connection; larger messages take several reads.
const READ_BUFFER: usize = 1024;
/// How much tungstenite gathers before it writes (see [`Settings`]'s `config`).
const WRITE_BUFFER: usize = 2048;

type Ws<S> = WebSocketStream<S>;

/// How WebSocket connections behave; the same for all of them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--max-line`: the room refuses a longer message with `line_too_long`.
    pub max_line: usize,
    /// `--ws-ping`: the keepalive interval; `None` sends no pings and never declares a peer
    /// dead.
    pub ping: Option<Duration>,
    /// `--max-queue`: the most output the room queues for one connection.
    pub max_queue: usize,
}

impl Settings {
    /// The largest message (or frame) read at all: four times `--max-line` plus 1 KiB. Up to
    /// it, a message over `--max-line` is read whole, the room refuses it with `line_too_long`
    /// and the connection stays, like an overlong line on TCP; past it, the reader stops and
    /// the connection is closed with 1009 (message too big), so that nobody can make the server
    /// buffer megabytes.
    pub fn hard_cap(&self) -> usize {
        self.max_line.saturating_mul(4).saturating_add(1024)
    }

    /// The most tungstenite's write buffer may hold: a batch, the largest event the room lets
    /// a connection have queued (`--max-queue`), and room for control frames. Without a bound,
    /// a peer that sends pings and reads none of the pongs would grow it without end (100 MB
    /// of pings, 100 MB of memory); at the bound further pongs are coalesced into one, and an
    /// event that no longer fits ends the connection as too slow (1008).
    pub fn max_write_buffer(&self) -> usize {
        WRITE_BATCH
            .saturating_add(self.max_queue)
            .saturating_add(CONTROL_ROOM)
    }

    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            // Allocated up front for every connection and kept: a chat message fits.
            .read_buffer_size(READ_BUFFER)
            // Frames fed between two flushes are written whenever this much has gathered.
            // tungstenite keeps its write buffer at the largest size it ever reached, so this
            // stays small: a burst of events then costs a few more writes, not kilobytes held
            // by every connection that once had one.
            .write_buffer_size(WRITE_BUFFER)
            .max_write_buffer_size(self.max_write_buffer())
            .max_message_size(Some(self.hard_cap()))
            .max_frame_size(Some(self.hard_cap()))
    }
}

/// How the reader ended.
#[derive(Debug)]
enum ReadEnd {
    /// The peer closed (a close frame, whose answer tungstenite has queued, or end of input).
    Closed,
    /// Nothing at all, not even a pong, for two ping intervals.
    Dead,
    /// The peer broke the protocol, sent a message past the hard cap, or the socket failed.
    Failed(WsError),
    /// The room has stopped (the server is shutting down).
    RoomGone,
}

/// How the connection ended, which decides the close frame.
#[derive(Debug)]
enum End {
    /// The room closed it, saying why (`None`: the room went away without a word).
    Room(Option<CloseReason>),
    /// The room dropped it: its output was not read.
    TooSlow,
    Read(ReadEnd),
    /// A write failed: the peer is gone.
    WriteFailed,
}

/// Serves one upgraded connection until either side ends it.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    upgraded: Upgraded<S>,
    peer: SocketAddr,
    conn: ConnId,
    room: mpsc::Sender<RoomInput>,
    settings: &Settings,
    metrics: &Metrics,
) {
    let Upgraded {
        stream,
        leftover,
        permit,
    } = upgraded;
    let ws = WebSocketStream::from_partially_read(
        stream,
        leftover,
        Role::Server,
        Some(settings.config()),
    )
    .await;
    let (close, mut close_reason) = oneshot::channel();
    let opened = room_task::open(&room, conn, Wire::Json, peer.ip(), Some(close), metrics);
    let Some(Outgoing {
        frames: outgoing,
        queued,
        abort,
        probe,
    }) = opened.await
    else {
        // The room has stopped: the server is shutting down.
        finish(ws, conn, &End::Room(None)).await;
        return;
    };
    tracing::debug!(?conn, %peer, "websocket connected");

    let (mut sink, mut stream) = ws.split();
    let end = {
        let reader = read_messages(&mut stream, conn, &room, settings);
        let writer = write_frames(&mut sink, outgoing, &queued, &probe, settings.ping);
        tokio::pin!(reader, writer);
        let written = |result: Result<(), WsError>, close_reason: &mut oneshot::Receiver<_>| {
            match result {
                // The room told why before it let go of the outbox.
                Ok(()) => End::Room(close_reason.try_recv().ok()),
                // Pongs the peer does not read have filled the write buffer.
                Err(WsError::WriteBufferFull(_)) => End::TooSlow,
                Err(err) => {
                    tracing::debug!(?conn, %err, "websocket write failed");
                    End::WriteFailed
                }
            }
        };
        let end = tokio::select! {
            biased;
            () = abort.cancelled() => End::TooSlow,
            result = &mut writer => written(result, &mut close_reason),
            end = &mut reader => match end {
                // The room is shutting down and has queued its last words: let them out.
                ReadEnd::RoomGone => tokio::select! {
                    () = abort.cancelled() => End::TooSlow,
                    result = tokio::time::timeout(CLOSE_WAIT, &mut writer) => match result {
                        Ok(result) => written(result, &mut close_reason),
                        Err(_) => End::Room(None),
                    },
                },
                end => End::Read(end),
            },
        };
        if matches!(end, End::Read(_) | End::WriteFailed) {
            let why = Disconnect::Dropped;
            let _ = room.send(RoomInput::Disconnect { conn, why }).await;
        }
        end
    };
    drop(room);
    let ws = sink
        .reunite(stream)
        .expect("the two halves of one stream reunite");
    match &end {
        End::Read(ReadEnd::Failed(err)) => tracing::debug!(?conn, %err, "websocket failed"),
        end => tracing::debug!(?conn, ?end, "websocket ending"),
    }
    finish(ws, conn, &end).await;
    drop(permit);
}

/// The close frame that ends a connection this way, if one is worth sending.
fn close_frame(end: &End) -> Option<CloseFrame> {
    let (code, reason) = match end {
        End::Room(Some(CloseReason::Quit)) => (CloseCode::Normal, "goodbye"),
        End::Room(Some(CloseReason::IdleTimeout)) => (CloseCode::Normal, "idle timeout"),
        End::Room(Some(CloseReason::NameTimeout)) => (CloseCode::Normal, "no name given in time"),
        End::Room(Some(CloseReason::Full)) => (CloseCode::Again, "the server is full"),
        End::Room(Some(CloseReason::Shutdown) | None) | End::Read(ReadEnd::RoomGone) => {
            (CloseCode::Away, "the server is shutting down")
        }
        End::TooSlow => (CloseCode::Policy, "too slow: output was not read"),
        End::Read(ReadEnd::Failed(err)) => match err {
            WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                (CloseCode::Size, "message too big")
            }
            WsError::Utf8(_) => (CloseCode::Invalid, "text is not UTF-8"),
            WsError::Protocol(_) => (CloseCode::Protocol, "protocol error"),
            _ => return None, // The socket failed: nobody to tell.
        },
        // The peer has closed, or is not there to read a close frame.
        End::Read(ReadEnd::Closed | ReadEnd::Dead) | End::WriteFailed => return None,
    };
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    })
}

/// Ends the connection as `end` says: sends the close frame, if any, and waits at most
/// [`CLOSE_WAIT`] for the peer's close in reply; then the socket is dropped. Once the reader
/// has stopped mid-message (too big), what the peer still sends is drained raw instead, so
/// that closing does not reset the connection before the peer has read the close frame.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(mut ws: Ws<S>, conn: ConnId, end: &End) {
    let Some(close) = close_frame(end) else {
        if let End::Read(ReadEnd::Closed) = end {
            // Sends the answer to the peer's close, if it is still there to take it.
            let flushed = tokio::time::timeout(CLOSE_WAIT, ws.flush()).await;
            tracing::debug!(?conn, ?flushed, "websocket closed by the peer");
        } else {
            tracing::debug!(?conn, "websocket dropped");
        }
        return;
    };
    let code = u16::from(close.code);
    let answered = tokio::time::timeout(CLOSE_WAIT, async {
        ws.close(Some(close)).await?;
        if ws.is_terminated() {
            linger(ws.get_mut()).await;
        } else {
            // Until the peer's close frame; anything else it sends meanwhile is dropped.
            while ws.next().await.transpose()?.is_some() {}
        }
        Ok::<(), WsError>(())
    })
    .await;
    tracing::debug!(?conn, code, ?answered, "websocket closed");
}

/// Hands every message to the room until the peer closes, fails or falls silent.
async fn read_messages<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut SplitStream<Ws<S>>,
    conn: ConnId,
    room: &mpsc::Sender<RoomInput>,
    settings: &Settings,
) -> ReadEnd {
    let silence = settings.ping.map(|ping| ping * 2);
    // One timer for the connection's life, pushed back on every frame: setting a later
    // deadline is a store, where a timeout per read would put a timer in and out of the wheel.
    let dead = tokio::time::sleep(silence.unwrap_or(Duration::MAX / 4));
    tokio::pin!(dead);
    loop {
        let next = tokio::select! {
            biased;
            next = stream.next() => next,
            () = &mut dead, if silence.is_some() => return ReadEnd::Dead,
        };
        if let Some(silence) = silence {
            dead.as_mut().reset(tokio::time::Instant::now() + silence);
        }
        let input = match next {
            None => return ReadEnd::Closed,
            Some(Err(err)) => return ReadEnd::Failed(err),
            Some(Ok(Message::Text(text))) => RoomInput::Json { conn, text },
            Some(Ok(Message::Binary(_))) => RoomInput::Binary { conn },
            Some(Ok(Message::Close(frame))) => {
                // tungstenite has queued the answer; `finish` sends it.
                tracing::debug!(?conn, ?frame, "websocket closed by the peer");
                return ReadEnd::Closed;
            }
            // Pings (answered by tungstenite) and pongs: signs of life, not chat activity.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
        };
        // Waiting when the room is busy slows this peer down and nobody else.
        if room.send(input).await.is_err() {
            return ReadEnd::RoomGone;
        }
    }
}

/// Sends each queued event as one text message, feeding whatever else is already queued (up
/// to [`WRITE_BUFFER`] bytes) and flushing once; pings every `ping`. Returns `Ok` once the room lets go of the connection.
async fn write_frames<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut SplitSink<Ws<S>, Message>,
    mut frames: FrameReceiver,
    queued: &AtomicUsize,
    probe: &Probe,
    ping: Option<Duration>,
) -> Result<(), WsError> {
    let mut pings = ping.map(|every| {
        let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pings
    });
    loop {
        let first = tokio::select! {
            biased;
            frame = frames.recv() => match frame {
                Some(frame) => frame,
                None => return Ok(()),
            },
            _ = tick(&mut pings) => {
                sink.send(Message::Ping(Bytes::new())).await?;
                continue;
            }
        };
        let mut written = first.len();
        sink.feed(text_message(first)).await?;
        // Fed only up to one write buffer's worth before the flush waits for the socket, so
        // that a peer reading slowly leaves its backlog in the outbox (freed once drained),
        // not in tungstenite's write buffer (kept at its largest for good).
        while written < WRITE_BUFFER {
            let Some(more) = frames.try_recv() else { break };
            written += more.len();
            sink.feed(text_message(more)).await?;
        }
        sink.flush().await?;
        probe.written();
        queued.fetch_sub(written, Ordering::AcqRel);
    }
}

async fn tick(pings: &mut Option<tokio::time::Interval>) {
    match pings {
        Some(pings) => {
            pings.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One encoded JSON event as a text message, sharing its bytes. The JSON encoder writes no
/// line end, but one is removed if ever there.
fn text_message(mut data: Bytes) -> Message {
    if data.last() == Some(&b'\n') {
        data.truncate(data.len() - 1);
    }
    match Utf8Bytes::try_from(data) {
        Ok(text) => Message::Text(text),
        // The JSON encoder writes UTF-8 only; should that ever change, nothing breaks.
        Err(err) => {
            tracing::warn!(%err, "an encoded event is not UTF-8");
            Message::Text(Utf8Bytes::from(String::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_text_messages_without_a_line_end() {
        let data = Bytes::from_static(b"{\"type\":\"prompt\"}\n");
        assert_eq!(
            text_message(data),
            Message::Text(Utf8Bytes::from_static("{\"type\":\"prompt\"}"))
        );
    }

    #[test]
    fn the_hard_cap_is_above_the_line_limit() {
        let settings = Settings {
            max_line: 4096,
            ping: None,
            max_queue: 1 << 20,
        };
        assert_eq!(settings.hard_cap(), 4 * 4096 + 1024);
        assert_eq!(settings.max_write_buffer(), (1 << 20) + 128 * 1024);
    }
}
