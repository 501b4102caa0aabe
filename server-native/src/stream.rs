//! Helpers over any byte stream (TCP, or TLS over TCP) that the connections share: reading
//! into the worker thread's buffer, gathering frames into vectored writes, and lingering after
//! a close so that the peer reads its last bytes.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read takes off the socket (into a buffer of the thread's, not the
/// connection's).
pub const READ_CHUNK: usize = 4096;
/// How many queued bytes a writer gathers into one write.
pub const WRITE_BATCH: usize = 64 * 1024;
/// After a connection is closed on our side, unread input is drained for at most this long,
/// so that the close is a clean FIN and the peer gets its last bytes: closing a socket with
/// unread input sends a reset, which can destroy what the peer has not read yet.
const LINGER: Duration = Duration::from_secs(2);
/// The drain ends early once the peer has been silent this long (nc never closes by itself).
const LINGER_QUIET: Duration = Duration::from_millis(250);
/// The most slices given to one vectored write (Linux takes up to 1024); they live on the stack
/// for the length of one poll.
const MAX_SLICES: usize = 512;

thread_local! {
    /// The read buffer of every connection polled on this thread: a read fills it and the
    /// caller empties it within one poll, so nothing in it outlives the poll.
    static READ_BUF: RefCell<Box<[u8; READ_CHUNK]>> = RefCell::new(Box::new([0; READ_CHUNK]));
}

/// Reads what has arrived into this thread's buffer and hands it to `take` before the poll
/// returns; resolves to how much was read (0 at the end of input). No read buffer is kept per
/// connection: an idle connection holds only what `take` keeps of the bytes.
pub async fn read_with(
    stream: &mut (impl AsyncRead + Unpin),
    mut take: impl FnMut(&[u8]),
) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        with_read_buffer(|buf| {
            let mut buf = ReadBuf::new(buf);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
            take(buf.filled());
            Poll::Ready(Ok(buf.filled().len()))
        })
    })
    .await
}

/// Runs `f` with this thread's read buffer (or, should it be in use already, a fresh one).
fn with_read_buffer<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    READ_BUF.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf[..]),
        Err(_) => f(&mut [0; READ_CHUNK]),
    })
}

/// Writes all of `frames`, in order, [`MAX_SLICES`] at a time; the slices are built within each
/// poll, so that the connection's task does not grow by an array of them.
pub async fn write_all_vectored(
    wr: &mut (impl AsyncWrite + Unpin),
    mut frames: Vec<Bytes>,
) -> io::Result<()> {
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
            return Err(io::ErrorKind::WriteZero.into());
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
        while let Ok(Ok(n)) = tokio::time::timeout(LINGER_QUIET, read_with(stream, |_| {})).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
