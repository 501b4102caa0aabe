//! A room driven by any sequence of operations, shared by the property test
//! (`core/tests/properties.rs`, proptest) and the fuzz target `room` (`fuzz/`, arbitrary).
//!
//! Every operation goes through the [`Harness`], which checks its invariants after each
//! drain (nothing sent after a close, whole UTF-8 lines, well-formed JSON events, no control
//! characters, `poll_timeout` never in the past, every JSON client's roster equal to the
//! room's whenever no digest is pending). [`run`] adds the room's own: names unique regardless
//! of case, never more connections than `max_users`, and after shutdown an empty room with
//! nothing left to wait for.

use std::time::Duration;

use chat_core::codec::json;
use chat_core::{Config, ConnId, FloodConfig, Request, Resume, Wire, name_key};

use super::Harness;

/// Names to join with: valid ones, two that differ only in case, invalid ones.
pub const NAMES: &[&str] = &[
    "ann", "Bob", "bob", "cy", "zoë", "José", "x_y-z", "ghost", "bad name", "", "a;b",
];

/// The epoch the room runs under; resumes use it or another.
pub const EPOCH: u64 = 7;

/// The room's configuration, from a few numbers; every value is in range.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct Knobs {
    pub max_users: u8,
    pub idle_secs: Option<u8>,
    pub name_secs: Option<u8>,
    pub max_line: u8,
    pub history: u8,
    pub flood: bool,
    pub announce_limit: u8,
    pub announce_interval_ms: u16,
}

impl Knobs {
    pub fn config(&self) -> Config {
        Config {
            max_users: 2 + usize::from(self.max_users % 10),
            idle_timeout: self
                .idle_secs
                .map(|s| Duration::from_secs(1 + u64::from(s))),
            name_timeout: self
                .name_secs
                .map(|s| Duration::from_secs(1 + u64::from(s))),
            max_line: 8 + usize::from(self.max_line),
            history: usize::from(self.history % 8),
            flood: self.flood.then(|| FloodConfig {
                burst: 4,
                interval: Duration::from_millis(100),
            }),
            epoch: EPOCH,
            announce_limit: usize::from(self.announce_limit % 5),
            announce_interval: Duration::from_millis(u64::from(self.announce_interval_ms)),
            // Connections here have no peer address, which no per-address limit counts.
            joins_per_minute: None,
            limit_loopback: false,
            ..Config::default()
        }
    }
}

/// Something a user means, typed on the line wire or sent as a JSON request.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Typed {
    Name(u8),
    /// A JSON join that resumes (on the line wire, just the name).
    Resume {
        name: u8,
        other_epoch: bool,
        seq: u8,
    },
    Text(String),
    Msg(u8, String),
    Who,
    Help,
    Quit,
}

/// One step. `who` picks among the connections still open (modulo their number); a step for
/// nobody, or for a wire it does not fit, does nothing.
#[derive(Clone, Debug)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    Open {
        json: bool,
    },
    Typed {
        who: u8,
        what: Typed,
    },
    /// Bytes off a line-wire socket, through its decoder; on the JSON wire, the same bytes
    /// as text (invalid UTF-8 replaced) in one message.
    Raw {
        who: u8,
        bytes: Vec<u8>,
    },
    Binary {
        who: u8,
    },
    Disconnect {
        who: u8,
        slow: bool,
    },
    Advance {
        ms: u32,
    },
    Shutdown,
}

/// Runs `ops` on a room configured by `knobs`, checking the invariants after every one.
pub fn run(knobs: &Knobs, ops: &[Op]) {
    let config = knobs.config();
    let mut h = Harness::new(config.clone());
    let mut conns: Vec<(ConnId, Wire)> = Vec::new();
    for op in ops {
        step(&mut h, &mut conns, op);
        check(&h, &config);
    }
    // Whatever is still gathered goes out, and every roster kept from it is checked.
    for _ in 0..1000 {
        let Some(due) = h.room().presence_due() else {
            break;
        };
        h.advance(due.saturating_duration_since(h.now()));
        check(&h, &config);
    }
    assert_eq!(h.room().presence_due(), None, "digests keep coming");
    h.shutdown();
    assert!(h.room().is_empty(), "the room is empty after shutdown");
    assert_eq!(
        h.room().poll_timeout(),
        None,
        "nothing to wait for after shutdown"
    );
}

fn step(h: &mut Harness, conns: &mut Vec<(ConnId, Wire)>, op: &Op) {
    let pick = |h: &Harness, conns: &mut Vec<(ConnId, Wire)>, who: u8| {
        conns.retain(|&(c, _)| !h.is_closed(c));
        (!conns.is_empty()).then(|| conns[usize::from(who) % conns.len()])
    };
    match op {
        Op::Open { json } => {
            let wire = if *json { Wire::Json } else { Wire::Line };
            let conn = h.connect(wire);
            conns.push((conn, wire));
        }
        Op::Typed { who, what } => match pick(h, conns, *who) {
            Some((conn, Wire::Line)) => {
                let mut line = typed_line(what).into_bytes();
                line.push(b'\n');
                h.raw(conn, &line);
            }
            Some((conn, Wire::Json)) => h.json(conn, &json::encode_request(&request(what))),
            None => {}
        },
        Op::Raw { who, bytes } => match pick(h, conns, *who) {
            Some((conn, Wire::Line)) => h.raw(conn, bytes),
            Some((conn, Wire::Json)) => h.json(conn, &String::from_utf8_lossy(bytes)),
            None => {}
        },
        Op::Binary { who } => {
            if let Some((conn, Wire::Json)) = pick(h, conns, *who) {
                h.binary(conn);
            }
        }
        Op::Disconnect { who, slow } => match pick(h, conns, *who) {
            Some((conn, _)) if *slow => h.too_slow(conn),
            Some((conn, Wire::Line)) => h.eof(conn),
            Some((conn, Wire::Json)) => h.drop_conn(conn),
            None => {}
        },
        // Mostly short steps; now and then far past every timeout.
        Op::Advance { ms } => h.advance(Duration::from_millis(u64::from(*ms % 400_000))),
        Op::Shutdown => {
            h.shutdown();
            conns.clear();
        }
    }
}

fn name(i: u8) -> &'static str {
    NAMES[usize::from(i) % NAMES.len()]
}

fn typed_line(what: &Typed) -> String {
    match what {
        Typed::Name(i) | Typed::Resume { name: i, .. } => name(*i).to_owned(),
        // One line: what a decoder could hand over.
        Typed::Text(text) => text.replace('\n', " "),
        Typed::Msg(i, text) => format!("/msg {} {}", name(*i), text.replace('\n', " ")),
        Typed::Who => "/who".into(),
        Typed::Help => "/help".into(),
        Typed::Quit => "/quit".into(),
    }
}

fn request(what: &Typed) -> Request {
    match what {
        Typed::Name(i) => Request::Join {
            name: name(*i).into(),
            resume: None,
        },
        Typed::Resume {
            name: i,
            other_epoch,
            seq,
        } => Request::Join {
            name: name(*i).into(),
            resume: Some(Resume {
                epoch: if *other_epoch { EPOCH + 1 } else { EPOCH },
                seq: u64::from(*seq),
            }),
        },
        Typed::Text(text) => Request::Say { text: text.clone() },
        Typed::Msg(i, text) => Request::Msg {
            to: name(*i).into(),
            text: text.clone(),
        },
        Typed::Who => Request::Who,
        Typed::Help => Request::Help,
        Typed::Quit => Request::Quit,
    }
}

/// The room's invariants that the harness does not check by itself.
fn check(h: &Harness, config: &Config) {
    let room = h.room();
    let online = room.online();
    let mut keys: Vec<String> = online.iter().map(|n| name_key(n)).collect();
    let sorted = keys.clone();
    keys.sort();
    assert_eq!(keys, sorted, "the roster is sorted regardless of case");
    keys.dedup();
    assert_eq!(
        keys.len(),
        online.len(),
        "two users share a name: {online:?}"
    );
    assert!(
        room.len() <= config.max_users,
        "{} connections over max_users {}",
        room.len(),
        config.max_users
    );
    assert!(online.len() <= room.len(), "more names than connections");
    if let Some(due) = room.presence_due() {
        assert!(due > h.now(), "a digest overdue");
    }
}
