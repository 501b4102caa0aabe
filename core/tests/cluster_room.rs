//! The room in cluster mode: two nodes' rooms sharing one log, as exact text on the line wire.
//!
//! The log here is the smallest one with the engine's semantics (`chat_core::cluster`): it
//! appends in the order publishes reach it, keeps names (and look keys) unique, numbers
//! messages, and every room applies every entry in that one order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chat_core::cluster::{Logged, Member, Publish, Refusal, Snapshot};
use chat_core::moderation::{Moderation, Sanction, SanctionKind};
use chat_core::{
    ChatMessage, Config, ConnId, LeaveReason, Line, Output, Room, Timestamp, Wire, look_key,
    name_key,
};

const PROMPT: &str = "Enter your name: ";

/// Two (or more) nodes and their shared log.
struct Cluster {
    rooms: Vec<Room>,
    /// Who each node's connections are: node index and id to what it received.
    seen: HashMap<(usize, ConnId), Vec<String>>,
    /// Publishes waiting to reach the log, with the node that made them.
    pending: Vec<(usize, Publish)>,
    log: Vec<Logged>,
    /// name key to (node, conn, name).
    members: BTreeMap<String, (String, ConnId, String)>,
    /// Nodes out of contact with the log: what they publish is refused, what it appends does
    /// not reach them.
    cut: BTreeSet<usize>,
    /// The log's epoch: a new one when it begins afresh.
    epoch: u64,
    seq: u64,
    now: Timestamp,
    /// The bans and mutes the log keeps, by kind and name key.
    sanctions: BTreeMap<(SanctionKind, String), Sanction>,
    /// The connections each node closed.
    closed: BTreeSet<(usize, ConnId)>,
}

fn node(i: usize) -> String {
    format!("node-{i}")
}

impl Cluster {
    fn new(nodes: usize) -> Cluster {
        Cluster::with(nodes, Config::default())
    }

    fn with(nodes: usize, config: Config) -> Cluster {
        let rooms: Vec<Room> = (0..nodes)
            .map(|i| {
                Room::new(Config {
                    cluster: Some(node(i)),
                    flood: None,
                    ..config.clone()
                })
            })
            .collect();
        let mut cluster = Cluster {
            rooms,
            seen: HashMap::new(),
            pending: Vec::new(),
            log: Vec::new(),
            members: BTreeMap::new(),
            cut: BTreeSet::new(),
            epoch: 1,
            seq: 0,
            now: Timestamp::ZERO,
            sanctions: BTreeMap::new(),
            closed: BTreeSet::new(),
        };
        for n in 0..nodes {
            cluster.heal(n);
        }
        cluster
    }

    /// The log as one snapshot.
    fn snapshot(&self) -> Snapshot {
        let members = self
            .members
            .iter()
            .map(|(key, (node, conn, name))| Member {
                key: key.clone(),
                name: name.clone(),
                node: node.clone(),
                conn: *conn,
            })
            .collect();
        let recent = self
            .log
            .iter()
            .filter_map(|e| match e {
                Logged::Message {
                    seq, from, text, ..
                } => Some(ChatMessage {
                    seq: *seq,
                    from: from.clone(),
                    text: text.clone(),
                }),
                _ => None,
            })
            .collect();
        Snapshot {
            epoch: self.epoch,
            seq: self.seq,
            members,
            recent,
            sanctions: self.sanctions.values().cloned().collect(),
        }
    }

    /// Node `n` loses contact with the log.
    fn cut(&mut self, n: usize) {
        self.cut.insert(n);
        self.rooms[n].handle_link_down(self.now);
        self.drain(n);
    }

    /// Node `n` is in contact again: it applies a snapshot, then what it publishes.
    fn heal(&mut self, n: usize) {
        self.rejoin(n);
        self.settle();
    }

    /// Node `n` is in contact again and applies a snapshot; what it publishes then waits.
    fn rejoin(&mut self, n: usize) {
        self.cut.remove(&n);
        let snapshot = self.snapshot();
        self.rooms[n].handle_snapshot(self.now, snapshot);
        self.drain(n);
    }

    /// The publishes waiting, node `n`'s first: they reach the log before the others'.
    fn first(&mut self, n: usize) {
        self.pending.sort_by_key(|(m, _)| *m != n);
    }

    /// The log writes out node `n`'s users as gone (its lease ran out).
    fn reap(&mut self, n: usize) {
        let gone: Vec<(String, String)> = self
            .members
            .iter()
            .filter(|(_, (node_of, _, _))| *node_of == node(n))
            .map(|(key, (_, _, name))| (key.clone(), name.clone()))
            .collect();
        for (key, name) in gone {
            self.members.remove(&key);
            self.deliver(Logged::Left {
                key,
                name,
                reason: LeaveReason::Lost,
            });
        }
    }

    /// Appends `entry` and has every node in contact apply it.
    fn deliver(&mut self, entry: Logged) {
        self.log.push(entry.clone());
        for i in 0..self.rooms.len() {
            if !self.cut.contains(&i) {
                self.rooms[i].handle_logged(self.now, entry.clone());
                self.drain(i);
            }
        }
    }

    fn open(&mut self, n: usize, conn: u64) -> ConnId {
        self.open_from(n, conn, None)
    }

    /// A connection from `peer`.
    fn open_from(&mut self, n: usize, conn: u64, peer: Option<&str>) -> ConnId {
        let conn = ConnId(conn);
        let peer = peer.map(|p| p.parse().expect("an address"));
        self.rooms[n].handle_open(self.now, conn, Wire::Line, peer);
        self.drain(n);
        conn
    }

    /// The log takes the first pending publish only, and every node in contact applies what
    /// it appended.
    fn step(&mut self) {
        let (n, publish) = self.pending.remove(0);
        if self.cut.contains(&n) {
            self.rooms[n].handle_refused(self.now, publish, Refusal::Busy);
            return self.drain(n);
        }
        let from = self.log.len();
        self.append(n, publish);
        for k in from..self.log.len() {
            let entry = self.log[k].clone();
            for i in 0..self.rooms.len() {
                if !self.cut.contains(&i) {
                    self.rooms[i].handle_logged(self.now, entry.clone());
                    self.drain(i);
                }
            }
        }
    }

    /// Time passes: every room's deadline up to `by` from now is met.
    fn pass(&mut self, by: std::time::Duration) {
        let until = self.now + by;
        loop {
            let next = (0..self.rooms.len())
                .filter_map(|n| self.rooms[n].poll_timeout().map(|t| (t, n)))
                .filter(|&(t, _)| t <= until)
                .min();
            let Some((t, n)) = next else { break };
            self.now = self.now.max(t);
            self.rooms[n].handle_timeout(self.now);
            self.drain(n);
        }
        self.now = until;
    }

    fn line(&mut self, n: usize, conn: ConnId, text: &str) {
        self.rooms[n].handle_line(self.now, conn, Line::Text(text.into()));
        self.drain(n);
    }

    /// What node `n`'s connection `conn` received since last asked.
    fn take(&mut self, n: usize, conn: ConnId) -> Vec<String> {
        std::mem::take(self.seen.entry((n, conn)).or_default())
    }

    fn drain(&mut self, n: usize) {
        while let Some(out) = self.rooms[n].poll_output() {
            match out {
                Output::Send { conn, data } => {
                    let text = String::from_utf8(data.to_vec()).expect("UTF-8");
                    self.seen.entry((n, conn)).or_default().push(text);
                }
                Output::Publish(p) => self.pending.push((n, p)),
                Output::Close { conn, .. } => {
                    self.closed.insert((n, conn));
                }
                Output::Log(_) => {}
                Output::Sanctions(all) => panic!("node {n} in cluster mode stored {all:?}"),
            }
        }
    }

    /// The log takes every pending publish in order, and every node applies what it appended.
    fn settle(&mut self) {
        while !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            for (n, publish) in pending {
                if self.cut.contains(&n) {
                    self.rooms[n].handle_refused(self.now, publish, Refusal::Busy);
                    self.drain(n);
                    continue;
                }
                let from = self.log.len();
                self.append(n, publish);
                for k in from..self.log.len() {
                    let entry = self.log[k].clone();
                    for i in 0..self.rooms.len() {
                        if !self.cut.contains(&i) {
                            self.rooms[i].handle_logged(self.now, entry.clone());
                            self.drain(i);
                        }
                    }
                }
            }
        }
    }

    fn append(&mut self, n: usize, publish: Publish) {
        match publish {
            Publish::Claim {
                conn,
                key,
                look,
                name,
            } => {
                let held = self.members.get(&key).map(|(node_of, c, _)| (node_of, *c));
                if held == Some((&node(n), conn)) {
                    return; // Its own, claimed again.
                }
                let alike = self
                    .members
                    .iter()
                    .find(|(k, (_, _, other))| **k != key && look_key(other) == look)
                    .map(|(_, (_, _, other))| other.clone());
                let refusal = match (held, alike) {
                    (Some(_), _) => Refusal::Taken,
                    (None, Some(other)) => Refusal::LooksLike(other),
                    (None, None) => {
                        self.members
                            .insert(key.clone(), (node(n), conn, name.clone()));
                        self.log.push(Logged::Joined {
                            key,
                            name,
                            node: node(n),
                            conn,
                        });
                        return;
                    }
                };
                let publish = Publish::Claim {
                    conn,
                    key,
                    look,
                    name,
                };
                self.rooms[n].handle_refused(self.now, publish, refusal);
                self.drain(n);
            }
            Publish::Say {
                conn,
                origin,
                key,
                from,
                text,
            } => {
                let now = self.now.as_duration().as_millis() as u64;
                let muted = self
                    .sanctions
                    .get(&(SanctionKind::Mute, key.clone()))
                    .is_some_and(|m| m.until > now);
                if muted {
                    let publish = Publish::Say {
                        conn,
                        origin,
                        key,
                        from,
                        text,
                    };
                    self.rooms[n].handle_refused(self.now, publish, Refusal::Muted);
                    return self.drain(n);
                }
                self.seq += 1;
                self.log.push(Logged::Message {
                    seq: self.seq,
                    from,
                    text,
                    node: node(n),
                    origin,
                });
            }
            Publish::Release {
                conn,
                key,
                name,
                reason,
            } => {
                if self
                    .members
                    .get(&key)
                    .is_some_and(|(m, c, _)| *m == node(n) && *c == conn)
                {
                    self.members.remove(&key);
                    self.log.push(Logged::Left { key, name, reason });
                }
            }
            Publish::Moderate { moderation, .. } => {
                match &moderation {
                    Moderation::Sanction(s) => {
                        self.sanctions
                            .insert((s.kind, name_key(&s.name)), s.clone());
                    }
                    Moderation::Lift { kind, name, .. } => {
                        self.sanctions.remove(&(*kind, name_key(name)));
                    }
                    _ => {}
                }
                let kicked = match &moderation {
                    Moderation::Kick { name, .. } => Some(name_key(name)),
                    _ => None,
                };
                self.log.push(Logged::Moderated(moderation));
                // A kick writes its user out of the room.
                if let Some(key) = kicked
                    && let Some((_, _, name)) = self.members.remove(&key)
                {
                    self.log.push(Logged::Left {
                        key,
                        name,
                        reason: LeaveReason::Kicked,
                    });
                }
            }
            Publish::Tell {
                node: to_node,
                from_conn,
                from,
                to_key,
                to,
                text,
            } => {
                let target = (0..self.rooms.len()).find(|&i| node(i) == to_node);
                let heard = target.is_some_and(|i| {
                    let heard = self.rooms[i].handle_told(self.now, &to_key, from, text.clone());
                    self.drain(i);
                    heard
                });
                self.rooms[n].handle_tell_result(self.now, from_conn, to, text, heard);
                self.drain(n);
            }
        }
    }
}

/// alice on node 0 and bob on node 1, both in.
fn two_users() -> (Cluster, ConnId, ConnId) {
    let mut c = Cluster::new(2);
    let alice = c.open(0, 1);
    let bob = c.open(1, 1);
    c.line(0, alice, "alice");
    c.settle();
    c.line(1, bob, "bob");
    c.settle();
    (c, alice, bob)
}

#[test]
fn a_join_waits_for_the_log_then_every_node_hears_of_it() {
    let mut c = Cluster::new(2);
    let alice = c.open(0, 1);
    let bob = c.open(1, 1);
    c.line(1, bob, "bob");
    c.settle();
    c.take(1, bob);
    c.line(0, alice, "alice");
    // Nothing is said before the log has the join.
    assert_eq!(c.take(0, alice), [PROMPT]);
    c.settle();
    assert_eq!(
        c.take(0, alice),
        ["Welcome, alice! Online (2): alice, bob\nType /help for the list of commands.\n"]
    );
    assert_eq!(c.take(1, bob), ["*** alice has joined the chat ***\n"]);
}

#[test]
fn a_message_reaches_every_node_once_it_is_logged_and_the_sender_gets_no_echo() {
    let (mut c, alice, bob) = two_users();
    c.take(0, alice);
    c.take(1, bob);
    c.line(0, alice, "hello");
    assert!(c.take(1, bob).is_empty(), "not before the log numbers it");
    c.settle();
    assert_eq!(c.take(1, bob), ["alice: hello\n"]);
    assert!(c.take(0, alice).is_empty());
    c.line(1, bob, "/who");
    assert_eq!(c.take(1, bob), ["Online (2): alice, bob\n"]);
}

#[test]
fn two_nodes_asked_for_one_name_at_once_give_it_to_exactly_one() {
    let mut c = Cluster::new(2);
    let a = c.open(0, 1);
    let b = c.open(1, 1);
    c.take(0, a);
    c.take(1, b);
    c.line(0, a, "carol");
    c.line(1, b, "Carol");
    c.settle();
    assert!(c.take(0, a)[0].starts_with("Welcome, carol!"));
    assert_eq!(
        c.take(1, b),
        // Still at the prompt: no announcement, only the refusal.
        [
            "The name 'Carol' is already taken; choose another.\n",
            PROMPT
        ]
    );
}

#[test]
fn a_private_message_crosses_nodes_and_an_absent_user_is_reported() {
    let (mut c, alice, bob) = two_users();
    c.take(0, alice);
    c.take(1, bob);
    c.line(0, alice, "/msg BOB psst");
    c.settle();
    assert_eq!(c.take(1, bob), ["[private] alice: psst\n"]);
    assert_eq!(c.take(0, alice), ["[private to bob] psst\n"]);
    c.line(0, alice, "/msg nobody hi");
    assert_eq!(c.take(0, alice), ["No user named 'nobody'.\n"]);
}

#[test]
fn a_leave_is_announced_on_every_node_when_the_log_has_it() {
    let (mut c, alice, bob) = two_users();
    let cy = c.open(0, 2);
    c.line(0, cy, "cy");
    c.settle();
    c.take(0, alice);
    c.take(1, bob);
    c.line(1, bob, "/quit");
    assert_eq!(c.take(1, bob), ["Goodbye!\n"]);
    // Until the log has it, bob is still in the room everywhere.
    c.line(0, cy, "/who");
    assert_eq!(
        c.take(0, cy).last().map(String::as_str),
        Some("Online (3): alice, bob, cy\n")
    );
    c.settle();
    assert_eq!(c.take(0, alice), ["*** bob has left the chat ***\n"]);
    c.line(0, cy, "/who");
    assert_eq!(
        c.take(0, cy),
        ["*** bob has left the chat ***\n", "Online (2): alice, cy\n"]
    );
}

#[test]
fn a_connection_gone_before_its_claim_came_back_joins_and_leaves_everywhere() {
    let mut c = Cluster::new(2);
    let bob = c.open(1, 1);
    c.line(1, bob, "bob");
    c.settle();
    let ghost = c.open(0, 1);
    c.line(0, ghost, "ghost");
    c.rooms[0].handle_disconnect(c.now, ghost, chat_core::Disconnect::Dropped);
    c.drain(0);
    c.take(1, bob);
    c.settle();
    assert_eq!(
        c.take(1, bob),
        [
            "*** ghost has joined the chat ***\n",
            "*** ghost has left the chat ***\n"
        ]
    );
    assert!(
        c.members.keys().all(|k| k != "ghost"),
        "the log holds no ghost"
    );
}

#[test]
fn above_the_announce_limit_the_other_nodes_users_are_counted_in_the_digest() {
    let mut c = Cluster::with(
        2,
        Config {
            announce_limit: 2,
            announce_interval: std::time::Duration::from_secs(10),
            ..Config::default()
        },
    );
    let (alice, bob) = (c.open(0, 1), c.open(1, 1));
    c.line(0, alice, "alice");
    c.settle();
    c.line(1, bob, "bob");
    c.settle();
    c.take(0, alice);
    // The third user, on the other node, crosses the limit: gathered, then told at its due.
    let cy = c.open(1, 2);
    c.line(1, cy, "cy");
    c.settle();
    assert!(c.take(0, alice).is_empty());
    let due = c.rooms[0].presence_due().expect("a digest gathers");
    c.now = due;
    c.rooms[0].handle_timeout(due);
    c.drain(0);
    assert_eq!(c.take(0, alice), ["*** 1 joined: cy (3 online) ***\n"]);
    // Its leave, counted with it still in, goes into the next digest.
    c.line(1, cy, "/quit");
    c.settle();
    let due = c.rooms[0].presence_due().expect("a digest gathers");
    c.rooms[0].handle_timeout(due);
    c.drain(0);
    assert_eq!(c.take(0, alice), ["*** 1 left: cy (2 online) ***\n"]);
}

/// alice and cy on node 0, bob on node 1, all in, their screens read.
fn three_users() -> (Cluster, ConnId, ConnId, ConnId) {
    let (mut c, alice, bob) = two_users();
    let cy = c.open(0, 2);
    c.line(0, cy, "cy");
    c.settle();
    for (n, conn) in [(0, alice), (1, bob), (0, cy)] {
        c.take(n, conn);
    }
    (c, alice, bob, cy)
}

const LOST: &str =
    "*** Lost contact with the other servers; only people on this server can hear you now ***\n";
const BACK: &str = "*** Back in contact with the other servers ***\n";

#[test]
fn out_of_contact_a_node_chats_alone_and_comes_back_into_the_room() {
    let (mut c, alice, bob, cy) = three_users();
    c.cut(0);
    assert_eq!(c.take(0, alice), [LOST]);
    assert_eq!(c.take(0, cy), [LOST]);
    c.line(0, alice, "anyone?");
    c.settle();
    assert_eq!(c.take(0, cy), ["alice: anyone?\n"]);
    assert!(c.take(1, bob).is_empty(), "the other node hears nothing");
    // Nobody is announced as leaving on the node out of contact.
    c.line(0, cy, "/who");
    assert_eq!(c.take(0, cy), ["Online (3): alice, bob, cy\n"]);
    // Its lease runs out: the others see its users leave.
    c.reap(0);
    assert_eq!(
        c.take(1, bob),
        [
            "*** alice has left the chat ***\n",
            "*** cy has left the chat ***\n"
        ]
    );
    c.heal(0);
    assert_eq!(c.take(0, alice), [BACK]);
    assert_eq!(c.take(0, cy), [BACK]);
    assert_eq!(
        c.take(1, bob),
        [
            "*** alice has joined the chat ***\n",
            "*** cy has joined the chat ***\n"
        ]
    );
    c.line(1, bob, "welcome back");
    c.settle();
    assert_eq!(c.take(0, alice), ["bob: welcome back\n"]);
    assert_eq!(c.take(0, cy), ["bob: welcome back\n"]);
}

#[test]
fn messages_logged_while_a_node_was_out_of_contact_reach_it_in_order_when_it_is_back() {
    let (mut c, alice, bob, _cy) = three_users();
    c.cut(0);
    c.take(0, alice);
    c.line(1, bob, "one");
    c.line(1, bob, "two");
    c.settle();
    assert!(c.take(0, alice).is_empty());
    c.heal(0);
    assert_eq!(c.take(0, alice), [BACK, "bob: one\n", "bob: two\n"]);
    // Not reaped meanwhile: nobody left or joined anywhere.
    assert!(c.take(1, bob).is_empty());
}

#[test]
fn a_name_given_out_on_both_sides_stays_with_the_log_and_the_other_goes_back_to_the_prompt() {
    let (mut c, alice, bob, _cy) = three_users();
    c.cut(0);
    c.take(0, alice);
    let dave1 = c.open(1, 2);
    c.line(1, dave1, "dave");
    c.settle();
    let dave0 = c.open(0, 3);
    c.line(0, dave0, "Dave");
    c.settle();
    assert!(c.take(0, dave0)[1].starts_with("Welcome, Dave!"));
    assert_eq!(c.take(0, alice), ["*** Dave has joined the chat ***\n"]);
    c.take(1, bob);
    c.heal(0);
    assert_eq!(
        c.take(0, dave0),
        [
            BACK,
            "The name 'Dave' is already taken; choose another.\n",
            PROMPT
        ]
    );
    assert_eq!(
        c.take(0, alice),
        [
            BACK,
            "*** Dave has left the chat ***\n",
            "*** dave has joined the chat ***\n"
        ]
    );
    assert!(
        c.take(1, bob).is_empty(),
        "the room never had node 0's Dave"
    );
    // The one sent back can choose again.
    c.line(0, dave0, "dave2");
    c.settle();
    assert!(c.take(0, dave0)[0].starts_with("Welcome, dave2!"));
    assert_eq!(c.take(1, bob), ["*** dave2 has joined the chat ***\n"]);
}

#[test]
fn a_user_who_left_while_out_of_contact_is_released_when_contact_is_back() {
    let (mut c, alice, bob, cy) = three_users();
    c.cut(0);
    c.line(0, cy, "/quit");
    assert_eq!(c.take(0, alice), [LOST, "*** cy has left the chat ***\n"]);
    c.heal(0);
    assert_eq!(c.take(1, bob), ["*** cy has left the chat ***\n"]);
    // Shown on node 0 when cy left, and not again.
    assert_eq!(c.take(0, alice), [BACK]);
    assert!(!c.members.contains_key("cy"));
}

#[test]
fn a_log_begun_afresh_lists_the_other_nodes_users_until_their_nodes_claim_them_again() {
    let (mut c, alice, bob, cy) = three_users();
    // The engine came back empty: every node out of contact, then back one by one.
    c.cut(0);
    c.cut(1);
    c.log.clear();
    c.members.clear();
    c.epoch = 2;
    c.seq = 0;
    c.heal(0);
    assert_eq!(c.take(0, alice), [LOST, BACK]);
    c.line(0, cy, "/who");
    assert_eq!(c.take(0, cy), [LOST, BACK, "Online (3): alice, bob, cy\n"]);
    c.heal(1);
    // bob's node claimed him again: nobody left, nobody joined, anywhere.
    assert_eq!(c.take(1, bob), [LOST, BACK]);
    assert!(c.take(0, alice).is_empty());
    c.line(1, bob, "new epoch");
    c.settle();
    assert_eq!(c.take(0, alice), ["bob: new epoch\n"]);
    // A node that never comes back: its users leave once the grace is over.
    c.cut(1);
    c.log.clear();
    c.members.clear();
    c.epoch = 3;
    c.heal(0);
    c.take(0, alice);
    let due = c.rooms[0].poll_timeout().expect("a deadline for bob");
    c.now = due;
    c.rooms[0].handle_timeout(due);
    c.drain(0);
    assert_eq!(c.take(0, alice), ["*** bob has left the chat ***\n"]);
}

#[test]
fn a_name_taken_again_out_of_contact_after_its_holder_left_is_claimed_for_the_new_holder() {
    let (mut c, alice, bob, cy) = three_users();
    c.cut(0);
    c.line(0, cy, "/quit");
    let cy2 = c.open(0, 3);
    c.line(0, cy2, "cy");
    assert_eq!(
        c.take(0, alice),
        [
            LOST,
            "*** cy has left the chat ***\n",
            "*** cy has joined the chat ***\n"
        ]
    );
    // The log still holds the first cy: released, and the name claimed for the second.
    c.heal(0);
    assert_eq!(
        c.take(1, bob),
        [
            "*** cy has left the chat ***\n",
            "*** cy has joined the chat ***\n"
        ]
    );
    assert_eq!(c.members.get("cy"), Some(&(node(0), cy2, "cy".to_owned())));
    assert_eq!(c.take(0, alice), [BACK]);
}

#[test]
fn a_claim_carried_out_though_refused_and_joined_again_in_another_spelling_is_claimed_again() {
    let (mut c, alice, bob) = two_users();
    c.take(1, bob);
    let eve = c.open(0, 2);
    c.line(0, eve, "EVE");
    // The log takes the claim, but node 0 loses contact before it hears so: busy, it is told.
    let (_, claim) = c.pending.remove(0);
    let from = c.log.len();
    c.append(0, claim.clone());
    c.rooms[0].handle_refused(c.now, claim, Refusal::Busy);
    c.cut(0);
    for k in from..c.log.len() {
        let entry = c.log[k].clone();
        c.rooms[1].handle_logged(c.now, entry);
        c.drain(1);
    }
    assert_eq!(c.take(1, bob), ["*** EVE has joined the chat ***\n"]);
    c.line(0, eve, "Eve");
    assert!(
        c.take(0, eve)
            .iter()
            .any(|l| l.starts_with("Welcome, Eve!"))
    );
    c.take(0, alice);
    // The log's EVE is not the Eve here: released, and Eve claimed.
    c.heal(0);
    assert_eq!(
        c.take(1, bob),
        [
            "*** EVE has left the chat ***\n",
            "*** Eve has joined the chat ***\n"
        ]
    );
    assert_eq!(
        c.members.get("eve"),
        Some(&(node(0), eve, "Eve".to_owned()))
    );
}

#[test]
fn a_name_respelled_elsewhere_while_out_of_contact_is_told_as_a_leave_and_a_join() {
    let (mut c, alice, _bob) = two_users();
    let carol = c.open(1, 2);
    c.line(1, carol, "Carol");
    c.settle();
    c.cut(0);
    c.take(0, alice);
    c.line(1, carol, "/quit");
    c.settle();
    let carol2 = c.open(1, 3);
    c.line(1, carol2, "carol");
    c.settle();
    c.heal(0);
    assert_eq!(
        c.take(0, alice),
        [
            BACK,
            "*** Carol has left the chat ***\n",
            "*** carol has joined the chat ***\n"
        ]
    );
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (3): alice, bob, carol\n"]);
}

#[test]
fn a_user_gone_while_its_name_was_claimed_again_and_refused_leaves() {
    let (mut c, alice, _bob) = two_users();
    assert_eq!(look_key("CarI"), look_key("carl"));
    c.cut(0);
    let x = c.open(0, 2);
    c.line(0, x, "CarI");
    c.rejoin(0);
    // Someone on node 1 asks for a look-alike, which reaches the log first; CarI goes.
    let y = c.open(1, 2);
    c.line(1, y, "carl");
    c.line(0, x, "/quit");
    c.take(0, alice);
    c.first(1);
    c.settle();
    assert_eq!(
        c.take(0, alice),
        [
            "*** carl has joined the chat ***\n",
            "*** CarI has left the chat ***\n"
        ]
    );
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (3): alice, bob, carl\n"]);
}

#[test]
fn a_name_the_log_gives_elsewhere_while_it_is_claimed_again_sends_the_one_here_to_the_prompt() {
    let (mut c, alice, _bob) = two_users();
    c.cut(0);
    let x = c.open(0, 2);
    c.line(0, x, "Dave");
    c.rejoin(0);
    let y = c.open(1, 2);
    c.line(1, y, "dave");
    c.take(0, alice);
    c.take(0, x);
    // Node 1's claim reaches the log first; node 0 reads its join before its own answer.
    c.first(1);
    c.settle();
    assert_eq!(
        c.take(0, alice),
        [
            "*** Dave has left the chat ***\n",
            "*** dave has joined the chat ***\n"
        ]
    );
    assert_eq!(
        c.take(0, x),
        [
            "The name 'Dave' is already taken; choose another.\n",
            PROMPT
        ]
    );
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (3): alice, bob, dave\n"]);
}

#[test]
fn a_user_gone_while_the_log_gave_its_name_elsewhere_leaves_and_the_other_joins() {
    let (mut c, alice, _bob) = two_users();
    c.cut(0);
    let x = c.open(0, 2);
    c.line(0, x, "Dave");
    c.rejoin(0);
    let y = c.open(1, 2);
    c.line(1, y, "dave");
    // Dave goes before node 0 hears that its claim lost to node 1's.
    c.line(0, x, "/quit");
    c.take(0, alice);
    c.first(1);
    c.settle();
    assert_eq!(
        c.take(0, alice),
        [
            "*** Dave has left the chat ***\n",
            "*** dave has joined the chat ***\n"
        ]
    );
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (3): alice, bob, dave\n"]);
}

#[test]
fn a_user_who_left_elsewhere_while_out_of_contact_is_told_gone_when_the_name_is_released() {
    let (mut c, alice, _bob) = two_users();
    // x on node 0 asks for trent as trent on node 1 does; x's claim is held up on the way.
    let x = c.open(0, 2);
    c.line(0, x, "trent");
    let (_, held_up) = c.pending.remove(0);
    let trent = c.open(1, 2);
    c.line(1, trent, "trent");
    c.settle();
    c.take(0, alice);
    // x's claim reaches the log after trent left; node 0 loses contact without its answer.
    c.rooms[0].handle_refused(c.now, held_up.clone(), Refusal::Busy);
    c.cut(0);
    c.line(1, trent, "/quit");
    c.settle();
    c.append(0, held_up);
    c.take(0, alice);
    // The log holds trent for x, who is not in: released, and the trent node 0 knew is gone.
    c.heal(0);
    assert_eq!(
        c.take(0, alice),
        [BACK, "*** trent has left the chat ***\n"]
    );
    assert!(!c.members.contains_key("trent"));
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (2): alice, bob\n"]);
}

// ---------------------------------------------------------------------------------------------
// Operators and moderation across nodes.

/// OP (an operator) and alice on node 0, bob and cy on node 1, all in, their screens read.
fn moderated() -> (Cluster, [ConnId; 4]) {
    let mut c = Cluster::with(
        2,
        Config {
            op_token: Some("s3cret".into()),
            ..Config::default()
        },
    );
    let (op, alice, bob, cy) = (c.open(0, 1), c.open(0, 2), c.open(1, 1), c.open(1, 2));
    for (n, conn, name) in [
        (0, op, "OP"),
        (0, alice, "alice"),
        (1, bob, "bob"),
        (1, cy, "cy"),
    ] {
        c.line(n, conn, name);
        c.settle();
    }
    c.line(0, op, "/op s3cret");
    c.settle();
    assert_eq!(
        c.take(0, op).last().map(String::as_str),
        Some("You are now an operator.\n")
    );
    for (n, conn) in [(0, alice), (1, bob), (1, cy)] {
        c.take(n, conn);
    }
    (c, [op, alice, bob, cy])
}

#[test]
fn a_kick_on_one_node_puts_out_a_user_of_another_and_every_node_tells_it_once() {
    let (mut c, [op, alice, bob, cy]) = moderated();
    c.line(0, op, "/kick bob spam");
    c.settle();
    assert_eq!(c.take(1, bob), ["*** You were kicked by OP: spam ***\n"]);
    assert!(c.closed.contains(&(1, bob)));
    for (n, conn) in [(0, op), (0, alice), (1, cy)] {
        // The kick's line, and no leave after it.
        assert_eq!(c.take(n, conn), ["*** bob was kicked by OP: spam ***\n"]);
    }
    assert!(!c.members.contains_key("bob"), "written out of the log");
    c.line(1, cy, "/who");
    assert_eq!(c.take(1, cy), ["Online (3): alice, cy, @OP\n"]);
}

#[test]
fn a_user_kicked_while_their_node_was_out_of_contact_is_written_out_and_back_with_it() {
    let (mut c, [op, alice, bob, cy]) = moderated();
    c.cut(1);
    c.take(1, cy);
    c.take(1, bob);
    c.line(0, op, "/kick bob");
    c.settle();
    assert_eq!(
        c.take(0, alice),
        ["*** bob was kicked by OP: no reason given ***\n"]
    );
    // The kick wrote bob out of the room: the other nodes do not wait for his node.
    assert!(!c.members.contains_key("bob"));
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (3): alice, cy, @OP\n"]);
    // His node never had the kick: bob is still there, and is in the room again.
    c.heal(1);
    assert_eq!(c.take(1, bob), [BACK]);
    assert_eq!(c.take(0, alice), ["*** bob has joined the chat ***\n"]);
    assert!(c.members.contains_key("bob"));
}

#[test]
fn a_user_banned_while_their_node_was_out_of_contact_is_put_out_when_it_is_back() {
    let (mut c, [op, alice, bob, cy]) = moderated();
    c.cut(1);
    c.take(1, cy);
    c.take(1, bob);
    c.line(0, op, "/ban bob 10 flood");
    c.settle();
    assert_eq!(
        c.take(0, op),
        [
            "bob is banned for 10 minutes.\n",
            "*** bob was banned by OP: flood ***\n"
        ]
    );
    assert_eq!(c.take(0, alice), ["*** bob was banned by OP: flood ***\n"]);
    // Told banned on node 0, bob is not listed there, though his node has yet to hear of it.
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (3): alice, cy, @OP\n"]);
    assert!(c.members.contains_key("bob"));
    // Back in contact, his node has the ban from the snapshot: bob is put out, released.
    c.heal(1);
    assert_eq!(
        c.take(1, bob),
        [BACK, "*** You were banned by OP: flood ***\n"]
    );
    assert!(c.closed.contains(&(1, bob)));
    assert_eq!(
        c.take(1, cy),
        [BACK, "*** bob was banned by OP: flood ***\n"]
    );
    assert!(!c.members.contains_key("bob"));
    assert!(c.take(0, alice).is_empty(), "no leave told a second time");
    // And turned away if he comes back.
    let again = c.open(1, 3);
    c.line(1, again, "Bob");
    assert_eq!(
        c.take(1, again),
        [
            PROMPT,
            "You are banned from this room for 10 more minutes.\n"
        ]
    );
}

#[test]
fn a_name_banned_while_its_claim_was_on_its_way_is_turned_away_and_released() {
    let (mut c, [op, alice, _bob, cy]) = moderated();
    let carol = c.open(1, 3);
    c.line(1, carol, "carol");
    c.line(0, op, "/ban carol 5");
    // The ban reaches the log first, then carol's claim.
    c.first(0);
    c.settle();
    assert_eq!(
        c.take(1, carol),
        [
            PROMPT,
            "You are banned from this room for 5 more minutes.\n"
        ]
    );
    assert!(c.closed.contains(&(1, carol)));
    assert!(!c.members.contains_key("carol"), "released");
    // Her node's users were told nothing; the others saw the log's join, then her leave.
    assert!(c.take(1, cy).is_empty());
    assert_eq!(
        c.take(0, alice),
        [
            "*** carol has joined the chat ***\n",
            "*** carol has left the chat ***\n"
        ]
    );
}

#[test]
fn a_join_decided_when_contact_is_lost_is_refused_under_a_name_banned_meanwhile() {
    let (mut c, [op, _alice, _bob, cy]) = moderated();
    let carol = c.open(1, 3);
    c.line(1, carol, "carol");
    // Her claim is held up on the way; the ban reaches every node.
    let at = c
        .pending
        .iter()
        .position(|(n, _)| *n == 1)
        .expect("the claim");
    let (_, held_up) = c.pending.remove(at);
    c.line(0, op, "/ban carol 5");
    c.settle();
    // Node 1 loses contact with the claim unanswered: it decides the join itself.
    c.take(1, carol);
    c.cut(1);
    assert_eq!(
        c.take(1, carol),
        ["You are banned from this room for 5 more minutes.\n"]
    );
    assert!(c.closed.contains(&(1, carol)));
    assert_eq!(c.take(1, cy), [LOST]);
    // The claim the log never had is refused later: nobody is left to tell.
    c.rooms[1].handle_refused(c.now, held_up, Refusal::Busy);
    c.drain(1);
    assert!(c.take(1, carol).is_empty());
}

#[test]
fn out_of_contact_an_operator_reaches_only_this_nodes_users_and_keeps_nothing() {
    let (mut c, [op, alice, bob, cy]) = moderated();
    c.cut(0);
    c.take(0, op);
    c.take(0, alice);
    // bob is on node 1, out of reach: nothing is done.
    c.line(0, op, "/kick bob");
    assert_eq!(
        c.take(0, op),
        ["Error: the server is busy; nothing was sent. Try again in a moment.\n"]
    );
    // A ban holds here only: no line about bob, who is not put out anywhere.
    c.line(0, op, "/ban bob 5");
    assert_eq!(c.take(0, op), ["bob is banned for 5 minutes.\n"]);
    assert!(c.take(0, alice).is_empty());
    // alice, here, is put out here at once.
    c.line(0, op, "/kick alice bye");
    assert_eq!(c.take(0, alice), ["*** You were kicked by OP: bye ***\n"]);
    assert_eq!(c.take(0, op), ["*** alice was kicked by OP: bye ***\n"]);
    assert!(c.take(1, bob).is_empty() && c.take(1, cy).is_empty());
    // Back in contact: the ban made apart is not kept; alice's leave reaches the others.
    c.heal(0);
    c.line(0, op, "/bans");
    assert_eq!(c.take(0, op), [BACK, "No bans or mutes in force.\n"]);
    assert_eq!(c.take(1, cy), ["*** alice has left the chat ***\n"]);
}

#[test]
fn a_user_told_banned_is_no_longer_listed_while_the_log_waits_for_the_leave() {
    let (mut c, [op, alice, bob, cy]) = moderated();
    c.line(0, op, "/ban bob");
    // The ban is logged and applied; bob's node puts him out, its release still on the way.
    c.step();
    assert_eq!(
        c.take(1, bob),
        ["*** You were banned by OP: no reason given ***\n"]
    );
    assert_eq!(
        c.take(0, alice),
        ["*** bob was banned by OP: no reason given ***\n"]
    );
    assert!(c.members.contains_key("bob"));
    // A newcomer on node 0 meanwhile is not shown bob, nor told he left later.
    let dan = c.open(0, 3);
    c.line(0, dan, "dan");
    let at = c
        .pending
        .iter()
        .position(|(n, _)| *n == 0)
        .expect("dan's claim");
    let claim = c.pending.remove(at);
    c.pending.insert(0, claim);
    c.step();
    assert_eq!(
        c.take(0, dan),
        [
            PROMPT,
            "Welcome, dan! Online (4): alice, cy, dan, OP\nType /help for the list of commands.\n"
        ]
    );
    c.settle();
    assert!(!c.members.contains_key("bob"));
    assert!(c.take(0, dan).is_empty());
    assert_eq!(c.take(0, alice), ["*** dan has joined the chat ***\n"]);
    assert_eq!(
        c.take(1, cy),
        [
            "*** bob was banned by OP: no reason given ***\n",
            "*** dan has joined the chat ***\n"
        ]
    );
}

#[test]
fn a_user_told_banned_whose_ban_the_log_lost_is_in_again_when_their_node_claims_them() {
    let (mut c, [op, alice, bob, _cy]) = moderated();
    c.cut(1);
    c.take(1, bob);
    c.line(0, op, "/ban bob 30");
    c.settle();
    assert_eq!(
        c.take(0, alice),
        ["*** bob was banned by OP: no reason given ***\n"]
    );
    // The engine came back empty, the ban with it; bob's node never had it.
    c.cut(0);
    c.log.clear();
    c.members.clear();
    c.sanctions.clear();
    c.epoch = 2;
    c.seq = 0;
    c.heal(0);
    c.heal(1);
    assert_eq!(c.take(1, bob), [BACK]);
    assert_eq!(
        c.take(0, alice),
        [LOST, BACK, "*** bob has joined the chat ***\n"]
    );
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (4): alice, bob, cy, @OP\n"]);
}

#[test]
fn a_ban_and_a_kick_of_one_user_are_told_by_one_line() {
    let (mut c, [op, alice, bob, cy]) = moderated();
    c.line(0, op, "/ban bob 5 flood");
    c.line(0, op, "/kick bob spam");
    c.settle();
    assert_eq!(c.take(1, bob), ["*** You were banned by OP: flood ***\n"]);
    assert_eq!(c.take(0, alice), ["*** bob was banned by OP: flood ***\n"]);
    assert_eq!(c.take(1, cy), ["*** bob was banned by OP: flood ***\n"]);
}

#[test]
fn a_ban_puts_out_a_user_whose_name_looks_like_it() {
    let (mut c, [op, alice, bob, cy]) = moderated();
    c.line(1, bob, "/quit");
    c.settle();
    let b0b = c.open(1, 3);
    c.line(1, b0b, "b0b");
    c.settle();
    c.take(0, alice);
    c.take(1, cy);
    c.take(1, b0b);
    // Nobody is online as bob: the ban holds the name, and b0b looks like it.
    c.line(0, op, "/ban bob 5");
    c.settle();
    assert_eq!(
        c.take(1, b0b),
        ["*** You were banned by OP: no reason given ***\n"]
    );
    assert!(c.closed.contains(&(1, b0b)));
    assert_eq!(
        c.take(0, alice),
        ["*** b0b was banned by OP: no reason given ***\n"]
    );
    assert_eq!(
        c.take(1, cy),
        ["*** b0b was banned by OP: no reason given ***\n"]
    );
    assert!(!c.members.contains_key("b0b"));
}

#[test]
fn a_ban_made_elsewhere_gains_the_users_address_from_its_node_without_a_second_line() {
    let (mut c, [op, alice, _bob, cy]) = moderated();
    let eve = c.open_from(1, 3, Some("203.0.113.7"));
    c.line(1, eve, "eve");
    c.settle();
    c.take(0, alice);
    c.take(1, cy);
    c.line(0, op, "/ban eve 5 spam");
    c.settle();
    assert_eq!(c.take(0, alice), ["*** eve was banned by OP: spam ***\n"]);
    assert_eq!(c.take(1, cy), ["*** eve was banned by OP: spam ***\n"]);
    // Her node knew her address and told every node; the log keeps it.
    assert_eq!(
        c.sanctions[&(SanctionKind::Ban, "eve".into())]
            .address
            .as_deref(),
        Some("203.0.113.7")
    );
    c.take(0, op);
    c.line(0, op, "/bans");
    let bans = c.take(0, op).concat();
    assert!(bans.contains("203.0.113.7"), "{bans}");
    // Any name from that address is turned away on any node.
    let other = c.open_from(0, 4, Some("203.0.113.7"));
    assert_eq!(
        c.take(0, other),
        ["You are banned from this room for 5 more minutes.\n"]
    );
}

#[test]
fn a_line_on_its_way_when_its_sender_was_muted_reaches_nobody() {
    let (mut c, [op, alice, bob, cy]) = moderated();
    c.line(1, bob, "one more");
    c.line(0, op, "/mute bob 5");
    c.first(0);
    c.settle();
    assert_eq!(
        c.take(1, bob),
        ["*** You were muted by OP ***\n", "You are muted.\n"]
    );
    assert!(c.take(0, alice).is_empty());
    assert!(c.take(1, cy).is_empty());
    c.line(1, bob, "and again");
    assert_eq!(c.take(1, bob), ["You are muted.\n"]);
}

#[test]
fn a_mute_over_by_the_time_it_is_applied_ends_the_one_it_replaces() {
    let (mut c, [op, alice, bob, _cy]) = moderated();
    c.line(0, op, "/mute bob");
    c.settle();
    c.take(1, bob);
    // Shortened to a minute, but on its way for longer than that.
    c.line(0, op, "/mute bob 1");
    c.now = c.now + std::time::Duration::from_secs(90);
    c.settle();
    assert!(c.take(1, bob).is_empty(), "not told muted again");
    c.line(1, bob, "heard again");
    c.settle();
    assert_eq!(c.take(0, alice), ["bob: heard again\n"]);
}

#[test]
fn a_user_told_banned_whose_node_never_put_them_out_is_back_when_the_ban_ends() {
    let (mut c, [op, alice, bob, _cy]) = moderated();
    c.cut(1);
    c.take(1, bob);
    c.line(0, op, "/ban bob 1");
    c.settle();
    assert_eq!(
        c.take(0, alice),
        ["*** bob was banned by OP: no reason given ***\n"]
    );
    // The ban ends while bob's node is still apart.
    c.pass(std::time::Duration::from_secs(61));
    assert_eq!(c.take(0, alice), ["*** bob has joined the chat ***\n"]);
    c.heal(1);
    assert_eq!(c.take(1, bob), [BACK]);
    assert!(c.take(0, alice).is_empty());
    c.line(0, alice, "/who");
    assert_eq!(c.take(0, alice), ["Online (4): alice, bob, cy, @OP\n"]);
}

// ---------------------------------------------------------------------------------------------
// Operators across nodes.

const SECRET: &str = "a secret long enough";

/// Three nodes with operators; `op` on node 0 is one, bob and carol are on node 1 (bob from
/// 198.51.100.7), and everyone's screen is cleared.
fn op_and_two_on_another_node() -> (Cluster, ConnId, ConnId, ConnId) {
    let mut c = Cluster::with(
        3,
        Config {
            op_token: Some(SECRET.into()),
            ..Config::default()
        },
    );
    let op = c.open(0, 1);
    c.line(0, op, "op");
    c.settle();
    let bob = c.open_from(1, 1, Some("198.51.100.7"));
    c.line(1, bob, "bob");
    c.settle();
    let carol = c.open(1, 2);
    c.line(1, carol, "carol");
    c.settle();
    c.line(0, op, &format!("/op {SECRET}"));
    c.settle();
    assert_eq!(
        c.take(0, op).last().map(String::as_str),
        Some("You are now an operator.\n")
    );
    c.take(1, bob);
    c.take(1, carol);
    (c, op, bob, carol)
}

#[test]
fn a_kick_on_one_node_puts_out_a_user_of_another_and_everyone_hears_it_once() {
    let (mut c, op, bob, carol) = op_and_two_on_another_node();
    c.line(0, op, "/kick bob spam");
    assert!(c.take(1, bob).is_empty(), "not before the log has it");
    c.settle();
    assert_eq!(c.take(1, bob), ["*** You were kicked by op: spam ***\n"]);
    assert_eq!(c.take(1, carol), ["*** bob was kicked by op: spam ***\n"]);
    assert_eq!(c.take(0, op), ["*** bob was kicked by op: spam ***\n"]);
    c.line(1, carol, "/who");
    assert_eq!(c.take(1, carol), ["Online (2): carol, @op\n"]);
    c.line(0, op, "/who");
    assert_eq!(c.take(0, op), ["Online (2): carol, @op\n"]);
}

#[test]
fn a_ban_on_one_node_holds_the_name_and_the_address_on_every_node() {
    let (mut c, op, bob, carol) = op_and_two_on_another_node();
    c.line(0, op, "/ban bob 30 flood");
    c.settle();
    assert_eq!(c.take(1, bob), ["*** You were banned by op: flood ***\n"]);
    assert_eq!(c.take(1, carol), ["*** bob was banned by op: flood ***\n"]);
    // Confirmed when handed to the log; the ban line comes with the log's entry.
    assert_eq!(
        c.take(0, op),
        [
            "bob is banned for 30 minutes.\n",
            "*** bob was banned by op: flood ***\n"
        ]
    );
    // The name, on every node.
    for n in 0..3 {
        let again = c.open(n, 10);
        c.line(n, again, "Bob");
        assert_eq!(
            c.take(n, again),
            [
                PROMPT,
                "You are banned from this room for 30 more minutes.\n"
            ],
            "node {n}"
        );
    }
    // The address, which only bob's node knew, on every node too.
    for n in 0..3 {
        let from = c.open_from(n, 11, Some("198.51.100.7"));
        assert_eq!(
            c.take(n, from),
            ["You are banned from this room for 30 more minutes.\n"],
            "node {n}"
        );
    }
    // A node that comes back into contact gets the bans with the snapshot.
    c.cut(2);
    c.line(0, op, "/ban mallory 5");
    c.settle();
    c.heal(2);
    let m = c.open(2, 12);
    c.line(2, m, "mallory");
    assert_eq!(
        c.take(2, m),
        [
            PROMPT,
            "You are banned from this room for 5 more minutes.\n"
        ]
    );
    c.line(0, op, "/unban bob");
    c.settle();
    let back = c.open_from(2, 13, Some("198.51.100.7"));
    c.line(2, back, "bob");
    c.settle();
    assert!(c.take(2, back)[1].starts_with("Welcome, bob!"));
}

#[test]
fn a_mute_on_one_node_silences_a_user_of_another() {
    let (mut c, op, _bob, carol) = op_and_two_on_another_node();
    c.line(0, op, "/mute carol");
    c.settle();
    assert_eq!(c.take(1, carol), ["*** You were muted by op ***\n"]);
    assert_eq!(c.take(0, op), ["carol is muted for 60 minutes.\n"]);
    c.line(1, carol, "hello?");
    c.settle();
    assert_eq!(c.take(1, carol), ["You are muted.\n"]);
    assert!(c.take(0, op).is_empty());
}

#[test]
fn a_node_whose_first_user_joins_after_an_operator_became_one_learns_of_it() {
    let (mut c, op, _bob, _carol) = op_and_two_on_another_node();
    // Node 2 was out of contact when op became one, and comes back knowing nobody's rank.
    c.cut(2);
    c.line(0, op, "/quit");
    c.settle();
    let op = c.open(0, 5);
    c.line(0, op, "op");
    c.settle();
    c.line(0, op, &format!("/op {SECRET}"));
    c.settle();
    c.heal(2);
    let dave = c.open(2, 1);
    c.line(2, dave, "dave");
    c.settle();
    c.take(2, dave);
    c.line(2, dave, "/who");
    assert_eq!(c.take(2, dave), ["Online (4): bob, carol, dave, @op\n"]);
}

#[test]
fn out_of_contact_an_operator_acts_on_its_own_node_only() {
    let (mut c, op, bob, _carol) = op_and_two_on_another_node();
    let erin = c.open(0, 2);
    c.line(0, erin, "erin");
    c.settle();
    c.take(0, erin);
    c.take(0, op);
    c.take(1, bob);
    c.cut(0);
    c.take(0, op);
    c.take(0, erin);
    c.line(0, op, "/kick erin bye");
    assert_eq!(c.take(0, erin), ["*** You were kicked by op: bye ***\n"]);
    assert_eq!(c.take(0, op), ["*** erin was kicked by op: bye ***\n"]);
    assert!(c.take(1, bob).is_empty(), "not told elsewhere");
}
