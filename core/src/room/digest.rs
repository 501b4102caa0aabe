//! The digest of joins and leaves in a large room: what each user missed since it saw the roster.
//!
//! Above `announce_limit` the room no longer announces each join and leave; it gathers them
//! here for `announce_interval` and then sends each joined user one `presence` event. Once a
//! window is open it takes every change until it goes out, whatever the count (the room's
//! `gathers`), so that a room hovering at the limit never has a window cut short.
//! Each user must be told exactly what changed since they last saw the roster, so that a
//! client keeping one from `welcome`, `who` and the digests ends with the room's: most saw it
//! at the window's start, a newcomer in its welcome, someone in a `/who` answer. The window
//! is cut into segments at those moments, each holding the net change of its stretch by name
//! key; a user's digest is the net change of the segments from theirs on. A join and a later
//! leave of the same name within one segment cancel out, so a connect/disconnect ghost costs
//! nothing. A segment nobody's view starts at is merged into the one before, so the window
//! holds at most one segment per joined user, each at most one entry per name.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::conn::ConnId;
use crate::event::Event;
use crate::name::name_key;
use crate::time::Timestamp;

/// The joins and leaves being gathered for the next digest, if any.
#[derive(Debug, Default)]
pub(super) struct Digest {
    window: Option<Window>,
}

/// One digest being gathered, from its first join or leave until it goes out.
#[derive(Debug)]
struct Window {
    due: Timestamp,
    /// By id, in time order; id 0 starts at the window's start.
    segments: BTreeMap<u64, Segment>,
    next_id: u64,
    /// The segment each joined user's view of the roster dates from, for those shown it
    /// during the window (a welcome, a `/who` answer); everyone else saw it at the start.
    views: BTreeMap<ConnId, u64>,
}

#[derive(Debug, Default)]
struct Segment {
    /// Net change by [`name_key`].
    changes: BTreeMap<String, Change>,
    /// Joined users whose view starts here (not counted for segment 0).
    viewers: usize,
}

/// A name's state before and after a stretch of time: the spelling online, or `None`.
#[derive(Debug)]
struct Change {
    before: Option<String>,
    after: Option<String>,
}

/// One digest to send: the event, and who gets it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Told {
    /// An `Event::Presence`.
    pub(super) event: Event,
    /// Its recipients, in id order.
    pub(super) to: Vec<ConnId>,
}

impl Digest {
    /// When the digest being gathered goes out; `None` when none is.
    pub(super) fn due(&self) -> Option<Timestamp> {
        self.window.as_ref().map(|w| w.due)
    }

    /// `conn` joined as `name` and was welcomed with the roster as it is now, its own join
    /// included. A window opens, due at `due`, if none is gathering.
    pub(super) fn joined(&mut self, due: Timestamp, conn: ConnId, name: String) {
        self.gather(due, name_key(&name), None, Some(name));
        self.seen(conn);
    }

    /// `conn`, joined as `name`, left. A window opens, due at `due`, if none is gathering.
    pub(super) fn left(&mut self, due: Timestamp, conn: ConnId, name: String) {
        if let Some(window) = &mut self.window
            && let Some(id) = window.views.remove(&conn)
        {
            window.release(id);
        }
        self.gather(due, name_key(&name), Some(name), None);
    }

    /// A user of another node (cluster mode) joined (`after`) or left (`before`). A window
    /// opens, due at `due`, if none is gathering.
    pub(super) fn elsewhere(
        &mut self,
        due: Timestamp,
        before: Option<String>,
        after: Option<String>,
    ) {
        let Some(name) = before.as_ref().or(after.as_ref()) else {
            return;
        };
        let key = name_key(name);
        self.gather(due, key, before, after);
    }

    /// `conn` has just been shown the whole roster: its next digest starts from here.
    pub(super) fn seen(&mut self, conn: ConnId) {
        let Some(window) = &mut self.window else {
            return;
        };
        let current = match window.segments.last_key_value() {
            Some((&id, last)) if last.changes.is_empty() => id,
            _ => {
                let id = window.next_id;
                window.next_id += 1;
                window.segments.insert(id, Segment::default());
                id
            }
        };
        if let Some(segment) = window.segments.get_mut(&current) {
            segment.viewers += 1;
        }
        if let Some(old) = window.views.insert(conn, current) {
            window.release(old);
        }
    }

    /// Closes the window: each of `joined` (every joined user, in id order) is told what
    /// changed since they last saw the roster, and the room now has `count` users. Users
    /// for whom nothing changed are told nothing; the digests are in the order to send them.
    pub(super) fn flush(
        &mut self,
        joined: impl IntoIterator<Item = ConnId>,
        count: usize,
    ) -> Vec<Told> {
        let Some(window) = self.window.take() else {
            return Vec::new();
        };
        let mut by_segment: BTreeMap<u64, Vec<ConnId>> = BTreeMap::new();
        for conn in joined {
            let seen = window.views.get(&conn).copied().unwrap_or(0);
            by_segment.entry(seen).or_default().push(conn);
        }
        let mut told = Vec::new();
        // From the last segment back, so that each group's changes are complete when reached.
        let mut since: BTreeMap<String, Change> = BTreeMap::new();
        for (id, segment) in window.segments.into_iter().rev() {
            compose_before(&mut since, segment.changes);
            let Some(to) = by_segment.remove(&id) else {
                continue;
            };
            if since.is_empty() {
                continue;
            }
            // `compose_before` dropped every name whose state did not change.
            let event = Event::Presence {
                joined: since.values().filter_map(|c| c.after.clone()).collect(),
                left: since.values().filter_map(|c| c.before.clone()).collect(),
                count,
            };
            told.push(Told { event, to });
        }
        told
    }

    /// Everyone joined was told just now that the user of `name` is gone (a kick or ban's
    /// line, which a client's roster applies as a leave): what was gathered for that name is
    /// forgotten, so that a later join of it is told to all as a join, not cancelled out
    /// against a leave nobody needs told any more.
    pub(super) fn told_gone(&mut self, name: &str) {
        let Some(window) = &mut self.window else {
            return;
        };
        let key = name_key(name);
        for segment in window.segments.values_mut() {
            segment.changes.remove(&key);
        }
    }

    /// Forgets what was gathered, sending nothing (the room is shutting down).
    pub(super) fn clear(&mut self) {
        self.window = None;
    }

    /// Records a join (`before` is `None`) or a leave (`after` is `None`) of the name `key`,
    /// opening a window due at `due` if none is gathering.
    fn gather(
        &mut self,
        due: Timestamp,
        key: String,
        before: Option<String>,
        after: Option<String>,
    ) {
        let window = self.window.get_or_insert_with(|| Window {
            due,
            segments: BTreeMap::from([(0, Segment::default())]),
            next_id: 1,
            views: BTreeMap::new(),
        });
        if let Some(mut last) = window.segments.last_entry() {
            let change = Change { before, after };
            compose(&mut last.get_mut().changes, BTreeMap::from([(key, change)]));
        }
    }
}

impl Window {
    /// One viewer fewer for segment `id`; a segment left without any is merged into the one
    /// before it.
    fn release(&mut self, id: u64) {
        let Some(segment) = self.segments.get_mut(&id) else {
            return;
        };
        segment.viewers = segment.viewers.saturating_sub(1);
        if id == 0 || segment.viewers > 0 {
            return;
        }
        let Some(segment) = self.segments.remove(&id) else {
            return;
        };
        if let Some((_, earlier)) = self.segments.range_mut(..id).next_back() {
            compose(&mut earlier.changes, segment.changes);
        }
    }
}

/// Adds `later` (the changes of a stretch after `earlier`'s) into `earlier`.
fn compose(earlier: &mut BTreeMap<String, Change>, later: BTreeMap<String, Change>) {
    merge(earlier, later, |kept, later| kept.after = later.after);
}

/// Adds `earlier` (the changes of a stretch before `later`'s) into `later`.
fn compose_before(later: &mut BTreeMap<String, Change>, earlier: BTreeMap<String, Change>) {
    merge(later, earlier, |kept, earlier| kept.before = earlier.before);
}

/// Adds `other`'s changes into `into`: a name in both takes `join`'s side from `other`, and is
/// dropped when it ends as it began.
fn merge(
    into: &mut BTreeMap<String, Change>,
    other: BTreeMap<String, Change>,
    join: impl Fn(&mut Change, Change),
) {
    for (key, change) in other {
        match into.entry(key) {
            Entry::Occupied(mut e) => {
                join(e.get_mut(), change);
                if e.get().before == e.get().after {
                    e.remove();
                }
            }
            Entry::Vacant(e) => {
                e.insert(change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUE: Timestamp = Timestamp::from_secs(10);

    fn presence<S: AsRef<str>>(joined: &[S], left: &[S], count: usize) -> Event {
        let owned = |names: &[S]| names.iter().map(|n| n.as_ref().to_owned()).collect();
        Event::Presence {
            joined: owned(joined),
            left: owned(left),
            count,
        }
    }

    fn told(event: Event, to: &[u64]) -> Told {
        Told {
            event,
            to: to.iter().map(|&id| ConnId(id)).collect(),
        }
    }

    fn ids(ids: &[u64]) -> Vec<ConnId> {
        ids.iter().map(|&id| ConnId(id)).collect()
    }

    #[test]
    fn nothing_gathered_is_nothing_due_and_nothing_sent() {
        let mut digest = Digest::default();
        assert_eq!(digest.due(), None);
        digest.seen(ConnId(1));
        assert_eq!(digest.due(), None, "seeing the roster opens no window");
        assert_eq!(digest.flush(ids(&[1]), 1), vec![]);
    }

    #[test]
    fn the_first_change_opens_the_window_and_later_ones_do_not_move_it() {
        let mut digest = Digest::default();
        digest.joined(DUE, ConnId(3), "cy".into());
        digest.left(Timestamp::from_secs(99), ConnId(2), "bob".into());
        assert_eq!(digest.due(), Some(DUE));
    }

    #[test]
    fn those_who_saw_the_start_hear_the_net_change_and_a_newcomer_only_what_came_after() {
        let mut digest = Digest::default();
        digest.left(DUE, ConnId(2), "bob".into());
        digest.joined(DUE, ConnId(3), "cy".into());
        digest.joined(DUE, ConnId(4), "dee".into());
        assert_eq!(
            digest.flush(ids(&[1, 3, 4]), 4),
            vec![
                // dee's welcome listed everyone: nothing changed since.
                told(presence(&["dee"], &[], 4), &[3]),
                told(presence(&["cy", "dee"], &["bob"], 4), &[1]),
            ]
        );
        assert_eq!(digest.due(), None, "the window is closed");
    }

    #[test]
    fn a_ghost_that_came_and_went_unseen_costs_nothing() {
        let mut digest = Digest::default();
        digest.joined(DUE, ConnId(5), "ghost".into());
        digest.left(DUE, ConnId(5), "ghost".into());
        assert_eq!(digest.flush(ids(&[1, 2]), 2), vec![]);
    }

    #[test]
    fn a_who_answer_starts_that_users_digest_from_there() {
        let mut digest = Digest::default();
        digest.left(DUE, ConnId(2), "bob".into());
        digest.seen(ConnId(1));
        digest.joined(DUE, ConnId(3), "cy".into());
        assert_eq!(
            digest.flush(ids(&[1, 3, 4]), 3),
            vec![
                told(presence(&["cy"], &[], 3), &[1]),
                told(presence(&["cy"], &["bob"], 3), &[4]),
            ]
        );
    }

    #[test]
    fn a_name_that_leaves_and_comes_back_respelled_is_in_both_lists() {
        let mut digest = Digest::default();
        digest.left(DUE, ConnId(2), "bob".into());
        digest.joined(DUE, ConnId(3), "BOB".into());
        assert_eq!(
            digest.flush(ids(&[1, 3]), 2),
            vec![
                // The newcomer's welcome already listed BOB; the others hear both changes.
                told(presence(&["BOB"], &["bob"], 2), &[1]),
            ]
        );
    }

    #[test]
    fn a_segment_nobody_views_any_more_is_merged_so_there_is_one_per_viewer_at_most() {
        let mut digest = Digest::default();
        for id in 1..=20 {
            digest.joined(DUE, ConnId(id), format!("u{id:02}"));
        }
        let segments = |d: &Digest| d.window.as_ref().map_or(0, |w| w.segments.len());
        // Segment 0 and one per newcomer's welcome.
        assert_eq!(segments(&digest), 21);
        for id in 1..=19 {
            digest.left(DUE, ConnId(id), format!("u{id:02}"));
        }
        assert!(segments(&digest) <= 2, "{} segments", segments(&digest));
        // The one who stayed saw every join up to its own in its welcome: it hears of the
        // leaves only. Someone who saw the window's start hears only of the one who stayed.
        let gone: Vec<String> = (1..=19).map(|id| format!("u{id:02}")).collect();
        assert_eq!(
            digest.flush(ids(&[20, 21]), 2),
            vec![
                told(presence(&[], &gone, 2), &[20]),
                told(presence(&["u20"], &[], 2), &[21]),
            ]
        );
    }
}
