//! A crowd: 10,000 clients at once, half nc-style TCP and half WebSocket, joined to one room
//! on this machine; a message from each wire reaches every one of them. Prints the join time
//! and the server's memory per connection.
//!
//! Above `--announce-limit` the room sends joins and leaves as a periodic digest, which is what
//! keeps a join storm of this size from turning into 50 million announcements.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chat_tests::Server;
use chat_tests::load::{self, Incoming, Target, Wire};
use tokio::sync::{Semaphore, mpsc};

const CLIENTS: usize = 10_000;
/// Connections being set up at once.
const CONCURRENT_JOINS: usize = 200;
/// Bound on the whole join storm, and on each broadcast reaching everyone.
const JOIN_BOUND: Duration = Duration::from_secs(120);
const REACH_BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_on_both_wires_all_hear_a_broadcast() {
    let limit = load::raise_open_files_limit();
    // The server is a child of this process and inherits the raised limit.
    assert!(
        limit >= CLIENTS as u64 + 512,
        "open files limit {limit}: raise the hard limit (ulimit -Hn) to at least {}",
        CLIENTS + 512
    );
    let users = (CLIENTS + 100).to_string();
    let server = Server::start(&["--max-users", &users, "--idle-timeout", "0"]).await;
    let target = Target {
        tcp: server.tcp,
        http: server.http,
    };
    let rss_before = load::rss_kib(server.pid()).expect("the server's VmRSS");

    // Every client joins, then reports each public message it hears on `heard`.
    let (heard_tx, mut heard) = mpsc::unbounded_channel::<(usize, String)>();
    let joined = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(Semaphore::new(CONCURRENT_JOINS));
    let started = Instant::now();
    let mut joins = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let wire = if i % 2 == 0 { Wire::Line } else { Wire::Json };
        let (slots, joined, heard_tx) = (slots.clone(), joined.clone(), heard_tx.clone());
        joins.push(tokio::spawn(async move {
            let permit = slots.acquire_owned().await.expect("open semaphore");
            let name = format!("u{i}");
            let (sender, mut receiver) = load::join(wire, target, &name).await?;
            drop(permit);
            joined.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                while let Ok(Some(incoming)) = receiver.next().await {
                    if let Incoming::Message { text, .. } = incoming
                        && heard_tx.send((i, text)).is_err()
                    {
                        break;
                    }
                }
            });
            Ok::<_, std::io::Error>(sender)
        }));
    }
    drop(heard_tx);
    let mut senders = Vec::with_capacity(CLIENTS);
    let mut failures = Vec::new();
    let all_joined = tokio::time::timeout(JOIN_BOUND, async {
        for join in joins {
            match join.await.expect("join task") {
                Ok(sender) => senders.push(sender),
                Err(err) => failures.push(err.to_string()),
            }
        }
    })
    .await;
    let join_time = started.elapsed();
    assert!(
        all_joined.is_ok(),
        "only {} of {CLIENTS} joined within {JOIN_BOUND:?}",
        joined.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} could not join; the first: {}",
        failures.len(),
        failures[0]
    );
    let rss_after = load::rss_kib(server.pid()).expect("the server's VmRSS");

    // One message from a TCP user, then one from a WebSocket user: everyone hears both (the
    // WebSocket sender hears its own as the confirmation of its place).
    for (sender, text) in [(0usize, "hello from nc"), (1, "hello from the browser")] {
        let sent = Instant::now();
        senders[sender].say(text).await.expect("say");
        let mut reached = vec![false; CLIENTS];
        let mut count = 0;
        let expected = if sender % 2 == 0 {
            CLIENTS - 1
        } else {
            CLIENTS
        };
        let outcome = tokio::time::timeout(REACH_BOUND, async {
            while count < expected {
                let Some((i, heard)) = heard.recv().await else {
                    break;
                };
                if heard == text && !std::mem::replace(&mut reached[i], true) {
                    count += 1;
                }
            }
        })
        .await;
        assert!(
            outcome.is_ok() && count == expected,
            "{text:?} reached {count} of {expected} within {REACH_BOUND:?}"
        );
        println!(
            "crowd: {text:?} reached all {expected} clients in {:.0} ms",
            sent.elapsed().as_secs_f64() * 1000.0
        );
    }
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 / CLIENTS as f64;
    println!(
        "crowd: {CLIENTS} clients ({} TCP, {} WebSocket) joined in {:.1} s; server RSS {} KiB \
         before, {} KiB after: {per_conn:.1} KiB per connection",
        CLIENTS / 2,
        CLIENTS / 2,
        join_time.as_secs_f64(),
        rss_before,
        rss_after,
    );
    drop(senders);
}
