//! The room's scripts in Redis (`lua/`), their keys and replies, and the log's entries read
//! back: every change to the shared room is one atomic script, so that two nodes asking at
//! the same instant are put in one order by Redis's one thread.

use chat_core::cluster::{Logged, Member};
use chat_core::moderation::{Moderation, Sanction, SanctionKind};
use chat_core::{ChatMessage, ConnId, LeaveReason, name_key};
use redis::{Cmd, Script, Value};

/// The log keeps at least this many entries (`MAXLEN ~`): far more than any `--history`
/// replayed from it, so that a node that fell behind a little catches up from the log.
pub const LOG_BOUND: u64 = 10_000;

/// The room's keys, all with the same hash tag so that a Redis Cluster keeps them on one
/// shard (the scripts touch several at once).
#[derive(Clone, Debug)]
pub struct Keys {
    pub meta: String,
    pub log: String,
    pub members: String,
    pub looks: String,
    pub nodes: String,
    /// The bans and mutes in force (HASH: `<kind>:<name key>` to the sanction as JSON).
    pub sanctions: String,
    /// When each of them ends (ZSET: the same fields, scored by Unix ms).
    pub sanction_ends: String,
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let key = |name: &str| format!("{{{prefix}}}:{name}");
        Keys {
            meta: key("meta"),
            log: key("log"),
            members: key("members"),
            looks: key("looks"),
            nodes: key("nodes"),
            sanctions: key("sanctions"),
            sanction_ends: key("sanction_ends"),
            prefix: prefix.to_owned(),
        }
    }

    /// The channel on which `node` hears the private messages for its users.
    pub fn channel(&self, node: &str) -> String {
        format!("{{{}}}:node:{node}", self.prefix)
    }

    fn all(&self) -> [&str; 7] {
        [
            &self.meta,
            &self.log,
            &self.members,
            &self.looks,
            &self.nodes,
            &self.sanctions,
            &self.sanction_ends,
        ]
    }
}

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The scripts, each with the prelude.
pub struct Scripts {
    keys: Keys,
    /// A silence longer than this (ms) means Redis was stopped: leases move on by its length.
    freeze_ms: u64,
    claim: Script,
    say: Script,
    release: Script,
    beat: Script,
    reap: Script,
    retire: Script,
    snapshot: Script,
    moderate: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// Every script's own part, in the order of [`Scripts`]' fields.
const BODIES: [&str; 8] = [
    include_str!("lua/claim.lua"),
    include_str!("lua/say.lua"),
    include_str!("lua/release.lua"),
    include_str!("lua/beat.lua"),
    include_str!("lua/reap.lua"),
    include_str!("lua/retire.lua"),
    include_str!("lua/snapshot.lua"),
    include_str!("lua/moderate.lua"),
];

impl Scripts {
    pub fn new(keys: Keys, freeze_ms: u64) -> Scripts {
        let [claim, say, release, beat, reap, retire, snapshot, moderate] = BODIES.map(script);
        Scripts {
            keys,
            freeze_ms,
            claim,
            say,
            release,
            beat,
            reap,
            retire,
            snapshot,
            moderate,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// `SCRIPT LOAD` of every script, so that the calls after it can be `EVALSHA` in one
    /// pipeline (Redis forgets its scripts when it restarts: each new connection loads them).
    pub fn load_commands(&self) -> Vec<Cmd> {
        BODIES
            .iter()
            .map(|body| {
                let mut cmd = redis::cmd("SCRIPT");
                cmd.arg("LOAD").arg(format!("{PRELUDE}\n{body}"));
                cmd
            })
            .collect()
    }

    fn call(&self, script: &Script, args: &[&str]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        let keys = self.keys.all();
        cmd.arg(script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(key);
        }
        cmd.arg(self.freeze_ms).arg(LOG_BOUND);
        for arg in args {
            cmd.arg(*arg);
        }
        cmd
    }

    pub fn claim(&self, node: &str, conn: ConnId, key: &str, look: &str, name: &str) -> Cmd {
        let conn = conn.0.to_string();
        self.call(&self.claim, &[node, &conn, key, look, name])
    }

    pub fn say(
        &self,
        node: &str,
        conn: ConnId,
        key: &str,
        from: &str,
        text: &str,
        origin: u64,
    ) -> Cmd {
        let (conn, origin) = (conn.0.to_string(), origin.to_string());
        let mute = sanction_field(SanctionKind::Mute, from);
        self.call(&self.say, &[node, &conn, key, from, text, &origin, &mute])
    }

    pub fn release(&self, node: &str, conn: ConnId, key: &str, reason: LeaveReason) -> Cmd {
        let conn = conn.0.to_string();
        self.call(&self.release, &[node, &conn, key, &reason_name(reason)])
    }

    pub fn beat(&self, node: &str, lease_ms: u64) -> Cmd {
        self.call(&self.beat, &[node, &lease_ms.to_string()])
    }

    pub fn reap(&self) -> Cmd {
        self.call(&self.reap, &[])
    }

    pub fn retire(&self, node: &str, reason: LeaveReason) -> Cmd {
        self.call(&self.retire, &[node, &reason_name(reason)])
    }

    pub fn snapshot(&self, epoch_seen: u64, seq_seen: u64, count: usize) -> Cmd {
        let (epoch, seq, count) = (
            epoch_seen.to_string(),
            seq_seen.to_string(),
            count.to_string(),
        );
        self.call(&self.snapshot, &[&epoch, &seq, &count])
    }

    /// An operator's action, for the log; a ban or mute is also kept until it ends, a lift
    /// drops the one it names, and a kick writes its user out of the room.
    pub fn moderate(&self, node: &str, moderation: &Moderation) -> Cmd {
        let action = serde_json::to_string(moderation).unwrap_or_default();
        let kicked = match moderation {
            Moderation::Kick { name, .. } => name_key(name),
            _ => String::new(),
        };
        let reason = reason_name(LeaveReason::Kicked);
        let (field, until, sanction) = match moderation {
            Moderation::Sanction(s) => (
                sanction_field(s.kind, &s.name),
                s.until.to_string(),
                serde_json::to_string(s).unwrap_or_default(),
            ),
            Moderation::Lift { kind, name, .. } => {
                (sanction_field(*kind, name), String::new(), String::new())
            }
            Moderation::Operator { .. } | Moderation::Kick { .. } | Moderation::Notice { .. } => {
                (String::new(), String::new(), String::new())
            }
        };
        self.call(
            &self.moderate,
            &[node, &action, &field, &until, &sanction, &kicked, &reason],
        )
    }
}

/// Where the sanctions hash keeps the `kind` on `name`: its kind and the name's key, so that
/// a ban replaces the ban before it on that name, whatever its spelling.
pub fn sanction_field(kind: SanctionKind, name: &str) -> String {
    let kind = match kind {
        SanctionKind::Ban => "ban",
        SanctionKind::Mute => "mute",
    };
    format!("{kind}:{}", name_key(name))
}

/// What a claim or a message got from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Logged (a message: with its seq); or a claim already held by that connection.
    Ok(Option<u64>),
    /// The name is held by a user of a live node.
    Taken,
    /// A look-alike name is held: by this one.
    LooksLike(String),
    /// A message logged before (a repeat after an ambiguous timeout): nothing appended.
    Duplicate,
    /// The sender is not (or no longer) the member of its name.
    NotMember,
    /// The sender is muted.
    Muted,
    /// This node's lease ran out: it must resync before it speaks for anyone.
    Lapsed,
    /// The log has no epoch (Redis came back empty): resync.
    NoEpoch,
}

/// Reads a claim's or a message's reply.
pub fn reply(value: &Value) -> Option<Reply> {
    let items = array(value)?;
    let word = text(items.first()?)?;
    Some(match word.as_str() {
        "ok" => Reply::Ok(items.get(1).and_then(number)),
        "taken" => Reply::Taken,
        "looks" => Reply::LooksLike(text(items.get(1)?)?),
        "dup" => Reply::Duplicate,
        "notmember" => Reply::NotMember,
        "muted" => Reply::Muted,
        "lapsed" => Reply::Lapsed,
        "noepoch" => Reply::NoEpoch,
        _ => return None,
    })
}

/// A beat's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beat {
    /// The node had been reaped: its users are out of the log.
    pub lapsed: bool,
    /// The log's epoch; `None` before the first snapshot made one.
    pub epoch: Option<u64>,
    /// The log's last entry.
    pub top: String,
}

pub fn beat(value: &Value) -> Option<Beat> {
    let items = array(value)?;
    Some(Beat {
        lapsed: number(items.first()?)? == 1,
        epoch: text(items.get(1)?)?.parse().ok(),
        top: text(items.get(2)?)?,
    })
}

/// A snapshot and the log entry it was taken at (the reader goes on after it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub snapshot: chat_core::cluster::Snapshot,
    pub top: String,
}

pub fn snapshot(value: &Value) -> Option<Taken> {
    let items = array(value)?;
    let epoch = text(items.first()?)?.parse().ok()?;
    let seq = text(items.get(1)?)?.parse().ok()?;
    let top = text(items.get(2)?)?;
    let flat = array(items.get(3)?)?;
    let mut members: Vec<Member> = flat
        .chunks_exact(2)
        .filter_map(|pair| member(&text(&pair[0])?, &text(&pair[1])?))
        .collect();
    members.sort_by(|a, b| a.key.cmp(&b.key));
    let recent = array(items.get(4)?)?
        .chunks_exact(3)
        .filter_map(|m| {
            Some(ChatMessage {
                seq: text(&m[0])?.parse().ok()?,
                from: text(&m[1])?,
                text: text(&m[2])?,
            })
        })
        .collect();
    // One this server cannot read (written by a newer one) is left out, not fatal.
    let sanctions = array(items.get(5)?)?
        .iter()
        .filter_map(|v| serde_json::from_str::<Sanction>(&text(v)?).ok())
        .collect();
    let snapshot = chat_core::cluster::Snapshot {
        epoch,
        seq,
        members,
        recent,
        sanctions,
    };
    Some(Taken { snapshot, top })
}

/// A member as `members` holds it: `node\tconn\tlook\tname`.
fn member(key: &str, value: &str) -> Option<Member> {
    let mut parts = value.splitn(4, '\t');
    let node = parts.next()?.to_owned();
    let conn = ConnId(parts.next()?.parse().ok()?);
    let _look = parts.next()?;
    let name = parts.next()?.to_owned();
    Some(Member {
        key: key.to_owned(),
        name,
        node,
        conn,
    })
}

/// One entry of the log stream, by its id and fields; `None` for one this server does not
/// understand (skipped, not fatal: a newer node may write more kinds).
pub fn entry(id: &str, fields: &[(String, String)]) -> Option<Logged> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let seq: u64 = id.split_once('-')?.0.parse().ok()?;
    match field("t")?.as_str() {
        "m" => {
            let origin = field("o")?;
            let (node, origin) = origin.rsplit_once('\t')?;
            Some(Logged::Message {
                seq,
                from: field("n")?,
                text: field("x")?,
                node: node.to_owned(),
                origin: origin.parse().ok()?,
            })
        }
        "j" => Some(Logged::Joined {
            key: field("K")?,
            name: field("n")?,
            node: field("o")?,
            conn: ConnId(field("c")?.parse().ok()?),
        }),
        "l" => Some(Logged::Left {
            key: field("K")?,
            name: field("n")?,
            reason: reason(&field("r")?).unwrap_or(LeaveReason::Lost),
        }),
        "d" => serde_json::from_str(&field("x")?)
            .ok()
            .map(Logged::Moderated),
        _ => None,
    }
}

/// An `XREAD` reply: every entry's id, with the entry when this server understands it.
/// `nil` (the block timed out with nothing new) is no entries.
pub fn read(value: &Value) -> Vec<(String, Option<Logged>)> {
    let mut out = Vec::new();
    let Some(streams) = array(value) else {
        return out;
    };
    for stream in streams {
        let Some(entries) = array(stream).and_then(|s| array(s.get(1)?)) else {
            continue;
        };
        for e in entries {
            let Some(pair) = array(e) else { continue };
            let Some(id) = pair.first().and_then(text) else {
                continue;
            };
            let fields: Vec<(String, String)> = pair
                .get(1)
                .and_then(array)
                .map(|flat| {
                    flat.chunks_exact(2)
                        .filter_map(|kv| Some((text(&kv[0])?, text(&kv[1])?)))
                        .collect()
                })
                .unwrap_or_default();
            let logged = entry(&id, &fields);
            out.push((id, logged));
        }
    }
    out
}

/// A leave reason's name in the log: its name on the JSON wire and in the message log.
fn reason_name(reason: LeaveReason) -> String {
    match serde_json::to_value(reason) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "lost".to_owned(),
    }
}

fn reason(name: &str) -> Option<LeaveReason> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

fn array(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn entries_read_back_as_the_room_applies_them() {
        let message = entry(
            "42-0",
            &fields(&[("t", "m"), ("n", "ann"), ("x", "hi"), ("o", "n1@7\t9")]),
        );
        assert_eq!(
            message,
            Some(Logged::Message {
                seq: 42,
                from: "ann".into(),
                text: "hi".into(),
                node: "n1@7".into(),
                origin: 9
            })
        );
        let joined = entry(
            "42-3",
            &fields(&[
                ("t", "j"),
                ("K", "ann"),
                ("n", "Ann"),
                ("o", "n1"),
                ("c", "5"),
            ]),
        );
        assert!(matches!(
            joined,
            Some(Logged::Joined {
                conn: ConnId(5),
                ..
            })
        ));
        let left = entry(
            "42-4",
            &fields(&[("t", "l"), ("K", "ann"), ("n", "Ann"), ("r", "too_slow")]),
        );
        assert!(matches!(
            left,
            Some(Logged::Left {
                reason: LeaveReason::TooSlow,
                ..
            })
        ));
        let kick = Moderation::Kick {
            name: "bob".into(),
            by: "op".into(),
            reason: None,
        };
        let json = serde_json::to_string(&kick).expect("JSON");
        let moderated = entry("42-5", &fields(&[("t", "d"), ("x", &json), ("o", "n1")]));
        assert_eq!(moderated, Some(Logged::Moderated(kick)));
        assert_eq!(entry("42-6", &fields(&[("t", "d"), ("x", "{}")])), None);
        // Unknown kinds and broken entries are skipped, not fatal.
        assert_eq!(entry("1-0", &fields(&[("t", "z")])), None);
        assert_eq!(entry("x", &fields(&[("t", "m")])), None);
        assert_eq!(entry("1-0", &fields(&[("t", "j"), ("K", "a")])), None);
    }

    #[test]
    fn every_leave_reason_round_trips_through_its_name() {
        for r in [
            LeaveReason::Quit,
            LeaveReason::Dropped,
            LeaveReason::TooSlow,
            LeaveReason::IdleTimeout,
            LeaveReason::Shutdown,
            LeaveReason::Lost,
        ] {
            assert_eq!(reason(&reason_name(r)), Some(r));
        }
    }

    #[test]
    fn the_keys_share_one_hash_tag() {
        let keys = Keys::new("room");
        assert_eq!(keys.meta, "{room}:meta");
        assert_eq!(keys.channel("n1"), "{room}:node:n1");
        assert_eq!(keys.sanctions, "{room}:sanctions");
        assert_eq!(keys.sanction_ends, "{room}:sanction_ends");
        assert_eq!(sanction_field(SanctionKind::Ban, "CAROL"), "ban:carol");
    }
}
