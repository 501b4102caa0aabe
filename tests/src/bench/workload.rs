//! One workload against one running server, over either wire, and what it measured: a
//! fan-out ([`fanout`], [`FanoutReport`]) or idle connections ([`idle`], [`IdleReport`]). The
//! servers themselves are started by [`super::servers`]; this module only needs their
//! addresses, and the flavour of line protocol they speak ([`Flavor`]), so that the tutorial's
//! seed server can be measured by the very same code.
//!
//! Every workload ends by itself: each has a time limit, after which it stops and reports
//! what did not arrive as lost.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::load::{self, Target, Wire};

/// Which server the line wire talks to: ours (a welcome after the name), or one speaking the
/// seed's protocol (no welcome: joined as soon as the name is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `chat-server`.
    Ours,
    /// `seed_chat_server.py`.
    Seed,
    /// `fanout-floor`: one epoll thread, a read per line and a write per receiver, nothing
    /// else; the seed's protocol.
    Floor,
}

/// What to run against.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// Where it listens.
    pub target: Target,
    /// What it speaks.
    pub flavor: Flavor,
    /// Its process, when known: its CPU time during a run is then reported.
    pub pid: Option<u32>,
}

/// Nanoseconds since the first call in this process: the clock in every message.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------------------------
// Fan-out

/// N clients join; S of them send M messages each; everyone else receives them.
#[derive(Clone, Debug)]
pub struct Fanout {
    /// Clients in the room, senders included.
    pub clients: usize,
    /// How many of them send.
    pub senders: usize,
    /// Messages per sender.
    pub messages: u64,
    /// Messages per second per sender; `None` sends flat out within `window`.
    pub rate: Option<f64>,
    /// At a rate: every sender ticks at the same instants, so the room gets bursts of one
    /// message per sender. Otherwise sender `s` starts `s / senders` of a period later, so that
    /// the messages are spread evenly, as from independent people.
    pub aligned: bool,
    /// Flat out: a sender's messages not yet received by every client, at most.
    pub window: u64,
    /// The wire.
    pub wire: Wire,
    /// The whole run, joins included, ends by this.
    pub time_limit: Duration,
}

/// What a fan-out run saw.
#[derive(Clone, Debug)]
pub struct FanoutReport {
    /// Deliveries expected: messages × receivers.
    pub expected: u64,
    /// Distinct deliveries received.
    pub delivered: u64,
    /// Expected and never received (before the time limit).
    pub lost: u64,
    /// Received more than once.
    pub duplicated: u64,
    /// Received after a later message of the same sender.
    pub reordered: u64,
    /// From the first message sent to the last received.
    pub elapsed: Duration,
    /// Time to get every client joined.
    pub join_time: Duration,
    /// Delivery latency, microseconds.
    pub latency: Histogram<u64>,
    /// Whether the run hit its time limit.
    pub timed_out: bool,
    /// Receivers the server closed during the run.
    pub disconnected: usize,
    /// The machine while the messages were sent and received.
    pub conditions: Conditions,
}

impl FanoutReport {
    /// Distinct deliveries per second.
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile, in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The slowest delivery, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    /// The server's CPU time per delivery, microseconds, and the share of it spent in the
    /// kernel, when its process was known.
    pub fn cpu_per_delivery(&self) -> Option<(f64, f64)> {
        let (user, system) = self.conditions.server_cpu?;
        let total = (user + system).as_secs_f64();
        (self.delivered > 0 && total > 0.0).then(|| {
            (
                total * 1e6 / self.delivered as f64,
                system.as_secs_f64() / total,
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The machine during a run

/// What else was going on while a run measured: on a shared two-core virtual machine, a
/// latency tail is as much the machine's as the server's, so each run says what the machine
/// was doing.
#[derive(Clone, Debug)]
pub struct Conditions {
    /// Percent of the machine's CPU time taken by the hypervisor for others (steal).
    pub steal: f64,
    /// Percent of the machine's CPU time idle.
    pub idle: f64,
    /// How late a thread that does nothing but sleep 1 ms at a time woke up, microseconds:
    /// the scheduling delay any woken thread (server or client) met during the run.
    pub sleeper_late: Histogram<u64>,
    /// The server's CPU time during the run (user, system), when its process was known; with
    /// several nodes, theirs together.
    pub server_cpu: Option<(Duration, Duration)>,
    /// The engine's (`redis-server`'s) CPU time during the run, with several nodes.
    pub engine_cpu: Option<(Duration, Duration)>,
}

impl Conditions {
    /// A quantile of the sleeper's lateness, in milliseconds.
    pub fn late_ms(&self, quantile: f64) -> f64 {
        self.sleeper_late.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Watches the machine from `start` to `finish`.
struct Monitor {
    cpu: Option<Vec<u64>>,
    server: Vec<(u32, (Duration, Duration))>,
    engine: Option<(u32, (Duration, Duration))>,
    stop: Arc<AtomicBool>,
    sleeper: std::thread::JoinHandle<Histogram<u64>>,
}

impl Monitor {
    fn start(pids: &[u32], engine: Option<u32>) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let sleeper = std::thread::spawn(move || {
            let mut late = latency_histogram();
            while !stopped.load(Ordering::Relaxed) {
                let before = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                let over = before.elapsed().saturating_sub(Duration::from_millis(1));
                late.saturating_record(over.as_micros() as u64);
            }
            late
        });
        Monitor {
            cpu: machine_cpu(),
            server: pids
                .iter()
                .filter_map(|&pid| Some((pid, process_cpu(pid)?)))
                .collect(),
            engine: engine.and_then(|pid| Some((pid, process_cpu(pid)?))),
            stop,
            sleeper,
        }
    }

    fn finish(self) -> Conditions {
        self.stop.store(true, Ordering::Relaxed);
        let sleeper_late = self.sleeper.join().unwrap_or_else(|_| latency_histogram());
        let (mut steal, mut idle) = (0.0, 0.0);
        if let (Some(before), Some(after)) = (self.cpu, machine_cpu()) {
            let delta: Vec<u64> = after
                .iter()
                .zip(&before)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect();
            let total = delta.iter().sum::<u64>().max(1) as f64;
            // user nice system idle iowait irq softirq steal
            idle = 100.0 * delta.get(3).copied().unwrap_or(0) as f64 / total;
            steal = 100.0 * delta.get(7).copied().unwrap_or(0) as f64 / total;
        }
        let used = |(pid, (user, system)): (u32, (Duration, Duration))| {
            let (user2, system2) = process_cpu(pid)?;
            Some((user2.saturating_sub(user), system2.saturating_sub(system)))
        };
        let server_cpu = (!self.server.is_empty())
            .then(|| {
                self.server
                    .iter()
                    .try_fold((Duration::ZERO, Duration::ZERO), |(u, s), &one| {
                        used(one).map(|(u2, s2)| (u + u2, s + s2))
                    })
            })
            .flatten();
        let engine_cpu = self.engine.and_then(used);
        Conditions {
            steal,
            idle,
            sleeper_late,
            server_cpu,
            engine_cpu,
        }
    }
}

/// The machine's CPU time so far, in ticks: the first eight fields of `/proc/stat`'s `cpu`.
fn machine_cpu() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect(),
    )
}

/// A process's CPU time so far (user, system), from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line, counted from the state (field 3) here.
    let tick = |i: usize| -> Option<Duration> {
        let ticks: u64 = fields.get(i)?.parse().ok()?;
        Some(Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks()))
    };
    Some((tick(11)?, tick(12)?))
}

/// Clock ticks per second, the unit of `/proc`'s CPU times.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Per receiver: which messages of each sender it has had.
struct Seen {
    /// One bit per (sender, message).
    bits: Vec<u64>,
    /// Highest message number seen per sender, plus one.
    high: Vec<u64>,
    messages: u64,
    duplicated: u64,
    reordered: u64,
    delivered: u64,
    latency: Histogram<u64>,
}

impl Seen {
    fn new(senders: usize, messages: u64) -> Seen {
        let bits = (senders as u64 * messages).div_ceil(64) as usize;
        Seen {
            bits: vec![0; bits],
            high: vec![0; senders],
            messages,
            duplicated: 0,
            reordered: 0,
            delivered: 0,
            latency: latency_histogram(),
        }
    }

    /// Records message `k` of sender `s`, sent at `sent` ns; whether it was new.
    fn record(&mut self, s: usize, k: u64, sent: u64) -> bool {
        if s >= self.high.len() || k >= self.messages {
            return false;
        }
        let bit = s as u64 * self.messages + k;
        let (word, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
        if self.bits[word] & mask != 0 {
            self.duplicated += 1;
            return false;
        }
        self.bits[word] |= mask;
        if k + 1 < self.high[s] {
            self.reordered += 1;
        }
        self.high[s] = self.high[s].max(k + 1);
        self.delivered += 1;
        let micros = now_ns().saturating_sub(sent) / 1000;
        let _ = self.latency.record(micros.max(1));
        true
    }
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// What a run's tasks share.
struct Shared {
    /// `delivered[s][r]`: messages of sender `s` receiver `r` has had.
    delivered: Vec<Vec<AtomicU64>>,
    total: AtomicU64,
    /// Receivers that have seen the warm-up message.
    synced: AtomicUsize,
    last_delivery: AtomicU64,
    disconnected: AtomicUsize,
    stop: AtomicBool,
    /// This run's number ([`run_number`]).
    run: u64,
}

/// The text of message `k` of sender `s` in run `run`: `run s k sent_ns`. The run's number
/// keeps apart what an earlier run left in the room's history, which a joining client is
/// replayed.
fn payload(run: u64, s: usize, k: u64) -> String {
    format!("{run} {s} {k} {}", now_ns())
}

/// A number for one run, unlike any other's in this process or another.
fn run_number() -> u64 {
    (u64::from(std::process::id()) << 40) ^ now_ns()
}

/// Parses `run s k sent_ns` (the text after `NAME: ` or the JSON `text`).
fn parse_payload(text: &[u8]) -> Option<(u64, usize, u64, u64)> {
    let mut fields = text.split(|&b| b == b' ');
    let mut number = || -> Option<u64> {
        let field = fields.next()?;
        if field.is_empty() || field.len() > 20 {
            return None;
        }
        field.iter().try_fold(0u64, |n, &b| {
            b.is_ascii_digit()
                .then(|| n.wrapping_mul(10).wrapping_add(u64::from(b - b'0')))
        })
    };
    let (run, s, k, sent) = (number()?, number()?, number()?, number()?);
    Some((run, usize::try_from(s).ok()?, k, sent))
}

/// A joined client's halves, flavour-aware.
enum Client {
    Line(TcpStream),
    Json(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
}

async fn connect(endpoint: Endpoint, wire: Wire, name: &str) -> io::Result<Client> {
    match (wire, endpoint.flavor) {
        (Wire::Json, _) => {
            let (sender, receiver) = load::join(Wire::Json, endpoint.target, name).await?;
            let (load::Sender::Json(tx), load::Receiver::Json(rx)) = (sender, receiver) else {
                unreachable!("a JSON join gives JSON halves");
            };
            let ws = tx.reunite(rx).map_err(io::Error::other)?;
            Ok(Client::Json(Box::new(ws)))
        }
        (Wire::Line, Flavor::Ours) => {
            let (sender, receiver) = load::join(Wire::Line, endpoint.target, name).await?;
            let (load::Sender::Line(wr), load::Receiver::Line { rd, .. }) = (sender, receiver)
            else {
                unreachable!("a line join gives line halves");
            };
            // Whatever the BufReader had read past the welcome is notices; dropping it is
            // fine, since nothing is sent before every client has joined.
            let rd = rd.into_inner();
            Ok(Client::Line(rd.reunite(wr).map_err(io::Error::other)?))
        }
        (Wire::Line, Flavor::Seed | Flavor::Floor) => {
            let mut stream = TcpStream::connect(endpoint.target.tcp).await?;
            stream.set_nodelay(true)?;
            let mut prompt = [0u8; 17];
            stream.read_exact(&mut prompt).await?;
            if &prompt != b"Enter your name: " {
                return Err(io::Error::other("the seed did not prompt for a name"));
            }
            stream.write_all(format!("{name}\n").as_bytes()).await?;
            Ok(Client::Line(stream))
        }
    }
}

/// Joins `count` clients named `PREFIX{i}`, at most `concurrency` at a time; returns them in
/// order and the time it took, or the first error.
async fn join_all(
    endpoints: &[Endpoint],
    wire: Wire,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> io::Result<(Vec<Client>, Duration)> {
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let slots = slots.clone();
        let name = format!("{prefix}{i}");
        // Round robin over the nodes: senders too are spread.
        let endpoint = endpoints[i % endpoints.len()];
        tasks.push(tokio::spawn(async move {
            let _permit = slots.acquire_owned().await.expect("open semaphore");
            connect(endpoint, wire, &name).await
        }));
    }
    let mut clients = Vec::with_capacity(count);
    for task in tasks {
        clients.push(task.await.map_err(io::Error::other)??);
    }
    Ok((clients, started.elapsed()))
}

/// Runs a fan-out workload against `endpoint`. `progress` is called about once a second
/// with deliveries so far and expected.
pub async fn fanout(
    endpoint: Endpoint,
    spec: &Fanout,
    progress: impl FnMut(u64, u64),
) -> io::Result<FanoutReport> {
    fanout_spread(&[endpoint], None, spec, progress).await
}

/// [`fanout`] with clients (senders among them) spread round robin over `endpoints`, the
/// nodes of one room; `engine`, the process they share (`redis-server`), whose CPU time is
/// reported apart.
pub async fn fanout_spread(
    endpoints: &[Endpoint],
    engine: Option<u32>,
    spec: &Fanout,
    mut progress: impl FnMut(u64, u64),
) -> io::Result<FanoutReport> {
    let endpoint = *endpoints
        .first()
        .ok_or_else(|| io::Error::other("no endpoint to run against"))?;
    let deadline = Instant::now() + spec.time_limit;
    let (n, senders, messages) = (spec.clients, spec.senders.min(spec.clients), spec.messages);
    let expected = senders as u64 * messages * (n as u64 - 1);
    // The seed listens with asyncio's default backlog of 100: more connections at once than
    // that overflow its accept queue, and the kernel leaves some half-connected for a minute.
    let concurrency = match endpoint.flavor {
        Flavor::Ours => 256,
        // std's listener (the floor) has a backlog of 128.
        Flavor::Seed | Flavor::Floor => 64,
    };
    let (clients, join_time) = tokio::time::timeout(
        spec.time_limit,
        join_all(endpoints, spec.wire, "b", n, concurrency),
    )
    .await
    .map_err(|_| io::Error::other(format!("{n} clients did not join in time")))??;

    let shared = Arc::new(Shared {
        delivered: (0..senders)
            .map(|_| (0..n).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        total: AtomicU64::new(0),
        synced: AtomicUsize::new(0),
        last_delivery: AtomicU64::new(0),
        disconnected: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        run: run_number(),
    });

    // Split every client; receivers run until stopped or closed.
    let mut writers = Vec::new();
    // Receivers' writing halves are kept: dropping one would end that client's input.
    let mut quiet = Vec::new();
    let mut receivers = Vec::new();
    // Dropped to stop the receivers: each waits on its own oneshot, which costs nothing per
    // read (a timeout per read would put a timer in and out of the wheel every time).
    let mut stop_receivers = Vec::new();
    for (r, client) in clients.into_iter().enumerate() {
        let shared = shared.clone();
        let (writer, receiver) = split(client);
        if r < senders {
            writers.push(writer);
        } else {
            quiet.push(writer);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        stop_receivers.push(stop);
        receivers.push(tokio::spawn(receive(
            r, receiver, stopped, shared, senders, messages,
        )));
    }

    // Warm-up: until everyone has heard sender 0 say "sync" (the seed has no welcome that
    // says a client has joined, so this is how a run knows the room is complete).
    let mut syncs = 0;
    while shared.synced.load(Ordering::Relaxed) < n - 1 {
        if Instant::now() > deadline {
            return Err(io::Error::other("the room never became complete"));
        }
        if syncs % 20 == 0 {
            writers[0]
                .say(&format!("sync {} {syncs}", shared.run))
                .await?;
        }
        syncs += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let pids: Vec<u32> = endpoints.iter().filter_map(|e| e.pid).collect();
    let monitor = Monitor::start(&pids, engine);
    let start = now_ns();
    let mut sending = Vec::new();
    for (s, mut writer) in writers.into_iter().enumerate() {
        let shared = shared.clone();
        let (rate, window) = (spec.rate, spec.window.max(1));
        let phase = if spec.aligned {
            0.0
        } else {
            s as f64 / senders as f64
        };
        sending.push(tokio::spawn(async move {
            let mut tick = rate.map(|r| {
                let period = Duration::from_secs_f64(1.0 / r.max(1e-3));
                let first = tokio::time::Instant::now() + period.mul_f64(phase);
                let mut t = tokio::time::interval_at(first, period);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            for k in 0..messages {
                match &mut tick {
                    Some(tick) => {
                        tick.tick().await;
                    }
                    None => {
                        // Flat out, but never more than `window` ahead of the slowest.
                        while k >= window && !shared.stop.load(Ordering::Relaxed) {
                            let slowest = shared.delivered[s]
                                .iter()
                                .enumerate()
                                .filter(|&(r, _)| r != s)
                                .map(|(_, d)| d.load(Ordering::Relaxed))
                                .min()
                                .unwrap_or(messages);
                            if k < slowest + window {
                                break;
                            }
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                    }
                }
                if shared.stop.load(Ordering::Relaxed)
                    || writer.say(&payload(shared.run, s, k)).await.is_err()
                {
                    break;
                }
            }
            writer
        }));
    }

    let mut last_progress = Instant::now();
    let timed_out = loop {
        let total = shared.total.load(Ordering::Relaxed);
        if total >= expected {
            break false;
        }
        if Instant::now() > deadline {
            break true;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(total, expected);
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let conditions = monitor.finish();
    shared.stop.store(true, Ordering::Relaxed);
    drop(stop_receivers);
    let mut keep = Vec::new();
    for task in sending {
        if let Ok(writer) = task.await {
            keep.push(writer);
        }
    }
    let mut latency = latency_histogram();
    let (mut delivered, mut duplicated, mut reordered) = (0, 0, 0);
    // Receivers notice their stop signal at once and hand over their tallies.
    for task in receivers {
        let seen = task.await.map_err(io::Error::other)?;
        delivered += seen.delivered;
        duplicated += seen.duplicated;
        reordered += seen.reordered;
        latency.add(&seen.latency).expect("same bounds");
    }
    let end = shared.last_delivery.load(Ordering::Relaxed).max(start + 1);
    drop((keep, quiet));
    Ok(FanoutReport {
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicated,
        reordered,
        elapsed: Duration::from_nanos(end - start),
        join_time,
        latency,
        timed_out,
        disconnected: shared.disconnected.load(Ordering::Relaxed),
        conditions,
    })
}

enum Writer {
    Line(tokio::net::tcp::OwnedWriteHalf),
    Json(futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<TcpStream>, Message>),
}

enum Reader {
    Line(tokio::net::tcp::OwnedReadHalf),
    Json(futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<TcpStream>>),
}

fn split(client: Client) -> (Writer, Reader) {
    match client {
        Client::Line(stream) => {
            let (rd, wr) = stream.into_split();
            (Writer::Line(wr), Reader::Line(rd))
        }
        Client::Json(ws) => {
            let (tx, rx) = (*ws).split();
            (Writer::Json(tx), Reader::Json(rx))
        }
    }
}

impl Writer {
    async fn say(&mut self, text: &str) -> io::Result<()> {
        match self {
            Writer::Line(wr) => wr.write_all(format!("{text}\n").as_bytes()).await,
            Writer::Json(tx) => {
                let say = serde_json::json!({"type": "say", "text": text}).to_string();
                tx.send(Message::text(say)).await.map_err(io::Error::other)
            }
        }
    }
}

#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    from: &'a str,
    #[serde(default, borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// Receiver `r`: tallies every payload until `stopped` (its sender dropped) or closed.
async fn receive(
    r: usize,
    reader: Reader,
    mut stopped: oneshot::Receiver<()>,
    shared: Arc<Shared>,
    senders: usize,
    messages: u64,
) -> Seen {
    let mut seen = Seen::new(senders, messages);
    let mut synced = false;
    let me = format!("b{r}");
    let sync = format!("sync {} ", shared.run);
    let mut on_text = |from: &str, text: &[u8], seen: &mut Seen| {
        if from == me {
            return;
        }
        if text.starts_with(sync.as_bytes()) {
            if !std::mem::replace(&mut synced, true) {
                shared.synced.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if let Some((run, s, k, sent)) = parse_payload(text)
            && run == shared.run
            && seen.record(s, k, sent)
        {
            shared.delivered[s][r].fetch_add(1, Ordering::Relaxed);
            shared.total.fetch_add(1, Ordering::Relaxed);
            shared.last_delivery.fetch_max(now_ns(), Ordering::Relaxed);
        }
    };
    match reader {
        Reader::Line(mut rd) => {
            let mut buf = vec![0u8; 64 * 1024];
            let mut filled = 0;
            loop {
                if filled == buf.len() {
                    filled = 0; // a line longer than the buffer: not ours, skip it
                }
                let n = tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    read = rd.read(&mut buf[filled..]) => match read {
                        Ok(0) | Err(_) => {
                            shared.disconnected.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(n) => n,
                    },
                };
                filled += n;
                let mut start = 0;
                while let Some(end) = memchr::memchr(b'\n', &buf[start..filled]) {
                    let line = &buf[start..start + end];
                    if let Some(at) = memchr::memmem::find(line, b": ") {
                        let from = std::str::from_utf8(&line[..at]).unwrap_or("");
                        on_text(from, &line[at + 2..], &mut seen);
                    }
                    start += end + 1;
                }
                buf.copy_within(start..filled, 0);
                filled -= start;
            }
        }
        Reader::Json(mut rx) => loop {
            let frame = tokio::select! {
                biased;
                _ = &mut stopped => break,
                frame = rx.next() => match frame {
                    None | Some(Err(_)) => {
                        shared.disconnected.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Some(Ok(frame)) => frame,
                },
            };
            let Message::Text(text) = frame else { continue };
            if let Ok(event) = serde_json::from_str::<JsonEvent>(&text)
                && event.kind == "message"
            {
                on_text(event.from, event.text.as_bytes(), &mut seen);
            }
        },
    }
    seen
}

// ---------------------------------------------------------------------------------------------
// Idle and join

/// What holding idle connections cost the server.
#[derive(Clone, Debug)]
pub struct IdleReport {
    /// Connections held.
    pub connections: usize,
    /// The server's RSS before, KiB.
    pub rss_before: u64,
    /// The server's RSS with every connection joined and idle, KiB.
    pub rss_after: u64,
    /// Time to join them all.
    pub join_time: Duration,
}

impl IdleReport {
    /// Server memory per connection, KiB.
    pub fn per_connection(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.connections.max(1) as f64
    }
}

/// Joins `count` clients over `wire` (at most `concurrency` joining at once), lets them sit,
/// and reads the server's RSS (process `pid`) before and after; then keeps them connected for
/// `hold` more, so that the idle server can be looked at (a heap profile, `/proc`). With
/// `worst_history`, the history is first filled with its worst case
/// ([`load::fill_worst_history`]), which every client is sent as it joins.
#[allow(clippy::too_many_arguments)]
pub async fn idle(
    endpoint: Endpoint,
    pid: u32,
    wire: Wire,
    count: usize,
    concurrency: usize,
    time_limit: Duration,
    hold: Duration,
    worst_history: bool,
) -> io::Result<IdleReport> {
    if worst_history {
        load::fill_worst_history(endpoint.target).await?;
    }
    let rss_before = load::rss_kib(pid).ok_or_else(|| io::Error::other("no VmRSS"))?;
    // Idle, not stalled: each client reads (and drops) what it is sent from the moment it has
    // joined, as a person's client does, so that the figure is what a connection costs and
    // not the backlog of clients that never read (that is bounded by `--max-queue`).
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(concurrency));
    let (joined_tx, mut joined) = tokio::sync::mpsc::unbounded_channel();
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        let (slots, joined) = (slots.clone(), joined_tx.clone());
        let name = format!("idle{i}");
        clients.push(tokio::spawn(async move {
            let permit = slots.acquire_owned().await.expect("open semaphore");
            let client = connect(endpoint, wire, &name).await;
            drop(permit);
            match client {
                Ok(client) => {
                    let _ = joined.send(Ok(()));
                    drain(client).await;
                }
                Err(err) => {
                    let _ = joined.send(Err(err));
                }
            }
        }));
    }
    drop(joined_tx);
    let all_joined = async {
        for _ in 0..count {
            joined
                .recv()
                .await
                .unwrap_or_else(|| Err(io::Error::other("a client task ended")))?;
        }
        Ok::<_, io::Error>(())
    };
    let joined = match tokio::time::timeout(time_limit, all_joined).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(io::Error::other(format!(
            "{count} clients did not join in time"
        ))),
    };
    let join_time = match joined {
        Ok(time) => time,
        Err(err) => {
            clients.iter().for_each(|c| c.abort());
            return Err(err);
        }
    };
    // Let the server settle (announcements written, buffers returned).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = load::rss_kib(pid).ok_or_else(|| io::Error::other("no VmRSS"))?;
    if !hold.is_zero() {
        eprintln!(
            "chat-bench: server (pid {pid}) RSS {rss_after} KiB with {count} idle connections; \
             holding them for {} s",
            hold.as_secs()
        );
        tokio::time::sleep(hold).await;
    }
    for client in clients {
        client.abort();
    }
    Ok(IdleReport {
        connections: count,
        rss_before,
        rss_after,
        join_time,
    })
}

/// Reads and drops everything `client` is sent, until the server closes it.
async fn drain(client: Client) {
    match client {
        Client::Line(mut stream) => {
            let mut buf = [0u8; 1024];
            while let Ok(1..) = stream.read(&mut buf).await {}
        }
        Client::Json(mut ws) => while let Some(Ok(_)) = ws.next().await {},
    }
}

/// The address of `target`'s listener for `wire`.
pub fn address(target: Target, wire: Wire) -> SocketAddr {
    match wire {
        Wire::Line => target.tcp,
        Wire::Json => target.http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        let text = payload(7, 3, 41);
        let (run, s, k, sent) = parse_payload(text.as_bytes()).unwrap();
        assert_eq!((run, s, k), (7, 3, 41));
        assert!(sent <= now_ns());
        for junk in [
            "",
            "sync 1 2",
            "1 2 3",
            "1 1 x 3",
            "1 99999999999999999999999 1 1",
        ] {
            assert_eq!(parse_payload(junk.as_bytes()), None, "{junk:?}");
        }
    }

    #[test]
    fn seen_counts_duplicates_and_reordering() {
        let mut seen = Seen::new(2, 10);
        assert!(seen.record(0, 0, now_ns()));
        assert!(seen.record(0, 2, now_ns()));
        assert!(seen.record(0, 1, now_ns()), "late but new");
        assert!(!seen.record(0, 2, now_ns()), "duplicate");
        assert!(seen.record(1, 9, now_ns()));
        assert!(!seen.record(2, 0, now_ns()), "no such sender");
        assert!(!seen.record(1, 10, now_ns()), "no such message");
        assert_eq!((seen.delivered, seen.duplicated, seen.reordered), (4, 1, 1));
    }
}
