//! Chaos: while four well-behaved users (two nc-style, two WebSocket) chat, other clients
//! connect and vanish mid-line, reset their connections, stop reading, send garbage and
//! invalid UTF-8 on both listeners, hold half-open connections and flood. The well-behaved
//! users lose nothing, get everything in order, and never wait more than a second for a
//! message; the server neither crashes nor panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_tests::Server;
use chat_tests::load::{self, Incoming, Target, Wire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Messages each well-behaved user says, one every [`PACE`]: a person typing fast, under the
/// flood limit.
const MESSAGES: u64 = 32;
const PACE: Duration = Duration::from_millis(250);
/// The longest a message may take to reach a well-behaved user.
const MAX_LATENCY: Duration = Duration::from_secs(1);
const GOOD: [(Wire, &str); 4] = [
    (Wire::Line, "nc1"),
    (Wire::Line, "nc2"),
    (Wire::Json, "web1"),
    (Wire::Json, "web2"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_users_lose_nothing_and_never_stall_amid_chaos() {
    let mut server = Server::command()
        .args(["--max-queue", "65536"])
        .keep_stderr()
        .start()
        .await;
    let target = Target {
        tcp: server.tcp,
        http: server.http,
    };
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    // The chaos starts first and goes on until the well-behaved users are done.
    let mut chaos = JoinSet::new();
    let counts = Arc::new(Counts::default());
    for kind in Chaos::ALL {
        let (stop, counts) = (stop.clone(), counts.clone());
        chaos.spawn(async move { kind.run(target, &stop, &counts).await });
    }
    let mut silent = Vec::new();
    for i in 0..10 {
        // Joined users who never read a byte, on both wires.
        let wire = if i % 2 == 0 { Wire::Line } else { Wire::Json };
        let joined = load::join(wire, target, &format!("deaf{i}")).await;
        silent.push(joined.expect("a deaf user joins"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut users = JoinSet::new();
    let mut senders = Vec::new();
    for (wire, name) in GOOD {
        let (sender, receiver) = load::join(wire, target, name).await.expect("join");
        senders.push((name, sender));
        users.spawn(listen(name, wire, receiver, epoch));
    }
    let mut talk = JoinSet::new();
    for (name, mut sender) in senders {
        talk.spawn(async move {
            let mut tick = tokio::time::interval(PACE);
            for n in 0..MESSAGES {
                tick.tick().await;
                let sent = epoch.elapsed().as_micros();
                let text = format!("{name} {n} {sent}");
                sender
                    .say(&text)
                    .await
                    .expect("a well-behaved user can always send");
            }
            sender
        });
    }
    let mut keep = Vec::new();
    while let Some(sender) = talk.join_next().await {
        keep.push(sender.expect("talker"));
    }
    let mut worst = Duration::ZERO;
    while let Some(result) = users.join_next().await {
        let (name, latency) = result.expect("listener");
        println!("chaos: {name} got every message in order; slowest {latency:?}");
        worst = worst.max(latency);
    }
    stop.store(true, Ordering::Relaxed);
    while chaos.join_next().await.is_some() {}
    println!("chaos: {}", counts.summary());

    assert!(worst <= MAX_LATENCY, "a message took {worst:?} to arrive");
    assert!(server.is_running(), "the server is still up");
    let log = server.stderr();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(
        counts.total() > 200,
        "the chaos did happen: {}",
        counts.summary()
    );
    drop((keep, silent));
}

/// Reads until it has every message of the other well-behaved users (a WebSocket user also
/// gets its own back), checking each sender's numbers come in order without a gap; returns
/// the slowest delivery.
async fn listen(
    me: &'static str,
    wire: Wire,
    mut receiver: load::Receiver,
    epoch: Instant,
) -> (&'static str, Duration) {
    let senders: Vec<&str> = GOOD
        .iter()
        .map(|&(_, name)| name)
        .filter(|&name| name != me || wire == Wire::Json)
        .collect();
    let mut next = vec![0u64; senders.len()];
    let mut worst = Duration::ZERO;
    let deadline = Duration::from_secs(MESSAGES * PACE.as_secs().max(1) + 30);
    let done = tokio::time::timeout(deadline, async {
        while next.iter().any(|&n| n < MESSAGES) {
            let incoming = receiver
                .next()
                .await
                .expect("read")
                .expect("still connected");
            let Incoming::Message { from, text } = incoming else {
                continue;
            };
            let Some(i) = senders.iter().position(|&s| s == from) else {
                continue; // a chaos client that got a message through
            };
            let mut parts = text.split(' ');
            assert_eq!(parts.next(), Some(from.as_str()), "{me} got {text:?}");
            let n: u64 = parts.next().and_then(|n| n.parse().ok()).expect("number");
            let sent: u128 = parts.next().and_then(|t| t.parse().ok()).expect("time");
            assert_eq!(n, next[i], "{me}: {from}'s messages out of order or lost");
            next[i] += 1;
            let latency = epoch
                .elapsed()
                .saturating_sub(Duration::from_micros(sent as u64));
            worst = worst.max(latency);
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "{me} still waits for messages: {next:?} of {MESSAGES}"
    );
    (me, worst)
}

/// What the chaos clients did.
#[derive(Default)]
struct Counts {
    vanished: AtomicU64,
    reset: AtomicU64,
    garbage: AtomicU64,
    ws_garbage: AtomicU64,
    http_garbage: AtomicU64,
    half_open: AtomicU64,
    flooded: AtomicU64,
}

impl Counts {
    fn total(&self) -> u64 {
        [
            &self.vanished,
            &self.reset,
            &self.garbage,
            &self.ws_garbage,
            &self.http_garbage,
            &self.half_open,
            &self.flooded,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} vanished mid-line, {} reset, {} sent garbage lines, {} broke WebSocket \
             framing, {} sent garbage HTTP, {} held half-open, {} flooded",
            get(&self.vanished),
            get(&self.reset),
            get(&self.garbage),
            get(&self.ws_garbage),
            get(&self.http_garbage),
            get(&self.half_open),
            get(&self.flooded),
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Chaos {
    /// Joins, sends half a line, and goes.
    Vanish,
    /// Joins on either wire and resets the connection (SO_LINGER 0).
    Reset,
    /// Sends random bytes, invalid UTF-8, control characters and long lines, before and after
    /// joining.
    Garbage,
    /// Completes a WebSocket handshake, then sends broken frames.
    WsGarbage,
    /// Sends random bytes and broken requests to the HTTP listener.
    HttpGarbage,
    /// Connects and says nothing, on both listeners, holding the connection.
    HalfOpen,
    /// Joins and sends lines as fast as it can.
    Flood,
}

impl Chaos {
    const ALL: [Chaos; 7] = [
        Chaos::Vanish,
        Chaos::Reset,
        Chaos::Garbage,
        Chaos::WsGarbage,
        Chaos::HttpGarbage,
        Chaos::HalfOpen,
        Chaos::Flood,
    ];

    async fn run(self, target: Target, stop: &AtomicBool, counts: &Counts) {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ self as u64);
        let mut held = Vec::new();
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            // Errors are expected: the server may close on any of these at any point.
            let _ = self.once(target, &mut rng, round, counts, &mut held).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn once(
        self,
        target: Target,
        rng: &mut Rng,
        round: u64,
        counts: &Counts,
        held: &mut Vec<TcpStream>,
    ) -> std::io::Result<()> {
        let name = format!("{self:?}{round}");
        match self {
            Chaos::Vanish => {
                let mut stream = TcpStream::connect(target.tcp).await?;
                stream
                    .write_all(format!("{name}\nhello, half a li").as_bytes())
                    .await?;
                counts.vanished.fetch_add(1, Ordering::Relaxed);
            }
            Chaos::Reset => {
                let wire = if round.is_multiple_of(2) {
                    Wire::Line
                } else {
                    Wire::Json
                };
                let stream = match wire {
                    Wire::Line => {
                        let mut stream = TcpStream::connect(target.tcp).await?;
                        stream.write_all(format!("{name}\nsome").as_bytes()).await?;
                        stream
                    }
                    Wire::Json => {
                        let ws = load::ws_connect(target.http).await?;
                        ws.into_inner()
                    }
                };
                tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
                // A zero linger makes the close a reset; it never blocks, which is what
                // tokio's deprecation warns about.
                #[allow(deprecated)]
                stream.set_linger(Some(Duration::ZERO))?;
                counts.reset.fetch_add(1, Ordering::Relaxed);
            }
            Chaos::Garbage => {
                let mut stream = TcpStream::connect(target.tcp).await?;
                let mut bytes = rng.bytes(2000);
                if round.is_multiple_of(3) {
                    bytes.splice(0..0, format!("{name}\n").into_bytes());
                }
                if round.is_multiple_of(5) {
                    bytes.extend(std::iter::repeat_n(b'x', 200_000));
                    bytes.push(b'\n');
                }
                bytes.extend_from_slice(b"\xff\xfe\x1b[2J\x07\r\n/quit\n");
                stream.write_all(&bytes).await?;
                drain(&mut stream).await;
                counts.garbage.fetch_add(1, Ordering::Relaxed);
            }
            Chaos::WsGarbage => {
                let ws = load::ws_connect(target.http).await?;
                let mut stream = ws.into_inner();
                let frame = match round % 4 {
                    // Text with invalid UTF-8, masked as a client must.
                    0 => masked(0x81, b"\xff\xfe{\"type\":\"say\"}"),
                    // Unmasked, which a client must not send.
                    1 => vec![0x81, 0x02, b'h', b'i'],
                    // A reserved opcode.
                    2 => masked(0x83, b"?"),
                    // Random bytes.
                    _ => rng.bytes(500),
                };
                stream.write_all(&frame).await?;
                drain(&mut stream).await;
                counts.ws_garbage.fetch_add(1, Ordering::Relaxed);
            }
            Chaos::HttpGarbage => {
                let mut stream = TcpStream::connect(target.http).await?;
                let request: Vec<u8> = match round % 3 {
                    0 => rng.bytes(3000),
                    1 => b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n".to_vec(),
                    _ => b"GET /../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
                };
                stream.write_all(&request).await?;
                drain(&mut stream).await;
                counts.http_garbage.fetch_add(1, Ordering::Relaxed);
            }
            Chaos::HalfOpen => {
                if held.len() < 100 {
                    held.push(TcpStream::connect(target.tcp).await?);
                    let mut http = TcpStream::connect(target.http).await?;
                    http.write_all(b"GET / HTTP/1.1\r\nHost").await?;
                    held.push(http);
                    counts.half_open.fetch_add(2, Ordering::Relaxed);
                }
            }
            Chaos::Flood => {
                let (mut sender, _receiver) = load::join(Wire::Line, target, &name).await?;
                for i in 0..300 {
                    sender.say(&format!("flood {i}")).await?;
                }
                counts.flooded.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}

/// Reads what the server answers for a moment, then lets go.
async fn drain(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(50), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// A client-to-server WebSocket frame (masked) with a payload under 126 bytes.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// xorshift64: reproducible garbage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
