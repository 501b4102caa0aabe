//! One line-protocol connection: a reader that turns bytes into lines for the room, and a
//! writer that drains the connection's queue of encoded frames in batches. Generic over the
//! stream, so that plain TCP and TLS share every line of it.

use std::cell::RefCell;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use chat_core::{ConnId, Disconnect, LineDecoder, Wire};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use crate::frames::FrameReceiver;
use crate::metrics::{Metrics, Probe};
use crate::room_task::{Outbox, Outgoing, RoomInput};

/// How much one read takes off the socket (into a buffer of the thread's, not the
/// connection's).
pub const READ_CHUNK: usize = 4096;
/// How many queued bytes the writer gathers into one write.
pub const WRITE_BATCH: usize = 64 * 1024;
/// After the room closes a connection, unread input is drained for at most this long, so that
/// the close is a clean FIN and the peer gets its last lines: closing a socket with unread
/// input sends a reset, which can destroy what the peer has not read yet.
const LINGER: Duration = Duration::from_secs(2);
/// The drain ends early once the peer has been silent this long (nc never closes by itself).
const LINGER_QUIET: Duration = Duration::from_millis(250);

/// Serves one accepted connection (TCP, or TLS over TCP) until either side ends it.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    conn: ConnId,
    room: mpsc::Sender<RoomInput>,
    max_line: usize,
    metrics: &Metrics,
) {
    let (
        outbox,
        Outgoing {
            frames: outgoing,
            queued,
            abort,
            probe,
        },
    ) = Outbox::new(None, metrics.probe());
    let open = RoomInput::Open {
        conn,
        wire: Wire::Line,
        peer: Some(peer.ip()),
        outbox,
    };
    if room.send(open).await.is_err() {
        return; // The room has stopped: the server is shutting down.
    }

    let (mut rd, mut wr) = tokio::io::split(stream);
    let closed_by_room = {
        let reader = read_lines(&mut rd, conn, &room, max_line);
        let writer = write_frames(&mut wr, outgoing, &queued, &probe);
        tokio::pin!(reader, writer);
        tokio::select! {
            () = abort.cancelled() => false,
            result = &mut writer => match result {
                // The room closed us; the peer may still be sending.
                Ok(()) => true,
                Err(err) => {
                    tracing::debug!(?conn, %err, "write failed");
                    let why = Disconnect::Dropped;
                    let _ = room.send(RoomInput::Disconnect { conn, why }).await;
                    false
                }
            },
            () = &mut reader => {
                // End of input, already reported: keep writing until the room lets go of us.
                tokio::select! {
                    () = abort.cancelled() => {}
                    _ = writer => {}
                }
                false
            }
        }
    };
    if closed_by_room {
        linger(&mut rd).await;
    }
}

/// Reads lines until end of input or an error, sending each to the room (waiting when the
/// room is busy, which slows this peer down and nobody else), then reports the disconnect.
///
/// No read buffer is kept per connection: each read borrows the thread's [`READ_BUF`] for the
/// length of one poll, and the decoder takes the lines out before the poll returns. An idle
/// connection holds only what its decoder holds of an unfinished line.
async fn read_lines(
    rd: &mut (impl AsyncRead + Unpin),
    conn: ConnId,
    room: &mpsc::Sender<RoomInput>,
    max_line: usize,
) {
    let mut decoder = LineDecoder::new(max_line);
    let mut lines = Vec::new();
    loop {
        let read = std::future::poll_fn(|cx| {
            with_read_buffer(|buf| {
                let mut buf = ReadBuf::new(buf);
                ready!(Pin::new(&mut *rd).poll_read(cx, &mut buf))?;
                decoder.feed(buf.filled(), &mut lines);
                Poll::Ready(Ok::<_, std::io::Error>(buf.filled().len()))
            })
        });
        match read.await {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(?conn, %err, "read failed");
                break;
            }
        }
        for line in lines.drain(..) {
            if room.send(RoomInput::Line { conn, line }).await.is_err() {
                return;
            }
        }
    }
    if let Some(line) = decoder.finish() {
        let _ = room.send(RoomInput::Line { conn, line }).await;
    }
    let why = Disconnect::Dropped;
    let _ = room.send(RoomInput::Disconnect { conn, why }).await;
}

thread_local! {
    /// The read buffer of every line connection polled on this thread: a read fills it and
    /// the decoder empties it within one poll, so nothing in it outlives the poll.
    static READ_BUF: RefCell<Box<[u8; READ_CHUNK]>> = RefCell::new(Box::new([0; READ_CHUNK]));
}

/// Runs `f` with this thread's read buffer (or, should it be in use already, a fresh one).
fn with_read_buffer<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    READ_BUF.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf[..]),
        Err(_) => f(&mut [0; READ_CHUNK]),
    })
}

/// Writes frames as they are queued, gathering whatever else is already waiting into one
/// vectored write and flushing it (TLS holds written data until then); when the room drops its
/// end, sends FIN (after TLS's close_notify). Frames are written from their shared `Bytes`,
/// not copied, and the list of a batch is freed after it: an idle connection holds no buffer.
async fn write_frames(
    wr: &mut (impl AsyncWrite + Unpin),
    mut frames: FrameReceiver,
    queued: &AtomicUsize,
    probe: &Probe,
) -> std::io::Result<()> {
    while let Some(first) = frames.recv().await {
        let mut written = first.len();
        if frames.is_empty() {
            wr.write_all(&first).await?;
        } else {
            let mut batch = vec![first];
            while written < WRITE_BATCH {
                let Some(more) = frames.try_recv() else { break };
                written += more.len();
                batch.push(more);
            }
            write_all_vectored(wr, batch).await?;
        }
        // TLS may keep part of a write when the socket is full: push it out now, not with the
        // next frame, which may never come.
        wr.flush().await?;
        probe.written();
        queued.fetch_sub(written, Ordering::AcqRel);
    }
    wr.shutdown().await
}

/// The most slices given to one vectored write (Linux takes up to 1024); they live on the stack
/// for the length of one poll.
const MAX_SLICES: usize = 512;

/// Writes all of `frames`, in order, [`MAX_SLICES`] at a time; the slices are built within each
/// poll, so that the connection's task does not grow by an array of them.
async fn write_all_vectored(
    wr: &mut (impl AsyncWrite + Unpin),
    mut frames: Vec<Bytes>,
) -> std::io::Result<()> {
    let mut done = 0; // frames[..done] are written
    loop {
        // Empty frames would never be written: skip them.
        while frames.get(done).is_some_and(Bytes::is_empty) {
            done += 1;
        }
        if done == frames.len() {
            return Ok(());
        }
        let pending = &frames[done..];
        let n = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = pending.len().min(MAX_SLICES);
            for (slice, frame) in slices.iter_mut().zip(pending) {
                *slice = IoSlice::new(frame);
            }
            Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut n = n;
        while let Some(frame) = frames.get_mut(done).filter(|_| n > 0) {
            if n >= frame.len() {
                n -= frame.len();
                done += 1;
            } else {
                frame.advance(n);
                n = 0;
            }
        }
    }
}

/// Drains and discards input after our FIN until the peer closes too, falls silent, or
/// [`LINGER`] has passed.
pub async fn linger(stream: &mut (impl AsyncRead + Unpin)) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(Ok(n)) = tokio::time::timeout(LINGER_QUIET, discard(stream)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Reads and drops what has arrived: how much (0 at the end of input). Into the thread's read
/// buffer, so that no task carries a buffer for it.
async fn discard(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        with_read_buffer(|buf| {
            let mut buf = ReadBuf::new(buf);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
            Poll::Ready(Ok(buf.filled().len()))
        })
    })
    .await
}
