//! The message log's durability, with the real binary: what SIGTERM with messages in flight,
//! `kill -9`, a torn last line, SIGHUP after logrotate's rename and size rotation leave in the
//! log, and what users see after a restart (the history read back from the log).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chat_tests::{Nc, Server, TempDir};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for something that must happen before failing.
const WAIT: Duration = Duration::from_secs(20);

/// Starts the server on free ports with `args`.
async fn start_server(args: &[&str]) -> Server {
    start_server_with_env(args, &[]).await
}

/// Starts the server on free ports with `args` and `env`, keeping its standard error (its
/// warnings, which some tests read).
async fn start_server_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
    Server::command()
        .args(args)
        .envs(env)
        .log("warn")
        .keep_stderr()
        .exit_wait(WAIT)
        .start()
        .await
}

/// Waits until `done` holds, polling; fails with `what` after [`WAIT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A line-protocol user over a plain TCP socket.
struct Peer {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Peer {
    /// Connects, answers the prompt with `name` and reads up to the end of the welcome.
    fn join(addr: SocketAddr, name: &str) -> Peer {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut prompt = Vec::new();
        while !prompt.ends_with(b"Enter your name: ") {
            let mut byte = [0u8];
            reader.read_exact(&mut byte).expect("the name prompt");
            prompt.push(byte[0]);
        }
        let mut peer = Peer { stream, reader };
        peer.send(name);
        loop {
            let line = peer.line().expect("the welcome");
            if line == "Type /help for the list of commands." {
                return peer;
            }
        }
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// The next line without its newline; `None` at the end.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
        }
    }
}

/// A user who only listens: every line it gets until the connection ends, and a running count
/// of the public messages among them (`NAME: TEXT` from a name starting with `sender`).
struct Watcher {
    messages: Arc<AtomicUsize>,
    thread: JoinHandle<Vec<String>>,
}

impl Watcher {
    fn join(addr: SocketAddr, sender: &'static str) -> Watcher {
        let mut peer = Peer::join(addr, "watcher");
        let messages = Arc::new(AtomicUsize::new(0));
        let count = messages.clone();
        let thread = thread::spawn(move || {
            let mut lines = Vec::new();
            while let Some(line) = peer.line() {
                if line.starts_with(sender) && line.contains(": ") {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                lines.push(line);
            }
            lines
        });
        Watcher { messages, thread }
    }

    fn count(&self) -> usize {
        self.messages.load(Ordering::Relaxed)
    }

    fn wait_for(&self, n: usize) {
        wait_until(&format!("the watcher got {n} messages"), || {
            self.count() >= n
        });
    }

    /// Everything it got, once the server has closed the connection: the public messages as
    /// (from, text), and whether the last line was the shutdown notice.
    fn finish(self) -> (Vec<(String, String)>, bool) {
        let lines = self.thread.join().unwrap();
        let shutdown = lines.last().map(String::as_str) == Some("*** Server is shutting down ***");
        // The history replayed on joining is not what the watcher heard live.
        let live = match lines
            .iter()
            .position(|l| l == "--- End of recent messages ---")
        {
            Some(end) => &lines[end + 1..],
            None => &lines[..],
        };
        let messages = live
            .iter()
            .filter(|l| !l.starts_with("***"))
            .map(|l| {
                let (from, text) = l.split_once(": ").unwrap_or_else(|| panic!("{l:?}"));
                (from.to_owned(), text.to_owned())
            })
            .collect();
        (messages, shutdown)
    }
}

/// A user who sends `NAME m0`, `NAME m1`, ... as fast as the socket takes them, in batches,
/// until `stop` or until the server closes; returns how many lines it wrote whole. With
/// `heard`, a count of them heard by someone, it stays at most a few thousand lines ahead, so
/// that a long run does not pile up more than a slow machine can work through.
fn flood(
    addr: SocketAddr,
    name: &'static str,
    stop: Arc<AtomicBool>,
    heard: Option<Arc<AtomicUsize>>,
) -> JoinHandle<usize> {
    let mut peer = Peer::join(addr, name);
    thread::spawn(move || {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            if heard
                .as_ref()
                .is_some_and(|heard| sent > heard.load(Ordering::Relaxed) + 2000)
            {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            let batch: String = (sent..sent + 20)
                .map(|i| format!("{name} m{i}\n"))
                .collect();
            if peer.stream.write_all(batch.as_bytes()).is_err() {
                break;
            }
            sent += 20;
        }
        sent
    })
}

/// The texts `NAME m0` .. `NAME m{n-1}`.
fn flood_texts(name: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (name.to_owned(), format!("{name} m{i}")))
        .collect()
}

/// Every line of `path` as JSON. Strict: the file ends with a newline and every line parses.
fn records(path: &Path) -> Vec<Value> {
    let content = std::fs::read_to_string(path).unwrap();
    assert!(
        content.is_empty() || content.ends_with('\n'),
        "{} ends in a whole line",
        path.display()
    );
    content
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("line {} of {}: {e}: {l:?}", i + 1, path.display()))
        })
        .collect()
}

/// The whole lines of `path` written so far (a write may be under way), as JSON.
fn records_so_far(path: &Path) -> Vec<Value> {
    let content = std::fs::read(path).unwrap_or_default();
    let whole = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    String::from_utf8(content[..whole].to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// The public messages among `records`, as (seq, from, text).
fn messages(records: &[Value]) -> Vec<(u64, String, String)> {
    records
        .iter()
        .filter(|r| r["type"] == "message")
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["from"].as_str().unwrap().to_owned(),
                r["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn from_text(messages: &[(u64, String, String)]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|(_, from, text)| (from.clone(), text.clone()))
        .collect()
}

/// The seqs go up by one from `first`.
fn assert_numbered_from(messages: &[(u64, String, String)], first: u64) {
    for (i, (seq, _, text)) in messages.iter().enumerate() {
        assert_eq!(*seq, first + i as u64, "{text}");
    }
}

/// Joins as `name` with a real `nc`; returns what it showed from the welcome on, up to the
/// end of the history when there is one.
async fn nc_join(addr: SocketAddr, name: &str, history: bool) -> (Nc, String) {
    let mut nc = Nc::connect(addr, name).with_wait(WAIT);
    nc.expect("Enter your name: ").await;
    nc.type_line(name);
    let mut seen = nc.expect("Type /help for the list of commands.\n").await;
    if history {
        seen.push_str(&nc.expect("--- End of recent messages ---\n").await);
    }
    (nc, seen)
}

/// What nc shows for a history of these messages.
fn history_text(messages: &[(String, String)]) -> String {
    let mut text = format!("--- Recent messages ({}) ---\n", messages.len());
    for (from, said) in messages {
        text.push_str(&format!("{from}: {said}\n"));
    }
    text.push_str("--- End of recent messages ---\n");
    text
}

#[tokio::test]
async fn sigterm_with_messages_in_flight_loses_none() {
    let dir = TempDir::new("sigterm");
    let log = dir.join("chat.jsonl");
    let mut server = start_server(&[
        "--log",
        log.to_str().unwrap(),
        "--flood",
        "off",
        "--max-queue",
        "268435456",
    ])
    .await;
    let watcher = Watcher::join(server.tcp, "s");
    let stop = Arc::new(AtomicBool::new(false));
    let names = ["s1", "s2", "s3", "s4"];
    let senders: Vec<_> = names
        .iter()
        .map(|name| flood(server.tcp, name, stop.clone(), None))
        .collect();
    watcher.wait_for(4000);
    server.stop().await; // SIGTERM while the senders are still sending.
    let sent: Vec<usize> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let (received, shutdown) = watcher.finish();
    assert!(
        shutdown,
        "the watcher got everything up to the shutdown notice"
    );

    let logged = messages(&records(&log));
    println!(
        "sent {sent:?} lines; the room took {} before SIGTERM, the watcher got {} of them",
        logged.len(),
        received.len()
    );
    assert_numbered_from(&logged, 1);
    // Everyone heard exactly what the log holds, in its order, once.
    assert_eq!(from_text(&logged), received);
    // Each sender's lines were taken in the order sent, from the first, with no gap.
    for (name, sent) in names.iter().zip(&sent) {
        let mine: Vec<_> = received
            .iter()
            .filter(|(from, _)| from == name)
            .cloned()
            .collect();
        assert!(mine.len() <= *sent);
        assert_eq!(mine, flood_texts(name, mine.len()));
    }
    // Still in flight at SIGTERM: the senders wrote more than the room took.
    assert!(sent.iter().sum::<usize>() > logged.len());
}

#[tokio::test]
async fn kill_9_keeps_what_was_flushed_and_the_next_start_repairs_and_reloads() {
    let dir = TempDir::new("kill9");
    let log = dir.join("chat.jsonl");
    let args = [
        "--log",
        log.to_str().unwrap(),
        "--flood",
        "off",
        "--log-flush",
        "100",
        "--max-queue",
        "268435456",
    ];

    // A quiet room: everything accepted is in the log within the flush interval.
    let mut server = start_server(&args).await;
    let watcher = Watcher::join(server.tcp, "ann");
    let mut ann = Peer::join(server.tcp, "ann");
    for i in 0..300 {
        ann.send(&format!("note {i}"));
    }
    watcher.wait_for(300);
    let accepted = Instant::now();
    wait_until("the log holds the 300 notes", || {
        messages(&records_so_far(&log)).len() == 300
    });
    println!(
        "the last of 300 notes was in the log {:?} after the watcher got it (--log-flush 100)",
        accepted.elapsed()
    );
    server.signal("KILL");
    assert!(!server.wait_exit().await.success());
    let first = messages(&records(&log));
    assert_numbered_from(&first, 1);
    let notes: Vec<_> = (0..300)
        .map(|i| ("ann".to_owned(), format!("note {i}")))
        .collect();
    assert_eq!(from_text(&first), notes);
    drop(watcher);

    // The next start reloads them; then kill -9 while messages pour in.
    let mut server = start_server(&args).await;
    let (_nc, seen) = nc_join(server.tcp, "reader", true).await;
    assert!(seen.ends_with(&history_text(&notes[250..])), "{seen}");
    let watcher = Watcher::join(server.tcp, "s1");
    let stop = Arc::new(AtomicBool::new(false));
    let sender = flood(server.tcp, "s1", stop.clone(), None);
    watcher.wait_for(1000);
    wait_until("the log holds 1000 of the flood", || {
        messages(&records_so_far(&log)).len() >= 300 + 1000
    });
    server.signal("KILL");
    assert!(!server.wait_exit().await.success());
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let (received, _) = watcher.finish();

    // The start after that succeeds whatever the kill left, and the log is whole lines.
    let mut server = start_server(&args).await;
    let (_nc, seen) = nc_join(server.tcp, "late", true).await;
    server.stop().await;
    let all = messages(&records(&log));
    assert_numbered_from(&all, 1);
    let flooded = from_text(&all[300..]);
    println!(
        "kill -9 under load: {sent} lines sent, the watcher got {}, the log kept {}; {}",
        received.len(),
        flooded.len(),
        if server.stderr().contains("unfinished line") {
            "the restart cut a torn line"
        } else {
            "no torn line"
        }
    );
    assert!(flooded.len() >= 1000);
    // What the log kept is what the room accepted first, in order. (The watcher may have got
    // fewer, or more: the server's unsent output and unwritten records died with it.)
    assert_eq!(flooded, flood_texts("s1", flooded.len()));
    let both = flooded.len().min(received.len());
    assert_eq!(flooded[..both], received[..both]);
    let tail = from_text(&all[all.len() - 50..]);
    assert!(seen.ends_with(&history_text(&tail)), "{seen}");
}

#[tokio::test]
async fn a_torn_last_line_is_cut_off_at_start_and_the_history_comes_from_the_whole_ones() {
    let dir = TempDir::new("torn");
    let log = dir.join("chat.jsonl");
    let whole = concat!(
        r#"{"time":"2026-11-22T04:18:21.837Z","type":"join","name":"bob","peer":"127.0.0.1"}"#,
        "\n",
        r#"{"time":"2026-11-22T04:18:22.001Z","type":"message","seq":1,"from":"bob","text":"one"}"#,
        "\n",
        "this line is not JSON\n",
        r#"{"time":"2026-11-22T04:18:22.002Z","type":"message","seq":2,"from":"bob","text":"two"}"#,
        "\n",
        r#"{"time":"2026-11-22T04:18:22.003Z","type":"message","seq":3,"from":"bob","text":"three"}"#,
        "\n",
    );
    let torn = r#"{"time":"2026-11-22T04:18:22.004Z","type":"message","seq":4,"fr"#;
    std::fs::write(&log, format!("{whole}{torn}")).unwrap();

    let mut server = start_server(&["--log", log.to_str().unwrap()]).await;
    let (mut ann, seen) = nc_join(server.tcp, "ann", true).await;
    let said =
        [("bob", "one"), ("bob", "two"), ("bob", "three")].map(|(f, t)| (f.into(), t.into()));
    assert!(seen.ends_with(&history_text(&said)), "{seen}");
    let warnings = server.stderr();
    assert!(
        warnings.contains("unfinished line") && warnings.contains(&format!("bytes={}", torn.len())),
        "{warnings}"
    );
    assert!(warnings.contains("not a record"), "{warnings}");
    ann.type_line("four");
    ann.type_line("/who"); // Answered once "four" was taken in.
    ann.expect("Online (1): ann").await;
    server.stop().await;

    let content = std::fs::read_to_string(&log).unwrap();
    let rest = content
        .strip_prefix(whole)
        .expect("the whole lines are kept as they were");
    let added: Vec<Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).expect("each new line is a record"))
        .collect();
    assert!(rest.ends_with('\n'));
    let message = added.iter().find(|r| r["type"] == "message").unwrap();
    assert_eq!(
        (&message["seq"], &message["from"], &message["text"]),
        (&json!(4), &json!("ann"), &json!("four"))
    );
}

/// A WebSocket user: connects to `/ws`, joins, and returns the socket, the welcome and the
/// history event if one followed.
async fn ws_join(
    http: SocketAddr,
    name: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    Value,
    Option<Value>,
) {
    let stream = tokio::net::TcpStream::connect(http).await.unwrap();
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(format!("ws://{http}/ws"), stream),
    )
    .await
    .expect("the handshake ends in time")
    .expect("101");
    assert_eq!(ws_event(&mut ws).await["type"], "prompt");
    ws.send(Message::text(
        json!({"type": "join", "name": name}).to_string(),
    ))
    .await
    .unwrap();
    let welcome = ws_event(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    // Anything else would be an event the history comes before; ask for one to know.
    ws.send(Message::text(json!({"type": "who"}).to_string()))
        .await
        .unwrap();
    let next = ws_event(&mut ws).await;
    let history = (next["type"] == "history").then(|| next.clone());
    if history.is_some() {
        assert_eq!(ws_event(&mut ws).await["type"], "who");
    }
    (ws, welcome, history)
}

async fn ws_event(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn a_restart_reloads_the_history_and_the_numbering_goes_on() {
    let dir = TempDir::new("restart");
    let log = dir.join("chat.jsonl");
    let args = ["--log", log.to_str().unwrap()];

    let mut server = start_server(&args).await;
    let (mut ws, first_welcome, history) = ws_join(server.http, "wendy").await;
    assert!(history.is_none());
    let (mut alice, _) = nc_join(server.tcp, "alice", false).await;
    for text in ["good morning", "anyone here?", "the build is green"] {
        alice.type_line(text);
    }
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let event = ws_event(&mut ws).await;
        if event["type"] == "message" {
            seqs.push(event["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs, [1, 2, 3]);
    server.stop().await;
    drop((ws, alice));

    let mut server = start_server(&args).await;
    let (mut carol, seen) = nc_join(server.tcp, "carol", true).await;
    let said = ["good morning", "anyone here?", "the build is green"]
        .map(|t| ("alice".to_owned(), t.to_owned()));
    assert!(seen.ends_with(&history_text(&said)), "{seen}");

    let (mut ws, welcome, history) = ws_join(server.http, "dave").await;
    assert_ne!(
        welcome["epoch"], first_welcome["epoch"],
        "a new run, a new epoch"
    );
    let history = history.expect("a history after the restart");
    assert_eq!(
        history["messages"],
        json!([
            {"seq": 1, "from": "alice", "text": "good morning"},
            {"seq": 2, "from": "alice", "text": "anyone here?"},
            {"seq": 3, "from": "alice", "text": "the build is green"},
        ])
    );
    ws.send(Message::text(
        json!({"type": "say", "text": "back again"}).to_string(),
    ))
    .await
    .unwrap();
    let mine = loop {
        let event = ws_event(&mut ws).await;
        if event["type"] == "message" {
            break event;
        }
    };
    assert_eq!(
        mine,
        json!({"type": "message", "seq": 4, "from": "dave", "text": "back again"})
    );
    carol.expect("dave: back again\n").await;
    server.stop().await;
    let logged = messages(&records(&log));
    assert_numbered_from(&logged, 1);
    assert_eq!(logged.len(), 4);
}

#[tokio::test]
async fn sighup_after_a_rename_reopens_the_log_under_load_without_losing_a_line() {
    let dir = TempDir::new("sighup");
    let log = dir.join("chat.jsonl");
    let mut server = start_server(&[
        "--log",
        log.to_str().unwrap(),
        "--flood",
        "off",
        "--log-flush",
        "20",
        "--max-queue",
        "268435456",
    ])
    .await;
    let watcher = Watcher::join(server.tcp, "s1");
    let stop = Arc::new(AtomicBool::new(false));
    let sender = flood(
        server.tcp,
        "s1",
        stop.clone(),
        Some(watcher.messages.clone()),
    );
    let mut files = Vec::new();
    for k in 1..=5 {
        watcher.wait_for(k * 500);
        wait_until("the log has lines to rotate", || {
            !messages(&records_so_far(&log)).is_empty()
        });
        // What logrotate does: rename, then signal.
        let rotated = dir.join(&format!("chat.jsonl.r{k}"));
        std::fs::rename(&log, &rotated).unwrap();
        server.signal("HUP");
        wait_until("the server reopened the log", || log.exists());
        files.push(rotated);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    watcher.wait_for(sent);
    server.stop().await;
    files.push(log);

    let (received, _) = watcher.finish();
    assert_eq!(received, flood_texts("s1", sent));
    let mut all = Vec::new();
    for file in &files {
        let here = messages(&records(file));
        assert!(!here.is_empty(), "{} has messages", file.display());
        all.extend(here);
    }
    println!(
        "{sent} messages over {} files: {:?}",
        files.len(),
        files
            .iter()
            .map(|f| messages(&records(f)).len())
            .collect::<Vec<_>>()
    );
    assert_numbered_from(&all, 1);
    assert_eq!(from_text(&all), received);
}

#[tokio::test]
async fn sighup_without_a_log_does_not_stop_the_server() {
    let mut server = start_server(&[]).await;
    server.signal("HUP");
    let (mut ann, _) = nc_join(server.tcp, "ann", false).await;
    server.signal("HUP");
    ann.type_line("/who");
    ann.expect("Online (1): ann").await;
    server.stop().await;
}

#[tokio::test]
async fn size_rotation_splits_the_log_between_lines_and_the_restart_reads_across_files() {
    let dir = TempDir::new("size");
    let log = dir.join("chat.jsonl");
    let args = [
        "--log",
        log.to_str().unwrap(),
        "--flood",
        "off",
        "--log-flush",
        "20",
        "--log-max-size",
        "4096",
        "--log-keep",
        "1000",
        "--history",
        "100",
        "--max-queue",
        "268435456",
    ];
    let mut server = start_server(&args).await;
    let watcher = Watcher::join(server.tcp, "ann");
    let mut ann = Peer::join(server.tcp, "ann");
    for i in 0..2000 {
        ann.send(&format!("note {i}"));
    }
    watcher.wait_for(2000);
    server.stop().await;

    let mut files: Vec<PathBuf> = (1..)
        .map(|n| dir.join(&format!("chat.jsonl.{n}")))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(log.clone());
    let mut all = Vec::new();
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= 4096, "{} is {size} bytes", file.display());
        all.extend(messages(&records(file)));
    }
    println!(
        "2000 messages in {} files of at most 4096 bytes",
        files.len()
    );
    assert!(files.len() > 10);
    assert_numbered_from(&all, 1);
    let notes: Vec<_> = (0..2000)
        .map(|i| ("ann".to_owned(), format!("note {i}")))
        .collect();
    assert_eq!(from_text(&all), notes);

    // The current file holds fewer than --history: the rest comes from PATH.1.
    assert!(messages(&records(&log)).len() < 100);
    let mut server = start_server(&args).await;
    let (_bob, seen) = nc_join(server.tcp, "bob", true).await;
    assert!(seen.ends_with(&history_text(&notes[1900..])), "{seen}");
    server.stop().await;
}

#[tokio::test]
async fn the_log_flags_have_environment_variables_and_help() {
    let out = Server::command()
        .without_port_flags()
        .args(["--help"])
        .output()
        .await;
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, var) in [
        ("--log-flush", "CHAT_LOG_FLUSH"),
        ("--log-max-size", "CHAT_LOG_MAX_SIZE"),
        ("--log-keep", "CHAT_LOG_KEEP"),
    ] {
        assert!(
            help.contains(flag) && help.contains(var),
            "{flag} {var} in\n{help}"
        );
    }

    let dir = TempDir::new("env");
    let log = dir.join("chat.jsonl");
    let mut server = start_server_with_env(
        &["--flood", "off"],
        &[
            ("CHAT_LOG", log.to_str().unwrap()),
            ("CHAT_LOG_FLUSH", "0"),
            ("CHAT_LOG_MAX_SIZE", "1000"),
            ("CHAT_LOG_KEEP", "2"),
        ],
    )
    .await;
    let watcher = Watcher::join(server.tcp, "ann");
    let mut ann = Peer::join(server.tcp, "ann");
    for i in 0..100 {
        ann.send(&format!("note {i}"));
    }
    watcher.wait_for(100);
    // With no wait at all (--log-flush 0) the last note reaches the file without a shutdown.
    wait_until("the last note is in the log", || {
        messages(&records_so_far(&log))
            .last()
            .is_some_and(|(_, _, text)| text == "note 99")
    });
    server.stop().await;
    let files = [
        dir.join("chat.jsonl.2"),
        dir.join("chat.jsonl.1"),
        log.clone(),
    ];
    let mut kept = Vec::new();
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() <= 1000);
        kept.extend(messages(&records(file)));
    }
    assert!(!dir.join("chat.jsonl.3").exists(), "two rotated files kept");
    assert_eq!(kept.last().unwrap().2, "note 99");
    assert_numbered_from(&kept, kept[0].0);
    assert!(kept[0].0 > 1, "the oldest were rotated away");
}
