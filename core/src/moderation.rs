//! Operators and moderation, as pure data and rules: the bans and mutes in force
//! ([`Sanctions`]), the bound on guessing the operator token ([`OpTries`]), the token's
//! comparison ([`token_matches`]), what an operator does ([`Moderation`]), and the admin
//! API's requests and answers ([`AdminRequest`], [`AdminReply`]).
//!
//! Time here is wall-clock Unix milliseconds, so that a ban outlives the process that made it
//! and means the same on every node: the room turns its [`Timestamp`] into it with
//! [`Config::wall_clock`](crate::Config::wall_clock).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::admission::AddrKey;
use crate::name::{look_key, name_key};
use crate::time::Timestamp;

/// Minutes a ban or mute lasts when the operator gives none.
pub const DEFAULT_MINUTES: u64 = 60;

/// The longest ban or mute: ten years, in minutes.
pub const MAX_MINUTES: u64 = 10 * 366 * 24 * 60;

/// `/op` tries one address may make in [`OP_WINDOW`].
pub const OP_TRIES: usize = 5;

/// The window [`OP_TRIES`] counts over.
pub const OP_WINDOW: Duration = Duration::from_secs(60);

/// What the API's actions are signed with on everyone's screen when the request names nobody.
pub const API_OPERATOR: &str = "admin";

/// Whether `given` is the operator secret, compared in constant time for equal lengths (the
/// length of the secret is not what a guesser lacks).
pub fn token_matches(secret: &str, given: &str) -> bool {
    let (a, b) = (secret.as_bytes(), given.as_bytes());
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The kind of a lasting sanction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SanctionKind {
    /// Turned away at the door and at the name prompt.
    Ban,
    /// Public lines reach nobody.
    Mute,
}

/// A ban or mute in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sanction {
    /// Ban or mute.
    pub kind: SanctionKind,
    /// The name as the operator typed it (cleaned) or as its user had it.
    pub name: String,
    /// A ban's address: an IPv4 address, or an IPv6 /64 (`2001:db8::/64`), as
    /// [`AddrKey`]'s `Display` writes it. Never a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// When it ends, in Unix milliseconds.
    pub until: u64,
    /// The operator who made it.
    pub by: String,
    /// Why, when the operator said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Sanction {
    /// Whole minutes left at `now_ms`, rounded up (at least 1 while it holds).
    pub fn minutes_left(&self, now_ms: u64) -> u64 {
        self.until.saturating_sub(now_ms).div_ceil(60_000).max(1)
    }

    /// The key it is stored under: its kind and the name's key.
    fn key(&self) -> (SanctionKind, String) {
        (self.kind, name_key(&self.name))
    }
}

/// The address key a ban records for `peer`: `None` for loopback, which is never banned.
pub fn ban_address(peer: Option<IpAddr>) -> Option<String> {
    let key = AddrKey::of(peer?);
    (!key.is_loopback()).then(|| key.to_string())
}

/// The bans and mutes in force, by kind and name key.
#[derive(Clone, Debug, Default)]
pub struct Sanctions {
    by_key: BTreeMap<(SanctionKind, String), Sanction>,
}

impl Sanctions {
    /// Adds or replaces the sanction of its kind on its name.
    pub fn insert(&mut self, sanction: Sanction) {
        self.by_key.insert(sanction.key(), sanction);
    }

    /// Lifts the `kind` on `name` (by its key); the one lifted, if any.
    pub fn remove(&mut self, kind: SanctionKind, name: &str) -> Option<Sanction> {
        self.by_key.remove(&(kind, name_key(name)))
    }

    /// Replaces everything with `all`, dropping those over at `now_ms`.
    pub fn replace(&mut self, all: impl IntoIterator<Item = Sanction>, now_ms: u64) {
        self.by_key.clear();
        for s in all.into_iter().filter(|s| s.until > now_ms) {
            self.insert(s);
        }
    }

    /// The ban holding `name` at `now_ms`: its name key, or its look (`b0b` when `bob` is
    /// banned).
    pub fn ban_on_name(&self, name: &str, now_ms: u64) -> Option<&Sanction> {
        let (key, look) = (name_key(name), look_key(name));
        self.by_key
            .get(&(SanctionKind::Ban, key))
            .filter(|s| s.until > now_ms)
            .or_else(|| {
                self.in_force(now_ms)
                    .find(|s| s.kind == SanctionKind::Ban && look_key(&s.name) == look)
            })
    }

    /// The ban holding `peer`'s address at `now_ms`. Loopback is never held.
    pub fn ban_on_address(&self, peer: Option<IpAddr>, now_ms: u64) -> Option<&Sanction> {
        let address = ban_address(peer)?;
        self.in_force(now_ms)
            .find(|s| s.kind == SanctionKind::Ban && s.address.as_deref() == Some(&address))
    }

    /// The mute on `name` at `now_ms`.
    pub fn mute_on(&self, name: &str, now_ms: u64) -> Option<&Sanction> {
        self.by_key
            .get(&(SanctionKind::Mute, name_key(name)))
            .filter(|s| s.until > now_ms)
    }

    /// Every sanction still in force at `now_ms`, bans first, each kind by name key.
    pub fn in_force(&self, now_ms: u64) -> impl Iterator<Item = &Sanction> {
        self.by_key.values().filter(move |s| s.until > now_ms)
    }

    /// Everything held, over or not: what a driver stores.
    pub fn all(&self) -> Vec<Sanction> {
        self.by_key.values().cloned().collect()
    }

    /// When the next one ends, in Unix milliseconds.
    pub fn next_end(&self) -> Option<u64> {
        self.by_key.values().map(|s| s.until).min()
    }

    /// Drops those over at `now_ms`; whether any was.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let before = self.by_key.len();
        self.by_key.retain(|_, s| s.until > now_ms);
        self.by_key.len() != before
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Who a `/op` try is counted against: the address (an IPv6 /64 as one), or the connection
/// when the driver gave no address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TryKey {
    /// The address.
    Addr(AddrKey),
    /// A connection without an address, by its id.
    Conn(u64),
}

/// The `/op` tries of each address in the last [`OP_WINDOW`]: at most [`OP_TRIES`], so that
/// the secret cannot be guessed by trying. Loopback counts too.
#[derive(Clone, Debug, Default)]
pub struct OpTries {
    tries: BTreeMap<TryKey, VecDeque<Timestamp>>,
}

impl OpTries {
    /// Counts a try by `key` at `now`; `false` when it is one too many (it is not counted).
    pub fn charge(&mut self, key: TryKey, now: Timestamp) -> bool {
        if self.tries.len() > 4096 {
            // Many addresses at once: forget those whose window has passed.
            self.tries.retain(|_, t| {
                t.back()
                    .is_some_and(|&last| now.saturating_duration_since(last) < OP_WINDOW)
            });
        }
        let tries = self.tries.entry(key).or_default();
        while tries
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= OP_WINDOW)
        {
            tries.pop_front();
        }
        if tries.len() >= OP_TRIES {
            return false;
        }
        tries.push_back(now);
        true
    }
}

/// The admin API's wrong bearer tokens by address: [`OpTries`] counts them (5 a minute), and
/// an address that has had one too many is held off, right token or not, for [`OP_WINDOW`]
/// from then: otherwise it could go on guessing, and a right guess would still be answered.
#[derive(Clone, Debug, Default)]
pub struct WrongTokens {
    counted: OpTries,
    held_off: BTreeMap<TryKey, Timestamp>,
}

impl WrongTokens {
    /// Addresses held off at once before those whose minute is over are forgotten.
    const TIDY: usize = 4096;

    /// Whether `key` is held off at `now`.
    pub fn held_off(&mut self, key: TryKey, now: Timestamp) -> bool {
        match self.held_off.get(&key) {
            Some(&until) if now < until => true,
            Some(_) => {
                self.held_off.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Counts a wrong token from `key`; `false` when it was one too many, and `key` is now
    /// held off.
    pub fn failed(&mut self, key: TryKey, now: Timestamp) -> bool {
        if self.counted.charge(key, now) {
            return true;
        }
        if self.held_off.len() >= Self::TIDY {
            self.held_off.retain(|_, until| now < *until);
        }
        self.held_off.insert(key, now + OP_WINDOW);
        false
    }
}

/// What an operator does, as the room applies it, and (cluster mode) as the shared log
/// carries it to every node. Tagged `action` (the message log's record is tagged `type`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Moderation {
    /// `name` became an operator.
    Operator {
        /// The operator's name.
        name: String,
    },
    /// `name` is put out.
    Kick {
        /// Whom.
        name: String,
        /// By whom.
        by: String,
        /// Why, when said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A ban or mute begins (or is made again, replacing the one before); a ban puts its
    /// name out.
    Sanction(Sanction),
    /// The `kind` on `name` is lifted.
    Lift {
        /// Ban or mute.
        kind: SanctionKind,
        /// Whose.
        name: String,
        /// By whom.
        by: String,
    },
    /// A notice to everyone, from the admin API.
    Notice {
        /// The text, cleaned.
        text: String,
        /// Who posted it.
        by: String,
    },
}

/// A request of the admin API, as the driver carries it into the room
/// (`Room::handle_admin`). Names are compared as the room compares them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Who is online.
    Online,
    /// The bans and mutes in force.
    Sanctions,
    /// Put `name` out.
    Kick {
        /// Whom.
        name: String,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
        /// Signed as; [`API_OPERATOR`] when absent.
        #[serde(default)]
        by: Option<String>,
    },
    /// Ban `name` (and its address, if online) for `minutes`.
    Ban {
        /// Whom.
        name: String,
        /// How long; [`DEFAULT_MINUTES`] when absent.
        #[serde(default)]
        minutes: Option<u64>,
        /// Why.
        #[serde(default)]
        reason: Option<String>,
        /// Signed as.
        #[serde(default)]
        by: Option<String>,
    },
    /// Lift the ban on `name`.
    Unban {
        /// Whose.
        name: String,
        /// Signed as.
        #[serde(default)]
        by: Option<String>,
    },
    /// Mute `name` for `minutes`.
    Mute {
        /// Whom.
        name: String,
        /// How long.
        #[serde(default)]
        minutes: Option<u64>,
        /// Signed as.
        #[serde(default)]
        by: Option<String>,
    },
    /// Lift the mute on `name`.
    Unmute {
        /// Whose.
        name: String,
        /// Signed as.
        #[serde(default)]
        by: Option<String>,
    },
    /// Say `text` to everyone.
    Notice {
        /// The text.
        text: String,
        /// Signed as.
        #[serde(default)]
        by: Option<String>,
    },
}

impl AdminRequest {
    /// Whom the request says it is signed by, if it says.
    pub fn by(&self) -> Option<&str> {
        match self {
            AdminRequest::Online | AdminRequest::Sanctions => None,
            AdminRequest::Kick { by, .. }
            | AdminRequest::Ban { by, .. }
            | AdminRequest::Unban { by, .. }
            | AdminRequest::Mute { by, .. }
            | AdminRequest::Unmute { by, .. }
            | AdminRequest::Notice { by, .. } => by.as_deref(),
        }
    }
}

/// Someone online, as the admin API lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUser {
    /// The name.
    pub name: String,
    /// `line` or `json`; absent for a user of another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<String>,
    /// The node it is connected to (cluster mode), else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its address, when known here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// When it joined, in Unix milliseconds, when known here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Whether it is an operator.
    pub operator: bool,
}

/// The room's answer to an [`AdminRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminReply {
    /// Who is online, sorted by name.
    Online {
        /// Everyone.
        users: Vec<OnlineUser>,
    },
    /// The bans and mutes in force.
    Sanctions {
        /// Each one.
        sanctions: Vec<Sanction>,
    },
    /// Done (in cluster mode: handed to the shared log, which carries it to every node).
    Done,
    /// Nobody online has that name (kick), or nothing to lift (unban, unmute).
    NotFound {
        /// The sentence.
        message: String,
    },
    /// The request cannot be done as asked.
    Invalid {
        /// The sentence.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(name: &str, address: Option<&str>, until: u64) -> Sanction {
        Sanction {
            kind: SanctionKind::Ban,
            name: name.into(),
            address: address.map(Into::into),
            until,
            by: "op".into(),
            reason: None,
        }
    }

    #[test]
    fn the_token_must_match_whole() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3cre"));
        assert!(!token_matches("s3cret", "s3cret "));
        assert!(!token_matches("s3cret", "S3cret"));
        assert!(!token_matches("", ""));
    }

    #[test]
    fn a_ban_holds_the_name_in_any_case_and_look_until_it_ends() {
        let mut s = Sanctions::default();
        s.insert(ban("Bob", None, 1_000));
        assert!(s.ban_on_name("bob", 999).is_some());
        assert!(s.ban_on_name("BOB", 999).is_some());
        assert!(s.ban_on_name("B0b", 999).is_some(), "looks like bob");
        assert!(s.ban_on_name("bob", 1_000).is_none(), "over");
        assert!(s.ban_on_name("carol", 0).is_none());
    }

    #[test]
    fn a_ban_holds_an_ipv6_address_by_its_64_and_never_loopback() {
        let mut s = Sanctions::default();
        let peer: IpAddr = "2001:db8:1:2::7".parse().unwrap();
        s.insert(ban("bob", ban_address(Some(peer)).as_deref(), 1_000));
        let neighbour: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::7".parse().unwrap();
        assert!(s.ban_on_address(Some(neighbour), 0).is_some());
        assert!(s.ban_on_address(Some(other), 0).is_none());
        assert_eq!(ban_address(Some("127.0.0.1".parse().unwrap())), None);
        assert_eq!(ban_address(Some("::1".parse().unwrap())), None);
        assert_eq!(ban_address(None), None);
    }

    #[test]
    fn minutes_left_round_up() {
        let b = ban("bob", None, 60_001);
        assert_eq!(b.minutes_left(0), 2);
        assert_eq!(b.minutes_left(1), 1);
        assert_eq!(b.minutes_left(60_000), 1);
    }

    #[test]
    fn five_tries_a_minute_per_address() {
        let mut tries = OpTries::default();
        let a = TryKey::Addr(AddrKey::of("203.0.113.9".parse().unwrap()));
        let b = TryKey::Addr(AddrKey::of("203.0.113.10".parse().unwrap()));
        let t = Timestamp::from_secs(100);
        for _ in 0..OP_TRIES {
            assert!(tries.charge(a, t));
        }
        assert!(!tries.charge(a, t + Duration::from_secs(59)));
        assert!(tries.charge(b, t), "another address has its own");
        assert!(tries.charge(a, t + Duration::from_secs(60)));
    }

    #[test]
    fn a_moderation_record_is_one_flat_object() {
        let record = crate::LogRecord::Moderation {
            action: Moderation::Kick {
                name: "bob".into(),
                by: "op".into(),
                reason: None,
            },
        };
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(
            line,
            r#"{"type":"moderation","action":"kick","name":"bob","by":"op"}"#
        );
        let back: crate::LogRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn an_address_past_its_tries_is_held_off_for_a_minute() {
        let mut tries = WrongTokens::default();
        let key = TryKey::Addr(AddrKey::of("203.0.113.9".parse().unwrap()));
        let other = TryKey::Addr(AddrKey::of("203.0.113.10".parse().unwrap()));
        let t = Timestamp::from_secs(100);
        for _ in 0..OP_TRIES {
            assert!(!tries.held_off(key, t));
            assert!(tries.failed(key, t));
        }
        assert!(!tries.failed(key, t), "the sixth in the minute");
        let later = t + Duration::from_secs(59);
        assert!(tries.held_off(key, later), "even with the right token");
        assert!(!tries.held_off(other, later));
        assert!(!tries.held_off(key, t + OP_WINDOW));
        assert!(tries.failed(key, t + OP_WINDOW), "a new minute");
    }
}
