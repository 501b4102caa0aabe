//! Transcript tests: every rule of `docs/protocol.md`, as the exact text a user sees.
//!
//! Each test drives the room through the in-memory [`harness`], over the line wire unless it
//! is about the JSON wire, and asserts what every connection received, line by line. Time is
//! the harness's fake clock: five minutes of silence take no time at all.

mod harness;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use chat_core::{
    ChatMessage, CloseReason, Config, ConnId, ErrorCode, Event, FloodConfig, LeaveReason,
    LogRecord, Wire,
};
use harness::{Harness, millis, mins, secs};
use serde_json::json;
use unicode_normalization::UnicodeNormalization;

const PROMPT: &str = "Enter your name: ";
const HELP_HINT: &str = "Type /help for the list of commands.";

fn with(config: Config) -> Harness {
    Harness::new(config)
}

fn no_flood() -> Config {
    Config {
        flood: None,
        ..Config::default()
    }
}

fn has_forbidden_control(s: &str) -> bool {
    s.chars().any(harness::is_forbidden_control)
}

fn message(seq: u64, from: &str, text: &str) -> ChatMessage {
    ChatMessage {
        seq,
        from: from.into(),
        text: text.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Session: connecting, the prompt, a full room.

#[test]
fn a_new_connection_is_prompted_for_a_name_without_a_newline() {
    let mut h = Harness::default();
    let c = h.connect(Wire::Line);
    assert_eq!(h.take(c), [PROMPT]);
    assert!(!h.is_closed(c));
}

#[test]
fn full_room_says_server_is_full_and_closes() {
    let mut h = with(Config {
        max_users: 2,
        ..Config::default()
    });
    let alice = h.join("alice");
    // Still at the name prompt, but admitted: it counts.
    let waiting = h.connect(Wire::Line);
    assert_eq!(h.take(waiting), [PROMPT]);

    let refused = h.connect(Wire::Line);
    let got = h.take(refused);
    assert_eq!(got, ["Server is full, please try again later."]);
    assert!(got[0].contains("Server is full"));
    assert_eq!(h.close_reason(refused), Some(CloseReason::Full));
    assert!(h.take(alice).is_empty(), "nobody inside notices");
    assert_eq!(h.room().len(), 2);

    // A place frees up: the next one gets in.
    h.drop_conn(waiting);
    let next = h.connect(Wire::Line);
    assert_eq!(h.take(next), [PROMPT]);
}

#[test]
fn full_room_refuses_json_clients_too_counting_both_wires() {
    let mut h = with(Config {
        max_users: 2,
        ..Config::default()
    });
    h.join("alice");
    h.join_json("bob");
    let refused = h.connect(Wire::Json);
    assert_eq!(h.take_events(refused), [Event::Full]);
    assert_eq!(h.close_reason(refused), Some(CloseReason::Full));
    let refused = h.connect(Wire::Line);
    assert_eq!(h.take(refused), ["Server is full, please try again later."]);
    assert!(h.log().iter().all(|r| matches!(r, LogRecord::Join { .. })));
}

// ---------------------------------------------------------------------------------------------
// The name prompt: its share per address, and room made for newcomers.

const TOO_MANY: &str = "Too many connections from your address; try again in a minute.";
const FULL: &str = "Server is full, please try again later.";

/// An address of its own for each `n`: 198.51.100.n.
fn addr(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))
}

/// A line connection from `from` that must get the prompt.
fn waiting_from(h: &mut Harness, from: IpAddr) -> ConnId {
    let conn = h.connect_from(Wire::Line, from);
    assert_eq!(h.take(conn), [PROMPT], "from {from}");
    conn
}

/// A line connection from `from`: what it was told before the room closed it.
fn refused_from(h: &mut Harness, from: IpAddr) -> Vec<String> {
    let conn = h.connect_from(Wire::Line, from);
    assert!(h.is_closed(conn), "from {from}: let in");
    assert_eq!(h.close_reason(conn), Some(CloseReason::Full));
    h.take(conn)
}

#[test]
fn one_address_may_have_eight_at_the_prompt_and_joined_users_do_not_count() {
    let mut h = Harness::default();
    let home = addr(1);
    let waiting: Vec<ConnId> = (0..8).map(|_| waiting_from(&mut h, home)).collect();
    assert_eq!(refused_from(&mut h, home), [TOO_MANY]);
    let json = h.connect_from(Wire::Json, home);
    assert_eq!(
        h.take_events(json),
        [Event::error(ErrorCode::TooManyConnections, TOO_MANY)]
    );
    assert_eq!(h.close_reason(json), Some(CloseReason::Full));
    // Another address is not affected.
    waiting_from(&mut h, addr(2));
    // Joining moves a connection out of the prompt's share: its place there is free again,
    // for one more and no more.
    h.line(waiting[0], "alice");
    assert_eq!(h.room().name_of(waiting[0]), Some("alice"));
    waiting_from(&mut h, home);
    assert_eq!(refused_from(&mut h, home), [TOO_MANY]);
    // So does leaving, and the name timeout.
    h.drop_conn(waiting[1]);
    waiting_from(&mut h, home);
    h.advance(mins(1));
    for _ in 0..8 {
        waiting_from(&mut h, home);
    }
    // Refused connections were never in: nothing of them is logged.
    assert_eq!(
        h.log(),
        [LogRecord::Join {
            name: "alice".into(),
            peer: Some(home)
        }]
    );
}

#[test]
fn a_full_room_makes_room_by_closing_the_oldest_at_the_prompt_of_the_address_with_most_there() {
    let mut h = with(Config {
        max_users: 12,
        ..Config::default()
    });
    let alice = h.join("alice");
    let a: Vec<ConnId> = (0..6).map(|_| waiting_from(&mut h, addr(1))).collect();
    let b: Vec<ConnId> = (0..5).map(|_| waiting_from(&mut h, addr(2))).collect();
    assert_eq!(h.room().len(), 12, "full");
    // A newcomer from a fresh address gets in: the first of a's six goes.
    let carol = waiting_from(&mut h, addr(3));
    assert_eq!(h.take(a[0]), [FULL]);
    assert_eq!(h.close_reason(a[0]), Some(CloseReason::Full));
    // a and b now hold five each; a's oldest has waited longer.
    waiting_from(&mut h, addr(4));
    assert_eq!(h.take(a[1]), [FULL]);
    waiting_from(&mut h, addr(4));
    assert_eq!(h.take(b[0]), [FULL]);
    // Those who waited joined; nobody in the room noticed the others.
    h.line(carol, "carol");
    assert_eq!(h.take(alice), ["*** carol has joined the chat ***"]);
    assert!(a[2..].iter().chain(&b[1..]).all(|&c| !h.is_closed(c)));
    assert_eq!(h.room().len(), 12);
}

#[test]
fn in_a_full_room_nobody_alone_at_the_prompt_is_put_out_for_a_newcomer() {
    let mut h = with(Config {
        max_users: 3,
        ..Config::default()
    });
    h.join("alice");
    let ann = waiting_from(&mut h, addr(1));
    let bob = waiting_from(&mut h, addr(2));
    // Each address has one at the prompt: someone typing a name, not a hoarder.
    assert_eq!(refused_from(&mut h, addr(3)), [FULL]);
    assert_eq!(refused_from(&mut h, addr(1)), [FULL]);
    assert!(h.take(ann).is_empty() && h.take(bob).is_empty());
    assert!(!h.is_closed(ann) && !h.is_closed(bob));
}

#[test]
fn past_a_quarter_of_the_room_at_the_prompt_newcomers_make_room_even_before_it_is_full() {
    // 1024 places: room is made past 256 at the prompt.
    let mut h = Harness::default();
    let mut held = Vec::new();
    for n in 0..32 {
        for _ in 0..8 {
            held.push(waiting_from(&mut h, addr(n)));
        }
    }
    assert_eq!(h.room().len(), 256);
    // Every newcomer puts out the oldest of an address with the most at the prompt, in turn.
    for n in 100..110 {
        waiting_from(&mut h, addr(n));
    }
    let put_out: Vec<usize> = (0..held.len()).filter(|&i| h.is_closed(held[i])).collect();
    assert_eq!(put_out, (0..10).map(|n| n * 8).collect::<Vec<_>>());
    assert_eq!(h.room().len(), 256);
}

#[test]
fn thirty_three_addresses_holding_the_prompt_cannot_keep_a_newcomer_out() {
    // The whole room's worth of connections that never join, from 33 addresses, renewed as
    // the name timeout closes them.
    let mut h = Harness::default();
    let alice = h.join("alice");
    for _round in 0..3 {
        let mut held = 0;
        for n in 1..=33 {
            for _ in 0..32 {
                let conn = h.connect_from(Wire::Line, addr(n));
                held += usize::from(!h.is_closed(conn));
            }
        }
        assert!(held <= 33 * 8, "{held} held at the prompt");
        let carol = waiting_from(&mut h, addr(200));
        h.line(carol, "carol");
        assert_eq!(h.room().name_of(carol), Some("carol"));
        assert_eq!(h.take(alice), ["*** carol has joined the chat ***"]);
        h.line(carol, "/quit");
        h.clear();
        h.advance(mins(1));
    }
}

#[test]
fn loopback_is_exempt_from_the_prompt_share_unless_limit_loopback() {
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut h = Harness::default();
    for _ in 0..20 {
        waiting_from(&mut h, local);
    }
    let mut h = with(Config {
        limit_loopback: true,
        ..Config::default()
    });
    for _ in 0..8 {
        waiting_from(&mut h, local);
    }
    assert_eq!(refused_from(&mut h, local), [TOO_MANY]);
}

// ---------------------------------------------------------------------------------------------
// Names.

#[test]
fn name_is_trimmed() {
    let mut h = Harness::default();
    let c = h.connect(Wire::Line);
    h.take(c);
    h.raw(c, b"   alice \t \r\n");
    assert_eq!(h.take(c), ["Welcome, alice! Online (1): alice", HELP_HINT]);
    assert_eq!(h.room().name_of(c), Some("alice"));
}

#[test]
fn empty_name_is_rejected_with_a_reason_and_the_prompt_again() {
    let mut h = Harness::default();
    let c = h.connect(Wire::Line);
    h.take(c);
    for empty in ["", "   ", "\t", "\x07\x1b"] {
        h.line(c, empty);
        assert_eq!(h.take(c), ["Name cannot be empty.", PROMPT], "{empty:?}");
    }
    h.line(c, "alice");
    assert_eq!(h.take(c)[0], "Welcome, alice! Online (1): alice");
}

#[test]
fn name_longer_than_32_characters_is_rejected_and_32_is_accepted() {
    let mut h = Harness::default();
    let c = h.connect(Wire::Line);
    h.take(c);
    h.line(c, &"x".repeat(33));
    assert_eq!(
        h.take(c),
        ["Name is too long: at most 32 characters.", PROMPT]
    );
    // Characters, not bytes: 32 two-byte letters are fine.
    let name = "é".repeat(32);
    h.line(c, &name);
    assert_eq!(
        h.take(c),
        [
            format!("Welcome, {name}! Online (1): {name}"),
            HELP_HINT.into()
        ]
    );
}

#[test]
fn name_with_characters_other_than_letters_digits_underscore_dash_and_dot_is_rejected() {
    let mut h = Harness::default();
    let c = h.connect(Wire::Line);
    h.take(c);
    h.line(c, "bob smith");
    assert_eq!(
        h.take(c),
        [
            "Name cannot contain ' ': use letters, digits, '_', '-' and '.' only.",
            PROMPT
        ]
    );
    for (name, bad) in [
        ("bob!", '!'),
        ("a/b", '/'),
        ("/who", '/'),
        ("semi;colon", ';'),
        ("at@home", '@'),
        ("x:y", ':'),
    ] {
        h.line(c, name);
        assert_eq!(
            h.take(c),
            [
                format!("Name cannot contain {bad:?}: use letters, digits, '_', '-' and '.' only."),
                PROMPT.into()
            ],
            "{name:?}"
        );
    }
    assert_eq!(h.room().name_of(c), None);
    h.line(c, "Zoë_2.0-beta");
    assert_eq!(
        h.take(c)[0],
        "Welcome, Zoë_2.0-beta! Online (1): Zoë_2.0-beta"
    );
}

#[test]
fn duplicate_name_is_rejected_case_insensitively_and_prompts_again() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let c = h.connect(Wire::Line);
    h.take(c);
    h.line(c, "ALICE");
    assert_eq!(
        h.take(c),
        ["The name 'ALICE' is already taken; choose another.", PROMPT]
    );
    h.line(c, "  alice ");
    assert_eq!(
        h.take(c),
        ["The name 'alice' is already taken; choose another.", PROMPT]
    );
    assert!(
        h.take(alice).is_empty(),
        "failed attempts are not announced"
    );
    h.line(c, "alice2");
    assert_eq!(h.take(c)[0], "Welcome, alice2! Online (2): alice, alice2");
}

#[test]
fn a_name_is_free_again_once_its_user_has_left() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.line(alice, "/quit");
    let c = h.connect(Wire::Line);
    h.take(c);
    h.line(c, "Alice");
    assert_eq!(h.take(c), ["Welcome, Alice! Online (1): Alice", HELP_HINT]);
}

/// The look-alike refusal, word for word.
fn looks_like(name: &str, online: &str) -> String {
    format!("The name '{name}' looks too much like '{online}', who is online; choose another.")
}

#[test]
fn a_name_that_looks_like_one_online_is_refused_saying_whose() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let c = h.connect(Wire::Line);
    h.take(c);
    for alike in [
        "\u{430}lice",            // Cyrillic а
        "ａｌｉｃｅ",             // fullwidth
        "𝐚𝐥𝐢𝐜𝐞",                  // mathematical bold
        "AIice",                  // a capital i for the l
        "al1ce",                  // a one
        "  \u{430}l\u{456}ce \r", // Cyrillic а and і, trimmed
    ] {
        h.line(c, alike);
        assert_eq!(
            h.take(c),
            [looks_like(alike.trim(), "alice"), PROMPT.into()],
            "{alike:?}"
        );
    }
    assert!(
        h.take(alice).is_empty(),
        "failed attempts are not announced"
    );
    assert_eq!(h.room().online(), ["alice"]);
    // A case-insensitive match is still the taken sentence.
    h.line(c, "ALICE");
    assert_eq!(
        h.take(c),
        ["The name 'ALICE' is already taken; choose another.", PROMPT]
    );
    // Once alice has gone, the look-alike is a name like any other.
    h.line(alice, "/quit");
    h.line(c, "\u{430}lice");
    assert_eq!(
        h.take(c),
        ["Welcome, \u{430}lice! Online (1): \u{430}lice", HELP_HINT]
    );
}

#[test]
fn a_look_alike_online_keeps_the_plain_name_out_too() {
    let mut h = Harness::default();
    h.join("AIice");
    let c = h.connect(Wire::Line);
    h.take(c);
    for name in ["alice", "Alice", "ALICE"] {
        h.line(c, name);
        assert_eq!(h.take(c), [looks_like(name, "AIice"), PROMPT.into()]);
    }
    h.line(c, "alicia");
    assert_eq!(h.take(c)[0], "Welcome, alicia! Online (2): AIice, alicia");
}

#[test]
fn json_look_alike_refusal_has_its_own_code() {
    let mut h = Harness::default();
    h.join_json("alice");
    let c = h.connect(Wire::Json);
    h.take(c);
    for alike in ["\u{430}lice", "ａｌｉｃｅ", "𝐚𝐥𝐢𝐜𝐞", "AIice"] {
        let join = json!({"type": "join", "name": alike}).to_string();
        h.json(c, &join);
        let error = format!(
            r#"{{"type":"error","code":"name_confusable","message":"{}"}}"#,
            looks_like(alike, "alice")
        );
        assert_eq!(
            h.take(c),
            [error, r#"{"type":"prompt"}"#.to_owned()],
            "{alike:?}"
        );
    }
    h.json(c, r#"{"type":"join","name":"ALICE"}"#);
    assert_eq!(
        h.take(c),
        [
            r#"{"type":"error","code":"name_taken","message":"The name 'ALICE' is already taken; choose another."}"#,
            r#"{"type":"prompt"}"#
        ]
    );
}

#[test]
fn a_name_with_an_invisible_hangul_filler_is_refused_with_the_reason() {
    let mut h = Harness::default();
    h.join("bob");
    let c = h.connect(Wire::Line);
    h.take(c);
    for (name, code) in [
        ("bob\u{1160}", "1160"),
        ("bob\u{3164}", "3164"),
        ("bob\u{ffa0}", "FFA0"),
        ("\u{115f}bob", "115F"),
        ("\u{3164}", "3164"),
    ] {
        h.line(c, name);
        assert_eq!(
            h.take(c),
            [
                format!(
                    "Name cannot contain the invisible character U+{code}: use letters, \
                     digits, '_', '-' and '.' only."
                ),
                PROMPT.into()
            ],
            "{name:?}"
        );
    }
    let j = h.connect(Wire::Json);
    h.take(j);
    h.json(j, r#"{"type":"join","name":"bob\u1160"}"#);
    assert_eq!(
        h.take(j),
        [
            r#"{"type":"error","code":"name_invalid","message":"Name cannot contain the invisible character U+1160: use letters, digits, '_', '-' and '.' only."}"#,
            r#"{"type":"prompt"}"#
        ]
    );
    assert_eq!(h.room().online(), ["bob"]);
}

#[test]
fn invisible_format_characters_and_bidi_controls_are_removed_from_names() {
    let mut h = Harness::default();
    let bob = h.join("bob");
    h.clear();
    let c = h.connect(Wire::Line);
    h.take(c);
    h.line(c, "\u{202e}al\u{200b}ice\u{2069}\u{feff}");
    assert_eq!(h.take(c)[0], "Welcome, alice! Online (2): alice, bob");
    assert_eq!(h.take(bob), ["*** alice has joined the chat ***"]);
    // And so they cannot make a second bob.
    h.line(bob, "/quit");
    let d = h.connect(Wire::Line);
    h.take(d);
    h.line(d, "b\u{200b}ob");
    assert_eq!(h.room().name_of(d), Some("bob"));
    let e = h.connect(Wire::Line);
    h.take(e);
    h.line(e, "bob\u{2060}");
    assert_eq!(
        h.take(e),
        ["The name 'bob' is already taken; choose another.", PROMPT]
    );
}

#[test]
fn a_decomposed_name_joins_and_is_the_composed_one() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.clear();
    let nfd = "Jose\u{301}";
    let c = h.connect(Wire::Line);
    h.take(c);
    h.line(c, nfd);
    assert_eq!(
        h.take(c),
        ["Welcome, José! Online (2): alice, José", HELP_HINT]
    );
    assert_eq!(h.room().name_of(c), Some("José"));
    assert_eq!(h.take(alice), ["*** José has joined the chat ***"]);
    // Either spelling is the same name.
    for spelling in ["José", nfd, "JOSE\u{301}"] {
        let d = h.connect(Wire::Line);
        h.take(d);
        h.line(d, spelling);
        let shown = spelling.nfc().collect::<String>();
        assert_eq!(
            h.take(d),
            [
                format!("The name '{shown}' is already taken; choose another."),
                PROMPT.into()
            ]
        );
    }
    // And /msg finds it by either spelling.
    h.line(alice, "/msg Jose\u{301} hola");
    assert_eq!(h.take(c), ["[private] alice: hola"]);
    assert_eq!(h.take(alice), ["[private to José] hola"]);
    // The JSON wire: the welcome names the composed spelling, which the room keeps.
    h.line(c, "/quit");
    let j = h.connect(Wire::Json);
    h.take(j);
    h.json(j, r#"{"type":"join","name":"Jose\u0301"}"#);
    assert_eq!(h.room().name_of(j), Some("José"));
    assert!(
        matches!(&h.take_events(j)[0], Event::Welcome { name, .. } if name == "José"),
        "the welcome names José"
    );
}

// ---------------------------------------------------------------------------------------------
// Joining: welcome, history, announcements.

#[test]
fn welcome_names_who_is_online_and_mentions_help() {
    let mut h = Harness::default();
    h.join("alice");
    h.join("Bob");
    let carol = h.connect(Wire::Line);
    assert_eq!(h.take(carol), [PROMPT]);
    h.line(carol, "carol");
    let got = h.take(carol);
    assert_eq!(
        got,
        [
            "Welcome, carol! Online (3): alice, Bob, carol",
            "Type /help for the list of commands."
        ]
    );
    assert!(got.iter().any(|l| l.contains("/help")));
}

#[test]
fn welcome_in_a_large_room_names_the_first_fifty_and_counts_the_rest() {
    let mut h = Harness::default();
    let names: Vec<String> = (0..60).map(|i| format!("u{i:02}")).collect();
    for name in &names {
        h.join(name);
    }
    let last = h.connect(Wire::Line);
    h.take(last);
    h.line(last, "zed");
    let listed = names[..49].join(", ");
    assert_eq!(
        h.take(last),
        [
            format!("Welcome, zed! Online (61): {listed}, u49 and 11 more"),
            HELP_HINT.into()
        ]
    );
    // /who still lists everyone.
    h.line(last, "/who");
    assert_eq!(
        h.take(last),
        [format!("Online (61): {}, zed", names.join(", "))]
    );
}

#[test]
fn history_replays_the_last_n_public_messages_in_order() {
    let mut h = with(Config {
        history: 3,
        ..Config::default()
    });
    let alice = h.join("alice");
    let bob = h.join("bob");
    for (who, text) in [
        (alice, "one"),
        (bob, "two"),
        (alice, "three"),
        (bob, "four"),
        (alice, "five"),
    ] {
        h.line(who, text);
    }
    let carol = h.connect(Wire::Line);
    h.take(carol);
    h.line(carol, "carol");
    assert_eq!(
        h.take(carol),
        [
            "Welcome, carol! Online (3): alice, bob, carol",
            HELP_HINT,
            "--- Recent messages (3) ---",
            "alice: three",
            "bob: four",
            "alice: five",
            "--- End of recent messages ---",
        ]
    );
}

#[test]
fn restored_history_is_replayed_to_newcomers_and_the_numbering_goes_on_after_it() {
    let mut h = with(Config {
        history: 2,
        ..Config::default()
    });
    // As read back from the log of an earlier run: out of order and repeated lines skipped.
    h.room_mut().restore_history([
        message(7, "ann", "old"),
        message(8, "bob", "before"),
        message(8, "bob", "repeated"),
        message(5, "zed", "out of order"),
        message(9, "ann", "the restart"),
    ]);
    assert_eq!(h.room().next_seq(), 10);
    let carol = h.join("carol");
    let dave = h.join_json("dave");
    h.take(carol);
    h.take_events(dave);
    h.line(carol, "after");
    assert_eq!(
        h.take_events(dave),
        [Event::Message(message(10, "carol", "after"))]
    );
    let erin = h.connect(Wire::Line);
    h.take(erin);
    h.line(erin, "erin");
    assert_eq!(
        h.take(erin)[2..],
        [
            "--- Recent messages (2) ---",
            "ann: the restart",
            "carol: after",
            "--- End of recent messages ---",
        ]
    );
}

#[test]
fn history_keeps_messages_of_users_who_have_left() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.line(alice, "I was here");
    h.line(alice, "/quit");
    let bob = h.connect(Wire::Line);
    h.take(bob);
    h.line(bob, "bob");
    assert_eq!(
        h.take(bob)[2..],
        [
            "--- Recent messages (1) ---",
            "alice: I was here",
            "--- End of recent messages ---"
        ]
    );
}

#[test]
fn history_never_replays_private_messages() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.line(alice, "public");
    h.line(alice, "/msg bob secret");
    h.line(bob, "/msg alice also secret");
    let carol = h.connect(Wire::Line);
    h.take(carol);
    h.line(carol, "carol");
    let got = h.take(carol);
    assert_eq!(
        got[2..],
        [
            "--- Recent messages (1) ---",
            "alice: public",
            "--- End of recent messages ---"
        ]
    );
    assert!(!got.iter().any(|l| l.contains("secret")));
}

#[test]
fn no_history_block_when_nothing_was_said_or_history_is_zero() {
    let mut h = Harness::default();
    h.join("alice");
    let bob = h.connect(Wire::Line);
    h.take(bob);
    h.line(bob, "bob");
    assert_eq!(
        h.take(bob),
        ["Welcome, bob! Online (2): alice, bob", HELP_HINT]
    );

    let mut h = with(Config {
        history: 0,
        ..Config::default()
    });
    let alice = h.join("alice");
    h.line(alice, "not kept");
    let bob = h.connect(Wire::Line);
    h.take(bob);
    h.line(bob, "bob");
    assert_eq!(
        h.take(bob),
        ["Welcome, bob! Online (2): alice, bob", HELP_HINT]
    );
}

#[test]
fn joining_is_announced_to_everyone_else_but_not_to_the_newcomer() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    assert_eq!(h.take(alice), ["*** bob has joined the chat ***"]);
    // Someone at the name prompt has not joined: no announcement yet.
    let carol = h.connect(Wire::Line);
    assert!(h.take(alice).is_empty());
    h.line(carol, "carol");
    assert_eq!(h.take(alice), ["*** carol has joined the chat ***"]);
    assert_eq!(h.take(bob), ["*** carol has joined the chat ***"]);
    assert_eq!(
        h.take(carol),
        [
            PROMPT,
            "Welcome, carol! Online (3): alice, bob, carol",
            HELP_HINT
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Large rooms: above `announce_limit`, joins and leaves come as one digest per interval.

/// A room that gathers announcements above `limit` users, every 10 s.
fn thinned(limit: usize) -> Harness {
    with(Config {
        announce_limit: limit,
        announce_interval: secs(10),
        idle_timeout: None,
        name_timeout: None,
        ..no_flood()
    })
}

#[test]
fn at_the_announce_limit_every_join_and_leave_is_still_announced() {
    let mut h = thinned(3);
    let alice = h.join("alice");
    h.join("bob");
    let carol = h.join("carol"); // 3 online: not above the limit
    assert_eq!(
        h.take(alice),
        [
            "*** bob has joined the chat ***",
            "*** carol has joined the chat ***"
        ]
    );
    h.line(carol, "/quit");
    assert_eq!(h.take(alice), ["*** carol has left the chat ***"]);
    assert_eq!(h.room().presence_due(), None);
}

#[test]
fn above_the_limit_a_user_kicked_and_back_within_one_digest_is_told_as_joined() {
    let mut h = with(Config {
        op_token: Some("s3cret".into()),
        ..thinned(2).room().config().clone()
    });
    let op = h.join("op");
    h.line(op, "/op s3cret");
    let alice = h.join_json("alice");
    h.join("bob");
    h.join("carol");
    h.advance(secs(10));
    h.clear();
    h.line(op, "/kick bob");
    // Told at once, as a leave by everyone's roster.
    assert_eq!(
        h.take(op),
        ["*** bob was kicked by op: no reason given ***"]
    );
    // bob back before the digest goes out: everyone told saw him go, so is told he joined.
    h.join("bob");
    h.advance(secs(10));
    assert_eq!(h.take(op), ["*** 1 joined: bob (4 online) ***"]);
    let told = h.take_events(alice);
    assert!(
        matches!(told.last(), Some(Event::Presence { joined, .. }) if joined == &["bob"]),
        "{told:?}"
    );
}

#[test]
fn above_the_limit_joins_and_leaves_come_as_one_digest_per_interval() {
    let mut h = thinned(2);
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    let carol = h.join("carol"); // the third: gathered
    assert!(h.take(alice).is_empty() && h.take(bob).is_empty());
    h.advance(secs(2));
    let dave = h.join("dave");
    h.advance(secs(2));
    h.line(bob, "/quit");
    assert_eq!(h.take(bob), ["Goodbye!"]);
    h.advance(secs(6) - millis(1));
    for c in [alice, carol, dave] {
        assert!(h.take(c).is_empty(), "nothing before the interval is over");
    }
    h.advance(millis(1));
    // Each hears what changed since they last saw the roster: alice since the window opened,
    // carol and dave since their welcome.
    assert_eq!(
        h.take(alice),
        ["*** 2 joined: carol, dave; 1 left: bob (3 online) ***"]
    );
    assert_eq!(
        h.take(carol),
        ["*** 1 joined: dave; 1 left: bob (3 online) ***"]
    );
    assert_eq!(h.take(dave), ["*** 1 left: bob (3 online) ***"]);
    // The welcome is exact all the same, and the log has every join and leave.
    let log: Vec<String> = h
        .log()
        .into_iter()
        .map(|r| match r {
            LogRecord::Join { name, .. } => format!("+{name}"),
            LogRecord::Leave { name, .. } => format!("-{name}"),
            LogRecord::Message(m) => m.text,
            LogRecord::Local { text, .. } => text,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(log, ["+carol", "+dave", "-bob"]);
    assert_eq!(h.room().presence_due(), None);
    assert_eq!(h.room().poll_timeout(), None);
}

#[test]
fn digests_are_at_least_an_interval_apart_under_steady_churn() {
    let mut h = thinned(1);
    let alice = h.join("alice");
    let mut conns = Vec::new();
    let mut got = Vec::new();
    // Each second someone joins, and from the 15th on, the one of 15 s ago leaves.
    for second in 0..60 {
        conns.push(h.join(&format!("u{second}")));
        if second >= 15 {
            h.drop_conn(conns[second - 15]);
        }
        for _ in 0..4 {
            h.advance(millis(250));
            got.extend(h.take(alice).into_iter().map(|line| (h.now(), line)));
        }
    }
    // One digest per 10 s, at 10, 20, ... 60 s: never a line per change.
    let times: Vec<u64> = got.iter().map(|(t, _)| t.as_duration().as_secs()).collect();
    assert_eq!(times, [10, 20, 30, 40, 50, 60], "{got:?}");
    assert_eq!(
        got[2].1,
        "*** 10 joined: u20, u21, u22, u23, u24, u25, u26, u27, u28, u29; \
         10 left: u10, u11, u12, u13, u14, u5, u6, u7, u8, u9 (16 online) ***"
    );
}

#[test]
fn a_join_and_a_leave_of_the_same_user_within_a_window_cancel_out() {
    let mut h = thinned(1);
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.advance(secs(20)); // bob's join went out
    h.clear();
    // A ghost connects and goes; bob goes and comes back.
    let ghost = h.join("ghost");
    h.advance(secs(1));
    h.drop_conn(ghost);
    h.line(bob, "/quit");
    let bob = h.join("bob");
    h.advance(secs(20));
    assert!(h.take(alice).is_empty(), "nothing changed, nothing to tell");
    // bob's own welcome is current: nothing for him either.
    assert!(h.take(bob).is_empty());
    assert_eq!(h.log().len(), 4, "the log still has all four");
}

#[test]
fn a_newcomer_who_saw_a_ghost_in_its_welcome_is_told_it_left_and_nobody_else_is() {
    let mut h = thinned(1);
    let alice = h.join("alice");
    let ghost = h.join("ghost");
    let carol = h.join_json("carol"); // her welcome lists the ghost
    h.drop_conn(ghost);
    h.advance(secs(10));
    assert_eq!(
        h.take(alice),
        ["*** 1 joined: carol (2 online) ***"],
        "the ghost came and went"
    );
    assert_eq!(
        h.take(carol),
        [r#"{"type":"presence","joined":[],"left":["ghost"],"count":2}"#]
    );
}

#[test]
fn a_who_answer_during_the_window_is_where_the_next_digest_starts() {
    let mut h = thinned(1);
    let alice = h.join_json("alice");
    let bob = h.join("bob");
    h.advance(secs(10));
    h.clear();
    let carol = h.join("carol");
    h.json(alice, r#"{"type":"who"}"#);
    assert_eq!(
        h.take_events(alice),
        [Event::Who {
            online: vec!["alice".into(), "bob".into(), "carol".into()],
            operators: Vec::new()
        }]
    );
    h.drop_conn(carol);
    h.advance(secs(10));
    assert_eq!(
        h.take_events(alice),
        [Event::Presence {
            joined: vec![],
            left: vec!["carol".into()],
            count: 2
        }]
    );
    assert!(h.take(bob).is_empty(), "bob never saw carol");
}

#[test]
fn a_digest_names_ten_on_the_line_wire_and_everyone_on_the_json_wire() {
    let mut h = thinned(1);
    let alice = h.join("alice");
    let bob = h.join_json("bob");
    h.advance(secs(10));
    h.clear();
    let names: Vec<String> = (1..=12).map(|i| format!("user{i:02}")).collect();
    for name in &names {
        h.join(name);
    }
    h.advance(secs(10));
    assert_eq!(
        h.take(alice),
        [format!(
            "*** 12 joined: {} and 2 others (14 online) ***",
            names[..10].join(", ")
        )]
    );
    assert_eq!(
        h.take_events(bob),
        [Event::Presence {
            joined: names.clone(),
            left: vec![],
            count: 14
        }]
    );
}

#[test]
fn a_name_that_leaves_and_comes_back_spelled_differently_is_a_leave_and_a_join() {
    let mut h = thinned(1);
    let alice = h.join_json("alice");
    let bob = h.join("Bob");
    h.advance(secs(10));
    h.clear();
    h.drop_conn(bob);
    h.join("bob");
    h.advance(secs(10));
    assert_eq!(
        h.take_events(alice),
        [Event::Presence {
            joined: vec!["bob".into()],
            left: vec!["Bob".into()],
            count: 2
        }]
    );
}

#[test]
fn falling_back_to_the_limit_goes_on_gathering_until_the_digest_is_due() {
    let mut h = thinned(2);
    let alice = h.join_json("alice");
    let bob = h.join("bob");
    h.clear();
    let carol = h.join("carol"); // 3: gathered
    h.line(bob, "/quit"); // counted before it, 3 > 2: gathered
    // 2 online: carol's leave takes the room to 1, at or below the limit, but the digest is
    // still gathering: it takes her leave too, and nothing goes out before its time.
    h.line(carol, "/quit");
    h.advance(secs(10) - millis(1));
    assert!(h.take(alice).is_empty(), "no digest cut short, no line");
    h.advance(millis(1));
    assert_eq!(
        h.take_events(alice),
        [Event::Presence {
            joined: vec![],
            left: vec!["bob".into()],
            count: 1
        }],
        "carol came and went within the window"
    );
    assert_eq!(h.room().presence_due(), None, "nothing is left to send");
    // The digest sent, the room at or below the limit: each change is announced at once.
    h.join("dave");
    assert_eq!(
        h.take_events(alice),
        [Event::Joined {
            name: "dave".into()
        }]
    );
    h.advance(secs(60));
    assert!(h.take(alice).is_empty(), "and nothing is sent twice");
}

/// A tiny deterministic generator (xorshift64*), so that a churn is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn churn_around_the_limit_gets_one_digest_per_interval_and_few_single_lines() {
    // The default limit of 200, digests every 2 s; 199 users stay, a few come and go around
    // the limit, a change every 10 ms for 60 s (the room between 199 and 203).
    let mut h = with(Config {
        announce_interval: secs(2),
        idle_timeout: None,
        name_timeout: None,
        ..no_flood()
    });
    let limit = h.room().config().announce_limit;
    let watcher = h.join("watcher");
    let json_watcher = h.join_json("json_watcher");
    for i in 0..limit - 3 {
        h.join(&format!("stay{i:03}"));
    }
    h.advance(secs(10));
    h.clear();
    assert_eq!(h.room().online().len(), limit - 1);
    let mut rng = Rng(0x5eed_0fc4_a7e1);
    let mut churners: Vec<ConnId> = Vec::new();
    let mut next = 0;
    let (mut digests, mut singles) = (Vec::new(), Vec::new());
    for _ in 0..6000 {
        let online = h.room().online().len();
        let join = online < limit || (online < limit + 4 && rng.below(2) == 0);
        if join {
            churners.push(h.join(&format!("churn{next}")));
            next += 1;
        } else {
            let i = rng.below(churners.len() as u64) as usize;
            h.drop_conn(churners.swap_remove(i));
        }
        h.advance(millis(10));
        let at = h.now();
        for line in h.take(watcher) {
            if line.starts_with("*** ") && line.ends_with(" online) ***") {
                digests.push(at);
            } else {
                singles.push(at);
            }
        }
        for event in h.take_events(json_watcher) {
            assert!(
                matches!(
                    event,
                    Event::Presence { .. } | Event::Joined { .. } | Event::Left { .. }
                ),
                "{event:?}"
            );
        }
    }
    // At most one digest per interval: each at least 2 s after the one before.
    let gaps: Vec<Duration> = digests
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .collect();
    let short = gaps.iter().filter(|&&gap| gap < secs(2)).count();
    assert_eq!(
        short,
        0,
        "{} digests in 60 s, {short} of them less than an interval after the one before",
        digests.len()
    );
    assert!(digests.len() >= 20, "{} digests", digests.len());
    // Single lines only for the few changes between a digest and the next crossing: far
    // from one per change (6000 changes).
    let per_interval = singles.len() as f64 / 30.0;
    assert!(
        per_interval <= 10.0,
        "{} single lines in 60 s ({per_interval:.1} per interval)",
        singles.len()
    );
}

#[test]
fn a_room_hovering_at_the_limit_sends_digests_not_a_line_per_change() {
    let mut h = thinned(2);
    let alice = h.join("alice");
    h.join("bob");
    h.clear();
    // 2 <-> 3 users: each change crosses the limit, and each is gathered.
    for _ in 0..5 {
        let c = h.join("carol");
        h.advance(secs(1));
        h.drop_conn(c);
        h.advance(secs(1));
    }
    assert!(h.take(alice).is_empty(), "carol came and went five times");
}

// ---------------------------------------------------------------------------------------------
// Joins per address: one machine cannot fill a small room with join and leave lines.

/// A connection from `peer` that joins as `name` and is welcomed.
fn join_from(h: &mut Harness, peer: IpAddr, name: &str) -> ConnId {
    let conn = h.connect_from(Wire::Line, peer);
    h.line(conn, name);
    let got = h.take(conn);
    assert!(
        got.iter()
            .any(|l| l.starts_with(&format!("Welcome, {name}!"))),
        "{name}: {got:?}"
    );
    conn
}

#[test]
fn one_address_joining_and_quitting_in_a_loop_gets_ten_joins_a_minute_and_is_told_the_wait() {
    let mut h = with(no_flood());
    let bob = h.join("bob");
    h.clear();
    let attacker = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    // 139 tries in 10 s, each a new connection that joins and quits at once.
    let (mut joined, mut refused) = (0, Vec::new());
    for i in 0..139 {
        let c = h.connect_from(Wire::Line, attacker);
        h.line(c, &format!("spam{i}"));
        let got = h.take(c);
        if got.iter().any(|l| l.starts_with("Welcome, ")) {
            joined += 1;
            h.line(c, "/quit");
        } else {
            refused.push(got);
            h.drop_conn(c);
        }
        h.advance(millis(72));
    }
    // The burst of 10, then one more each 6 s.
    assert_eq!(joined, 11);
    assert_eq!(
        refused[0],
        [
            PROMPT,
            "Too many joins from your address; try again in 6 seconds.",
            PROMPT
        ]
    );
    let announced = h.take(bob);
    assert_eq!(announced.len(), 2 * 11, "{announced:?}");
    // A refused join is nobody's business: only the log's joins and leaves of those let in.
    assert_eq!(h.log().len(), 2 * 11);
    // Someone else, from another address, joins at once.
    join_from(&mut h, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), "carol");
    // And the attacker's address gets one join back every 6 s.
    h.advance(secs(6));
    join_from(&mut h, attacker, "back");
}

#[test]
fn a_refused_join_stays_at_the_prompt_and_on_json_says_too_many_joins() {
    let mut h = with(Config {
        joins_per_minute: Some(2),
        ..no_flood()
    });
    let home = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 44));
    for name in ["ann", "bea"] {
        join_from(&mut h, home, name);
    }
    let c = h.connect_from(Wire::Json, home);
    h.take(c);
    h.json(c, r#"{"type":"join","name":"cy"}"#);
    assert_eq!(
        h.take_events(c),
        [
            Event::error(
                ErrorCode::TooManyJoins,
                "Too many joins from your address; try again in 30 seconds."
            ),
            Event::Prompt
        ]
    );
    assert!(!h.is_closed(c), "the connection stays at the prompt");
    h.advance(secs(29));
    h.json(c, r#"{"type":"join","name":"cy"}"#);
    assert_eq!(
        h.take_events(c)[0],
        Event::error(
            ErrorCode::TooManyJoins,
            "Too many joins from your address; try again in 1 second."
        )
    );
    h.advance(secs(1));
    h.json(c, r#"{"type":"join","name":"cy"}"#);
    assert!(matches!(h.take_events(c)[0], Event::Welcome { .. }));
}

#[test]
fn names_refused_for_other_reasons_do_not_count_as_joins() {
    let mut h = with(Config {
        joins_per_minute: Some(1),
        ..no_flood()
    });
    h.join("taken");
    let home = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 45));
    let c = h.connect_from(Wire::Line, home);
    h.take(c);
    for bad in ["", "taken", "no spaces"] {
        h.line(c, bad);
    }
    h.take(c);
    h.line(c, "fine");
    assert!(h.take(c)[0].starts_with("Welcome, fine!"));
}

#[test]
fn loopback_joins_are_not_limited_unless_the_limits_apply_to_loopback() {
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut h = with(Config {
        joins_per_minute: Some(1),
        ..no_flood()
    });
    for i in 0..20 {
        let c = join_from(&mut h, local, &format!("local{i}"));
        h.line(c, "/quit");
    }
    let mut h = with(Config {
        joins_per_minute: Some(1),
        limit_loopback: true,
        ..no_flood()
    });
    join_from(&mut h, local, "first");
    let c = h.connect_from(Wire::Line, local);
    h.take(c);
    h.line(c, "second");
    assert_eq!(
        h.take(c)[0],
        "Too many joins from your address; try again in 60 seconds."
    );
}

// ---------------------------------------------------------------------------------------------
// Talking.

#[test]
fn public_message_reaches_everyone_else_and_is_not_echoed_to_the_sender() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    let carol = h.join("carol");
    h.clear();
    h.raw(alice, b"hello everyone\n");
    assert!(h.take(alice).is_empty(), "no echo on the line wire");
    assert_eq!(h.take(bob), ["alice: hello everyone"]);
    assert_eq!(h.take(carol), ["alice: hello everyone"]);
}

#[test]
fn users_still_at_the_name_prompt_do_not_hear_the_conversation() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let waiting = h.connect(Wire::Line);
    h.take(waiting);
    h.line(alice, "hello");
    assert!(h.take(waiting).is_empty());
}

#[test]
fn empty_and_blank_lines_are_ignored() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(alice, b"\n   \n\t\r\n\r\n");
    assert!(h.take(alice).is_empty());
    assert!(h.take(bob).is_empty());
    assert_eq!(h.room().next_seq(), 1, "nothing was said");
}

#[test]
fn messages_are_trimmed_but_keep_their_inner_spaces() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(alice, b"   hi   there \t \r\n");
    assert_eq!(h.take(bob), ["alice: hi   there"]);
}

#[test]
fn a_line_not_starting_with_a_slash_is_a_message_even_if_it_looks_like_a_command() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.line(alice, "  /quit");
    assert_eq!(h.take(bob), ["alice: /quit"]);
    assert!(!h.is_closed(alice));
}

// ---------------------------------------------------------------------------------------------
// Commands.

#[test]
fn private_message_reaches_only_its_target_and_the_sender_gets_a_confirmation() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    let carol = h.join("carol");
    h.clear();
    h.line(alice, "/msg bob meet me at  noon ");
    assert_eq!(h.take(bob), ["[private] alice: meet me at  noon"]);
    assert_eq!(h.take(alice), ["[private to bob] meet me at  noon"]);
    assert!(h.take(carol).is_empty());
}

#[test]
fn private_message_to_an_unknown_name_says_no_user_named() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.line(alice, "/msg nobody hello?");
    assert_eq!(h.take(alice), ["No user named 'nobody'."]);
    assert!(h.take(bob).is_empty());
    // Someone who left is unknown too.
    h.line(bob, "/quit");
    h.take(alice);
    h.line(alice, "/msg bob still there?");
    assert_eq!(h.take(alice), ["No user named 'bob'."]);
}

#[test]
fn private_message_target_is_case_insensitive() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("Bob");
    h.clear();
    h.line(alice, "/msg bOB hi");
    assert_eq!(h.take(bob), ["[private] alice: hi"]);
    assert_eq!(
        h.take(alice),
        ["[private to Bob] hi"],
        "the room's spelling"
    );
}

#[test]
fn msg_without_a_text_shows_its_usage() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.join("bob");
    h.clear();
    for line in ["/msg", "/msg bob", "/msg bob    "] {
        h.line(alice, line);
        assert_eq!(h.take(alice), ["Usage: /msg NAME TEXT"], "{line:?}");
    }
}

#[test]
fn who_lists_everyone_online_with_the_count() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.join("Bob");
    h.join("carol");
    let waiting = h.connect(Wire::Line); // not joined: not listed
    h.take(waiting);
    h.clear();
    h.line(alice, "/who");
    let got = h.take(alice);
    assert_eq!(got, ["Online (3): alice, Bob, carol"]);
    assert!(got[0].starts_with("Online (3):"));
}

#[test]
fn help_lists_the_commands_one_per_line() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.line(alice, "/help");
    assert_eq!(
        h.take(alice),
        [
            "Commands:",
            "  /msg NAME TEXT   send TEXT to NAME only",
            "  /who             list who is online",
            "  /help            show this list",
            "  /quit            leave the chat",
        ]
    );
}

#[test]
fn commands_are_case_insensitive() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.line(alice, "/WHO");
    assert_eq!(h.take(alice), ["Online (2): alice, bob"]);
    h.line(alice, "/Msg bob hi");
    assert_eq!(h.take(bob), ["[private] alice: hi"]);
    h.line(alice, "/QUIT");
    assert_eq!(h.take(alice), ["[private to bob] hi", "Goodbye!"]);
}

#[test]
fn quit_says_goodbye_and_closes_and_others_see_the_leave_line() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.line(bob, "/quit");
    assert_eq!(h.take(bob), ["Goodbye!"]);
    assert_eq!(h.close_reason(bob), Some(CloseReason::Quit));
    assert_eq!(h.take(alice), ["*** bob has left the chat ***"]);
    assert_eq!(h.room().online(), ["alice"]);
}

#[test]
fn quit_at_the_name_prompt_says_goodbye_without_any_announcement() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let c = h.connect(Wire::Line);
    h.take(c);
    h.line(c, "/quit");
    assert_eq!(h.take(c), ["Goodbye!"]);
    assert_eq!(h.close_reason(c), Some(CloseReason::Quit));
    assert!(h.take(alice).is_empty());
    assert!(
        h.log()
            .iter()
            .all(|r| !matches!(r, LogRecord::Leave { .. }))
    );
}

#[test]
fn unknown_command_gets_one_line_starting_with_unknown_command() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.line(alice, "/dance wildly");
    let got = h.take(alice);
    assert_eq!(
        got,
        ["Unknown command '/dance'. Type /help for the list of commands."]
    );
    assert!(got[0].starts_with("Unknown command"));
    h.line(alice, "/");
    let got = h.take(alice);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("Unknown command"));
    assert!(h.take(bob).is_empty());
    assert!(!h.is_closed(alice));
}

// ---------------------------------------------------------------------------------------------
// Idle timeout.

#[test]
fn idle_client_at_the_name_prompt_is_dropped_after_the_timeout() {
    // The name timeout (below) would come first; without it the idle timeout still applies.
    let mut h = with(Config {
        name_timeout: None,
        ..Config::default()
    });
    let c = h.connect(Wire::Line);
    h.take(c);
    h.advance(mins(5) - millis(1));
    assert!(h.take(c).is_empty());
    assert!(!h.is_closed(c));
    h.advance(millis(1));
    assert_eq!(h.take(c), ["Disconnected: idle timeout."]);
    assert_eq!(h.close_reason(c), Some(CloseReason::IdleTimeout));
    assert!(h.room().is_empty());
    assert_eq!(h.room().poll_timeout(), None);
}

#[test]
fn idle_client_is_dropped_after_timeout_and_others_see_the_leave_line() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    // Bob talks every minute; Alice says nothing.
    for minute in 1..=5 {
        h.advance(mins(1));
        h.line(bob, &format!("minute {minute}"));
    }
    let got = h.take(alice);
    assert_eq!(
        got.last().map(String::as_str),
        Some("Disconnected: idle timeout.")
    );
    assert_eq!(got.len(), 5, "four messages, then the timeout: {got:?}");
    assert_eq!(h.close_reason(alice), Some(CloseReason::IdleTimeout));
    assert_eq!(h.take(bob), ["*** alice has left the chat ***"]);
    assert!(!h.is_closed(bob));
}

#[test]
fn activity_postpones_the_idle_timeout() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.advance(mins(4));
    h.line(alice, "still here");
    h.advance(mins(4));
    h.line(alice, "/who"); // a command is a line too
    h.advance(mins(4));
    h.line(alice, ""); // and so is a blank line
    h.advance(mins(5) - secs(1));
    assert!(!h.is_closed(alice));
    h.take(alice);
    h.advance(secs(1));
    assert_eq!(h.take(alice), ["Disconnected: idle timeout."]);
}

#[test]
fn bytes_without_a_newline_are_not_a_line_and_do_not_postpone_the_timeout() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.advance(mins(4));
    h.raw(alice, b"typing slowly...");
    h.advance(mins(1));
    assert_eq!(h.take(alice), ["Disconnected: idle timeout."]);
}

#[test]
fn the_idle_timeout_follows_the_configuration_and_can_be_turned_off() {
    let mut h = with(Config {
        idle_timeout: Some(secs(10)),
        ..Config::default()
    });
    let alice = h.join("alice");
    h.advance(secs(10));
    assert_eq!(h.take(alice), ["Disconnected: idle timeout."]);

    let mut h = with(Config {
        idle_timeout: None,
        name_timeout: None,
        ..Config::default()
    });
    let alice = h.join("alice");
    let waiting = h.connect(Wire::Line);
    assert_eq!(h.room().poll_timeout(), None);
    h.advance(mins(60 * 24 * 365));
    assert!(!h.is_closed(alice) && !h.is_closed(waiting));
}

// ---------------------------------------------------------------------------------------------
// Name timeout: a slot at the name prompt is held for a bounded time, whatever is sent.

const NAME_TIMEOUT: &str = "Disconnected: no name given in time.";

#[test]
fn a_connection_that_sends_only_invalid_names_is_closed_at_the_name_timeout() {
    let mut h = Harness::default(); // name timeout 60 s, idle timeout 300 s
    let alice = h.join("alice");
    let c = h.connect(Wire::Line);
    h.take(c);
    // A slow-loris keeps sending refused names, each of them resetting the idle timer.
    for second in (5..60).step_by(5) {
        h.advance(secs(5));
        h.line(c, &format!("bad name {second}"));
        assert_eq!(h.take(c)[1], PROMPT);
    }
    h.advance(secs(5) - millis(1));
    assert!(!h.is_closed(c), "not before 60 s");
    h.advance(millis(1));
    assert_eq!(h.take(c), [NAME_TIMEOUT]);
    assert_eq!(h.close_reason(c), Some(CloseReason::NameTimeout));
    assert!(h.take(alice).is_empty(), "nobody else hears of it");
    assert!(h.log().iter().all(|r| matches!(r, LogRecord::Join { .. })));
    assert_eq!(h.room().len(), 1);
}

#[test]
fn the_idle_timeout_applies_at_the_name_prompt_when_it_comes_first() {
    let mut h = with(Config {
        idle_timeout: Some(secs(30)),
        name_timeout: Some(secs(60)),
        ..Config::default()
    });
    let c = h.connect(Wire::Line);
    h.take(c);
    h.advance(secs(30));
    assert_eq!(h.take(c), ["Disconnected: idle timeout."]);
    assert_eq!(h.close_reason(c), Some(CloseReason::IdleTimeout));

    // At the same instant, the idle timeout is the one reported.
    let mut h = with(Config {
        idle_timeout: Some(secs(60)),
        name_timeout: Some(secs(60)),
        ..Config::default()
    });
    let c = h.connect(Wire::Line);
    h.take(c);
    h.advance(secs(60));
    assert_eq!(h.take(c), ["Disconnected: idle timeout."]);

    // A line at 40 s postpones the idle timeout to 100 s; the name timeout, at 60 s, does not move.
    let c = h.connect(Wire::Line);
    h.take(c);
    h.advance(secs(40));
    h.line(c, "no good");
    h.take(c);
    h.advance(secs(20));
    assert_eq!(h.take(c), [NAME_TIMEOUT]);
}

#[test]
fn joining_in_time_ends_the_name_timeout_and_the_idle_timeout_goes_on() {
    let mut h = with(Config {
        idle_timeout: Some(secs(100)),
        name_timeout: Some(secs(60)),
        ..Config::default()
    });
    let c = h.connect(Wire::Line);
    h.advance(secs(59));
    h.line(c, "alice");
    assert_eq!(h.take(c)[1], "Welcome, alice! Online (1): alice");
    h.advance(secs(100) - millis(1));
    assert!(
        !h.is_closed(c),
        "joined: no name timeout, and the idle one counts from 59 s"
    );
    h.advance(millis(1));
    assert_eq!(h.take(c), ["Disconnected: idle timeout."]);
}

#[test]
fn a_json_client_that_does_not_join_in_time_gets_name_timeout() {
    let mut h = with(Config {
        name_timeout: Some(secs(5)),
        ..Config::default()
    });
    let c = h.connect(Wire::Json);
    h.take(c);
    h.advance(secs(3));
    h.json(c, r#"{"type":"join","name":"not valid"}"#);
    h.json(c, r#"{"type":"who"}"#);
    h.take(c);
    h.advance(secs(2));
    assert_eq!(h.take(c), [r#"{"type":"name_timeout"}"#]);
    assert_eq!(h.close_reason(c), Some(CloseReason::NameTimeout));
}

#[test]
fn without_a_name_timeout_only_the_idle_timeout_limits_the_prompt() {
    let mut h = with(Config {
        name_timeout: None,
        idle_timeout: Some(secs(30)),
        ..Config::default()
    });
    let c = h.connect(Wire::Line);
    for _ in 0..100 {
        h.advance(secs(29));
        h.line(c, "bad name");
    }
    assert!(!h.is_closed(c), "a line every 29 s keeps it at the prompt");
    h.take(c);
    h.advance(secs(30));
    assert_eq!(h.take(c), ["Disconnected: idle timeout."]);
}

// ---------------------------------------------------------------------------------------------
// Leaving without /quit.

#[test]
fn dropped_connection_is_announced_as_a_leave() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.drop_conn(bob);
    assert_eq!(h.take(alice), ["*** bob has left the chat ***"]);
    assert_eq!(h.room().online(), ["alice"]);
}

#[test]
fn connection_too_slow_to_read_is_announced_as_a_leave() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.too_slow(bob);
    assert_eq!(h.take(alice), ["*** bob has left the chat ***"]);
    assert_eq!(
        h.log(),
        [LogRecord::Leave {
            name: "bob".into(),
            reason: LeaveReason::TooSlow
        }]
    );
}

#[test]
fn end_of_input_at_the_name_prompt_closes_quietly() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let c = h.connect(Wire::Line);
    h.take(c);
    h.eof(c);
    assert!(h.take(c).is_empty());
    assert!(h.take(alice).is_empty());
    assert_eq!(h.room().len(), 1);
}

#[test]
fn end_of_input_delivers_an_unfinished_last_line_then_leaves() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(bob, b"bye for now");
    assert!(h.take(alice).is_empty(), "not a line until it ends");
    h.eof(bob);
    assert_eq!(
        h.take(alice),
        ["bob: bye for now", "*** bob has left the chat ***"]
    );
}

#[test]
fn an_unfinished_last_line_over_the_limit_is_refused_at_end_of_input_not_relayed() {
    let mut h = with(Config {
        max_line: 8,
        ..Config::default()
    });
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    // Nine bytes: within the decoder's one byte of slack for a `\r`, but no `\r` came.
    h.raw(bob, b"123456789");
    h.eof(bob);
    assert_eq!(h.take(alice), ["*** bob has left the chat ***"]);
    assert_eq!(
        h.take(bob),
        ["Error: line too long (the limit is 8 bytes); it was discarded."]
    );
}

// ---------------------------------------------------------------------------------------------
// Lines: length, line ends, UTF-8, control characters.

#[test]
fn line_too_long_is_discarded_with_one_error_and_the_user_stays_connected() {
    let mut h = with(Config {
        max_line: 16,
        ..Config::default()
    });
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(alice, b"this line is far too long for the limit\n");
    let got = h.take(alice);
    assert_eq!(
        got,
        ["Error: line too long (the limit is 16 bytes); it was discarded."]
    );
    assert!(got[0].starts_with("Error: line too long"));
    assert!(h.take(bob).is_empty(), "nothing of it is relayed");
    assert!(!h.is_closed(alice));
    h.raw(alice, b"short again\n");
    assert_eq!(h.take(bob), ["alice: short again"]);
}

#[test]
fn line_too_long_arriving_in_pieces_gives_one_error_and_nothing_of_it_is_relayed() {
    let mut h = with(Config {
        max_line: 16,
        ..Config::default()
    });
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    for _ in 0..100 {
        h.raw(alice, b"0123456789");
    }
    h.raw(alice, b"tail of it\nafter\n");
    let got = h.take(alice);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("Error: line too long"));
    assert_eq!(h.take(bob), ["alice: after"]);
}

#[test]
fn line_of_exactly_max_line_bytes_is_accepted_with_or_without_cr() {
    let mut h = with(Config {
        max_line: 16,
        ..Config::default()
    });
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(
        alice,
        b"0123456789abcdef\n0123456789ABCDEF\r\n0123456789abcdefg\n",
    );
    assert_eq!(
        h.take(bob),
        ["alice: 0123456789abcdef", "alice: 0123456789ABCDEF"]
    );
    let got = h.take(alice);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("Error: line too long"));
}

#[test]
fn line_too_long_at_the_name_prompt_is_refused_with_the_prompt_again() {
    let mut h = with(Config {
        max_line: 16,
        ..Config::default()
    });
    let c = h.connect(Wire::Line);
    h.take(c);
    h.raw(c, &[b'x'; 40]);
    h.raw(c, b"\n");
    let got = h.take(c);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("Error: line too long"));
    assert_eq!(
        got[1], "Enter your name: ",
        "asked again, as for any refused name"
    );
    h.raw(c, b"alice\n");
    assert_eq!(h.take(c)[0], "Welcome, alice! Online (1): alice");
}

#[test]
fn telnet_crlf_line_endings_are_removed() {
    let mut h = Harness::default();
    let alice = h.connect(Wire::Line);
    h.raw(alice, b"alice\r\n");
    assert_eq!(h.room().name_of(alice), Some("alice"));
    let bob = h.join("bob");
    h.raw(alice, b"hi\r");
    h.raw(alice, b"\n");
    assert_eq!(h.take(bob), ["alice: hi"]);
}

#[test]
fn invalid_utf8_becomes_replacement_characters_and_does_not_close() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(alice, b"caf\xc3");
    h.raw(alice, b"\xa9 \xff\xfe ok\n");
    assert_eq!(h.take(bob), ["alice: café \u{fffd}\u{fffd} ok"]);
    assert!(!h.is_closed(alice));
    assert!(h.take(alice).is_empty());
}

#[test]
fn invalid_utf8_in_a_name_is_refused_as_a_character_that_is_not_allowed() {
    let mut h = Harness::default();
    let c = h.connect(Wire::Line);
    h.take(c);
    h.raw(c, b"b\xffb\n");
    assert_eq!(
        h.take(c),
        [
            "Name cannot contain '\u{fffd}': use letters, digits, '_', '-' and '.' only.",
            PROMPT
        ]
    );
}

#[test]
fn control_characters_are_removed_from_messages() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(
        alice,
        "\x1b[2J\x1b[31mred\x07 bell \u{9b}31m c1 \x7fdel\ttab \x00nul\x08\n".as_bytes(),
    );
    let got = h.take(bob);
    assert_eq!(got, ["alice: [2J[31mred bell 31m c1 del\ttab nul"]);
    assert!(!has_forbidden_control(&got[0]));
}

#[test]
fn a_message_of_only_control_characters_is_ignored() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(alice, b"\x1b\x07 \x1b\n");
    assert!(h.take(bob).is_empty());
    assert!(h.take(alice).is_empty());
    assert_eq!(h.room().next_seq(), 1);
}

#[test]
fn control_characters_are_removed_from_names() {
    let mut h = Harness::default();
    let bob = h.join("bob");
    let c = h.connect(Wire::Line);
    h.take(c);
    h.raw(c, b"al\x1bice\x07\n");
    assert_eq!(h.take(c)[0], "Welcome, alice! Online (2): alice, bob");
    assert_eq!(h.take(bob), ["*** alice has joined the chat ***"]);
    // An escape sequence leaves printable debris, which the name rules refuse.
    let d = h.connect(Wire::Line);
    h.take(d);
    h.raw(d, b"\x1b[31mmallory\n");
    assert_eq!(
        h.take(d),
        [
            "Name cannot contain '[': use letters, digits, '_', '-' and '.' only.",
            PROMPT
        ]
    );
}

#[test]
fn control_characters_are_removed_from_private_messages_and_their_targets() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    h.raw(alice, b"/msg b\x07ob \x1b]0;pwned\x07hi\n");
    assert_eq!(h.take(bob), ["[private] alice: ]0;pwnedhi"]);
    assert_eq!(h.take(alice), ["[private to bob] ]0;pwnedhi"]);
    h.raw(alice, b"/msg \x1b[1mnobody hi\n");
    assert_eq!(h.take(alice), ["No user named '[1mnobody'."]);
}

#[test]
fn replies_never_echo_control_characters_back() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    h.raw(alice, b"/da\x1b[2Jnce\n");
    let got = h.take(alice);
    assert_eq!(
        got,
        ["Unknown command '/da[2Jnce'. Type /help for the list of commands."]
    );
    let json = h.join_json("bob");
    h.json(json, r#"{"type":"\u001b[2J"}"#);
    let got = h.take_events(json);
    assert!(
        matches!(&got[..], [Event::Error { code: ErrorCode::BadRequest, message }]
            if !has_forbidden_control(message)),
        "{got:?}"
    );
}

#[test]
fn bidi_controls_and_invisible_format_characters_are_removed_from_messages() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    let carol = h.join_json("carol");
    h.clear();
    h.line(
        alice,
        "\u{202e}gpj.exe\u{202c} zero\u{200b}width\u{2060}\u{feff} soft\u{ad}hyphen \
         \u{2067}iso\u{2069} \u{200e}marks\u{200f}\u{61c}",
    );
    let text = "gpj.exe zerowidth softhyphen iso marks";
    assert_eq!(h.take(bob), [format!("alice: {text}")]);
    assert_eq!(
        h.take(carol),
        [format!(
            r#"{{"type":"message","seq":1,"from":"alice","text":"{text}"}}"#
        )]
    );
    assert_eq!(h.log(), [LogRecord::Message(message(1, "alice", text))]);
    // The JSON wire's text is cleaned the same way.
    h.json(carol, r#"{"type":"say","text":"\u202Eolleh\u200B"}"#);
    assert_eq!(h.take(bob), ["carol: olleh"]);
    // Nothing but invisible characters is nothing to send.
    h.line(alice, "\u{202e}\u{200b}\u{feff}");
    assert!(h.take(bob).is_empty());
    assert_eq!(h.room().next_seq(), 3);
}

#[test]
fn line_and_paragraph_separators_become_spaces_on_both_wires_and_in_the_log() {
    let mut h = Harness::default();
    let alice = h.join_json("alice");
    let bob = h.join("bob");
    h.clear();
    h.json(alice, r#"{"type":"say","text":"one\u2028two\u2029three"}"#);
    assert_eq!(h.take(bob), ["alice: one two three"]);
    assert_eq!(
        h.take(alice),
        [r#"{"type":"message","seq":1,"from":"alice","text":"one two three"}"#]
    );
    assert_eq!(
        h.log(),
        [LogRecord::Message(message(1, "alice", "one two three"))]
    );
    h.line(bob, "\u{2028}edge\u{2029}");
    assert_eq!(
        h.take(alice),
        [r#"{"type":"message","seq":2,"from":"bob","text":"edge"}"#]
    );
}

#[test]
fn emoji_keep_their_joiners_variation_selectors_and_flag_tags() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join_json("bob");
    h.clear();
    let family = "👨\u{200d}👩\u{200d}👧";
    let heart = "\u{2764}\u{fe0f}";
    let england = "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";
    let text = format!("{family} {heart} {england}");
    h.line(alice, &text);
    assert_eq!(
        h.take_events(bob),
        [Event::Message(message(1, "alice", &text))]
    );
    // Tags anywhere else carry hidden text: they go.
    h.line(alice, "ok\u{e0068}\u{e0069}\u{e0064}\u{e0065}\u{e007f}");
    assert_eq!(
        h.take_events(bob),
        [Event::Message(message(2, "alice", "ok"))]
    );
}

#[test]
fn messages_are_nfc() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join_json("bob");
    h.clear();
    h.line(alice, "Jose\u{301} and \u{212b}ngstr\u{f6}m");
    assert_eq!(
        h.take_events(bob),
        [Event::Message(message(1, "alice", "José and Ångström"))]
    );
}

#[test]
fn private_messages_and_their_targets_are_cleaned_too() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join_json("bob");
    h.clear();
    h.line(alice, "/msg b\u{200b}ob \u{202e}terces\u{2028}ok");
    assert_eq!(
        h.take_events(bob),
        [Event::Private {
            from: "alice".into(),
            text: "terces ok".into()
        }]
    );
    assert_eq!(h.take(alice), ["[private to bob] terces ok"]);
    h.json(
        bob,
        r#"{"type":"msg","to":"\u2066alice","text":"\u202Eback\u2029"}"#,
    );
    assert_eq!(h.take(alice), ["[private] bob: back"]);
    h.line(alice, "/msg \u{202e}nobody hi");
    assert_eq!(h.take(alice), ["No user named 'nobody'."]);
    h.line(alice, "/da\u{202e}nce");
    assert_eq!(
        h.take(alice),
        ["Unknown command '/dance'. Type /help for the list of commands."]
    );
}

// ---------------------------------------------------------------------------------------------
// Flood control.

#[test]
fn a_pasted_burst_of_a_few_lines_all_arrive() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    let paste: String = (1..=10).map(|i| format!("pasted line {i}\n")).collect();
    h.raw(alice, paste.as_bytes());
    let expected: Vec<String> = (1..=10)
        .map(|i| format!("alice: pasted line {i}"))
        .collect();
    assert_eq!(h.take(bob), expected);
    assert!(h.take(alice).is_empty(), "the sender notices nothing");
}

#[test]
fn a_person_typing_a_line_a_second_never_notices_flood_control() {
    // Bob only reads; without this he would time out long before the end.
    let mut h = with(Config {
        idle_timeout: None,
        ..Config::default()
    });
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    for i in 0..500 {
        h.line(alice, &format!("line {i}"));
        h.advance(secs(1));
    }
    assert_eq!(h.take(bob).len(), 500);
    assert!(h.take(alice).is_empty());
}

#[test]
fn a_flood_is_dropped_with_one_error_and_after_waiting_the_user_can_talk_again() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    let flood: String = (0..100).map(|i| format!("spam {i}\n")).collect();
    h.raw(alice, flood.as_bytes());

    let got = h.take(bob);
    assert!(
        (10..100).contains(&got.len()),
        "a paste gets through, a flood does not: {} lines",
        got.len()
    );
    let first: Vec<String> = (0..got.len()).map(|i| format!("alice: spam {i}")).collect();
    assert_eq!(got, first, "what gets through is the start, in order");
    let told = h.take(alice);
    assert_eq!(
        told,
        ["Error: you are sending too fast; slow down. Lines are dropped until you do."]
    );
    assert!(told[0].starts_with("Error:"));
    assert!(!h.is_closed(alice));

    h.advance(secs(10));
    h.line(alice, "sorry");
    assert_eq!(h.take(bob), ["alice: sorry"]);
    assert!(h.take(alice).is_empty());
}

#[test]
fn quit_is_honoured_even_while_flooding() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    let flood: String = (0..100).map(|i| format!("spam {i}\n")).collect();
    h.raw(alice, flood.as_bytes());
    h.clear();
    h.line(alice, "/quit");
    assert_eq!(h.take(alice), ["Goodbye!"]);
    assert_eq!(h.take(bob), ["*** alice has left the chat ***"]);
}

#[test]
fn flood_control_off_lets_everything_through() {
    let mut h = with(no_flood());
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.clear();
    let flood: String = (0..1000).map(|i| format!("spam {i}\n")).collect();
    h.raw(alice, flood.as_bytes());
    let expected: Vec<String> = (0..1000).map(|i| format!("alice: spam {i}")).collect();
    assert_eq!(h.take(bob), expected);
    assert!(h.take(alice).is_empty());
}

#[test]
fn flood_control_follows_its_configuration() {
    let mut h = with(Config {
        flood: Some(FloodConfig {
            burst: 3,
            interval: secs(1),
        }),
        ..Config::default()
    });
    let alice = h.join("alice");
    let bob = h.join("bob");
    h.advance(secs(10));
    h.clear();
    for i in 0..5 {
        h.line(alice, &format!("{i}"));
    }
    assert_eq!(h.take(bob), ["alice: 0", "alice: 1", "alice: 2"]);
    assert_eq!(h.take(alice).len(), 1);
    h.advance(secs(1));
    h.line(alice, "again");
    assert_eq!(h.take(bob), ["alice: again"]);
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

#[test]
fn shutdown_tells_everyone_then_closes_every_connection() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join_json("bob");
    let waiting = h.connect(Wire::Line);
    h.clear();
    h.shutdown();
    assert_eq!(h.take(alice), ["*** Server is shutting down ***"]);
    assert_eq!(h.take(waiting), ["*** Server is shutting down ***"]);
    assert_eq!(h.take_events(bob), [Event::Shutdown]);
    for c in [alice, bob, waiting] {
        assert_eq!(h.close_reason(c), Some(CloseReason::Shutdown));
    }
    assert!(h.room().is_empty());
    assert_eq!(h.room().poll_timeout(), None);
    assert_eq!(
        h.log(),
        [
            LogRecord::Leave {
                name: "alice".into(),
                reason: LeaveReason::Shutdown
            },
            LogRecord::Leave {
                name: "bob".into(),
                reason: LeaveReason::Shutdown
            },
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The JSON wire.

#[test]
fn json_client_is_prompted_and_joins_with_a_join_object() {
    let mut h = Harness::default();
    h.join("alice");
    let bob = h.connect(Wire::Json);
    assert_eq!(h.take(bob), [r#"{"type":"prompt"}"#]);
    h.json(bob, r#"{"type":"join","name":"  bob "}"#);
    assert_eq!(
        h.take_events(bob),
        [Event::Welcome {
            name: "bob".into(),
            count: 2,
            online: vec!["alice".into(), "bob".into()],
            epoch: 0,
        }]
    );
}

#[test]
fn json_name_errors_come_back_as_error_objects_then_the_prompt() {
    let mut h = Harness::default();
    h.join("alice");
    let c = h.connect(Wire::Json);
    h.take(c);
    h.json(c, r#"{"type":"join","name":"ALICE"}"#);
    assert_eq!(
        h.take_events(c),
        [
            Event::error(
                ErrorCode::NameTaken,
                "The name 'ALICE' is already taken; choose another."
            ),
            Event::Prompt
        ]
    );
    h.json(c, r#"{"type":"join","name":"a b"}"#);
    let got = h.take_events(c);
    assert!(
        matches!(
            &got[..],
            [
                Event::Error {
                    code: ErrorCode::NameInvalid,
                    ..
                },
                Event::Prompt
            ]
        ),
        "{got:?}"
    );
}

#[test]
fn json_sender_gets_its_own_message_back_once_with_its_seq() {
    let mut h = Harness::default();
    let alice = h.join_json("alice");
    let bob = h.join("bob");
    h.clear();
    h.json(
        alice,
        &json!({"type": "say", "text": "  hello  "}).to_string(),
    );
    assert_eq!(
        h.take_events(alice),
        [Event::Message(message(1, "alice", "hello"))]
    );
    assert_eq!(h.take(bob), ["alice: hello"]);
    h.json(alice, r#"{"type":"say","text":"again"}"#);
    assert_eq!(
        h.take(alice),
        [r#"{"type":"message","seq":2,"from":"alice","text":"again"}"#]
    );
}

#[test]
fn line_and_json_users_see_each_others_messages() {
    let mut h = Harness::default();
    let line = h.join("liner");
    let json = h.join_json("jason");
    assert_eq!(
        h.take(line),
        ["*** jason has joined the chat ***"],
        "joins cross wires"
    );
    h.line(line, "hi from nc");
    assert_eq!(
        h.take_events(json),
        [Event::Message(message(1, "liner", "hi from nc"))]
    );
    h.json(json, r#"{"type":"say","text":"hi from the browser"}"#);
    assert_eq!(h.take(line), ["jason: hi from the browser"]);
    h.line(line, "/quit");
    assert_eq!(
        h.take_events(json),
        [
            Event::Message(message(2, "jason", "hi from the browser")),
            Event::Left {
                name: "liner".into()
            }
        ]
    );
}

#[test]
fn json_private_messages_who_and_help() {
    let mut h = Harness::default();
    let alice = h.join_json("alice");
    let bob = h.join("Bob");
    h.clear();
    h.json(alice, r#"{"type":"msg","to":"bob","text":"psst"}"#);
    assert_eq!(h.take(bob), ["[private] alice: psst"]);
    assert_eq!(
        h.take_events(alice),
        [Event::PrivateSent {
            to: "Bob".into(),
            text: "psst".into()
        }]
    );
    h.line(bob, "/msg ALICE back");
    assert_eq!(
        h.take_events(alice),
        [Event::Private {
            from: "Bob".into(),
            text: "back".into()
        }]
    );
    h.json(alice, r#"{"type":"msg","to":"carol","text":"hi"}"#);
    assert_eq!(
        h.take_events(alice),
        [Event::error(
            ErrorCode::NoSuchUser,
            "No user named 'carol'."
        )]
    );
    h.json(alice, r#"{"type":"who"}"#);
    assert_eq!(
        h.take_events(alice),
        [Event::Who {
            online: vec!["alice".into(), "Bob".into()],
            operators: Vec::new()
        }]
    );
    h.json(alice, r#"{"type":"help"}"#);
    assert_eq!(h.take_events(alice), [Event::help()]);
}

#[test]
fn json_history_replay_carries_the_sequence_numbers() {
    let mut h = with(Config {
        history: 2,
        ..Config::default()
    });
    let alice = h.join("alice");
    for text in ["a", "b", "c"] {
        h.line(alice, text);
    }
    let bob = h.connect(Wire::Json);
    h.take(bob);
    h.json(bob, r#"{"type":"join","name":"bob"}"#);
    let got = h.take_events(bob);
    assert_eq!(
        got[1..],
        [Event::History {
            messages: vec![message(2, "alice", "b"), message(3, "alice", "c")],
            gap: false,
        }]
    );
}

#[test]
fn bad_json_gets_a_bad_request_error_and_the_client_stays_connected() {
    let mut h = Harness::default();
    let alice = h.join_json("alice");
    let bob = h.join("bob");
    h.clear();
    for bad in [
        "not json",
        "{",
        "[]",
        "null",
        r#"{"type":"dance"}"#,
        r#"{"type":"say"}"#,
        r#"{"type":"msg","to":"bob"}"#,
    ] {
        let got = h.take_events(alice);
        assert!(got.is_empty(), "{got:?}");
        h.json(alice, bad);
        let got = h.take_events(alice);
        assert!(
            matches!(&got[..], [Event::Error { code: ErrorCode::BadRequest, message }]
                if message.starts_with("Error: bad request")),
            "{bad}: {got:?}"
        );
        assert!(!h.is_closed(alice));
    }
    h.json(alice, r#"{"type":"say","text":"still here"}"#);
    assert_eq!(h.take(bob), ["alice: still here"]);
}

#[test]
fn json_message_over_max_line_is_refused_with_line_too_long() {
    let mut h = with(Config {
        max_line: 64,
        ..Config::default()
    });
    let alice = h.join_json("alice");
    let bob = h.join("bob");
    h.clear();
    let long = json!({"type": "say", "text": "x".repeat(64)}).to_string();
    h.json(alice, &long);
    let got = h.take_events(alice);
    assert_eq!(
        got,
        [Event::error(
            ErrorCode::LineTooLong,
            "Error: line too long (the limit is 64 bytes); it was discarded."
        )]
    );
    assert!(h.take(bob).is_empty());
    h.json(alice, r#"{"type":"say","text":"short"}"#);
    assert_eq!(h.take(bob), ["alice: short"]);
}

#[test]
fn json_requests_before_joining_and_a_second_join_are_refused() {
    let mut h = Harness::default();
    let c = h.connect(Wire::Json);
    h.take(c);
    h.json(c, r#"{"type":"say","text":"hi"}"#);
    assert_eq!(
        h.take_events(c),
        [Event::error(
            ErrorCode::NotJoined,
            "Error: choose a name first."
        )]
    );
    h.json(c, r#"{"type":"join","name":"alice"}"#);
    h.take(c);
    h.json(c, r#"{"type":"join","name":"other"}"#);
    assert_eq!(
        h.take_events(c),
        [Event::error(
            ErrorCode::AlreadyJoined,
            "Error: you have already joined as alice."
        )]
    );
    assert_eq!(h.room().name_of(c), Some("alice"));
}

#[test]
fn json_quit_says_goodbye_and_closes() {
    let mut h = Harness::default();
    let alice = h.join_json("alice");
    let bob = h.join("bob");
    h.clear();
    h.json(alice, r#"{"type":"quit"}"#);
    assert_eq!(h.take_events(alice), [Event::Goodbye]);
    assert_eq!(h.close_reason(alice), Some(CloseReason::Quit));
    assert_eq!(h.take(bob), ["*** alice has left the chat ***"]);
}

#[test]
fn json_text_and_names_lose_their_control_characters_too() {
    let mut h = Harness::default();
    let bob = h.join("bob");
    let c = h.connect(Wire::Json);
    h.json(c, r#"{"type":"join","name":"al\u001bice\u0007"}"#);
    assert_eq!(h.room().name_of(c), Some("alice"));
    h.clear();
    h.json(c, r#"{"type":"say","text":"\u001b[2Jhi\nthere\u009b"}"#);
    assert_eq!(h.take(bob), ["alice: [2Jhithere"]);
    assert_eq!(
        h.take_events(c),
        [Event::Message(message(1, "alice", "[2Jhithere"))]
    );
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers and the message log.

#[test]
fn sequence_numbers_increase_by_one_per_public_message() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join("bob");
    let watcher = h.join_json("watcher");
    h.clear();
    h.line(alice, "first");
    h.line(alice, "/msg bob private ones have no number");
    h.line(bob, "second");
    h.line(alice, "   ");
    h.line(alice, "/who");
    h.line(alice, "/nope");
    h.json(watcher, r#"{"type":"say","text":"third"}"#);
    let seqs: Vec<(u64, String)> = h
        .take_events(watcher)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some((m.seq, m.text)),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        [
            (1, "first".to_owned()),
            (2, "second".to_owned()),
            (3, "third".to_owned())
        ]
    );
    assert_eq!(h.room().next_seq(), 4);
}

#[test]
fn log_records_joins_with_peer_address_messages_with_seq_and_leaves_with_reason() {
    let mut h = Harness::default();
    let home = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let alice = h.connect_from(Wire::Line, home);
    h.line(alice, "nobody here!"); // refused names are not logged
    h.line(alice, "alice");
    let bob = h.join_json("bob");
    let carol = h.join("carol");
    let dave = h.join("dave");
    h.line(alice, "hello");
    h.json(bob, r#"{"type":"say","text":"hi alice"}"#);
    h.line(carol, "/quit");
    h.drop_conn(dave);
    h.advance(mins(5));
    assert_eq!(
        h.log(),
        [
            LogRecord::Join {
                name: "alice".into(),
                peer: Some(home)
            },
            LogRecord::Join {
                name: "bob".into(),
                peer: None
            },
            LogRecord::Join {
                name: "carol".into(),
                peer: None
            },
            LogRecord::Join {
                name: "dave".into(),
                peer: None
            },
            LogRecord::Message(message(1, "alice", "hello")),
            LogRecord::Message(message(2, "bob", "hi alice")),
            LogRecord::Leave {
                name: "carol".into(),
                reason: LeaveReason::Quit
            },
            LogRecord::Leave {
                name: "dave".into(),
                reason: LeaveReason::Dropped
            },
            LogRecord::Leave {
                name: "alice".into(),
                reason: LeaveReason::IdleTimeout
            },
            LogRecord::Leave {
                name: "bob".into(),
                reason: LeaveReason::IdleTimeout
            },
        ]
    );
}

#[test]
fn private_messages_are_never_logged() {
    let mut h = Harness::default();
    let alice = h.join("alice");
    let bob = h.join_json("bob");
    h.log();
    h.line(alice, "/msg bob secret");
    h.json(bob, r#"{"type":"msg","to":"alice","text":"secret too"}"#);
    assert_eq!(h.log(), []);
}

#[test]
fn log_records_are_one_json_object_per_line() {
    let records = [
        LogRecord::Join {
            name: "alice".into(),
            peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        },
        LogRecord::Message(message(1, "alice", "multi\nline?")),
        LogRecord::Leave {
            name: "alice".into(),
            reason: LeaveReason::IdleTimeout,
        },
    ];
    for record in records {
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains('\n'), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(value["type"].is_string(), "{text}");
        assert_eq!(serde_json::from_str::<LogRecord>(&text).unwrap(), record);
    }
}

// ---------------------------------------------------------------------------------------------
// Resuming after a reconnect (JSON wire)

/// A new JSON client sends `join`; returns the events after its welcome (from epoch 9).
fn rejoin_after(h: &mut Harness, join: &str) -> Vec<Event> {
    let bob = h.connect(Wire::Json);
    h.take(bob);
    h.json(bob, join);
    let mut got = h.take_events(bob);
    assert!(
        matches!(got.first(), Some(Event::Welcome { epoch: 9, .. })),
        "{got:?}"
    );
    got.remove(0);
    got
}

fn resumable(history: usize) -> Harness {
    with(Config {
        history,
        epoch: 9,
        ..Config::default()
    })
}

#[test]
fn a_resume_replays_exactly_the_messages_after_the_last_one_seen() {
    let mut h = resumable(10);
    let alice = h.join("alice");
    for text in ["a", "b", "c", "d"] {
        h.line(alice, text);
    }
    let got = rejoin_after(
        &mut h,
        r#"{"type":"join","name":"bob","resume":{"epoch":9,"seq":2}}"#,
    );
    assert_eq!(
        got,
        [Event::History {
            messages: vec![message(3, "alice", "c"), message(4, "alice", "d")],
            gap: false,
        }]
    );
}

#[test]
fn a_resume_with_nothing_missed_sends_no_history() {
    let mut h = resumable(10);
    let alice = h.join("alice");
    h.line(alice, "a");
    let got = rejoin_after(
        &mut h,
        r#"{"type":"join","name":"bob","resume":{"epoch":9,"seq":1}}"#,
    );
    assert_eq!(got, []);
}

#[test]
fn a_resume_from_before_the_history_window_is_marked_as_a_gap() {
    let mut h = resumable(2);
    let alice = h.join("alice");
    for text in ["a", "b", "c", "d"] {
        h.line(alice, text);
    }
    // Bob saw seq 1; 2 has fallen out of the ring of 2.
    let got = rejoin_after(
        &mut h,
        r#"{"type":"join","name":"bob","resume":{"epoch":9,"seq":1}}"#,
    );
    assert_eq!(
        got,
        [Event::History {
            messages: vec![message(3, "alice", "c"), message(4, "alice", "d")],
            gap: true,
        }]
    );
    // Carol saw up to 2: 3 and 4 are all she missed, and both are held.
    let got = rejoin_after(
        &mut h,
        r#"{"type":"join","name":"carol","resume":{"epoch":9,"seq":2}}"#,
    );
    assert_eq!(
        got,
        [Event::History {
            messages: vec![message(3, "alice", "c"), message(4, "alice", "d")],
            gap: false,
        }]
    );
}

#[test]
fn a_resume_from_another_epoch_gets_the_recent_history_and_a_gap() {
    let mut h = resumable(10);
    let alice = h.join("alice");
    h.line(alice, "after the restart");
    let got = rejoin_after(
        &mut h,
        r#"{"type":"join","name":"bob","resume":{"epoch":8,"seq":1}}"#,
    );
    assert_eq!(
        got,
        [Event::History {
            messages: vec![message(1, "alice", "after the restart")],
            gap: true,
        }]
    );
}

#[test]
fn a_resume_point_the_room_never_reached_is_treated_as_another_epoch() {
    let mut h = resumable(10);
    let alice = h.join("alice");
    h.line(alice, "only one");
    let got = rejoin_after(
        &mut h,
        r#"{"type":"join","name":"bob","resume":{"epoch":9,"seq":5}}"#,
    );
    assert_eq!(
        got,
        [Event::History {
            messages: vec![message(1, "alice", "only one")],
            gap: true,
        }]
    );
}

#[test]
fn with_history_off_a_resume_that_missed_messages_reports_the_gap() {
    let mut h = resumable(0);
    let alice = h.join("alice");
    h.line(alice, "a");
    h.line(alice, "b");
    let got = rejoin_after(
        &mut h,
        r#"{"type":"join","name":"bob","resume":{"epoch":9,"seq":1}}"#,
    );
    assert_eq!(
        got,
        [Event::History {
            messages: vec![],
            gap: true,
        }]
    );
}

#[test]
fn a_binary_message_is_a_bad_request_and_the_client_stays_connected() {
    let mut h = Harness::default();
    let bob = h.connect(Wire::Json);
    h.take(bob);
    h.binary(bob);
    assert_eq!(
        h.take(bob),
        [
            r#"{"type":"error","code":"bad_request","message":"Error: bad request: binary messages are not supported; send each request as JSON text."}"#
        ]
    );
    assert!(!h.is_closed(bob));
}
