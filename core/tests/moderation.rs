//! Transcript tests of operators and moderation: `/op`, `/kick`, `/ban`, `/mute`, `/unban`,
//! `/unmute`, `/bans`, bans at the door and the prompt, their ends, and the admin API's
//! requests, as the exact text each user sees.

mod harness;

use std::net::IpAddr;

use chat_core::moderation::{AdminReply, AdminRequest, Moderation, Sanction, SanctionKind};
use chat_core::{CloseReason, Config, ConnId, Event, LeaveReason, LogRecord, Wire};
use harness::{Harness, mins, secs};

const SECRET: &str = "correct horse battery staple";
const PROMPT: &str = "Enter your name: ";
/// 2026-12-04T00:00:00Z: the wall clock at the harness's time zero.
const WALL: u64 = 1_796_342_400_000;

fn config() -> Config {
    Config {
        flood: None,
        op_token: Some(SECRET.into()),
        wall_clock: WALL,
        joins_per_minute: None,
        ..Config::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A room with operators, `op` one of them, and `others` joined; everyone's screen cleared.
fn room_with(others: &[&str]) -> (Harness, ConnId, Vec<ConnId>) {
    let mut h = Harness::new(config());
    let op = h.join("op");
    h.line(op, &format!("/op {SECRET}"));
    assert_eq!(h.take(op), ["You are now an operator."]);
    let conns = others.iter().map(|name| h.join(name)).collect();
    h.clear();
    h.log();
    (h, op, conns)
}

/// Joins `name` from `peer` over the line wire.
fn join_from(h: &mut Harness, name: &str, peer: &str) -> ConnId {
    let c = h.connect_from(Wire::Line, ip(peer));
    h.line(c, name);
    let seen = h.take(c);
    assert_eq!(h.room().name_of(c), Some(name), "{seen:?}");
    c
}

// -----------------------------------------------------------------------------------------
// Becoming an operator.

#[test]
fn without_a_token_nobody_is_an_operator_and_the_commands_are_unknown() {
    let mut h = Harness::new(Config {
        op_token: None,
        ..config()
    });
    let alice = h.join("alice");
    let _bob = h.join("bob");
    h.clear();
    for (typed, word) in [
        ("/op secret", "/op"),
        ("/op", "/op"),
        ("/kick bob", "/kick"),
        ("/KICK", "/kick"),
        ("/ban bob 5 spam", "/ban"),
        ("/mute bob", "/mute"),
        ("/unban bob", "/unban"),
        ("/unmute bob", "/unmute"),
        ("/bans", "/bans"),
    ] {
        h.line(alice, typed);
        assert_eq!(
            h.take(alice),
            [format!(
                "Unknown command '{word}'. Type /help for the list of commands."
            )],
            "{typed}"
        );
    }
    let carol = h.join_json("carol");
    h.json(carol, r#"{"type":"kick","name":"bob"}"#);
    let refusal = Event::error(
        chat_core::ErrorCode::UnknownCommand,
        "Unknown command '/kick'. Type /help for the list of commands.",
    );
    assert_eq!(h.take_events(carol), [refusal]);
}

#[test]
fn op_with_the_token_makes_an_operator_and_a_wrong_one_is_refused() {
    let mut h = Harness::new(config());
    let alice = h.join("alice");
    h.line(alice, "/op guess");
    assert_eq!(h.take(alice), ["Wrong operator token."]);
    h.line(alice, &format!("/op {SECRET}x"));
    assert_eq!(h.take(alice), ["Wrong operator token."]);
    h.line(alice, "/kick alice");
    assert_eq!(h.take(alice), ["You are not an operator."]);
    h.line(alice, &format!("/op {SECRET}"));
    assert_eq!(h.take(alice), ["You are now an operator."]);
    // `/op` answers one of the two sentences, whatever follows it.
    h.line(alice, "/op");
    assert_eq!(h.take(alice), ["Wrong operator token."]);
    let log = h.log();
    assert!(log.contains(&LogRecord::OpRefused {
        name: "alice".into(),
        peer: None
    }));
    assert!(log.contains(&LogRecord::Moderation {
        action: Moderation::Operator {
            name: "alice".into()
        }
    }));
}

#[test]
fn one_address_gets_five_tries_a_minute_even_with_the_right_token_after() {
    let mut h = Harness::new(config());
    let a = join_from(&mut h, "alice", "127.0.0.1");
    let b = join_from(&mut h, "bob", "127.0.0.1");
    let far = join_from(&mut h, "carol", "203.0.113.5");
    h.clear();
    for _ in 0..3 {
        h.line(a, "/op a");
    }
    for _ in 0..2 {
        h.line(b, "/op b");
    }
    h.take(a);
    assert_eq!(
        h.take(b),
        ["Wrong operator token.", "Wrong operator token."]
    );
    // The sixth try from the address, by whichever connection: refused before it is read.
    h.line(b, &format!("/op {SECRET}"));
    assert_eq!(h.take(b), ["Too many tries; wait a minute."]);
    h.line(a, "/who");
    assert_eq!(h.take(a), ["Online (3): alice, bob, carol"]);
    // Another address has its own tries.
    h.line(far, &format!("/op {SECRET}"));
    assert_eq!(h.take(far), ["You are now an operator."]);
    h.advance(secs(59));
    h.line(b, &format!("/op {SECRET}"));
    assert_eq!(h.take(b), ["Too many tries; wait a minute."]);
    h.advance(secs(1));
    h.line(b, &format!("/op {SECRET}"));
    assert_eq!(h.take(b), ["You are now an operator."]);
}

#[test]
fn who_marks_operators_and_help_lists_their_commands_to_them_only() {
    let (mut h, op, conns) = room_with(&["bob"]);
    let bob = conns[0];
    h.line(bob, "/who");
    assert_eq!(h.take(bob), ["Online (2): bob, @op"]);
    h.line(bob, "/help");
    let plain = h.take(bob);
    assert!(!plain.iter().any(|l| l.contains("/kick")), "{plain:?}");
    h.line(op, "/help");
    let full = h.take(op);
    let words = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(words(&full[..plain.len()]), words(&plain));
    assert_eq!(
        words(&full[plain.len()..]),
        ["/kick", "/ban", "/mute", "/unban", "/unmute", "/bans"]
    );
    // On the JSON wire, the operators come as their own list.
    let carol = h.join_json("carol");
    h.json(carol, r#"{"type":"who"}"#);
    assert_eq!(
        h.take_events(carol),
        [Event::Who {
            online: vec!["bob".into(), "carol".into(), "op".into()],
            operators: vec!["op".into()],
        }]
    );
}

#[test]
fn an_operator_is_one_until_it_leaves() {
    let (mut h, op, conns) = room_with(&["bob"]);
    h.line(op, "/quit");
    let op2 = h.join("op");
    h.clear();
    h.line(op2, "/kick bob");
    assert_eq!(h.take(op2), ["You are not an operator."]);
    assert!(!h.is_closed(conns[0]));
}

// -----------------------------------------------------------------------------------------
// Kicks.

#[test]
fn a_kick_tells_the_target_why_closes_it_and_tells_everyone_else() {
    let (mut h, op, conns) = room_with(&["bob", "carol"]);
    let (bob, carol) = (conns[0], conns[1]);
    h.line(op, "/kick BOB  stop  shouting ");
    assert_eq!(
        h.take(bob),
        ["*** You were kicked by op: stop  shouting ***"]
    );
    assert_eq!(h.close_reason(bob), Some(CloseReason::Kicked));
    assert_eq!(
        h.take(carol),
        ["*** bob was kicked by op: stop  shouting ***"]
    );
    assert_eq!(h.take(op), ["*** bob was kicked by op: stop  shouting ***"]);
    assert_eq!(
        h.log(),
        [
            LogRecord::Moderation {
                action: Moderation::Kick {
                    name: "bob".into(),
                    by: "op".into(),
                    reason: Some("stop  shouting".into()),
                }
            },
            LogRecord::Leave {
                name: "bob".into(),
                reason: LeaveReason::Kicked
            },
        ]
    );
    // A kick is not a ban: bob may come back at once.
    let again = h.join("bob");
    assert!(!h.is_closed(again));
}

#[test]
fn a_kick_without_a_reason_says_so_and_an_unknown_name_is_refused() {
    let (mut h, op, conns) = room_with(&["bob"]);
    h.line(op, "/kick nobody");
    assert_eq!(h.take(op), ["No user named 'nobody'."]);
    h.line(op, "/kick");
    assert_eq!(h.take(op), ["Usage: /kick NAME [REASON]"]);
    h.line(op, "/kick bob");
    assert_eq!(
        h.take(conns[0]),
        ["*** You were kicked by op: no reason given ***"]
    );
    assert_eq!(
        h.take(op),
        ["*** bob was kicked by op: no reason given ***"]
    );
}

#[test]
fn the_json_wire_gets_the_same_events_and_its_roster_drops_the_kicked() {
    let (mut h, op, _) = room_with(&[]);
    let watcher = h.join_json("watcher");
    let bob = h.join_json("bob");
    h.clear();
    h.line(op, "/kick bob bye");
    assert_eq!(
        h.take_events(bob),
        [Event::YouWere {
            action: chat_core::event::Action::Kick,
            by: "op".into(),
            reason: Some("bye".into()),
        }]
    );
    assert_eq!(
        h.take_events(watcher),
        [Event::Sanctioned {
            action: chat_core::event::Action::Kick,
            name: "bob".into(),
            by: "op".into(),
            reason: Some("bye".into()),
        }]
    );
    assert_eq!(h.roster(watcher), ["op", "watcher"]);
}

// -----------------------------------------------------------------------------------------
// Bans.

#[test]
fn a_ban_puts_the_user_out_and_keeps_the_name_and_address_out_until_it_ends() {
    let mut h = Harness::new(config());
    let op = h.join("op");
    h.line(op, &format!("/op {SECRET}"));
    let bob = join_from(&mut h, "bob", "198.51.100.7");
    let carol = h.join("carol");
    h.clear();
    h.line(op, "/ban bob 30 spamming links");
    assert_eq!(
        h.take(bob),
        ["*** You were banned by op: spamming links ***"]
    );
    assert_eq!(h.close_reason(bob), Some(CloseReason::Banned));
    assert_eq!(
        h.take(carol),
        ["*** bob was banned by op: spamming links ***"]
    );
    assert_eq!(
        h.take(op),
        [
            "*** bob was banned by op: spamming links ***",
            "bob is banned for 30 minutes."
        ]
    );
    // The address: turned away before the prompt, whatever name it would take.
    let again = h.connect_from(Wire::Line, ip("198.51.100.7"));
    assert_eq!(
        h.take(again),
        ["You are banned from this room for 30 more minutes."]
    );
    assert_eq!(h.close_reason(again), Some(CloseReason::Banned));
    // The name, in any case, and a look-alike of it, from anywhere: after the prompt.
    for name in ["BOB", "b0b"] {
        let c = h.connect_from(Wire::Line, ip("192.0.2.1"));
        h.line(c, name);
        assert_eq!(
            h.take(c),
            [PROMPT, "You are banned from this room for 30 more minutes."],
            "{name}"
        );
        assert!(h.is_closed(c));
    }
    // Nobody is told of those tries.
    assert!(h.take(carol).is_empty());
    h.advance(mins(29) + secs(1));
    let c = h.connect_from(Wire::Line, ip("198.51.100.7"));
    assert_eq!(
        h.take(c),
        ["You are banned from this room for 1 more minutes."]
    );
    h.advance(mins(1));
    let back = join_from(&mut h, "bob", "198.51.100.7");
    assert!(!h.is_closed(back));
}

#[test]
fn a_ban_holds_an_ipv6_user_by_its_64_and_loopback_by_name_only() {
    let mut h = Harness::new(config());
    let op = h.join("op");
    h.line(op, &format!("/op {SECRET}"));
    let _v6 = join_from(&mut h, "bob", "2001:db8:aa:bb::1");
    let _local = join_from(&mut h, "carol", "127.0.0.1");
    h.clear();
    h.line(op, "/ban bob");
    h.line(op, "/ban carol");
    assert_eq!(
        h.take(op),
        [
            "*** bob was banned by op: no reason given ***",
            "bob is banned for 60 minutes.",
            "*** carol was banned by op: no reason given ***",
            "carol is banned for 60 minutes."
        ]
    );
    let neighbour = h.connect_from(Wire::Line, ip("2001:db8:aa:bb:1:2:3:4"));
    assert_eq!(
        h.take(neighbour),
        ["You are banned from this room for 60 more minutes."]
    );
    let elsewhere = join_from(&mut h, "dave", "2001:db8:aa:bc::1");
    assert!(!h.is_closed(elsewhere));
    // Loopback is never banned: another name from it gets in.
    let erin = join_from(&mut h, "erin", "127.0.0.1");
    assert!(!h.is_closed(erin));
    h.take(op);
    h.line(op, "/bans");
    assert_eq!(
        h.take(op),
        [
            "Bans and mutes in force (2):",
            "  ban bob and 2001:db8:aa:bb::/64 by op, 60 more minutes",
            "  ban carol by op, 60 more minutes",
        ]
    );
}

#[test]
fn a_name_banned_while_offline_is_held_for_when_it_comes() {
    let (mut h, op, _) = room_with(&[]);
    h.line(op, "/ban mallory 5 known troll");
    assert_eq!(h.take(op), ["mallory is banned for 5 minutes."]);
    let c = h.connect(Wire::Line);
    h.line(c, "Mallory");
    assert_eq!(
        h.take(c),
        [PROMPT, "You are banned from this room for 5 more minutes."]
    );
    // Not a name at all: said so.
    h.line(op, "/ban no!such");
    let refusal = h.take(op);
    assert_eq!(refusal.len(), 1);
    assert!(refusal[0].starts_with("Name "), "{refusal:?}");
}

#[test]
fn unban_lifts_a_ban_and_says_when_there_is_none() {
    let (mut h, op, _) = room_with(&[]);
    h.line(op, "/ban mallory");
    h.line(op, "/unban MALLORY");
    assert_eq!(
        h.take(op),
        [
            "mallory is banned for 60 minutes.",
            "mallory is no longer banned."
        ]
    );
    h.line(op, "/unban mallory");
    assert_eq!(h.take(op), ["No ban on 'mallory'."]);
    let m = h.join("mallory");
    assert!(!h.is_closed(m));
    h.take(op);
    h.line(op, "/bans");
    assert_eq!(h.take(op), ["No bans or mutes in force."]);
}

#[test]
fn a_connection_at_the_prompt_when_its_address_is_banned_is_refused_at_its_name() {
    let mut h = Harness::new(config());
    let op = h.join("op");
    h.line(op, &format!("/op {SECRET}"));
    let bob = join_from(&mut h, "bob", "198.51.100.7");
    let waiting = h.connect_from(Wire::Line, ip("198.51.100.7"));
    h.clear();
    h.line(op, "/ban bob");
    h.line(waiting, "bobby");
    assert_eq!(
        h.take(waiting),
        ["You are banned from this room for 60 more minutes."]
    );
    assert!(h.is_closed(bob) && h.is_closed(waiting));
}

// -----------------------------------------------------------------------------------------
// Mutes.

#[test]
fn a_muted_users_public_lines_reach_nobody_until_the_mute_ends() {
    let (mut h, op, conns) = room_with(&["bob", "carol"]);
    let (bob, carol) = (conns[0], conns[1]);
    h.line(op, "/mute bob 2");
    assert_eq!(h.take(bob), ["*** You were muted by op ***"]);
    assert_eq!(h.take(op), ["bob is muted for 2 minutes."]);
    assert!(h.take(carol).is_empty(), "nobody else is told");
    h.line(bob, "can anyone hear me");
    assert_eq!(h.take(bob), ["You are muted."]);
    assert!(h.take(carol).is_empty() && h.take(op).is_empty());
    // A private message to someone who is not an operator is muted too; to one, it goes.
    h.line(bob, "/msg carol psst");
    assert_eq!(h.take(bob), ["You are muted."]);
    h.line(bob, "/msg op why was I muted?");
    assert_eq!(h.take(op), ["[private] bob: why was I muted?"]);
    // Leaving and coming back does not shake it off.
    h.line(bob, "/quit");
    let bob = h.join("bob");
    h.clear();
    h.line(bob, "still here");
    assert_eq!(h.take(bob), ["You are muted."]);
    h.advance(mins(2));
    h.line(bob, "back");
    assert!(h.take(bob).is_empty());
    assert_eq!(h.take(carol), ["bob: back"]);
}

#[test]
fn unmute_lifts_a_mute() {
    let (mut h, op, conns) = room_with(&["bob"]);
    h.line(op, "/mute bob");
    h.line(op, "/unmute bob");
    assert_eq!(
        h.take(op),
        ["bob is muted for 60 minutes.", "bob is no longer muted."]
    );
    h.line(op, "/unmute bob");
    assert_eq!(h.take(op), ["No mute on 'bob'."]);
    h.line(conns[0], "hello");
    assert_eq!(h.take(op), ["bob: hello"]);
}

// -----------------------------------------------------------------------------------------
// Keeping and ending.

#[test]
fn the_room_asks_for_its_bans_to_be_stored_and_takes_them_back() {
    let (mut h, op, _) = room_with(&["bob"]);
    assert_eq!(h.stored(), None);
    h.line(op, "/ban bob 10 spam");
    h.line(op, "/mute carol 20");
    let stored = h.stored().expect("stored").to_vec();
    assert_eq!(stored.len(), 2);
    let ban = &stored[0];
    assert_eq!(
        (
            ban.kind,
            ban.name.as_str(),
            ban.until,
            ban.reason.as_deref()
        ),
        (SanctionKind::Ban, "bob", WALL + 10 * 60_000, Some("spam"))
    );
    // A later run, started two minutes after this one's zero, restores them.
    let mut later = Harness::new(Config {
        wall_clock: WALL + 2 * 60_000,
        ..config()
    });
    later.room_mut().restore_sanctions(stored.clone());
    let c = later.connect(Wire::Line);
    later.line(c, "bob");
    assert_eq!(
        later.take(c),
        [PROMPT, "You are banned from this room for 8 more minutes."]
    );
    let carol = later.join("carol");
    later.line(carol, "hi");
    assert_eq!(later.take(carol), ["You are muted."]);
    // One run much later drops what is over.
    let mut much_later = Harness::new(Config {
        wall_clock: WALL + 15 * 60_000,
        ..config()
    });
    much_later.room_mut().restore_sanctions(stored);
    assert_eq!(
        much_later.room().sanctions().len(),
        1,
        "only the mute holds"
    );
}

#[test]
fn a_ban_ending_wakes_the_room_to_store_what_is_left() {
    let (mut h, op, _) = room_with(&[]);
    h.line(op, "/ban mallory 1");
    h.line(op, "/ban trudy 3");
    assert_eq!(h.stored().map(<[Sanction]>::len), Some(2));
    assert!(h.room().poll_timeout().is_some());
    h.advance(mins(1));
    let names: Vec<&str> = h
        .stored()
        .unwrap_or_default()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["trudy"]);
    h.advance(mins(2));
    assert_eq!(h.stored(), Some(&[][..]));
}

// -----------------------------------------------------------------------------------------
// The admin API.

#[test]
fn the_admin_api_lists_who_is_online_with_where_from_and_since_when() {
    let mut h = Harness::new(config());
    h.advance(secs(5));
    let _bob = join_from(&mut h, "bob", "198.51.100.7");
    h.advance(secs(5));
    let _alice = h.join_json("alice");
    let AdminReply::Online { users } = h.admin(AdminRequest::Online) else {
        panic!("not a list");
    };
    type Shown<'a> = (&'a str, Option<&'a str>, Option<IpAddr>, Option<u64>, bool);
    let shown: Vec<Shown> = users
        .iter()
        .map(|u| {
            (
                u.name.as_str(),
                u.wire.as_deref(),
                u.address,
                u.since,
                u.operator,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("alice", Some("json"), None, Some(WALL + 10_000), false),
            (
                "bob",
                Some("line"),
                Some(ip("198.51.100.7")),
                Some(WALL + 5_000),
                false
            ),
        ]
    );
}

#[test]
fn the_admin_api_kicks_bans_mutes_and_posts_notices_signed_as_admin() {
    let mut h = Harness::new(config());
    let bob = h.join("bob");
    let carol = h.join("carol");
    let dave = h.join("dave");
    h.clear();
    let kick = AdminRequest::Kick {
        name: "bob".into(),
        reason: Some("flooding".into()),
        by: None,
    };
    assert_eq!(h.admin(kick), AdminReply::Done);
    assert_eq!(h.take(bob), ["*** You were kicked by admin: flooding ***"]);
    assert_eq!(h.take(carol), ["*** bob was kicked by admin: flooding ***"]);
    let unknown = AdminRequest::Kick {
        name: "nobody".into(),
        reason: None,
        by: None,
    };
    assert_eq!(
        h.admin(unknown),
        AdminReply::NotFound {
            message: "No user named 'nobody'.".into()
        }
    );
    let ban = AdminRequest::Ban {
        name: "carol".into(),
        minutes: Some(15),
        reason: None,
        by: Some("moderator-bot".into()),
    };
    h.take(dave);
    assert_eq!(h.admin(ban), AdminReply::Done);
    assert_eq!(
        h.take(dave),
        ["*** carol was banned by moderator-bot: no reason given ***"]
    );
    let zero = AdminRequest::Mute {
        name: "dave".into(),
        minutes: Some(0),
        by: None,
    };
    assert!(matches!(h.admin(zero), AdminReply::Invalid { .. }));
    let mute = AdminRequest::Mute {
        name: "dave".into(),
        minutes: None,
        by: None,
    };
    assert_eq!(h.admin(mute), AdminReply::Done);
    assert_eq!(h.take(dave), ["*** You were muted by admin ***"]);
    let notice = AdminRequest::Notice {
        text: "  The room closes at midnight.\u{202e} ".into(),
        by: None,
    };
    assert_eq!(h.admin(notice), AdminReply::Done);
    assert_eq!(
        h.take(dave),
        ["*** Notice: The room closes at midnight. ***"]
    );
    let empty = AdminRequest::Notice {
        text: " ".into(),
        by: None,
    };
    assert!(matches!(h.admin(empty), AdminReply::Invalid { .. }));
    let AdminReply::Sanctions { sanctions } = h.admin(AdminRequest::Sanctions) else {
        panic!("not a list");
    };
    let held: Vec<(SanctionKind, &str, &str)> = sanctions
        .iter()
        .map(|s| (s.kind, s.name.as_str(), s.by.as_str()))
        .collect();
    assert_eq!(
        held,
        [
            (SanctionKind::Ban, "carol", "moderator-bot"),
            (SanctionKind::Mute, "dave", "admin")
        ]
    );
    let unban = AdminRequest::Unban {
        name: "erin".into(),
        by: None,
    };
    assert!(matches!(h.admin(unban), AdminReply::NotFound { .. }));
    // Every action is in the log.
    let actions: Vec<&str> = h
        .log()
        .iter()
        .filter_map(|r| match r {
            LogRecord::Moderation { action } => Some(match action {
                Moderation::Kick { .. } => "kick",
                Moderation::Sanction(s) if s.kind == SanctionKind::Ban => "ban",
                Moderation::Sanction(_) => "mute",
                Moderation::Notice { .. } => "notice",
                _ => "other",
            }),
            _ => None,
        })
        .collect();
    assert_eq!(actions, ["kick", "ban", "mute", "notice"]);
}

#[test]
fn moderation_texts_are_cleaned_like_any_other() {
    let (mut h, op, conns) = room_with(&["bob"]);
    h.line(op, "/kick bob \u{1b}[31mred\u{202e}evil");
    assert_eq!(
        h.take(conns[0]),
        ["*** You were kicked by op: [31mredevil ***"]
    );
}

#[test]
fn the_operators_help_is_the_one_in_the_protocol_doc() {
    let (mut h, op, _) = room_with(&[]);
    h.line(op, "/help");
    let shown = h.take(op).join("\n");
    let doc = include_str!("../../docs/protocol.md");
    let indented: Vec<String> = shown.lines().map(|l| format!("  {l}")).collect();
    assert!(doc.contains(&indented.join("\n")), "{shown}");
}

#[test]
fn the_bans_list_is_the_one_in_the_protocol_doc_in_form() {
    let mut h = Harness::new(config());
    let op = h.join("op");
    h.line(op, &format!("/op {SECRET}"));
    let _bob = join_from(&mut h, "bob", "203.0.113.7");
    h.line(op, "/ban bob 30 spam");
    let mute = AdminRequest::Mute {
        name: "carol".into(),
        minutes: Some(5),
        by: None,
    };
    h.admin(mute);
    h.advance(secs(30));
    h.take(op);
    h.line(op, "/bans");
    assert_eq!(
        h.take(op),
        [
            "Bans and mutes in force (2):",
            "  ban bob and 203.0.113.7 by op, 30 more minutes: spam",
            "  mute carol by admin, 5 more minutes",
        ]
    );
}

#[test]
fn minutes_are_whole_and_within_ten_years_on_every_wire_alike() {
    let (mut h, op, _) = room_with(&[]);
    let range = "Minutes must be between 1 and 5270400.";
    for typed in [
        "/ban bob 0",
        "/ban bob 5270401",
        "/mute bob 99999999999999999999",
    ] {
        h.line(op, typed);
        assert_eq!(h.take(op), [range], "{typed}");
    }
    for typed in ["/ban bob -5 spam", "/ban bob 1.5", "/ban bob +5"] {
        h.line(op, typed);
        assert_eq!(
            h.take(op),
            ["Usage: /ban NAME [MINUTES] [REASON]"],
            "{typed}"
        );
    }
    let web = h.join_json("web");
    h.json(web, &format!(r#"{{"type":"op","token":"{SECRET}"}}"#));
    h.json(web, r#"{"type":"ban","name":"bob","minutes":0}"#);
    let events = h.take_events(web);
    assert_eq!(
        events.last(),
        Some(&Event::error(chat_core::ErrorCode::Usage, range))
    );
    assert!(h.room().sanctions().is_empty());
}

#[test]
fn the_admin_apis_signature_is_a_name_and_its_texts_fit_a_line() {
    let mut h = Harness::new(Config {
        max_line: 64,
        ..config()
    });
    let bob = h.join("bob");
    for by in ["some one", "x: fake ***", &"x".repeat(40)] {
        let kick = AdminRequest::Kick {
            name: "bob".into(),
            reason: None,
            by: Some(by.into()),
        };
        let AdminReply::Invalid { message } = h.admin(kick) else {
            panic!("{by:?} was taken");
        };
        assert!(message.starts_with("by: "), "{message}");
    }
    let notice = AdminRequest::Notice {
        text: "n".repeat(65),
        by: None,
    };
    assert_eq!(
        h.admin(notice),
        AdminReply::Invalid {
            message: "A notice is at most 64 bytes.".into()
        }
    );
    let kick = AdminRequest::Kick {
        name: "bob".into(),
        reason: Some("r".repeat(65)),
        by: None,
    };
    assert_eq!(
        h.admin(kick),
        AdminReply::Invalid {
            message: "A reason is at most 64 bytes.".into()
        }
    );
    assert!(!h.is_closed(bob), "nothing was done");
}

#[test]
fn what_no_operator_could_have_made_is_not_restored() {
    let mut h = Harness::new(config());
    let ban = |name: &str, address: Option<&str>, until: u64| Sanction {
        kind: SanctionKind::Ban,
        name: name.into(),
        address: address.map(Into::into),
        until,
        by: "op".into(),
        reason: None,
    };
    h.room_mut().restore_sanctions([
        ban("x y", None, WALL + 60_000),
        ban("ok", Some("not-an-ip"), WALL + 60_000),
        ban("net", Some("10.0.0.0/8"), WALL + 60_000),
        ban("host", Some("2001:db8::1/64"), WALL + 60_000),
        ban("v4", Some("203.0.113.7"), WALL + 60_000),
        ban("v6", Some("2001:db8::/64"), WALL + 60_000),
        ban("forever", None, u64::MAX),
    ]);
    let kept: Vec<(String, u64)> = h
        .room()
        .sanctions()
        .into_iter()
        .map(|s| (s.name, s.until))
        .collect();
    let ten_years = chat_core::moderation::MAX_MINUTES * 60_000;
    assert_eq!(
        kept,
        [
            ("forever".to_owned(), WALL + ten_years),
            ("v4".to_owned(), WALL + 60_000),
            ("v6".to_owned(), WALL + 60_000),
        ]
    );
}

#[test]
fn a_request_with_a_field_it_does_not_have_is_refused_not_half_done() {
    let (mut h, _, _) = room_with(&[]);
    let web = h.join_json("web");
    h.json(web, &format!(r#"{{"type":"op","token":"{SECRET}"}}"#));
    h.take(web);
    h.json(web, r#"{"type":"ban","name":"bob","minuts":5}"#);
    let refused = h.take_events(web);
    assert!(
        matches!(&refused[..], [Event::Error { code: chat_core::ErrorCode::BadRequest, message }]
            if message.contains("minuts")),
        "{refused:?}"
    );
    assert!(h.room().sanctions().is_empty());
}
