//! The lobby: connections that are not in yet (a TLS handshake in progress, an HTTP connection
//! before its first request, a chat connection at the name prompt), their share per address
//! and overall, and which of them goes when room must be made.
//!
//! A person passes through the lobby in a moment (a handshake, a request) or a few seconds (a
//! name typed); a peer that wants to hold places without using them stays as long as it is let.
//! So those waiting are bounded apart from the connections that are in, in two ways:
//!
//! - **A share per address**: an address (an [`AddrKey`]) with `share` connections waiting has
//!   its next one refused. A household behind one NAT has a few people arriving at once, not
//!   dozens. An exempt address (loopback, a trusted proxy: one that speaks for many) has no
//!   share, and the caller says so on entry.
//! - **Room made by the address holding the most**: past `capacity` waiting in all (or when the
//!   caller says the places they take are all gone), each newcomer makes room. The one put out
//!   is the oldest waiting connection of the address that has the most waiting (on a tie, the
//!   address whose oldest has waited longest), and only if that address has two or more and
//!   its oldest has waited `grace` at least: an address's only waiting connection, such as
//!   someone typing a name, is never put out for another's, nor is a connection in the middle
//!   of what takes a person's client a moment. When nobody can be put out the newcomer still
//!   comes in: `capacity` is where making room begins, not a wall, so a crowd of people
//!   arriving from as many addresses gets in; whatever holds the places (the room's
//!   `max_users`, the listener's places) bounds them.
//!
//! A few addresses therefore hold at most about `capacity` connections waiting between them,
//! and a newcomer from another address always finds room.
//!
//! Sans-IO: each connection is entered with the time, its address's key and an item of the
//! caller's (a connection id, a handle that closes it), and the lobby hands back the items of
//! those the caller must put out. Age is the order of entry; the time only serves `grace`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::admission::AddrKey;
use crate::time::Timestamp;

/// How many may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LobbyConfig {
    /// Connections one address may have waiting at once; one more is refused. `None`: no
    /// share, only `capacity`.
    pub share: Option<usize>,
    /// Past this many waiting in all, each newcomer makes room (see the module documentation).
    pub capacity: usize,
    /// How long a connection waits before it may be put out to make room.
    pub grace: Duration,
}

/// A connection's place in the lobby; give it to [`Lobby::leave`] when the connection is in,
/// or gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

/// A connection let into the lobby.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an entry holds its place until it leaves, and one put out must be closed"]
pub struct Entered<T> {
    /// Its place.
    pub ticket: Ticket,
    /// The item of the connection put out to make room for it, which the caller must close.
    pub put_out: Option<T>,
}

/// The connections waiting. See the module documentation.
#[derive(Debug)]
pub struct Lobby<T> {
    config: LobbyConfig,
    /// The next ticket's number: tickets are numbered in the order of entry.
    next: u64,
    /// Everyone waiting, oldest first, with the key, the time and the item each came with.
    waiting: BTreeMap<Ticket, (AddrKey, Timestamp, T)>,
    /// Each key's waiting connections, oldest first; never an empty set.
    by_key: BTreeMap<AddrKey, BTreeSet<Ticket>>,
}

impl<T> Lobby<T> {
    /// Nobody waiting yet.
    pub fn new(config: LobbyConfig) -> Lobby<T> {
        Lobby {
            config,
            next: 0,
            waiting: BTreeMap::new(),
            by_key: BTreeMap::new(),
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> &LobbyConfig {
        &self.config
    }

    /// Connections waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Nobody waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Connections waiting from `key`.
    pub fn holds(&self, key: AddrKey) -> usize {
        self.by_key.get(&key).map_or(0, BTreeSet::len)
    }

    /// Whether `key` has its share waiting already: its next connection would be refused.
    pub fn is_over_share(&self, key: AddrKey) -> bool {
        self.config
            .share
            .is_some_and(|share| self.holds(key) >= share)
    }

    /// Enters a connection from `key` at `now`, with the caller's `item` for it. Unless the
    /// address is `exempt`, it is refused, and `item` handed back, when `key` has its share
    /// waiting already. Otherwise it waits; when the lobby already held `capacity` or more, or
    /// the caller says it is `crowded` (the places the waiting take are all gone), room is
    /// made first ([`Lobby::make_room`]), before the newcomer counts.
    pub fn enter(
        &mut self,
        now: Timestamp,
        key: AddrKey,
        exempt: bool,
        item: T,
        crowded: bool,
    ) -> Result<Entered<T>, T> {
        if !exempt && self.is_over_share(key) {
            return Err(item);
        }
        let put_out = if crowded || self.len() >= self.config.capacity {
            self.make_room(now)
        } else {
            None
        };
        let ticket = Ticket(self.next);
        self.next += 1;
        self.waiting.insert(ticket, (key, now, item));
        self.by_key.entry(key).or_default().insert(ticket);
        Ok(Entered { ticket, put_out })
    }

    /// The connection of `ticket` is in, or gone: it no longer waits. Its item, unless it had
    /// left already (or was put out).
    pub fn leave(&mut self, ticket: Ticket) -> Option<T> {
        let (key, _, item) = self.waiting.remove(&ticket)?;
        if let Some(tickets) = self.by_key.get_mut(&key) {
            tickets.remove(&ticket);
            if tickets.is_empty() {
                self.by_key.remove(&key);
            }
        }
        Some(item)
    }

    /// Puts one waiting connection out to make room at `now`, and returns its item for the
    /// caller to close: the oldest of the address that has the most waiting (on a tie, the one
    /// whose oldest has waited longest), among the addresses with two or more waiting whose
    /// oldest has waited `grace`. `None` when there is none such.
    pub fn make_room(&mut self, now: Timestamp) -> Option<T> {
        self.put_out(now, self.config.grace)
    }

    /// The places the waiting take are all gone (a listener has none left for a newcomer):
    /// puts out, as [`Lobby::make_room`] does but without waiting for `grace`, as many as wait
    /// beyond `capacity`, or one if none do; their items, for the caller to close. Nobody can
    /// come in otherwise, so a connection that has just arrived may go too.
    pub fn crowded(&mut self, now: Timestamp) -> Vec<T> {
        let mut put_out = Vec::new();
        while put_out.is_empty() || self.len() > self.config.capacity {
            match self.put_out(now, Duration::ZERO) {
                Some(item) => put_out.push(item),
                None => break,
            }
        }
        put_out
    }

    /// The oldest of the address with the most waiting, among those with two or more whose
    /// oldest has waited `grace`.
    fn put_out(&mut self, now: Timestamp, grace: Duration) -> Option<T> {
        let waiting = &self.waiting;
        let (_, oldest) = self
            .by_key
            .values()
            .filter_map(|tickets| Some((tickets.len(), *tickets.first()?)))
            .filter(|&(held, oldest)| {
                held >= 2
                    && waiting
                        .get(&oldest)
                        .is_some_and(|&(_, since, _)| now.saturating_duration_since(since) >= grace)
            })
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))?;
        self.leave(oldest)
    }

    /// Everyone leaves (the server stops).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.by_key.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const T0: Timestamp = Timestamp::from_secs(100);

    fn key(last: u8) -> AddrKey {
        AddrKey::V4(Ipv4Addr::new(203, 0, 113, last))
    }

    fn lobby(share: Option<usize>, capacity: usize) -> Lobby<&'static str> {
        Lobby::new(LobbyConfig {
            share,
            capacity,
            grace: Duration::ZERO,
        })
    }

    /// Enters `item` from `key` at `T0`, which must be let in; what it put out.
    fn enter(
        lobby: &mut Lobby<&'static str>,
        key: AddrKey,
        item: &'static str,
    ) -> Option<&'static str> {
        lobby
            .enter(T0, key, false, item, false)
            .expect("let in")
            .put_out
    }

    #[test]
    fn an_address_past_its_share_is_refused_and_others_are_not() {
        let mut l = lobby(Some(2), 100);
        let first = l.enter(T0, key(1), false, "a1", false).unwrap();
        enter(&mut l, key(1), "a2");
        assert_eq!(l.enter(T0, key(1), false, "a3", false), Err("a3"));
        assert!(l.is_over_share(key(1)));
        assert_eq!(
            enter(&mut l, key(2), "b1"),
            None,
            "another address is not affected"
        );
        // One of the two gets in: its place is free for the next.
        assert_eq!(l.leave(first.ticket), Some("a1"));
        assert_eq!(l.leave(first.ticket), None, "left already");
        assert_eq!(l.holds(key(1)), 1);
        assert_eq!(enter(&mut l, key(1), "a3"), None);
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn an_exempt_address_has_no_share_but_makes_room_like_any() {
        let mut l = lobby(Some(2), 4);
        for item in ["a1", "a2", "a3", "a4"] {
            assert!(
                l.enter(T0, key(1), true, item, false)
                    .unwrap()
                    .put_out
                    .is_none()
            );
        }
        assert_eq!(l.holds(key(1)), 4);
        assert_eq!(enter(&mut l, key(2), "b1"), Some("a1"));
    }

    #[test]
    fn past_capacity_the_oldest_of_the_address_with_the_most_goes() {
        let mut l = lobby(None, 6);
        for item in ["a1", "a2", "a3"] {
            enter(&mut l, key(1), item);
        }
        for item in ["b1", "b2", "b3"] {
            enter(&mut l, key(2), item);
        }
        // Full. A newcomer from a fresh address: a and b hold three each, and a's oldest has
        // waited longest.
        assert_eq!(enter(&mut l, key(3), "c1"), Some("a1"));
        assert_eq!(enter(&mut l, key(4), "d1"), Some("b1"));
        // Now a and b hold two each; a2 is older than b2.
        assert_eq!(enter(&mut l, key(5), "e1"), Some("a2"));
        assert_eq!(enter(&mut l, key(6), "f1"), Some("b2"));
        assert_eq!(l.len(), 6);
        assert_eq!((l.holds(key(1)), l.holds(key(2))), (1, 1));
    }

    #[test]
    fn an_address_with_one_waiting_is_never_put_out_and_a_crowd_still_gets_in() {
        let mut l = lobby(Some(8), 3);
        for (last, item) in [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")] {
            assert_eq!(enter(&mut l, key(last), item), None, "{item}");
        }
        assert_eq!(l.len(), 5, "past capacity, everyone alone: all let in");
        assert_eq!(l.make_room(T0), None);
        // An address that now holds two is the one to give way.
        enter(&mut l, key(4), "d2");
        assert_eq!(enter(&mut l, key(9), "z"), Some("d"));
    }

    #[test]
    fn nobody_is_put_out_before_the_grace_is_over() {
        let mut l = Lobby::new(LobbyConfig {
            share: None,
            capacity: 2,
            grace: Duration::from_secs(1),
        });
        let t = |ms| T0 + Duration::from_millis(ms);
        for (ms, item) in [(0, "a1"), (100, "a2"), (200, "a3")] {
            let entered = l.enter(t(ms), key(1), true, item, false).unwrap();
            assert_eq!(entered.put_out, None, "{item}: nobody has waited a second");
        }
        assert_eq!(l.len(), 3);
        let entered = l.enter(t(1000), key(2), false, "b1", false).unwrap();
        assert_eq!(entered.put_out, Some("a1"));
        for ms in [1001, 1002, 1003] {
            let entered = l.enter(t(ms), key(1), true, "a", false).unwrap();
            assert_eq!(entered.put_out, None, "a2 and a3 have not waited a second");
        }
        // The listener is out of places: everyone past capacity goes at once, the grace or
        // not, the oldest of the address with most first.
        assert_eq!(l.crowded(t(1010)), ["a2", "a3", "a", "a"]);
        assert_eq!(l.len(), 2);
        // At capacity, one goes when it is crowded, if one can.
        assert_eq!(l.crowded(t(1010)), Vec::<&str>::new(), "b1 and a: one each");
    }

    #[test]
    fn a_crowded_caller_makes_room_below_capacity_before_the_newcomer_counts() {
        let mut l = lobby(None, 100);
        enter(&mut l, key(1), "a1");
        let entered = l.enter(T0, key(2), false, "b1", true).unwrap();
        assert_eq!(entered.put_out, None, "nobody holds two: nobody goes");
        enter(&mut l, key(1), "a2");
        // The newcomer does not count: with a1 and a2 waiting, a's third arrival puts a1 out,
        // not itself.
        let entered = l.enter(T0, key(1), false, "a3", true).unwrap();
        assert_eq!(entered.put_out, Some("a1"));
        assert_eq!(l.holds(key(1)), 2);
    }

    #[test]
    fn a_few_addresses_hold_about_capacity_however_much_they_try() {
        let capacity = 64;
        let mut l = Lobby::new(LobbyConfig {
            share: Some(8),
            capacity,
            grace: Duration::ZERO,
        });
        let mut put_out = 0;
        let mut refused = 0;
        // 35 addresses, each opening 32 connections that never finish, one after the other.
        for last in 0..35u8 {
            for round in 0..32 {
                match l.enter(T0, key(last), false, (last, round), false) {
                    Ok(entered) => put_out += usize::from(entered.put_out.is_some()),
                    Err(_) => refused += 1,
                }
                assert!(l.len() <= capacity + 1, "{} waiting", l.len());
            }
        }
        assert!(
            refused > 0 && put_out > 0,
            "{refused} refused, {put_out} put out"
        );
        // A newcomer from elsewhere gets in, and someone else gives way.
        let newcomer = l.enter(T0, key(200), false, (200, 0), false).unwrap();
        assert!(newcomer.put_out.is_some_and(|(last, _)| last != 200));
        assert_eq!(l.holds(key(200)), 1);
    }

    #[test]
    fn clearing_empties_it() {
        let mut l = lobby(Some(1), 10);
        enter(&mut l, key(1), "a");
        l.clear();
        assert!(l.is_empty());
        assert_eq!(enter(&mut l, key(1), "a"), None);
    }
}
