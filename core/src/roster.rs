//! [`Roster`]: who is online as a client knows it, kept from what the room tells it.
//!
//! The room lists who is online in a welcome (cut short in a large room) and a `who` answer,
//! and tells of changes one by one (`joined`, `left`) or in a digest (`presence`). Every
//! client keeps the same list from those events by the same rule, this one: the browser
//! shows it, and the tests check that it equals the room's whenever no digest is pending.

use crate::event::Event;
use crate::name::name_key;

/// Who is online, as far as the room has said: the names sorted as the room sorts them (by
/// [`name_key`]), how many are online, and whether the names are all of them.
///
/// ```
/// use chat_core::{Event, Roster};
///
/// let mut roster = Roster::new();
/// roster.apply(&Event::Welcome {
///     name: "ann".into(),
///     count: 3,
///     online: vec!["ann".into(), "Bob".into()],
///     epoch: 1,
/// });
/// assert_eq!((roster.names(), roster.count()), (&["ann".to_owned(), "Bob".to_owned()][..], 3));
/// assert!(!roster.is_complete(), "the welcome was cut short: ask `who`");
/// let online = vec!["ann".into(), "Bob".into(), "cy".into()];
/// roster.apply(&Event::Who { online, operators: Vec::new() });
/// assert!(roster.is_complete());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster {
    names: Vec<String>,
    count: usize,
    complete: bool,
}

impl Roster {
    /// Nobody known yet (before the welcome).
    pub fn new() -> Self {
        Roster::default()
    }

    /// The names known to be online, sorted case-insensitively like the room's roster.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many are online: the room's count, which exceeds the names listed while a welcome
    /// was cut short and no `who` answer has come since.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The names are everyone online: false before the welcome, and after a welcome cut
    /// short until a `who` answer.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Takes in one event from the room: `welcome` and `who` list everyone (a welcome in a
    /// large room only the first names), `joined` and `left` change one name, `presence`
    /// applies its leaves before its joins (a name may leave and come back spelled
    /// differently). Other events say nothing about who is online. Returns whether the names
    /// or the count changed.
    pub fn apply(&mut self, event: &Event) -> bool {
        match event {
            Event::Welcome { count, online, .. } => {
                self.complete = *count <= online.len();
                self.replace(online, (*count).max(online.len()))
            }
            Event::Who { online, .. } => {
                self.complete = true;
                self.replace(online, online.len())
            }
            Event::Joined { name } => {
                let inserted = self.insert(name);
                if inserted {
                    self.count += 1;
                }
                inserted
            }
            Event::Left { name } | Event::Sanctioned { name, .. } => {
                let removed = !self.remove(&name_key(name)).is_empty();
                // Someone not listed (a welcome cut short) may leave too: the count drops.
                if removed || self.count > self.names.len() {
                    self.count = self.count.saturating_sub(1).max(self.names.len());
                    return true;
                }
                false
            }
            Event::Presence {
                joined,
                left,
                count,
            } => {
                let mut gone: Vec<String> = Vec::new();
                for name in left {
                    gone.extend(self.remove(&name_key(name)));
                }
                let mut back: Vec<&String> = Vec::new();
                for name in joined {
                    if self.insert(name) {
                        back.push(name);
                    }
                }
                // A name that left and came back spelled the same is no change.
                gone.sort();
                back.sort();
                let count = (*count).max(self.names.len());
                let changed = !gone.iter().eq(back.iter().copied()) || count != self.count;
                self.count = count;
                changed
            }
            _ => false,
        }
    }

    /// Forgets everyone: out of the room, who is in it is no longer known. Returns whether it
    /// knew anyone.
    pub fn clear(&mut self) -> bool {
        let knew = !self.names.is_empty() || self.count > 0;
        *self = Roster::default();
        knew
    }

    fn replace(&mut self, online: &[String], count: usize) -> bool {
        let changed = self.names != online || self.count != count;
        if changed {
            self.names = online.to_vec();
            self.count = count;
        }
        changed
    }

    /// Adds `name` in its place unless someone of that name (in any case) is listed.
    fn insert(&mut self, name: &str) -> bool {
        let key = name_key(name);
        match self.names.binary_search_by_key(&key, |n| name_key(n)) {
            Ok(_) => false,
            Err(at) => {
                self.names.insert(at, name.to_owned());
                true
            }
        }
    }

    /// Removes whoever is listed under `key`, and returns them.
    fn remove(&mut self, key: &str) -> Vec<String> {
        let mut removed = Vec::new();
        self.names.retain(|n| {
            let keep = name_key(n) != key;
            if !keep {
                removed.push(n.clone());
            }
            keep
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    fn welcome(count: usize, online: &[&str]) -> Event {
        Event::Welcome {
            name: "ann".into(),
            count,
            online: names(online),
            epoch: 1,
        }
    }

    fn joined(name: &str) -> Event {
        Event::Joined { name: name.into() }
    }

    fn left(name: &str) -> Event {
        Event::Left { name: name.into() }
    }

    #[test]
    fn nobody_is_known_before_the_welcome() {
        let roster = Roster::new();
        assert_eq!((roster.names(), roster.count()), (&[][..], 0));
        assert!(!roster.is_complete());
    }

    #[test]
    fn a_welcome_listing_everyone_is_the_whole_roster() {
        let mut roster = Roster::new();
        assert!(roster.apply(&welcome(2, &["ann", "Bob"])));
        assert_eq!(roster.names(), ["ann", "Bob"]);
        assert_eq!(roster.count(), 2);
        assert!(roster.is_complete());
        assert!(
            !roster.apply(&welcome(2, &["ann", "Bob"])),
            "the same again"
        );
    }

    #[test]
    fn a_welcome_cut_short_counts_everyone_and_is_incomplete_until_a_who() {
        let mut roster = Roster::new();
        roster.apply(&welcome(300, &["ann", "bob"]));
        assert_eq!((roster.names().len(), roster.count()), (2, 300));
        assert!(!roster.is_complete());
        // Changes still count while the list is partial, and do not complete it.
        roster.apply(&joined("cy"));
        assert_eq!((roster.names().len(), roster.count()), (3, 301));
        assert!(!roster.is_complete());
        assert!(roster.apply(&Event::Who {
            online: names(&["ann", "bob", "cy", "dee"]),
            operators: Vec::new()
        }));
        assert_eq!(roster.names(), ["ann", "bob", "cy", "dee"]);
        assert_eq!(roster.count(), 4);
        assert!(roster.is_complete());
    }

    #[test]
    fn joins_go_in_sorted_once_and_leaves_go_by_name_in_any_case() {
        let mut roster = Roster::new();
        roster.apply(&welcome(2, &["alice", "bob"]));
        assert!(roster.apply(&joined("Carol")));
        assert_eq!(roster.names(), ["alice", "bob", "Carol"]);
        assert_eq!(roster.count(), 3);
        assert!(!roster.apply(&joined("carol")), "listed already");
        assert_eq!(roster.count(), 3);
        assert!(roster.apply(&left("CAROL")));
        assert_eq!(roster.names(), ["alice", "bob"]);
        assert_eq!(roster.count(), 2);
        assert!(!roster.apply(&left("zed")), "nobody of that name");
        assert_eq!(roster.count(), 2);
    }

    #[test]
    fn a_leave_of_someone_not_listed_still_lowers_the_count_of_a_partial_list() {
        let mut roster = Roster::new();
        roster.apply(&welcome(61, &["ann", "bob"]));
        assert!(roster.apply(&left("u59")));
        assert_eq!((roster.names().len(), roster.count()), (2, 60));
    }

    #[test]
    fn a_digest_applies_its_leaves_before_its_joins() {
        let mut roster = Roster::new();
        roster.apply(&welcome(3, &["alice", "bob", "Bob2"]));
        let digest = Event::Presence {
            joined: names(&["carol", "BOB"]),
            left: names(&["bob", "Bob2", "nobody"]),
            count: 3,
        };
        assert!(roster.apply(&digest));
        // bob came back as BOB; a leave of someone not listed changes nothing.
        assert_eq!(roster.names(), ["alice", "BOB", "carol"]);
        assert_eq!(roster.count(), 3);
        let same = Event::Presence {
            joined: names(&["carol"]),
            left: names(&["carol"]),
            count: 3,
        };
        assert!(!roster.apply(&same), "carol left and came back as she was");
        assert_eq!(roster.names(), ["alice", "BOB", "carol"]);
    }

    #[test]
    fn a_digest_counts_as_the_room_does_but_never_below_the_names_listed() {
        let mut roster = Roster::new();
        roster.apply(&welcome(300, &["alice", "bob"]));
        let digest = |count| Event::Presence {
            joined: names(&["zed"]),
            left: Vec::new(),
            count,
        };
        roster.apply(&digest(301));
        assert_eq!((roster.names().len(), roster.count()), (3, 301));
        roster.apply(&digest(1));
        assert_eq!(roster.count(), 3);
    }

    #[test]
    fn other_events_say_nothing_about_who_is_online() {
        let mut roster = Roster::new();
        roster.apply(&welcome(1, &["ann"]));
        for event in [
            Event::Prompt,
            Event::help(),
            Event::Goodbye,
            Event::Shutdown,
        ] {
            assert!(!roster.apply(&event));
        }
        assert_eq!(roster.names(), ["ann"]);
    }

    #[test]
    fn clearing_forgets_everyone() {
        let mut roster = Roster::new();
        assert!(!roster.clear(), "nothing to forget");
        roster.apply(&welcome(2, &["ann", "bob"]));
        assert!(roster.clear());
        assert_eq!(roster, Roster::new());
    }
}
