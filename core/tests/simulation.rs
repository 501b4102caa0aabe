//! A seeded, deterministic simulation of many users on both wires.
//!
//! Each seed drives the room through thousands of random steps: connections, good, bad and
//! duplicate names, JSON joins that resume from any point (of this epoch or another), public
//! and private messages, commands, quits, drops, lines too long,
//! invalid UTF-8, control characters, and jumps of the fake clock past the idle and name
//! timeouts, with flood control on for some seeds and off for others, and for a third of the
//! seeds an announce limit low enough that joins and leaves come as digests. The simulation keeps its own model of
//! the room and, after every step, compares what every connection received (parsed back from
//! the wire), what was logged and what was closed against what the model says a user must
//! see. Beside that oracle it checks invariants that do not depend on it:
//!
//! - joined names are unique, compared case-insensitively, and match `Room::online`; a name
//!   that looks like one online (a table of look-alikes of the pool's names) is refused;
//! - whenever no digest is pending, the roster every joined user was told (welcome, `/who`,
//!   joins, leaves, digests; on both wires) is the room's: a digest tells each user exactly
//!   what changed since they last saw it;
//! - every public message (identified by its seq, or on the line wire by its unique text) is
//!   received exactly once, in the room's single order and without gaps, by every user who was
//!   joined when it was sent; a line-wire sender never gets it back, a JSON sender gets it once;
//! - nothing is sent to a connection after its close (checked by the harness);
//! - `poll_timeout` is after the current time, and no later than the earliest idle or name
//!   deadline or the digest's;
//! - the room never holds more than `max_users` connections;
//! - nobody ever receives a forbidden control character, bidirectional control or invisible
//!   format character, nor does the log.
//!
//! `SIM_SEED=n` replays one seed, `SIM_SEEDS=n` runs seeds `0..n`, `SIM_STEPS=n` changes the
//! number of steps per seed. A failure prints the seed, the last steps and the replay command.

mod harness;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chat_core::command::COMMANDS;
use chat_core::{
    ChatMessage, CloseReason, Config, ConnId, ErrorCode, Event, FloodConfig, LeaveReason,
    LogRecord, Request, Resume, Roster, Timestamp, Wire, validate_name,
};
use harness::{Harness, is_forbidden_control, is_forbidden_invisible};
use unicode_normalization::UnicodeNormalization;

const DEFAULT_SEEDS: u64 = 50;
const DEFAULT_STEPS: usize = 3000;
/// Steps remembered for the failure report.
const TRACE: usize = 40;

const PROMPT: &str = "Enter your name: ";
const HELP_HINT: &str = "Type /help for the list of commands.";

#[test]
fn random_sessions_keep_every_invariant() {
    let seeds: Vec<u64> = match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let steps = env_u64("SIM_STEPS").map_or(DEFAULT_STEPS, |n| n as usize);
    let started = Instant::now();
    // Seeds are independent: run them on every core. Each run stays deterministic.
    let next = AtomicUsize::new(0);
    let totals = Mutex::new(Totals::default());
    let failures = Mutex::new(Vec::new());
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    // A failing seed's panic becomes part of its report (below), with where it happened;
    // the default hook would print it bare, once per failing seed, before the report.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| l.to_string());
        PANICKED_AT.with(|p| *p.borrow_mut() = at);
    }));
    thread::scope(|scope| {
        for _ in 0..threads.min(seeds.len()) {
            scope.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match run_seed(seed, steps) {
                        Ok(t) => totals.lock().unwrap().add(&t),
                        Err(report) => failures.lock().unwrap().push((seed, report)),
                    }
                }
            });
        }
    });
    panic::set_hook(default_hook);
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    if let Some((_, report)) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|(seed, _)| *seed).collect();
        panic!("{report}\n(failing seeds: {seeds:?})");
    }
    let totals = totals.into_inner().unwrap();
    // `cargo test -- --nocapture` shows that the runs did exercise the room.
    println!("{totals:?} in {:?}", started.elapsed());
    if steps >= 1000 && env_u64("SIM_SEED").is_none() {
        assert!(
            totals.messages > 0
                && totals.joins > 0
                && totals.idle_closes > 0
                && totals.name_closes > 0
                && totals.digests > 0,
            "the simulation no longer exercises the room: {totals:?}"
        );
    }
}

thread_local! {
    /// Where the last panic on this thread happened, for the failure report.
    static PANICKED_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// One seed's run; on failure, the report: the seed, what broke, the last steps, and how to
/// replay it.
fn run_seed(seed: u64, steps: usize) -> Result<Totals, String> {
    let mut trace = VecDeque::new();
    let run = panic::catch_unwind(AssertUnwindSafe(|| Sim::new(seed, &mut trace).run(steps)));
    run.map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        let at = PANICKED_AT
            .with(|p| p.borrow_mut().take())
            .unwrap_or_default();
        let trace: Vec<String> = trace.into_iter().collect();
        format!(
            "simulation failed with seed {seed}: {message}\n(at {at})\n\nlast steps:\n  {}\n\n\
             replay: SIM_SEED={seed} cargo test -p chat-core --test simulation",
            trace.join("\n  ")
        )
    })
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// What the runs did, to show they did something.
#[derive(Debug, Default)]
struct Totals {
    steps: usize,
    joins: usize,
    messages: usize,
    deliveries: usize,
    flood_drops: usize,
    idle_closes: usize,
    name_closes: usize,
    digests: usize,
    full: usize,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.steps += o.steps;
        self.joins += o.joins;
        self.messages += o.messages;
        self.deliveries += o.deliveries;
        self.flood_drops += o.flood_drops;
        self.idle_closes += o.idle_closes;
        self.name_closes += o.name_closes;
        self.digests += o.digests;
        self.full += o.full;
    }
}

// ---------------------------------------------------------------------------------------------
// The random source: splitmix64, so a seed means the same run everywhere.

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// What a step must produce, and what it did.

/// Everything observable about one step: per connection, the events it received (errors
/// reduced to what the simulation can predict); the log records; the closes the room asked for.
#[derive(Clone, Debug, Default, PartialEq)]
struct Observed {
    events: BTreeMap<ConnId, Vec<Event>>,
    logs: Vec<LogRecord>,
    closes: BTreeMap<ConnId, CloseReason>,
}

impl Observed {
    fn to(&mut self, conn: ConnId, event: Event) {
        self.events.entry(conn).or_default().push(normalize(event));
    }

    fn only(conn: ConnId, events: impl IntoIterator<Item = Event>) -> Observed {
        let mut o = Observed::default();
        for e in events {
            o.to(conn, e);
        }
        o
    }
}

/// Error messages the simulation predicts word for word are kept; the others (serde's
/// wording, the exact sentences tested in `transcripts.rs`) are compared by code only.
fn normalize(event: Event) -> Event {
    match event {
        Event::Error { code, message } => {
            let keep = matches!(
                code,
                ErrorCode::NoSuchUser
                    | ErrorCode::NameTaken
                    | ErrorCode::NameConfusable
                    | ErrorCode::NameInvalid
            );
            Event::Error {
                code,
                message: if keep { message } else { String::new() },
            }
        }
        other => other,
    }
}

fn error(code: ErrorCode) -> Event {
    Event::error(code, "")
}

/// The model's change once a step's outcome is known.
enum Effect {
    None,
    /// Joined as this name; the digest is due then.
    Join(String, Option<Timestamp>),
    Say,
    /// Gone; the digest is due then.
    Gone(Option<Timestamp>),
}

/// What a line or JSON message means, as the simulation intends it.
#[derive(Clone, Debug)]
enum Ask {
    /// A name, and for a JSON join perhaps a resume point.
    Name(String, Option<Resume>),
    Say(String),
    Msg {
        to: String,
        text: String,
    },
    Who,
    Help,
    Unknown,
    BadJson,
    NotJoined,
    AlreadyJoined,
    Quit,
    TooLong,
}

// ---------------------------------------------------------------------------------------------
// The model.

struct Peer {
    wire: Wire,
    name: Option<String>,
    /// When it connected: the name timeout counts from here.
    opened: Timestamp,
    /// The roster as this user was told it (welcome, `/who`, joins, leaves, digests), kept
    /// as a client keeps it.
    roster: Roster,
    /// The last complete line or message; the idle deadline counts from here.
    last_active: Timestamp,
    /// The last line charged to flood control; `None` before the first.
    last_line: Option<Timestamp>,
    /// Told to slow down, and no line accepted since; `None` when the model cannot tell.
    throttled: Option<bool>,
    /// A line was refused at this instant: until time moves, every line is refused.
    dropped_at: Option<Timestamp>,
    /// Lines flood control surely let through at one instant, and how many.
    passed_at: (Timestamp, u32),
    /// Index in `Sim::messages` of the next public message this peer must receive.
    cursor: usize,
}

/// A public message as the log reported it, with its sender.
struct Sent {
    message: ChatMessage,
    sender: ConnId,
    sender_wire: Wire,
}

struct Sim<'t> {
    rng: Rng,
    h: Harness,
    config: Config,
    peers: BTreeMap<ConnId, Peer>,
    /// A connection being opened, not yet in `peers`.
    at_door: Option<(ConnId, Wire)>,
    messages: Vec<Sent>,
    by_text: HashMap<String, usize>,
    /// When the digest of joins and leaves being gathered goes out.
    presence_due: Option<Timestamp>,
    unique: u64,
    step: usize,
    trace: &'t mut VecDeque<String>,
    totals: Totals,
}

/// The epoch the simulated room numbers its messages in.
const EPOCH: u64 = 42;

impl<'t> Sim<'t> {
    fn new(seed: u64, trace: &'t mut VecDeque<String>) -> Self {
        let mut rng = Rng(seed);
        let flood = match seed % 4 {
            0 | 2 => Some(FloodConfig {
                burst: rng.range(1, 6) as u32,
                interval: Duration::from_millis(rng.range(50, 800)),
            }),
            1 => Some(FloodConfig::default()),
            _ => None,
        };
        let config = Config {
            max_users: rng.range(2, 10) as usize,
            idle_timeout: if seed % 10 == 9 {
                None
            } else {
                Some(Duration::from_secs(rng.range(20, 120)))
            },
            max_line: rng.range(64, 160) as usize,
            history: rng.range(0, 6) as usize,
            flood,
            epoch: EPOCH,
            name_timeout: if seed % 5 == 3 {
                None
            } else {
                Some(Duration::from_secs(rng.range(10, 150)))
            },
            announce_limit: if seed.is_multiple_of(3) {
                rng.range(0, 6) as usize
            } else {
                Config::default().announce_limit
            },
            announce_interval: Duration::from_millis(rng.range(1, 30_000)),
            // The simulated connections have no peer address, which no per-address limit
            // counts (`core/tests/transcripts.rs` covers joins per address).
            joins_per_minute: None,
            limit_loopback: false,
            ..Config::default()
        };
        trace.push_back(format!("seed {seed}: {config:?}"));
        Sim {
            rng,
            h: Harness::new(config.clone()),
            config,
            peers: BTreeMap::new(),
            at_door: None,
            messages: Vec::new(),
            by_text: HashMap::new(),
            presence_due: None,
            unique: 0,
            step: 0,
            trace,
            totals: Totals::default(),
        }
    }

    fn run(mut self, steps: usize) -> Totals {
        for step in 1..=steps {
            self.step = step;
            self.random_step();
            self.check_invariants();
        }
        self.shutdown();
        self.totals.steps = steps;
        self.totals
    }

    fn note(&mut self, what: String) {
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        let line = format!("#{} t={:?}: {what}", self.step, self.h.now().as_duration());
        self.trace.push_back(line);
    }

    fn fresh(&mut self) -> u64 {
        self.unique += 1;
        self.unique
    }

    fn now(&self) -> Timestamp {
        self.h.now()
    }

    fn joined(&self) -> Vec<ConnId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.name.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    fn prompting(&self) -> Vec<ConnId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.name.is_none())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Joined names, sorted as the room sorts them (case-insensitively).
    fn online(&self) -> Vec<String> {
        let mut names: Vec<String> = self.peers.values().filter_map(|p| p.name.clone()).collect();
        names.sort_by_cached_key(|n| n.to_lowercase());
        names
    }

    /// Who online has a name that looks like `name` (and is not it, whatever the case).
    fn look_owner(&self, name: &str) -> Option<ConnId> {
        let class = look_class(name);
        self.peers
            .iter()
            .find(|(_, p)| p.name.as_ref().is_some_and(|n| look_class(n) == class))
            .map(|(&id, _)| id)
    }

    fn name_owner(&self, name: &str) -> Option<ConnId> {
        let key = name.to_lowercase();
        self.peers
            .iter()
            .find(|(_, p)| p.name.as_ref().is_some_and(|n| n.to_lowercase() == key))
            .map(|(&id, _)| id)
    }

    // -----------------------------------------------------------------------------------------
    // Choosing a step.

    fn random_step(&mut self) {
        let joined = self.joined();
        let prompting = self.prompting();
        let open: Vec<ConnId> = self.peers.keys().copied().collect();
        let roll = self.rng.below(100);
        match roll {
            0..=7 => self.connect(),
            8..=17 if !prompting.is_empty() => {
                let actor = self.rng.pick(&prompting);
                self.name_attempt(actor);
            }
            18..=44 if !joined.is_empty() => {
                let actor = self.rng.pick(&joined);
                let burst = if self.rng.chance(15) {
                    self.rng.range(2, 12)
                } else {
                    1
                };
                for _ in 0..burst {
                    if self.peers.contains_key(&actor) {
                        self.say(actor);
                    }
                }
            }
            45..=51 if !joined.is_empty() => {
                let actor = self.rng.pick(&joined);
                self.private(actor);
            }
            52..=57 if !open.is_empty() => {
                let actor = self.rng.pick(&open);
                self.odd_request(actor);
            }
            58..=60 if !open.is_empty() => {
                let actor = self.rng.pick(&open);
                self.too_long(actor);
            }
            61..=63 if !open.is_empty() => {
                let actor = self.rng.pick(&open);
                self.quit(actor);
            }
            64..=66 if !open.is_empty() => {
                let actor = self.rng.pick(&open);
                self.disconnect(actor);
            }
            67..=98 => {
                let ms = if self.rng.chance(50) {
                    self.rng.range(0, 300)
                } else {
                    self.rng.range(0, 3000)
                };
                self.advance(Duration::from_millis(ms));
            }
            99 => {
                let by = match self.config.idle_timeout {
                    Some(t) => match self.rng.below(4) {
                        0 => t.saturating_sub(Duration::from_secs(1)),
                        1 => t,
                        2 => t + Duration::from_millis(self.rng.range(0, 30_000)),
                        _ => t * self.rng.range(2, 5) as u32,
                    },
                    None => Duration::from_secs(self.rng.range(1, 100_000)),
                };
                self.advance(by);
            }
            // The step drawn has nobody to act: let someone in instead.
            _ if !prompting.is_empty() => {
                let actor = self.rng.pick(&prompting);
                self.name_attempt(actor);
            }
            _ if self.peers.len() < self.config.max_users => self.connect(),
            _ => {
                let ms = self.rng.range(0, 300);
                self.advance(Duration::from_millis(ms));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Steps.

    fn connect(&mut self) {
        let wire = if self.rng.chance(50) {
            Wire::Line
        } else {
            Wire::Json
        };
        let mut involved: Vec<ConnId> = self.peers.keys().copied().collect();
        let full = self.peers.len() >= self.config.max_users;
        let conn = self.h.connect(wire);
        involved.push(conn);
        self.at_door = Some((conn, wire));
        self.note(format!("connect {conn:?} over {wire:?}"));
        let expected = if full {
            let mut o = Observed::only(conn, [Event::Full]);
            o.closes.insert(conn, CloseReason::Full);
            o
        } else {
            Observed::only(conn, [Event::Prompt])
        };
        let observed = self.observe(&involved);
        self.at_door = None;
        self.expect_one_of(|| "connect".into(), &observed, &[expected]);
        if full {
            self.totals.full += 1;
        } else {
            self.peers.insert(
                conn,
                Peer {
                    wire,
                    name: None,
                    opened: self.now(),
                    roster: Roster::new(),
                    last_active: self.now(),
                    last_line: None,
                    throttled: Some(false),
                    dropped_at: None,
                    passed_at: (Timestamp::ZERO, 0),
                    cursor: self.messages.len(),
                },
            );
        }
    }

    fn name_attempt(&mut self, actor: ConnId) {
        const POOL: &[&str] = &[
            "ann",
            "bob",
            "cy",
            "dee",
            "eve",
            "fay",
            "gus",
            "hal",
            "ivy",
            "jo",
            "kai",
            "lu",
            "zoë",
            "José",
            "Jose\u{301}",
            "o.k",
            "x_y-z",
        ];
        const BAD: &[&str] = &[
            "",
            "   ",
            "bad name",
            "semi;colon",
            "/who",
            "ann!",
            "\x1b[31mann",
            "\u{fffd}",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // 33
        ];
        let wire = self.peers[&actor].wire;
        let name: Vec<u8> = match self.rng.below(10) {
            0..=4 => {
                let name = self.rng.pick(POOL);
                self.random_case(name).into_bytes()
            }
            5 => match self.online().first() {
                Some(taken) => self.random_case(&taken.clone()).into_bytes(),
                None => b"ann".to_vec(),
            },
            6 => {
                let name = self.rng.pick(POOL);
                let name = self.random_case(name);
                let (pre, post) = (
                    self.rng.pick(&[" ", "\t", "\x07"]),
                    self.rng.pick(&[" ", "\x1b", ""]),
                );
                format!("{pre}{name}{post}").into_bytes()
            }
            7 if wire == Wire::Line && self.rng.chance(50) => b"b\xffb".to_vec(),
            7 => {
                let (alike, _) = self.rng.pick(LOOKALIKES);
                self.random_case(alike).into_bytes()
            }
            _ => self.rng.pick(BAD).as_bytes().to_vec(),
        };
        let decoded = String::from_utf8_lossy(&name).into_owned();
        self.note(format!("{actor:?} tries the name {decoded:?}"));
        match wire {
            Wire::Line => self.send(actor, &name, Ask::Name(decoded, None)),
            Wire::Json => {
                // Some joins resume, as a reconnecting browser does: from this run's numbering
                // or (rarely) another, at any point up to one past the last message.
                let resume = self.rng.chance(40).then(|| Resume {
                    epoch: if self.rng.chance(85) {
                        EPOCH
                    } else {
                        EPOCH + 1
                    },
                    seq: self.rng.below(self.messages.len() + 2) as u64,
                });
                let request = Request::Join {
                    name: decoded.clone(),
                    resume,
                };
                let request = chat_core::codec::json::encode_request(&request);
                self.note(format!("{actor:?} resumes from {resume:?}"));
                self.send(actor, request.as_bytes(), Ask::Name(decoded, resume));
            }
        }
    }

    fn random_case(&mut self, name: &str) -> String {
        name.chars()
            .map(|c| {
                if self.rng.chance(30) {
                    c.to_uppercase().collect::<String>()
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    /// Text with debris a user might send: spaces, control characters, escape sequences,
    /// invalid UTF-8 (line wire only), around and inside a unique token.
    fn messy_text(&mut self, token: &str, wire: Wire) -> Vec<u8> {
        const PRE: &[&str] = &["", "", " ", "  \t", "\x07", "\x1b[1m", "\u{85}", "\x00 "];
        const MID: &[&str] = &[
            "",
            " hello",
            " \x1b[31mred\x1b[0m",
            " caf\u{e9} ✓",
            " \u{9b}c1",
            " tab\there",
            " del\x7f",
            " spaces   inside",
            " \u{202e}desrever\u{202c} \u{2067}rtl\u{2069}",
            " zero\u{200b}width\u{feff} word\u{2060}joiner",
            " line\u{2028}para\u{2029}graph",
            " Jose\u{301} ❤\u{fe0f} 👨\u{200d}👩",
        ];
        const POST: &[&str] = &["", "", " ", "\t ", "\x08", "\x1b"];
        let mut out = Vec::new();
        out.extend_from_slice(self.rng.pick(PRE).as_bytes());
        out.extend_from_slice(token.as_bytes());
        out.extend_from_slice(self.rng.pick(MID).as_bytes());
        if wire == Wire::Line && self.rng.chance(15) {
            out.extend_from_slice(
                self.rng
                    .pick(&[&b" \xff\xfe"[..], b" caf\xc3", b" \xc3\xa9"]),
            );
        }
        out.extend_from_slice(self.rng.pick(POST).as_bytes());
        out
    }

    fn say(&mut self, actor: ConnId) {
        let wire = self.peers[&actor].wire;
        let token = format!("m{}", self.fresh());
        let mut text = self.messy_text(&token, wire);
        if wire == Wire::Line && self.rng.chance(5) {
            // Right at the limit, or one byte over: `\r\n` must not count, one more byte must.
            let limit = self.config.max_line + self.rng.below(2);
            text.resize(limit.max(text.len()), b'x');
        }
        let decoded = String::from_utf8_lossy(&text).into_owned();
        self.note(format!("{actor:?} says {decoded:?}"));
        match wire {
            Wire::Line => self.send(actor, &text, Ask::Say(decoded)),
            Wire::Json => {
                let request = serde_json::json!({"type": "say", "text": decoded}).to_string();
                self.send(actor, request.as_bytes(), Ask::Say(decoded));
            }
        }
    }

    fn private(&mut self, actor: ConnId) {
        let wire = self.peers[&actor].wire;
        let online = self.online();
        let to = match self.rng.below(10) {
            0..=5 => {
                let name = online[self.rng.below(online.len())].clone();
                self.random_case(&name)
            }
            6 => {
                let name = online[self.rng.below(online.len())].clone();
                let at = name.len() / 2;
                let at = (0..=at)
                    .rev()
                    .find(|&i| name.is_char_boundary(i))
                    .unwrap_or(0);
                format!("{}\x07{}", &name[..at], &name[at..])
            }
            _ => format!("nobody{}", self.fresh()),
        };
        let token = format!("p{}", self.fresh());
        let text = String::from_utf8_lossy(&self.messy_text(&token, Wire::Json)).into_owned();
        self.note(format!("{actor:?} whispers {text:?} to {to:?}"));
        let ask = Ask::Msg {
            to: to.clone(),
            text: text.clone(),
        };
        match wire {
            Wire::Line => self.send(actor, format!("/msg {to} {text}").as_bytes(), ask),
            Wire::Json => {
                let request = serde_json::json!({"type": "msg", "to": to, "text": text});
                self.send(actor, request.to_string().as_bytes(), ask);
            }
        }
    }

    /// Commands and requests other than talking: /who, /help, unknown commands, blank lines,
    /// broken JSON, and JSON requests in the wrong state.
    fn odd_request(&mut self, actor: ConnId) {
        let (wire, joined) = {
            let p = &self.peers[&actor];
            (p.wire, p.name.is_some())
        };
        let roll = self.rng.below(6);
        let (bytes, ask): (String, Ask) = match (wire, joined, roll) {
            // At the name prompt a line is a name, whatever it looks like.
            (Wire::Line, false, _) => {
                let line = self.rng.pick(&["", " ", "/who", "/help"]);
                (line.to_owned(), Ask::Name(line.to_owned(), None))
            }
            (Wire::Line, true, 0) => (
                self.rng.pick(&["/who", "/WHO", "/who extra"]).into(),
                Ask::Who,
            ),
            (Wire::Line, true, 1) => ("/help".into(), Ask::Help),
            (Wire::Line, true, 2) => {
                let line =
                    self.rng
                        .pick(&["/dance", "/nick bob", "/", "/da\x1b[2Jnce", "/me waves"]);
                (line.into(), Ask::Unknown)
            }
            (Wire::Line, true, _) => {
                let line = self.rng.pick(&["", "   ", "\t", "\x07\x1b"]);
                (line.into(), Ask::Say(line.into()))
            }
            (Wire::Json, _, 0) => {
                let bad = self.rng.pick(&[
                    "not json",
                    "{",
                    "[]",
                    "null",
                    r#"{"type":"dance"}"#,
                    r#"{"type":"say"}"#,
                    r#"{"type":"\u001b[2J"}"#,
                ]);
                (bad.into(), Ask::BadJson)
            }
            (Wire::Json, false, _) => {
                let request = self.rng.pick(&[
                    r#"{"type":"say","text":"hi"}"#,
                    r#"{"type":"who"}"#,
                    r#"{"type":"help"}"#,
                    r#"{"type":"msg","to":"ann","text":"hi"}"#,
                ]);
                (request.into(), Ask::NotJoined)
            }
            (Wire::Json, true, 1) => (r#"{"type":"who"}"#.into(), Ask::Who),
            (Wire::Json, true, 2) => (r#"{"type":"help"}"#.into(), Ask::Help),
            (Wire::Json, true, 3) => (
                r#"{"type":"join","name":"again"}"#.into(),
                Ask::AlreadyJoined,
            ),
            (Wire::Json, true, _) => {
                let text = self.rng.pick(&["", "  ", "\u{7}\u{1b}"]);
                let request = serde_json::json!({"type": "say", "text": text}).to_string();
                (request, Ask::Say(text.into()))
            }
        };
        self.note(format!("{actor:?} sends {bytes:?}"));
        self.send(actor, bytes.as_bytes(), ask);
    }

    fn too_long(&mut self, actor: ConnId) {
        let wire = self.peers[&actor].wire;
        let extra = self.rng.range(1, 2 * self.config.max_line as u64) as usize;
        let text = format!(
            "L{}{}",
            self.fresh(),
            "x".repeat(self.config.max_line + extra)
        );
        self.note(format!("{actor:?} sends {} bytes", text.len()));
        match wire {
            Wire::Line => self.send(actor, text.as_bytes(), Ask::TooLong),
            Wire::Json => {
                let request = serde_json::json!({"type": "say", "text": text}).to_string();
                self.send(actor, request.as_bytes(), Ask::TooLong);
            }
        }
    }

    fn quit(&mut self, actor: ConnId) {
        let wire = self.peers[&actor].wire;
        self.note(format!("{actor:?} quits"));
        match wire {
            Wire::Line => {
                let line = self.rng.pick(&["/quit", "/QUIT", "/quit now"]);
                self.send(actor, line.as_bytes(), Ask::Quit);
            }
            Wire::Json => self.send(actor, br#"{"type":"quit"}"#, Ask::Quit),
        }
    }

    /// Delivers one line (through the decoder, maybe in pieces) or one JSON message, and checks
    /// the outcome against what `ask` must produce.
    fn send(&mut self, actor: ConnId, bytes: &[u8], ask: Ask) {
        let wire = self.peers[&actor].wire;
        // What the room will make of it: a line over the limit is refused whatever it says.
        let ask = if bytes.len() > self.config.max_line {
            Ask::TooLong
        } else {
            ask
        };
        let (expected, effect) = self.predict(actor, &ask);
        let floodable = !matches!(ask, Ask::Quit);
        let involved: Vec<ConnId> = self.peers.keys().copied().collect();
        match wire {
            Wire::Line => {
                let mut data = bytes.to_vec();
                if self.rng.chance(20) {
                    data.push(b'\r');
                }
                data.push(b'\n');
                if self.rng.chance(25) {
                    let at = self.rng.below(data.len());
                    self.h.raw(actor, &data[..at]);
                    self.h.raw(actor, &data[at..]);
                } else {
                    self.h.raw(actor, &data);
                }
            }
            Wire::Json => {
                let text = std::str::from_utf8(bytes).expect("JSON requests are built as text");
                self.h.json(actor, text);
            }
        }
        let observed = self.observe(&involved);
        let now = self.now();
        // What may happen: the expected outcome, or (flood control on) the line refused.
        let mut allowed = Vec::new();
        let mut must_pass = true;
        let mut must_drop = false;
        let mut refusals = Vec::new();
        if let (true, Some(flood)) = (floodable, self.config.flood) {
            let p = &self.peers[&actor];
            // After `burst` intervals of quiet the bucket is full again: the line must pass.
            let refill = flood.interval.saturating_mul(flood.burst.max(1));
            must_pass = p.last_line.is_none_or(|t| now >= t + refill);
            // No time has passed since a refusal: nothing has refilled.
            must_drop = p.dropped_at == Some(now);
            assert!(!(must_pass && must_drop), "model bug");
            let told = Observed::only(actor, [error(ErrorCode::TooFast)]);
            let silent = Observed::default();
            // The user is told once, until a line gets through again.
            refusals = match p.throttled {
                Some(false) => vec![told],
                Some(true) => vec![silent],
                None => vec![told, silent],
            };
        }
        if !must_drop {
            allowed.push((expected.clone(), true));
        }
        if !must_pass {
            allowed.extend(refusals.into_iter().map(|r| (r, false)));
        }
        let what = || format!("{actor:?} sending {ask:?}");
        let matched = self.expect_one_of(what, &observed, allowed.iter().map(|(o, _)| o));
        let primary = allowed[matched].1;
        let silent_refusal = allowed
            .iter()
            .any(|(o, primary)| !primary && *o == Observed::default());
        // A silent outcome that a silent refusal would also explain tells the model nothing.
        let unknown = primary && expected == Observed::default() && silent_refusal;
        if let Some(p) = self.peers.get_mut(&actor) {
            p.last_active = now;
            if let (true, Some(flood)) = (floodable, self.config.flood) {
                p.last_line = Some(now);
                if primary && !unknown {
                    // Without time passing, nothing refills: at most a burst gets through.
                    p.passed_at = match p.passed_at {
                        (at, n) if at == now => (at, n + 1),
                        _ => (now, 1),
                    };
                    assert!(
                        p.passed_at.1 <= flood.burst.max(1),
                        "{actor:?} got {} lines through at one instant; the burst is {}",
                        p.passed_at.1,
                        flood.burst
                    );
                }
                (p.throttled, p.dropped_at) = if unknown {
                    (None, None)
                } else if primary {
                    (Some(false), None)
                } else {
                    (Some(true), Some(now))
                };
            }
        }
        if !primary {
            self.totals.flood_drops += 1;
        }
        if primary {
            self.apply(actor, effect);
        }
    }

    fn disconnect(&mut self, actor: ConnId) {
        let wire = self.peers[&actor].wire;
        let slow = self.rng.chance(30);
        self.note(format!(
            "{actor:?} {}",
            if slow { "is too slow" } else { "drops" }
        ));
        let involved: Vec<ConnId> = self.peers.keys().copied().collect();
        let mut expected = Observed::default();
        let reason = if slow {
            LeaveReason::TooSlow
        } else {
            LeaveReason::Dropped
        };
        let mut announce = self.announce();
        self.expect_leave(&mut expected, &mut announce, actor, reason);
        match (slow, wire) {
            (true, _) => self.h.too_slow(actor),
            (false, Wire::Line) => self.h.eof(actor),
            (false, Wire::Json) => self.h.drop_conn(actor),
        }
        let observed = self.observe(&involved);
        self.expect_one_of(|| "disconnect".into(), &observed, &[expected]);
        self.peers.remove(&actor);
        self.presence_due = announce.due;
    }

    fn advance(&mut self, by: Duration) {
        self.note(format!("time passes: {by:?}"));
        let involved: Vec<ConnId> = self.peers.keys().copied().collect();
        let target = self.now() + by;
        // Each connection's first deadline, and which: the idle timeout wins a tie.
        let mut expired: Vec<(Timestamp, ConnId, bool)> = self
            .peers
            .iter()
            .filter_map(|(&id, p)| {
                let idle = self.config.idle_timeout.map(|t| p.last_active + t);
                let name = match p.name {
                    None => self.config.name_timeout.map(|t| p.opened + t),
                    Some(_) => None,
                };
                match (idle, name) {
                    (Some(i), Some(n)) if n < i => Some((n, id, false)),
                    (Some(i), _) => Some((i, id, true)),
                    (None, Some(n)) => Some((n, id, false)),
                    (None, None) => None,
                }
            })
            .filter(|&(deadline, _, _)| deadline <= target)
            .collect();
        // Deadlines in time order; at the same instant, in the room's connection order, and
        // before a digest due then.
        expired.sort();
        let mut expected = Observed::default();
        let mut announce = self.announce();
        let mut gone = Vec::new();
        let mut expiries = expired.into_iter().peekable();
        loop {
            let next = expiries.peek().map(|&(at, _, _)| at);
            match (next, announce.due) {
                (Some(at), due) if due.is_none_or(|due| at <= due) => {
                    let (at, conn, idle) = expiries.next().expect("peeked");
                    announce.now = at;
                    if idle {
                        expected.to(conn, Event::IdleTimeout);
                        expected.closes.insert(conn, CloseReason::IdleTimeout);
                        self.expect_leave(
                            &mut expected,
                            &mut announce,
                            conn,
                            LeaveReason::IdleTimeout,
                        );
                    } else {
                        expected.to(conn, Event::NameTimeout);
                        expected.closes.insert(conn, CloseReason::NameTimeout);
                    }
                    gone.push((conn, idle));
                }
                (_, Some(due)) if due <= target => {
                    announce.now = due;
                    announce.flush(&mut expected);
                }
                _ => break,
            }
        }
        self.h.advance(by);
        let observed = self.observe(&involved);
        self.expect_one_of(|| "time passing".into(), &observed, &[expected]);
        for (conn, idle) in gone {
            self.peers.remove(&conn);
            if idle {
                self.totals.idle_closes += 1;
            } else {
                self.totals.name_closes += 1;
            }
        }
        self.presence_due = announce.due;
    }

    fn shutdown(&mut self) {
        self.note("shutdown".into());
        let involved: Vec<ConnId> = self.peers.keys().copied().collect();
        let mut expected = Observed::default();
        for (&conn, p) in &self.peers {
            expected.to(conn, Event::Shutdown);
            expected.closes.insert(conn, CloseReason::Shutdown);
            if let Some(name) = &p.name {
                expected.logs.push(LogRecord::Leave {
                    name: name.clone(),
                    reason: LeaveReason::Shutdown,
                });
            }
        }
        self.h.shutdown();
        let observed = self.observe(&involved);
        self.expect_one_of(|| "shutdown".into(), &observed, &[expected]);
        self.peers.clear();
        self.presence_due = None;
        assert!(self.h.room().is_empty(), "the room is empty after shutdown");
        assert_eq!(
            self.h.room().poll_timeout(),
            None,
            "no deadline after shutdown"
        );
    }

    // -----------------------------------------------------------------------------------------
    // The oracle: what a user must see.

    fn predict(&self, actor: ConnId, ask: &Ask) -> (Observed, Effect) {
        let peer = &self.peers[&actor];
        let me = peer.name.clone();
        let only = |events: Vec<Event>| (Observed::only(actor, events), Effect::None);
        match ask {
            Ask::TooLong if me.is_none() => {
                only(vec![error(ErrorCode::LineTooLong), Event::Prompt])
            }
            Ask::TooLong => only(vec![error(ErrorCode::LineTooLong)]),
            Ask::BadJson => only(vec![error(ErrorCode::BadRequest)]),
            Ask::NotJoined => only(vec![error(ErrorCode::NotJoined)]),
            Ask::AlreadyJoined => only(vec![error(ErrorCode::AlreadyJoined)]),
            Ask::Unknown => only(vec![error(ErrorCode::UnknownCommand)]),
            Ask::Help => only(vec![Event::help()]),
            Ask::Who => only(vec![Event::Who {
                online: self.online(),
                operators: Vec::new(),
            }]),
            Ask::Quit => {
                let mut o = Observed::only(actor, [Event::Goodbye]);
                o.closes.insert(actor, CloseReason::Quit);
                let mut announce = self.announce();
                self.expect_leave(&mut o, &mut announce, actor, LeaveReason::Quit);
                (o, Effect::Gone(announce.due))
            }
            Ask::Name(raw, resume) => {
                assert!(me.is_none(), "model bug: a name from a joined user");
                let name = match validate_name(raw) {
                    Ok(name) => name,
                    Err(e) => {
                        let e = Event::error(ErrorCode::NameInvalid, e.to_string());
                        return only(vec![e, Event::Prompt]);
                    }
                };
                if self.name_owner(&name).is_some() {
                    let message = format!("The name '{name}' is already taken; choose another.");
                    let e = Event::error(ErrorCode::NameTaken, message);
                    return only(vec![e, Event::Prompt]);
                }
                if let Some(owner) = self.look_owner(&name) {
                    let other = self.peers[&owner].name.clone().unwrap_or_default();
                    let message = format!(
                        "The name '{name}' looks too much like '{other}', who is online; \
                         choose another."
                    );
                    let e = Event::error(ErrorCode::NameConfusable, message);
                    return only(vec![e, Event::Prompt]);
                }
                // Above the limit, or while a digest gathers, the join waits for the digest.
                let mut announce = self.announce();
                let mut o = Observed::default();
                let gathered =
                    announce.gathers(announce.joined.len() + 1, self.config.announce_limit);
                let mut online = self.online();
                online.push(name.clone());
                online.sort_by_cached_key(|n| n.to_lowercase());
                o.to(
                    actor,
                    Event::Welcome {
                        name: name.clone(),
                        count: online.len(),
                        online,
                        epoch: EPOCH,
                    },
                );
                let keep = self.config.history.min(self.messages.len());
                let held = &self.messages[self.messages.len() - keep..];
                let next_seq = self.messages.len() as u64 + 1;
                let (from, gap) = match resume {
                    None => (0, false),
                    // Resumable: what came after the point; a gap if some of it is not held.
                    Some(r) if r.epoch == EPOCH && r.seq < next_seq => {
                        let oldest = held.first().map_or(next_seq, |s| s.message.seq);
                        (r.seq, oldest > r.seq + 1)
                    }
                    Some(_) => (0, true),
                };
                let messages: Vec<ChatMessage> = held
                    .iter()
                    .filter(|s| s.message.seq > from)
                    .map(|s| s.message.clone())
                    .collect();
                if !messages.is_empty() || gap {
                    o.to(actor, Event::History { messages, gap });
                }
                if gathered {
                    announce.open();
                } else {
                    for other in self.joined() {
                        o.to(other, Event::Joined { name: name.clone() });
                    }
                }
                o.logs.push(LogRecord::Join {
                    name: name.clone(),
                    peer: None,
                });
                (o, Effect::Join(name, announce.due))
            }
            Ask::Say(raw) => {
                let Some(from) = me else {
                    return only(vec![error(ErrorCode::NotJoined)]);
                };
                let text = clean(raw);
                if text.is_empty() {
                    return only(vec![]);
                }
                let message = ChatMessage {
                    seq: self.messages.len() as u64 + 1,
                    from,
                    text,
                };
                let mut o = Observed::default();
                o.logs.push(LogRecord::Message(message.clone()));
                for other in self.joined() {
                    if other != actor || peer.wire == Wire::Json {
                        o.to(other, Event::Message(message.clone()));
                    }
                }
                (o, Effect::Say)
            }
            Ask::Msg { to, text } => {
                let from = me.expect("model bug: a private message from the name prompt");
                let text = clean(text);
                let to = clean(to);
                assert!(!text.is_empty() && !to.is_empty(), "model bug: usage error");
                let mut o = Observed::default();
                match self.name_owner(&to) {
                    Some(target) => {
                        let target_name = self.peers[&target].name.clone().unwrap_or_default();
                        o.to(
                            target,
                            Event::Private {
                                from,
                                text: text.clone(),
                            },
                        );
                        o.to(
                            actor,
                            Event::PrivateSent {
                                to: target_name,
                                text,
                            },
                        );
                    }
                    None => {
                        let message = format!("No user named '{to}'.");
                        o.to(actor, Event::error(ErrorCode::NoSuchUser, message));
                    }
                }
                (o, Effect::None)
            }
        }
    }

    /// `conn` goes: if it had joined, every other joined user still there hears it (at once,
    /// or in a digest above the announce limit), and the log says why.
    fn expect_leave(
        &self,
        o: &mut Observed,
        announce: &mut Announce,
        conn: ConnId,
        reason: LeaveReason,
    ) {
        let Some(name) = self.peers[&conn].name.clone() else {
            return;
        };
        // Counted before the leave.
        if announce.gathers(announce.joined.len(), self.config.announce_limit) {
            announce.joined.remove(&conn);
            announce.open();
        } else {
            announce.joined.remove(&conn);
            for (&other, (_, roster)) in &mut announce.joined {
                o.to(other, Event::Left { name: name.clone() });
                roster.retain(|n| n != &name);
            }
        }
        o.logs.push(LogRecord::Leave { name, reason });
    }

    /// The model's side of the digest, to predict one step.
    fn announce(&self) -> Announce {
        Announce {
            joined: self
                .peers
                .iter()
                .filter_map(|(&id, p)| Some((id, (p.name.clone()?, p.roster.names().to_vec()))))
                .collect(),
            due: self.presence_due,
            now: self.now(),
            interval: self.config.announce_interval,
        }
    }

    fn apply(&mut self, actor: ConnId, effect: Effect) {
        match effect {
            Effect::None | Effect::Say => {}
            Effect::Join(name, due) => {
                self.presence_due = due;
                let chars = name.chars().count();
                assert!(
                    (1..=32).contains(&chars)
                        && name
                            .chars()
                            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')),
                    "the room accepted the name {name:?}"
                );
                let cursor = self.messages.len();
                let p = self.peers.get_mut(&actor).expect("joined peer is open");
                p.name = Some(name);
                p.cursor = cursor;
                self.totals.joins += 1;
            }
            Effect::Gone(due) => {
                self.peers.remove(&actor);
                self.presence_due = due;
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Observing a step.

    /// Collects what the step produced for `involved` (the connections open before it, plus
    /// one it opened), parsing each wire back into events, and runs the delivery ledger.
    fn observe(&mut self, involved: &[ConnId]) -> Observed {
        let mut observed = Observed {
            logs: self.h.log(),
            ..Observed::default()
        };
        for record in observed.logs.clone() {
            if let LogRecord::Message(m) = record {
                self.register(m);
            }
        }
        for &conn in involved {
            let wire = match self.peers.get(&conn) {
                Some(p) => p.wire,
                None => match self.at_door {
                    Some((door, wire)) if door == conn => wire,
                    _ => panic!("test bug: {conn:?} is not in the model"),
                },
            };
            // The harness has checked that nobody received a control character.
            let events = match wire {
                Wire::Line => {
                    let items = self.h.take(conn);
                    self.parse_line_wire(conn, &items)
                }
                Wire::Json => {
                    let events = self.h.take_events(conn);
                    self.check_history(&events);
                    events
                }
            };
            for e in &events {
                if let Event::Message(m) = e {
                    self.ledger_receive(conn, m);
                }
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.roster.apply(e);
                }
                if matches!(e, Event::Presence { .. }) {
                    self.totals.digests += 1;
                }
            }
            for e in events {
                observed.to(conn, e);
            }
            // Everyone involved was open before the step (or is opened by it): a close is new.
            if let Some(reason) = self.h.close_reason(conn) {
                observed.closes.insert(conn, reason);
            }
        }
        // Every joined user has every public message sent so far, except (on the line wire)
        // its own.
        for (&conn, p) in self.peers.iter_mut() {
            if p.name.is_some() {
                skip_own(&self.messages, conn, &mut p.cursor);
                if p.cursor != self.messages.len() {
                    let missing = &self.messages[p.cursor].message;
                    panic!("{conn:?} ({:?}) never received {missing:?}", p.name);
                }
            }
        }
        observed
    }

    /// A public message appeared in the log.
    fn register(&mut self, message: ChatMessage) {
        assert_eq!(
            message.seq,
            self.messages.len() as u64 + 1,
            "sequence numbers go up by one per public message: {message:?}"
        );
        let sender = self
            .peers
            .iter()
            .find(|(_, p)| p.name.as_deref() == Some(message.from.as_str()))
            .map(|(&id, p)| (id, p.wire))
            .unwrap_or_else(|| panic!("{message:?} is from nobody online"));
        let previous = self
            .by_text
            .insert(message.text.clone(), self.messages.len());
        assert!(previous.is_none(), "test bug: message texts must be unique");
        self.messages.push(Sent {
            message,
            sender: sender.0,
            sender_wire: sender.1,
        });
        self.totals.messages += 1;
    }

    /// `conn` received a live public message: it must be the next one it is owed.
    fn ledger_receive(&mut self, conn: ConnId, m: &ChatMessage) {
        let Some(p) = self.peers.get_mut(&conn) else {
            panic!("{conn:?}, not in the room, received {m:?}");
        };
        assert!(p.name.is_some(), "{conn:?} received {m:?} before joining");
        skip_own(&self.messages, conn, &mut p.cursor);
        let owed = self.messages.get(p.cursor).map(|s| &s.message);
        assert_eq!(
            owed,
            Some(m),
            "{conn:?} ({:?}) received seq {} but was owed {:?}: a duplicate, a gap, an echo \
             or a reordering",
            p.name,
            m.seq,
            owed.map(|m| m.seq)
        );
        p.cursor += 1;
        self.totals.deliveries += 1;
    }

    fn check_history(&self, events: &[Event]) {
        for event in events {
            if let Event::History { messages, .. } = event {
                for m in messages {
                    self.known(m);
                }
            }
        }
    }

    /// Reads the line wire back into events: the inverse of the line codec, for the texts
    /// `docs/protocol.md` fixes. A line it cannot place is a failure.
    fn parse_line_wire(&self, conn: ConnId, items: &[String]) -> Vec<Event> {
        let mut out = Vec::new();
        let mut lines = items.iter().map(String::as_str);
        while let Some(l) = lines.next() {
            let event = match l {
                PROMPT => Event::Prompt,
                "Server is full, please try again later." => Event::Full,
                "Goodbye!" => Event::Goodbye,
                "Disconnected: idle timeout." => Event::IdleTimeout,
                "Disconnected: no name given in time." => Event::NameTimeout,
                "*** Server is shutting down ***" => Event::Shutdown,
                "Commands:" => {
                    for (usage, description) in COMMANDS {
                        let expected = format!("  {usage:<16} {description}");
                        assert_eq!(lines.next(), Some(expected.as_str()), "/help for {conn:?}");
                    }
                    Event::help()
                }
                _ => {
                    if let Some(rest) = l.strip_prefix("Welcome, ") {
                        let (name, rest) = rest.split_once("! Online (").expect(l);
                        let (count, list) = rest.split_once("): ").expect(l);
                        let list = list.split_once(" and ").map_or(list, |(names, _)| names);
                        assert_eq!(lines.next(), Some(HELP_HINT), "welcome for {conn:?}");
                        Event::Welcome {
                            name: name.into(),
                            count: count.parse().expect(l),
                            online: list.split(", ").map(String::from).collect(),
                            epoch: EPOCH,
                        }
                    } else if let Some(rest) = l.strip_prefix("--- Recent messages (") {
                        let n: usize = rest.strip_suffix(") ---").expect(l).parse().expect(l);
                        let messages = (0..n)
                            .map(|_| self.resolve(conn, lines.next().expect("history entry")))
                            .collect();
                        assert_eq!(lines.next(), Some("--- End of recent messages ---"));
                        Event::History {
                            messages,
                            gap: false,
                        }
                    } else if let Some(name) = between(l, "*** ", " has joined the chat ***") {
                        Event::Joined { name: name.into() }
                    } else if let Some(name) = between(l, "*** ", " has left the chat ***") {
                        Event::Left { name: name.into() }
                    } else if let Some(body) = between(l, "*** ", " online) ***") {
                        parse_digest(body).unwrap_or_else(|| panic!("not a digest: {l:?}"))
                    } else if let Some(rest) = l.strip_prefix("[private to ") {
                        let (to, text) = rest.split_once("] ").expect(l);
                        Event::PrivateSent {
                            to: to.into(),
                            text: text.into(),
                        }
                    } else if let Some(rest) = l.strip_prefix("[private] ") {
                        let (from, text) = rest.split_once(": ").expect(l);
                        Event::Private {
                            from: from.into(),
                            text: text.into(),
                        }
                    } else if let Some(rest) = l.strip_prefix("Online (") {
                        let (n, list) = rest.split_once("): ").expect(l);
                        let online: Vec<String> = list.split(", ").map(String::from).collect();
                        assert_eq!(n.parse::<usize>().ok(), Some(online.len()), "{l}");
                        Event::Who {
                            online,
                            operators: Vec::new(),
                        }
                    } else if let Some(code) = line_error_code(l) {
                        Event::error(code, l)
                    } else {
                        Event::Message(self.resolve(conn, l))
                    }
                }
            };
            out.push(event);
        }
        out
    }

    /// A `NAME: TEXT` line: which public message it is.
    fn resolve(&self, conn: ConnId, line: &str) -> ChatMessage {
        let found = line
            .split_once(": ")
            .and_then(|(from, text)| Some((from, self.by_text.get(text)?)));
        let Some((from, &index)) = found else {
            panic!("{conn:?} received a line that is no public message: {line:?}");
        };
        let message = &self.messages[index].message;
        assert_eq!(from, message.from, "wrong sender on {line:?}");
        message.clone()
    }

    fn known(&self, m: &ChatMessage) {
        let index = m.seq.checked_sub(1).map(|i| i as usize);
        let sent = index.and_then(|i| self.messages.get(i)).map(|s| &s.message);
        assert_eq!(
            sent,
            Some(m),
            "history replays a message that was never sent"
        );
    }

    fn expect_one_of<'a>(
        &self,
        what: impl FnOnce() -> String,
        observed: &Observed,
        allowed: impl IntoIterator<Item = &'a Observed>,
    ) -> usize {
        let allowed: Vec<&Observed> = allowed.into_iter().collect();
        if let Some(i) = allowed.iter().position(|&a| a == observed) {
            return i;
        }
        let mut report = format!("{}: unexpected outcome\n  observed: {observed:?}\n", what());
        for (i, a) in allowed.iter().enumerate() {
            report.push_str(&format!("  allowed #{i}: {a:?}\n"));
        }
        panic!("{report}");
    }

    // -----------------------------------------------------------------------------------------
    // Invariants after every step.

    fn check_invariants(&self) {
        let room = self.h.room();
        let online = room.online();
        let mut keys: Vec<String> = online.iter().map(|n| n.to_lowercase()).collect();
        keys.dedup();
        assert_eq!(
            keys.len(),
            online.len(),
            "two users share a name: {online:?}"
        );
        assert_eq!(
            online,
            self.online(),
            "the room and the model disagree on who is online"
        );
        assert!(
            room.len() <= self.config.max_users,
            "{} connections, max_users is {}",
            room.len(),
            self.config.max_users
        );
        assert_eq!(
            room.len(),
            self.peers.len(),
            "the room and the model disagree on connections"
        );
        let now = self.now();
        let deadlines = self.peers.values().flat_map(|p| {
            let idle = self.config.idle_timeout.map(|t| p.last_active + t);
            let name = match p.name {
                None => self.config.name_timeout.map(|t| p.opened + t),
                Some(_) => None,
            };
            [idle, name]
        });
        let earliest = deadlines.chain([self.presence_due]).flatten().min();
        assert_eq!(room.presence_due(), self.presence_due, "the digest's time");
        match earliest {
            Some(earliest) => {
                assert!(earliest > now, "someone idle is still connected");
                let wake = room.poll_timeout().expect("a deadline while one is due");
                assert!(wake > now, "poll_timeout {wake:?} is not after {now:?}");
                assert!(
                    wake <= earliest,
                    "poll_timeout {wake:?} sleeps past a deadline {earliest:?}"
                );
            }
            None => assert_eq!(room.poll_timeout(), None, "nothing due, no deadline"),
        }
        if self.presence_due.is_none() {
            for (conn, p) in &self.peers {
                if p.name.is_some() {
                    assert_eq!(
                        p.roster.names(),
                        online,
                        "{conn:?} was told a roster that is not the room's"
                    );
                }
            }
        }
    }
}

/// The digest as the model predicts it within one step: who is joined with the roster each
/// was told, and when the digest is due.
struct Announce {
    joined: BTreeMap<ConnId, (String, Vec<String>)>,
    due: Option<Timestamp>,
    now: Timestamp,
    interval: Duration,
}

impl Announce {
    /// A join or leave was gathered: the window opens if it was not.
    fn open(&mut self) {
        let interval = self.interval.max(Duration::from_millis(1));
        self.due.get_or_insert(self.now + interval);
    }

    /// Whether a change, with the room counted at `count`, is gathered: above `limit`, or
    /// while a digest is gathering (it takes every change until it goes out).
    fn gathers(&self, count: usize, limit: usize) -> bool {
        count > limit || self.due.is_some()
    }

    /// The pending digest goes out: each joined user is told the difference between the roster it was told and the room's.
    fn flush(&mut self, o: &mut Observed) {
        if self.due.take().is_none() {
            return;
        }
        let mut online: Vec<String> = self.joined.values().map(|(n, _)| n.clone()).collect();
        online.sort_by_cached_key(|n| n.to_lowercase());
        for (&conn, (_, roster)) in &mut self.joined {
            let joined: Vec<String> = online
                .iter()
                .filter(|n| !roster.contains(n))
                .cloned()
                .collect();
            let left: Vec<String> = roster
                .iter()
                .filter(|n| !online.contains(n))
                .cloned()
                .collect();
            if !joined.is_empty() || !left.is_empty() {
                let count = online.len();
                o.to(
                    conn,
                    Event::Presence {
                        joined,
                        left,
                        count,
                    },
                );
                *roster = online.clone();
            }
        }
    }
}

/// `2 joined: ann, bob; 1 left: cy (3` back into a digest (at most ten names, as in a room of
/// the simulation's size).
fn parse_digest(body: &str) -> Option<Event> {
    let (lists, count) = body.rsplit_once(" (")?;
    let (mut joined, mut left) = (Vec::new(), Vec::new());
    for part in lists.split("; ") {
        let (head, names) = part.split_once(": ")?;
        let (n, verb) = head.split_once(' ')?;
        let names: Vec<String> = names.split(", ").map(String::from).collect();
        if n.parse::<usize>().ok()? != names.len() {
            return None;
        }
        match verb {
            "joined" if joined.is_empty() && left.is_empty() => joined = names,
            "left" if left.is_empty() => left = names,
            _ => return None,
        }
    }
    Some(Event::Presence {
        joined,
        left,
        count: count.parse().ok()?,
    })
}

/// Moves `cursor` past the messages `conn` itself sent over the line wire: no echo there.
fn skip_own(messages: &[Sent], conn: ConnId, cursor: &mut usize) {
    while messages
        .get(*cursor)
        .is_some_and(|s| s.sender == conn && s.sender_wire == Wire::Line)
    {
        *cursor += 1;
    }
}

fn between<'a>(line: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix(suffix)
}

/// The error lines of the line wire, by how they start.
fn line_error_code(line: &str) -> Option<ErrorCode> {
    if line.starts_with("The name '") && line.contains("' looks too much like '") {
        return Some(ErrorCode::NameConfusable);
    }
    const PREFIXES: &[(&str, ErrorCode)] = &[
        ("Error: line too long", ErrorCode::LineTooLong),
        ("Error: you are sending too fast", ErrorCode::TooFast),
        ("Error: bad request", ErrorCode::BadRequest),
        ("Error: choose a name first", ErrorCode::NotJoined),
        ("Error: you have already joined", ErrorCode::AlreadyJoined),
        ("Unknown command", ErrorCode::UnknownCommand),
        ("Usage: ", ErrorCode::Usage),
        ("No user named '", ErrorCode::NoSuchUser),
        ("Name ", ErrorCode::NameInvalid),
        ("The name '", ErrorCode::NameTaken),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| line.starts_with(prefix))
        .map(|&(_, code)| code)
}

/// What the room must make of typed text: controls, bidirectional controls and invisible
/// format characters removed, line and paragraph separators made spaces, NFC, then trimmed.
/// Written here independently of `chat_core::text`, as the protocol states it.
fn clean(text: &str) -> String {
    let kept: String = text
        .chars()
        .map(|c| {
            if matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .filter(|&c| !is_forbidden_control(c) && !is_forbidden_invisible(c))
        .nfc()
        .collect();
    kept.trim().to_owned()
}

/// Names that look like names of the pool (UTS #39), each with the one it looks like.
const LOOKALIKES: &[(&str, &str)] = &[
    ("\u{430}nn", "ann"), // Cyrillic а
    ("b0b", "bob"),       // a zero
    ("ｅｖｅ", "eve"),    // fullwidth
    ("𝐣𝐨", "jo"),         // mathematical bold
    ("Iu", "lu"),         // a capital i
    ("ka1", "kai"),       // a one, which looks like the l that a capital I looks like
];

/// The name of the pool that `name` is, or looks like, whatever the case.
fn look_class(name: &str) -> String {
    let lower = name.to_lowercase();
    LOOKALIKES
        .iter()
        .find(|(alike, _)| alike.to_lowercase() == lower)
        .map_or(lower, |(_, of)| (*of).to_owned())
}
