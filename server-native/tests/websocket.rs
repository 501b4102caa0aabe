//! WebSocket on `/ws` and the static site, over real loopback sockets with the server
//! in-process: what a browser (or any WebSocket client) and an nc user see, in one room.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

/// A WebSocket client speaking the JSON wire.
struct WsClient {
    ws: WebSocketStream<TcpStream>,
}

impl WsClient {
    async fn connect(server: &TestServer) -> WsClient {
        WsClient::connect_with(server.http, &[]).await.expect("101")
    }

    /// Connects with these extra request headers; the error is the server's refusal.
    async fn connect_with(http: SocketAddr, headers: &[(&str, &str)]) -> Result<WsClient, WsError> {
        let mut request = format!("ws://{http}/ws").into_client_request().unwrap();
        for (name, value) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName = name.parse().unwrap();
            request
                .headers_mut()
                .insert(name, HeaderValue::from_str(value).unwrap());
        }
        let stream = TcpStream::connect(http).await.unwrap();
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("the handshake ends in time")?;
        Ok(WsClient { ws })
    }

    /// Connects, sends `join` and reads up to the welcome, which it returns.
    async fn join(server: &TestServer, name: &str) -> (WsClient, Value) {
        let mut c = WsClient::connect(server).await;
        assert_eq!(c.event().await, json!({"type": "prompt"}));
        c.send(json!({"type": "join", "name": name})).await;
        let welcome = c.event().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["name"], name);
        (c, welcome)
    }

    async fn send(&mut self, request: Value) {
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .expect("send");
    }

    /// The next message, whatever it is (pings are answered on the way).
    async fn message(&mut self) -> Option<Message> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message arrives in time");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next event: one JSON object in one text message.
    async fn event(&mut self) -> Value {
        match self.message().await {
            Some(Message::Text(text)) => serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{text:?} is one JSON object: {err}")),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Skips events until one of type `kind`; returns it.
    async fn event_of(&mut self, kind: &str) -> Value {
        loop {
            let event = self.event().await;
            if event["type"] == kind {
                return event;
            }
        }
    }

    /// Reads the last events up to the server's close frame (answering it); returns both.
    async fn closed(&mut self) -> (Vec<Value>, Option<CloseFrame>) {
        let mut events = Vec::new();
        loop {
            match self.message().await {
                Some(Message::Text(text)) => events.push(serde_json::from_str(&text).unwrap()),
                Some(Message::Close(frame)) => {
                    // Reading on lets the client answer and see the end of the connection.
                    assert!(self.message().await.is_none());
                    return (events, frame);
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => return (events, None),
            }
        }
    }
}

fn code(frame: &Option<CloseFrame>) -> Option<CloseCode> {
    frame.as_ref().map(|f| f.code)
}

#[tokio::test]
async fn a_websocket_user_and_an_nc_user_chat_both_ways() {
    let server = TestServer::start(&[]).await;
    let (mut alice, welcome) = WsClient::join(&server, "alice").await;
    assert_eq!(welcome["online"], json!(["alice"]));
    let mut bob = server.join("bob").await;
    assert_eq!(
        alice.event().await,
        json!({"type": "joined", "name": "bob"})
    );

    bob.send("hi alice").await;
    let heard = alice.event().await;
    assert_eq!(
        (&heard["from"], &heard["text"]),
        (&json!("bob"), &json!("hi alice"))
    );
    alice
        .send(json!({"type": "say", "text": "hello bob"}))
        .await;
    assert_eq!(bob.line().await, "alice: hello bob");
    // Her own message comes back once, numbered right after bob's.
    let echo = alice.event().await;
    assert_eq!(
        echo,
        json!({"type": "message", "seq": heard["seq"].as_u64().unwrap() + 1,
               "from": "alice", "text": "hello bob"})
    );

    alice
        .send(json!({"type": "msg", "to": "BOB", "text": "psst"}))
        .await;
    assert_eq!(bob.line().await, "[private] alice: psst");
    assert_eq!(
        alice.event().await,
        json!({"type": "private_sent", "to": "bob", "text": "psst"})
    );
    bob.send("/msg alice back at you").await;
    assert_eq!(bob.line().await, "[private to alice] back at you");
    assert_eq!(
        alice.event().await,
        json!({"type": "private", "from": "bob", "text": "back at you"})
    );
    alice.send(json!({"type": "who"})).await;
    assert_eq!(
        alice.event().await,
        json!({"type": "who", "online": ["alice", "bob"]})
    );

    let mut carol = server.join("carol").await;
    assert_eq!(
        alice.event().await,
        json!({"type": "joined", "name": "carol"})
    );
    assert_eq!(bob.line().await, "*** carol has joined the chat ***");
    carol.send("/quit").await;
    assert_eq!(
        alice.event().await,
        json!({"type": "left", "name": "carol"})
    );

    alice.send(json!({"type": "quit"})).await;
    let (last, close) = alice.closed().await;
    assert_eq!(last, [json!({"type": "goodbye"})]);
    assert_eq!(code(&close), Some(CloseCode::Normal));
    assert_eq!(
        bob.line_eq("*** alice has left the chat ***").await.len(),
        1
    );
}

#[tokio::test]
async fn a_reconnect_with_resume_gets_exactly_the_missed_messages() {
    let server = TestServer::start(&[]).await;
    let mut bob = server.join("bob").await;
    let (mut alice, welcome) = WsClient::join(&server, "alice").await;
    let epoch = welcome["epoch"].as_u64().unwrap();
    bob.line_eq("*** alice has joined the chat ***").await;
    bob.send("one").await;
    bob.send("two").await;
    let _ = alice.event_of("message").await;
    let last_seen = alice.event_of("message").await["seq"].as_u64().unwrap();

    // Her connection drops; the room goes on without her.
    drop(alice);
    bob.line_eq("*** alice has left the chat ***").await;
    bob.send("three").await;
    bob.send("four").await;
    // Once bob has his answer, the room has taken both.
    bob.send("/who").await;
    bob.line_eq("Online (1): bob").await;

    let mut alice = WsClient::connect(&server).await;
    assert_eq!(alice.event().await["type"], "prompt");
    let resume = json!({"epoch": epoch, "seq": last_seen});
    alice
        .send(json!({"type": "join", "name": "alice", "resume": resume}))
        .await;
    assert_eq!(alice.event().await["type"], "welcome");
    let history = alice.event().await;
    assert_eq!(
        history,
        json!({"type": "history", "messages": [
            {"seq": last_seen + 1, "from": "bob", "text": "three"},
            {"seq": last_seen + 2, "from": "bob", "text": "four"},
        ]})
    );
    bob.send("five").await;
    assert_eq!(
        alice.event().await["seq"],
        last_seen + 3,
        "no gap, no repeat"
    );

    // A resume point from an earlier run of the server: the recent messages, and a warning.
    let mut old = WsClient::connect(&server).await;
    assert_eq!(old.event().await["type"], "prompt");
    let resume = json!({"epoch": epoch - 1, "seq": 1});
    old.send(json!({"type": "join", "name": "olga", "resume": resume}))
        .await;
    assert_eq!(old.event().await["type"], "welcome");
    let history = old.event().await;
    assert_eq!(history["gap"], true, "{history}");
    assert_eq!(history["messages"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_client_that_closes_gets_its_close_answered_and_leaves() {
    let server = TestServer::start(&[]).await;
    let mut bob = server.join("bob").await;
    let (mut alice, _) = WsClient::join(&server, "alice").await;
    bob.line_eq("*** alice has joined the chat ***").await;
    alice.ws.close(None).await.unwrap();
    let (events, answer) = alice.closed().await;
    assert_eq!(events, [] as [Value; 0]);
    assert!(
        answer.is_none(),
        "an empty close is answered with an empty close"
    );
    assert_eq!(bob.line().await, "*** alice has left the chat ***");
}

/// Sends a raw request head to the HTTP listener and reads the whole response.
async fn raw_request(http: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(http).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the server answers and closes in time")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn upgrade_request(host: &str, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn only_the_own_origin_and_allowed_ones_may_connect() {
    let server = TestServer::start(&[]).await;
    let host = server.http.to_string();

    // A page from elsewhere is refused, with a one-line reason.
    let refused = raw_request(
        server.http,
        &upgrade_request(&host, "Origin: http://evil.example\r\n"),
    )
    .await;
    assert!(
        refused.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{refused}"
    );
    let body = refused.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.contains("http://evil.example") && body.contains("--allow-origin"));
    assert_eq!(body.lines().count(), 1, "{body:?}");

    // The server's own page (any case), and a client that sends no Origin, are accepted.
    let own = format!("http://{}", host.to_uppercase());
    assert!(
        WsClient::connect_with(server.http, &[("Origin", &own)])
            .await
            .is_ok()
    );
    let mut plain = WsClient::connect(&server).await;
    assert_eq!(plain.event().await["type"], "prompt");

    let server = TestServer::start(&["--allow-origin", "https://chat.example"]).await;
    let mut allowed = WsClient::connect_with(server.http, &[("Origin", "https://CHAT.example")])
        .await
        .expect("an allowed origin is accepted");
    assert_eq!(allowed.event().await["type"], "prompt");
    let err = WsClient::connect_with(server.http, &[("Origin", "https://other.example")])
        .await
        .err()
        .expect("another origin is refused");
    assert!(
        matches!(&err, WsError::Http(response) if response.status() == 403),
        "{err:?}"
    );

    let server = TestServer::start(&["--allow-origin", "*"]).await;
    assert!(
        WsClient::connect_with(server.http, &[("Origin", "https://anywhere.example")])
            .await
            .is_ok()
    );
}

/// `GET path` with this `Host`: the status line and the body.
async fn get_for(http: SocketAddr, host: &str, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (status, _, body) = parse_response(&raw_request(http, &request).await);
    (status, body)
}

#[tokio::test]
async fn a_page_whose_name_was_pointed_at_the_server_is_refused_with_the_reason() {
    let server = TestServer::start(&[]).await;
    let port = server.http.port();
    let rebound = format!("evil.example:{port}");

    // DNS rebinding: the page of http://evil.example:PORT, its name now resolving to
    // 127.0.0.1, sends its own origin and name. Neither /ws nor any page answers it.
    let origin = format!("http://{rebound}");
    let err = WsClient::connect_with(server.http, &[("Host", &rebound), ("Origin", &origin)])
        .await
        .err()
        .expect("the rebound page's WebSocket is refused");
    assert!(
        matches!(&err, WsError::Http(response) if response.status() == 403),
        "{err:?}"
    );
    let refused = raw_request(
        server.http,
        &upgrade_request(&rebound, &format!("Origin: {origin}\r\n")),
    )
    .await;
    let (status, _, body) = parse_response(&refused);
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "{refused}");
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert!(
        body.contains("origin \"http://evil.example:")
            && body.contains("does not go by the name \"evil.example\"")
            && body.contains("--allow-host evil.example"),
        "{body}"
    );
    for path in ["/", "/healthz", "/metrics", "/nope"] {
        let (status, body) = get_for(server.http, &rebound, path).await;
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{path}");
        assert_eq!(
            body,
            "This server does not go by the name \"evil.example\" (a page of another site may \
             have pointed its own name at this address); if it does, start the server with \
             --allow-host evil.example.\n",
            "{path}"
        );
    }

    // The server's own page, by its address, by localhost, by IPv6 loopback's address.
    for own in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, body) = get_for(server.http, &own, "/").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{own}");
        assert!(body.contains("chat-server"), "{own}");
        let origin = format!("http://{own}");
        let mut ws = WsClient::connect_with(server.http, &[("Host", &own), ("Origin", &origin)])
            .await
            .unwrap_or_else(|err| panic!("the own page at {own}: {err:?}"));
        assert_eq!(ws.event().await["type"], "prompt", "{own}");
    }

    // A name the server is told it goes by, as an --allow-origin origin's host or with
    // --allow-host, is its own.
    let server = TestServer::start(&[
        "--allow-origin",
        "http://chat.example.org:8000",
        "--allow-host",
        "chat.example.net",
    ])
    .await;
    for (host, origin) in [
        ("chat.example.org:8000", "http://chat.example.org:8000"),
        ("Chat.Example.NET", "http://chat.example.net"),
    ] {
        let (status, _) = get_for(server.http, host, "/healthz").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{host}");
        let mut ws = WsClient::connect_with(server.http, &[("Host", host), ("Origin", origin)])
            .await
            .unwrap_or_else(|err| panic!("{origin}: {err:?}"));
        assert_eq!(ws.event().await["type"], "prompt", "{origin}");
    }
    let (status, _) = get_for(server.http, "evil.example", "/healthz").await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
}

#[tokio::test]
async fn bad_upgrade_requests_get_a_clear_status() {
    let server = TestServer::start(&[]).await;
    let plain = raw_request(server.http, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        plain.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{plain}"
    );
    assert!(plain.contains("Upgrade: websocket\r\n"));
    let bad_key = upgrade_request("x", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "nope");
    let response = raw_request(server.http, &bad_key).await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(response.contains("Sec-WebSocket-Key"));
    let old = upgrade_request("x", "").replace("Version: 13", "Version: 8");
    let response = raw_request(server.http, &old).await;
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    // Header names are case-insensitive (RFC 9110); hyper writes them title-cased.
    assert!(
        response
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13\r\n"),
        "{response}"
    );
    let post = upgrade_request("x", "").replace("GET", "POST");
    assert!(
        raw_request(server.http, &post)
            .await
            .starts_with("HTTP/1.1 405")
    );
    // The server is still there.
    assert_eq!(
        WsClient::connect(&server).await.event().await["type"],
        "prompt"
    );
}

/// One masked client frame: text, with `payload` (under 126 bytes).
fn client_text_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn frames_sent_with_the_request_head_are_not_lost() {
    let server = TestServer::start(&[]).await;
    let mut bob = server.join("bob").await;
    // The handshake and the first two requests in one write, as an eager client may send them.
    let mut bytes = upgrade_request(&server.http.to_string(), "").into_bytes();
    bytes.extend(client_text_frame(br#"{"type":"join","name":"eve"}"#));
    bytes.extend(client_text_frame(br#"{"type":"say","text":"early bird"}"#));
    let mut stream = TcpStream::connect(server.http).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(bob.line().await, "*** eve has joined the chat ***");
    assert_eq!(bob.line().await, "eve: early bird");
    let mut head = vec![0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_a_huge_one_closes_the_connection() {
    let server = TestServer::start(&["--max-line", "64"]).await;
    let (mut alice, _) = WsClient::join(&server, "alice").await;
    let long = "x".repeat(100);
    alice.send(json!({"type": "say", "text": long})).await;
    let error = alice.event().await;
    assert_eq!(error["code"], "line_too_long", "{error}");
    assert!(error["message"].as_str().unwrap().contains("64 bytes"));
    alice.send(json!({"type": "who"})).await;
    assert_eq!(alice.event().await["online"], json!(["alice"]), "she stays");

    // Past four times the limit and 1 KiB, the server stops reading and closes: 1009.
    let huge = "y".repeat(64 * 1024);
    alice.send(json!({"type": "say", "text": huge})).await;
    let (_, close) = alice.closed().await;
    assert_eq!(code(&close), Some(CloseCode::Size));

    let (mut bob, welcome) = WsClient::join(&server, "bob").await;
    assert_eq!(welcome["online"], json!(["bob"]), "alice has left");
    bob.send(json!({"type": "who"})).await;
    assert_eq!(bob.event().await["type"], "who");
    server.join("carol").await;
}

#[tokio::test]
async fn binary_messages_get_bad_request_and_pings_are_answered() {
    let server = TestServer::start(&[]).await;
    let (mut alice, _) = WsClient::join(&server, "alice").await;
    alice
        .ws
        .send(Message::Binary(Bytes::from_static(br#"{"type":"who"}"#)))
        .await
        .unwrap();
    let error = alice.event().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "bad_request");
    assert!(error["message"].as_str().unwrap().contains("binary"));
    alice.send(json!({"type": "who"})).await;
    assert_eq!(alice.event().await["type"], "who");

    // Her pings are answered.
    alice
        .ws
        .send(Message::Ping(Bytes::from_static(b"still there?")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, alice.ws.next()).await.unwrap();
    assert_eq!(
        pong.unwrap().unwrap(),
        Message::Pong(Bytes::from_static(b"still there?"))
    );
}

#[tokio::test]
async fn max_users_counts_websocket_and_tcp_together() {
    let server = TestServer::start(&["--max-users", "2"]).await;
    let _alice = server.join("alice").await;
    let (_bob, _) = WsClient::join(&server, "bob").await;

    let mut third = WsClient::connect(&server).await;
    let (events, close) = third.closed().await;
    assert_eq!(events, [json!({"type": "full"})]);
    assert_eq!(code(&close), Some(CloseCode::Again));
    let said = server.connect().await.closed().await;
    assert!(said.contains("Server is full"), "{said:?}");
}

#[tokio::test]
async fn all_64_places_beyond_max_users_take_websocket_upgrades_then_503() {
    let server = TestServer::start(&["--max-users", "1"]).await;
    // One user at the name prompt holds the room's one place.
    let mut lurker = WsClient::connect(&server).await;
    assert_eq!(lurker.event().await, json!({"type": "prompt"}));
    // The 64 places beyond it (docs/protocol.md): each newcomer is upgraded and told `full`,
    // and keeps its place while the server waits up to 2 s for it to answer the close frame,
    // which these do not read yet. The line listener, waiting to accept, holds none of them.
    let started = Instant::now();
    let mut beyond = Vec::new();
    for i in 1..=64 {
        match WsClient::connect_with(server.http, &[]).await {
            Ok(client) => beyond.push(client),
            Err(err) => panic!("upgrade {i} of the 64 beyond --max-users was refused: {err}"),
        }
    }
    let next = WsClient::connect_with(server.http, &[]).await;
    if started.elapsed() < Duration::from_millis(1500) {
        match next {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
            Ok(_) => panic!("a 66th connection found a place"),
            Err(err) => panic!("{err}"),
        }
    } else {
        eprintln!("the upgrades took over 1.5 s: the places may have been given back meanwhile");
    }
    for client in &mut beyond {
        let (events, close) = client.closed().await;
        assert_eq!(events, [json!({"type": "full"})]);
        assert_eq!(code(&close), Some(CloseCode::Again));
    }
}

#[tokio::test]
async fn flood_control_and_the_idle_timeout_apply_to_websocket_users() {
    let server = TestServer::start(&["--idle-timeout", "1", "--ws-ping", "1"]).await;
    let (mut alice, _) = WsClient::join(&server, "alice").await;
    for i in 0..30 {
        alice
            .send(json!({"type": "say", "text": format!("m{i}")}))
            .await;
    }
    let error = alice.event_of("error").await;
    assert_eq!(error["code"], "too_fast");

    // She answers every ping, but pongs are not chat: a second later she is idle.
    let (events, close) = alice.closed().await;
    assert_eq!(events.last(), Some(&json!({"type": "idle_timeout"})));
    assert_eq!(code(&close), Some(CloseCode::Normal));
}

#[tokio::test]
async fn a_websocket_client_that_never_joins_gets_name_timeout_and_a_normal_close() {
    let server = TestServer::start(&["--name-timeout", "1"]).await;
    let mut lurker = WsClient::connect(&server).await;
    assert_eq!(lurker.event().await, json!({"type": "prompt"}));
    lurker
        .send(json!({"type": "join", "name": "not a name"}))
        .await;
    let (events, close) = lurker.closed().await;
    assert_eq!(events.last(), Some(&json!({"type": "name_timeout"})));
    assert_eq!(code(&close), Some(CloseCode::Normal));
}

#[tokio::test]
async fn above_the_announce_limit_joins_come_as_one_presence_event() {
    let server = TestServer::start(&["--announce-limit", "1", "--announce-interval", "1"]).await;
    let (mut alice, _) = WsClient::join(&server, "alice").await;
    let mut bob = server.join("bob").await;
    let _carol = server.join("carol").await;
    // One digest a second later: alice, who saw neither join, hears of both; bob, whose
    // welcome listed alice and himself, of carol only.
    let presence = alice.event_of("presence").await;
    assert_eq!(
        presence,
        json!({"type": "presence", "joined": ["bob", "carol"], "left": [], "count": 3})
    );
    bob.line_eq("*** 1 joined: carol (3 online) ***").await;
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_dropped_after_two_ping_intervals() {
    let server = TestServer::start(&["--ws-ping", "1"]).await;
    let mut watcher = server.join("watcher").await;
    let (mut alive, _) = WsClient::join(&server, "alive").await;
    watcher.line_eq("*** alive has joined the chat ***").await;
    // The ghost joins, then is never polled again: it neither reads nor answers pings.
    let (_ghost, _) = WsClient::join(&server, "ghost").await;
    let silent_since = Instant::now();
    watcher.line_eq("*** ghost has joined the chat ***").await;

    // Meanwhile `alive` reads, and so answers every ping: it stays.
    assert_eq!(alive.event_of("left").await["name"], "ghost");
    let waited = silent_since.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "dropped after {waited:?}"
    );
    assert_eq!(
        watcher
            .line_eq("*** ghost has left the chat ***")
            .await
            .len(),
        0
    );
    alive.send(json!({"type": "who"})).await;
    assert_eq!(
        alive.event_of("who").await["online"],
        json!(["alive", "watcher"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_reader_that_stops_reading_is_dropped_as_too_slow() {
    let server =
        TestServer::start(&["--flood", "off", "--max-queue", "262144", "--ws-ping", "0"]).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.http).await.unwrap();
    let request = format!("ws://{}/ws", server.http);
    let (mut stalled, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    stalled
        .send(Message::text(r#"{"type":"join","name":"stalled"}"#))
        .await
        .unwrap();
    let mut watcher = server.join("watcher").await;
    let mut talker = server.join("talker").await;
    watcher.line_eq("*** talker has joined the chat ***").await;

    let text = "z".repeat(1000);
    // The talker stays at most 64 lines ahead of the watcher, a quarter of the queue bound, so
    // the watcher keeps up however the machine schedules it; the stalled reader falls behind.
    let (progress, mut heard_up_to) = tokio::sync::watch::channel(0usize);
    let send = tokio::spawn(async move {
        for i in 0..20_000 {
            if heard_up_to.wait_for(|&at| i < at + 64).await.is_err() {
                break;
            }
            talker.send(&format!("{i} {text}")).await;
        }
    });
    let mut heard = 0;
    loop {
        let line = watcher.line().await;
        if line == "*** stalled has left the chat ***" {
            break;
        }
        assert!(line.starts_with(&format!("talker: {heard} ")), "{line:.40}");
        heard += 1;
        progress.send_replace(heard);
    }
    send.abort();
    eprintln!("the stalled reader was dropped after {heard} lines of 1 KB");
}

#[tokio::test]
async fn graceful_shutdown_tells_websocket_users_and_closes_with_going_away() {
    let mut server = TestServer::start(&[]).await;
    let (mut alice, _) = WsClient::join(&server, "alice").await;
    // A peer that never answers the close frame cannot hold the shutdown up.
    let (_ghost, _) = WsClient::join(&server, "ghost").await;
    let _ = alice.event_of("joined").await;
    let listener = tokio::spawn(async move { alice.closed().await });
    let started = Instant::now();
    server.shutdown().await.expect("clean shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (events, close) = listener.await.unwrap();
    assert_eq!(events, [json!({"type": "shutdown"})]);
    assert_eq!(code(&close), Some(CloseCode::Away));
}

/// The status line, the headers (names lower-cased) and the body of a response.
fn parse_response(response: &str) -> (String, Vec<(String, String)>, String) {
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn get(
    http: SocketAddr,
    method: &str,
    path: &str,
    extra: &str,
) -> (String, Vec<(String, String)>, String) {
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n{extra}\r\n");
    parse_response(&raw_request(http, &request).await)
}

#[tokio::test]
async fn the_web_root_is_served_with_content_types_and_nothing_outside_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><title>chat</title>",
    )
    .unwrap();
    std::fs::write(root.join("style.css"), "body{}").unwrap();
    std::fs::write(root.join("pkg/app.js"), "export{}").unwrap();
    std::fs::write(root.join("pkg/app.js.gz"), b"\x1f\x8bnot really").unwrap();
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    std::fs::write(root.join("pkg/app_bg.wasm"), &wasm).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "do not serve").unwrap();
    let server = TestServer::start(&["--web-root", root.to_str().unwrap()]).await;
    let http = server.http;

    let (status, headers, body) = get(http, "GET", "/", "").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(body, "<!doctype html><title>chat</title>");
    for (path, content_type) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/pkg/app.js", "text/javascript; charset=utf-8"),
        ("/pkg/app_bg.wasm", "application/wasm"),
    ] {
        let (status, headers, _) = get(http, "GET", path, "").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some(content_type),
            "{path}"
        );
    }
    let (_, headers, body) = get(http, "GET", "/pkg/app_bg.wasm", "").await;
    assert_eq!(body.as_bytes(), wasm);
    assert_eq!(header(&headers, "content-length"), Some("8"));

    // HEAD: the same headers, no body.
    let (status, headers, body) = get(http, "HEAD", "/pkg/app_bg.wasm", "").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "content-length"), Some("8"));
    assert_eq!(body, "");

    // A client that takes gzip gets the compressed file when there is one.
    let (_, headers, body) = get(http, "GET", "/pkg/app.js", "Accept-Encoding: gzip, br\r\n").await;
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(body.starts_with('\u{1f}') || body.starts_with('\u{fffd}'));
    let (_, headers, body) = get(http, "GET", "/pkg/app.js", "").await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body, "export{}");

    assert!(
        get(http, "GET", "/missing.js", "")
            .await
            .0
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        get(http, "GET", "/pkg", "")
            .await
            .0
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        get(http, "POST", "/", "")
            .await
            .0
            .starts_with("HTTP/1.1 405")
    );
    for sneaky in [
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/pkg%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/%00",
    ] {
        let (status, _, body) = get(http, "GET", sneaky, "").await;
        assert!(
            status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.1 404"),
            "{sneaky}: {status}"
        );
        assert!(!body.contains("do not serve"), "{sneaky}");
    }
    // The health check and the WebSocket are there as well.
    assert_eq!(get(http, "GET", "/healthz", "").await.2, "ok\n");
    assert_eq!(
        WsClient::connect(&server).await.event().await["type"],
        "prompt"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn symbolic_links_never_lead_out_of_the_web_root() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("pkg")).unwrap();
    std::fs::write(root.join("pkg/app.js"), "export{}").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "do not serve").unwrap();
    // `ln -s / ROOT/rootfs`, a link to a file outside (absolute, and relative), and links
    // that stay inside.
    symlink("/", root.join("rootfs")).unwrap();
    symlink(dir.path().join("secret.txt"), root.join("secret.txt")).unwrap();
    symlink("../secret.txt", root.join("up.txt")).unwrap();
    symlink("pkg/app.js", root.join("app.js")).unwrap();
    symlink("pkg", root.join("lib")).unwrap();
    let server = TestServer::start(&["--web-root", root.to_str().unwrap()]).await;
    let http = server.http;

    for outside in [
        "/rootfs/etc/passwd",
        "/rootfs/etc/hostname",
        "/rootfs/proc/self/environ",
        "/secret.txt",
        "/up.txt",
    ] {
        let (status, _, body) = get(http, "GET", outside, "").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{outside}: {body}");
        assert_eq!(body, "Not Found\n", "{outside}");
    }
    for inside in ["/app.js", "/lib/app.js", "/pkg/app.js"] {
        let (status, headers, body) = get(http, "GET", inside, "").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{inside}");
        assert_eq!(body, "export{}", "{inside}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/javascript; charset=utf-8")
        );
    }
}

#[tokio::test]
async fn without_a_web_root_the_page_says_how_to_get_the_client() {
    let server = TestServer::start(&[]).await;
    let (status, headers, body) = get(server.http, "GET", "/", "").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(body.contains("not built into this server"), "{body}");
    assert!(body.contains("cargo xtask run") && body.contains("--web-root"));
    assert!(body.contains(&format!("nc 127.0.0.1 {}", server.tcp.port())));
    assert!(
        get(server.http, "GET", "/app.js", "")
            .await
            .0
            .starts_with("HTTP/1.1 404")
    );
    assert_eq!(get(server.http, "GET", "/healthz", "").await.2, "ok\n");
}
