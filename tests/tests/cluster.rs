//! Several nodes, one room: real `chat-server` processes sharing a room through a real
//! `redis-server` that each test starts on a free port (never 6379) and stops by its pid.
//! Users on every node, over both wires; nodes killed, stopped, cut off from Redis; Redis
//! paused, killed and restarted empty.

use std::time::{Duration, Instant};

use chat_tests::load::{self, Incoming, Receiver, Sender, Target, Wire};
use chat_tests::proxy::Proxy;
use chat_tests::scenario::bounded;
use chat_tests::{RedisServer, Server, redis_installed, require};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const LOST: &str =
    "*** Lost contact with the other servers; only people on this server can hear you now ***";
const BACK: &str = "*** Back in contact with the other servers ***";
/// One scenario at a time: each runs a Redis and two or three servers, and measures times.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `--node-timeout` in these tests.
const TIMEOUT_SECS: u64 = 2;

async fn node(url: &str, id: &str, extra: &[&str]) -> Server {
    node_timed(url, id, TIMEOUT_SECS, extra).await
}

async fn node_timed(url: &str, id: &str, timeout: u64, extra: &[&str]) -> Server {
    let timeout = timeout.to_string();
    let mut args = vec![
        "--redis",
        url,
        "--node-timeout",
        &timeout,
        "--node-id",
        id,
        "--flood",
        "off",
        "--max-joins-per-ip",
        "0",
        "--max-new-per-ip",
        "0",
        "--max-conns-per-ip",
        "0",
    ];
    args.extend_from_slice(extra);
    Server::start(&args).await
}

fn target(server: &Server) -> Target {
    Target {
        tcp: server.tcp,
        http: server.http,
    }
}

struct User {
    tx: Sender,
    rx: Receiver,
}

async fn join(wire: Wire, server: &Server, name: &str) -> User {
    let (tx, rx) = load::join(wire, target(server), name)
        .await
        .unwrap_or_else(|e| panic!("{name} joins: {e}"));
    User { tx, rx }
}

impl User {
    /// Reads until `pred` holds for something received, within `within`; what came before.
    async fn until(
        &mut self,
        within: Duration,
        what: &str,
        mut pred: impl FnMut(&Incoming) -> bool,
    ) -> Vec<Incoming> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.rx.next()).await;
            match next {
                Ok(Ok(Some(incoming))) => {
                    let done = pred(&incoming);
                    seen.push(incoming);
                    if done {
                        return seen;
                    }
                }
                Ok(Ok(None)) => panic!("closed while waiting for {what}; {}", tail(&seen)),
                Ok(Err(e)) => panic!("{e} while waiting for {what}; {}", tail(&seen)),
                Err(_) => panic!("no {what} within {within:?}; {}", tail(&seen)),
            }
        }
    }

    async fn notice(&mut self, within: Duration, text: &str) -> Vec<Incoming> {
        self.until(
            within,
            text,
            |i| matches!(i, Incoming::Notice(n) if n.contains(text)),
        )
        .await
    }

    async fn message(&mut self, from: &str, text: &str) -> Vec<Incoming> {
        self.until(
            Duration::from_secs(10),
            text,
            |i| matches!(i, Incoming::Message { from: f, text: t } if f == from && t == text),
        )
        .await
    }

    async fn say(&mut self, text: &str) {
        self.tx.say(text).await.expect("say");
    }
}

/// The end of what was seen, for a failure's message.
fn tail(seen: &[Incoming]) -> String {
    let from = seen.len().saturating_sub(8);
    format!("saw {} things, the last: {:?}", seen.len(), &seen[from..])
}

/// What a WebSocket client sees of `type` in the JSON a notice carries.
fn json_type(incoming: &Incoming) -> Option<String> {
    let Incoming::Notice(text) = incoming else {
        return None;
    };
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v["type"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_are_one_room_for_nc_and_websocket_users() {
    require!(redis_installed("three_nodes_are_one_room"));
    let _serial = SERIAL.lock().await;
    bounded("three_nodes_are_one_room", async {
        let redis = RedisServer::start();
        let url = redis.url();
        let a = node(&url, "a", &[]).await;
        let b = node(&url, "b", &[]).await;
        let c = node(&url, "c", &[]).await;
        let mut ann = join(Wire::Line, &a, "ann").await;
        let mut bob = join(Wire::Line, &b, "bob").await;
        ann.notice(Duration::from_secs(5), "bob has joined").await;
        let mut cy = join(Wire::Json, &c, "cy").await;
        ann.notice(Duration::from_secs(5), "cy has joined").await;
        bob.notice(Duration::from_secs(5), "cy has joined").await;
        // A name held on one node is taken on the others, whatever its case.
        let refused = load::join(Wire::Line, target(&c), "ANN").await;
        assert!(refused.is_err(), "ANN is taken: {:?}", refused.err());

        ann.say("hello from a").await;
        bob.message("ann", "hello from a").await;
        cy.message("ann", "hello from a").await;
        cy.say("hi from c").await;
        ann.message("cy", "hi from c").await;
        bob.message("cy", "hi from c").await;

        bob.say("/msg CY psst").await;
        let seen = cy
            .until(Duration::from_secs(5), "the private message", |i| {
                matches!(i, Incoming::Notice(n) if n.contains("\"private\"") && n.contains("psst"))
            })
            .await;
        assert!(!seen.is_empty());
        bob.notice(Duration::from_secs(5), "[private to cy] psst")
            .await;
        bob.say("/who").await;
        bob.notice(Duration::from_secs(5), "Online (3): ann, bob, cy")
            .await;

        // A graceful stop takes its users out within 2 seconds, whatever the timeout.
        let mut c = c;
        let started = Instant::now();
        c.signal("TERM");
        ann.notice(Duration::from_secs(2), "cy has left").await;
        eprintln!("SIGTERM to leave: {:?}", started.elapsed());
        assert!(c.wait_exit().await.success());
        for server in [&a, &b] {
            let ready = http_get(server, "/readyz").await;
            assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        }
    })
    .await;
}

/// A plain HTTP/1.1 GET, answered in full.
async fn http_get(server: &Server, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_fifty_users_leave_everywhere_within_the_timeout_and_2_s() {
    require!(redis_installed("a_killed_node"));
    let _serial = SERIAL.lock().await;
    bounded("a_killed_node", async {
        let redis = RedisServer::start();
        let url = redis.url();
        let a = node(&url, "a", &[]).await;
        let b = node(&url, "b", &[]).await;
        let doomed = node(&url, "doomed", &[]).await;
        let mut ann = join(Wire::Line, &a, "ann").await;
        let mut bob = join(Wire::Json, &b, "bob").await;
        let mut crowd = Vec::new();
        for i in 0..50 {
            let wire = if i % 2 == 0 { Wire::Line } else { Wire::Json };
            crowd.push(join(wire, &doomed, &format!("u{i:02}")).await);
        }
        ann.notice(Duration::from_secs(10), "u49 has joined").await;
        bob.until(
            Duration::from_secs(10),
            "u49's join",
            |i| matches!(i, Incoming::Notice(n) if n.contains("\"joined\"") && n.contains("u49")),
        )
        .await;
        doomed.signal("KILL");
        let killed = Instant::now();
        let bound = Duration::from_secs(TIMEOUT_SECS + 2);
        let mut left = 0;
        ann.until(bound, "50 leaves", |i| {
            if matches!(i, Incoming::Notice(n) if n.ends_with("has left the chat ***")) {
                left += 1;
            }
            left == 50
        })
        .await;
        let took = killed.elapsed();
        let mut left = 0;
        bob.until(bound.saturating_sub(took), "50 leaves", |i| {
            if json_type(i).as_deref() == Some("left") {
                left += 1;
            }
            left == 50
        })
        .await;
        eprintln!(
            "kill -9 to 50 leaves: {:.2} s on node a, {:.2} s on node b (bound {bound:?})",
            took.as_secs_f64(),
            killed.elapsed().as_secs_f64()
        );
        ann.say("/who").await;
        ann.notice(Duration::from_secs(5), "Online (2): ann, bob")
            .await;
        drop(crowd);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_on_two_nodes_racing_give_every_user_the_same_order() {
    require!(redis_installed("racing_senders"));
    let _serial = SERIAL.lock().await;
    bounded("racing_senders", async {
        const EACH: usize = 5_000;
        let redis = RedisServer::start();
        let url = redis.url();
        let nodes = [
            node(&url, "a", &[]).await,
            node(&url, "b", &[]).await,
            node(&url, "c", &[]).await,
        ];
        let mut watchers = Vec::new();
        for (i, server) in nodes.iter().enumerate() {
            watchers.push(join(Wire::Line, server, &format!("line{i}")).await);
            watchers.push(join(Wire::Json, server, &format!("json{i}")).await);
        }
        let mut sa = join(Wire::Line, &nodes[0], "sa").await;
        let mut sb = join(Wire::Line, &nodes[1], "sb").await;
        // Everyone has seen both senders arrive before the race.
        for w in &mut watchers {
            w.notice(Duration::from_secs(10), "sb").await;
        }
        // Paced (a line a millisecond each), so that the queue to Redis never fills: flat
        // out, the excess would be refused as busy, which is right but not this test.
        let send = |mut user: User, tag: &'static str| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                for i in 0..EACH {
                    tick.tick().await;
                    user.say(&format!("{tag}{i}")).await;
                }
                user
            })
        };
        let (ta, tb) = (send(sa, "a"), send(sb, "b"));
        let watching: Vec<_> = watchers
            .into_iter()
            .map(|mut w| {
                tokio::spawn(async move {
                    let mut order = Vec::with_capacity(2 * EACH);
                    let last = [format!("a{}", EACH - 1), format!("b{}", EACH - 1)];
                    let mut ends = 0;
                    w.until(Duration::from_secs(45), "both senders' last", |i| {
                        if let Incoming::Message { from, text } = i
                            && (from == "sa" || from == "sb")
                        {
                            order.push(text.clone());
                            if last.contains(text) {
                                ends += 1;
                            }
                        }
                        ends == 2
                    })
                    .await;
                    order
                })
            })
            .collect();
        let mut orders = Vec::new();
        for w in watching {
            orders.push(w.await.expect("a watcher"));
        }
        sa = ta.await.expect("a sent");
        sb = tb.await.expect("b sent");
        let divergent = orders.iter().filter(|o| *o != &orders[0]).count();
        eprintln!(
            "racing: {} messages, {} watchers on 3 nodes, {divergent} orders differing from the first",
            2 * EACH,
            orders.len()
        );
        assert_eq!(divergent, 0);
        // Each sender's own messages keep their order within the one order.
        for tag in ["a", "b"] {
            let mine: Vec<&String> = orders[0].iter().filter(|t| t.starts_with(tag)).collect();
            let want: Vec<String> = (0..EACH).map(|i| format!("{tag}{i}")).collect();
            assert_eq!(mine.len(), EACH, "every line of sender {tag} was logged");
            assert!(mine.iter().zip(&want).all(|(m, w)| *m == w));
        }
        drop((sa, sb));
    })
    .await;
}

/// A WebSocket client that keeps its place in the room's order across reconnects.
struct Resumer {
    epoch: u64,
    seq: u64,
    gaps: u64,
    duplicates: u64,
    seen: Vec<u64>,
}

impl Resumer {
    /// Joins on `server` with `resume` (after the first time), reads the welcome and
    /// history, and goes on reading messages until `more` new ones have come; then leaves.
    async fn visit(&mut self, server: &Server, name: &str, more: usize) {
        let mut ws = load::ws_connect(server.http).await.expect("connect");
        let join = if self.epoch == 0 {
            serde_json::json!({"type": "join", "name": name})
        } else {
            serde_json::json!({"type": "join", "name": name,
                "resume": {"epoch": self.epoch, "seq": self.seq}})
        };
        ws.send(Message::text(join.to_string()))
            .await
            .expect("join");
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got < more {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("messages in time")
                .expect("open")
                .expect("a frame");
            let Message::Text(text) = frame else { continue };
            let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            match v["type"].as_str() {
                Some("welcome") => self.epoch = v["epoch"].as_u64().expect("epoch"),
                Some("history") => {
                    if v["gap"].as_bool() == Some(true) {
                        self.gaps += 1;
                    }
                    for m in v["messages"].as_array().expect("messages") {
                        self.take(m["seq"].as_u64().expect("seq"));
                    }
                }
                Some("message") => {
                    self.take(v["seq"].as_u64().expect("seq"));
                    got += 1;
                }
                Some("error") => panic!("{text}"),
                _ => {}
            }
        }
        let _ = ws.send(Message::text(r#"{"type":"quit"}"#)).await;
        while let Some(Ok(_)) = ws.next().await {}
    }

    fn take(&mut self, seq: u64) {
        if seq <= self.seq {
            self.duplicates += 1;
        } else {
            if self.seq != 0 && seq != self.seq + 1 {
                self.gaps += 1;
            }
            self.seq = seq;
            self.seen.push(seq);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_moved_to_the_next_node_each_time_miss_nothing_and_repeat_nothing() {
    require!(redis_installed("resumes"));
    let _serial = SERIAL.lock().await;
    bounded("resumes", async {
        const RESUMES: usize = 1000;
        let redis = RedisServer::start();
        let url = redis.url();
        let nodes = [
            node(&url, "a", &["--history", "200"]).await,
            node(&url, "b", &["--history", "200"]).await,
            node(&url, "c", &["--history", "200"]).await,
        ];
        let mut talker = join(Wire::Line, &nodes[0], "talker").await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let talk = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    talker.say(&format!("m{i}")).await;
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                i
            })
        };
        let mut r = Resumer {
            epoch: 0,
            seq: 0,
            gaps: 0,
            duplicates: 0,
            seen: Vec::new(),
        };
        for i in 0..RESUMES {
            // A load balancer sending each reconnect to the next node.
            // A new name each time: the last connection's leave may not be logged yet.
            r.visit(&nodes[i % 3], &format!("roamer{i}"), 2).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let said = talk.await.expect("talker");
        eprintln!(
            "resumes: {RESUMES} across 3 nodes, {} messages seen of {said} said, {} gaps, {} duplicates",
            r.seen.len(),
            r.gaps,
            r.duplicates
        );
        assert_eq!((r.gaps, r.duplicates), (0, 0));
        // Everything from the first to the last seen, each once.
        let first = r.seen[0];
        assert!(r.seen.iter().enumerate().all(|(k, &s)| s == first + k as u64));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_redis_chats_alone_its_users_leave_elsewhere_and_the_room_heals() {
    require!(redis_installed("a_node_cut"));
    let _serial = SERIAL.lock().await;
    bounded("a_node_cut", async {
        let redis = RedisServer::start();
        let url = redis.url();
        let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port()).parse().unwrap()).await;
        let via = format!("redis://{}/0", proxy.addr);
        let a = node(&url, "a", &[]).await;
        let cut = node(&via, "cut", &[]).await;
        let mut ann = join(Wire::Line, &a, "ann").await;
        let mut cid = join(Wire::Line, &cut, "cid").await;
        let mut cora = join(Wire::Json, &cut, "cora").await;
        ann.notice(Duration::from_secs(5), "cora has joined").await;
        cid.notice(Duration::from_secs(5), "cora has joined").await;

        proxy.cut();
        let at = Instant::now();
        cid.notice(Duration::from_secs(5), LOST).await;
        eprintln!("cut to notice: {:.2} s", at.elapsed().as_secs_f64());
        let seen = cora
            .until(Duration::from_secs(5), "degraded", |i| {
                json_type(i).as_deref() == Some("degraded")
            })
            .await;
        assert!(!seen.is_empty());
        let ready = http_get(&cut, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        // Chat goes on among the users of the node cut off.
        cid.say("still here?").await;
        cora.until(Duration::from_secs(5), "the local message", |i| {
            matches!(i, Incoming::Notice(n) if n.contains("\"local_message\"") && n.contains("still here?"))
        })
        .await;
        // The others see them leave once the node's lease runs out.
        ann.notice(Duration::from_secs(TIMEOUT_SECS + 3), "cid has left").await;
        ann.notice(Duration::from_secs(2), "cora has left").await;
        eprintln!("cut to leaves elsewhere: {:.2} s", at.elapsed().as_secs_f64());
        // Meanwhile a name given out on both sides: the room's holder keeps it.
        let mut dan = join(Wire::Line, &a, "dan").await;
        let mut dan_cut = join(Wire::Line, &cut, "Dan").await;

        proxy.restore();
        let healed = Instant::now();
        cid.notice(Duration::from_secs(5), BACK).await;
        eprintln!("restore to back: {:.2} s", healed.elapsed().as_secs_f64());
        dan_cut
            .notice(Duration::from_secs(5), "The name 'Dan' is already taken; choose another.")
            .await;
        ann.notice(Duration::from_secs(5), "cid has joined").await;
        ann.notice(Duration::from_secs(5), "cora has joined").await;
        cid.say("back").await;
        ann.message("cid", "back").await;
        dan.message("cid", "back").await;
        let ready = http_get(&cut, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_makes_nobody_leave_and_redis_restarted_empty_brings_a_new_epoch() {
    require!(redis_installed("redis_paused"));
    let _serial = SERIAL.lock().await;
    bounded("redis_paused", async {
        let mut redis = RedisServer::start();
        let url = redis.url();
        // A timeout long enough for a pause of most of it.
        let a = node_timed(&url, "a", 6, &[]).await;
        let b = node_timed(&url, "b", 6, &[]).await;
        let mut ann = join(Wire::Line, &a, "ann").await;
        let mut bob = join(Wire::Line, &b, "bob").await;
        ann.notice(Duration::from_secs(5), "bob has joined").await;
        redis.pause();
        let paused = Instant::now();
        ann.notice(Duration::from_secs(5), LOST).await;
        eprintln!("pause to notice: {:.2} s", paused.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(5).saturating_sub(paused.elapsed())).await;
        redis.resume();
        let resumed = Instant::now();
        let seen = ann.notice(Duration::from_secs(5), BACK).await;
        eprintln!("resume to back: {:.2} s", resumed.elapsed().as_secs_f64());
        bob.notice(Duration::from_secs(5), BACK).await;
        bob.say("after the pause").await;
        let more = ann.message("bob", "after the pause").await;
        let left = seen
            .iter()
            .chain(&more)
            .filter(|i| matches!(i, Incoming::Notice(n) if n.contains("has left")))
            .count();
        assert_eq!(left, 0, "nobody left: {seen:?} {more:?}");

        redis.kill();
        ann.notice(Duration::from_secs(5), LOST).await;
        ann.say("alone").await;
        redis.restart();
        let restarted = Instant::now();
        ann.notice(Duration::from_secs(5), BACK).await;
        eprintln!(
            "restart to back: {:.2} s",
            restarted.elapsed().as_secs_f64()
        );
        bob.notice(Duration::from_secs(5), BACK).await;
        // The room is one again: both users in, chat across nodes, and nobody was shown
        // leaving or joining (each node claimed its users again in the new log).
        ann.say("new epoch").await;
        let seen = bob.message("ann", "new epoch").await;
        let churn = seen
            .iter()
            .filter(|i| matches!(i, Incoming::Notice(n) if n.contains("has left") || n.contains("has joined")))
            .count();
        assert_eq!(churn, 0, "no leave or join: {seen:?}");
        bob.say("/who").await;
        bob.notice(Duration::from_secs(5), "Online (2): ann, bob")
            .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_may_evict_keys_is_refused_and_an_absent_one_waited_for() {
    require!(redis_installed("eviction_policy"));
    let _serial = SERIAL.lock().await;
    bounded("eviction_policy", async {
        let redis = RedisServer::start();
        redis.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
        let refused = Server::command()
            .args(["--redis", &redis.url()])
            .output()
            .await;
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("maxmemory-policy noeviction"),
            "says which setting to change: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&refused.stdout).contains("listening on"),
            "never listens"
        );
        // Nothing answers there: the server starts alone after 5 s, then joins once it can.
        let mut absent = RedisServer::start();
        absent.kill();
        let started = Instant::now();
        let alone = node(&absent.url(), "alone", &[]).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(5), "waited {waited:?}");
        let ready = http_get(&alone, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        let mut ann = join(Wire::Line, &alone, "ann").await;
        ann.notice(Duration::from_secs(1), LOST).await;
        absent.restart();
        ann.notice(Duration::from_secs(5), BACK).await;
        let ready = http_get(&alone, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_one_node_chats_with_nc_on_another() {
    let test = "cluster_browser_and_nc";
    require!(redis_installed(test));
    require!(chat_tests::browser_installed(test));
    let root = require!(chat_tests::web_root(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        let mut redis = RedisServer::start();
        let url = redis.url();
        let timeout = TIMEOUT_SECS.to_string();
        let a = Server::with_page(
            &root,
            &[
                "--redis",
                &url,
                "--node-timeout",
                &timeout,
                "--node-id",
                "a",
                "--flood",
                "off",
            ],
        )
        .await;
        let b = node(&url, "b", &[]).await;
        let page = chat_tests::Browser::start(test).await;
        page.open_and_join(&a.url(), "alice").await;
        let (mut bob, welcome) = b.nc_join("bob").await;
        assert_eq!(welcome, "Welcome, bob! Online (2): alice, bob");
        page.wait_until("bob's join", |s| s.has("joined", &["bob"]))
            .await;
        page.say("hello node b").await;
        bob.expect("alice: hello node b\n").await;
        bob.type_line("hello node a");
        page.wait_until("bob's message", |s| {
            s.has("message", &["bob", "hello node a"])
        })
        .await;
        bob.type_line("/msg alice only you");
        page.wait_until("bob's private message", |s| {
            s.has("private", &["bob", "only you"])
        })
        .await;
        // Redis lost, and back empty: the page says so each time, and the room is one again.
        redis.kill();
        page.wait_until("the lost notice", |s| s.has("system", &["Lost contact"]))
            .await;
        page.say("only node a hears this").await;
        redis.restart();
        page.wait_until("the back notice", |s| s.has("system", &["Back in contact"]))
            .await;
        bob.expect("*** Back in contact with the other servers ***\n")
            .await;
        bob.type_line("one room again");
        page.wait_until("bob after the restart", |s| {
            s.has("message", &["bob", "one room again"])
        })
        .await;
        page.screenshot(test).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_is_written_out_and_joins_again_when_it_runs() {
    require!(redis_installed("a_node_paused"));
    let _serial = SERIAL.lock().await;
    bounded("a_node_paused", async {
        let redis = RedisServer::start();
        let url = redis.url();
        let a = node(&url, "a", &[]).await;
        let frozen = node(&url, "frozen", &[]).await;
        let mut ann = join(Wire::Line, &a, "ann").await;
        let mut fay = join(Wire::Line, &frozen, "fay").await;
        ann.notice(Duration::from_secs(5), "fay has joined").await;
        frozen.signal("STOP");
        let at = Instant::now();
        ann.notice(Duration::from_secs(TIMEOUT_SECS + 2), "fay has left")
            .await;
        eprintln!("SIGSTOP to leave: {:.2} s", at.elapsed().as_secs_f64());
        // What fay typed while her node was stopped is not said for a user gone from the
        // room: her node learns it was written out, joins the room again, then speaks.
        fay.say("typed while frozen").await;
        frozen.signal("CONT");
        ann.notice(Duration::from_secs(5), "fay has joined").await;
        fay.say("after the thaw").await;
        let seen = ann.message("fay", "after the thaw").await;
        assert!(
            !seen.iter().any(
                |i| matches!(i, Incoming::Message { text, .. } if text == "typed while frozen")
            ),
            "nothing said for fay while she was out of the room: {seen:?}"
        );
    })
    .await;
}

/// Connects to `server`'s line listener, answers the prompt with `name` and returns the line
/// the server answers with (a welcome, or why not).
async fn answer_to_name(server: &Server, name: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(server.tcp)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut prompt = vec![0; "Enter your name: ".len()];
    tokio::io::AsyncReadExt::read_exact(&mut read, &mut prompt)
        .await
        .expect("the prompt");
    assert_eq!(prompt, b"Enter your name: ");
    write
        .write_all(format!("{name}\n").as_bytes())
        .await
        .expect("write");
    let mut line = String::new();
    read.read_line(&mut line).await.expect("an answer");
    line.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_on_one_node_kicks_bans_and_mutes_users_on_another_and_bans_outlive_a_restart()
{
    require!(redis_installed("cluster_moderation"));
    let _serial = SERIAL.lock().await;
    bounded("cluster_moderation", async {
        let redis = RedisServer::start();
        let url = redis.url();
        let dir = chat_tests::TempDir::new("cluster_moderation");
        let token = dir.join("op-token");
        std::fs::write(&token, "SECRET-long-enough-4-ops\n").expect("write the token file");
        let token = token.to_str().expect("a UTF-8 path");
        let flags = ["--op-token-file", token];
        let mut a = node(&url, "a", &flags).await;
        let mut b = node(&url, "b", &flags).await;
        let (mut op, _) = a.nc_join("OP").await;
        op.type_line("/op SECRET-long-enough-4-ops");
        op.expect("You are now an operator.\n").await;
        let (mut wes, _) = b.nc_join("wes").await;
        let (mut bob, _) = b.nc_join("bob").await;
        let (mut carol, _) = b.nc_join("carol").await;
        let (mut dave, _) = b.nc_join("dave").await;
        op.expect("*** dave has joined the chat ***\n").await;

        // A kick on node a reaches bob on node b, who is told why and closed.
        op.type_line("/kick bob spam");
        bob.expect("*** You were kicked by OP: spam ***\n").await;
        // nc ends once its input has and the server has closed the connection.
        bob.close_stdin();
        let (rest, _) = bob.finished().await;
        assert_eq!(rest, "", "nothing after the kick line but the close");
        wes.expect("*** bob was kicked by OP: spam ***\n").await;
        op.expect("*** bob was kicked by OP: spam ***\n").await;

        // A ban on node a: carol on node b is put out, and node b turns the name away.
        let banned_at = Instant::now();
        op.type_line("/ban carol 5 flood");
        let refusal = "You are banned from this room for 5 more minutes.";
        let mut tries = 0;
        let held = loop {
            tries += 1;
            let answer = answer_to_name(&b, "carol").await;
            if answer == refusal {
                break banned_at.elapsed();
            }
            // Until node b has the ban, carol is still in there.
            assert_eq!(
                answer, "The name 'carol' is already taken; choose another.",
                "try {tries}"
            );
            assert!(banned_at.elapsed() < Duration::from_secs(5), "no ban yet");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        carol.expect("*** You were banned by OP: flood ***\n").await;
        carol.close_stdin();
        let (rest, _) = carol.finished().await;
        assert_eq!(rest, "", "nothing after the ban line but the close");
        wes.expect("*** carol was banned by OP: flood ***\n").await;
        op.expect("carol is banned for 5 minutes.\n").await;
        op.expect("*** carol was banned by OP: flood ***\n").await;
        eprintln!(
            "a ban on node a holds on node b after {:.1} ms ({tries} tries)",
            held.as_secs_f64() * 1000.0
        );
        assert!(held < Duration::from_secs(1), "the contract's second");
        // nc as a user runs it: turned away after the prompt, and closed.
        let mut again = chat_tests::Nc::connect(b.tcp, "carol");
        again.expect("Enter your name: ").await;
        again.type_line("CAROL");
        again.close_stdin();
        let (said, _) = again.finished().await;
        assert_eq!(said, format!("{refusal}\n"));

        // A mute: dave's public lines reach nobody, and he is told so.
        op.type_line("/mute dave");
        op.expect("dave is muted for 60 minutes.\n").await;
        dave.expect("*** You were muted by OP ***\n").await;
        dave.type_line("can anyone hear me");
        dave.expect("You are muted.\n").await;
        wes.type_line("after dave");
        let heard = op.expect("wes: after dave\n").await;
        assert!(!heard.contains("can anyone hear me"), "{heard:?}");
        op.type_line("after wes");
        let heard = wes.expect("OP: after wes\n").await;
        assert!(!heard.contains("can anyone hear me"), "{heard:?}");
        // The operator of node a is marked on node b; nobody announced a kicked or banned
        // user's leave a second time.
        wes.type_line("/who");
        let who = wes
            .line_where("the roster", |l| l.starts_with("Online ("))
            .await;
        assert_eq!(who, "Online (3): dave, @OP, wes");
        let all = wes.drain_for(Duration::from_millis(200)).await.to_owned();
        assert!(!all.contains("has left"), "{all:?}");
        drop((op, wes, dave));

        // Both nodes restarted, the same Redis: node b still turns carol away, and dave is
        // still muted.
        a.stop().await;
        b.stop().await;
        a.start_again().await;
        b.start_again().await;
        assert_eq!(answer_to_name(&b, "carol").await, refusal);
        assert_eq!(answer_to_name(&a, "Carol").await, refusal);
        let (mut dave, _) = b.nc_join("dave").await;
        dave.type_line("still muted?");
        dave.expect("You are muted.\n").await;
    })
    .await;
}
