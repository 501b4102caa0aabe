//! One WebSocket connection, upgraded on `/ws` by the HTTP listener: the core's JSON wire, one
//! event per text message, with keepalive pings and a close that says why.
//!
//! A connection is a reader and a writer, like a line one (`line.rs`), over the two halves of
//! the stream. The reader is tungstenite's (`WebSocketStream` over [`ReadSide`]): it hands
//! each text message to the room and makes the pongs and close frames, which it hands to the
//! writer rather than writing them. The [`Writer`] owns the write half: it drains the same kind
//! of outbox as TCP (pre-encoded `Bytes`, counted in `queued`, bounded by `--max-queue`),
//! writing each event as one text frame straight from its shared bytes with a header of its
//! own, whatever is queued gathered into one vectored write, and sends the keepalive pings and
//! tungstenite's control frames between two frames. So nothing a connection keeps grows with
//! the size of what it was sent. Whoever ends first decides how the connection closes (see
//! [`Settings`] and `docs/protocol.md`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chat_core::{CloseReason, ConnId, Disconnect, Wire};
use futures_util::stream::FusedStream;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
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
/// The most bytes of control frames (pongs, the close) waiting for the writer, in
/// tungstenite's write buffer and in [`Control`] each. A pong or a close frame is at most 127
/// bytes; a peer that sends pings and reads none of the pongs fills this and then gets one
/// pong for many (tungstenite keeps only the latest).
const CONTROL_ROOM: usize = 4096;
/// tungstenite's read buffer, held by every connection; larger messages take several reads.
const READ_BUFFER: usize = 1024;
/// A ping with no payload, the same bytes for every connection.
const PING: &[u8] = &[0x89, 0x00];

type Ws<S> = WebSocketStream<ReadSide<S>>;

/// How WebSocket connections behave; the same for all of them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--max-line`: the room refuses a longer message with `line_too_long`.
    pub max_line: usize,
    /// `--ws-ping`: the keepalive interval; `None` sends no pings and never declares a peer
    /// dead.
    pub ping: Option<Duration>,
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

    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            // Allocated up front for every connection and kept: a chat message fits.
            .read_buffer_size(READ_BUFFER)
            // tungstenite writes only control frames here (events go round it, see
            // `Writer`): each is handed on as soon as it is made, and few can wait.
            .write_buffer_size(0)
            .max_write_buffer_size(CONTROL_ROOM)
            .max_message_size(Some(self.hard_cap()))
            .max_frame_size(Some(self.hard_cap()))
    }
}

/// The control frames tungstenite has made (pongs, the answer to a close, our close), whole,
/// waiting for the [`Writer`] to send them between two of its frames.
#[derive(Debug, Default)]
struct Control {
    bytes: Vec<u8>,
    /// The writer, waiting for control frames.
    writer: Option<Waker>,
    /// tungstenite, waiting for room.
    maker: Option<Waker>,
}

type SharedControl = Arc<Mutex<Control>>;

fn lock(control: &Mutex<Control>) -> MutexGuard<'_, Control> {
    // Nothing panics while holding the lock; should anything ever, the bytes are still whole.
    control.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection as tungstenite sees it: it reads the socket, and what it writes (only
/// control frames: events never go through it) is kept in [`Control`] for the writer, which
/// owns the socket's write half. So an event is written straight from its shared bytes, and
/// nothing a connection holds grows with the events it is sent: tungstenite's own write buffer
/// would keep the size of the largest for the rest of the connection (a history of 50
/// messages of 4 096 `"` is over 400 kB).
struct ReadSide<S> {
    read: ReadHalf<S>,
    control: SharedControl,
}

impl<S: AsyncRead + AsyncWrite> AsyncRead for ReadSide<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<S> AsyncWrite for ReadSide<S> {
    /// Takes all of `buf` or nothing, so that the writer only ever sees whole frames
    /// (tungstenite hands over whole frames, and keeps what is refused for later).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let waker = {
            let mut control = lock(&self.control);
            if !control.bytes.is_empty() && control.bytes.len() + buf.len() > CONTROL_ROOM {
                control.maker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            control.bytes.extend_from_slice(buf);
            control.writer.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer sends control frames as soon as it is between two frames of its own.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The stream split into tungstenite's side (reading, and making control frames) and the
/// writer's.
fn halves<S: AsyncRead + AsyncWrite>(stream: S) -> (ReadSide<S>, Writer<S>) {
    let (read, write) = tokio::io::split(stream);
    let control = SharedControl::default();
    let read = ReadSide {
        read,
        control: control.clone(),
    };
    let writer = Writer {
        write,
        control,
        pending: Vec::new(),
        done: 0,
    };
    (read, writer)
}

/// The socket's write half: events as text frames written from their shared bytes (a server's
/// frames are not masked, so a frame is a header of 2 to 10 bytes and the payload as it is),
/// pings, and the control frames tungstenite made, each whole, one after the other.
///
/// What is being written is kept here, not in a future, so that a write cut short (the reader
/// ended first) is finished before the close frame follows it.
struct Writer<S> {
    write: WriteHalf<S>,
    control: SharedControl,
    /// Frames being written, in order: `pending[done..]` is still to go, the first of them
    /// perhaps in part. Emptied (and freed) once written.
    pending: Vec<Bytes>,
    done: usize,
}

impl<S: AsyncRead + AsyncWrite> Writer<S> {
    /// Sends each queued event as one text message, gathering whatever else is already queued
    /// (up to [`WRITE_BATCH`] bytes, [`MAX_BATCH`] events) into one vectored write; the control frames tungstenite
    /// makes; and a ping every `ping`. Returns `Ok` once the room lets go of the connection.
    ///
    /// Only one batch is taken from the outbox at a time, so that the backlog of a peer that
    /// reads slowly stays there, counted against `--max-queue`, and is freed as it drains.
    async fn write_frames(
        &mut self,
        mut frames: FrameReceiver,
        queued: &AtomicUsize,
        probe: &Probe,
        ping: Option<Duration>,
    ) -> io::Result<()> {
        let mut pings = ping.map(|every| {
            let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            pings
        });
        loop {
            self.write_pending().await?;
            let first = tokio::select! {
                biased;
                () = self.control_ready() => {
                    self.take_control();
                    continue;
                }
                frame = frames.recv() => match frame {
                    Some(frame) => frame,
                    None => return Ok(()),
                },
                _ = tick(&mut pings) => {
                    self.pending.push(Bytes::from_static(PING));
                    continue;
                }
            };
            self.take_control();
            let mut written = first.len();
            let mut batch = vec![first];
            while written < WRITE_BATCH && batch.len() < MAX_BATCH {
                let Some(more) = frames.try_recv() else { break };
                written += more.len();
                batch.push(more);
            }
            let mut headers = BytesMut::with_capacity(batch.len() * MAX_HEADER);
            for data in batch {
                let data = text_payload(data);
                put_header(&mut headers, OPCODE_TEXT, data.len());
                self.pending.push(headers.split().freeze());
                self.pending.push(data);
            }
            self.write_pending().await?;
            probe.written();
            queued.fetch_sub(written, Ordering::AcqRel);
        }
    }

    /// Sends the control frames tungstenite makes until `until` resolves, then whatever is
    /// still pending; for the close, which tungstenite makes and the writer sends.
    async fn pump<T>(&mut self, until: impl Future<Output = T>) -> io::Result<T> {
        tokio::pin!(until);
        let result = loop {
            self.take_control();
            tokio::select! {
                biased;
                result = &mut until => break result,
                written = self.write_pending() => written?,
            }
            tokio::select! {
                biased;
                result = &mut until => break result,
                () = self.control_ready() => {}
            }
        };
        self.take_control();
        self.write_pending().await?;
        Ok(result)
    }

    /// Resolves once tungstenite has handed over control frames.
    async fn control_ready(&self) {
        std::future::poll_fn(|cx| {
            let mut control = lock(&self.control);
            if control.bytes.is_empty() {
                control.writer = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }

    /// Moves the control frames waiting, if any, behind what is pending, and lets tungstenite
    /// hand over more.
    fn take_control(&mut self) {
        let (bytes, waker) = {
            let mut control = lock(&self.control);
            (std::mem::take(&mut control.bytes), control.maker.take())
        };
        if !bytes.is_empty() {
            self.pending.push(Bytes::from(bytes));
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Writes everything pending, in order, and flushes (TLS holds written data until then).
    /// Progress is kept in `self`, so that an interrupted call is continued by the next one.
    async fn write_pending(&mut self) -> io::Result<()> {
        while self.done < self.pending.len() {
            let n = std::future::poll_fn(|cx| {
                let mut slices = [io::IoSlice::new(&[]); MAX_SLICES];
                let rest = &self.pending[self.done..];
                let count = rest.len().min(MAX_SLICES);
                for (slice, frame) in slices.iter_mut().zip(rest) {
                    *slice = io::IoSlice::new(frame);
                }
                Pin::new(&mut self.write).poll_write_vectored(cx, &slices[..count])
            })
            .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let mut n = n;
            while let Some(frame) = self.pending.get_mut(self.done) {
                if n >= frame.len() {
                    n -= frame.len();
                    self.done += 1;
                } else {
                    frame.advance(n);
                    break;
                }
            }
        }
        if !self.pending.is_empty() {
            // Freed, not kept: an idle connection holds no list of frames.
            self.pending = Vec::new();
            self.done = 0;
            self.write.flush().await?;
        }
        Ok(())
    }
}

/// The most slices given to one vectored write; they live on the stack for one poll.
const MAX_SLICES: usize = 64;
/// The most events taken from the outbox at once (a header and a payload each, and room for
/// the control frames): what a writer blocked by a slow reader holds is a few dozen handles,
/// while the rest waits in the outbox.
const MAX_BATCH: usize = MAX_SLICES / 2 - 1;
/// The longest frame header a server writes: no mask, a 64-bit length.
const MAX_HEADER: usize = 10;
const OPCODE_TEXT: u8 = 0x1;

/// Appends the header of a final (unfragmented), unmasked frame of `opcode` with a payload of
/// `len` bytes (RFC 6455, 5.2).
fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xffff => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
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
    let (read, mut writer) = halves(stream);
    let mut ws =
        WebSocketStream::from_partially_read(read, leftover, Role::Server, Some(settings.config()))
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
        finish(&mut ws, &mut writer, conn, &End::Room(None)).await;
        return;
    };
    tracing::debug!(?conn, %peer, "websocket connected");

    let end = {
        let reader = read_messages(&mut ws, conn, &room, settings);
        let writing = writer.write_frames(outgoing, &queued, &probe, settings.ping);
        tokio::pin!(reader, writing);
        let written = |result: io::Result<()>, close_reason: &mut oneshot::Receiver<_>| {
            match result {
                // The room told why before it let go of the outbox.
                Ok(()) => End::Room(close_reason.try_recv().ok()),
                Err(err) => {
                    tracing::debug!(?conn, %err, "websocket write failed");
                    End::WriteFailed
                }
            }
        };
        let end = tokio::select! {
            biased;
            () = abort.cancelled() => End::TooSlow,
            result = &mut writing => written(result, &mut close_reason),
            end = &mut reader => match end {
                // The room is shutting down and has queued its last words: let them out.
                ReadEnd::RoomGone => tokio::select! {
                    () = abort.cancelled() => End::TooSlow,
                    result = tokio::time::timeout(CLOSE_WAIT, &mut writing) => match result {
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
    match &end {
        End::Read(ReadEnd::Failed(err)) => tracing::debug!(?conn, %err, "websocket failed"),
        end => tracing::debug!(?conn, ?end, "websocket ending"),
    }
    finish(&mut ws, &mut writer, conn, &end).await;
    drop(permit);
}

/// The close frame that ends a connection this way, if one is worth sending.
fn close_frame(end: &End) -> Option<CloseFrame> {
    let (code, reason) = match end {
        End::Room(Some(CloseReason::Quit)) => (CloseCode::Normal, "goodbye"),
        End::Room(Some(CloseReason::IdleTimeout)) => (CloseCode::Normal, "idle timeout"),
        End::Room(Some(CloseReason::NameTimeout)) => (CloseCode::Normal, "no name given in time"),
        End::Room(Some(CloseReason::Full)) => (CloseCode::Again, "the server is full"),
        End::Room(Some(CloseReason::Kicked)) => (CloseCode::Policy, "kicked"),
        End::Room(Some(CloseReason::Banned)) => (CloseCode::Policy, "banned"),
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
/// [`CLOSE_WAIT`] for the peer's close in reply; then the socket is shut down and dropped.
/// Whatever frame the writer had begun is finished first (never a close in the middle of a
/// frame), and what tungstenite makes meanwhile (the close, pongs) goes out behind it. Once
/// the reader has stopped mid-message (too big), what the peer still sends is drained raw
/// instead, so that closing does not reset the connection before the peer has read the close
/// frame.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    writer: &mut Writer<S>,
    conn: ConnId,
    end: &End,
) {
    let Some(close) = close_frame(end) else {
        if let End::Read(ReadEnd::Closed) = end {
            // Sends the answer to the peer's close, if it is still there to take it.
            let flushed = tokio::time::timeout(CLOSE_WAIT, writer.pump(ws.flush())).await;
            tracing::debug!(?conn, ?flushed, "websocket closed by the peer");
        } else {
            tracing::debug!(?conn, "websocket dropped");
        }
        return;
    };
    let code = u16::from(close.code);
    let answered = tokio::time::timeout(CLOSE_WAIT, async {
        writer.pump(ws.close(Some(close))).await??;
        if ws.is_terminated() {
            writer.write.shutdown().await?;
            linger(ws.get_mut()).await;
        } else {
            // Until the peer's close frame; anything else it sends meanwhile is dropped.
            let reply = async {
                while ws.next().await.transpose()?.is_some() {}
                Ok::<(), WsError>(())
            };
            writer.pump(reply).await??;
            writer.write.shutdown().await?;
        }
        Ok::<(), WsError>(())
    })
    .await;
    tracing::debug!(?conn, code, ?answered, "websocket closed");
}

/// Hands every message to the room until the peer closes, fails or falls silent.
async fn read_messages<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut Ws<S>,
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

async fn tick(pings: &mut Option<tokio::time::Interval>) {
    match pings {
        Some(pings) => {
            pings.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One encoded JSON event as the payload of a text message, sharing its bytes. The JSON
/// encoder writes UTF-8 without a line end, but one is removed if ever there.
fn text_payload(mut data: Bytes) -> Bytes {
    if data.last() == Some(&b'\n') {
        data.truncate(data.len() - 1);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::frames;

    #[test]
    fn events_become_text_payloads_without_a_line_end() {
        let data = Bytes::from_static(b"{\"type\":\"prompt\"}\n");
        assert_eq!(text_payload(data), &b"{\"type\":\"prompt\"}"[..]);
    }

    #[test]
    fn headers_take_the_shortest_length_encoding() {
        for (len, want) in [
            (0, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = BytesMut::new();
            put_header(&mut out, OPCODE_TEXT, len);
            assert_eq!(out[..], want[..], "{len}");
            assert!(out.len() <= MAX_HEADER);
        }
    }

    #[test]
    fn the_hard_cap_is_above_the_line_limit() {
        let settings = Settings {
            max_line: 4096,
            ping: None,
        };
        assert_eq!(settings.hard_cap(), 4 * 4096 + 1024);
    }

    /// An event of `len` bytes of JSON, its bytes telling where they are.
    fn event(len: usize) -> Bytes {
        let body: String = (0..len.saturating_sub(10))
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        Bytes::from(format!("{{\"t\":\"{body}\"}}\n"))
    }

    #[tokio::test]
    async fn events_of_any_size_arrive_whole_and_the_writer_keeps_no_buffer_afterwards() {
        // A small socket buffer, so that the large events take many partial writes.
        let (server, client) = tokio::io::duplex(4096);
        let (read, mut writer) = halves(server);
        let settings = Settings {
            max_line: 4096,
            ping: Some(Duration::from_millis(50)),
        };
        let mut ws =
            WebSocketStream::from_raw_socket(read, Role::Server, Some(settings.config())).await;
        let mut peer = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let (tx, rx) = frames::queue();
        let sizes = [20, 414_000, 3, 70_000, 65_536, 125, 126];
        let sent: Vec<Bytes> = sizes.iter().map(|&n| event(n)).collect();
        for data in &sent {
            tx.send(data.clone()).unwrap();
        }
        let queued = AtomicUsize::new(sent.iter().map(Bytes::len).sum());
        let probe = Metrics::new(false, crate::clock::Clock::start()).probe();
        let reading = async {
            // The server's reader, which answers the peer's pings.
            while let Some(Ok(_)) = ws.next().await {}
        };
        let peer_side = async {
            peer.send(Message::Ping(Bytes::from_static(b"are you there")))
                .await
                .unwrap();
            let mut got = Vec::new();
            let mut pongs = 0;
            while got.len() < sent.len() || pongs == 0 {
                match peer.next().await {
                    Some(Ok(Message::Text(text))) => got.push(text),
                    Some(Ok(Message::Pong(data))) => {
                        assert_eq!(&data[..], b"are you there");
                        pongs += 1;
                    }
                    Some(Ok(Message::Ping(_))) => {}
                    other => panic!("{other:?}"),
                }
            }
            // The room lets go: the writer ends.
            drop(tx);
            got
        };
        let writing = writer.write_frames(rx, &queued, &probe, settings.ping);
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::select! {
                () = reading => panic!("the reader ended"),
                (written, got) = async { tokio::join!(writing, peer_side) } => {
                    written.unwrap();
                    got
                }
            }
        })
        .await
        .expect("everything arrives");
        for (got, sent) in got.iter().zip(&sent) {
            assert_eq!(got.as_bytes(), &sent[..sent.len() - 1]);
        }
        assert_eq!(queued.load(Ordering::Acquire), 0);
        // Nothing kept of the 414 kB: no list of frames, no copy, no control frames.
        assert_eq!(writer.pending.capacity(), 0);
        assert_eq!(lock(&writer.control).bytes.capacity(), 0);
    }
}
