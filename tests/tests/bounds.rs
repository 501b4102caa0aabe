//! The real `chat-server` binary under abuse: every buffer a peer can grow stays bounded (its
//! resident memory, `VmRSS` in `/proc/PID/status`, read before and during a 100 MB flood), a
//! request head that never ends or crawls is cut off, and running out of file descriptors
//! refuses newcomers while everyone connected chats on, and WebSocket users sent a huge event
//! keep nothing of it. Linux only (`/proc`, `prlimit`).
//!
//! The outbound bound, `--max-queue`, is tested in-process in `server-native/tests/server.rs`
//! and `websocket.rs` (a reader that stops reading is dropped as too slow).

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chat_tests::load::{self, Incoming, Target, Wire};
use chat_tests::{Peer, Server, WAIT};

/// What a flood sends.
const FLOOD: usize = 100 * 1024 * 1024;
/// How much the server's resident memory may grow while it is flooded.
const MAX_GROWTH_KIB: u64 = 8 * 1024;

/// Starts the binary with `args` on free ports, behind `wrapper` (e.g. `prlimit --nofile=64:64
/// --`, util-linux's), which must exec it so that the process id is the server's; its
/// standard error (at `info`) is kept.
async fn start_server(wrapper: &[&str], args: &[&str]) -> Server {
    Server::command()
        .wrapped_in(wrapper)
        .args(args)
        .log("info")
        .keep_stderr()
        .start()
        .await
}

/// Everything `stream` receives until the server closes it (a reset after some bytes ends it
/// too); fails if nothing at all comes within [`WAIT`].
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(err) if !all.is_empty() => {
                eprintln!("(ended by {err} after {} bytes)", all.len());
                return all;
            }
            Err(err) => panic!("nothing received: {err}"),
        }
    }
}

/// Sends `head`, then `FLOOD` bytes made by `fill` in chunks of 1 MiB, then `tail`, from a
/// thread; returns how many bytes went out, or the error that stopped it.
fn flood(
    stream: &TcpStream,
    head: Vec<u8>,
    fill: fn(&mut [u8]),
    tail: &'static [u8],
) -> JoinHandle<Result<usize, std::io::Error>> {
    let mut stream = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        stream.write_all(&head)?;
        let mut chunk = vec![0u8; 1 << 20];
        fill(&mut chunk);
        let mut sent = 0;
        while sent < FLOOD {
            stream.write_all(&chunk)?;
            sent += chunk.len();
        }
        stream.write_all(tail)?;
        Ok(sent)
    })
}

/// Samples the server's resident memory until `flood` ends, running `meanwhile` between
/// samples; returns the peak and what the flood returned.
fn peak_rss_during<T>(
    server: &Server,
    flood: JoinHandle<T>,
    mut meanwhile: impl FnMut(),
) -> (u64, T) {
    let mut peak = server.rss_kib();
    let deadline = Instant::now() + WAIT * 6;
    while !flood.is_finished() {
        assert!(Instant::now() < deadline, "the flood never ended");
        meanwhile();
        peak = peak.max(server.rss_kib());
        std::thread::sleep(Duration::from_millis(20));
    }
    (peak, flood.join().expect("the flood thread"))
}

fn check_growth(what: &str, before: u64, peak: u64, after: u64) {
    eprintln!(
        "{what}: VmRSS before {before} KiB, peak {peak} KiB, after {after} KiB \
         (grew by at most {} KiB)",
        peak.max(after).saturating_sub(before)
    );
    assert!(
        peak.max(after).saturating_sub(before) <= MAX_GROWTH_KIB,
        "{what}: the server grew from {before} KiB to {peak} KiB"
    );
}

#[tokio::test]
async fn a_100_mb_line_gets_one_error_the_sender_stays_and_memory_stays_flat() {
    let mut server = start_server(&[], &["--flood", "off"]).await;
    let mut alice = Peer::join(server.tcp, "alice");
    let mut bob = Peer::join(server.tcp, "bob");
    alice.send("warming up");
    bob.expect("alice: warming up\n");
    let mut mallory = Peer::join(server.tcp, "mallory");
    mallory.expect("--- End of recent messages ---\n");
    mallory.seen.clear();
    let before = server.rss_kib();

    // 100 MB without a newline, then its newline and a normal line.
    let sender = flood(
        &mallory.stream,
        Vec::new(),
        |chunk| chunk.fill(b'x'),
        b"\nhello after the flood\n",
    );
    let mut round = 0;
    let (peak, sent) = peak_rss_during(&server, sender, || {
        round += 1;
        alice.send(&format!("during the flood {round}"));
        bob.expect(&format!("alice: during the flood {round}\n"));
    });
    assert_eq!(sent.expect("the server took all 100 MB"), FLOOD);
    bob.expect("mallory: hello after the flood\n");
    mallory.send("/msg mallory done");
    mallory.expect("[private to mallory] done\n");
    assert_eq!(
        mallory.seen.matches("Error: line too long").count(),
        1,
        "{:.300}",
        mallory.seen
    );
    mallory.send("still here");
    alice.expect("mallory: still here\n");
    eprintln!("{round} chat round trips during the flood");
    check_growth("100 MB line", before, peak, server.rss_kib());
    server.stop().await;
}

/// The upgrade request of a WebSocket client with no `Origin`.
const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Connects to `/ws` and reads the `101` head.
fn websocket(http: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.write_all(UPGRADE).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the 101 head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    stream
}

/// A masked client frame header: `opcode` (with FIN if `fin`), a payload of `len` bytes.
fn frame_header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]); // A zero mask: the payload goes as it is.
    header
}

/// Reads the server's frames (unmasked) up to its close frame; returns the close code.
fn close_code(stream: &mut TcpStream) -> u16 {
    let bytes = read_until_closed(stream);
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (len, start) = match bytes[at + 1] & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
                at + 4,
            ),
            127 => panic!("the server sends no frame that long"),
            len => (usize::from(len), at + 2),
        };
        if opcode == 0x8 {
            return u16::from_be_bytes([bytes[start], bytes[start + 1]]);
        }
        at = start + len;
    }
    panic!("no close frame in {bytes:?}");
}

#[tokio::test]
async fn a_100_mb_websocket_frame_or_message_closes_with_1009_and_memory_stays_flat() {
    let mut server = start_server(&[], &["--flood", "off"]).await;
    let mut alice = Peer::join(server.tcp, "alice");
    let mut bob = Peer::join(server.tcp, "bob");
    alice.send("warming up");
    bob.expect("alice: warming up\n");
    let before = server.rss_kib();

    // One text frame whose header says (and whose payload is) 100 MB.
    let mut ws = websocket(server.http);
    let header = frame_header(true, 0x1, FLOOD as u64);
    let sender = flood(&ws, header, |chunk| chunk.fill(b'x'), b"");
    let reader = std::thread::spawn(move || close_code(&mut ws));
    let (peak_frame, _) = peak_rss_during(&server, sender, || {});
    assert_eq!(reader.join().unwrap(), 1009, "message too big");

    // 100 MB as a message of 16 KB fragments, each under the frame limit.
    let mut ws = websocket(server.http);
    let mut fragments = frame_header(false, 0x1, 16 * 1024);
    fragments.resize(fragments.len() + 16 * 1024, b'x');
    let continuation = frame_header(false, 0x0, 16 * 1024);
    let mut fragments_ws = ws.try_clone().unwrap();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        fragments_ws.write_all(&fragments)?;
        let mut chunk = continuation.clone();
        chunk.resize(chunk.len() + 16 * 1024, b'x');
        for _ in 0..FLOOD / (16 * 1024) {
            fragments_ws.write_all(&chunk)?;
        }
        Ok(())
    });
    let reader = std::thread::spawn(move || close_code(&mut ws));
    let mut round = 0;
    let (peak_message, _) = peak_rss_during(&server, sender, || {
        round += 1;
        bob.send(&format!("meanwhile {round}"));
        alice.expect(&format!("bob: meanwhile {round}\n"));
    });
    assert_eq!(reader.join().unwrap(), 1009, "message too big");

    alice.send("after the floods");
    bob.expect("alice: after the floods\n");
    check_growth(
        "100 MB WebSocket frame and message",
        before,
        peak_frame.max(peak_message),
        server.rss_kib(),
    );
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_pings_from_a_peer_that_never_reads_leaves_memory_flat() {
    let mut server = start_server(&[], &["--flood", "off"]).await;
    let mut alice = Peer::join(server.tcp, "alice");
    let mut bob = Peer::join(server.tcp, "bob");
    alice.send("warming up");
    bob.expect("alice: warming up\n");
    let before = server.rss_kib();

    // Every ping asks for a pong; this peer reads none of them, so they cannot all be sent.
    let ws = websocket(server.http);
    let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    ping.resize(ping.len() + 125, b'p');
    let mut pings_ws = ws.try_clone().unwrap();
    let sender = std::thread::spawn(move || -> std::io::Result<usize> {
        let chunk = ping.repeat((1 << 20) / ping.len());
        let mut sent = 0;
        while sent < FLOOD {
            pings_ws.write_all(&chunk)?;
            sent += chunk.len();
        }
        Ok(sent)
    });
    let mut round = 0;
    let (peak, sent) = peak_rss_during(&server, sender, || {
        round += 1;
        alice.send(&format!("meanwhile {round}"));
        bob.expect(&format!("alice: meanwhile {round}\n"));
    });
    eprintln!("the pinger sent {sent:?} bytes; {round} chat round trips meanwhile");
    check_growth("100 MB of unread pings", before, peak, server.rss_kib());
    drop(ws);
    server.stop().await;
}

/// WebSocket users who join while the history is at its worst case for JSON.
const HISTORY_JOINS: usize = 300;
/// What each of them may cost the server once it has been sent the history: a connection's
/// own few KiB (about 8 KiB idle) with room to spare, and far below the 414 kB of the history.
const MAX_KIB_PER_HISTORY_JOIN: u64 = 64;

#[tokio::test]
async fn websocket_users_sent_a_worst_case_history_keep_none_of_it() {
    let mut server = start_server(&[], &["--flood", "off", "--idle-timeout", "0"]).await;
    let target = Target {
        tcp: server.tcp,
        http: server.http,
    };
    // About 414 kB of JSON in the history event: 50 messages of 4 096 `"`, each written `\"`.
    load::fill_worst_history(target).await.unwrap();
    let before = server.rss_kib();
    let mut users = Vec::new();
    for i in 0..HISTORY_JOINS {
        let (tx, mut rx) = load::join(Wire::Json, target, &format!("user{i}"))
            .await
            .unwrap();
        // Every byte of it read, so that the server has written it all.
        let history = rx.next().await.unwrap();
        let Some(Incoming::Notice(history)) = history else {
            panic!("user{i} got {history:?}");
        };
        assert!(
            history.starts_with(r#"{"type":"history""#) && history.len() > 400_000,
            "user{i} got {} bytes: {}",
            history.len(),
            &history[..history.len().min(80)]
        );
        users.push((tx, rx));
    }
    // The joins announced to everyone have gone out; the server gives back what it freed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kib();
    let per_join = after.saturating_sub(before) / HISTORY_JOINS as u64;
    eprintln!(
        "{HISTORY_JOINS} WebSocket users sent a worst-case history: VmRSS {before} KiB -> \
         {after} KiB, {per_join} KiB each"
    );
    assert!(
        per_join <= MAX_KIB_PER_HISTORY_JOIN,
        "each WebSocket user sent the history still costs {per_join} KiB \
         ({before} KiB -> {after} KiB for {HISTORY_JOINS})"
    );
    drop(users);
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_that_never_ends_gets_431_at_8_kib() {
    let mut server = start_server(&[], &[]).await;
    let before = server.rss_kib();
    let mut peer = TcpStream::connect(server.http).unwrap();
    peer.set_write_timeout(Some(WAIT)).unwrap();
    let sender = flood(
        &peer,
        b"GET / HTTP/1.1\r\nX-Filler: ".to_vec(),
        |chunk| chunk.fill(b'a'),
        b"",
    );
    let reader = std::thread::spawn(move || read_until_closed(&mut peer));
    let (peak, sent) = peak_rss_during(&server, sender, || {});
    let response = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{response}"
    );
    assert!(response.contains("Connection: close\r\n"), "{response}");
    eprintln!("the endless head's sender stopped with {sent:?}");
    check_growth("endless request head", before, peak, server.rss_kib());
    // The listener still answers.
    let mut again = TcpStream::connect(server.http).unwrap();
    again.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    let ok = String::from_utf8_lossy(&read_until_closed(&mut again)).into_owned();
    assert!(ok.ends_with("\r\n\r\nok\n"), "{ok}");
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_sent_byte_by_byte_gets_408_at_the_handshake_timeout() {
    let mut server = start_server(&[], &["--handshake-timeout", "2"]).await;
    let started = Instant::now();
    let mut peer = TcpStream::connect(server.http).unwrap();
    let mut slow = peer.try_clone().unwrap();
    // One byte a second, far longer than the timeout.
    let sender = std::thread::spawn(move || {
        for byte in b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-Slow: yes\r\n\r\n" {
            if slow.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let response = String::from_utf8_lossy(&read_until_closed(&mut peer)).into_owned();
    let took = started.elapsed();
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{response}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < WAIT,
        "closed after {took:?}"
    );
    eprintln!("a head at one byte a second: 408 and closed after {took:?}");
    drop(sender);
    server.stop().await;
}

#[tokio::test]
async fn out_of_file_descriptors_newcomers_are_refused_users_chat_on_and_it_recovers() {
    // 64 descriptors for the whole process, soft and hard: raising them is impossible.
    let mut server = start_server(&["prlimit", "--nofile=64:64", "--"], &[]).await;
    let mut alice = Peer::join(server.tcp, "alice");
    let mut bob = Peer::join(server.tcp, "bob");

    // Idle connections, each shown the prompt, until a newcomer is refused instead.
    let mut idle = Vec::new();
    let refusal = loop {
        assert!(idle.len() < 200, "never refused");
        let mut peer = Peer::connect(server.tcp);
        let mut first = [0u8; 17];
        match peer.stream.read_exact(&mut first) {
            Ok(()) if &first == b"Enter your name: " => idle.push(peer),
            _ => {
                let mut all = first.to_vec();
                all.extend(read_until_closed(&mut peer.stream));
                let all = String::from_utf8_lossy(&all).into_owned();
                break all.trim_end_matches('\0').to_owned();
            }
        }
    };
    assert_eq!(refusal, "Server is full, please try again later.\n");
    eprintln!(
        "{} idle connections filled the server's 64 descriptors",
        idle.len()
    );
    // Not a fluke: the next newcomers on either listener are told at once too.
    let mut next = Peer::connect(server.tcp);
    let told = String::from_utf8_lossy(&read_until_closed(&mut next.stream)).into_owned();
    assert_eq!(told, "Server is full, please try again later.\n");
    let mut page = TcpStream::connect(server.http).unwrap();
    page.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    let page = String::from_utf8_lossy(&read_until_closed(&mut page)).into_owned();
    assert!(
        page.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{page}"
    );
    assert!(page.contains("Retry-After: 5\r\n"), "{page}");

    // Those inside chat on.
    alice.send("still here?");
    bob.expect("alice: still here?\n");
    bob.send("/msg alice yes");
    alice.expect("[private] bob: yes\n");

    // Some leave: newcomers get in again (once the server has noticed the closes).
    idle.truncate(idle.len() - 5);
    let deadline = Instant::now() + WAIT;
    let mut late = loop {
        let mut peer = Peer::connect(server.tcp);
        let mut first = [0u8; 17];
        if peer.stream.read_exact(&mut first).is_ok() && &first == b"Enter your name: " {
            break peer;
        }
        assert!(Instant::now() < deadline, "still refused after some left");
        std::thread::sleep(Duration::from_millis(50));
    };
    late.send("late");
    late.expect("Welcome, late! Online (3): alice, bob, late\n");
    bob.expect("*** late has joined the chat ***\n");
    late.send("made it");
    alice.expect("late: made it\n");

    drop(idle);
    let log = server.stop().await;
    assert!(log.contains("open file limit limit=64"), "{log}");
    assert!(log.contains("out of file descriptors"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
