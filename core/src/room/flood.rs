//! Flood control: one token bucket per connection, in its GCRA form.
//!
//! GCRA keeps a single timestamp per bucket, the "theoretical arrival time" of the next line:
//! each accepted line pushes it one `interval` further, and a line is refused while it lies
//! more than `burst - 1` intervals ahead of now. That is a bucket of `burst` tokens refilled
//! one per `interval`, without a counter to refill.

use super::config::FloodConfig;
use crate::time::Timestamp;

/// One connection's bucket.
#[derive(Debug)]
pub(super) struct Bucket {
    /// GCRA's "theoretical arrival time" of the next line.
    tat: Timestamp,
    /// The user has been told to slow down and has not had a line accepted since.
    throttled: bool,
}

/// What the bucket makes of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The line goes through.
    Pass,
    /// The line is dropped; `tell` is true for the first drop since a line last went through,
    /// so the user is told once, not once per line.
    Drop {
        /// Say so to the user.
        tell: bool,
    },
}

impl Bucket {
    /// A full bucket at `now`.
    pub(super) fn new(now: Timestamp) -> Self {
        Bucket {
            tat: now,
            throttled: false,
        }
    }

    /// Charges one line arriving at `now`.
    pub(super) fn charge(&mut self, flood: FloodConfig, now: Timestamp) -> Verdict {
        let tat = self.tat.max(now);
        let allowance = flood.interval.saturating_mul(flood.burst.saturating_sub(1));
        if tat > now + allowance {
            let tell = !std::mem::replace(&mut self.throttled, true);
            return Verdict::Drop { tell };
        }
        self.tat = tat + flood.interval;
        self.throttled = false;
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const FLOOD: FloodConfig = FloodConfig {
        burst: 3,
        interval: Duration::from_millis(100),
    };

    #[test]
    fn a_burst_passes_then_one_line_per_interval() {
        let t0 = Timestamp::ZERO;
        let mut bucket = Bucket::new(t0);
        for _ in 0..3 {
            assert_eq!(bucket.charge(FLOOD, t0), Verdict::Pass);
        }
        assert_eq!(bucket.charge(FLOOD, t0), Verdict::Drop { tell: true });
        assert_eq!(bucket.charge(FLOOD, t0), Verdict::Drop { tell: false });
        // One interval later, one token is back, and only one.
        let t1 = Timestamp::from_millis(100);
        assert_eq!(bucket.charge(FLOOD, t1), Verdict::Pass);
        assert_eq!(bucket.charge(FLOOD, t1), Verdict::Drop { tell: true });
    }

    #[test]
    fn a_quiet_spell_refills_the_bucket_but_never_beyond_the_burst() {
        let mut bucket = Bucket::new(Timestamp::ZERO);
        let later = Timestamp::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.charge(FLOOD, later), Verdict::Pass);
        }
        assert_eq!(bucket.charge(FLOOD, later), Verdict::Drop { tell: true });
    }
}
