//! TLS as users meet it: the real binary started with a certificate made here at test time,
//! real `openssl s_client` users chatting through it while a plain connection to the TLS port
//! is turned away, a WSS client (tokio-rustls and tokio-tungstenite, trusting only that
//! certificate) chatting with an `s_client` user, and clear errors for bad TLS settings.
//!
//! `openssl s_client -quiet` is how the README tells people to connect. `-quiet` also turns on
//! `-ign_eof`: the end of its input does not end the session (nc's does), and no line is taken
//! as a command of its own (without it, a line starting with `Q` or `R` would be). It exits
//! when the server closes the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use chat_tests::{LineProcess, Server, TestCert, WAIT, openssl_installed, require};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A TLS client that trusts `cert` and nothing else.
fn connector(cert: &TestCert) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// An `s_client` user who connects, answers the prompt with the name and waits for the
/// welcome.
async fn s_client_join(addr: SocketAddr, name: &str) -> LineProcess {
    let mut user = LineProcess::s_client(addr, name);
    user.expect("Enter your name: ").await;
    user.type_line(name);
    user.expect(&format!("Welcome, {name}! Online (")).await;
    user.expect("Type /help for the list of commands.\n").await;
    user
}

/// Connects with plain TCP, sends `bytes` and reads until the server closes; returns what it
/// sent. Panics if the server keeps the connection open past [`WAIT`].
fn plain_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept a plain connection to its TLS port open: {e}"),
    }
    got
}

#[tokio::test]
async fn two_openssl_users_chat_while_a_plain_connection_is_turned_away() {
    let test = "two_openssl_users_chat_while_a_plain_connection_is_turned_away";
    require!(openssl_installed(test));
    let cert = TestCert::new("s-client");
    // It prints exactly the address lines of a server without TLS (scripts parse them).
    let server = Server::command()
        .args(["--max-users", "2"])
        .args(cert.flags())
        .start()
        .await;

    // Someone who connects and says nothing holds up nobody: the handshake waits in its own
    // task, not in the accept loop.
    let _silent = TcpStream::connect(server.tcp).unwrap();

    let mut alice = LineProcess::s_client(server.tcp, "alice");
    alice.expect("Enter your name: ").await;
    alice.type_line("alice");
    alice
        .expect("Welcome, alice! Online (1): alice\nType /help for the list of commands.\n")
        .await;

    // nc to the TLS port: the handshake fails, the connection closes, no prompt is sent.
    let got = plain_exchange(server.tcp, b"mallory\n");
    let got = String::from_utf8_lossy(&got);
    assert!(!got.contains("Enter your name"), "{got:?}");

    // Neither that nor the silent one took a place among the two users.
    let mut bob = LineProcess::s_client(server.tcp, "bob");
    bob.expect("Enter your name: ").await;
    bob.type_line("Alice");
    bob.expect("The name 'Alice' is already taken; choose another.\nEnter your name: ")
        .await;
    bob.type_line("bob");
    bob.expect("Welcome, bob! Online (2): alice, bob\n").await;
    alice.expect("*** bob has joined the chat ***\n").await;

    alice.type_line("hi bob, over TLS");
    bob.expect("alice: hi bob, over TLS\n").await;
    bob.type_line("/msg alice psst");
    alice.expect("[private] bob: psst\n").await;
    bob.expect("[private to alice] psst\n").await;

    // The end of s_client's input does not end its session (-quiet means -ign_eof).
    bob.close_stdin();
    alice.type_line("still there?");
    bob.expect("alice: still there?\n").await;

    alice.type_line("/quit");
    alice.expect("Goodbye!\n").await;
    // It exits by itself once the server has closed the connection.
    alice.finished().await;
    bob.expect("*** alice has left the chat ***\n").await;
}

/// The text of the next message, decoded; panics on anything else or after [`WAIT`].
async fn next_event<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event in time")
            .expect("the connection is open")
            .expect("a message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

async fn send(ws: &mut (impl futures_util::Sink<Message> + Unpin), request: Value) {
    let sent = ws.send(Message::text(request.to_string())).await;
    assert!(sent.is_ok(), "send {request}");
}

#[tokio::test]
async fn a_wss_client_chats_with_an_openssl_user() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let test = "a_wss_client_chats_with_an_openssl_user";
    require!(openssl_installed(test));
    let cert = TestCert::new("wss");
    // The variables instead of the flags.
    let (cert_path, key_path) = (cert.cert(), cert.key());
    let (cert_path, key_path) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let server = Server::command()
        .envs(&[("CHAT_TLS_CERT", cert_path), ("CHAT_TLS_KEY", key_path)])
        .start()
        .await;
    let port = server.http.port();
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let connector = connector(&cert);
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
        connector
            .connect(ip.clone(), tcp)
            .await
            .expect("a TLS handshake that verifies the certificate for 127.0.0.1")
    };

    // HTTPS: the same answers as over HTTP.
    let mut https = connect().await;
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    https.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = plain_exchange(
        server.http,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(!String::from_utf8_lossy(&plain).contains("HTTP/1.1"));

    let mut carol = s_client_join(server.tcp, "carol").await;

    // WSS, as the page served over https:// opens it: its origin is https://HOST.
    let mut request = format!("wss://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    let origin = format!("https://127.0.0.1:{port}");
    request
        .headers_mut()
        .insert("Origin", origin.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::client_async(request, connect().await)
        .await
        .expect("the WebSocket handshake over TLS");
    assert_eq!(response.status(), 101);
    assert_eq!(next_event(&mut ws).await, json!({"type": "prompt"}));
    send(&mut ws, json!({"type": "join", "name": "dave"})).await;
    let welcome = next_event(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["online"], json!(["carol", "dave"]), "{welcome}");
    carol.expect("*** dave has joined the chat ***\n").await;

    carol.type_line("hello dave");
    let said = next_event(&mut ws).await;
    assert_eq!(
        (&said["type"], &said["from"], &said["text"]),
        (&json!("message"), &json!("carol"), &json!("hello dave")),
        "{said}"
    );
    send(
        &mut ws,
        json!({"type": "say", "text": "hi carol, from wss"}),
    )
    .await;
    carol.expect("dave: hi carol, from wss\n").await;
    let own = next_event(&mut ws).await;
    assert_eq!(own["text"], "hi carol, from wss", "{own}");
    send(
        &mut ws,
        json!({"type": "msg", "to": "carol", "text": "psst"}),
    )
    .await;
    carol.expect("[private] dave: psst\n").await;
    assert_eq!(
        next_event(&mut ws).await,
        json!({"type": "private_sent", "to": "carol", "text": "psst"})
    );
    carol.type_line("/msg dave back");
    assert_eq!(
        next_event(&mut ws).await,
        json!({"type": "private", "from": "carol", "text": "back"})
    );

    send(&mut ws, json!({"type": "quit"})).await;
    assert_eq!(next_event(&mut ws).await, json!({"type": "goodbye"}));
    let close = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("the close in time");
    match close {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame with 1000, got {other:?}"),
    }
    carol.expect("*** dave has left the chat ***\n").await;
}

/// Runs the server expecting it to refuse to start; returns its standard error.
async fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Server::command().args(args).envs(env).output().await;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} {env:?} started: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("listening"),
        "nothing is listened on: {stdout}"
    );
    err
}

#[tokio::test]
async fn bad_tls_settings_stop_the_server_before_it_listens_with_a_clear_error() {
    let cert = TestCert::new("bad");
    let (cert_path, key_path) = (cert.cert(), cert.key());
    let (cert_path, key_path) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let err = refused(&["--tls-cert", cert_path], &[]).await;
    assert!(err.contains("--tls-key"), "{err}");
    let err = refused(&[], &[("CHAT_TLS_KEY", key_path)]).await;
    assert!(err.contains("--tls-cert"), "{err}");

    let missing = cert.cert().with_file_name("missing.pem");
    let err = refused(
        &[
            "--tls-cert",
            missing.to_str().unwrap(),
            "--tls-key",
            key_path,
        ],
        &[],
    )
    .await;
    assert!(
        err.contains(&format!("cannot read --tls-cert {}", missing.display())),
        "{err}"
    );
    let err = refused(&["--tls-cert", cert_path, "--tls-key", cert_path], &[]).await;
    assert!(
        err.contains(&format!("--tls-key {cert_path} holds no")),
        "{err}"
    );
}

/// A line client over TLS, trusting the test certificate.
struct TlsLines {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    seen: Vec<u8>,
}

impl TlsLines {
    async fn connect(cert: &TestCert, addr: SocketAddr) -> TlsLines {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let stream = connector(cert).connect(ip, tcp).await.expect("handshake");
        TlsLines {
            stream,
            seen: Vec::new(),
        }
    }

    async fn send(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Reads until what arrived ends with `want`; returns how many bytes arrived in all.
    async fn read_until_end_with(&mut self, want: &str) -> usize {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        while !self.seen.ends_with(want.as_bytes()) {
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    let tail = &self.seen[self.seen.len().saturating_sub(200)..];
                    panic!(
                        "{want:?} never arrived; {} bytes did, ending {:?}",
                        self.seen.len(),
                        String::from_utf8_lossy(tail)
                    )
                })
                .unwrap();
            assert!(n > 0, "closed before {want:?}");
            self.seen.extend_from_slice(&buf[..n]);
        }
        self.seen.len()
    }
}

#[tokio::test]
async fn a_tls_reader_that_falls_behind_gets_every_line_once_it_reads_again() {
    let cert = TestCert::new("behind");
    let server = Server::command()
        .args(["--flood", "off", "--max-queue", "67108864"])
        .args(cert.flags())
        .start()
        .await;
    let mut bob = TlsLines::connect(&cert, server.tcp).await;
    bob.send("bob").await;
    bob.read_until_end_with("Type /help for the list of commands.\n")
        .await;
    let mut alice = TlsLines::connect(&cert, server.tcp).await;
    alice.send("alice").await;
    alice
        .read_until_end_with("Type /help for the list of commands.\n")
        .await;
    bob.read_until_end_with("*** alice has joined the chat ***\n")
        .await;

    // Far more than the sockets between them hold, while bob reads nothing: the server's
    // writes to bob stall part-way, with TLS records still to send.
    let line = "x".repeat(4000);
    const LINES: usize = 6000;
    for _ in 0..LINES {
        alice.send(&line).await;
    }
    alice.send("/msg alice all sent").await;
    alice
        .read_until_end_with("[private to alice] all sent\n")
        .await;
    alice.send("the end").await;

    let before = bob.seen.len();
    let got = bob.read_until_end_with("alice: the end\n").await - before;
    let want = LINES * "alice: \n".len() + LINES * line.len() + "alice: the end\n".len();
    assert_eq!(got, want, "bob got every line, whole");
}
