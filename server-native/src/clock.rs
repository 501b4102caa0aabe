//! The server's one clock: the monotonic time every part of the driver reads, as the room's
//! [`Timestamp`]s.
//!
//! The room never reads a clock; the driver hands it `now` with every input. One `Clock` is
//! made at start and shared (it is `Copy`), so that the door's limits, the room's deadlines and
//! the metrics' latency samples are all on one scale.
//!
//! Bans and mutes end at a wall-clock time (Unix milliseconds), so that they outlive the
//! process: the room turns its `Timestamp`s into that with the wall time at the clock's zero
//! ([`Clock::wall_at_zero`], `chat_core::Config::wall_clock`).

use std::time::{SystemTime, UNIX_EPOCH};

use chat_core::Timestamp;
use tokio::time::Instant;

/// `Timestamp`s count from `epoch`, the instant the server started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
    /// Unix milliseconds at `epoch`.
    wall_at_zero: u64,
}

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        let epoch = Instant::now();
        let wall_at_zero = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        Clock {
            epoch,
            wall_at_zero,
        }
    }

    /// The wall-clock time at [`Timestamp::ZERO`], in Unix milliseconds: the room's
    /// `Config::wall_clock`. The room's time after it runs on the monotonic clock, so a step
    /// of the system clock while the server runs moves no ban's end.
    pub fn wall_at_zero(&self) -> u64 {
        self.wall_at_zero
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
