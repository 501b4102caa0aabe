//! A seeded, deterministic simulation of one room over three nodes: three `Room`s in cluster
//! mode and an in-memory engine with the semantics of the Redis scripts
//! (`server-native/src/cluster/lua`), driven like the tokio driver drives them
//! (`server-native/src/cluster/engine.rs`).
//!
//! The engine holds the log of the current epoch (message seqs contiguous), the members (name
//! key to node, connection and name; look keys unique among them), each node's lease on the
//! engine's clock, the last origin of each node's messages, and the bans and mutes (by kind and
//! name key). Its calls are the scripts':
//! `claim` (fenced on the caller's lease; a key or look key held by a live node is refused, one
//! held by a lapsed node is reaped first; a claim repeated by its holder appends nothing),
//! `say` (fenced on the lease and on membership; a `(node, origin)` seen before appends
//! nothing; a sender under a mute that has not ended is refused), `release` (only by the
//! holder), `moderate` (fenced on the lease; appends the entry; keeps a ban or mute, replacing,
//! drops one lifted and those over; a kick writes its user out), `beat`, `reap`, `snapshot`
//! (the epoch, the last seq, the members, the last `history` messages and the bans and mutes in
//! force; a new epoch after a restart, which loses the bans and mutes too), and every
//! call's freeze compensation (a silence of the engine longer than the freeze threshold moves
//! every lease on by its length). Private messages reach the target node's room if it is in
//! contact (`handle_told`), and the outcome goes back to the sender's (`handle_tell_result`).
//!
//! Each node's driver publishes in order, applies the log at its own pace (a lagging prefix),
//! beats every third of the lease and reaps every second while in contact, takes a snapshot
//! when it gets in contact (`handle_snapshot`), resyncs without losing contact when a beat or a
//! refused call says the log forgot it, and on a loss refuses what it had in flight as busy
//! (some of it was carried out all the same: an ambiguous timeout) before `handle_link_down`.
//!
//! The random steps: connections opened on a random node (line wire and JSON), names typed
//! (colliding, in other cases, look-alikes, invalid; now and then several nodes at once, or
//! while a node coming back claims its users' names again), lines said, `/msg` to anyone, `/who`,
//! `/quit` and dropped connections, JSON clients coming back on a random node with a resume
//! from the last epoch and seq they saw, the engine taking some nodes' publishes (racing
//! claims), a publish carried out twice (a retry after an ambiguous timeout), nodes reading
//! some of the log, time passing (a little, or past the idle timeout), a node cut off from the
//! engine and healed, a node stalled (no beats, no reads: reaped by the others, then resyncs),
//! a node crashed (a fresh room under a new incarnation; its users reaped after the lease), the
//! engine paused (every node out of contact; no one reaped for the pause itself), the engine
//! restarted empty (a new epoch), and a settle that heals everything and waits for the room to
//! be quiet. Operators too (`Config::op_token` set): a joined user types `/op` (now and then
//! with a wrong token); operators kick, ban, mute, unban and unmute names online on any node or
//! not, in other cases, for a few minutes or the default hour; the admin API of a random node
//! does the same and posts notices; connections come from a few shared addresses (an IPv6 /64
//! among them, and loopback, never banned), so that bans by address turn others away; time
//! jumps past the ends of bans and mutes. When time passes the engine and the readers work
//! through what is waiting one
//! publish or entry at a time, in a random interleaving across nodes (so a node may read
//! another's join before its own claim is answered), and on slow links (a third of the seeds)
//! stop short of the end.
//!
//! Invariants, after every step and within each:
//!
//! - every node applies the one log in its order: each message it logs is the log's message of
//!   that seq, the next one (contiguous) while in contact, after a snapshot exactly the
//!   snapshot's messages it missed; a line said once is applied once; the room's next seq is the
//!   log's; messages and `Output::Log` records of the order only while in contact, local ones
//!   only out of it;
//! - every joined client of a node gets each message the node applies, once, right then (a
//!   line-wire sender excepted when it comes back from the log), so no duplicates and no
//!   reordering, and a gap only where the node itself skipped (a snapshot after a loss);
//! - a welcome names the node's epoch and is followed by exactly the history the node owes: a
//!   first join the recent messages; a resume of this epoch exactly the messages after its seq
//!   when the node still holds them all (never a gap then), otherwise `gap:true`; a node in
//!   contact never finds a resume point of its own epoch in its future (§5.6 of CLUSTER.md);
//! - the engine's members and look keys are consistent (one holder per key and per look key);
//!   every joined user of a node that is in contact and whose lease is live is the engine's
//!   member for its key on that connection, or its claim is on the way (during an outage and
//!   until the node resyncs, a node runs alone, by design, so it is left out);
//! - a node is reaped only if it had trouble of its own (cut off, stalled or crashed) since its
//!   last beat: an engine pause never reaps anyone;
//! - `Degraded` and local messages only out of contact, `Restored` only in it; a JSON
//!   client's roster never hears of a join of someone listed, nor of a leave of someone not;
//! - whenever the room is quiet (every node in contact, alive in the engine, caught up, nothing
//!   to publish), every node's `online()` equals the engine's members (but for a banned user
//!   whose crashed node had not released them: the nodes told of the ban no longer list them),
//!   every member of a live node is joined there on its connection, and every JSON client's
//!   roster (complete, no digest pending) equals its node's `online()`.
//!
//! And for operators, on every node, in contact or not, with the bans and mutes it holds (a
//! node out of contact knows nothing of those made elsewhere meanwhile, and may let in a name
//! banned there: what it holds is the snapshot's and the entries it applied since, and what its
//! operators did while apart):
//!
//! - nobody is joined under a name it holds banned (the name's key or its look), at any time;
//!   nobody is let in (welcomed) under such a name or from an address it holds banned;
//! - once a node applies a kick or a ban that has not ended, none of its connections is still
//!   in under that name;
//! - a node in contact holds exactly the bans and mutes of the log it applied: the snapshot's,
//!   and those of every entry it read since (a ban's address aside, which the banned user's
//!   node adds and tells the others);
//! - no public line of a user it holds muted is published, said locally, or applied from the
//!   log (outside a snapshot's replay of what was said before the mute) by that node: the log
//!   refuses a line ordered after a mute, so none reaches anyone once the mute is applied.
//!
//! `CLUSTER_SIM_SEED=n` replays one seed, `CLUSTER_SIM_SEEDS=n` runs seeds `0..n`,
//! `CLUSTER_SIM_STEPS=n` changes the number of steps per seed. A failure prints the seed, the
//! last steps and the replay command; `CLUSTER_SIM_DEBUG=1` also prints every event a client
//! gets and every record a node logs, to stderr.
//!
//! The lease is the default `--node-timeout` (10 s), with the driver's freeze threshold
//! (`max(lease / 2, 2.5 s)`). With a 2 s lease that threshold lets a pause of 1.4 to 2.5 s
//! reap nodes that beat in time, which the pause invariant reports.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chat_core::cluster::{Logged, Member, Publish, Refusal, Snapshot};
use chat_core::codec::json;
use chat_core::codec::line::HISTORY_FOOTER;
use chat_core::moderation::{AdminRequest, Moderation, Sanction, SanctionKind, Sanctions};
use chat_core::{
    ChatMessage, CloseReason, Config, ConnId, Disconnect, Event, LeaveReason, Line, LogRecord,
    Output, Request, Resume, Room, Roster, Timestamp, Wire, look_key, name_key,
};
use serde_json::json;

const DEFAULT_SEEDS: u64 = 300;
const DEFAULT_STEPS: usize = 300;
/// Steps remembered for the failure report.
const TRACE: usize = 60;

const NODES: usize = 3;
/// `--node-timeout`, the lease (ms).
const LEASE: u64 = 10_000;
/// Beats come every third of the lease, reaps every second, reconnections every half second
/// (engine.rs).
const BEAT: u64 = LEASE / 3;
const REAP: u64 = 1_000;
const RETRY: u64 = 500;
/// A silence of the engine longer than this is taken as a freeze (engine.rs `freeze_ms`).
const FREEZE: u64 = if LEASE / 2 > 2_500 { LEASE / 2 } else { 2_500 };
/// Where the clock starts (ms): epochs, taken from it, look like times.
const START: u64 = 1_700_000_000_000;

const PROMPT: &str = "Enter your name: ";
const LOST: &str =
    "*** Lost contact with the other servers; only people on this server can hear you now ***\n";
const BACK: &str = "*** Back in contact with the other servers ***\n";

/// The operator secret (`Config::op_token`).
const TOKEN: &str = "s3cret";

/// Where connections come from: a few addresses shared by several users (an IPv6 /64 among
/// them), and loopback, which is never banned.
const PEERS: &[&str] = &[
    "203.0.113.1",
    "203.0.113.2",
    "198.51.100.7",
    "2001:db8:1:1::5",
    "2001:db8:1:1::9",
    "2001:db8:2::1",
    "127.0.0.1",
];

/// Names typed: the same name in other cases, look-alikes, and one that is not a name.
const NAMES: &[&str] = &[
    "alice", "Alice", "ALICE", "AIice", "bob", "Bob", "b0b", "carol", "Carol", "dave", "eve",
    "Eve", "EVE", "mallory", "trent", "no name",
];

#[test]
fn random_cluster_runs_keep_every_invariant() {
    let seeds: Vec<u64> = match env_u64("CLUSTER_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("CLUSTER_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let steps = env_u64("CLUSTER_SIM_STEPS").map_or(DEFAULT_STEPS, |n| n as usize);
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
    // `cargo test -- --nocapture` shows that the runs did exercise the cluster.
    println!("{totals:?} in {:?}", started.elapsed());
    if seeds.len() >= 100 && steps >= 200 {
        let t = &totals;
        assert!(
            t.joins > 0
                && t.applied > 0
                && t.resumes > 0
                && t.resume_gaps > 0
                && t.bounces > 0
                && t.reaped > 0
                && t.resyncs > 0
                && t.quiet > 0
                && t.snapshot_gaps > 0
                && t.duplicates > 0
                && t.tells_heard > 0
                && t.compensated > 0
                && t.operators > 0
                && t.moderations > 0
                && t.put_out > 0
                && t.turned_away > 0
                && t.muted > 0,
            "the simulation no longer exercises the cluster: {totals:?}"
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
            "cluster simulation failed with seed {seed}: {message}\n(at {at})\n\nlast steps:\n  {}\n\n\
             replay: CLUSTER_SIM_SEED={seed} cargo test -p chat-core --test cluster_sim",
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
    applied: usize,
    resumes: usize,
    resume_gaps: usize,
    bounces: usize,
    reaped: usize,
    resyncs: usize,
    heals: usize,
    crashes: usize,
    restarts: usize,
    pauses: usize,
    compensated: usize,
    ambiguous: usize,
    duplicates: usize,
    snapshot_gaps: usize,
    tells_heard: usize,
    quiet: usize,
    operators: usize,
    moderations: usize,
    put_out: usize,
    turned_away: usize,
    muted: usize,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.steps += o.steps;
        self.joins += o.joins;
        self.applied += o.applied;
        self.resumes += o.resumes;
        self.resume_gaps += o.resume_gaps;
        self.bounces += o.bounces;
        self.reaped += o.reaped;
        self.resyncs += o.resyncs;
        self.heals += o.heals;
        self.crashes += o.crashes;
        self.restarts += o.restarts;
        self.pauses += o.pauses;
        self.compensated += o.compensated;
        self.ambiguous += o.ambiguous;
        self.duplicates += o.duplicates;
        self.snapshot_gaps += o.snapshot_gaps;
        self.tells_heard += o.tells_heard;
        self.quiet += o.quiet;
        self.operators += o.operators;
        self.moderations += o.moderations;
        self.put_out += o.put_out;
        self.turned_away += o.turned_away;
        self.muted += o.muted;
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
// The engine: the Redis scripts' semantics, in memory.

/// A member as the engine holds it.
#[derive(Clone, Debug)]
struct Held {
    node: String,
    conn: ConnId,
    look: String,
    name: String,
}

/// What a script answered.
#[derive(Debug, PartialEq)]
enum Reply {
    Ok,
    Duplicate,
    Taken,
    LooksLike(String),
    NotMember,
    Muted,
    Lapsed,
    NoEpoch,
}

#[derive(Default)]
struct Engine {
    /// `None` after a restart, until the first snapshot starts a new epoch.
    epoch: Option<u64>,
    last_epoch: u64,
    /// The last message's seq.
    seq: u64,
    /// This epoch's entries, in order.
    log: Vec<Logged>,
    members: BTreeMap<String, Held>,
    /// Look key to name key.
    looks: BTreeMap<String, String>,
    /// Node to lease expiry (ms, the engine's clock).
    leases: BTreeMap<String, u64>,
    /// Node to the last origin logged.
    origins: BTreeMap<String, u64>,
    /// The bans and mutes kept, by kind and name key (the sanctions hash); those over are
    /// dropped by the moderate and snapshot scripts.
    sanctions: BTreeMap<(SanctionKind, String), Sanction>,
    /// The last script's time.
    last_t: Option<u64>,
    /// Bumped by each restart: connections of an earlier one are broken.
    generation: u64,
    /// Nodes retired for a lapsed lease since the simulation last looked.
    reaped: Vec<String>,
    /// Freeze compensations made, since the simulation last looked.
    compensated: usize,
    // Not the engine's: the oracle. Every message ever logged, by (epoch, seq), and by text.
    truth: BTreeMap<(u64, u64), ChatMessage>,
    tokens: BTreeMap<String, (u64, u64)>,
}

impl Engine {
    /// Every script starts here: after a freeze every lease moves on by its length.
    fn clock(&mut self, now: u64) {
        if let Some(last) = self.last_t
            && now.saturating_sub(last) > FREEZE
        {
            let shift = now - last;
            for lease in self.leases.values_mut() {
                *lease += shift;
            }
            self.compensated += 1;
        }
        self.last_t = Some(now);
    }

    fn live(&self, node: &str, now: u64) -> bool {
        self.leases.get(node).is_some_and(|&e| e >= now)
    }

    fn forget(&mut self, key: &str) -> Option<Held> {
        let held = self.members.remove(key)?;
        if self.looks.get(&held.look).is_some_and(|k| k == key) {
            self.looks.remove(&held.look);
        }
        Some(held)
    }

    /// Every member of `node` leaves as lost; the node is forgotten.
    fn retire(&mut self, node: &str) {
        let keys: Vec<String> = self
            .members
            .iter()
            .filter(|(_, h)| h.node == node)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let held = self.forget(&key).expect("a member");
            self.log.push(Logged::Left {
                key,
                name: held.name,
                reason: LeaveReason::Lost,
            });
        }
        self.leases.remove(node);
        self.origins.remove(node);
        self.reaped.push(node.to_owned());
    }

    /// `{lapsed, epoch}`.
    fn beat(&mut self, now: u64, node: &str) -> (bool, Option<u64>) {
        self.clock(now);
        let lapsed = !self.leases.contains_key(node);
        self.leases.insert(node.to_owned(), now + LEASE);
        (lapsed, self.epoch)
    }

    fn reap(&mut self, now: u64) {
        self.clock(now);
        let expired: Vec<String> = self
            .leases
            .iter()
            .filter(|&(_, &e)| e < now)
            .map(|(n, _)| n.clone())
            .collect();
        for node in expired {
            self.retire(&node);
        }
    }

    fn claim(
        &mut self,
        now: u64,
        node: &str,
        conn: ConnId,
        key: &str,
        look: &str,
        name: &str,
    ) -> Reply {
        self.clock(now);
        if self.epoch.is_none() {
            return Reply::NoEpoch;
        }
        if !self.live(node, now) {
            return Reply::Lapsed;
        }
        if let Some(held) = self.members.get(key) {
            if held.node == node && held.conn == conn {
                return Reply::Ok;
            }
            if self.live(&held.node, now) {
                return Reply::Taken;
            }
            let holder = held.node.clone();
            self.retire(&holder);
        }
        if let Some(other) = self.looks.get(look).cloned()
            && other != key
            && let Some(held) = self.members.get(&other)
        {
            if self.live(&held.node, now) {
                return Reply::LooksLike(held.name.clone());
            }
            let holder = held.node.clone();
            self.retire(&holder);
        }
        self.members.insert(
            key.to_owned(),
            Held {
                node: node.to_owned(),
                conn,
                look: look.to_owned(),
                name: name.to_owned(),
            },
        );
        self.looks.insert(look.to_owned(), key.to_owned());
        self.log.push(Logged::Joined {
            key: key.to_owned(),
            name: name.to_owned(),
            node: node.to_owned(),
            conn,
        });
        Reply::Ok
    }

    #[allow(clippy::too_many_arguments)]
    fn say(
        &mut self,
        now: u64,
        node: &str,
        conn: ConnId,
        key: &str,
        from: &str,
        text: &str,
        origin: u64,
    ) -> Reply {
        self.clock(now);
        let Some(epoch) = self.epoch else {
            return Reply::NoEpoch;
        };
        if !self.live(node, now) {
            return Reply::Lapsed;
        }
        if !self
            .members
            .get(key)
            .is_some_and(|h| h.node == node && h.conn == conn)
        {
            return Reply::NotMember;
        }
        if origin <= self.origins.get(node).copied().unwrap_or(0) {
            return Reply::Duplicate;
        }
        if self
            .sanctions
            .get(&(SanctionKind::Mute, key.to_owned()))
            .is_some_and(|m| m.until > now)
        {
            return Reply::Muted;
        }
        self.origins.insert(node.to_owned(), origin);
        self.seq += 1;
        let message = ChatMessage {
            seq: self.seq,
            from: from.to_owned(),
            text: text.to_owned(),
        };
        self.truth.insert((epoch, self.seq), message);
        self.tokens.insert(text.to_owned(), (epoch, self.seq));
        self.log.push(Logged::Message {
            seq: self.seq,
            from: from.to_owned(),
            text: text.to_owned(),
            node: node.to_owned(),
            origin,
        });
        Reply::Ok
    }

    fn release(&mut self, now: u64, node: &str, conn: ConnId, key: &str, reason: LeaveReason) {
        self.clock(now);
        if !self
            .members
            .get(key)
            .is_some_and(|h| h.node == node && h.conn == conn)
        {
            return;
        }
        let held = self.forget(key).expect("a member");
        self.log.push(Logged::Left {
            key: key.to_owned(),
            name: held.name,
            reason,
        });
    }

    /// An operator's action: appended; a ban or mute kept (replacing), a lift dropping it.
    fn moderate(&mut self, now: u64, node: &str, moderation: Moderation) -> Reply {
        self.clock(now);
        if self.epoch.is_none() {
            return Reply::NoEpoch;
        }
        if !self.live(node, now) {
            return Reply::Lapsed;
        }
        self.drop_over(now);
        match &moderation {
            Moderation::Sanction(s) => {
                self.sanctions
                    .insert((s.kind, name_key(&s.name)), s.clone());
            }
            Moderation::Lift { kind, name, .. } => {
                self.sanctions.remove(&(*kind, name_key(name)));
            }
            Moderation::Operator { .. } | Moderation::Kick { .. } | Moderation::Notice { .. } => {}
        }
        let kicked = match &moderation {
            Moderation::Kick { name, .. } => Some(name_key(name)),
            _ => None,
        };
        self.log.push(Logged::Moderated(moderation));
        // A kick writes its user out of the room.
        if let Some(key) = kicked
            && let Some(held) = self.forget(&key)
        {
            self.log.push(Logged::Left {
                key,
                name: held.name,
                reason: LeaveReason::Kicked,
            });
        }
        Reply::Ok
    }

    fn drop_over(&mut self, now: u64) {
        self.sanctions.retain(|_, s| s.until > now);
    }

    /// The room at one instant, with the last `count` messages; a new epoch if there is none.
    fn snapshot(&mut self, now: u64, count: usize) -> Snapshot {
        self.clock(now);
        let epoch = match self.epoch {
            Some(epoch) => epoch,
            None => {
                let epoch = (self.last_epoch + 1).max(now);
                self.last_epoch = epoch;
                self.epoch = Some(epoch);
                self.seq = 0;
                self.log.clear();
                self.members.clear();
                self.looks.clear();
                epoch
            }
        };
        let members = self
            .members
            .iter()
            .map(|(key, h)| Member {
                key: key.clone(),
                name: h.name.clone(),
                node: h.node.clone(),
                conn: h.conn,
            })
            .collect();
        let first = self.seq.saturating_sub(count as u64) + 1;
        let recent = (first..=self.seq)
            .filter_map(|s| self.truth.get(&(epoch, s)).cloned())
            .collect();
        self.drop_over(now);
        Snapshot {
            epoch,
            seq: self.seq,
            members,
            recent,
            sanctions: self.sanctions.values().cloned().collect(),
        }
    }

    /// Restarted empty: every key is gone (the oracle stays).
    fn restart(&mut self) {
        *self = Engine {
            last_epoch: self.last_epoch,
            generation: self.generation + 1,
            truth: std::mem::take(&mut self.truth),
            tokens: std::mem::take(&mut self.tokens),
            ..Engine::default()
        };
    }

    fn check(&self) {
        let mut seen_looks = BTreeSet::new();
        for (key, h) in &self.members {
            assert_eq!(
                *key,
                cached_key(&h.name),
                "a member under another key: {h:?}"
            );
            assert_eq!(
                h.look,
                cached_look(&h.name),
                "a member under another look: {h:?}"
            );
            assert!(
                seen_looks.insert(h.look.clone()),
                "two members look alike: {:?}",
                self.members
            );
            assert_eq!(
                self.looks.get(&h.look),
                Some(key),
                "the look keys miss {h:?}"
            );
        }
        assert_eq!(self.looks.len(), self.members.len(), "stale look keys");
        let seqs: Vec<u64> = self
            .log
            .iter()
            .filter_map(|e| match e {
                Logged::Message { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert!(
            seqs.iter().copied().eq(1..=self.seq),
            "the log's seqs are not 1..={}: {seqs:?}",
            self.seq
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The nodes and their clients, as the simulation models them.

struct Node {
    incarnation: u32,
    /// Its name in the log: the node and its incarnation.
    name: String,
    room: Room,
    next_conn: u64,
    /// Cut off from the engine.
    partitioned: bool,
    /// Stopped (no input, no beat, no read) until then.
    stalled_until: Option<u64>,
    /// In contact as the driver sees it: a snapshot since the last loss.
    session: bool,
    /// The engine's generation when it took its snapshot.
    generation: u64,
    /// Entries of the log applied (reading from the snapshot's position).
    cursor: usize,
    /// Publishes sent and not yet carried out, in order.
    outbox: VecDeque<Publish>,
    /// Origins of its messages on their way, to their senders.
    says: BTreeMap<u64, ConnId>,
    next_beat: u64,
    next_reap: u64,
    next_retry: u64,
    /// The epoch the room numbers in, its next seq, and the messages it applied in it (the
    /// last `history` of them are its ring).
    epoch: u64,
    next_seq: u64,
    applied: Vec<ChatMessage>,
    /// Texts applied: a line said once is applied once.
    tokens: BTreeSet<String>,
    /// What the input being handled must log, in order.
    expect: VecDeque<ChatMessage>,
    /// Within a snapshot: the messages logged are those of `expect`, not the next seq.
    replaying: bool,
    /// The line-wire sender of the message being applied: it gets no echo.
    line_sender: Option<ConnId>,
    /// The message just logged, and who of this node has yet to get it.
    awaiting: Option<(ChatMessage, BTreeSet<ConnId>)>,
    /// The bans and mutes the node must hold while in contact: the snapshot's, and those of
    /// the entries it applied since, by kind and name key.
    held: BTreeMap<(SanctionKind, String), Sanction>,
    /// Name keys the node has just kicked or banned (its message log says so): none of its
    /// connections may be in under them once the input is handled.
    put_out: Vec<(Action, String)>,
}

/// What an operator's action puts out.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Kick,
    Ban,
}

impl Node {
    fn new(index: usize, incarnation: u32, config: &Config) -> Node {
        let name = format!("node-{index}.{incarnation}");
        Node {
            incarnation,
            room: Room::new(Config {
                cluster: Some(name.clone()),
                ..config.clone()
            }),
            name,
            next_conn: 1,
            partitioned: false,
            stalled_until: None,
            session: false,
            generation: 0,
            cursor: 0,
            outbox: VecDeque::new(),
            says: BTreeMap::new(),
            next_beat: 0,
            next_reap: 0,
            next_retry: 0,
            epoch: 0,
            next_seq: 1,
            applied: Vec::new(),
            tokens: BTreeSet::new(),
            expect: VecDeque::new(),
            replaying: false,
            line_sender: None,
            awaiting: None,
            held: BTreeMap::new(),
            put_out: Vec::new(),
        }
    }
}

struct Client {
    wire: Wire,
    /// The name it is in the room under (from its welcome); `None` at the prompt.
    name: Option<String>,
    /// A join sent and not answered yet.
    asking: bool,
    /// Sent with every join: where it left off on an earlier connection.
    resume: Option<Resume>,
    /// JSON: the roster as the client keeps it.
    roster: Roster,
    welcome_epoch: u64,
    /// JSON: the last seq received, its resume point with the welcome's epoch.
    last_seq: Option<u64>,
    /// JSON, right after a welcome: the history owed next, if any.
    history: Option<Option<(Vec<ChatMessage>, bool)>>,
    /// The (epoch, seq) of the last message of the order it got: they only increase.
    last_seen: Option<(u64, u64)>,
    /// Where it connects from.
    peer: Option<IpAddr>,
    /// Told it is an operator.
    operator: bool,
}

impl Client {
    fn new(wire: Wire, resume: Option<Resume>, peer: Option<IpAddr>) -> Client {
        Client {
            peer,
            operator: false,
            wire,
            name: None,
            asking: false,
            resume,
            roster: Roster::new(),
            welcome_epoch: 0,
            last_seq: None,
            history: None,
            last_seen: None,
        }
    }
}

/// A JSON user whose connection went, who may come back elsewhere.
#[derive(Clone, Debug)]
struct Returning {
    name: String,
    resume: Resume,
}

struct Sim<'t> {
    rng: Rng,
    now: u64,
    config: Config,
    /// How the driver reports a call refused because its node lapsed.
    lapsed: Refusal,
    /// How slow the links are: the chance (percent) that, as time passes, the engine and the
    /// readers stop short of the end at each publish or entry.
    lag: u64,
    engine: Engine,
    nodes: Vec<Node>,
    clients: BTreeMap<(usize, ConnId), Client>,
    returning: Vec<Returning>,
    /// Node name to whether it had trouble of its own (cut off, stalled, crashed) since its
    /// last beat.
    troubled: BTreeMap<String, bool>,
    paused_until: Option<u64>,
    unique: u64,
    step: usize,
    trace: &'t mut VecDeque<String>,
    totals: Totals,
}

thread_local! {
    /// Name and look keys computed once per name: the names typed are few.
    static KEYS: RefCell<BTreeMap<String, (String, String)>> = const { RefCell::new(BTreeMap::new()) };
}

fn cached_keys(name: &str) -> (String, String) {
    KEYS.with(|k| {
        k.borrow_mut()
            .entry(name.to_owned())
            .or_insert_with(|| (name_key(name), look_key(name)))
            .clone()
    })
}

fn cached_key(name: &str) -> String {
    cached_keys(name).0
}

fn cached_look(name: &str) -> String {
    cached_keys(name).1
}

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn ms(t: Timestamp) -> u64 {
    t.as_duration().as_millis() as u64
}

impl<'t> Sim<'t> {
    fn new(seed: u64, trace: &'t mut VecDeque<String>) -> Self {
        let mut rng = Rng(seed);
        let config = Config {
            op_token: Some(TOKEN.to_owned()),
            history: rng.pick(&[0, 2, 5, 50]),
            flood: None,
            idle_timeout: Some(Duration::from_secs(rng.range(60, 600))),
            name_timeout: Some(Duration::from_secs(rng.range(30, 120))),
            announce_limit: if seed % 3 == 2 {
                rng.range(1, 5) as usize
            } else {
                Config::default().announce_limit
            },
            announce_interval: Duration::from_millis(rng.range(200, 10_000)),
            joins_per_minute: None,
            ..Config::default()
        };
        // The contract says `NotMember`; the tokio driver says `Busy` and resyncs.
        let lapsed = if seed.is_multiple_of(2) {
            Refusal::NotMember
        } else {
            Refusal::Busy
        };
        let lag = rng.pick(&[2, 10, 30]);
        trace.push_back(format!(
            "seed {seed}: history {}, idle {:?}, announce limit {}, lapsed as {lapsed:?}, \
             lag {lag}%",
            config.history, config.idle_timeout, config.announce_limit
        ));
        let nodes = (0..NODES).map(|i| Node::new(i, 1, &config)).collect();
        let mut sim = Sim {
            rng,
            now: START,
            config,
            lapsed,
            lag,
            engine: Engine::default(),
            nodes,
            clients: BTreeMap::new(),
            returning: Vec::new(),
            troubled: BTreeMap::new(),
            paused_until: None,
            unique: 0,
            step: 0,
            trace,
            totals: Totals::default(),
        };
        for n in 0..NODES {
            sim.snapshot(n);
        }
        sim
    }

    fn run(mut self, steps: usize) -> Totals {
        for step in 1..=steps {
            self.step = step;
            self.random_step();
            self.check_invariants();
        }
        self.settle();
        self.check_invariants();
        self.totals.steps = steps;
        self.totals
    }

    fn note(&mut self, what: String) {
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        let line = format!("#{} t={}: {what}", self.step, self.now - START);
        self.trace.push_back(line);
    }

    fn fresh(&mut self) -> u64 {
        self.unique += 1;
        self.unique
    }

    fn stalled(&self, n: usize) -> bool {
        self.nodes[n].stalled_until.is_some()
    }

    /// The node's driver can reach the engine.
    fn reachable(&self, n: usize) -> bool {
        !self.nodes[n].partitioned && self.paused_until.is_none() && !self.stalled(n)
    }

    /// Clients of nodes that are running, joined (or not).
    fn clients_where(&self, joined: Option<bool>) -> Vec<(usize, ConnId)> {
        self.clients
            .iter()
            .filter(|((n, _), c)| !self.stalled(*n) && joined.is_none_or(|j| j == c.name.is_some()))
            .map(|(&k, _)| k)
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Choosing a step.

    fn random_step(&mut self) {
        let roll = self.rng.below(211);
        match roll {
            0..=15 => self.open(),
            16..=35 => self.type_name(),
            36..=37 => self.rush(),
            38..=39 => self.contest(),
            40..=59 => self.say(),
            60..=65 => self.private(),
            66..=69 => self.who(),
            70..=79 => self.leave(),
            80..=87 => self.come_back(),
            88..=115 => {
                let n = self.rng.below(NODES);
                let k = self.rng.range(1, 3) as usize;
                self.note(format!("the engine takes {k} of node {n}'s publishes"));
                self.process(n, k);
            }
            116..=143 => {
                let n = self.rng.below(NODES);
                let k = self.rng.range(1, 4) as usize;
                self.note(format!("node {n} reads {k} entries"));
                self.deliver(n, k);
            }
            144..=163 => {
                let by = self.rng.range(50, 1_500);
                self.note(format!("{by} ms pass"));
                self.advance(by);
            }
            164..=165 => {
                let by = self.rng.range(5_000, 120_000);
                self.note(format!("{by} ms pass"));
                self.advance(by);
            }
            166..=171 => self.partition(),
            172..=177 => self.end_partition(),
            178..=179 => self.stall(),
            180..=181 => self.crash(),
            182..=183 => self.pause(),
            184 => self.restart(),
            185..=188 => self.duplicate(),
            189..=199 => self.settle(),
            200..=201 => self.op_up(),
            202..=207 => self.moderate(),
            208 => self.admin(),
            _ => {
                // Past the ends of bans and mutes.
                let by = self.rng.range(30_000, 6 * 60_000);
                self.note(format!("{by} ms pass"));
                self.advance(by);
            }
        }
    }

    /// A node out of contact with users of its own comes back, and at that moment people on
    /// other nodes ask for the names it claims again (in other spellings, or look-alikes).
    fn contest(&mut self) {
        let cut: Vec<usize> = (0..NODES)
            .filter(|&n| self.nodes[n].partitioned && !self.stalled(n))
            .collect();
        if cut.is_empty() {
            return;
        }
        let n = self.rng.pick(&cut);
        self.note(format!(
            "node {n} comes back while its names are wanted elsewhere"
        ));
        self.nodes[n].partitioned = false;
        if !self.reachable(n) || self.nodes[n].session {
            return;
        }
        self.snapshot(n);
        let wanted: Vec<(ConnId, String)> = self.nodes[n]
            .outbox
            .iter()
            .filter_map(|p| match p {
                Publish::Claim { conn, look, .. } => Some((*conn, look.clone())),
                _ => None,
            })
            .collect();
        for (claimed, look) in wanted {
            // One told contact was lost may leave right then.
            if self.rng.chance(25) && self.clients.contains_key(&(n, claimed)) {
                self.note(format!(
                    "node {n}: {claimed:?} quits as its name is claimed again"
                ));
                self.send(n, claimed, "/quit", json!({"type": "quit"}));
            }
            let spellings: Vec<&str> = NAMES
                .iter()
                .copied()
                .filter(|name| look_key(name) == look)
                .collect();
            let rivals: Vec<(usize, ConnId)> = self
                .clients_where(Some(false))
                .into_iter()
                .filter(|(i, c)| *i != n && !self.clients[&(*i, *c)].asking)
                .collect();
            if spellings.is_empty() || rivals.is_empty() {
                continue;
            }
            let (i, conn) = self.rng.pick(&rivals);
            let name = self.rng.pick(&spellings);
            self.join(i, conn, name);
        }
    }

    /// Several at the prompt, on different nodes, type the same name at once, in their own
    /// spellings.
    fn rush(&mut self) {
        let base = self.rng.pick(&["alice", "bob", "eve", "carol"]);
        let spellings: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|n| look_key(n) == look_key(base))
            .collect();
        let prompting: Vec<(usize, ConnId)> = self
            .clients_where(Some(false))
            .into_iter()
            .filter(|k| !self.clients[k].asking)
            .collect();
        let mut nodes = BTreeSet::new();
        for (n, conn) in prompting {
            if nodes.insert(n) {
                let name = self.rng.pick(&spellings);
                self.join(n, conn, name);
            }
        }
    }

    fn open(&mut self) {
        let running: Vec<usize> = (0..NODES).filter(|&n| !self.stalled(n)).collect();
        if running.is_empty() {
            return;
        }
        let n = self.rng.pick(&running);
        let wire = if self.rng.chance(65) {
            Wire::Json
        } else {
            Wire::Line
        };
        let conn = self.connect(n, wire, None);
        self.note(format!("node {n}: {conn:?} opens on the {wire:?} wire"));
        if self.rng.chance(50) && self.clients.contains_key(&(n, conn)) {
            let name = self.rng.pick(NAMES).to_owned();
            self.join(n, conn, &name);
        }
    }

    fn connect(&mut self, n: usize, wire: Wire, resume: Option<Resume>) -> ConnId {
        let node = &mut self.nodes[n];
        let conn = ConnId(node.next_conn);
        node.next_conn += 1;
        let peer = self
            .rng
            .chance(80)
            .then(|| self.rng.pick(PEERS).parse().expect("an address"));
        self.clients
            .insert((n, conn), Client::new(wire, resume, peer));
        self.nodes[n]
            .room
            .handle_open(ts(self.now), conn, wire, peer);
        self.drain(n);
        conn
    }

    fn type_name(&mut self) {
        let prompting: Vec<(usize, ConnId)> = self
            .clients_where(Some(false))
            .into_iter()
            // Now and then one types again while its first name is on its way.
            .filter(|k| !self.clients[k].asking || self.rng.chance(3))
            .collect();
        if prompting.is_empty() {
            return;
        }
        let (n, conn) = self.rng.pick(&prompting);
        let name = self.rng.pick(NAMES).to_owned();
        self.join(n, conn, &name);
    }

    fn join(&mut self, n: usize, conn: ConnId, name: &str) {
        let client = self.clients.get_mut(&(n, conn)).expect("a client");
        client.asking = true;
        let (wire, resume) = (client.wire, client.resume);
        self.note(format!(
            "node {n}: {conn:?} asks for {name:?}, resume {resume:?}"
        ));
        let room = &mut self.nodes[n].room;
        match wire {
            Wire::Json => {
                let request = match resume {
                    Some(r) => json!({"type": "join", "name": name,
                                      "resume": {"epoch": r.epoch, "seq": r.seq}}),
                    None => json!({"type": "join", "name": name}),
                };
                room.handle_json(ts(self.now), conn, &request.to_string());
            }
            Wire::Line => room.handle_line(ts(self.now), conn, Line::Text(name.into())),
        }
        self.drain(n);
    }

    /// A line or JSON request from a joined client.
    fn send(&mut self, n: usize, conn: ConnId, line: &str, request: serde_json::Value) {
        let wire = self.clients[&(n, conn)].wire;
        let room = &mut self.nodes[n].room;
        match wire {
            Wire::Json => room.handle_json(ts(self.now), conn, &request.to_string()),
            Wire::Line => room.handle_line(ts(self.now), conn, Line::Text(line.into())),
        }
        self.drain(n);
    }

    fn say(&mut self) {
        let joined = self.clients_where(Some(true));
        if joined.is_empty() {
            return;
        }
        let (n, conn) = self.rng.pick(&joined);
        let text = format!("t{}", self.fresh());
        self.note(format!("node {n}: {conn:?} says {text}"));
        self.send(n, conn, &text, json!({"type": "say", "text": text}));
    }

    fn private(&mut self) {
        let joined = self.clients_where(Some(true));
        if joined.is_empty() {
            return;
        }
        let (n, conn) = self.rng.pick(&joined);
        let to = self.rng.pick(NAMES).replace(' ', "");
        let text = format!("p{}", self.fresh());
        self.note(format!("node {n}: {conn:?} tells {to} {text}"));
        let line = format!("/msg {to} {text}");
        self.send(
            n,
            conn,
            &line,
            json!({"type": "msg", "to": to, "text": text}),
        );
    }

    fn who(&mut self) {
        let joined = self.clients_where(Some(true));
        if joined.is_empty() {
            return;
        }
        let (n, conn) = self.rng.pick(&joined);
        self.note(format!("node {n}: {conn:?} asks who is online"));
        self.send(n, conn, "/who", json!({"type": "who"}));
    }

    fn leave(&mut self) {
        let all = self.clients_where(None);
        if all.is_empty() {
            return;
        }
        let (n, conn) = self.rng.pick(&all);
        if self.rng.chance(50) {
            self.note(format!("node {n}: {conn:?} quits"));
            self.send(n, conn, "/quit", json!({"type": "quit"}));
        } else {
            self.note(format!("node {n}: {conn:?} drops"));
            self.gone(n, conn);
            self.nodes[n]
                .room
                .handle_disconnect(ts(self.now), conn, Disconnect::Dropped);
            self.drain(n);
        }
    }

    /// A client's connection is gone; a JSON user that was in may come back.
    fn gone(&mut self, n: usize, conn: ConnId) {
        let Some(client) = self.clients.remove(&(n, conn)) else {
            return;
        };
        if client.wire == Wire::Json
            && let Some(name) = client.name
            && self.returning.len() < 12
            && self.rng.chance(70)
        {
            self.returning.push(Returning {
                name,
                resume: Resume {
                    epoch: client.welcome_epoch,
                    seq: client.last_seq.unwrap_or(0),
                },
            });
        }
    }

    fn come_back(&mut self) {
        let running: Vec<usize> = (0..NODES).filter(|&n| !self.stalled(n)).collect();
        if self.returning.is_empty() || running.is_empty() {
            return;
        }
        let who = self
            .returning
            .swap_remove(self.rng.below(self.returning.len()));
        let n = self.rng.pick(&running);
        let conn = self.connect(n, Wire::Json, Some(who.resume));
        self.note(format!("{} comes back on node {n} as {conn:?}", who.name));
        if self.clients.contains_key(&(n, conn)) {
            self.join(n, conn, &who.name);
        }
    }

    /// A joined user asks to be an operator, now and then with a wrong token.
    fn op_up(&mut self) {
        let joined: Vec<(usize, ConnId)> = self
            .clients_where(Some(true))
            .into_iter()
            .filter(|k| !self.clients[k].operator)
            .collect();
        if joined.is_empty() {
            return;
        }
        let (n, conn) = self.rng.pick(&joined);
        let token = if self.rng.chance(80) { TOKEN } else { "guess" };
        self.note(format!("node {n}: {conn:?} tries /op {token}"));
        let request = Request::Op {
            token: token.to_owned(),
        };
        self.request(n, conn, &format!("/op {token}"), &request);
    }

    /// An operator kicks, bans, mutes, unbans or unmutes someone: online (here or elsewhere)
    /// or not, for a few minutes or the default hour.
    fn moderate(&mut self) {
        let ops: Vec<(usize, ConnId)> = self
            .clients_where(Some(true))
            .into_iter()
            .filter(|k| self.clients[k].operator)
            .collect();
        if ops.is_empty() {
            return self.op_up();
        }
        let (n, conn) = self.rng.pick(&ops);
        let name = self.target();
        let minutes = self.rng.chance(85).then(|| self.rng.range(1, 8));
        let reason = self.rng.chance(50).then(|| format!("r{}", self.fresh()));
        let (line, request) = match self.rng.below(10) {
            0..=2 => (
                format!("/kick {name} {}", reason.clone().unwrap_or_default()),
                Request::Kick { name, reason },
            ),
            3..=5 => (
                format!(
                    "/ban {name} {} {}",
                    minutes.map(|m| m.to_string()).unwrap_or_default(),
                    reason.clone().unwrap_or_default()
                ),
                Request::Ban {
                    name,
                    minutes,
                    reason,
                },
            ),
            6..=7 => (
                format!(
                    "/mute {name} {}",
                    minutes.map(|m| m.to_string()).unwrap_or_default()
                ),
                Request::Mute { name, minutes },
            ),
            8 => (format!("/unban {name}"), Request::Unban { name }),
            _ => (format!("/unmute {name}"), Request::Unmute { name }),
        };
        let line = line.trim_end().to_owned();
        self.note(format!("node {n}: operator {conn:?} types {line}"));
        self.totals.moderations += 1;
        self.request(n, conn, &line, &request);
    }

    /// The admin API of a random node: an action, or a question.
    fn admin(&mut self) {
        let n = self.rng.below(NODES);
        if self.stalled(n) {
            return;
        }
        let name = self.target();
        let minutes = self.rng.chance(85).then(|| self.rng.range(1, 8));
        let by = self.rng.chance(50).then(|| "api".to_owned());
        let request = match self.rng.below(8) {
            0 => AdminRequest::Kick {
                name,
                reason: None,
                by,
            },
            1 | 2 => AdminRequest::Ban {
                name,
                minutes,
                reason: Some("api".into()),
                by,
            },
            3 => AdminRequest::Mute { name, minutes, by },
            4 => AdminRequest::Unban { name, by },
            5 => AdminRequest::Unmute { name, by },
            6 => AdminRequest::Notice {
                text: "be nice".into(),
                by,
            },
            _ => AdminRequest::Online,
        };
        self.note(format!("node {n}: the admin API asks {request:?}"));
        self.totals.moderations += 1;
        let reply = self.nodes[n].room.handle_admin(ts(self.now), request);
        self.note(format!("node {n}: the admin API is told {reply:?}"));
        self.drain(n);
    }

    /// A name to moderate: mostly someone online on some node, else any name typed.
    fn target(&mut self) -> String {
        let online: Vec<String> = self
            .clients
            .values()
            .filter_map(|c| c.name.clone())
            .collect();
        if !online.is_empty() && self.rng.chance(70) {
            let name = self
                .rng
                .pick(&online.iter().map(String::as_str).collect::<Vec<_>>());
            // Now and then in another case.
            return if self.rng.chance(20) {
                name.to_uppercase()
            } else {
                name.to_owned()
            };
        }
        self.rng.pick(NAMES).replace(' ', "")
    }

    /// A request from a joined client, on its wire.
    fn request(&mut self, n: usize, conn: ConnId, line: &str, request: &Request) {
        let json = serde_json::to_value(request).expect("a request as JSON");
        self.send(n, conn, line, json);
    }

    /// The bans and mutes node `n` holds.
    fn bans(&self, n: usize) -> Sanctions {
        let mut all = Sanctions::default();
        for s in self.nodes[n].room.sanctions() {
            all.insert(s);
        }
        all
    }

    /// Node `n` does something with a public line of `from` (`what`): it must not hold a mute
    /// on `from` that has not ended.
    fn check_unmuted(&self, n: usize, from: &str, what: &str) {
        let held = self.bans(n);
        let mute = held.mute_on(from, self.now);
        assert!(
            mute.is_none(),
            "node {n} {what} {from}, whom it holds muted: {mute:?}"
        );
    }

    // -----------------------------------------------------------------------------------------
    // Faults.

    fn partition(&mut self) {
        let n = self.rng.below(NODES);
        if self.nodes[n].partitioned {
            return;
        }
        self.note(format!("node {n} is cut off from the engine"));
        self.nodes[n].partitioned = true;
        self.troubled.insert(self.nodes[n].name.clone(), true);
        if self.nodes[n].session && !self.stalled(n) {
            self.lose(n, true);
        }
    }

    fn end_partition(&mut self) {
        let cut: Vec<usize> = (0..NODES).filter(|&n| self.nodes[n].partitioned).collect();
        if cut.is_empty() {
            return;
        }
        let n = self.rng.pick(&cut);
        self.note(format!("node {n} reaches the engine again"));
        self.nodes[n].partitioned = false;
        self.nodes[n].next_retry = self.now + self.rng.range(0, RETRY);
        if self.rng.chance(50) && self.reachable(n) && !self.nodes[n].session {
            self.snapshot(n);
        }
    }

    fn stall(&mut self) {
        let n = self.rng.below(NODES);
        if self.stalled(n) {
            return;
        }
        let d = self.rng.range(1_000, 25_000);
        self.note(format!("node {n} stalls for {d} ms"));
        self.nodes[n].stalled_until = Some(self.now + d);
        self.troubled.insert(self.nodes[n].name.clone(), true);
    }

    /// The node's process goes on after a stall.
    fn unstall(&mut self, n: usize) {
        self.note(format!("node {n} goes on after its stall"));
        self.nodes[n].stalled_until = None;
        let node = &self.nodes[n];
        if node.session && (!self.reachable(n) || node.generation != self.engine.generation) {
            self.lose(n, false);
        }
    }

    fn crash(&mut self) {
        let n = self.rng.below(NODES);
        let old = self.nodes[n].name.clone();
        self.note(format!("node {n} ({old}) crashes"));
        self.totals.crashes += 1;
        // Its lease is never renewed: it has trouble for good.
        self.troubled.insert(old, true);
        let (incarnation, partitioned) = (self.nodes[n].incarnation + 1, self.nodes[n].partitioned);
        let conns: Vec<ConnId> = self
            .clients
            .keys()
            .filter(|(i, _)| *i == n)
            .map(|&(_, c)| c)
            .collect();
        for conn in conns {
            self.gone(n, conn);
        }
        self.nodes[n] = Node::new(n, incarnation, &self.config);
        self.nodes[n].partitioned = partitioned;
        if self.reachable(n) {
            self.snapshot(n);
        } else {
            // The driver gives up waiting for the engine: alone from the start.
            self.nodes[n].room.handle_link_down(ts(self.now));
            self.drain(n);
            self.nodes[n].next_retry = self.now + RETRY;
        }
    }

    fn pause(&mut self) {
        if self.paused_until.is_some() {
            return;
        }
        let d = self.rng.range(1_000, 30_000);
        self.note(format!("the engine pauses for {d} ms"));
        self.totals.pauses += 1;
        self.paused_until = Some(self.now + d);
        for n in 0..NODES {
            if self.nodes[n].session && !self.stalled(n) {
                self.lose(n, true);
            }
        }
    }

    fn restart(&mut self) {
        self.note("the engine restarts empty".to_owned());
        self.totals.restarts += 1;
        self.engine.restart();
        for n in 0..NODES {
            if self.nodes[n].session && !self.stalled(n) {
                self.lose(n, false);
            }
        }
    }

    /// The engine carries out a node's next publish twice: the driver sent it again after a
    /// timeout that hid its outcome.
    fn duplicate(&mut self) {
        let n = self.rng.below(NODES);
        let node = &self.nodes[n];
        if !node.session || self.stalled(n) {
            return;
        }
        let Some(p) = node.outbox.front().cloned() else {
            return;
        };
        if matches!(p, Publish::Tell { .. }) {
            return; // A PUBLISH is not retried.
        }
        self.note(format!(
            "node {n}'s next publish is carried out twice: {p:?}"
        ));
        self.totals.duplicates += 1;
        self.execute(n, p, false);
        self.process(n, 1);
    }

    // -----------------------------------------------------------------------------------------
    // The drivers.

    /// The node's link is lost: what it had sent is refused as busy (some was carried out all
    /// the same, if `ambiguous`), and the room goes on alone.
    fn lose(&mut self, n: usize, ambiguous: bool) {
        self.note(format!("node {n} loses contact"));
        let node = &mut self.nodes[n];
        node.session = false;
        node.next_retry = self.now + RETRY;
        let outbox: Vec<Publish> = std::mem::take(&mut node.outbox).into();
        let split = self.rng.below(outbox.len() + 1);
        let (in_flight, queued) = outbox.split_at(split);
        for p in in_flight {
            if ambiguous && self.rng.chance(30) {
                self.totals.ambiguous += 1;
                self.execute(n, p.clone(), false);
            }
            self.refuse(n, p.clone(), Refusal::Busy);
        }
        self.nodes[n].room.handle_link_down(ts(self.now));
        self.drain(n);
        for p in queued {
            self.refuse(n, p.clone(), Refusal::Busy);
        }
    }

    /// The driver tells the room that `publish` was refused; a leave is dropped (the next
    /// snapshot releases whoever is gone).
    fn refuse(&mut self, n: usize, publish: Publish, refusal: Refusal) {
        if matches!(publish, Publish::Release { .. }) {
            return;
        }
        if let Publish::Say { origin, .. } = &publish {
            self.nodes[n].says.remove(origin);
        }
        self.note(format!("node {n}: refused {refusal:?}: {publish:?}"));
        self.nodes[n]
            .room
            .handle_refused(ts(self.now), publish, refusal);
        self.drain(n);
    }

    /// The node gets in contact (at start, after a loss, or resyncing after the log forgot
    /// it): a beat, a snapshot, then it reads from there.
    fn snapshot(&mut self, n: usize) {
        let name = self.nodes[n].name.clone();
        let was = self.nodes[n].session;
        self.note(format!(
            "node {n} takes a snapshot{}",
            if was { " (resync)" } else { "" }
        ));
        if was {
            self.totals.resyncs += 1;
        } else {
            self.totals.heals += 1;
        }
        self.engine.beat(self.now, &name);
        self.troubled.insert(name, false);
        let snapshot = self.engine.snapshot(self.now, self.config.history);
        self.check_reaped();
        let node = &mut self.nodes[n];
        node.session = true;
        node.generation = self.engine.generation;
        node.cursor = self.engine.log.len();
        node.next_beat = self.now + BEAT;
        node.next_reap = self.now;
        if snapshot.epoch == node.epoch {
            node.expect = snapshot
                .recent
                .iter()
                .filter(|m| m.seq >= node.next_seq)
                .cloned()
                .collect();
            let skipped = node.expect.front().map_or(snapshot.seq + 1, |m| m.seq);
            if skipped > node.next_seq {
                self.totals.snapshot_gaps += 1;
            }
        } else {
            node.epoch = snapshot.epoch;
            node.applied = snapshot.recent.clone();
            node.next_seq = snapshot.recent.last().map_or(1, |m| m.seq + 1);
            node.expect.clear();
        }
        node.replaying = true;
        node.line_sender = None;
        node.held = snapshot
            .sanctions
            .iter()
            .map(|s| ((s.kind, name_key(&s.name)), s.clone()))
            .collect();
        let seq = snapshot.seq;
        node.room.handle_snapshot(ts(self.now), snapshot);
        self.drain(n);
        let node = &mut self.nodes[n];
        node.replaying = false;
        assert!(
            node.expect.is_empty(),
            "node {n} did not apply the snapshot's messages {:?}",
            node.expect
        );
        node.next_seq = node.next_seq.max(seq + 1);
        assert_eq!(
            node.room.next_seq(),
            seq + 1,
            "node {n} does not number on after the snapshot's last seq"
        );
    }

    /// The engine carries out node `n`'s next `k` publishes.
    fn process(&mut self, n: usize, k: usize) {
        for _ in 0..k {
            let node = &mut self.nodes[n];
            if !node.session || node.stalled_until.is_some() {
                return;
            }
            let Some(p) = node.outbox.pop_front() else {
                return;
            };
            self.execute(n, p, true);
        }
    }

    /// The script (or PUBLISH) for `publish`; its outcome told to the room if `reply`.
    fn execute(&mut self, n: usize, publish: Publish, reply: bool) {
        let node = self.nodes[n].name.clone();
        let now = self.now;
        let refusal = match publish.clone() {
            Publish::Claim {
                conn,
                key,
                look,
                name,
            } => self.engine.claim(now, &node, conn, &key, &look, &name),
            Publish::Say {
                conn,
                origin,
                key,
                from,
                text,
            } => self
                .engine
                .say(now, &node, conn, &key, &from, &text, origin),
            Publish::Release {
                conn, key, reason, ..
            } => {
                self.engine.release(now, &node, conn, &key, reason);
                Reply::Ok
            }
            Publish::Moderate { moderation, .. } => self.engine.moderate(now, &node, moderation),
            Publish::Tell {
                node: to_node,
                from_conn,
                from,
                to_key,
                to,
                text,
            } => {
                let target = (0..NODES).find(|&i| {
                    let t = &self.nodes[i];
                    t.name == to_node
                        && t.session
                        && t.stalled_until.is_none()
                        && t.generation == self.engine.generation
                });
                let heard = target.is_some_and(|i| {
                    let heard =
                        self.nodes[i]
                            .room
                            .handle_told(ts(now), &to_key, from, text.clone());
                    self.drain(i);
                    heard
                });
                if heard {
                    self.totals.tells_heard += 1;
                }
                if reply {
                    self.nodes[n]
                        .room
                        .handle_tell_result(ts(now), from_conn, to, text, heard);
                    self.drain(n);
                }
                Reply::Ok
            }
        };
        self.check_reaped();
        if !reply {
            return;
        }
        match refusal {
            Reply::Ok | Reply::Duplicate => {}
            Reply::Taken => self.refuse(n, publish, Refusal::Taken),
            Reply::LooksLike(holder) => self.refuse(n, publish, Refusal::LooksLike(holder)),
            Reply::NotMember => self.refuse(n, publish, Refusal::NotMember),
            Reply::Muted => self.refuse(n, publish, Refusal::Muted),
            Reply::Lapsed | Reply::NoEpoch => {
                self.note(format!("node {n}'s {publish:?} finds it lapsed"));
                let refusal = self.lapsed.clone();
                self.refuse(n, publish, refusal);
                if self.nodes[n].session {
                    self.snapshot(n);
                }
            }
        }
    }

    /// Node `n` reads up to `k` entries of the log.
    fn deliver(&mut self, n: usize, k: usize) {
        for _ in 0..k {
            let node = &mut self.nodes[n];
            if !node.session
                || node.stalled_until.is_some()
                || node.generation != self.engine.generation
            {
                return;
            }
            let Some(entry) = self.engine.log.get(node.cursor).cloned() else {
                return;
            };
            node.cursor += 1;
            node.line_sender = None;
            if let Logged::Message {
                seq,
                from,
                text,
                node: sender_node,
                origin,
            } = &entry
            {
                node.expect = [ChatMessage {
                    seq: *seq,
                    from: from.clone(),
                    text: text.clone(),
                }]
                .into();
                if *sender_node == node.name {
                    let sender = node.says.remove(origin);
                    node.line_sender = sender.filter(|&c| {
                        self.clients
                            .get(&(n, c))
                            .is_some_and(|c| c.wire == Wire::Line)
                    });
                }
            }
            if let Logged::Moderated(m) = &entry {
                match m {
                    Moderation::Sanction(s) => {
                        node.held.insert((s.kind, name_key(&s.name)), s.clone());
                    }
                    Moderation::Lift { kind, name, .. } => {
                        node.held.remove(&(*kind, name_key(name)));
                    }
                    _ => {}
                }
            }
            let node = &mut self.nodes[n];
            node.room.handle_logged(ts(self.now), entry.clone());
            self.drain(n);
            let node = &self.nodes[n];
            assert!(
                node.expect.is_empty(),
                "node {n} did not apply {entry:?} (expected {:?})",
                node.expect
            );
        }
    }

    fn beat(&mut self, n: usize) {
        let name = self.nodes[n].name.clone();
        let (lapsed, epoch) = self.engine.beat(self.now, &name);
        self.troubled.insert(name, false);
        if lapsed || epoch != Some(self.nodes[n].epoch) {
            self.note(format!(
                "node {n}'s beat: forgotten by the log (lapsed {lapsed})"
            ));
            self.snapshot(n);
        }
    }

    fn check_reaped(&mut self) {
        for node in std::mem::take(&mut self.engine.reaped) {
            self.totals.reaped += 1;
            self.note(format!("the engine reaps {node}"));
            assert!(
                self.troubled.get(&node).copied().unwrap_or(false),
                "{node} was reaped though it beat in time and had no trouble of its own \
                 (an engine pause must not reap)"
            );
        }
        self.totals.compensated += std::mem::take(&mut self.engine.compensated);
    }

    /// Time passes: beats, reaps, reconnections and the rooms' timers, in their order; then
    /// the nodes' publishes reach the engine and the nodes read the log.
    fn advance(&mut self, by: u64) {
        let target = self.now + by;
        for _ in 0..100_000 {
            match self.next_event() {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.fire();
                }
                _ => break,
            }
        }
        self.now = target;
        self.fire();
        self.churn(true);
    }

    /// The engine carries out the nodes' publishes and the nodes read the log, one at a time
    /// in a random interleaving (so a node may read another's join before its own claim is
    /// answered); until all is done, or, if `lag`, now and then before.
    fn churn(&mut self, lag: bool) {
        loop {
            let engine_len = self.engine.log.len();
            let mut work = Vec::new();
            for (n, node) in self.nodes.iter().enumerate() {
                let running = node.session
                    && node.stalled_until.is_none()
                    && node.generation == self.engine.generation;
                if running && !node.outbox.is_empty() {
                    work.push((n, true));
                }
                if running && node.cursor < engine_len {
                    work.push((n, false));
                }
            }
            if work.is_empty() || (lag && self.rng.chance(self.lag)) {
                return;
            }
            match self.rng.pick(&work) {
                (n, true) => self.process(n, 1),
                (n, false) => self.deliver(n, 1),
            }
        }
    }

    fn next_event(&self) -> Option<u64> {
        let mut times = Vec::new();
        times.extend(self.paused_until);
        for (n, node) in self.nodes.iter().enumerate() {
            if let Some(t) = node.stalled_until {
                times.push(t);
                continue;
            }
            if node.session {
                times.push(node.next_beat);
                times.push(node.next_reap);
            } else if self.reachable(n) {
                times.push(node.next_retry);
            }
            times.extend(node.room.poll_timeout().map(ms));
        }
        times.into_iter().min()
    }

    fn fire(&mut self) {
        let now = self.now;
        if self.paused_until.is_some_and(|t| t <= now) {
            self.note("the engine goes on after its pause".to_owned());
            self.paused_until = None;
            for n in 0..NODES {
                if !self.nodes[n].session {
                    self.nodes[n].next_retry = now + self.rng.range(0, RETRY);
                }
            }
        }
        for n in 0..NODES {
            if self.nodes[n].stalled_until.is_some_and(|t| t <= now) {
                self.unstall(n);
            }
            if self.stalled(n) {
                continue;
            }
            if self.nodes[n].session && self.nodes[n].generation != self.engine.generation {
                self.lose(n, false);
            }
            if self.nodes[n].session && self.nodes[n].next_beat <= now {
                self.nodes[n].next_beat = now + BEAT;
                self.beat(n);
            }
            if self.nodes[n].session && self.nodes[n].next_reap <= now {
                self.nodes[n].next_reap = now + REAP;
                self.engine.reap(now);
                self.check_reaped();
            }
            if !self.nodes[n].session && self.nodes[n].next_retry <= now {
                if self.reachable(n) {
                    self.snapshot(n);
                } else {
                    self.nodes[n].next_retry = now + RETRY;
                }
            }
            if self.nodes[n]
                .room
                .poll_timeout()
                .is_some_and(|t| ms(t) <= now)
            {
                self.nodes[n].room.handle_timeout(ts(now));
                self.drain(n);
            }
        }
    }

    /// Everything heals and the room comes to rest: every node in contact, every publish
    /// carried out, every entry read, every digest out.
    fn settle(&mut self) {
        self.note("everything heals and settles".to_owned());
        if self.paused_until.take().is_some() {
            for node in &mut self.nodes {
                node.next_retry = self.now;
            }
        }
        for n in 0..NODES {
            self.nodes[n].partitioned = false;
            if self.stalled(n) {
                self.unstall(n);
            }
        }
        for _ in 0..4 {
            self.settle_once();
            // Users listed in doubt leave once the grace is over, if not claimed again.
            let grace = Config::default().cluster_grace.as_millis() as u64;
            let doubt = self
                .nodes
                .iter()
                .any(|node| node.room.in_doubt() > 0)
                .then_some(self.now + grace);
            let due = self
                .nodes
                .iter()
                .filter_map(|node| node.room.presence_due().map(ms))
                .chain(doubt)
                .max();
            match due {
                Some(due) => self.advance(due.saturating_sub(self.now) + 1),
                None => break,
            }
        }
        self.settle_once();
        assert!(self.quiet(), "the room did not come to rest");
    }

    fn settle_once(&mut self) {
        for round in 0.. {
            assert!(round < 200, "the room does not settle");
            let mut busy = false;
            for n in 0..NODES {
                if self.nodes[n].session && self.nodes[n].generation != self.engine.generation {
                    self.lose(n, false);
                }
                if !self.nodes[n].session {
                    self.snapshot(n);
                    busy = true;
                }
            }
            let before = (
                self.engine.log.len(),
                self.nodes.iter().map(|n| n.outbox.len()).sum::<usize>(),
            );
            self.churn(false);
            busy |= before
                != (
                    self.engine.log.len(),
                    self.nodes.iter().map(|n| n.outbox.len()).sum::<usize>(),
                );
            for n in 0..NODES {
                let node = &self.nodes[n];
                if node.session
                    && (!self.engine.live(&node.name, self.now)
                        || self.engine.epoch != Some(node.epoch))
                {
                    self.beat(n);
                    busy = true;
                }
            }
            if !busy {
                break;
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // What the rooms say.

    fn drain(&mut self, n: usize) {
        let mut refused = Vec::new();
        while let Some(out) = self.nodes[n].room.poll_output() {
            match out {
                Output::Send { conn, data } => {
                    let text = String::from_utf8(data.to_vec()).expect("UTF-8");
                    self.receive(n, conn, &text);
                }
                Output::Close { conn, reason } => {
                    if matches!(reason, CloseReason::Kicked | CloseReason::Banned) {
                        self.totals.put_out += 1;
                    }
                    assert!(
                        self.clients.contains_key(&(n, conn)),
                        "node {n} closes {conn:?}, which is not open"
                    );
                    self.gone(n, conn);
                }
                Output::Log(record) => self.record(n, record),
                Output::Sanctions(all) => panic!("node {n} in cluster mode stored {all:?}"),
                Output::Publish(p) => {
                    if let Publish::Say { from, .. } = &p {
                        self.check_unmuted(n, from, "publishes a line of");
                    }
                    let node = &mut self.nodes[n];
                    if let Publish::Say { conn, origin, .. } = &p {
                        node.says.insert(*origin, *conn);
                    }
                    if node.session {
                        node.outbox.push_back(p);
                    } else {
                        // The driver hands it straight back: the link is down.
                        refused.push(p);
                    }
                }
            }
        }
        self.finish_awaiting(n);
        for (action, name) in std::mem::take(&mut self.nodes[n].put_out) {
            let key = name_key(&name);
            let still = self.clients.iter().find(|((i, _), c)| {
                *i == n && c.name.as_deref().map(name_key) == Some(key.clone())
            });
            assert!(
                still.is_none(),
                "node {n} applied {action:?} of {name}, and {:?} is still in as {:?}",
                still.map(|(k, _)| k),
                still.and_then(|(_, c)| c.name.clone())
            );
        }
        for (&(i, conn), c) in self.clients.iter_mut() {
            if i == n
                && let Some(owed) = c.history.take()
            {
                assert!(
                    owed.is_none(),
                    "node {n}'s {conn:?} was owed the history {owed:?}"
                );
            }
        }
        for p in refused {
            self.refuse(n, p, Refusal::Busy);
        }
    }

    fn record(&mut self, n: usize, record: LogRecord) {
        if std::env::var("CLUSTER_SIM_DEBUG").is_ok() {
            eprintln!("#{} node {n} logs {record:?}", self.step);
        }
        match record {
            LogRecord::Message(m) => self.logged_message(n, m),
            LogRecord::Local { from, text } => {
                assert!(
                    !self.nodes[n].session,
                    "node {n} logged {from}'s {text} as local while in contact"
                );
                self.check_unmuted(n, &from, "says locally a line of");
            }
            LogRecord::Moderation { action } => match action {
                Moderation::Kick { name, .. } => self.nodes[n].put_out.push((Action::Kick, name)),
                // A ban over by the time it is applied puts nobody out.
                Moderation::Sanction(s) if s.kind == SanctionKind::Ban && s.until > self.now => {
                    self.nodes[n].put_out.push((Action::Ban, s.name));
                }
                _ => {}
            },
            LogRecord::Join { .. } | LogRecord::Leave { .. } | LogRecord::OpRefused { .. } => {}
        }
    }

    /// Node `n` applied `m`: it is the log's, the one it was given, and each of its joined
    /// clients gets it now.
    fn logged_message(&mut self, n: usize, m: ChatMessage) {
        self.finish_awaiting(n);
        self.totals.applied += 1;
        let node = &mut self.nodes[n];
        assert!(node.session, "node {n} applied {m:?} out of contact");
        assert_eq!(
            self.engine.truth.get(&(node.epoch, m.seq)),
            Some(&m),
            "node {n} applied a message that is not the log's"
        );
        if !node.replaying {
            assert_eq!(m.seq, node.next_seq, "node {n} applied {m:?} out of order");
            self.check_unmuted(n, &m.from, "delivers a line of");
        }
        let node = &mut self.nodes[n];
        assert_eq!(
            node.expect.pop_front().as_ref(),
            Some(&m),
            "node {n} applied a message it was not given"
        );
        assert!(
            node.tokens.insert(m.text.clone()),
            "node {n} applied {m:?}, said once, a second time"
        );
        node.next_seq = m.seq + 1;
        node.applied.push(m.clone());
        let keep = self.config.history.max(1);
        if node.applied.len() > 2 * keep + 64 {
            let cut = node.applied.len() - keep;
            node.applied.drain(..cut);
        }
        let sender = node.line_sender;
        let to: BTreeSet<ConnId> = self
            .clients
            .iter()
            .filter(|((i, c), client)| *i == n && client.name.is_some() && Some(*c) != sender)
            .map(|(&(_, c), _)| c)
            .collect();
        self.nodes[n].awaiting = Some((m, to));
    }

    fn finish_awaiting(&mut self, n: usize) {
        if let Some((m, left)) = self.nodes[n].awaiting.take() {
            assert!(
                left.is_empty(),
                "node {n}'s {left:?} did not get {m:?}, which the node applied"
            );
        }
    }

    fn receive(&mut self, n: usize, conn: ConnId, text: &str) {
        let Some(client) = self.clients.get(&(n, conn)) else {
            panic!("node {n} sent {text:?} to {conn:?}, which is not open");
        };
        let events = match client.wire {
            Wire::Json => vec![
                json::decode_event(text)
                    .unwrap_or_else(|e| panic!("node {n} sent bad JSON {text:?}: {e}")),
            ],
            Wire::Line => self.parse_line_wire(text),
        };
        for event in events {
            if std::env::var("CLUSTER_SIM_DEBUG").is_ok() {
                eprintln!("#{} node {n} {conn:?} <- {event:?}", self.step);
            }
            self.event(n, conn, event);
        }
    }

    /// What the simulation reads of the line wire: the prompt, welcomes, messages by their
    /// unique texts, contact lost and back.
    fn parse_line_wire(&self, text: &str) -> Vec<Event> {
        let message = |line: &str| -> Option<Event> {
            let (from, t) = line.split_once(": ")?;
            if from.starts_with(['[', '*', '-'])
                || !t.starts_with('t')
                || !t[1..].bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            Some(match self.engine.tokens.get(t) {
                Some(at) => Event::Message(self.engine.truth[at].clone()),
                None => Event::LocalMessage {
                    from: from.to_owned(),
                    text: t.to_owned(),
                },
            })
        };
        if text == PROMPT {
            vec![Event::Prompt]
        } else if text == "You are now an operator.\n" {
            vec![Event::Operator]
        } else if text == "You are muted.\n" {
            vec![Event::error(chat_core::ErrorCode::Muted, "You are muted.")]
        } else if let Some(rest) = text.strip_prefix("You are banned from this room for ") {
            let minutes = rest.split(' ').next().and_then(|m| m.parse().ok());
            vec![Event::Banned {
                minutes: minutes.expect("minutes"),
            }]
        } else if text == LOST {
            vec![Event::Degraded]
        } else if text == BACK {
            vec![Event::Restored { epoch: 0 }]
        } else if let Some(rest) = text.strip_prefix("Welcome, ") {
            let name = rest.split('!').next().unwrap_or_default().to_owned();
            vec![Event::Welcome {
                name,
                count: 0,
                online: Vec::new(),
                epoch: 0,
            }]
        } else if text.starts_with("--- Recent messages") {
            let messages = text
                .lines()
                .skip(1)
                .take_while(|l| *l != HISTORY_FOOTER)
                .filter_map(message)
                .filter_map(|e| match e {
                    Event::Message(m) => Some(m),
                    _ => None,
                })
                .collect();
            vec![Event::History {
                messages,
                gap: false,
            }]
        } else {
            message(text.trim_end_matches('\n')).into_iter().collect()
        }
    }

    fn event(&mut self, n: usize, conn: ConnId, event: Event) {
        match &event {
            Event::Welcome { name, .. } => {
                let peer = self.clients[&(n, conn)].peer;
                let ban = self.bans(n);
                let held = ban
                    .ban_on_name(name, self.now)
                    .or_else(|| ban.ban_on_address(peer, self.now));
                assert!(
                    held.is_none(),
                    "node {n} let {conn:?} in as {name} from {peer:?}, though it holds {held:?}"
                );
            }
            Event::Operator => {
                self.totals.operators += 1;
                if let Some(c) = self.clients.get_mut(&(n, conn)) {
                    c.operator = true;
                }
            }
            Event::Banned { .. } => self.totals.turned_away += 1,
            Event::Error {
                code: chat_core::ErrorCode::Muted,
                ..
            } => self.totals.muted += 1,
            _ => {}
        }
        let session = self.nodes[n].session;
        let node_epoch = self.nodes[n].epoch;
        let client = self.clients.get_mut(&(n, conn)).expect("an open client");
        let json = client.wire == Wire::Json;
        if let Some(owed) = client.history.take() {
            match &event {
                Event::History { messages, gap } => {
                    assert_eq!(
                        Some((messages.clone(), *gap)),
                        owed,
                        "node {n}'s {conn:?} got the wrong history (resume {:?})",
                        client.resume
                    );
                }
                _ => assert!(
                    owed.is_none(),
                    "node {n}'s {conn:?} was owed the history {owed:?}, got {event:?}"
                ),
            }
        }
        match event {
            Event::Prompt => {
                if client.name.take().is_some() {
                    self.totals.bounces += 1;
                }
                client.asking = false;
                client.roster.clear();
            }
            Event::Welcome {
                ref name, epoch, ..
            } => {
                assert!(client.name.is_none(), "node {n}'s {conn:?} welcomed twice");
                self.totals.joins += 1;
                client.name = Some(name.clone());
                client.asking = false;
                // A new welcome: its history starts the order again.
                client.last_seen = None;
                if json {
                    assert_eq!(epoch, node_epoch, "a welcome names another epoch");
                    client.welcome_epoch = epoch;
                    client.roster.apply(&event);
                    let resume = client.resume;
                    client.last_seq = resume.filter(|r| r.epoch == epoch).map(|r| r.seq);
                    if resume.is_some() {
                        self.totals.resumes += 1;
                    }
                    let owed = self.owed_history(n, resume);
                    if owed.as_ref().is_some_and(|(_, gap)| *gap) {
                        self.totals.resume_gaps += 1;
                    }
                    let client = self.clients.get_mut(&(n, conn)).expect("an open client");
                    client.history = Some(owed);
                }
            }
            Event::History { messages, .. } => {
                assert!(client.name.is_some(), "a history before the welcome");
                for m in messages {
                    let at = (node_epoch, m.seq);
                    if json {
                        client.last_seq = Some(m.seq);
                    }
                    if client.wire == Wire::Line {
                        // The line wire's history is read by text: its place in the order.
                        let at = self.engine.tokens[&m.text];
                        assert!(client.last_seen < Some(at), "history out of order");
                        client.last_seen = Some(at);
                    } else {
                        assert!(client.last_seen < Some(at), "history out of order");
                        client.last_seen = Some(at);
                    }
                }
            }
            Event::Message(m) => {
                assert!(
                    client.name.is_some(),
                    "node {n}'s {conn:?} got {m:?} at the prompt"
                );
                let at = self.engine.tokens[&m.text];
                assert!(
                    client.last_seen < Some(at),
                    "node {n}'s {conn:?} got {m:?} after {:?}: a duplicate or out of order",
                    client.last_seen
                );
                client.last_seen = Some(at);
                if json {
                    client.last_seq = Some(m.seq);
                }
                let awaiting = self.nodes[n].awaiting.as_mut();
                let expected = awaiting.is_some_and(|(want, to)| *want == m && to.remove(&conn));
                assert!(
                    expected,
                    "node {n}'s {conn:?} got {m:?}, which the node did not just apply for it"
                );
            }
            Event::LocalMessage { from, text } => {
                assert!(
                    !session,
                    "node {n}'s {conn:?} got {from}'s {text} as local while in contact"
                );
            }
            Event::Degraded => assert!(!session, "told contact was lost while in contact"),
            Event::Restored { .. } => assert!(session, "told contact is back while out of contact"),
            e @ (Event::Joined { .. } | Event::Left { .. } | Event::Sanctioned { .. }) if json => {
                // A kick or ban line is told at once, even of someone whose join is still
                // gathered in a digest on its way.
                let gathering = matches!(e, Event::Sanctioned { .. })
                    && self.nodes[n].room.presence_due().is_some();
                let client = self.clients.get_mut(&(n, conn)).expect("an open client");
                let complete = client.roster.is_complete() && !gathering;
                let changed = client.roster.apply(&e);
                assert!(
                    changed || !complete,
                    "node {n}'s {conn:?} was told {e:?}, which its roster {:?} already says",
                    client.roster.names()
                );
            }
            e @ (Event::Presence { .. } | Event::Who { .. }) if json => {
                client.roster.apply(&e);
            }
            _ => {}
        }
    }

    /// The history a JSON client joining node `n` now with `resume` must be sent, if any.
    fn owed_history(&self, n: usize, resume: Option<Resume>) -> Option<(Vec<ChatMessage>, bool)> {
        let node = &self.nodes[n];
        let h = self.config.history;
        let ring: Vec<ChatMessage> = node.applied[node.applied.len().saturating_sub(h)..].to_vec();
        let last = node.next_seq - 1;
        let (messages, gap) = match resume {
            None => (ring, false),
            Some(r) if r.epoch == node.epoch && r.seq <= last => {
                let missed = (last - r.seq) as usize;
                let held = missed <= ring.len();
                let want: Vec<ChatMessage> = if held {
                    (r.seq + 1..=last)
                        .map(|s| self.engine.truth[&(node.epoch, s)].clone())
                        .collect()
                } else {
                    Vec::new()
                };
                if held && ring[ring.len() - missed..] == want[..] {
                    // Still held: exactly the missed messages, and no gap.
                    (want, false)
                } else {
                    let after = ring.into_iter().filter(|m| m.seq > r.seq).collect();
                    (after, true)
                }
            }
            Some(r) => {
                assert!(
                    !(node.session && r.epoch == node.epoch),
                    "node {n}, in contact at seq {last}, finds the resume point {r:?} of its \
                     own epoch in its future"
                );
                (ring, true)
            }
        };
        (!messages.is_empty() || gap).then_some((messages, gap))
    }

    // -----------------------------------------------------------------------------------------
    // Invariants.

    /// Every node in contact, alive in the engine and caught up; nothing on its way.
    fn quiet(&self) -> bool {
        self.paused_until.is_none()
            && self.nodes.iter().all(|node| {
                node.session
                    && node.stalled_until.is_none()
                    && !node.partitioned
                    && node.generation == self.engine.generation
                    && node.outbox.is_empty()
                    && node.cursor == self.engine.log.len()
                    && self.engine.live(&node.name, self.now)
                    && self.engine.epoch == Some(node.epoch)
                    // Users listed in doubt after the log began afresh: until their nodes
                    // claim them again or the grace runs out, the roster is not the log's.
                    && node.room.in_doubt() == 0
            })
    }

    fn check_invariants(&mut self) {
        self.engine.check();
        self.check_sanctions();
        for (n, node) in self.nodes.iter().enumerate() {
            assert_eq!(node.room.next_seq(), node.next_seq, "node {n}'s next seq");
            assert_eq!(node.room.config().epoch, node.epoch, "node {n}'s epoch");
        }
        for (&(n, conn), client) in &self.clients {
            assert_eq!(
                self.nodes[n].room.name_of(conn),
                client.name.as_deref(),
                "node {n}'s {conn:?}: the room and its client disagree on its name"
            );
        }
        // Every joined user of a node in contact and alive is the log's member, or on its way.
        for (n, node) in self.nodes.iter().enumerate() {
            let live = node.session
                && node.stalled_until.is_none()
                && node.generation == self.engine.generation
                && self.engine.live(&node.name, self.now)
                && self.engine.epoch == Some(node.epoch);
            if !live {
                continue;
            }
            for (&(i, conn), client) in &self.clients {
                let Some(name) = client.name.as_deref().filter(|_| i == n) else {
                    continue;
                };
                let key = name_key(name);
                let held = self
                    .engine
                    .members
                    .get(&key)
                    .is_some_and(|h| h.node == node.name && h.conn == conn && h.name == name);
                let claiming = node.outbox.iter().any(
                    |p| matches!(p, Publish::Claim { conn: c, key: k, .. } if *c == conn && *k == key),
                );
                // Kicked, and written out by the kick, whose entry the node has yet to apply.
                let kicked = self.engine.log[node.cursor.min(self.engine.log.len())..]
                    .iter()
                    .any(|e| matches!(e, Logged::Moderated(Moderation::Kick { name, .. }) if name_key(name) == key));
                assert!(
                    held || claiming || kicked,
                    "node {n}'s {conn:?} is in as {name}, which the log gives to {:?}",
                    self.engine.members.get(&key)
                );
            }
        }
        if self.quiet() {
            self.totals.quiet += 1;
            self.check_quiet();
        }
    }

    /// No user of any node is in under a name that node holds banned (by its key or look);
    /// every node in contact holds exactly the bans and mutes of the log as far as it applied
    /// it (the snapshot's and the entries' since; a ban's address aside, which the banned
    /// user's node adds).
    fn check_sanctions(&self) {
        for (n, node) in self.nodes.iter().enumerate() {
            let held: Vec<Sanction> = node
                .room
                .sanctions()
                .into_iter()
                .filter(|s| s.until > self.now)
                .collect();
            if held.is_empty() && node.held.values().all(|s| s.until <= self.now) {
                continue;
            }
            // As `Sanctions::ban_on_name` matches: the name's key, or its look.
            let banned: BTreeSet<String> = held
                .iter()
                .filter(|s| s.kind == SanctionKind::Ban)
                .flat_map(|s| [cached_key(&s.name), cached_look(&s.name)])
                .collect();
            let here = self.clients.range((n, ConnId(0))..(n + 1, ConnId(0)));
            for (&(_, conn), client) in here {
                let Some(name) = client.name.as_deref() else {
                    continue;
                };
                let key = cached_key(name);
                let ban = held.iter().find(|s| {
                    s.kind == SanctionKind::Ban
                        && (cached_key(&s.name) == key || cached_look(&s.name) == cached_look(name))
                });
                assert!(
                    !banned.contains(&key) && !banned.contains(&cached_look(name)),
                    "node {n}'s {conn:?} is in as {name}, which the node holds banned: {ban:?}"
                );
            }
            let live = node.session
                && node.stalled_until.is_none()
                && node.generation == self.engine.generation;
            if !live {
                continue;
            }
            let strip = |s: &Sanction| {
                (
                    s.kind,
                    cached_key(&s.name),
                    s.until,
                    s.by.clone(),
                    s.reason.clone(),
                )
            };
            let room: BTreeSet<_> = held.iter().map(strip).collect();
            let log: BTreeSet<_> = node
                .held
                .values()
                .filter(|s| s.until > self.now)
                .map(strip)
                .collect();
            assert_eq!(
                room, log,
                "node {n}, in contact, holds other bans and mutes than the log it applied"
            );
        }
    }

    fn check_quiet(&self) {
        let members: Vec<String> = self
            .engine
            .members
            .values()
            .map(|h| h.name.clone())
            .collect();
        // A banned user whose node crashed before the log had its leave stays in the log until
        // the lease runs out: a node whose users were told of the ban no longer lists them.
        let mut bans = Sanctions::default();
        for s in self.engine.sanctions.values() {
            bans.insert(s.clone());
        }
        let optional: BTreeSet<&str> = self
            .engine
            .members
            .values()
            .filter(|h| self.nodes.iter().all(|node| node.name != h.node))
            .filter(|h| bans.ban_on_name(&h.name, self.now).is_some())
            .map(|h| h.name.as_str())
            .collect();
        for (n, node) in self.nodes.iter().enumerate() {
            let online = node.room.online();
            let listed: Vec<&String> = members
                .iter()
                .filter(|m| online.contains(m) || !optional.contains(m.as_str()))
                .collect();
            assert_eq!(
                online.iter().collect::<Vec<_>>(),
                listed,
                "at rest, node {n}'s roster is not the log's {members:?}"
            );
            for (&(i, conn), client) in &self.clients {
                if i != n || client.wire != Wire::Json || client.name.is_none() {
                    continue;
                }
                if client.roster.is_complete() && node.room.presence_due().is_none() {
                    assert_eq!(
                        client.roster.names(),
                        &online[..],
                        "at rest, node {n}'s {conn:?} was told another roster"
                    );
                }
            }
        }
        for h in self.engine.members.values() {
            if let Some(n) = (0..NODES).find(|&n| self.nodes[n].name == h.node) {
                assert_eq!(
                    self.nodes[n].room.name_of(h.conn),
                    Some(h.name.as_str()),
                    "at rest, the log holds {h:?}, who is not in on node {n}"
                );
            }
        }
    }
}
