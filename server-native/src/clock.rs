//! The server's one clock: the monotonic time every part of the driver reads, as the room's
//! [`Timestamp`]s.
//!
//! The room never reads a clock; the driver hands it `now` with every input. One `Clock` is
//! made at start and shared (it is `Copy`), so that the door's limits, the room's deadlines and
//! the metrics' latency samples are all on one scale.

use chat_core::Timestamp;
use tokio::time::Instant;

/// `Timestamp`s count from `epoch`, the instant the server started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// The time now, on the room's scale.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.epoch.elapsed())
    }

    /// The instant `at` stands for, to sleep until it.
    pub fn instant(&self, at: Timestamp) -> Instant {
        self.epoch + at.as_duration()
    }
}
