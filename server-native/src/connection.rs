//! One line-protocol connection: a reader that turns bytes into lines for the room, and a
//! writer that drains the connection's queue of encoded frames in batches. Generic over the
//! stream, so that plain TCP and TLS share every line of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chat_core::{ConnId, Disconnect, LineDecoder, Wire};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::metrics::{Metrics, Probe};
use crate::room_task::{Outbox, Outgoing, RoomInput};

/// How much one read takes off the socket.
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
async fn read_lines(
    rd: &mut (impl AsyncRead + Unpin),
    conn: ConnId,
    room: &mpsc::Sender<RoomInput>,
    max_line: usize,
) {
    let mut decoder = LineDecoder::new(max_line);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut lines = Vec::new();
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                tracing::debug!(?conn, %err, "read failed");
                break;
            }
        };
        decoder.feed(&buf[..n], &mut lines);
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

/// Writes frames as they are queued, gathering whatever else is already waiting into one
/// write and flushing it (TLS holds written data until then); when the room drops its end,
/// sends FIN (after TLS's close_notify).
async fn write_frames(
    wr: &mut (impl AsyncWrite + Unpin),
    mut frames: mpsc::UnboundedReceiver<Bytes>,
    queued: &AtomicUsize,
    probe: &Probe,
) -> std::io::Result<()> {
    let mut batch = Vec::new();
    while let Some(first) = frames.recv().await {
        let mut written = first.len();
        if frames.is_empty() {
            wr.write_all(&first).await?;
        } else {
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BATCH {
                let Ok(more) = frames.try_recv() else { break };
                written += more.len();
                batch.extend_from_slice(&more);
            }
            wr.write_all(&batch).await?;
            batch.clear();
            batch.shrink_to(WRITE_BATCH);
        }
        // TLS may keep part of a write when the socket is full: push it out now, not with the
        // next frame, which may never come.
        wr.flush().await?;
        probe.written();
        queued.fetch_sub(written, Ordering::AcqRel);
    }
    wr.shutdown().await
}

/// Drains and discards input after our FIN until the peer closes too, falls silent, or
/// [`LINGER`] has passed.
pub async fn linger(stream: &mut (impl AsyncRead + Unpin)) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(Ok(n)) = tokio::time::timeout(LINGER_QUIET, stream.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
