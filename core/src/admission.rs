//! Admission at the door: how many connections one address may hold, and how fast it opens them.
//!
//! Sans-IO like the room: the driver asks [`Admission::admit`] with the time and the peer's
//! address when it accepts a connection, and hands the [`Admitted`] pass back to
//! [`Admission::release`] when the connection ends.
//!
//! Addresses are grouped into [`AddrKey`]s: an IPv4 address is its own key (an IPv4-mapped
//! IPv6 address, `::ffff:a.b.c.d`, counts as the IPv4 address it carries), and an IPv6 address
//! counts as its /64 network, the smallest block a home or a host is usually given, so that one
//! machine cannot escape the limits by cycling through the addresses of its own network. The
//! one exception is `::1`, the loopback address, which is a key of its own: the rest of `::/64`
//! (`::2`, the IPv4-compatible `::a.b.c.d`, the IPv4-translated `::ffff:0:a.b.c.d`) is an
//! ordinary network, not loopback.
//!
//! The rate is a token bucket kept as GCRA (one timestamp per key): an address may open
//! `new_per_minute` connections at once, and then one every `60 s / new_per_minute`.
//!
//! Memory is bounded however many addresses knock: an entry is kept only while its address
//! has connections open or its bucket is not yet full again (at most a minute after its last
//! connection); forgetting such an entry changes nothing, and it is swept once a minute. Should
//! more than [`AdmissionConfig::max_tracked`] addresses be remembered at once (a scan from a
//! million addresses within a minute), those with nothing open and the fullest buckets are
//! forgotten first: they get a fresh bucket, which a scanner with that many addresses has
//! anyway.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::time::Timestamp;

/// What a refused connection is told (the line wire's line, the body of HTTP's 429).
pub const TOO_MANY_CONNECTIONS: &str =
    "Too many connections from your address; try again in a minute.";

/// The period the rate is counted over.
const MINUTE: Duration = Duration::from_secs(60);

/// The limits per address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Connections one address may hold at once; `None`: no limit.
    pub max_open: Option<u32>,
    /// New connections one address may open per minute, in a burst of as many; `None`: no
    /// limit.
    pub new_per_minute: Option<u32>,
    /// Whether loopback addresses (`127.0.0.0/8`, `::1`) are limited too. By default they are
    /// exempt: they are the operator's own machine or a reverse proxy on it.
    pub limit_loopback: bool,
    /// Addresses remembered at most, beyond those with connections open.
    pub max_tracked: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_open: Some(32),
            new_per_minute: Some(120),
            limit_loopback: false,
            max_tracked: 65_536,
        }
    }
}

/// What the limits count by: an IPv4 address, an IPv6 /64 network, or IPv6's loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrKey {
    /// An IPv4 address, also when it came IPv4-mapped in IPv6.
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
    /// `::1`, apart from the rest of its /64, which is no loopback.
    V6Loopback,
}

impl AddrKey {
    /// The key `ip` counts under.
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(v4),
            IpAddr::V6(v6) if v6.is_loopback() => AddrKey::V6Loopback,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4),
                None => AddrKey::V6((v6.to_bits() >> 64) as u64),
            },
        }
    }

    /// Whether this is a loopback address: `127.0.0.0/8` (IPv4-mapped or not) or `::1`, and
    /// nothing else.
    pub fn is_loopback(self) -> bool {
        match self {
            AddrKey::V4(v4) => v4.is_loopback(),
            AddrKey::V6(_) => false,
            AddrKey::V6Loopback => true,
        }
    }
}

impl fmt::Display for AddrKey {
    /// `203.0.113.5`, `2001:db8::/64`, or `::1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrKey::V4(v4) => v4.fmt(f),
            AddrKey::V6(net) => write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(*net) << 64)),
            AddrKey::V6Loopback => Ipv6Addr::LOCALHOST.fmt(f),
        }
    }
}

/// A connection let in: give it back to [`Admission::release`] when the connection ends.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an admitted connection holds its place until released"]
pub struct Admitted {
    /// `None` for an exempt address, which is not counted.
    key: Option<AddrKey>,
}

impl Admitted {
    /// The key the connection counts under, or `None` when its address is exempt.
    pub fn key(&self) -> Option<AddrKey> {
        self.key
    }
}

/// Why a connection is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The address already holds as many connections as it may.
    TooManyOpen,
    /// The address opens connections faster than it may; the next one is let in after
    /// `retry_after`.
    TooFast {
        /// How long until the bucket holds a token again.
        retry_after: Duration,
    },
}

impl Refusal {
    /// When trying again makes sense: for [`Refusal::TooFast`] its own wait, for
    /// [`Refusal::TooManyOpen`] (nobody knows when a connection will close) a minute.
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::TooManyOpen => MINUTE,
            Refusal::TooFast { retry_after } => retry_after,
        }
    }
}

/// What is remembered of one key.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Connections open now.
    open: u32,
    /// GCRA's theoretical arrival time: the bucket is full again from then on.
    tat: Timestamp,
}

impl Entry {
    /// Forgetting it changes nothing: nothing open and the bucket full.
    fn is_stale(&self, now: Timestamp) -> bool {
        self.open == 0 && self.tat <= now
    }
}

/// The per-address counts and rates. See the module documentation.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    entries: BTreeMap<AddrKey, Entry>,
    /// When stale entries are next swept.
    next_sweep: Timestamp,
    /// Past this many entries, a sweep runs at once and may forget addresses.
    sweep_above: usize,
}

impl Admission {
    /// No address known yet.
    pub fn new(config: AdmissionConfig) -> Admission {
        let sweep_above = config.max_tracked.max(1);
        Admission {
            config,
            entries: BTreeMap::new(),
            next_sweep: Timestamp::ZERO + MINUTE,
            sweep_above,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Decides on a connection from `ip` accepted at `now`. A refused attempt costs the address
    /// nothing: it takes no token and holds no place.
    pub fn admit(&mut self, now: Timestamp, ip: IpAddr) -> Result<Admitted, Refusal> {
        let key = AddrKey::of(ip);
        let limited = self.config.max_open.is_some() || self.config.new_per_minute.is_some();
        if !limited || (key.is_loopback() && !self.config.limit_loopback) {
            return Ok(Admitted { key: None });
        }
        if now >= self.next_sweep || self.entries.len() >= self.sweep_above {
            self.sweep(now);
        }
        let entry = self
            .entries
            .get(&key)
            .copied()
            .unwrap_or(Entry { open: 0, tat: now });
        if self.config.max_open.is_some_and(|max| entry.open >= max) {
            return Err(Refusal::TooManyOpen);
        }
        let tat = match self.config.new_per_minute {
            None => now,
            Some(rate) => {
                // One token every `interval`; a full bucket holds `rate` of them, so a burst of
                // `rate` may arrive at once: each takes `interval` off the tolerance.
                let interval = MINUTE / rate.max(1);
                let tolerance = MINUTE.saturating_sub(interval);
                let tat = entry.tat.max(now);
                let earliest = now + tolerance;
                if tat > earliest {
                    let retry_after = tat.saturating_duration_since(earliest);
                    return Err(Refusal::TooFast { retry_after });
                }
                tat + interval
            }
        };
        self.entries.insert(
            key,
            Entry {
                open: entry.open + 1,
                tat,
            },
        );
        Ok(Admitted { key: Some(key) })
    }

    /// The connection of `admitted` has ended.
    pub fn release(&mut self, now: Timestamp, admitted: Admitted) {
        let Some(key) = admitted.key else { return };
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.open = entry.open.saturating_sub(1);
            if entry.is_stale(now) {
                self.entries.remove(&key);
            }
        }
    }

    /// Connections open from the key of `ip` (0 for an exempt address).
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.entries.get(&AddrKey::of(ip)).map_or(0, |e| e.open)
    }

    /// Keys remembered now: the memory this takes is proportional to it.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Forgets stale entries; if more than three quarters of `max_tracked` are left, forgets
    /// those with nothing open and the earliest-full buckets down to that. The next forced sweep waits
    /// until at least a quarter of `max_tracked` new keys have come, so the cost of sweeping
    /// stays a constant per admission however the table is attacked.
    fn sweep(&mut self, now: Timestamp) {
        self.entries.retain(|_, entry| !entry.is_stale(now));
        let max = self.config.max_tracked.max(1);
        let keep = max * 3 / 4;
        if self.entries.len() > keep {
            let mut idle: Vec<(Timestamp, AddrKey)> = self
                .entries
                .iter()
                .filter(|(_, entry)| entry.open == 0)
                .map(|(key, entry)| (entry.tat, *key))
                .collect();
            idle.sort_unstable();
            let excess = self.entries.len() - keep;
            for (_, key) in idle.into_iter().take(excess) {
                self.entries.remove(&key);
            }
        }
        self.next_sweep = now + MINUTE;
        self.sweep_above = max.max(self.entries.len() + max.div_ceil(4));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn config(max_open: Option<u32>, new_per_minute: Option<u32>) -> AdmissionConfig {
        AdmissionConfig {
            max_open,
            new_per_minute,
            ..AdmissionConfig::default()
        }
    }

    const T0: Timestamp = Timestamp::from_secs(1000);

    /// A connection from `addr` at `now` that must be let in, and closes at once.
    fn knock(door: &mut Admission, now: Timestamp, addr: IpAddr) {
        let pass = door.admit(now, addr).unwrap();
        door.release(now, pass);
    }

    #[test]
    fn an_address_may_hold_max_open_connections_and_one_more_when_one_closes() {
        let mut door = Admission::new(config(Some(3), None));
        let a = ip("203.0.113.5");
        let passes: Vec<Admitted> = (0..3).map(|_| door.admit(T0, a).unwrap()).collect();
        assert_eq!(door.open(a), 3);
        assert_eq!(door.admit(T0, a), Err(Refusal::TooManyOpen));
        // Another address is not affected.
        let other = door.admit(T0, ip("203.0.113.6")).unwrap();
        let mut passes = passes.into_iter();
        door.release(T0, passes.next().unwrap());
        assert_eq!(door.open(a), 2);
        let again = door.admit(T0, a).unwrap();
        assert_eq!(door.admit(T0, a), Err(Refusal::TooManyOpen));
        for pass in passes.chain([again, other]) {
            door.release(T0, pass);
        }
        assert_eq!(door.open(a), 0);
        assert_eq!(door.tracked(), 0, "nothing open and no rate: nothing kept");
    }

    #[test]
    fn the_rate_allows_a_burst_then_one_per_interval() {
        // 6 a minute: a burst of 6, then one every 10 seconds.
        let mut door = Admission::new(config(None, Some(6)));
        let a = ip("198.51.100.7");
        for _ in 0..6 {
            let pass = door.admit(T0, a).unwrap();
            door.release(T0, pass);
        }
        assert_eq!(
            door.admit(T0, a),
            Err(Refusal::TooFast {
                retry_after: Duration::from_secs(10)
            })
        );
        let later = T0 + Duration::from_secs(4);
        assert_eq!(
            door.admit(later, a),
            Err(Refusal::TooFast {
                retry_after: Duration::from_secs(6)
            })
        );
        let t = T0 + Duration::from_secs(10);
        knock(&mut door, t, a);
        assert!(door.admit(t, a).is_err(), "one token came back, one used");
        // After a quiet minute the whole burst is back, and the entry was forgotten.
        let t = t + MINUTE;
        door.sweep(t);
        assert_eq!(door.tracked(), 0);
        for _ in 0..6 {
            knock(&mut door, t, a);
        }
        assert!(door.admit(t, a).is_err());
    }

    #[test]
    fn the_default_rate_is_120_a_minute_in_a_burst_of_120() {
        let mut door = Admission::new(config(None, Some(120)));
        let a = ip("192.0.2.1");
        for _ in 0..120 {
            knock(&mut door, T0, a);
        }
        let refused = door.admit(T0, a).unwrap_err();
        assert_eq!(refused.retry_after(), Duration::from_millis(500));
        // Steady state: two a second, for as long as it goes on.
        for half_seconds in 1..=240 {
            let t = T0 + Duration::from_millis(500 * half_seconds);
            knock(&mut door, t, a);
            assert!(door.admit(t, a).is_err());
        }
    }

    #[test]
    fn refused_attempts_cost_nothing() {
        let mut door = Admission::new(config(Some(1), Some(2)));
        let a = ip("192.0.2.1");
        let held = door.admit(T0, a).unwrap();
        for _ in 0..100 {
            assert_eq!(door.admit(T0, a), Err(Refusal::TooManyOpen));
        }
        door.release(T0, held);
        // The second token of the burst is still there.
        knock(&mut door, T0, a);
        assert!(matches!(door.admit(T0, a), Err(Refusal::TooFast { .. })));
        for _ in 0..100 {
            assert!(door.admit(T0, a).is_err());
        }
        let t = T0 + Duration::from_secs(30);
        assert!(
            door.admit(t, a).is_ok(),
            "refusals did not push the wait back"
        );
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let mut door = Admission::new(config(Some(2), None));
        let _a = door.admit(T0, ip("2001:db8:1:2::1")).unwrap();
        let _b = door
            .admit(T0, ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .unwrap();
        assert_eq!(
            door.admit(T0, ip("2001:db8:1:2:abcd::9")),
            Err(Refusal::TooManyOpen),
            "the same /64"
        );
        assert!(
            door.admit(T0, ip("2001:db8:1:3::1")).is_ok(),
            "the next /64"
        );

        let _c = door.admit(T0, ip("203.0.113.9")).unwrap();
        let _d = door.admit(T0, ip("::ffff:203.0.113.9")).unwrap();
        assert_eq!(
            door.admit(T0, ip("203.0.113.9")),
            Err(Refusal::TooManyOpen),
            "IPv4-mapped IPv6 is the IPv4 address"
        );
        assert_eq!(door.open(ip("::ffff:203.0.113.9")), 2);

        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(AddrKey::of(ip("::ffff:10.0.0.1")).to_string(), "10.0.0.1");
        // `::a.b.c.d` (IPv4-compatible, deprecated) is not mapped: `::1` stays IPv6.
        assert_eq!(AddrKey::of(ip("::1")), AddrKey::V6Loopback);
        assert_eq!(AddrKey::of(ip("::1")).to_string(), "::1");
        assert_eq!(AddrKey::of(ip("::2")), AddrKey::V6(0));
        assert_eq!(AddrKey::of(ip("::2")).to_string(), "::/64");
    }

    #[test]
    fn loopback_is_127_slash_8_and_colon_colon_1_only() {
        for addr in [
            "127.0.0.1",
            "127.255.0.9",
            "::ffff:127.0.0.1",
            "::ffff:127.1.2.3",
            "::1",
        ] {
            assert!(AddrKey::of(ip(addr)).is_loopback(), "{addr}");
        }
        for addr in [
            "::2",
            "::ffff",
            "::127.0.0.1",   // IPv4-compatible, deprecated: not mapped, not loopback
            "::203.0.113.9", // IPv4-compatible
            "::ffff:0:127.0.0.1", // IPv4-translated (RFC 2765)
            "::ffff:0:203.0.113.9",
            "::",
            "0:0:0:0:1::1",
            "128.0.0.1",
            "::ffff:128.0.0.1",
        ] {
            assert!(!AddrKey::of(ip(addr)).is_loopback(), "{addr}");
        }
    }

    #[test]
    fn the_rest_of_the_loopback_network_is_limited_like_any_other() {
        // One connection at a time per address, loopback exempt as by default.
        let mut door = Admission::new(config(Some(1), None));
        for addr in ["::2", "::127.0.0.1", "::ffff:0:127.0.0.1", "::203.0.113.9"] {
            // Each lies in `::/64`, counted like any network: its second connection is refused.
            let pass = door.admit(T0, ip(addr)).unwrap();
            assert_eq!(pass.key(), Some(AddrKey::V6(0)), "{addr}");
            assert_eq!(
                door.admit(T0, ip(addr)),
                Err(Refusal::TooManyOpen),
                "{addr}"
            );
            door.release(T0, pass);
        }
        // `::1` itself stays exempt, however many it holds.
        for _ in 0..10 {
            assert_eq!(door.admit(T0, ip("::1")).unwrap().key(), None);
        }
        assert_eq!(door.tracked(), 0);
    }

    #[test]
    fn loopback_is_exempt_unless_asked() {
        let loopbacks = ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"];
        let mut door = Admission::new(config(Some(1), Some(1)));
        for addr in loopbacks {
            for _ in 0..10 {
                let pass = door.admit(T0, ip(addr)).unwrap();
                assert_eq!(pass.key(), None);
            }
        }
        assert_eq!(door.tracked(), 0);

        let mut door = Admission::new(AdmissionConfig {
            limit_loopback: true,
            ..config(Some(1), Some(1))
        });
        for addr in loopbacks {
            let pass = door.admit(T0, ip(addr));
            match addr {
                // The same key as 127.0.0.1; the others are keys of their own.
                "::ffff:127.0.0.1" => assert!(pass.is_err(), "{addr}"),
                _ => assert!(pass.is_ok(), "{addr}"),
            }
        }
    }

    #[test]
    fn no_limits_means_nothing_is_counted() {
        let mut door = Admission::new(config(None, None));
        for _ in 0..1000 {
            assert_eq!(door.admit(T0, ip("192.0.2.1")).unwrap().key(), None);
        }
        assert_eq!(door.tracked(), 0);
    }

    #[test]
    fn a_release_after_a_quiet_minute_forgets_the_address() {
        let mut door = Admission::new(AdmissionConfig::default());
        let a = ip("192.0.2.1");
        let pass = door.admit(T0, a).unwrap();
        door.release(T0 + Duration::from_millis(100), pass);
        assert_eq!(door.tracked(), 1, "its bucket is not full yet");
        let pass = door.admit(T0 + Duration::from_secs(2), a).unwrap();
        door.release(T0 + Duration::from_secs(600), pass);
        assert_eq!(door.tracked(), 0);
    }

    #[test]
    fn a_scan_from_a_million_addresses_keeps_memory_bounded() {
        let max_tracked = 10_000;
        let mut door = Admission::new(AdmissionConfig {
            max_tracked,
            ..AdmissionConfig::default()
        });
        // A few addresses hold connections throughout; those are never forgotten.
        let holders: Vec<IpAddr> = (0..50u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + i)))
            .collect();
        let held: Vec<Admitted> = holders
            .iter()
            .map(|a| door.admit(T0, *a).unwrap())
            .collect();
        let mut most = 0;
        // A million IPv6 networks, each connecting once and closing, all within 20 seconds.
        for i in 0..1_000_000u64 {
            let now = T0 + Duration::from_micros(i * 20);
            let addr = IpAddr::V6(Ipv6Addr::from_bits(
                (u128::from(0x2001_0db8_0000_0000u64 + i) << 64) | 1,
            ));
            let pass = door.admit(now, addr).unwrap();
            door.release(now, pass);
            most = most.max(door.tracked());
        }
        assert!(most <= max_tracked, "at most {most} entries");
        for a in &holders {
            assert_eq!(
                door.open(*a),
                1,
                "an address with a connection open is kept"
            );
        }
        // Once the scan is over, a minute later everything it left is swept.
        let later = T0 + Duration::from_secs(200);
        let pass = door.admit(later, ip("192.0.2.1")).unwrap();
        assert_eq!(door.tracked(), holders.len() + 1);
        let done = later + MINUTE;
        door.release(done, pass);
        for pass in held {
            door.release(done, pass);
        }
        assert_eq!(door.tracked(), 0);
    }

    #[test]
    fn a_scan_cannot_reset_an_address_that_holds_connections() {
        let mut door = Admission::new(AdmissionConfig {
            max_tracked: 100,
            ..config(Some(2), Some(1000))
        });
        let a = ip("192.0.2.1");
        let _held = [door.admit(T0, a).unwrap(), door.admit(T0, a).unwrap()];
        for i in 0..10_000u32 {
            let other = IpAddr::V4(Ipv4Addr::from_bits(0xc633_6400 + i));
            knock(&mut door, T0, other);
        }
        assert!(door.tracked() <= 125, "{}", door.tracked());
        assert_eq!(door.admit(T0, a), Err(Refusal::TooManyOpen));
    }
}
