//! The admin API (`--op-token-file`, `/admin/...` on the HTTP listener) with a raw HTTP/1.1
//! client over real loopback sockets, the server in-process, and line users watching what its
//! actions do in the room: who is online, kick, ban, unban, mute, unmute, notice, the token
//! and the bound on wrong ones, bad requests, and every action in the message log.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{TestServer, WAIT, connect_from};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "correct-horse-battery-staple";

/// A server with an operator secret (and the message log, in `dir`), and its temp dir.
struct Admin {
    server: TestServer,
    dir: tempfile::TempDir,
}

impl Admin {
    async fn start(flags: &[&str]) -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("op-token");
        std::fs::write(&token, format!("{SECRET}\n")).unwrap();
        let log = dir.path().join("chat.jsonl");
        let mut args = vec![
            "--op-token-file",
            token.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--log-flush",
            "0",
            "--flood",
            "off",
        ];
        args.extend_from_slice(flags);
        let server = TestServer::start(&args).await;
        Admin { server, dir }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("chat.jsonl")
    }

    /// `method path` with the secret as the bearer token and `body`, if any.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let auth = format!("Bearer {SECRET}");
        let body = body.map(|b| b.to_string());
        request(
            self.server.http,
            method,
            path,
            &[("Authorization", &auth)],
            body.as_deref(),
        )
        .await
    }
}

/// An answer: its status, headers (names in lowercase) and body parsed as JSON.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The status, and that it is JSON never cached.
    fn json(&self) -> u16 {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
        self.status
    }

    fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {self:?}"))
    }
}

/// One request on a connection of its own from 127.0.0.1; the whole answer.
async fn request(
    http: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let stream = TcpStream::connect(http).await.unwrap();
    request_over(stream, method, path, headers, body).await
}

async fn request_over(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" {
        head += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head += "\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the answer in time")
        .expect("read");
    let all = String::from_utf8(all).expect("a text answer");
    let (head, body) = all.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines.next().unwrap();
    let status: u16 = status.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap());
    assert_eq!(length, Some(body.len()), "{all}");
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The moderation records of the log at `path`.
fn moderation_records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|r| r["type"] == "moderation")
        .collect()
}

const ROUTES: [(&str, &str); 8] = [
    ("GET", "/admin/online"),
    ("GET", "/admin/bans"),
    ("POST", "/admin/kick"),
    ("POST", "/admin/ban"),
    ("POST", "/admin/unban"),
    ("POST", "/admin/mute"),
    ("POST", "/admin/unmute"),
    ("POST", "/admin/notice"),
];

#[tokio::test]
async fn without_an_op_token_file_admin_paths_are_unknown_paths() {
    let server = TestServer::start(&[]).await;
    let auth = [("Authorization", "Bearer whatever-it-is-it-is-wrong")];
    let unknown = request(server.http, "GET", "/nope", &auth, None).await;
    let admin = request(server.http, "GET", "/admin/online", &auth, None).await;
    assert_eq!((unknown.status, admin.status), (404, 404));
    assert_eq!(admin.body, unknown.body);
    assert_eq!(admin.header("content-type"), unknown.header("content-type"));
    let post = request(
        server.http,
        "POST",
        "/admin/kick",
        &auth,
        Some("{\"name\":\"bob\"}"),
    )
    .await;
    let post_unknown = request(server.http, "POST", "/nope", &auth, Some("{}")).await;
    assert_eq!((post.status, post_unknown.status), (405, 405));
}

#[tokio::test]
async fn every_route_wants_the_bearer_token_and_wrong_ones_are_bounded() {
    let admin = Admin::start(&[]).await;
    let http = admin.server.http;
    let mut bob = admin.server.join("bob").await;
    // No token at all: refused, and not counted as a guess.
    for (method, path) in ROUTES {
        let body = (method == "POST").then_some("{\"name\":\"bob\",\"text\":\"x\"}");
        let answer = request(http, method, path, &[], body).await;
        assert_eq!(answer.json(), 401, "{method} {path}: {answer:?}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"chat-server\"")
        );
        assert!(
            answer.error().contains("Authorization: Bearer"),
            "{answer:?}"
        );
    }
    // No bearer token at all (another scheme, no scheme, nothing after it) can never be the
    // secret: not a guess, and not counted.
    for header in [
        (
            "Authorization",
            "Basic Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5LXN0YXBsZQ==",
        ),
        ("Authorization", SECRET),
        ("Authorization", "Bearer "),
    ] {
        let stream = connect_from("127.0.0.2", http).await;
        let answer = request_over(stream, "GET", "/admin/online", &[header], None).await;
        assert_eq!(answer.json(), 401, "{header:?}: {answer:?}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"chat-server\"")
        );
    }
    // Wrong tokens, from 127.0.0.2: five a minute are answered 401 ...
    let wrong = [
        ("Authorization", "Bearer correct-horse-battery-stapl"),
        ("Authorization", "Bearer correct-horse-battery-staplE"),
        ("Authorization", "bearer guess-number-three"),
        ("Authorization", "Bearer  guess-number-four "),
        ("Authorization", "Bearer guess-number-five"),
    ];
    for (i, header) in wrong.iter().enumerate() {
        let (method, path) = ROUTES[i];
        let body = (method == "POST").then_some("{\"name\":\"bob\",\"text\":\"x\"}");
        let stream = connect_from("127.0.0.2", http).await;
        let answer = request_over(stream, method, path, &[*header], body).await;
        assert_eq!(answer.json(), 401, "{header:?}: {answer:?}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"chat-server\", error=\"invalid_token\"")
        );
        assert!(answer.error().starts_with("Wrong token"), "{answer:?}");
    }
    // ... the sixth gets 429, and so does the right token from there for a minute.
    let auth = format!("Bearer {SECRET}");
    for header in [
        ("Authorization", "Bearer guess-number-six"),
        ("Authorization", &auth),
    ] {
        let stream = connect_from("127.0.0.2", http).await;
        let answer = request_over(
            stream,
            "POST",
            "/admin/kick",
            &[header],
            Some("{\"name\":\"bob\"}"),
        )
        .await;
        assert_eq!(answer.json(), 429, "{answer:?}");
        assert_eq!(answer.header("retry-after"), Some("60"));
        assert_eq!(answer.error(), "Too many tries; wait a minute.");
    }
    // Nothing of it reached the room; another address is not held off.
    bob.send("/who").await;
    assert_eq!(bob.line().await, "Online (1): bob");
    let online = admin.call("GET", "/admin/online", None).await;
    assert_eq!(online.json(), 200, "{online:?}");
}

#[tokio::test]
async fn online_lists_each_user_with_wire_address_since_and_operator() {
    let admin = Admin::start(&[]).await;
    let before = unix_ms();
    let mut alice = admin.server.join("alice").await;
    let after = unix_ms();
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", admin.server.http))
        .await
        .unwrap();
    let mut ws = ws;
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"type": "join", "name": "bob"}).to_string(),
    ))
    .await
    .unwrap();
    alice.line_eq("*** bob has joined the chat ***").await;
    alice.send(&format!("/op {SECRET}")).await;
    assert_eq!(alice.line().await, "You are now an operator.");

    let online = admin.call("GET", "/admin/online", None).await;
    assert_eq!(online.json(), 200, "{online:?}");
    let users = online.body["users"].as_array().expect("users");
    assert_eq!(users.len(), 2, "{online:?}");
    let (a, b) = (&users[0], &users[1]);
    assert_eq!(a["name"], "alice");
    assert_eq!(a["wire"], "line");
    assert_eq!(a["address"], "127.0.0.1");
    assert_eq!(a["operator"], true);
    let since = a["since"].as_u64().expect("since, Unix ms");
    // The room's clock runs from the server's start: its wall time is within the join.
    assert!(
        (before.saturating_sub(1000)..=after + 1000).contains(&since),
        "{before} <= {since} <= {after}"
    );
    assert_eq!(b["name"], "bob");
    assert_eq!(b["wire"], "json");
    assert_eq!(b["operator"], false);
    assert!(a.get("node").is_none(), "a room alone names no node: {a}");
    drop(ws.close(None).await);
    while ws.next().await.is_some() {}
}

#[tokio::test]
async fn kick_puts_the_user_out_with_the_reason_and_tells_everyone() {
    let admin = Admin::start(&[]).await;
    let mut bob = admin.server.join("bob").await;
    let mut carol = admin.server.join("carol").await;
    bob.line_eq("*** carol has joined the chat ***").await;

    let kicked = admin
        .call(
            "POST",
            "/admin/kick",
            Some(json!({"name": "BOB", "reason": "spam"})),
        )
        .await;
    assert_eq!(kicked.json(), 200, "{kicked:?}");
    assert_eq!(kicked.body, json!({"ok": true}));
    assert_eq!(bob.line().await, "*** You were kicked by admin: spam ***");
    assert_eq!(bob.closed().await, "");
    assert_eq!(carol.line().await, "*** bob was kicked by admin: spam ***");

    // Signed by someone, and without a reason.
    let mut dave = admin.server.join("dave").await;
    carol.line_eq("*** dave has joined the chat ***").await;
    let kicked = admin
        .call(
            "POST",
            "/admin/kick",
            Some(json!({"name": "dave", "by": "host"})),
        )
        .await;
    assert_eq!(kicked.json(), 200);
    assert_eq!(
        dave.line().await,
        "*** You were kicked by host: no reason given ***"
    );
    assert_eq!(
        carol.line().await,
        "*** dave was kicked by host: no reason given ***"
    );

    let nobody = admin
        .call("POST", "/admin/kick", Some(json!({"name": "zed"})))
        .await;
    assert_eq!(nobody.json(), 404, "{nobody:?}");
    assert_eq!(nobody.error(), "No user named 'zed'.");
    carol.silent_for(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_ban_turns_the_name_away_until_it_is_lifted() {
    let admin = Admin::start(&[]).await;
    let mut bob = admin.server.join("bob").await;
    let mut carol = admin.server.join("carol").await;
    bob.line_eq("*** carol has joined the chat ***").await;

    let zero = admin
        .call(
            "POST",
            "/admin/ban",
            Some(json!({"name": "bob", "minutes": 0})),
        )
        .await;
    assert_eq!(zero.json(), 400, "{zero:?}");
    assert!(
        zero.error().starts_with("Minutes must be between 1 and "),
        "{zero:?}"
    );

    let before = unix_ms();
    let banned = admin
        .call(
            "POST",
            "/admin/ban",
            Some(json!({"name": "bob", "minutes": 60, "reason": "spam"})),
        )
        .await;
    assert_eq!(banned.json(), 200, "{banned:?}");
    assert_eq!(bob.line().await, "*** You were banned by admin: spam ***");
    assert_eq!(bob.closed().await, "");
    assert_eq!(carol.line().await, "*** bob was banned by admin: spam ***");

    // On loopback the ban holds the name: typed again, in any case, it is turned away.
    for typed in ["bob", "BOB"] {
        let mut again = admin.server.connect().await;
        again.expect_prompt().await;
        again.send(typed).await;
        assert_eq!(
            again.closed().await,
            "You are banned from this room for 60 more minutes.\n"
        );
    }
    let bans = admin.call("GET", "/admin/bans", None).await;
    assert_eq!(bans.json(), 200);
    let sanctions = bans.body["sanctions"].as_array().expect("sanctions");
    assert_eq!(sanctions.len(), 1, "{bans:?}");
    let ban = &sanctions[0];
    assert_eq!(
        (&ban["kind"], &ban["name"], &ban["by"]),
        (&json!("ban"), &json!("bob"), &json!("admin"))
    );
    assert_eq!(ban["reason"], "spam");
    assert!(
        ban.get("address").is_none(),
        "loopback is never banned: {ban}"
    );
    let until = ban["until"].as_u64().unwrap();
    let hour = 60 * 60 * 1000;
    assert!(
        (before + hour - 2000..=unix_ms() + hour + 2000).contains(&until),
        "{until}"
    );

    let lifted = admin
        .call("POST", "/admin/unban", Some(json!({"name": "Bob"})))
        .await;
    assert_eq!(lifted.json(), 200, "{lifted:?}");
    let _bob = admin.server.join("bob").await;
    carol.line_eq("*** bob has joined the chat ***").await;
    let again = admin
        .call("POST", "/admin/unban", Some(json!({"name": "bob"})))
        .await;
    assert_eq!(again.json(), 404);
    assert_eq!(again.error(), "No ban on 'bob'.");
    let none = admin.call("GET", "/admin/bans", None).await;
    assert_eq!(none.body, json!({"sanctions": []}));
}

#[tokio::test]
async fn a_mute_silences_public_lines_until_it_is_lifted() {
    let admin = Admin::start(&[]).await;
    let mut bob = admin.server.join("bob").await;
    let mut carol = admin.server.join("carol").await;
    bob.line_eq("*** carol has joined the chat ***").await;

    let muted = admin
        .call(
            "POST",
            "/admin/mute",
            Some(json!({"name": "carol", "minutes": 5})),
        )
        .await;
    assert_eq!(muted.json(), 200, "{muted:?}");
    assert_eq!(carol.line().await, "*** You were muted by admin ***");
    carol.send("can anyone hear me?").await;
    assert_eq!(carol.line().await, "You are muted.");
    bob.silent_for(Duration::from_millis(200)).await;

    let unmuted = admin
        .call("POST", "/admin/unmute", Some(json!({"name": "carol"})))
        .await;
    assert_eq!(unmuted.json(), 200);
    carol.send("and now?").await;
    assert_eq!(bob.line().await, "carol: and now?");
    let again = admin
        .call("POST", "/admin/unmute", Some(json!({"name": "carol"})))
        .await;
    assert_eq!(again.json(), 404);
    assert_eq!(again.error(), "No mute on 'carol'.");
}

#[tokio::test]
async fn a_notice_reaches_everyone() {
    let admin = Admin::start(&[]).await;
    let mut bob = admin.server.join("bob").await;
    let mut carol = admin.server.join("carol").await;
    bob.line_eq("*** carol has joined the chat ***").await;
    let posted = admin
        .call(
            "POST",
            "/admin/notice",
            Some(json!({"text": "restarting at noon"})),
        )
        .await;
    assert_eq!(posted.json(), 200, "{posted:?}");
    for user in [&mut bob, &mut carol] {
        assert_eq!(user.line().await, "*** Notice: restarting at noon ***");
    }
    let empty = admin
        .call("POST", "/admin/notice", Some(json!({"text": "  "})))
        .await;
    assert_eq!(empty.json(), 400);
    assert_eq!(empty.error(), "A notice needs some text.");
}

#[tokio::test]
async fn bad_requests_are_refused_in_json_saying_why() {
    let admin = Admin::start(&[]).await;
    let http = admin.server.http;
    let auth = format!("Bearer {SECRET}");
    let auth = [("Authorization", auth.as_str())];
    let bad_json = request(http, "POST", "/admin/kick", &auth, Some("{\"name\": bob}")).await;
    assert_eq!(bad_json.json(), 400);
    assert!(
        bad_json.error().starts_with("The body is not JSON"),
        "{bad_json:?}"
    );
    let not_object = admin.call("POST", "/admin/ban", Some(json!(["bob"]))).await;
    assert_eq!(not_object.json(), 400);
    let typo = admin
        .call(
            "POST",
            "/admin/ban",
            Some(json!({"name": "bob", "minuts": 5})),
        )
        .await;
    assert_eq!(typo.json(), 400);
    assert!(
        typo.error().starts_with("Unknown field \"minuts\""),
        "{typo:?}"
    );
    let no_name = admin
        .call("POST", "/admin/kick", Some(json!({"reason": "x"})))
        .await;
    assert_eq!(no_name.json(), 400);
    let bad_name = admin
        .call("POST", "/admin/ban", Some(json!({"name": "no spaces"})))
        .await;
    assert_eq!(bad_name.json(), 400, "{bad_name:?}");

    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(17 * 1024));
    let too_big = request(http, "POST", "/admin/notice", &auth, Some(&big)).await;
    assert_eq!(too_big.json(), 413);

    let wrong_method = request(http, "GET", "/admin/kick", &auth, None).await;
    assert_eq!(wrong_method.json(), 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    let wrong_method = request(http, "POST", "/admin/online", &auth, Some("{}")).await;
    assert_eq!(wrong_method.json(), 405);
    assert_eq!(wrong_method.header("allow"), Some("GET"));
    let unknown = request(http, "GET", "/admin/everything", &auth, None).await;
    assert_eq!(unknown.json(), 404);

    // A page of another site is refused before its token is looked at.
    let mut from_page = auth.to_vec();
    from_page.push(("Origin", "http://evil.example"));
    let page = request(
        http,
        "POST",
        "/admin/notice",
        &from_page,
        Some("{\"text\":\"hi\"}"),
    )
    .await;
    assert_eq!(page.json(), 403);
    // So is a name the server does not go by (DNS rebinding), as for every path.
    let stream = TcpStream::connect(http).await.unwrap();
    let mut stream = stream;
    stream
        .write_all(
            format!(
                "GET /admin/online HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer \
                 {SECRET}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let all = support::read_all(&mut stream).await;
    assert!(all.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{all}");
}

#[tokio::test]
async fn every_action_of_the_api_is_a_record_of_the_message_log() {
    let mut admin = Admin::start(&[]).await;
    let mut bob = admin.server.join("bob").await;
    let mut carol = admin.server.join("carol").await;
    bob.line_eq("*** carol has joined the chat ***").await;
    let calls = [
        (
            "/admin/mute",
            json!({"name": "carol", "minutes": 5, "by": "host"}),
        ),
        ("/admin/unmute", json!({"name": "carol"})),
        ("/admin/notice", json!({"text": "behave"})),
        ("/admin/kick", json!({"name": "carol", "reason": "noise"})),
        ("/admin/ban", json!({"name": "bob", "reason": "spam"})),
        ("/admin/unban", json!({"name": "bob"})),
    ];
    for (path, body) in calls {
        let answer = admin.call("POST", path, Some(body)).await;
        assert_eq!(answer.json(), 200, "{path}: {answer:?}");
    }
    carol.closed().await;
    bob.closed().await;
    admin.server.shutdown().await.unwrap();
    let records = moderation_records(&admin.log());
    let kinds: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("sanction", "carol"),
            ("lift", "carol"),
            ("notice", ""),
            ("kick", "carol"),
            ("sanction", "bob"),
            ("lift", "bob"),
        ],
        "{records:?}"
    );
    assert_eq!(records[0]["kind"], "mute");
    assert_eq!(records[0]["by"], "host");
    assert_eq!(records[2]["text"], "behave");
    assert_eq!(records[3]["reason"], "noise");
    assert_eq!(
        (&records[4]["kind"], &records[4]["by"]),
        (&json!("ban"), &json!("admin"))
    );
    // The kicked and banned leave as such.
    let content = std::fs::read_to_string(admin.log()).unwrap();
    assert!(
        content.contains("\"type\":\"leave\",\"name\":\"carol\",\"reason\":\"kicked\""),
        "{content}"
    );
    assert!(
        content.contains("\"type\":\"leave\",\"name\":\"bob\",\"reason\":\"banned\""),
        "{content}"
    );
}
