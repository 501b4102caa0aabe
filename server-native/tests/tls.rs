//! TLS as users meet it: the real binary started with a certificate made here at test time,
//! real `openssl s_client` users chatting through it while a plain connection to the TLS port
//! is turned away, a WSS client (tokio-rustls and tokio-tungstenite, trusting only that
//! certificate) chatting with an `s_client` user, and clear errors for bad TLS settings.
//!
//! `openssl s_client -quiet` is how the README tells people to connect. `-quiet` also turns on
//! `-ign_eof`: the end of its input does not end the session (nc's does), and no line is taken
//! as a command of its own (without it, a line starting with `Q` or `R` would be). It exits
//! when the server closes the connection.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{ServerProcess as Server, TempDir, Terminal, WAIT, hermetic};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const OPENSSL: &str = "/usr/bin/openssl";

/// A self-signed certificate for `127.0.0.1` and `localhost`, made now, and its key, as PEM
/// files in a directory removed when dropped.
struct Cert {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
}

impl Cert {
    fn new(label: &str) -> Cert {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("make a certificate");
        let dir = TempDir::new(&format!("tls-{label}"));
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        Cert {
            dir,
            cert,
            key,
            der: made.cert.der().clone(),
        }
    }

    fn flags(&self) -> [&str; 4] {
        [
            "--tls-cert",
            self.cert.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
        ]
    }

    /// A TLS client that trusts this certificate and nothing else.
    fn connector(&self) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// The port of `addr`.
fn port(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// `openssl s_client -quiet -connect ADDR`, as a user runs it; killed when dropped.
fn s_client(addr: &str, name: &str) -> Terminal {
    assert!(
        Path::new(OPENSSL).exists(),
        "{OPENSSL} is missing: apt-get install openssl (`cargo xtask test` does it)"
    );
    Terminal::spawn(
        &format!("s_client user {name}"),
        Command::new(OPENSSL)
            .args(["s_client", "-quiet", "-connect", addr])
            // The certificate's details and "self-signed certificate": not the chat.
            .stderr(Stdio::null()),
        WAIT,
    )
}

/// An `s_client` user who connects, answers the prompt with the name and waits for the
/// welcome.
fn s_client_join(addr: &str, name: &str) -> Terminal {
    let mut user = s_client(addr, name);
    user.expect("Enter your name: ");
    user.type_line(name);
    user.expect(&format!("Welcome, {name}! Online ("));
    user.expect("Type /help for the list of commands.\n");
    user
}

/// Connects with plain TCP, sends `bytes` and reads until the server closes; returns what it
/// sent. Panics if the server keeps the connection open past [`WAIT`].
fn plain_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
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

#[test]
fn two_openssl_users_chat_while_a_plain_connection_is_turned_away() {
    let cert = Cert::new("s-client");
    let mut args = vec!["--max-users", "2"];
    args.extend(cert.flags());
    // It prints exactly the address lines of a server without TLS (scripts parse them).
    let server = Server::on_free_ports(&args, &[]);

    // Someone who connects and says nothing holds up nobody: the handshake waits in its own
    // task, not in the accept loop.
    let _silent = TcpStream::connect(&server.tcp).unwrap();

    let mut alice = s_client(&server.tcp, "alice");
    alice.expect("Enter your name: ");
    alice.type_line("alice");
    alice.expect("Welcome, alice! Online (1): alice\nType /help for the list of commands.\n");

    // nc to the TLS port: the handshake fails, the connection closes, no prompt is sent.
    let got = plain_exchange(&server.tcp, b"mallory\n");
    let got = String::from_utf8_lossy(&got);
    assert!(!got.contains("Enter your name"), "{got:?}");

    // Neither that nor the silent one took a place among the two users.
    let mut bob = s_client(&server.tcp, "bob");
    bob.expect("Enter your name: ");
    bob.type_line("Alice");
    bob.expect("The name 'Alice' is already taken; choose another.\nEnter your name: ");
    bob.type_line("bob");
    bob.expect("Welcome, bob! Online (2): alice, bob\n");
    alice.expect("*** bob has joined the chat ***\n");

    alice.type_line("hi bob, over TLS");
    bob.expect("alice: hi bob, over TLS\n");
    bob.type_line("/msg alice psst");
    alice.expect("[private] bob: psst\n");
    bob.expect("[private to alice] psst\n");

    // The end of s_client's input does not end its session (-quiet means -ign_eof).
    bob.stdin = None;
    alice.type_line("still there?");
    bob.expect("alice: still there?\n");

    alice.type_line("/quit");
    alice.expect("Goodbye!\n");
    alice.exits();
    bob.expect("*** alice has left the chat ***\n");
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

    let cert = Cert::new("wss");
    // The variables instead of the flags.
    let (cert_path, key_path) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let server = Server::on_free_ports(
        &[],
        &[("CHAT_TLS_CERT", cert_path), ("CHAT_TLS_KEY", key_path)],
    );
    let port = port(&server.http);
    let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let connector = cert.connector();
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(&server.http).await.unwrap();
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
    let plain = plain_exchange(&server.http, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!String::from_utf8_lossy(&plain).contains("HTTP/1.1"));

    let mut carol = s_client_join(&server.tcp, "carol");

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
    carol.expect("*** dave has joined the chat ***\n");

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
    carol.expect("dave: hi carol, from wss\n");
    let own = next_event(&mut ws).await;
    assert_eq!(own["text"], "hi carol, from wss", "{own}");
    send(
        &mut ws,
        json!({"type": "msg", "to": "carol", "text": "psst"}),
    )
    .await;
    carol.expect("[private] dave: psst\n");
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
    carol.expect("*** dave has left the chat ***\n");
}

/// Runs the server expecting it to refuse to start; returns its standard error.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = hermetic(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run chat-server");
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

#[test]
fn bad_tls_settings_stop_the_server_before_it_listens_with_a_clear_error() {
    let cert = Cert::new("bad");
    let (cert_path, key_path) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let err = refused(&["--tls-cert", cert_path], &[]);
    assert!(err.contains("--tls-key"), "{err}");
    let err = refused(&[], &[("CHAT_TLS_KEY", key_path)]);
    assert!(err.contains("--tls-cert"), "{err}");

    let missing = cert.dir.join("missing.pem");
    let err = refused(
        &[
            "--tls-cert",
            missing.to_str().unwrap(),
            "--tls-key",
            key_path,
        ],
        &[],
    );
    assert!(
        err.contains(&format!("cannot read --tls-cert {}", missing.display())),
        "{err}"
    );
    let err = refused(&["--tls-cert", cert_path, "--tls-key", cert_path], &[]);
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
    async fn connect(cert: &Cert, addr: &str) -> TlsLines {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let stream = cert.connector().connect(ip, tcp).await.expect("handshake");
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
    let cert = Cert::new("behind");
    let mut args = vec!["--flood", "off", "--max-queue", "67108864"];
    args.extend(cert.flags());
    let server = Server::on_free_ports(&args, &[]);
    let mut bob = TlsLines::connect(&cert, &server.tcp).await;
    bob.send("bob").await;
    bob.read_until_end_with("Type /help for the list of commands.\n")
        .await;
    let mut alice = TlsLines::connect(&cert, &server.tcp).await;
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
