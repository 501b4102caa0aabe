//! `/metrics` and `/healthz` on the HTTP listener, with the server in-process: what an operator
//! scraping it sees after users chat, flood, fall behind and are turned away.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use support::{Client, TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One `GET` from `from` (a loopback address); the status line, the head and the body.
async fn get_from(from: &str, http: SocketAddr, path: &str) -> (String, String, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(http).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("an answer in time")
        .expect("read");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a whole response: {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, head.to_owned(), body.to_owned())
}

async fn get(http: SocketAddr, path: &str) -> (String, String, String) {
    get_from("127.0.0.1", http, path).await
}

/// The samples of an OpenMetrics text: `name{labels}` to value. Checks the format on the way:
/// every line is a comment or `series value`, and the text ends with `# EOF`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample: {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("a number: {line:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// Scrapes a server's `/metrics`, counting the scrapes (each is an HTTP connection).
struct Scraper {
    http: SocketAddr,
    scrapes: usize,
}

impl Scraper {
    fn new(http: SocketAddr) -> Scraper {
        Scraper { http, scrapes: 0 }
    }

    /// Scrapes once, checking status and content type.
    async fn scrape(&mut self) -> BTreeMap<String, f64> {
        self.scrapes += 1;
        let (status, head, body) = get(self.http, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
        assert!(
            head.contains(&format!("Content-Type: {OPENMETRICS}\r\n")),
            "{head}"
        );
        parse(&body)
    }

    /// Scrapes until `done` holds, for at most [`WAIT`]: for what the server counts a moment
    /// after a client can see it (a connection's task ending, a room input still in flight).
    async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        let start = Instant::now();
        loop {
            let metrics = self.scrape().await;
            if done(&metrics) {
                return metrics;
            }
            assert!(start.elapsed() < WAIT, "{what}: {metrics:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn value(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("{series} in {metrics:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_users_did() {
    // Big lines (1 MB) and a queue bound (3.5 MB) that holds three of them but not much more:
    // a reader that keeps up is never dropped, one that stops reading is once the kernel's
    // buffers (up to 4 MB here) and the queue are full. Three users at most, so that a fourth
    // is turned away; no history, which would keep megabytes.
    let server = TestServer::start(&[
        "--max-line",
        "2000000",
        "--max-queue",
        "3500000",
        "--max-users",
        "3",
        "--history",
        "0",
    ])
    .await;
    let mut scraper = Scraper::new(server.http);
    let (status, _, body) = get(server.http, "/healthz").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );

    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    assert_eq!(alice.line().await, "*** bob has joined the chat ***");
    // A user whose socket takes little and who never reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = Client::from_stream(socket.connect(server.tcp).await.unwrap());
    stalled.expect_prompt().await;
    stalled.send("stalled").await;
    assert_eq!(alice.line().await, "*** stalled has joined the chat ***");
    assert_eq!(bob.line().await, "*** stalled has joined the chat ***");
    // The room is full.
    let mut late = server.connect().await;
    assert_eq!(
        late.closed().await,
        "Server is full, please try again later.\n"
    );
    drop(late);

    alice.send("hello").await;
    assert_eq!(bob.line().await, "alice: hello");
    alice.send("/msg bob psst").await;
    assert_eq!(bob.line().await, "[private] alice: psst");
    assert_eq!(alice.line().await, "[private to bob] psst");

    // Bob floods: 30 lines at once, of which at most the burst of 20 get through.
    let flood: String = (0..30).map(|i| format!("flood {i}\n")).collect();
    bob.send_raw(flood.as_bytes()).await;
    assert_eq!(
        bob.line().await,
        "Error: you are sending too fast; slow down. Lines are dropped until you do."
    );
    // Each of bob's lines is either a public message or a flood rejection, once the room has
    // taken them all.
    let counted = |m: &BTreeMap<String, f64>| {
        value(m, "chat_messages_total{kind=\"public\"}") + value(m, "chat_flood_rejections_total")
    };
    let metrics = scraper
        .until("bob's 30 lines counted", |m| counted(m) == 31.0)
        .await;
    let passed = value(&metrics, "chat_messages_total{kind=\"public\"}") as usize - 1;
    assert!((1..=20).contains(&passed), "{passed} of 30 lines passed");
    assert_eq!(
        value(&metrics, "chat_flood_rejections_total"),
        (30 - passed) as f64
    );
    for i in 0..passed {
        assert_eq!(alice.line().await, format!("bob: flood {i}"));
    }

    // Alice sends big lines, one at a time once bob has each, until the stalled user is
    // dropped as too slow; bob never is.
    let mut big_lines = 0;
    let mut dropped = false;
    while !dropped {
        assert!(big_lines < 15, "the stalled user was never dropped");
        let text = format!("{big_lines} {}", "z".repeat(1_000_000));
        alice.send(&text).await;
        big_lines += 1;
        loop {
            let line = bob.line().await;
            if line == "*** stalled has left the chat ***" {
                dropped = true;
            } else {
                assert_eq!(line, format!("alice: {text}"));
                break;
            }
        }
    }
    assert_eq!(alice.line().await, "*** stalled has left the chat ***");

    // Everything bob and alice were sent has been written once they have read it; the
    // stalled and the turned-away connections' tasks end a moment after the room lets go.
    let metrics = scraper
        .until("two connections open, nothing queued", |m| {
            value(m, "chat_connections_open{transport=\"tcp\"}") == 2.0
                && value(m, "chat_queued_bytes") == 0.0
        })
        .await;
    let expect = [
        ("chat_connections_open{transport=\"websocket\"}", 0.0),
        ("chat_connections_accepted_total{listener=\"tcp\"}", 4.0),
        ("chat_connections_refused_total{reason=\"full\"}", 1.0),
        (
            "chat_connections_refused_total{reason=\"address_limit\"}",
            0.0,
        ),
        (
            "chat_connections_refused_total{reason=\"address_rate\"}",
            0.0,
        ),
        ("chat_connections_refused_total{reason=\"out_of_fds\"}", 0.0),
        ("chat_joins_total", 3.0),
        ("chat_leaves_total{reason=\"too_slow\"}", 1.0),
        ("chat_leaves_total{reason=\"quit\"}", 0.0),
        ("chat_too_slow_disconnects_total", 1.0),
        (
            "chat_messages_total{kind=\"public\"}",
            (1 + passed + big_lines) as f64,
        ),
        ("chat_messages_total{kind=\"private\"}", 1.0),
        ("chat_flood_rejections_total", (30 - passed) as f64),
        ("chat_queued_max_bytes", 0.0),
    ];
    for (series, want) in expect {
        assert_eq!(value(&metrics, series), want, "{series}");
    }
    // The /healthz request and every scrape (this one included) were one HTTP connection each.
    assert_eq!(
        value(
            &metrics,
            "chat_connections_accepted_total{listener=\"http\"}"
        ),
        (1 + scraper.scrapes) as f64
    );
    // Bob alone was handed every big line whole.
    let bytes = value(&metrics, "chat_delivered_bytes_total");
    assert!(bytes > (big_lines * 1_000_000) as f64, "{bytes}");
    assert!(value(&metrics, "chat_deliveries_total") > (passed + big_lines) as f64);

    // The latency histogram has samples, its buckets are cumulative and end with all of them.
    let count = value(&metrics, "chat_delivery_latency_seconds_count");
    assert!(count >= 10.0, "{count} samples: {metrics:#?}");
    assert!(value(&metrics, "chat_delivery_latency_seconds_sum") > 0.0);
    let buckets: Vec<f64> = metrics
        .iter()
        .filter(|(series, _)| series.starts_with("chat_delivery_latency_seconds_bucket{"))
        .map(|(_, &v)| v)
        .collect();
    assert!(buckets.len() > 5, "{buckets:?}");
    assert_eq!(
        value(
            &metrics,
            "chat_delivery_latency_seconds_bucket{le=\"+Inf\"}"
        ),
        count
    );
    let mut by_bound: Vec<(f64, f64)> = metrics
        .iter()
        .filter_map(|(series, &v)| {
            let le = series
                .strip_prefix("chat_delivery_latency_seconds_bucket{le=\"")?
                .strip_suffix("\"}")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, v))
        })
        .collect();
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        by_bound.windows(2).all(|w| w[0].1 <= w[1].1),
        "{by_bound:?}"
    );
}

#[tokio::test]
async fn websocket_connections_and_address_refusals_are_counted() {
    // Loopback is limited here, two connections an address, so that 127.0.0.2 can be refused
    // while the scrapes from 127.0.0.1 are not.
    let server = TestServer::start(&[
        "--limit-loopback",
        "--max-conns-per-ip",
        "2",
        "--max-new-per-ip",
        "0",
    ])
    .await;
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(
            format!("ws://{}/ws", server.http),
            TcpStream::connect(server.http).await.unwrap(),
        ),
    )
    .await
    .expect("the handshake ends in time")
    .expect("101");
    let mut ws = ws;
    let prompt = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(
        matches!(&prompt, Some(Ok(Message::Text(t))) if t.as_str() == r#"{"type":"prompt"}"#),
        "{prompt:?}"
    );
    let mut scraper = Scraper::new(server.http);
    let metrics = scraper.scrape().await;
    assert_eq!(
        value(&metrics, "chat_connections_open{transport=\"websocket\"}"),
        1.0
    );
    assert_eq!(
        value(&metrics, "chat_connections_open{transport=\"tcp\"}"),
        0.0
    );

    let tcp = server.tcp;
    let connect_from = |from: &'static str| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(tcp).await.expect("connect")
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Client::from_stream(connect_from("127.0.0.2").await);
        c.expect_prompt().await;
        held.push(c);
    }
    let mut refused = Client::from_stream(connect_from("127.0.0.2").await);
    assert_eq!(
        refused.closed().await,
        "Too many connections from your address; try again in a minute.\n"
    );
    let metrics = scraper.scrape().await;
    assert_eq!(
        value(
            &metrics,
            "chat_connections_refused_total{reason=\"address_limit\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            "chat_connections_accepted_total{listener=\"tcp\"}"
        ),
        2.0
    );

    ws.send(Message::text(r#"{"type":"quit"}"#)).await.unwrap();
    drop(ws);
    scraper
        .until("the WebSocket closed", |m| {
            value(m, "chat_connections_open{transport=\"websocket\"}") == 0.0
        })
        .await;
}

#[tokio::test]
async fn metrics_off_is_404_and_healthz_stays() {
    let server = TestServer::start(&["--metrics", "off"]).await;
    let (status, _, _) = get(server.http, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, body) = get(server.http, "/healthz").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    // The chat itself is unchanged.
    let mut alice = server.join("alice").await;
    let mut bob = server.join("bob").await;
    assert_eq!(alice.line().await, "*** bob has joined the chat ***");
    bob.send("hi").await;
    assert_eq!(alice.line().await, "bob: hi");
}
