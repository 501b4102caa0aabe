//! One line-protocol connection (nc, telnet; plain or TLS): a reader that turns bytes into
//! lines for the room, and a writer that drains the connection's outbox in batches. Generic
//! over the stream, so that plain TCP and TLS share every line of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use chat_core::{ConnId, Disconnect, LineDecoder, Wire};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::frames::FrameReceiver;
use crate::metrics::{Metrics, Probe};
use crate::outbox::Outgoing;
use crate::room_task::{self, RoomInput};
use crate::stream::{WRITE_BATCH, linger, read_with, write_all_vectored};

/// Serves one accepted connection (TCP, or TLS over TCP) until either side ends it.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    conn: ConnId,
    room: mpsc::Sender<RoomInput>,
    max_line: usize,
    metrics: &Metrics,
) {
    let Some(Outgoing {
        frames: outgoing,
        queued,
        abort,
        probe,
    }) = room_task::open(&room, conn, Wire::Line, peer.ip(), None, metrics).await
    else {
        return; // The room has stopped: the server is shutting down.
    };

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
/// No read buffer is kept per connection: each read borrows the thread's (see
/// [`read_with`]), and the decoder takes the lines out before the poll returns. An idle
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
        match read_with(rd, |bytes| decoder.feed(bytes, &mut lines)).await {
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
