//! A seeded simulation of operators and moderation in a room alone, with restarts.
//!
//! Each seed drives the room through random steps: connections from a few addresses
//! (loopback, IPv4, two neighbours in one IPv6 /64 and one in another), joins under names that
//! differ in case or look alike, public messages, `/op` with the right and wrong tokens, kicks,
//! bans, mutes, unbans and unmutes by operators and by users who are not, quits, the clock
//! jumping past the bans' ends, and restarts of the room from what it asked to store
//! (`Output::Sanctions`, handed back with `Room::restore_sanctions`). The simulation keeps its
//! own model of the bans, mutes, operators and `/op` tries, with the rules of
//! `docs/protocol.md`, and checks after every step that every connection received exactly
//! the lines the model says, on both wires (the JSON wire's events rendered as nc reads
//! them). Its invariants, among others:
//!
//! - no connection joins while a ban holds its name (in any case, or a look-alike) or its
//!   address (an IPv6 /64 as one; loopback never); every try is refused with the minutes left;
//! - once a ban ends, its name and address get in again, also across restarts;
//! - a muted user's public line reaches nobody while the mute holds;
//! - a kicked or banned user is closed, and everyone else is told;
//! - only an operator's commands take effect, and one address gets at most five `/op` tries
//!   a minute.
//!
//! `MOD_SIM_SEED=n` replays one seed, `MOD_SIM_SEEDS=n` runs seeds `0..n`, `MOD_SIM_STEPS=n`
//! changes the number of steps per seed.

mod harness;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use chat_core::codec::line;
use chat_core::{Config, ConnId, Wire, look_key, name_key};
use harness::Harness;

const SECRET: &str = "a secret long enough";
const WALL: u64 = 1_796_342_400_000;
const TRACE: usize = 30;

const ADDRESSES: &[&str] = &[
    "127.0.0.1",
    "198.51.100.1",
    "198.51.100.2",
    "2001:db8:1:1::1",
    "2001:db8:1:1::2",
    "2001:db8:1:2::1",
];

const NAMES: &[&str] = &[
    "alice", "Alice", "AIice", "bob", "BOB", "b0b", "carol", "dave", "mallory", "trudy",
];

#[test]
fn random_moderation_keeps_every_invariant() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("MOD_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("MOD_SIM_SEEDS").unwrap_or(200)).collect(),
    };
    let steps = env("MOD_SIM_STEPS").map_or(400, |n| n as usize);
    let mut totals = Totals::default();
    for seed in seeds {
        let mut trace = VecDeque::new();
        let run = panic::catch_unwind(AssertUnwindSafe(|| Sim::new(seed, &mut trace).run(steps)));
        match run {
            Ok(t) => totals.add(&t),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                let trace: Vec<String> = trace.into_iter().collect();
                panic!(
                    "moderation simulation failed with seed {seed}: {message}\n\nlast steps:\n  {}\n\n\
                     replay: MOD_SIM_SEED={seed} cargo test -p chat-core --test moderation_sim",
                    trace.join("\n  ")
                );
            }
        }
    }
    println!("{totals:?}");
    if steps >= 200 && env("MOD_SIM_SEED").is_none() {
        assert!(
            totals.bans > 0
                && totals.banned_refusals > 0
                && totals.kicks > 0
                && totals.muted_lines > 0
                && totals.back_after_ban > 0
                && totals.restarts > 0
                && totals.too_many_tries > 0,
            "the simulation no longer exercises moderation: {totals:?}"
        );
    }
}

#[derive(Debug, Default)]
struct Totals {
    bans: u64,
    banned_refusals: u64,
    kicks: u64,
    muted_lines: u64,
    back_after_ban: u64,
    restarts: u64,
    too_many_tries: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.bans += o.bans;
        self.banned_refusals += o.banned_refusals;
        self.kicks += o.kicks;
        self.muted_lines += o.muted_lines;
        self.back_after_ban += o.back_after_ban;
        self.restarts += o.restarts;
        self.too_many_tries += o.too_many_tries;
    }
}

/// splitmix64, so a seed means the same run everywhere.
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

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// The model's key of an address a ban holds: itself for IPv4, its first 64 bits for IPv6,
/// nothing for loopback. Written here from the contract, not taken from the core.
fn address_key(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => None,
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) if v6.is_loopback() => None,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}:{:x}", s[0], s[1], s[2], s[3]))
        }
    }
}

struct Peer {
    wire: Wire,
    addr: IpAddr,
    name: Option<String>,
    operator: bool,
}

/// A ban as the model holds it.
struct Ban {
    /// The name as the ban spells it.
    name: String,
    address: Option<String>,
    until: u64,
}

struct Sim<'t> {
    rng: Rng,
    h: Harness,
    peers: BTreeMap<ConnId, Peer>,
    /// By name key.
    bans: BTreeMap<String, Ban>,
    /// By name key: the spelling and the end.
    mutes: BTreeMap<String, (String, u64)>,
    /// `/op` tries by address, in the last minute (wall ms).
    tries: BTreeMap<String, VecDeque<u64>>,
    /// Wall ms of the harness's time zero (moves at a restart).
    base: u64,
    /// What the driver stored, across restarts.
    file: Vec<chat_core::moderation::Sanction>,
    /// Names whose ban the model saw end, not yet seen joining again.
    ended: Vec<String>,
    unique: u64,
    step: usize,
    trace: &'t mut VecDeque<String>,
    totals: Totals,
}

fn config(wall_clock: u64) -> Config {
    Config {
        flood: None,
        idle_timeout: None,
        name_timeout: None,
        joins_per_minute: None,
        history: 0,
        op_token: Some(SECRET.into()),
        wall_clock,
        ..Config::default()
    }
}

impl<'t> Sim<'t> {
    fn new(seed: u64, trace: &'t mut VecDeque<String>) -> Self {
        Sim {
            rng: Rng(seed),
            h: Harness::new(config(WALL)),
            peers: BTreeMap::new(),
            bans: BTreeMap::new(),
            mutes: BTreeMap::new(),
            tries: BTreeMap::new(),
            base: WALL,
            ended: Vec::new(),
            file: Vec::new(),
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
        }
        self.totals
    }

    fn note(&mut self, what: String) {
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        let at = self.wall() - WALL;
        self.trace
            .push_back(format!("#{} t={at}ms: {what}", self.step));
    }

    fn wall(&self) -> u64 {
        self.base + self.h.now().as_duration().as_millis() as u64
    }

    fn joined(&self) -> Vec<ConnId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.name.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    fn random_step(&mut self) {
        let joined = self.joined();
        let prompting: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.name.is_none())
            .map(|(&id, _)| id)
            .collect();
        match self.rng.below(100) {
            0..15 if prompting.len() < 8 && self.peers.len() < 12 => self.connect(),
            0..30 if !prompting.is_empty() => {
                let c = self.rng.pick(&prompting);
                self.name(c);
            }
            0..45 if !joined.is_empty() => {
                let c = self.rng.pick(&joined);
                self.say(c);
            }
            0..55 if !joined.is_empty() => {
                let c = self.rng.pick(&joined);
                self.op(c);
            }
            0..80 if !joined.is_empty() => {
                let c = self.rng.pick(&joined);
                self.moderate(c);
            }
            0..85 if !joined.is_empty() => {
                let c = self.rng.pick(&joined);
                self.quit(c);
            }
            0..97 => self.advance(),
            _ => self.restart(),
        }
    }

    // -------------------------------------------------------------------------------------
    // What the model says holds.

    fn ban_on(&self, name: Option<&str>, addr: IpAddr) -> Option<&Ban> {
        let now = self.wall();
        let by_name = name.and_then(|name| {
            let (key, look) = (name_key(name), look_key(name));
            self.bans
                .get(&key)
                .or_else(|| self.bans.values().find(|b| look_key(&b.name) == look))
                .filter(|b| b.until > now)
        });
        by_name.or_else(|| {
            let key = address_key(addr)?;
            self.bans
                .values()
                .find(|b| b.until > now && b.address.as_deref() == Some(&key))
        })
    }

    fn muted(&self, name: &str) -> bool {
        let now = self.wall();
        self.mutes
            .get(&name_key(name))
            .is_some_and(|&(_, until)| until > now)
    }

    fn minutes_left(&self, until: u64) -> u64 {
        until.saturating_sub(self.wall()).div_ceil(60_000).max(1)
    }

    fn banned_line(&self, until: u64) -> String {
        format!(
            "You are banned from this room for {} more minutes.",
            self.minutes_left(until)
        )
    }

    // -------------------------------------------------------------------------------------
    // Steps.

    fn connect(&mut self) {
        let wire = if self.rng.chance(50) {
            Wire::Line
        } else {
            Wire::Json
        };
        let addr: IpAddr = self.rng.pick(ADDRESSES).parse().unwrap();
        let expected = self.ban_on(None, addr).map(|b| self.banned_line(b.until));
        let c = self.h.connect_from(wire, addr);
        self.note(format!("{c:?} connects from {addr} ({wire:?})"));
        let got = self.lines(c, wire);
        match expected {
            Some(line) => {
                assert_eq!(got, [line], "{c:?} from a banned address");
                assert!(self.h.is_closed(c));
                self.totals.banned_refusals += 1;
            }
            None => {
                assert_eq!(got, [line::PROMPT], "{c:?} is prompted");
                let peer = Peer {
                    wire,
                    addr,
                    name: None,
                    operator: false,
                };
                self.peers.insert(c, peer);
            }
        }
        self.check_quiet(&[c]);
    }

    fn name(&mut self, c: ConnId) {
        let name = self.rng.pick(NAMES);
        let (wire, addr) = (self.peers[&c].wire, self.peers[&c].addr);
        self.note(format!("{c:?} types the name {name}"));
        let banned = self
            .ban_on(Some(name), addr)
            .map(|b| self.banned_line(b.until));
        let clash = self
            .peers
            .values()
            .filter_map(|p| p.name.as_deref())
            .any(|n| name_key(n) == name_key(name) || look_key(n) == look_key(name));
        match wire {
            Wire::Line => self.h.line(c, name),
            Wire::Json => {
                let join = serde_json::json!({"type": "join", "name": name});
                self.h.json(c, &join.to_string());
            }
        }
        let got = self.lines(c, wire);
        if let Some(line) = banned {
            assert_eq!(got, [line], "{name} is banned");
            assert!(self.h.is_closed(c));
            self.peers.remove(&c);
            self.totals.banned_refusals += 1;
            return self.check_quiet(&[]);
        }
        if clash {
            assert!(
                got.first().is_some_and(|l| l.contains("choose another")),
                "{name} clashes: {got:?}"
            );
            return self.check_quiet(&[]);
        }
        assert!(
            got.first()
                .is_some_and(|l| l.starts_with(&format!("Welcome, {name}!"))),
            "{name} joins: {got:?}"
        );
        if let Some(i) = self
            .ended
            .iter()
            .position(|n| name_key(n) == name_key(name))
        {
            self.ended.swap_remove(i);
            self.totals.back_after_ban += 1;
        }
        let others = self.joined();
        self.peers.get_mut(&c).unwrap().name = Some(name.to_owned());
        let told = format!("*** {name} has joined the chat ***");
        self.expect_all(&others, &told);
        self.check_quiet(&[]);
    }

    fn send(&mut self, c: ConnId, typed: &str, json: serde_json::Value) {
        match self.peers[&c].wire {
            Wire::Line => self.h.line(c, typed),
            Wire::Json => self.h.json(c, &json.to_string()),
        }
    }

    fn say(&mut self, c: ConnId) {
        self.unique += 1;
        let text = format!("m{}", self.unique);
        let name = self.peers[&c].name.clone().unwrap();
        self.note(format!("{name} says {text}"));
        self.send(c, &text, serde_json::json!({"type": "say", "text": text}));
        let muted = self.muted(&name);
        let sender_wire = self.peers[&c].wire;
        let seen = format!("{name}: {text}");
        for other in self.joined() {
            let wire = self.peers[&other].wire;
            let got = self.lines(other, wire);
            let expected: Vec<String> = if other == c && muted {
                vec!["You are muted.".into()]
            } else if muted || (other == c && sender_wire == Wire::Line) {
                vec![]
            } else {
                vec![seen.clone()]
            };
            assert_eq!(
                got, expected,
                "{other:?} after {name} said {text} (muted: {muted})"
            );
        }
        if muted {
            self.totals.muted_lines += 1;
        }
    }

    fn op(&mut self, c: ConnId) {
        let right = self.rng.chance(40);
        let token = if right { SECRET } else { "guess" };
        let name = self.peers[&c].name.clone().unwrap();
        self.note(format!(
            "{name} tries /op ({})",
            if right { "right" } else { "wrong" }
        ));
        self.send(
            c,
            &format!("/op {token}"),
            serde_json::json!({"type": "op", "token": token}),
        );
        let now = self.wall();
        // Every address counts, loopback too, IPv6 by its /64.
        let addr = self.peers[&c].addr;
        let key = address_key(addr).unwrap_or_else(|| addr.to_string());
        let tries = self.tries.entry(key).or_default();
        while tries.front().is_some_and(|&t| now - t >= 60_000) {
            tries.pop_front();
        }
        let expected = if tries.len() >= 5 {
            self.totals.too_many_tries += 1;
            "Too many tries; wait a minute."
        } else {
            tries.push_back(now);
            if right {
                self.peers.get_mut(&c).unwrap().operator = true;
                "You are now an operator."
            } else {
                "Wrong operator token."
            }
        };
        let wire = self.peers[&c].wire;
        assert_eq!(self.lines(c, wire), [expected]);
        self.check_quiet(&[c]);
    }

    fn moderate(&mut self, c: ConnId) {
        let op = self.peers[&c].name.clone().unwrap();
        let target = self.rng.pick(NAMES);
        let minutes = 1 + self.rng.below(4) as u64;
        let kind = self.rng.below(5);
        let (typed, json) = match kind {
            0 => (
                format!("/kick {target}"),
                serde_json::json!({"type": "kick", "name": target}),
            ),
            1 => (
                format!("/ban {target} {minutes}"),
                serde_json::json!({"type": "ban", "name": target, "minutes": minutes}),
            ),
            2 => (
                format!("/mute {target} {minutes}"),
                serde_json::json!({"type": "mute", "name": target, "minutes": minutes}),
            ),
            3 => (
                format!("/unban {target}"),
                serde_json::json!({"type": "unban", "name": target}),
            ),
            _ => (
                format!("/unmute {target}"),
                serde_json::json!({"type": "unmute", "name": target}),
            ),
        };
        self.note(format!("{op} types {typed}"));
        self.send(c, &typed, json);
        let wire = self.peers[&c].wire;
        if !self.peers[&c].operator {
            assert_eq!(self.lines(c, wire), ["You are not an operator."]);
            return self.check_quiet(&[c]);
        }
        let key = name_key(target);
        let online = self
            .peers
            .iter()
            .find(|(_, p)| p.name.as_deref().is_some_and(|n| name_key(n) == key))
            .map(|(&id, p)| (id, p.name.clone().unwrap_or_default(), p.addr));
        let now = self.wall();
        let until = now + minutes * 60_000;
        match kind {
            0 | 1 => {
                let (verb, done) = if kind == 0 {
                    ("kick", "kicked")
                } else {
                    ("ban", "banned")
                };
                if kind == 1 {
                    let (name, address) = match &online {
                        Some((_, name, addr)) => (name.clone(), address_key(*addr)),
                        None => (target.to_owned(), None),
                    };
                    self.bans.insert(
                        key.clone(),
                        Ban {
                            name,
                            address,
                            until,
                        },
                    );
                    self.totals.bans += 1;
                }
                // A ban also puts out whoever online looks like the name banned (`b0b` when
                // `bob` is), though it holds that one's address only when banned by name.
                let confirmed = online.as_ref().map_or(target.to_owned(), |o| o.1.clone());
                let look = look_key(target);
                let alike = (kind == 1)
                    .then(|| {
                        self.peers
                            .iter()
                            .find(|(_, p)| p.name.as_deref().is_some_and(|n| look_key(n) == look))
                            .map(|(&id, p)| (id, p.name.clone().unwrap_or_default(), p.addr))
                    })
                    .flatten();
                let Some((t, name, _)) = online.or(alike) else {
                    let expected = if kind == 0 {
                        format!("No user named '{target}'.")
                    } else {
                        format!("{target} is banned for {minutes} {}.", unit(minutes))
                    };
                    assert_eq!(self.lines(c, wire), [expected], "{verb} of someone offline");
                    return self.check_quiet(&[c]);
                };
                let twire = self.peers[&t].wire;
                assert_eq!(
                    self.lines(t, twire),
                    [format!("*** You were {done} by {op}: no reason given ***")]
                );
                assert!(self.h.is_closed(t), "{name} was {done}");
                self.peers.remove(&t);
                if kind == 0 {
                    self.totals.kicks += 1;
                }
                let told = format!("*** {name} was {done} by {op}: no reason given ***");
                let others: Vec<ConnId> = self.joined().into_iter().filter(|&o| o != c).collect();
                self.expect_all(&others, &told);
                if t != c {
                    let mut expected = vec![told];
                    if kind == 1 {
                        let unit = unit(minutes);
                        expected.push(format!("{confirmed} is banned for {minutes} {unit}."));
                    }
                    assert_eq!(self.lines(c, wire), expected);
                }
            }
            2 => {
                let name = online.as_ref().map_or(target.to_owned(), |o| o.1.clone());
                self.mutes.insert(key, (name.clone(), until));
                if let Some((t, _, _)) = online.filter(|o| o.0 != c) {
                    let twire = self.peers[&t].wire;
                    assert_eq!(
                        self.lines(t, twire),
                        [format!("*** You were muted by {op} ***")]
                    );
                }
                let mut expected = Vec::new();
                if name_key(&op) == name_key(&name) {
                    expected.push(format!("*** You were muted by {op} ***"));
                }
                expected.push(format!("{name} is muted for {minutes} {}.", unit(minutes)));
                assert_eq!(self.lines(c, wire), expected);
            }
            3 => {
                let held = self.bans.get(&key).filter(|b| b.until > now).is_some();
                let expected = match self.bans.remove(&key).filter(|_| held) {
                    Some(b) => format!("{} is no longer banned.", b.name),
                    None => format!("No ban on '{target}'."),
                };
                assert_eq!(self.lines(c, wire), [expected]);
            }
            _ => {
                let held = self.mutes.get(&key).filter(|m| m.1 > now).is_some();
                let expected = match self.mutes.remove(&key).filter(|_| held) {
                    Some((name, _)) => format!("{name} is no longer muted."),
                    None => format!("No mute on '{target}'."),
                };
                assert_eq!(self.lines(c, wire), [expected]);
            }
        }
        self.check_quiet(&[]);
    }

    fn quit(&mut self, c: ConnId) {
        let name = self.peers[&c].name.clone().unwrap();
        self.note(format!("{name} quits"));
        self.send(c, "/quit", serde_json::json!({"type": "quit"}));
        let wire = self.peers[&c].wire;
        assert_eq!(self.lines(c, wire), ["Goodbye!"]);
        self.peers.remove(&c);
        let others = self.joined();
        self.expect_all(&others, &format!("*** {name} has left the chat ***"));
        self.check_quiet(&[]);
    }

    fn advance(&mut self) {
        let by = Duration::from_millis(1_000 + self.rng.next_u64() % 150_000);
        self.note(format!("{}s pass", by.as_secs()));
        self.h.advance(by);
        let now = self.wall();
        self.forget_ended(now);
        self.check_quiet(&[]);
    }

    /// Bans over by `now` leave the model; their names are watched for coming back.
    fn forget_ended(&mut self, now: u64) {
        let over: Vec<String> = self
            .bans
            .iter()
            .filter(|(_, b)| b.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in over {
            if let Some(b) = self.bans.remove(&key) {
                self.ended.push(b.name);
            }
        }
        self.mutes.retain(|_, m| m.1 > now);
    }

    /// The server restarts, a few seconds later, from what the room asked to store.
    fn restart(&mut self) {
        self.note("the server restarts".into());
        // The driver's file: the room's last word, or what the run before left in it.
        if let Some(stored) = self.h.stored() {
            self.file = stored.to_vec();
        }
        let stored = self.file.clone();
        self.h.shutdown();
        let wall = self.wall() + 3_000;
        self.base = wall;
        self.h = Harness::new(config(wall));
        self.h.room_mut().restore_sanctions(stored);
        self.peers.clear();
        self.tries.clear();
        self.forget_ended(wall);
        self.totals.restarts += 1;
        // What the restored room holds is what the model holds.
        let mut held: Vec<(String, u64)> = self
            .h
            .room()
            .sanctions()
            .iter()
            .map(|s| (name_key(&s.name), s.until))
            .collect();
        held.sort();
        let mut model: Vec<(String, u64)> = self
            .bans
            .iter()
            .map(|(k, b)| (k.clone(), b.until))
            .chain(self.mutes.iter().map(|(k, m)| (k.clone(), m.1)))
            .collect();
        model.sort();
        assert_eq!(held, model, "the bans and mutes after a restart");
    }

    // -------------------------------------------------------------------------------------
    // What connections received.

    /// What `c` received since the last look, as nc lines (the JSON wire's events rendered).
    fn lines(&mut self, c: ConnId, wire: Wire) -> Vec<String> {
        match wire {
            Wire::Line => self.h.take(c),
            Wire::Json => self
                .h
                .take_events(c)
                .iter()
                .flat_map(|e| {
                    let text = line::render(e);
                    text.split('\n').map(str::to_owned).collect::<Vec<_>>()
                })
                .collect(),
        }
    }

    fn expect_all(&mut self, conns: &[ConnId], line: &str) {
        for &o in conns {
            let Some(wire) = self.peers.get(&o).map(|p| p.wire) else {
                continue;
            };
            assert_eq!(self.lines(o, wire), [line], "{o:?}");
        }
    }

    /// Nobody else received anything.
    fn check_quiet(&mut self, except: &[ConnId]) {
        let ids: Vec<ConnId> = self.peers.keys().copied().collect();
        for id in ids.into_iter().filter(|id| !except.contains(id)) {
            let wire = self.peers[&id].wire;
            let got = self.lines(id, wire);
            assert!(got.is_empty(), "{id:?} got {got:?}");
        }
    }
}

fn unit(minutes: u64) -> &'static str {
    if minutes == 1 { "minute" } else { "minutes" }
}
