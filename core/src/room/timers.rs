//! The idle and name timeouts: when each connection is due, and the table of those deadlines.
//!
//! The table holds at most one entry per connection, ordered by time, so the next deadline is
//! its first entry (quinn's `TimerTable`, for one kind of timer per connection). Activity
//! does not move an entry: it may be earlier than its connection's real deadline, and is
//! moved when it fires and the connection turns out not to be due.

use std::collections::BTreeSet;

use super::config::Config;
use super::conn::{Conn, ConnId};
use crate::time::Timestamp;

/// Which timeout has run out for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expired {
    /// Silent for longer than the idle timeout.
    Idle,
    /// Still at the name prompt when the name timeout ran out.
    Name,
}

/// The idle and name deadlines, at most one entry per connection.
#[derive(Debug, Default)]
pub(super) struct TimerTable {
    entries: BTreeSet<(Timestamp, ConnId)>,
}

impl TimerTable {
    /// The earliest deadline, if any.
    pub(super) fn next(&self) -> Option<Timestamp> {
        self.entries.first().map(|&(at, _)| at)
    }

    /// Puts `id`'s entry at its next deadline, idle or name (or takes it out when it has
    /// none).
    pub(super) fn schedule(&mut self, config: &Config, id: ConnId, conn: &mut Conn) {
        let at = match deadlines(config, conn) {
            (Some(i), Some(n)) => Some(i.min(n)),
            (i, n) => i.or(n),
        };
        if let Some(old) = std::mem::replace(&mut conn.timer, at) {
            self.entries.remove(&(old, id));
        }
        if let Some(at) = at {
            self.entries.insert((at, id));
        }
    }

    /// Takes `id`'s entry out, for a connection the room forgets.
    pub(super) fn remove(&mut self, id: ConnId, conn: &Conn) {
        if let Some(at) = conn.timer {
            self.entries.remove(&(at, id));
        }
    }

    /// Takes out the earliest entry if it is due at `now`, and names its connection. The
    /// caller clears that connection's `timer` (if it still has the connection) and either
    /// closes it or schedules it again.
    pub(super) fn pop_due(&mut self, now: Timestamp) -> Option<ConnId> {
        match self.entries.first() {
            Some(&(at, _)) if at <= now => self.entries.pop_first().map(|(_, id)| id),
            _ => None,
        }
    }

    /// Forgets every entry.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Which of `conn`'s timeouts has run out at `now`, if any. The idle timeout wins when it
/// comes first, or at the same instant.
pub(super) fn expired(config: &Config, conn: &Conn, now: Timestamp) -> Option<Expired> {
    match deadlines(config, conn) {
        (Some(i), n) if i <= now && n.is_none_or(|n| i <= n) => Some(Expired::Idle),
        (_, Some(n)) if n <= now => Some(Expired::Name),
        _ => None,
    }
}

/// When `conn` is due to be dropped: for silence, and (at the name prompt) for not joining.
fn deadlines(config: &Config, conn: &Conn) -> (Option<Timestamp>, Option<Timestamp>) {
    let idle = config.idle_timeout.map(|t| conn.last_active + t);
    let name = match conn.name {
        None => config.name_timeout.map(|t| conn.opened + t),
        Some(_) => None,
    };
    (idle, name)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::room::conn::Wire;

    fn config(idle: u64, name: u64) -> Config {
        Config {
            idle_timeout: Some(Duration::from_secs(idle)),
            name_timeout: Some(Duration::from_secs(name)),
            ..Config::default()
        }
    }

    #[test]
    fn one_entry_per_connection_at_its_nearest_deadline() {
        let config = config(300, 60);
        let mut table = TimerTable::default();
        let mut conn = Conn::new(Timestamp::ZERO, Wire::Line, None);
        table.schedule(&config, ConnId(1), &mut conn);
        assert_eq!(
            table.next(),
            Some(Timestamp::from_secs(60)),
            "the name timeout"
        );
        conn.name = Some("ann".into());
        table.schedule(&config, ConnId(1), &mut conn);
        assert_eq!(
            table.next(),
            Some(Timestamp::from_secs(300)),
            "only the idle one"
        );
        assert_eq!(table.entries.len(), 1);
        table.remove(ConnId(1), &conn);
        assert_eq!(table.next(), None);
    }

    #[test]
    fn an_entry_is_taken_out_only_once_due() {
        let config = config(300, 60);
        let mut table = TimerTable::default();
        let mut conn = Conn::new(Timestamp::ZERO, Wire::Json, None);
        table.schedule(&config, ConnId(7), &mut conn);
        assert_eq!(table.pop_due(Timestamp::from_secs(59)), None);
        assert_eq!(table.pop_due(Timestamp::from_secs(60)), Some(ConnId(7)));
        assert_eq!(table.next(), None);
    }

    #[test]
    fn the_idle_timeout_wins_a_tie_and_activity_postpones_it() {
        let config = config(60, 60);
        let mut conn = Conn::new(Timestamp::ZERO, Wire::Line, None);
        let at = Timestamp::from_secs(60);
        assert_eq!(expired(&config, &conn, at), Some(Expired::Idle));
        conn.last_active = Timestamp::from_secs(30);
        assert_eq!(expired(&config, &conn, at), Some(Expired::Name));
        conn.name = Some("ann".into());
        assert_eq!(expired(&config, &conn, at), None);
        let later = Timestamp::from_secs(90);
        assert_eq!(expired(&config, &conn, later), Some(Expired::Idle));
    }
}
