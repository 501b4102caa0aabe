//! The tokio server over real loopback sockets: what nc users see, end to end in-process.

mod support;

use std::time::{Duration, Instant};

use support::{Client, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn two_users_chat_privately_and_publicly() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    assert_eq!(alice.line().await, "*** bob has joined the chat ***");

    bob.send("  hello alice  ").await;
    assert_eq!(alice.line().await, "bob: hello alice");
    alice.send("/msg BOB psst").await;
    assert_eq!(bob.line().await, "[private] alice: psst");
    assert_eq!(alice.line().await, "[private to bob] psst");
    alice.send("/msg carol hi").await;
    assert_eq!(alice.line().await, "No user named 'carol'.");
    bob.send("/who").await;
    assert_eq!(bob.line().await, "Online (2): alice, bob");

    alice.send("/quit").await;
    assert_eq!(alice.line().await, "Goodbye!");
    assert_eq!(alice.closed().await, "");
    assert_eq!(bob.line().await, "*** alice has left the chat ***");
}

#[tokio::test]
async fn telnet_line_endings_bad_utf8_and_terminal_escapes_are_cleaned() {
    let server = TestServer::start(&[]).await;
    let mut alice = server.join("alice").await;
    let mut bob = server.connect().await;
    bob.expect_prompt().await;
    bob.send_raw(b"b\x07o\x1bb\r\n").await;
    assert_eq!(bob.line().await, "Welcome, bob! Online (2): alice, bob");
    assert_eq!(alice.line().await, "*** bob has joined the chat ***");
    bob.send_raw(b"caf\xc3\xa9 \xff\x1b[2J\x07\xc2\x9b bell\r\n")
        .await;
    assert_eq!(alice.line().await, "bob: caf\u{e9} \u{fffd}[2J bell");
}

#[tokio::test]
async fn invalid_and_taken_names_are_explained_then_prompted_again() {
    let server = TestServer::start(&[]).await;
    let _alice = server.join("Alice").await;
    let mut c = server.connect().await;
    c.expect_prompt().await;
    c.send("bad name!").await;
    assert!(c.line().await.starts_with("Name cannot contain ' '"));
    c.expect_prompt().await;
    c.send("ALICE").await;
    assert_eq!(
        c.line().await,
        "The name 'ALICE' is already taken; choose another."
    );
    c.expect_prompt().await;
    c.send(&"x".repeat(33)).await;
    assert_eq!(c.line().await, "Name is too long: at most 32 characters.");
    c.expect_prompt().await;
}

#[tokio::test]
async fn a_full_room_says_so_and_closes() {
    let server = TestServer::start(&["--max-users", "1"]).await;
    let _alice = server.join("alice").await;
    let mut late = server.connect().await;
    let said = late.closed().await;
    assert!(said.contains("Server is full"), "{said:?}");
}

#[tokio::test]
async fn an_overlong_line_is_refused_and_the_user_stays() {
    let server = TestServer::start(&["--max-line", "16"]).await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    let _ = alice.line().await;
    bob.send(&"y".repeat(10_000)).await;
    assert!(bob.line().await.starts_with("Error: line too long"));
    bob.send("sixteen bytes ok").await;
    assert_eq!(alice.line().await, "bob: sixteen bytes ok");
}

#[tokio::test]
async fn history_is_replayed_to_newcomers() {
    let server = TestServer::start(&["--history", "2"]).await;
    let mut alice = server.join("alice").await;
    for text in ["one", "two", "three"] {
        alice.send(text).await;
    }
    alice.send("/msg alice private").await; // Never replayed.
    let _ = alice.line().await;
    let _ = alice.line().await;
    let mut bob = server.join("bob").await;
    assert_eq!(bob.line().await, "--- Recent messages (2) ---");
    assert_eq!(bob.line().await, "alice: two");
    assert_eq!(bob.line().await, "alice: three");
    assert_eq!(bob.line().await, "--- End of recent messages ---");
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_idle_timeout() {
    let server = TestServer::start(&["--idle-timeout", "1"]).await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    let _ = alice.line().await;
    let mut at_prompt = server.connect().await;
    at_prompt.expect_prompt().await;
    let start = Instant::now();
    // Bob keeps talking, so only alice and the one at the prompt time out.
    let keep_talking = tokio::spawn(async move {
        for _ in 0..6 {
            bob.send("still here").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        bob
    });
    let rest = alice.closed().await;
    assert!(rest.ends_with("Disconnected: idle timeout.\n"), "{rest:?}");
    assert_eq!(at_prompt.closed().await, "Disconnected: idle timeout.\n");
    assert!(start.elapsed() >= Duration::from_millis(900));
    let mut bob = keep_talking.await.unwrap();
    bob.send("/who").await;
    let seen = bob.line_eq("Online (1): bob").await;
    assert!(
        seen.contains(&"*** alice has left the chat ***".to_owned()),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_dropped_without_slowing_the_others() {
    let server = TestServer::start(&["--flood", "off", "--max-queue", "262144"]).await;
    // A small receive buffer, so the kernel does not absorb megabytes for the stalled reader.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.tcp).await.unwrap();
    let (mut stalled_rd, mut stalled_wr) = stream.into_split();
    stalled_wr.write_all(b"stalled\n").await.unwrap();
    let mut reader = server.join("reader").await;
    let mut talker = server.join("talker").await;
    let _ = reader.line().await;

    let text = "z".repeat(1000);
    // Enough to fill the stalled peer's socket buffers and then the queue bound.
    let count = 8000;
    // The talker stays at most this many lines ahead of the healthy reader: far beyond any
    // person, yet well within the queue bound, so the reader keeps up however this machine
    // schedules it (a talker at a fixed pace outran a reader starved of CPU, which was then
    // rightly dropped as too slow). The stalled reader gets every line and falls behind.
    const WINDOW: usize = 64;
    let (progress, mut reader_at) = tokio::sync::watch::channel(0usize);
    let started = Instant::now();
    let send = tokio::spawn(async move {
        for i in 0..count {
            if reader_at.wait_for(|&at| i < at + WINDOW).await.is_err() {
                break; // The reader has failed.
            }
            talker.send(&format!("{i} {text}")).await;
        }
        talker
    });
    let mut slowest = Duration::ZERO;
    let mut saw_leave = false;
    let mut received = 0;
    while received < count {
        let before = Instant::now();
        let line = reader.line().await;
        slowest = slowest.max(before.elapsed());
        if line == "*** stalled has left the chat ***" {
            saw_leave = true;
        } else {
            assert!(
                line.starts_with(&format!("talker: {received} ")),
                "{line:.40}"
            );
            received += 1;
            progress.send_replace(received);
        }
    }
    let _talker = send.await.unwrap();
    assert!(saw_leave, "the stalled reader was dropped");
    assert!(
        slowest < Duration::from_secs(1),
        "a gap of {slowest:?} for the reader"
    );
    eprintln!("{count} lines of 1 KB in {:?}", started.elapsed());
    // The stalled connection was closed by the server: draining it reaches the end.
    let mut sink = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(WAIT, async {
        while stalled_rd
            .read(&mut sink)
            .await
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    })
    .await;
    assert!(drained.is_ok(), "the stalled connection was closed");
}

#[tokio::test]
async fn graceful_shutdown_tells_everyone_and_flushes_the_log() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("log.jsonl");
    let mut server = TestServer::start(&["--log", log.to_str().unwrap(), "--flood", "off"]).await;
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    let _ = alice.line().await;
    for i in 0..500 {
        alice.send(&format!("message {i}")).await;
    }
    bob.line_eq("alice: message 499").await;
    server.shutdown().await.expect("clean shutdown");
    assert_eq!(alice.closed().await, "*** Server is shutting down ***\n");
    assert_eq!(bob.closed().await, "*** Server is shutting down ***\n");

    let content = std::fs::read_to_string(&log).unwrap();
    let records: Vec<serde_json::Value> = content
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    let messages: Vec<_> = records.iter().filter(|r| r["type"] == "message").collect();
    assert_eq!(messages.len(), 500);
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m["seq"], i as u64 + 1);
        assert_eq!(m["text"], format!("message {i}"));
    }
    let leaves = records.iter().filter(|r| r["reason"] == "shutdown").count();
    assert_eq!(leaves, 2);
}

#[tokio::test]
async fn the_http_listener_answers_with_a_page() {
    let server = TestServer::start(&[]).await;
    let mut stream = tokio::net::TcpStream::connect(server.http).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains(&format!("nc 127.0.0.1 {}", server.tcp.port())));
}

#[tokio::test]
async fn many_clients_each_see_every_message_once_in_order() {
    let server = TestServer::start(&["--flood", "off"]).await;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(server.join(&format!("user{i}")).await);
    }
    let mut talker = server.join("talker").await;
    for i in 0..200 {
        talker.send(&format!("m{i}")).await;
    }
    for (n, c) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < 200 {
            let line = c.line().await;
            if let Some(m) = line.strip_prefix("talker: ") {
                got.push(m.to_owned());
            } else {
                assert!(line.ends_with("has joined the chat ***"), "user{n}: {line}");
            }
        }
        let want: Vec<_> = (0..200).map(|i| format!("m{i}")).collect();
        assert_eq!(got, want, "user{n}");
    }
    talker.silent_for(Duration::from_millis(200)).await;
    drop(Client::connect(server.tcp).await);
}
