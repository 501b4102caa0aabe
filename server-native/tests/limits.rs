//! Abuse at the door, with the server in-process over loopback: per-address limits on both
//! listeners together, their refusals, and loopback's exemption. (`tests/tests/bounds.rs`, in
//! the chat-tests package, runs the real binary for the memory bounds and for running out of
//! file descriptors.)

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Client, TestServer, WAIT, connect_from, read_all};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REFUSAL: &str = "Too many connections from your address; try again in a minute.\n";

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

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

/// Reads what a connection gets first: the prompt (17 bytes), or a refusal and the close.
async fn first_words(stream: &mut TcpStream) -> String {
    let mut first = [0u8; 17];
    match tokio::time::timeout(WAIT, stream.read_exact(&mut first)).await {
        Ok(Ok(_)) if &first == b"Enter your name: " => "Enter your name: ".into(),
        Ok(Ok(_)) => String::from_utf8_lossy(&first).into_owned() + &read_all(stream).await,
        Ok(Err(_)) => String::from_utf8_lossy(&first)
            .trim_end_matches('\0')
            .to_owned(),
        Err(_) => panic!("no answer in time"),
    }
}

#[tokio::test]
async fn thirty_three_addresses_at_the_name_prompt_cannot_keep_a_newcomer_out() {
    // The whole room's worth of places, and more, held at the prompt: 33 addresses with 32
    // connections each (the door lets each hold 32), none of which ever gives a name.
    let server = TestServer::start(&["--limit-loopback"]).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for n in 2..=34 {
        let from = format!("127.0.0.{n}");
        for i in 0..32 {
            let mut stream = connect_from(&from, server.tcp).await;
            match first_words(&mut stream).await.as_str() {
                "Enter your name: " => held.push(stream),
                refusal => {
                    // Each address has its 8 at the prompt; the rest are told why.
                    assert_eq!(refusal, REFUSAL, "connection {i} from {from}");
                    assert!(i >= 8, "connection {i} from {from} refused");
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(refused, 33 * 24);
    // A newcomer from a fresh address gets the prompt and joins at once.
    let started = Instant::now();
    let mut carol = join_from("127.0.0.200", &server, "carol").await;
    eprintln!(
        "a newcomer joined in {:?} while 33 addresses held the prompt",
        started.elapsed()
    );
    carol.send("/who").await;
    assert_eq!(carol.line().await, "Online (1): carol");
}

#[tokio::test]
async fn a_full_room_puts_out_the_oldest_at_the_prompt_of_the_address_with_most_there() {
    // 8 places: one address holds all of them at the prompt, over both wires.
    let server = TestServer::start(&["--limit-loopback", "--max-users", "8"]).await;
    let mut first = connect_from("127.0.0.2", server.tcp).await;
    assert_eq!(first_words(&mut first).await, "Enter your name: ");
    let mut rest = Vec::new();
    for _ in 0..7 {
        let mut stream = connect_from("127.0.0.2", server.tcp).await;
        assert_eq!(first_words(&mut stream).await, "Enter your name: ");
        rest.push(stream);
    }
    // A newcomer from elsewhere gets in; the oldest of the eight is told the room is full.
    let mut dave = join_from("127.0.0.3", &server, "dave").await;
    assert_eq!(
        read_all(&mut first).await,
        "Server is full, please try again later.\n"
    );
    dave.send("/who").await;
    assert_eq!(dave.line().await, "Online (1): dave");
}

#[tokio::test]
async fn idle_http_connections_from_a_few_addresses_do_not_hold_up_a_page_load() {
    // Eight addresses open their 32 connections each to the HTTP listener, all 256 of its
    // places, and never send a request; an idle one is closed only after 30 s.
    let server = TestServer::start(&["--limit-loopback", "--handshake-timeout", "30"]).await;
    let mut idle = Vec::new();
    for n in 2..=9 {
        for _ in 0..32 {
            idle.push(connect_from(&format!("127.0.0.{n}"), server.http).await);
        }
    }
    // Those past 8 from one address are refused at once: 24 of each 32.
    let mut refused = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 12];
        match tokio::time::timeout(Duration::from_millis(200), stream.read_exact(&mut byte)).await {
            Ok(Ok(_)) => {
                assert_eq!(&byte, b"HTTP/1.1 429");
                refused += 1;
            }
            Ok(Err(err)) => panic!("{err}"),
            Err(_) => {} // Still open, waiting for a request that never comes.
        }
    }
    assert_eq!(refused, 8 * 24);
    let started = Instant::now();
    let page = request_from(
        "127.0.0.100",
        server.http,
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let took = started.elapsed();
    assert!(page.ends_with("\r\n\r\nok\n"), "{page}");
    eprintln!("a page load took {took:?} while 8 addresses held idle HTTP connections");
    assert!(
        took < Duration::from_secs(5),
        "the page load waited {took:?}"
    );
}

mod tls {
    //! TLS handshakes that never finish.

    use std::sync::Arc;

    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::crypto::ring;
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    use super::*;

    /// A server with a fresh self-signed certificate for `localhost` and `flags`, and a
    /// connector that trusts it.
    async fn start(flags: &[&str]) -> (TestServer, TlsConnector, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        let (cert_arg, key_arg) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
        let mut args = vec!["--tls-cert", cert_arg, "--tls-key", key_arg];
        args.extend_from_slice(flags);
        let server = TestServer::start(&args).await;
        let mut roots = RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let client = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, TlsConnector::from(Arc::new(client)), dir)
    }

    /// How long a newcomer from 127.0.0.100 waits for its prompt over TLS while 320
    /// connections from `sources` (in turn) hold their handshakes without a word, with `flags`
    /// and 16 users: the 80 places and four times as many.
    async fn newcomer_behind_silent_handshakes(sources: &[&str], flags: &[&str]) -> Duration {
        let mut args = vec!["--max-users", "16"];
        args.extend_from_slice(flags);
        let (server, connector, _dir) = start(&args).await;
        let mut silent = Vec::new();
        for i in 0..320 {
            silent.push(connect_from(sources[i % sources.len()], server.tcp).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let stream = connect_from("127.0.0.100", server.tcp).await;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(WAIT, connector.connect(name, stream))
            .await
            .expect("the handshake ends in time")
            .expect("the handshake succeeds");
        let mut prompt = [0u8; 17];
        tokio::time::timeout(WAIT, tls.read_exact(&mut prompt))
            .await
            .expect("the prompt in time")
            .unwrap();
        assert_eq!(&prompt, b"Enter your name: ");
        started.elapsed()
    }

    #[tokio::test]
    async fn silent_tls_connections_from_a_few_addresses_make_no_newcomer_wait() {
        // Handshakes time out after 10 s; until then, the silent ones hold at most 64 places
        // (8 an address).
        let sources: Vec<String> = (2..=11).map(|n| format!("127.0.0.{n}")).collect();
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        let took = newcomer_behind_silent_handshakes(&sources, &["--limit-loopback"]).await;
        eprintln!("a newcomer's TLS prompt came after {took:?} behind 320 silent connections");
        assert!(
            took < Duration::from_secs(5),
            "the newcomer waited {took:?}"
        );
    }

    #[tokio::test]
    async fn silent_tls_connections_from_loopback_itself_make_no_newcomer_wait() {
        // Loopback has no share (it is exempt), but when the places run out, the silent
        // handshakes beyond 64 are put out.
        let took = newcomer_behind_silent_handshakes(&["127.0.0.1"], &[]).await;
        eprintln!("a newcomer's TLS prompt came after {took:?} behind 320 from 127.0.0.1");
        assert!(
            took < Duration::from_secs(5),
            "the newcomer waited {took:?}"
        );
    }
}
