//! `--trusted-proxy`, with the server in-process over loopback and hand-made headers: a
//! trusted proxy's PROXY header (line listener) and `X-Forwarded-For` / `Forwarded` (HTTP
//! listener) name the client that the per-address limits and the message log then see; from
//! any other peer they are text and ignored. (`tests/tests/haproxy.rs` puts a real HAProxy in
//! front of the release binary.)

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::{Client, TestServer, WAIT, connect_from, read_all};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

const REFUSAL: &str = "Too many connections from your address; try again in a minute.\n";
const NO_HEADER: &str = "Error: connections from this address must begin with a PROXY protocol \
                         header (it is a --trusted-proxy); closing.\n";
const PROMPT: &[u8] = b"Enter your name: ";

/// The flags of a server behind a proxy on 127.0.0.1 (trusted), whose every client may hold
/// two connections and open as many as it likes; 127.0.0.2 and up are other, untrusted peers.
const BEHIND_A_PROXY: &[&str] = &[
    "--trusted-proxy",
    "127.0.0.1",
    "--limit-loopback",
    "--max-conns-per-ip",
    "2",
    "--max-new-per-ip",
    "0",
];

/// What comes first on a line connection: the prompt (`Ok`, the connection still open), or
/// everything the server sent before closing.
async fn prompt_or_refusal(mut stream: TcpStream) -> Result<TcpStream, String> {
    let mut first = vec![0u8; PROMPT.len()];
    let mut got = 0;
    while got < first.len() {
        let n = tokio::time::timeout(WAIT, stream.read(&mut first[got..]))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        if n == 0 {
            return Err(String::from_utf8_lossy(&first[..got]).into_owned());
        }
        got += n;
    }
    if first == PROMPT {
        Ok(stream)
    } else {
        Err(String::from_utf8_lossy(&first).into_owned() + &read_all(&mut stream).await)
    }
}

/// PROXY protocol v1 for the client `client` (`ADDR:PORT`) that reached `to` (for an IPv6
/// client, the proxy's IPv6 loopback on `to`'s port).
fn v1(client: &str, to: SocketAddr) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let (family, to_ip) = match client {
        SocketAddr::V4(_) => ("TCP4", to.ip().to_string()),
        SocketAddr::V6(_) => ("TCP6", "::1".to_owned()),
    };
    format!(
        "PROXY {family} {} {to_ip} {} {}\r\n",
        client.ip(),
        client.port(),
        to.port()
    )
    .into_bytes()
}

/// PROXY protocol v2, command PROXY over TCP/IPv4, with an authority TLV, as HAProxy's
/// `send-proxy-v2` sends it.
fn v2(client: &str, to: SocketAddr) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let (SocketAddr::V4(client), SocketAddr::V4(to)) = (client, to) else {
        panic!("IPv4 only here");
    };
    let mut block = [client.ip().octets(), to.ip().octets()].concat();
    block.extend_from_slice(&client.port().to_be_bytes());
    block.extend_from_slice(&to.port().to_be_bytes());
    block.extend_from_slice(&[0x02, 0x00, 0x09]);
    block.extend_from_slice(b"localhost");
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    header.extend_from_slice(&(block.len() as u16).to_be_bytes());
    header.extend_from_slice(&block);
    header
}

/// v2's LOCAL command: the proxy's own connection (a health check).
const V2_LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

/// A line connection through the proxy at 127.0.0.1 that begins with `header`.
async fn through_proxy(server: &TestServer, header: &[u8]) -> Result<TcpStream, String> {
    let mut stream = connect_from("127.0.0.1", server.tcp).await;
    stream.write_all(header).await.unwrap();
    prompt_or_refusal(stream).await
}

#[tokio::test]
async fn a_proxys_line_connections_count_as_the_clients_its_header_names() {
    let server = TestServer::start(BEHIND_A_PROXY).await;
    // Three clients, in both versions of the header: each has a share of its own, although
    // all come from the one proxy, which is not limited itself.
    let mut held = Vec::new();
    for header in [
        v1("203.0.113.1:5001", server.tcp),
        v2("203.0.113.2:5002", server.tcp),
        v1("203.0.113.3:5003", server.tcp),
    ] {
        held.push(through_proxy(&server, &header).await.expect("the prompt"));
    }
    // Three from one client: two places, then the refusal.
    let one = v2("198.51.100.9:6000", server.tcp);
    held.push(through_proxy(&server, &one).await.expect("the prompt"));
    held.push(
        through_proxy(&server, &v1("198.51.100.9:6001", server.tcp))
            .await
            .unwrap(),
    );
    let refused = through_proxy(&server, &one).await.unwrap_err();
    assert_eq!(refused, REFUSAL);
    // Its first two places are its own: another client still gets in.
    through_proxy(&server, &v1("203.0.113.4:5004", server.tcp))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_client_the_header_names_is_the_one_the_room_and_the_log_see() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("chat.jsonl");
    let mut flags = BEHIND_A_PROXY.to_vec();
    flags.extend(["--log", log.to_str().unwrap()]);
    let mut server = TestServer::start(&flags).await;
    // The name follows the header in the same write: nothing past the header is lost.
    let mut header = v2("203.0.113.7:4711", server.tcp);
    header.extend_from_slice(b"carol\n");
    let stream = through_proxy(&server, &header).await.unwrap();
    let mut carol = Client::from_stream(stream);
    carol.line_eq("Type /help for the list of commands.").await;
    // A v1 header a byte at a time.
    let mut slow = connect_from("127.0.0.1", server.tcp).await;
    for byte in v1("[2001:db8::5]:80", server.tcp).iter().chain(b"dave\n") {
        slow.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut dave = Client::from_stream(prompt_or_refusal(slow).await.unwrap());
    dave.line_eq("Type /help for the list of commands.").await;
    assert_eq!(carol.line().await, "*** dave has joined the chat ***");
    server.shutdown().await.unwrap();
    let records = std::fs::read_to_string(&log).unwrap();
    let joins: Vec<&str> = records.lines().filter(|l| l.contains("\"join\"")).collect();
    assert_eq!(joins.len(), 2, "{records}");
    assert!(joins[0].contains(r#""name":"carol""#), "{records}");
    assert!(joins[0].contains(r#""peer":"203.0.113.7""#), "{records}");
    assert!(joins[1].contains(r#""peer":"2001:db8::5""#), "{records}");
}

#[tokio::test]
async fn a_proxys_own_connections_unknown_and_local_count_as_the_proxy() {
    let mut flags = BEHIND_A_PROXY.to_vec();
    // The proxy's own address is limited like anyone's (it is not loopback-exempt here).
    flags.extend(["--trusted-proxy", "127.0.0.0/8"]);
    let server = TestServer::start(&flags).await;
    let _a = through_proxy(&server, b"PROXY UNKNOWN\r\n").await.unwrap();
    let _b = through_proxy(&server, V2_LOCAL).await.unwrap();
    let refused = through_proxy(&server, b"PROXY UNKNOWN ::1 ::1 1 2\r\n").await;
    assert_eq!(refused.unwrap_err(), REFUSAL);
    // Clients through it are not affected.
    through_proxy(&server, &v1("203.0.113.1:1", server.tcp))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_trusted_proxy_that_sends_no_header_is_told_and_closed() {
    let mut flags = BEHIND_A_PROXY.to_vec();
    flags.extend(["--handshake-timeout", "3"]);
    let server = TestServer::start(&flags).await;
    // Nothing, or half a header: told when the handshake timeout is over.
    let silent = through_proxy(&server, b"");
    let half = through_proxy(&server, b"PROXY TCP4 1.2");
    // A name where the header should be: refused at once, never prompted.
    let at_once = async {
        let started = Instant::now();
        assert_eq!(
            through_proxy(&server, b"alice\n").await.unwrap_err(),
            NO_HEADER
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "at once, not at the timeout"
        );
        // Garbage in a header, and one too long.
        let bad = b"PROXY TCP4 203.0.113.1 127.0.0.1 99999 1\r\n";
        assert_eq!(through_proxy(&server, bad).await.unwrap_err(), NO_HEADER);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(200, b'x');
        assert_eq!(through_proxy(&server, &long).await.unwrap_err(), NO_HEADER);
    };
    let (silent, half, ()) = tokio::join!(silent, half, at_once);
    assert_eq!(silent.unwrap_err(), NO_HEADER);
    assert_eq!(half.unwrap_err(), NO_HEADER);
    // Others are not held up meanwhile.
    let _ok = through_proxy(&server, &v1("203.0.113.1:1", server.tcp))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_untrusted_peers_proxy_header_is_only_a_name_it_types() {
    let server = TestServer::start(&[
        "--trusted-proxy",
        "10.0.0.0/8",
        "--limit-loopback",
        "--max-conns-per-ip",
        "1",
        "--max-new-per-ip",
        "0",
    ])
    .await;
    let stream = connect_from("127.0.0.2", server.tcp).await;
    let mut mallory = Client::from_stream(prompt_or_refusal(stream).await.expect("prompted"));
    mallory.send_raw(&v1("203.0.113.1:1", server.tcp)).await;
    assert_eq!(
        mallory.line().await,
        "Name cannot contain ' ': use letters, digits, '_', '-' and '.' only."
    );
    mallory.expect_prompt().await;
    // Counted as 127.0.0.2, whatever it claims: its second connection is refused.
    let mut again = connect_from("127.0.0.2", server.tcp).await;
    let _ = again.write_all(&v2("203.0.113.2:1", server.tcp)).await;
    assert_eq!(read_all(&mut again).await, REFUSAL);
}

#[tokio::test]
async fn the_proxy_header_comes_before_tls() {
    use std::sync::Arc;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut flags = BEHIND_A_PROXY.to_vec();
    flags.extend([
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let server = TestServer::start(&flags).await;
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));
    for n in 1..=3 {
        let mut stream = connect_from("127.0.0.1", server.tcp).await;
        stream
            .write_all(&v2(&format!("203.0.113.{n}:443"), server.tcp))
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(WAIT, connector.connect(name, stream))
            .await
            .expect("the handshake in time")
            .expect("TLS after the PROXY header");
        let mut prompt = [0u8; 17];
        tls.read_exact(&mut prompt).await.unwrap();
        assert_eq!(&prompt, PROMPT);
        tls.write_all(format!("user{n}\n").as_bytes())
            .await
            .unwrap();
        let mut welcome = [0u8; 8];
        tls.read_exact(&mut welcome).await.unwrap();
        assert_eq!(&welcome, b"Welcome,");
    }
}

/// One HTTP request from the loopback address `from`, whose connection is then closed; the
/// status line and the whole response.
async fn request_from(from: &str, http: SocketAddr, headers: &str) -> (String, String) {
    let mut stream = connect_from(from, http).await;
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let response = read_all(&mut stream).await;
    let status = response.lines().next().unwrap_or_default().to_owned();
    (status, response)
}

/// A WebSocket over a connection from the loopback address `from` with these request headers;
/// the error is the status of the refusal.
async fn ws_from(
    from: &str,
    http: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, String> {
    let mut request = format!("ws://{http}/ws").into_client_request().unwrap();
    for (name, value) in headers {
        let name: HeaderName = name.parse().unwrap();
        request
            .headers_mut()
            .append(name, HeaderValue::from_str(value).unwrap());
    }
    let stream = connect_from(from, http).await;
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Err(response.status().to_string())
        }
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => panic!("no answer in time"),
    }
}

/// Asks until `from`'s request with `headers` is answered 200 (a closed connection's place is
/// given back a moment after the close); fails after a while with the last answer.
async fn eventually_ok(from: &str, http: SocketAddr, headers: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, response) = request_from(from, http, headers).await;
        if status == "HTTP/1.1 200 OK" {
            return;
        }
        assert!(Instant::now() < deadline, "still {response}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_proxys_http_requests_count_as_the_clients_they_name() {
    let server = TestServer::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--limit-loopback",
        "--max-conns-per-ip",
        "1",
        "--max-new-per-ip",
        "0",
    ])
    .await;
    let http = server.http;
    // Two WebSockets through the proxy, for two clients: each holds its client's one place.
    let mut first = ws_from("127.0.0.1", http, &[("X-Forwarded-For", "203.0.113.1")])
        .await
        .unwrap();
    let _second = ws_from("127.0.0.1", http, &[("Forwarded", "for=203.0.113.2")])
        .await
        .unwrap();
    // So the first client's next request is refused, as at the door, on both listeners.
    let (status, response) =
        request_from("127.0.0.1", http, "X-Forwarded-For: 203.0.113.1\r\n").await;
    assert_eq!(status, "HTTP/1.1 429 Too Many Requests", "{response}");
    assert!(response.contains("\r\nRetry-After: 60\r\n"), "{response}");
    assert!(
        response.ends_with(&format!("\r\n\r\n{REFUSAL}")),
        "{response}"
    );
    let mut line = connect_from("127.0.0.1", server.tcp).await;
    line.write_all(&v1("203.0.113.1:9", server.tcp))
        .await
        .unwrap();
    assert_eq!(prompt_or_refusal(line).await.unwrap_err(), REFUSAL);
    // What a client writes itself, left of what the proxy appended, is not believed.
    let forged = "X-Forwarded-For: 203.0.113.3\r\nX-Forwarded-For: 203.0.113.1\r\n";
    assert_eq!(
        request_from("127.0.0.1", http, forged).await.0,
        "HTTP/1.1 429 Too Many Requests"
    );
    let spoofing = "X-Forwarded-For: 203.0.113.1, 203.0.113.4\r\n";
    assert_eq!(
        request_from("127.0.0.1", http, spoofing).await.0,
        "HTTP/1.1 200 OK"
    );
    // IPv6 with a port in Forwarded, and the proxy's own request (no header: a health check).
    let v6 = "Forwarded: for=\"[2001:db8::1]:4711\";proto=http\r\n";
    assert_eq!(
        request_from("127.0.0.1", http, v6).await.0,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        request_from("127.0.0.1", http, "").await.0,
        "HTTP/1.1 200 OK"
    );
    // The first client's WebSocket closes: its place is free again.
    first.send(Message::Close(None)).await.unwrap();
    while first.next().await.is_some_and(|m| m.is_ok()) {}
    drop(first);
    eventually_ok("127.0.0.1", http, "X-Forwarded-For: 203.0.113.1\r\n").await;
}

#[tokio::test]
async fn a_kept_alive_proxy_connection_moves_its_place_to_each_requests_client() {
    let server = TestServer::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--limit-loopback",
        "--max-conns-per-ip",
        "1",
        "--max-new-per-ip",
        "0",
    ])
    .await;
    let http = server.http;
    let mut kept = connect_from("127.0.0.1", http).await;
    // One request on the kept-alive connection; the status line of its answer, read whole.
    let mut ask = async |client: &str| {
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {client}\r\n\r\n"
        );
        kept.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let whole = |a: &[u8]| {
            let text = String::from_utf8_lossy(a);
            let (head, body) = text.split_once("\r\n\r\n")?;
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))?;
            (body.len() >= len.parse().ok()?).then(|| head.lines().next().unwrap().to_owned())
        };
        loop {
            if let Some(status) = whole(&answer) {
                return status;
            }
            let mut chunk = [0u8; 512];
            let n = tokio::time::timeout(WAIT, kept.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    assert_eq!(ask("203.0.113.1").await, "HTTP/1.1 200 OK");
    // The same client again on the same connection: still its one place.
    assert_eq!(ask("203.0.113.1").await, "HTTP/1.1 200 OK");
    // While the connection waits for its next request, it holds that client's place.
    let header = "X-Forwarded-For: 203.0.113.1\r\n";
    assert_eq!(
        request_from("127.0.0.1", http, header).await.0,
        "HTTP/1.1 429 Too Many Requests"
    );
    // Another client's request on it moves the place: the first client may connect again.
    assert_eq!(ask("203.0.113.2").await, "HTTP/1.1 200 OK");
    assert_eq!(
        request_from("127.0.0.1", http, header).await.0,
        "HTTP/1.1 200 OK"
    );
    let other = "X-Forwarded-For: 203.0.113.2\r\n";
    assert_eq!(
        request_from("127.0.0.1", http, other).await.0,
        "HTTP/1.1 429 Too Many Requests"
    );
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let server = TestServer::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--limit-loopback",
        "--max-conns-per-ip",
        "1",
        "--max-new-per-ip",
        "0",
    ])
    .await;
    let http = server.http;
    // 127.0.0.2 is not trusted: its WebSocket counts as 127.0.0.2, whatever it says.
    let _ws = ws_from("127.0.0.2", http, &[("X-Forwarded-For", "203.0.113.1")])
        .await
        .unwrap();
    for header in [
        "X-Forwarded-For: 203.0.113.9\r\n",
        "Forwarded: for=203.0.113.9\r\n",
    ] {
        let (status, _) = request_from("127.0.0.2", http, header).await;
        assert_eq!(status, "HTTP/1.1 429 Too Many Requests", "{header}");
    }
    // And the client it named has its place untouched, through the trusted proxy.
    let named = "X-Forwarded-For: 203.0.113.1\r\n";
    assert_eq!(
        request_from("127.0.0.1", http, named).await.0,
        "HTTP/1.1 200 OK"
    );
}

#[tokio::test]
async fn a_websocket_through_the_proxy_joins_as_its_client() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("chat.jsonl");
    let mut flags = BEHIND_A_PROXY.to_vec();
    flags.extend(["--log", log.to_str().unwrap()]);
    let mut server = TestServer::start(&flags).await;
    let headers = [("X-Forwarded-For", "198.51.100.20, 127.0.0.1")];
    let mut ws = ws_from("127.0.0.1", server.http, &headers).await.unwrap();
    let _prompt = ws.next().await.unwrap().unwrap();
    ws.send(Message::text(r#"{"type":"join","name":"erin"}"#))
        .await
        .unwrap();
    let welcome = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(welcome.contains(r#""type":"welcome""#), "{welcome}");
    drop(ws);
    server.shutdown().await.unwrap();
    let records = std::fs::read_to_string(&log).unwrap();
    let join = records
        .lines()
        .find(|l| l.contains("\"join\""))
        .expect("a join");
    assert!(
        join.contains(r#""name":"erin""#) && join.contains(r#""peer":"198.51.100.20""#),
        "{records}"
    );
}
