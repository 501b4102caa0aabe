//! `--trusted-proxy` behind a real HAProxy (Debian's), run by the test on free ports in front
//! of the real binary: nc users through `send-proxy-v2` and `send-proxy` on the line listener,
//! WebSocket users and page requests through `mode http` with `option forwardfor`, and
//! `openssl s_client` through `send-proxy-v2` to a server speaking TLS. HAProxy connects from
//! 127.0.0.1 (trusted); each user connects to it from an address of its own in 127.0.0.0/8, and
//! the per-address limits and the message log see that address, not HAProxy's.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use chat_tests::{
    HaProxy, LineProcess, Server, TempDir, TestCert, free_port, haproxy_installed, nc_path,
    openssl_installed, require,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const REFUSAL: &str = "Too many connections from your address; try again in a minute.";

/// A free port on 127.0.0.1, for one of HAProxy's frontends.
fn frontend() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// `nc -s FROM HOST PORT`: a user at the loopback address `from`.
fn nc_from(from: &str, to: SocketAddr, name: &str) -> LineProcess {
    LineProcess::spawn(
        &format!("nc user {name} from {from}"),
        Command::new(nc_path())
            .args(["-s", from, &to.ip().to_string(), &to.port().to_string()])
            .stderr(Stdio::null()),
    )
}

/// The `message log`'s join records, `(name, peer)`.
fn joins(log: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).expect("the message log");
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["type"] == "join")
        .map(|record| {
            let field = |name: &str| record[name].as_str().unwrap_or_default().to_owned();
            (field("name"), field("peer"))
        })
        .collect()
}

#[tokio::test]
async fn users_behind_haproxy_are_counted_and_logged_by_their_own_addresses() {
    let test = "users_behind_haproxy_are_counted_and_logged_by_their_own_addresses";
    require!(haproxy_installed(test));
    let dir = TempDir::new("haproxy");
    let log = dir.join("chat.jsonl");
    let mut server = Server::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        // The name its users reach it by, through the proxy (their requests say `Host: chat`).
        "--allow-host",
        "chat",
        "--limit-loopback",
        "--max-conns-per-ip",
        "2",
        "--max-new-per-ip",
        "0",
        "--log",
        log.to_str().unwrap(),
    ])
    .await;
    let (v2, v1, web) = (frontend(), frontend(), frontend());
    let _haproxy = HaProxy::start(
        "limits",
        &format!(
            "frontend line_v2\n    mode tcp\n    bind {v2}\n    default_backend chat_v2\n\
             backend chat_v2\n    mode tcp\n    server chat {tcp} send-proxy-v2\n\n\
             frontend line_v1\n    mode tcp\n    bind {v1}\n    default_backend chat_v1\n\
             backend chat_v1\n    mode tcp\n    server chat {tcp} send-proxy\n\n\
             frontend web\n    mode http\n    bind {web}\n    option forwardfor\n    \
             default_backend chat_http\n\
             backend chat_http\n    mode http\n    server chat {http}\n",
            tcp = server.tcp,
            http = server.http,
        ),
    )
    .await;

    // Two nc users, through either version of the header.
    let mut alice = nc_from("127.0.0.2", v2, "alice");
    alice.expect("Enter your name: ").await;
    alice.type_line("alice");
    alice.expect("Type /help for the list of commands.\n").await;
    let mut bob = nc_from("127.0.0.3", v1, "bob");
    bob.expect("Enter your name: ").await;
    bob.type_line("bob");
    bob.expect("Type /help for the list of commands.\n").await;
    alice.expect("*** bob has joined the chat ***\n").await;

    // alice's address may hold two connections: her third is refused, though every one of
    // them, and everyone else's, comes from HAProxy's one address.
    let mut second = nc_from("127.0.0.2", v1, "alice-2");
    second.expect("Enter your name: ").await;
    let mut third = nc_from("127.0.0.2", v2, "alice-3");
    assert_eq!(third.line().await, REFUSAL);
    let mut carol = nc_from("127.0.0.4", v2, "carol");
    carol.expect("Enter your name: ").await;

    // Over HTTP, by X-Forwarded-For: two WebSockets from 127.0.0.5, then its third
    // connection, a page request, is refused; 127.0.0.6's is answered.
    let mut sockets = Vec::new();
    for name in ["dave", "dave2"] {
        let request = format!("ws://{web}/ws").into_client_request().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.5:0".parse().unwrap()).unwrap();
        let stream = socket.connect(web).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("the upgrade through HAProxy");
        let _prompt = ws.next().await.unwrap().unwrap();
        let join = format!(r#"{{"type":"join","name":"{name}"}}"#);
        ws.send(Message::text(join)).await.unwrap();
        let welcome = ws.next().await.unwrap().unwrap().into_text().unwrap();
        assert!(welcome.contains(r#""type":"welcome""#), "{welcome}");
        sockets.push(ws);
    }
    let page = |from: &'static str| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut stream = socket.connect(web).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let refused = page("127.0.0.5").await;
    assert!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
    assert!(refused.contains(REFUSAL), "{refused}");
    let answered = page("127.0.0.6").await;
    assert!(answered.starts_with("HTTP/1.1 200 "), "{answered}");

    drop((alice, bob, second, third, carol, sockets));
    server.stop().await;
    let joined = joins(&log);
    for (name, peer) in [
        ("alice", "127.0.0.2"),
        ("bob", "127.0.0.3"),
        ("dave", "127.0.0.5"),
    ] {
        assert!(
            joined.contains(&(name.to_owned(), peer.to_owned())),
            "{name} from {peer}: {joined:?}"
        );
    }
}

#[tokio::test]
async fn the_proxy_header_goes_before_tls_through_haproxy() {
    let test = "the_proxy_header_goes_before_tls_through_haproxy";
    require!(haproxy_installed(test));
    require!(openssl_installed(test));
    let cert = TestCert::new("haproxy-tls");
    let dir = TempDir::new("haproxy-tls");
    let log = dir.join("chat.jsonl");
    let mut server = Server::command()
        .args([
            "--trusted-proxy",
            "127.0.0.1",
            "--log",
            log.to_str().unwrap(),
        ])
        .args(cert.flags())
        .start()
        .await;
    let line = frontend();
    // HAProxy in TCP mode passes TLS through untouched, after its PROXY header.
    let _haproxy = HaProxy::start(
        "tls",
        &format!(
            "frontend line\n    mode tcp\n    bind {line}\n    default_backend chat\n\
             backend chat\n    mode tcp\n    server chat {tcp} send-proxy-v2\n",
            tcp = server.tcp
        ),
    )
    .await;
    let mut erin = LineProcess::s_client(line, "erin");
    erin.expect("Enter your name: ").await;
    erin.type_line("erin");
    erin.expect("Welcome, erin! Online (1): erin\n").await;
    drop(erin);
    server.stop().await;
    assert_eq!(joins(&log), [("erin".to_owned(), "127.0.0.1".to_owned())]);
}
