//! Time as the core sees it: a value handed in by the driver, never read from a clock.

use std::ops::Add;
use std::time::Duration;

/// A point in time, measured from an epoch the driver chose (process start, test start, ...).
///
/// The core never reads a clock: `std::time::Instant::now()` panics on
/// `wasm32-unknown-unknown`, and a clock inside the state machine would make tests slow and
/// nondeterministic. Drivers convert their own clock into a `Timestamp` and pass it with every
/// input; tests simply make them up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(Duration);

impl Timestamp {
    /// The driver's epoch.
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    /// The time `since_epoch` after the driver's epoch.
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Timestamp(since_epoch)
    }

    /// Whole seconds after the epoch; handy in tests.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(Duration::from_secs(secs))
    }

    /// Milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(Duration::from_millis(millis))
    }

    /// How long after the epoch this is.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is in fact later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturates instead of overflowing: a huge configured timeout means "never", not a panic.
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(rhs))
    }
}
