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
//!   dozens.
//! - **Room made by the address holding the most**: past `capacity` waiting in all (or when the
//!   driver says the places they take are all gone), each newcomer makes room. The one put out
//!   is the oldest waiting connection of the address that has the most waiting (on a tie, the
//!   address whose oldest has waited longest), and only if that address has two or more: an
//!   address's only waiting connection, such as someone typing a name, is never put out for
//!   another's. When no address has two, nobody is put out and the newcomer still comes in:
//!   `capacity` is where making room begins, not a wall, so a crowd of people arriving from as
//!   many addresses gets in; whatever holds the places (the room's `max_users`, the listener's
//!   places) bounds them.
//!
//! A few addresses therefore hold at most about `capacity` connections waiting between them,
//! and a newcomer from another address always finds room. Exempt addresses (loopback, a
//! trusted proxy) are not entered at all: like the door's limits, the lobby is about addresses,
//! and a proxy speaks for many.
//!
//! Sans-IO: each connection is entered with its address's key and an item of the caller's (a
//! connection id, a handle that closes it), and the lobby hands back the items of those the
//! caller must put out. No clock is needed: age is the order of entry.

use std::collections::{BTreeMap, BTreeSet};

use crate::admission::AddrKey;

/// How many may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LobbyConfig {
    /// Connections one address may have waiting at once; one more is refused. `None`: no
    /// share, only `capacity`.
    pub share: Option<usize>,
    /// Past this many waiting in all, each newcomer makes room (see the module documentation).
    pub capacity: usize,
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
    /// Everyone waiting, oldest first, with the key and item each came with.
    waiting: BTreeMap<Ticket, (AddrKey, T)>,
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

    /// Enters a connection from `key`, with the caller's `item` for it. Refused, and `item`
    /// handed back, when `key` has its share waiting already. Otherwise it waits; when the
    /// lobby already held `capacity` or more, or the caller says it is `crowded` (the places
    /// the waiting take are all gone), room is made first ([`Lobby::make_room`]), before the
    /// newcomer counts.
    pub fn enter(&mut self, key: AddrKey, item: T, crowded: bool) -> Result<Entered<T>, T> {
        if self.is_over_share(key) {
            return Err(item);
        }
        let put_out = if crowded || self.len() >= self.config.capacity {
            self.make_room()
        } else {
            None
        };
        let ticket = Ticket(self.next);
        self.next += 1;
        self.waiting.insert(ticket, (key, item));
        self.by_key.entry(key).or_default().insert(ticket);
        Ok(Entered { ticket, put_out })
    }

    /// The connection of `ticket` is in, or gone: it no longer waits. Its item, unless it had
    /// left already (or was put out).
    pub fn leave(&mut self, ticket: Ticket) -> Option<T> {
        let (key, item) = self.waiting.remove(&ticket)?;
        if let Some(tickets) = self.by_key.get_mut(&key) {
            tickets.remove(&ticket);
            if tickets.is_empty() {
                self.by_key.remove(&key);
            }
        }
        Some(item)
    }

    /// Puts one waiting connection out to make room, and returns its item for the caller to
    /// close: the oldest of the address that has the most waiting (on a tie, the one whose
    /// oldest has waited longest), if that address has two or more. `None` when no address
    /// has more than one waiting.
    pub fn make_room(&mut self) -> Option<T> {
        let (_, oldest) = self
            .by_key
            .values()
            .filter_map(|tickets| Some((tickets.len(), *tickets.first()?)))
            .filter(|&(held, _)| held >= 2)
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

    fn key(last: u8) -> AddrKey {
        AddrKey::V4(Ipv4Addr::new(203, 0, 113, last))
    }

    fn lobby(share: Option<usize>, capacity: usize) -> Lobby<&'static str> {
        Lobby::new(LobbyConfig { share, capacity })
    }

    /// Enters `item` from `key`, which must be let in; what it put out.
    fn enter(
        lobby: &mut Lobby<&'static str>,
        key: AddrKey,
        item: &'static str,
    ) -> Option<&'static str> {
        lobby.enter(key, item, false).expect("let in").put_out
    }

    #[test]
    fn an_address_past_its_share_is_refused_and_others_are_not() {
        let mut l = lobby(Some(2), 100);
        let first = l.enter(key(1), "a1", false).unwrap();
        enter(&mut l, key(1), "a2");
        assert_eq!(l.enter(key(1), "a3", false), Err("a3"));
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
        assert_eq!(l.make_room(), None);
        // An address that now holds two is the one to give way.
        enter(&mut l, key(4), "d2");
        assert_eq!(enter(&mut l, key(9), "z"), Some("d"));
    }

    #[test]
    fn a_crowded_caller_makes_room_below_capacity_before_the_newcomer_counts() {
        let mut l = lobby(None, 100);
        enter(&mut l, key(1), "a1");
        let entered = l.enter(key(2), "b1", true).unwrap();
        assert_eq!(entered.put_out, None, "nobody holds two: nobody goes");
        enter(&mut l, key(1), "a2");
        // The newcomer does not count: with a1 and a2 waiting, a's third arrival puts a1 out,
        // not itself.
        assert_eq!(l.enter(key(1), "a3", true).unwrap().put_out, Some("a1"));
        assert_eq!(l.holds(key(1)), 2);
    }

    #[test]
    fn a_few_addresses_hold_about_capacity_however_much_they_try() {
        let capacity = 64;
        let mut l = Lobby::new(LobbyConfig {
            share: Some(8),
            capacity,
        });
        let mut put_out = 0;
        let mut refused = 0;
        // 35 addresses, each opening 32 connections that never finish, one after the other.
        for last in 0..35u8 {
            for round in 0..32 {
                match l.enter(key(last), (last, round), false) {
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
        let newcomer = l.enter(key(200), (200, 0), false).unwrap();
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
