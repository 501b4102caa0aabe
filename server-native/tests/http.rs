//! The HTTP listener's connections over real loopback sockets, the server in-process:
//! keep-alive (several requests on one connection, pipelined ones in order), and the time
//! bounds of a kept-alive connection between its requests.

mod support;

use std::time::{Duration, Instant};

use support::{TestServer, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A raw HTTP/1.1 client on one connection, every read bounded by [`WAIT`].
struct Client(BufReader<TcpStream>);

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        Client(BufReader::new(
            TcpStream::connect(addr).await.expect("connect"),
        ))
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.0.get_mut().write_all(bytes).await.expect("write");
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.0.read_line(&mut line));
        assert!(
            read.await.expect("a line in time").expect("read") > 0,
            "closed"
        );
        line.trim_end_matches(['\r', '\n']).to_owned()
    }

    async fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut body = vec![0; n];
        let read = tokio::time::timeout(WAIT, self.0.read_exact(&mut body));
        read.await.expect("the body in time").expect("read");
        body
    }

    /// Everything until the server closes the connection.
    async fn closed(&mut self) -> String {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, self.0.read_to_end(&mut rest));
        read.await.expect("closed in time").expect("read");
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// Reads one answer: its head, then as many body bytes as `Content-Length` says.
async fn answer(client: &mut Client) -> (String, String) {
    let mut head = Vec::new();
    loop {
        let line = client.line().await;
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length: usize = head
        .iter()
        .find_map(|h| {
            let (name, value) = h.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a Content-Length");
    let body = client.bytes(length).await;
    (
        head.join("\n"),
        String::from_utf8(body).expect("a text body"),
    )
}

/// A connection that has had one answer and is kept alive.
async fn kept_alive(server: &TestServer) -> Client {
    let mut client = Client::connect(server.http).await;
    client
        .send_raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let (head, _) = answer(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    client
}

#[tokio::test]
async fn one_connection_takes_several_requests_and_pipelined_ones_in_order() {
    let server = TestServer::start(&[]).await;
    let mut client = Client::connect(server.http).await;
    client
        .send_raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let (head, body) = answer(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, "ok\n");
    // The same connection, twice more in one write.
    client
        .send_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let (head, body) = answer(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.contains("<h1>chat-server</h1>"), "{body}");
    let (head, _) = answer(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 404 Not Found"), "{head}");
    // A client that asks to close gets its answer, then the end.
    client
        .send_raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let (head, _) = answer(&mut client).await;
    assert!(head.contains("Connection: close"), "{head}");
    assert_eq!(client.closed().await, "");
}

#[tokio::test]
async fn a_kept_alive_connection_that_sends_nothing_more_is_closed_quietly() {
    let server = TestServer::start(&["--handshake-timeout", "1"]).await;
    let mut client = kept_alive(&server).await;
    let idle = Instant::now();
    // No 408 for a request that never began: the connection just ends.
    assert_eq!(client.closed().await, "");
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < WAIT,
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_next_request_head_that_stalls_gets_408() {
    let server = TestServer::start(&["--handshake-timeout", "1"]).await;
    let mut client = kept_alive(&server).await;
    client.send_raw(b"GET /healthz HTTP/1.1\r\nHo").await;
    let rest = client.closed().await;
    assert!(
        rest.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{rest}"
    );
}

#[tokio::test]
async fn shutdown_closes_kept_alive_connections_at_once() {
    let mut server = TestServer::start(&[]).await;
    let mut client = kept_alive(&server).await;
    let stopping = Instant::now();
    server.shutdown().await.expect("a clean shutdown");
    // Well within the 5 s the server gives connections to finish, and its 10 s head timeout.
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(client.closed().await, "");
}

#[tokio::test]
async fn a_client_that_shuts_its_side_after_the_request_still_gets_the_answer() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("index.html"), "<p>hello</p>\n").unwrap();
    let root = dir.path().to_str().unwrap();
    let server = TestServer::start(&["--web-root", root]).await;
    // As `printf 'GET ...' | nc -N` does: the request, then end of input. A file takes a
    // moment to open, in which the end of input arrives.
    for path in ["/healthz", "/", "/index.html"] {
        let mut client = Client::connect(server.http).await;
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        client.send_raw(request.as_bytes()).await;
        let shut = client.0.get_mut().shutdown().await;
        shut.expect("shut down the write side");
        let rest = client.closed().await;
        assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {rest:?}");
    }
}

#[tokio::test]
async fn an_idle_kept_alive_connection_waits_five_seconds_for_its_next_request() {
    let server = TestServer::start(&[]).await;
    let mut client = kept_alive(&server).await;
    let idle = Instant::now();
    assert_eq!(client.closed().await, "");
    let waited = idle.elapsed();
    // Not the 10 s of --handshake-timeout: an idle connection holds its places for less.
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn when_the_listener_is_full_idle_kept_alive_connections_make_room() {
    let server = TestServer::start(&["--handshake-timeout", "30"]).await;
    // All 256 places of the HTTP listener, each connection kept alive after one answer.
    let mut idle = Vec::new();
    for _ in 0..256 {
        idle.push(kept_alive(&server).await);
    }
    // A newcomer is answered at once, not when the idle ones time out.
    let started = Instant::now();
    let mut newcomer = Client::connect(server.http).await;
    newcomer
        .send_raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let (head, _) = answer(&mut newcomer).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the newcomer waited {:?}",
        started.elapsed()
    );
    // The idle ones were closed without a word to make that room.
    assert_eq!(idle[0].closed().await, "");
}
