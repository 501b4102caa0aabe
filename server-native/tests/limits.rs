//! Abuse at the door, with the server in-process over loopback: per-address limits on both
//! listeners together, their refusals, and loopback's exemption. (`tests/tests/bounds.rs`, in
//! the chat-tests package, runs the real binary for the memory bounds and for running out of
//! file descriptors.)

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Client, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const REFUSAL: &str = "Too many connections from your address; try again in a minute.\n";

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.1, 127.0.0.2, ...):
/// each is an address of its own to the server.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.expect("connect")
}

/// Everything the server sends until it closes.
async fn read_all(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the server closes in time")
        .expect("read");
    String::from_utf8_lossy(&all).into_owned()
}

/// One HTTP request from `from`; the whole response.
async fn request_from(from: &str, http: SocketAddr, request: &str) -> String {
    let mut stream = connect_from(from, http).await;
    // A refused connection may be closed before the request is written: the answer counts.
    let _ = stream.write_all(request.as_bytes()).await;
    read_all(&mut stream).await
}

/// A line client from `from` that got the prompt, or what it got instead.
async fn line_client_from(from: &str, tcp: SocketAddr) -> Result<TcpStream, String> {
    let mut stream = connect_from(from, tcp).await;
    let mut first = [0u8; 17];
    let read = tokio::time::timeout(WAIT, stream.read_exact(&mut first)).await;
    match read {
        Ok(Ok(_)) if &first == b"Enter your name: " => Ok(stream),
        Ok(Ok(_)) => {
            Err(String::from_utf8_lossy(&first).into_owned() + &read_all(&mut stream).await)
        }
        Ok(Err(_)) => Err(String::from_utf8_lossy(&first).into_owned()),
        Err(_) => panic!("no answer in time"),
    }
}

/// Tries to connect until the prompt comes (the server releases a closed connection's place
/// once it has noticed the close, a moment later); fails after [`WAIT`] with the last refusal.
async fn line_client_eventually(from: &str, tcp: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        match line_client_from(from, tcp).await {
            Ok(stream) => return stream,
            Err(refusal) => {
                assert!(Instant::now() < deadline, "still refused: {refusal:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A line client from `from`, joined as `name`.
async fn join_from(from: &str, server: &TestServer, name: &str) -> Client {
    let mut client = Client::from_stream(connect_from(from, server.tcp).await);
    client.expect_prompt().await;
    client.send(name).await;
    client.line_eq("Type /help for the list of commands.").await;
    client
}

/// The status line, the headers and the body of a response.
fn split_response(response: &str) -> (&str, &str, &str) {
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete head");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status, headers, body)
}

/// The value of header `name` among `headers`.
fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers
        .split("\r\n")
        .find_map(|h| h.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn too_many_connections_from_one_address_are_refused_on_both_listeners() {
    let server = TestServer::start(&[
        "--limit-loopback",
        "--max-conns-per-ip",
        "3",
        "--max-new-per-ip",
        "0",
    ])
    .await;
    // Three places for 127.0.0.1: two line clients and a WebSocket.
    let first = line_client_from("127.0.0.1", server.tcp).await.unwrap();
    let _second = line_client_from("127.0.0.1", server.tcp).await.unwrap();
    let mut ws = connect_from("127.0.0.1", server.http).await;
    ws.write_all(UPGRADE.as_bytes()).await.unwrap();
    let mut switching = [0u8; 12];
    ws.read_exact(&mut switching).await.unwrap();
    assert_eq!(&switching, b"HTTP/1.1 101");

    // A fourth, on either listener, is refused: one line, or 429.
    let refused = line_client_from("127.0.0.1", server.tcp).await.unwrap_err();
    assert_eq!(refused, REFUSAL);
    let page = request_from(
        "127.0.0.1",
        server.http,
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (status, headers, body) = split_response(&page);
    assert_eq!(status, "HTTP/1.1 429 Too Many Requests", "{page}");
    assert_eq!(header(headers, "Retry-After"), Some("60"), "{page}");
    assert_eq!(header(headers, "Connection"), Some("close"), "{page}");
    assert_eq!(body, REFUSAL);
    let upgrade = request_from("127.0.0.1", server.http, UPGRADE).await;
    assert!(upgrade.starts_with("HTTP/1.1 429 "), "{upgrade}");

    // Another address is not affected.
    let mut alice = join_from("127.0.0.2", &server, "alice").await;

    // One of the three closes: its place is free again.
    drop(first);
    let mut back = line_client_eventually("127.0.0.1", server.tcp).await;
    back.write_all(b"carol\n").await.unwrap();
    assert_eq!(alice.line().await, "*** carol has joined the chat ***");
}

#[tokio::test]
async fn refused_peers_that_never_read_hold_nothing_and_slow_nobody() {
    let server = TestServer::start(&[
        "--limit-loopback",
        "--max-conns-per-ip",
        "1",
        "--max-new-per-ip",
        "0",
    ])
    .await;
    let _held = line_client_from("127.0.0.1", server.tcp).await.unwrap();
    let mut alice = join_from("127.0.0.2", &server, "alice").await;
    // Hundreds of refused connections left open and unread, far more than refusals are
    // written at once in the background (64); the rest are refused on the spot.
    let mut refused = Vec::new();
    for _ in 0..300 {
        refused.push(connect_from("127.0.0.1", server.tcp).await);
    }
    let mut bob = join_from("127.0.0.3", &server, "bob").await;
    assert_eq!(alice.line().await, "*** bob has joined the chat ***");
    bob.send("still quick").await;
    assert_eq!(alice.line().await, "bob: still quick");
    // Each was told, and closed.
    for stream in &mut refused {
        assert_eq!(read_all(stream).await, REFUSAL);
    }
}

#[tokio::test]
async fn opening_connections_too_fast_is_refused_until_a_token_returns() {
    // 12 a minute: a burst of 12, then one every 5 seconds; line and HTTP together.
    let server = TestServer::start(&[
        "--limit-loopback",
        "--max-conns-per-ip",
        "0",
        "--max-new-per-ip",
        "12",
    ])
    .await;
    let started = Instant::now();
    for _ in 0..6 {
        drop(line_client_from("127.0.0.1", server.tcp).await.unwrap());
        let ok = request_from(
            "127.0.0.1",
            server.http,
            "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.ends_with("\r\n\r\nok\n"), "{ok}");
    }
    let refused = line_client_from("127.0.0.1", server.tcp).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the burst took so long that a token came back: {:?}",
        started.elapsed()
    );
    assert_eq!(refused, REFUSAL);
    let page = request_from(
        "127.0.0.1",
        server.http,
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (status, headers, _) = split_response(&page);
    assert_eq!(status, "HTTP/1.1 429 Too Many Requests");
    let retry: u64 = header(headers, "Retry-After").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After: {retry}");
    // The next token comes within 5 seconds.
    drop(line_client_eventually("127.0.0.1", server.tcp).await);
    assert!(started.elapsed() >= Duration::from_secs(4));
}

#[tokio::test]
async fn loopback_is_exempt_by_default() {
    let server = TestServer::start(&["--max-conns-per-ip", "1", "--max-new-per-ip", "1"]).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(line_client_from("127.0.0.1", server.tcp).await.unwrap());
        let ok = request_from(
            "127.0.0.1",
            server.http,
            "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.ends_with("\r\n\r\nok\n"), "{ok}");
    }
}
