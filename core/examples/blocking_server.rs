//! The chat room served by plain threads over `std::net`: no tokio, no async, no lock.
//!
//! It shows that `chat-core` is sans-IO: the same [`Room`] the tokio server drives runs here
//! unchanged, because the room only ever sees inputs that carry the time and only ever asks
//! for outputs. This file is the whole driver:
//!
//! - one **room thread** owns the `Room`. It waits on one input channel until the room's next
//!   deadline, feeds what arrives, and routes the outputs;
//! - per connection, a **reader thread** turns bytes into lines with [`LineDecoder`], and a
//!   **writer thread** drains a bounded queue of encoded frames, a batch per write;
//! - the **acceptor** (the caller of [`serve`]) names connections and starts their threads.
//!
//! A peer that does not read fills its queue and is disconnected as too slow; the room thread
//! never blocks on a socket, so nobody else waits for it. Nothing locks the room: only its
//! thread touches it.
//!
//! Run it, then talk to it from two terminals:
//!
//! ```text
//! cargo run -p chat-core --example blocking_server -- --tcp 127.0.0.1:8888
//! nc 127.0.0.1 8888
//! ```

use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_core::{
    Config, ConnId, Disconnect, Line, LineDecoder, LogRecord, Output, Room, Timestamp, Wire,
};

/// Frames queued for one connection before it counts as not reading (`--max-queue`).
const QUEUE_FRAMES: usize = 256;
/// Inputs waiting for the room thread. Bounded so that a flooding peer is slowed by TCP flow
/// control on its own socket instead of growing a buffer here.
const INPUT_QUEUE: usize = 1024;
/// A peer that accepts no byte for this long is gone. This also bounds how long a closing
/// connection whose peer stopped reading can hold its writer thread.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (EMFILE and friends) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the acceptor and the reader threads tell the room thread.
enum Input {
    /// A connection was accepted; its writer thread is draining `queue`.
    Open {
        conn: ConnId,
        peer: IpAddr,
        queue: SyncSender<Bytes>,
        /// Kept to shut the socket down when the peer turns out not to read.
        stream: TcpStream,
    },
    Line {
        conn: ConnId,
        line: Line,
    },
    /// End of input or a read error.
    Gone {
        conn: ConnId,
    },
}

/// The room thread's handle on one connection.
struct Peer {
    queue: SyncSender<Bytes>,
    stream: TcpStream,
}

/// Serves the chat room on `listener` until the room thread dies. Accept errors are logged
/// and retried, never returned.
pub fn serve(listener: TcpListener, config: Config) -> io::Result<()> {
    let max_line = config.max_line;
    let (inputs, room_inputs) = mpsc::sync_channel(INPUT_QUEUE);
    let room = thread::Builder::new()
        .name("room".into())
        .spawn(move || run_room(Room::new(config), room_inputs))?;
    let mut next_id = 0;
    loop {
        let (stream, addr) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept failed: {err}; retrying");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        next_id += 1;
        let conn = ConnId(next_id);
        if let Err(err) = start_connection(stream, addr.ip(), conn, max_line, &inputs) {
            if room.is_finished() {
                return Err(io::Error::other("the room thread stopped"));
            }
            eprintln!("{addr}: could not start the connection: {err}");
        }
    }
}

/// Starts the writer, tells the room, then starts the reader: in that order, so that the
/// room knows the connection before its first line arrives.
fn start_connection(
    stream: TcpStream,
    peer: IpAddr,
    conn: ConnId,
    max_line: usize,
    inputs: &SyncSender<Input>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let (reader, writer) = (stream.try_clone()?, stream.try_clone()?);
    let (queue, frames) = mpsc::sync_channel(QUEUE_FRAMES);
    thread::Builder::new()
        .name(format!("write-{}", conn.0))
        .spawn(move || write_frames(writer, frames))?;
    let open = Input::Open {
        conn,
        peer,
        queue,
        stream,
    };
    inputs
        .send(open)
        .map_err(|_| io::Error::other("the room thread stopped"))?;
    let room = inputs.clone();
    let spawned = thread::Builder::new()
        .name(format!("read-{}", conn.0))
        .spawn(move || read_lines(reader, conn, max_line, room));
    if spawned.is_err() {
        let _ = inputs.send(Input::Gone { conn });
    }
    spawned.map(drop)
}

/// The room thread: the only owner of the `Room`.
fn run_room(mut room: Room, inputs: Receiver<Input>) {
    let epoch = Instant::now();
    let mut peers = HashMap::new();
    loop {
        // A deadline too far away for an `Instant` means "never".
        let deadline = room
            .poll_timeout()
            .and_then(|at| epoch.checked_add(at.as_duration()));
        let input = match deadline {
            Some(deadline) => {
                match inputs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(input) => Some(input),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            None => match inputs.recv() {
                Ok(input) => Some(input),
                Err(_) => return,
            },
        };
        let now = Timestamp::from_duration(epoch.elapsed());
        match input {
            Some(Input::Open {
                conn,
                peer,
                queue,
                stream,
            }) => {
                peers.insert(conn, Peer { queue, stream });
                room.handle_open(now, conn, Wire::Line, Some(peer));
            }
            Some(Input::Line { conn, line }) => room.handle_line(now, conn, line),
            Some(Input::Gone { conn }) => {
                peers.remove(&conn);
                room.handle_disconnect(now, conn, Disconnect::Dropped);
            }
            None => {}
        }
        // Checked after every input too, so a steady stream of input cannot starve timers.
        if room.poll_timeout().is_some_and(|at| at <= now) {
            room.handle_timeout(now);
        }
        route_outputs(&mut room, &mut peers, now);
    }
}

/// Drains the room's outputs. Never blocks: a full queue is a peer that does not read.
fn route_outputs(room: &mut Room, peers: &mut HashMap<ConnId, Peer>, now: Timestamp) {
    while let Some(output) = room.poll_output() {
        match output {
            Output::Send { conn, data } => {
                let Some(peer) = peers.get(&conn) else {
                    continue; // Already gone; the room hears about it (or has) separately.
                };
                let why = match peer.queue.try_send(data) {
                    Ok(()) => continue,
                    Err(TrySendError::Full(_)) => Disconnect::TooSlow,
                    Err(TrySendError::Disconnected(_)) => Disconnect::Dropped, // write failed
                };
                if let Some(peer) = peers.remove(&conn) {
                    // Its writer may be stuck in a write that will never finish: unstick it.
                    let _ = peer.stream.shutdown(Shutdown::Both);
                }
                room.handle_disconnect(now, conn, why);
            }
            // Dropping the queue lets the writer send what is queued, then shut down.
            Output::Close { conn, .. } => drop(peers.remove(&conn)),
            // Joins and leaves go to stderr; a durable message log is the tokio server's job.
            Output::Log(record @ (LogRecord::Join { .. } | LogRecord::Leave { .. })) => {
                eprintln!("{record:?}");
            }
            Output::Log(LogRecord::Message(_) | LogRecord::Local { .. }) => {}
            Output::Log(LogRecord::Moderation { .. } | LogRecord::OpRefused { .. }) => {}
            // A room alone (no `Config::cluster`) never publishes.
            Output::Publish(_) => {}
            // This example keeps no bans across a restart.
            Output::Sanctions(_) => {}
        }
    }
}

/// A reader thread: bytes to lines, lines to the room, until end of input.
fn read_lines(mut stream: TcpStream, conn: ConnId, max_line: usize, room: SyncSender<Input>) {
    let mut decoder = LineDecoder::new(max_line);
    let mut lines = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => decoder.feed(&buf[..n], &mut lines),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        for line in lines.drain(..) {
            if room.send(Input::Line { conn, line }).is_err() {
                return;
            }
        }
    }
    if let Some(line) = decoder.finish() {
        let _ = room.send(Input::Line { conn, line });
    }
    let _ = room.send(Input::Gone { conn });
}

/// A writer thread: waits for a frame, writes it and whatever else is already queued, then
/// flushes once. When the room drops the queue, it shuts the socket down both ways, which
/// also ends the reader thread.
fn write_frames(stream: TcpStream, frames: Receiver<Bytes>) {
    let mut out = BufWriter::with_capacity(64 * 1024, &stream);
    'frames: while let Ok(first) = frames.recv() {
        for frame in std::iter::once(first).chain(frames.try_iter()) {
            if out.write_all(&frame).is_err() {
                break 'frames;
            }
        }
        if out.flush().is_err() {
            break;
        }
    }
    drop(out);
    let _ = stream.shutdown(Shutdown::Both);
}

fn main() -> io::Result<()> {
    let usage = "usage: blocking_server [--tcp ADDR]   (default 127.0.0.1:8888)";
    let mut addr = String::from("127.0.0.1:8888");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--tcp", Some(value)) => addr = value,
            ("-h" | "--help", None) => {
                println!("{usage}");
                return Ok(());
            }
            _ => {
                eprintln!("{usage}");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(&addr)?;
    println!("tcp listening on {}", listener.local_addr()?);
    serve(listener, Config::default())
}
