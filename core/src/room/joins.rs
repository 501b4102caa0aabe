//! Joins per address: how often one address may join the room.
//!
//! Below `announce_limit` every join and leave is announced to everyone at once, so one
//! machine that joins and quits in a loop would fill every screen in a small room, two lines
//! a visit. A person joins a few times and stays; so each address (an IPv4 address, or an
//! IPv6 /64, grouped as at the door by [`AddrKey`]) may join `per_minute` times at once, and
//! then once every `60 s / per_minute`. A join past that is refused at the prompt with the
//! wait, and nobody hears of it. Loopback is exempt unless `limit_loopback`, as at the door.
//!
//! The bucket is GCRA, one timestamp per address (as in `flood.rs`). Memory is bounded: an
//! entry is kept only while its bucket is not full again, at most a minute after the
//! address's last join, and the entries are also held in time order, so that each join drops
//! those that have filled up. Past [`MAX_TRACKED`] addresses the fullest bucket is forgotten
//! first (it starts again full, which an attacker with that many addresses has anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::admission::AddrKey;
use crate::time::Timestamp;

/// Addresses remembered at most.
pub(super) const MAX_TRACKED: usize = 65_536;

/// The period the rate is counted over.
const MINUTE: Duration = Duration::from_secs(60);

/// The join buckets of every address that joined within the last minute.
#[derive(Debug, Default)]
pub(super) struct Joins {
    /// GCRA's theoretical arrival time of each address's next join: its bucket is full again
    /// from then on.
    tat: BTreeMap<AddrKey, Timestamp>,
    /// The same entries by time, the fullest bucket first.
    by_time: BTreeSet<(Timestamp, AddrKey)>,
}

impl Joins {
    /// Charges one join from `peer` at `now`, with `per_minute` joins a minute in a burst of
    /// as many; `Err` with the wait until the next one may join when the bucket is empty.
    /// Loopback is not counted unless `limit_loopback`.
    pub(super) fn charge(
        &mut self,
        per_minute: u32,
        limit_loopback: bool,
        peer: IpAddr,
        now: Timestamp,
    ) -> Result<(), Duration> {
        let key = AddrKey::of(peer);
        if per_minute == 0 || (key.is_loopback() && !limit_loopback) {
            return Ok(());
        }
        self.forget_full(now);
        let interval = MINUTE / per_minute;
        let allowance = interval.saturating_mul(per_minute - 1);
        let old = self.tat.get(&key).copied();
        let tat = old.unwrap_or(now).max(now);
        if tat > now + allowance {
            return Err(tat.saturating_duration_since(now + allowance));
        }
        if let Some(old) = old {
            self.by_time.remove(&(old, key));
        }
        let next = tat + interval;
        self.tat.insert(key, next);
        self.by_time.insert((next, key));
        while self.tat.len() > MAX_TRACKED {
            let Some((_, key)) = self.by_time.pop_first() else {
                break;
            };
            self.tat.remove(&key);
        }
        Ok(())
    }

    /// Addresses remembered.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.tat.len()
    }

    /// Drops the entries whose bucket is full again at `now`: forgetting them changes nothing.
    fn forget_full(&mut self, now: Timestamp) {
        while let Some(&(tat, key)) = self.by_time.first() {
            if tat > now {
                break;
            }
            self.by_time.pop_first();
            self.tat.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_passes_then_one_join_per_interval_with_the_wait_told() {
        let mut joins = Joins::default();
        let t0 = Timestamp::from_secs(100);
        for _ in 0..10 {
            assert_eq!(joins.charge(10, false, ip("203.0.113.5"), t0), Ok(()));
        }
        let refused = joins.charge(10, false, ip("203.0.113.5"), t0);
        assert_eq!(refused, Err(Duration::from_secs(6)));
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(
            joins.charge(10, false, ip("203.0.113.5"), t1),
            Err(Duration::from_secs(2))
        );
        // Another address has its own bucket; the first gets one join back after 6 s.
        assert_eq!(joins.charge(10, false, ip("203.0.113.6"), t1), Ok(()));
        let t2 = t0 + Duration::from_secs(6);
        assert_eq!(joins.charge(10, false, ip("203.0.113.5"), t2), Ok(()));
        assert!(joins.charge(10, false, ip("203.0.113.5"), t2).is_err());
    }

    #[test]
    fn ipv6_counts_by_its_slash_64_and_mapped_ipv4_as_ipv4() {
        let mut joins = Joins::default();
        let t = Timestamp::from_secs(1);
        assert_eq!(joins.charge(1, false, ip("2001:db8::1"), t), Ok(()));
        assert!(joins.charge(1, false, ip("2001:db8::2"), t).is_err());
        assert_eq!(joins.charge(1, false, ip("2001:db8:0:1::1"), t), Ok(()));
        assert_eq!(joins.charge(1, false, ip("198.51.100.7"), t), Ok(()));
        assert!(
            joins
                .charge(1, false, ip("::ffff:198.51.100.7"), t)
                .is_err()
        );
    }

    #[test]
    fn loopback_is_exempt_unless_asked_and_zero_means_no_limit() {
        let mut joins = Joins::default();
        let t = Timestamp::from_secs(1);
        for _ in 0..100 {
            assert_eq!(joins.charge(1, false, ip("127.0.0.1"), t), Ok(()));
            assert_eq!(joins.charge(0, true, ip("203.0.113.5"), t), Ok(()));
        }
        assert_eq!(joins.tracked(), 0);
        assert_eq!(joins.charge(1, true, ip("127.0.0.1"), t), Ok(()));
        assert!(joins.charge(1, true, ip("127.0.0.1"), t).is_err());
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_are_forgotten() {
        let mut joins = Joins::default();
        let t = Timestamp::from_secs(1);
        for n in 0..(MAX_TRACKED as u32 + 1000) {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert_eq!(joins.charge(10, false, addr, t), Ok(()));
        }
        assert_eq!(joins.tracked(), MAX_TRACKED);
        // A minute on, every bucket is full again: the next join forgets them all.
        let later = t + MINUTE;
        assert_eq!(joins.charge(10, false, ip("203.0.113.5"), later), Ok(()));
        assert_eq!(joins.tracked(), 1);
    }
}
