//! What a user of the page sees and what the page does, event by event, in real server JSON.

use super::*;

const EPOCH: u64 = 1_763_790_000_000;

/// The lines appended to the log, as the user reads them.
fn lines(effects: &[Effect]) -> Vec<(Kind, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Append(entry) => Some((entry.kind, entry.text())),
            _ => None,
        })
        .collect()
}

fn sent(effects: &[Effect]) -> Vec<Request> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn timer(effects: &[Effect]) -> Option<(u32, u32)> {
    effects.iter().find_map(|e| match e {
        Effect::Timer { delay_ms, token } => Some((*delay_ms, *token)),
        _ => None,
    })
}

fn join(name: &str, resume: Option<Resume>) -> Request {
    Request::Join {
        name: name.into(),
        resume,
    }
}

fn system(text: &str) -> (Kind, String) {
    (Kind::System, text.into())
}

fn welcome(name: &str, online: &[&str], epoch: u64) -> String {
    let online: Vec<String> = online.iter().map(|n| format!("{n:?}")).collect();
    format!(
        r#"{{"type":"welcome","name":"{name}","count":{},"online":[{}],"epoch":{epoch}}}"#,
        online.len(),
        online.join(",")
    )
}

fn message(seq: u64, from: &str, text: &str) -> String {
    format!(r#"{{"type":"message","seq":{seq},"from":"{from}","text":"{text}"}}"#)
}

/// A client joined as alice with bob online, its welcome's effects drained.
fn joined_alice() -> ClientState {
    let mut c = ClientState::new();
    assert_eq!(c.start(), vec![Effect::Connect]);
    assert_eq!(c.opened(), vec![]);
    assert_eq!(sent(&c.submit_name("alice")), vec![join("alice", None)]);
    c.received(&welcome("alice", &["alice", "bob"], EPOCH));
    c
}

#[test]
fn before_joining_the_page_connects_and_shows_the_name_form() {
    let mut c = ClientState::new();
    assert_eq!(c.start(), vec![Effect::Connect]);
    assert_eq!(
        (c.status_text().as_str(), c.status_state()),
        ("Connecting…", "connecting")
    );
    assert!(c.show_join_form() && !c.show_chat() && !c.joined());
    assert_eq!(c.opened(), vec![]);
    assert_eq!(
        (c.status_text().as_str(), c.status_state()),
        ("Connected", "open")
    );
    assert!(c.received(r#"{"type":"prompt"}"#).is_empty());
}

#[test]
fn invalid_names_are_refused_as_typed_and_never_sent() {
    let mut c = ClientState::new();
    c.start();
    c.opened();
    c.name_typed("bob smith");
    assert_eq!(
        c.name_error(),
        "Name cannot contain ' ': use letters, digits, '_', '-' and '.' only."
    );
    c.name_typed("bob");
    assert_eq!(c.name_error(), "");
    c.name_typed("");
    assert_eq!(
        c.name_error(),
        "",
        "an empty box is not an error while typing"
    );
    assert_eq!(c.submit_name("   "), vec![Effect::Focus(Field::Name)]);
    assert_eq!(c.name_error(), "Name cannot be empty.");
    let long = "x".repeat(33);
    assert!(sent(&c.submit_name(&long)).is_empty());
    assert_eq!(c.name_error(), "Name is too long: at most 32 characters.");
}

#[test]
fn a_name_submitted_while_connecting_is_sent_once_the_socket_opens() {
    let mut c = ClientState::new();
    c.start();
    assert!(c.submit_name("  alice ").is_empty());
    assert_eq!(sent(&c.opened()), vec![join("alice", None)]);
    // Pressing Join again while the answer is on its way sends nothing more.
    assert!(c.submit_name("alice").is_empty());
}

#[test]
fn the_welcome_shows_the_chat_the_roster_and_moves_the_focus() {
    let mut c = ClientState::new();
    c.start();
    c.opened();
    c.submit_name("alice");
    let fx = c.received(&welcome("alice", &["alice", "Bob"], EPOCH));
    assert_eq!(
        lines(&fx),
        vec![system(
            "Welcome, alice! Online (2): alice, Bob\nType /help for the list of commands."
        )]
    );
    assert!(fx.contains(&Effect::Focus(Field::Message)));
    assert!(c.joined() && c.show_chat() && !c.show_join_form());
    assert_eq!(c.roster(), ["alice", "Bob"]);
    assert_eq!(c.count(), 2);
    assert_eq!(
        c.resume(),
        Some(Resume {
            epoch: EPOCH,
            seq: 0
        })
    );
}

#[test]
fn the_servers_refusal_of_a_name_is_shown_on_the_form() {
    let mut c = ClientState::new();
    c.start();
    c.opened();
    c.submit_name("Alice");
    let fx = c.received(
        r#"{"type":"error","code":"name_taken","message":"The name 'Alice' is already taken; choose another."}"#,
    );
    assert_eq!(timer(&fx), None, "a first join is not retried");
    assert_eq!(
        c.name_error(),
        "The name 'Alice' is already taken; choose another."
    );
    assert!(c.show_join_form() && !c.joined());
    // The connection stays at the prompt: another name goes out on it at once.
    assert_eq!(sent(&c.submit_name("Alice2")), vec![join("Alice2", None)]);
}

#[test]
fn a_full_server_is_said_on_the_form_and_not_retried_by_itself() {
    let mut c = ClientState::new();
    c.start();
    c.submit_name("alice");
    c.opened();
    c.received(r#"{"type":"full"}"#);
    assert_eq!(c.name_error(), "Server is full, please try again later.");
    assert!(c.closed(0.5).is_empty());
    assert_eq!(
        (c.status_text().as_str(), c.status_state()),
        ("Disconnected", "closed")
    );
    assert!(c.show_join_form());
    // Trying again is the user's call.
    assert_eq!(c.submit_name("alice"), vec![Effect::Connect]);
}

#[test]
fn history_and_messages_appear_in_order_with_your_own_marked() {
    let mut c = joined_alice();
    let fx = c.received(
        r#"{"type":"history","messages":[{"seq":1,"from":"bob","text":"hi"},{"seq":2,"from":"Alice","text":"earlier me"}]}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![
            system("--- Recent messages (2) ---"),
            (Kind::Message, "bob: hi".into()),
            (Kind::Own, "Alice: earlier me".into()),
            system("--- End of recent messages ---"),
        ]
    );
    let fx = c.received(&message(3, "alice", "hello"));
    let Effect::Append(entry) = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!((entry.kind, entry.seq), (Kind::Own, Some(3)));
    assert_eq!(entry.parts[0], span("from", "alice"));
    assert_eq!(entry.parts[2], span("text", "hello"));
    // The name and the text each isolate their direction; the words between are plain.
    let elements: Vec<_> = entry.parts.iter().map(Part::element).collect();
    assert_eq!(elements, [Some("bdi"), None, Some("span")]);
    assert_eq!(
        lines(&c.received(&message(4, "bob", "<b>not bold</b>"))),
        vec![(Kind::Message, "bob: <b>not bold</b>".into())]
    );
    assert_eq!(
        c.resume(),
        Some(Resume {
            epoch: EPOCH,
            seq: 4
        })
    );
}

#[test]
fn a_message_seen_already_is_dropped() {
    let mut c = joined_alice();
    assert_eq!(lines(&c.received(&message(5, "bob", "once"))).len(), 1);
    assert!(c.received(&message(5, "bob", "once")).is_empty());
    assert!(c.received(&message(4, "bob", "older")).is_empty());
    assert_eq!(lines(&c.received(&message(6, "bob", "next"))).len(), 1);
}

#[test]
fn joins_and_leaves_keep_the_roster_sorted_and_counted() {
    let mut c = joined_alice();
    let v = c.roster_version();
    assert_eq!(
        lines(&c.received(r#"{"type":"joined","name":"Carol"}"#)),
        vec![(Kind::Joined, "Carol joined the chat".into())]
    );
    assert_eq!(c.roster(), ["alice", "bob", "Carol"]);
    assert_eq!(c.count(), 3);
    assert!(c.roster_version() > v);
    assert_eq!(
        lines(&c.received(r#"{"type":"left","name":"bob"}"#)),
        vec![(Kind::Left, "bob left the chat".into())]
    );
    assert_eq!(c.roster(), ["alice", "Carol"]);
    assert_eq!(c.count(), 2);
}

#[test]
fn a_presence_digest_updates_the_roster_and_shows_one_line() {
    let mut c = joined_alice();
    c.received(r#"{"type":"joined","name":"Bob2"}"#);
    let v = c.roster_version();
    let fx = c.received(
        r#"{"type":"presence","joined":["carol","BOB"],"left":["bob","Bob2","nobody"],"count":3}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![system(
            "*** 2 joined: carol, BOB; 3 left: bob, Bob2, nobody (3 online) ***"
        )]
    );
    // Leaves first: bob came back as BOB. A leave of someone not listed changes nothing.
    assert_eq!(c.roster(), ["alice", "BOB", "carol"]);
    assert_eq!(c.count(), 3);
    assert!(c.roster_version() > v);
}

#[test]
fn a_presence_digest_while_the_full_roster_is_asked_for_keeps_the_count() {
    let mut c = ClientState::new();
    c.start();
    c.opened();
    c.submit_name("alice");
    c.received(
        r#"{"type":"welcome","name":"alice","count":300,"online":["alice","bob"],"epoch":1}"#,
    );
    c.received(r#"{"type":"presence","joined":["zed"],"left":[],"count":301}"#);
    assert_eq!(c.count(), 301, "the room's count, not the partial list's");
    c.received(r#"{"type":"who","online":["alice","bob","zed"]}"#);
    assert_eq!(c.roster(), ["alice", "bob", "zed"]);
}

#[test]
fn private_messages_name_the_other_side() {
    let mut c = joined_alice();
    assert_eq!(
        lines(&c.received(r#"{"type":"private","from":"bob","text":"psst"}"#)),
        vec![(Kind::Private, "Private from bob: psst".into())]
    );
    assert_eq!(
        lines(&c.received(r#"{"type":"private_sent","to":"bob","text":"hi"}"#)),
        vec![(Kind::PrivateSent, "Private to bob: hi".into())]
    );
}

#[test]
fn answers_and_refusals_read_as_for_nc_users() {
    let mut c = joined_alice();
    assert_eq!(
        lines(&c.received(r#"{"type":"who","online":["alice","bob"]}"#)),
        vec![system("Online (2): alice, bob")]
    );
    let help = lines(&c.apply(Event::help()));
    assert_eq!(help.len(), 1);
    assert!(
        help[0]
            .1
            .starts_with("Commands:\n  /msg NAME TEXT   send TEXT to NAME only\n")
    );
    assert_eq!(
        lines(&c.received(
            r#"{"type":"error","code":"no_such_user","message":"No user named 'zed'."}"#
        )),
        vec![system("No user named 'zed'.")]
    );
    assert!(c.joined(), "a refusal keeps you in");
    assert_eq!(
        lines(&c.received("not json")),
        vec![system(
            "The server sent something this client does not understand."
        )]
    );
}

#[test]
fn a_big_room_is_listed_in_full_by_a_silent_who() {
    let mut c = ClientState::new();
    c.start();
    c.opened();
    c.submit_name("alice");
    let names: Vec<String> = (0..60).map(|i| format!("u{i:02}")).collect();
    let listed: Vec<String> = names[..50].iter().map(|n| format!("{n:?}")).collect();
    let fx = c.received(&format!(
        r#"{{"type":"welcome","name":"alice","count":61,"online":["alice",{}],"epoch":1}}"#,
        listed[..49].join(",")
    ));
    assert_eq!(sent(&fx), vec![Request::Who]);
    assert_eq!(c.count(), 61);
    assert_eq!(c.roster().len(), 50);
    // Someone not listed leaves before the answer: the count still drops.
    c.received(r#"{"type":"left","name":"u59"}"#);
    assert_eq!(c.count(), 60);
    let mut all = vec!["alice".to_owned()];
    all.extend(names[..59].iter().cloned());
    let answer = format!(
        r#"{{"type":"who","online":[{}]}}"#,
        all.iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(
        lines(&c.received(&answer)).is_empty(),
        "the asked-for answer is not shown"
    );
    assert_eq!(c.roster().len(), 60);
    assert_eq!(c.count(), 60);
    // The user's own /who is shown.
    assert_eq!(lines(&c.received(&answer)).len(), 1);
}

#[test]
fn typed_lines_become_requests_or_refusals() {
    let mut c = joined_alice();
    assert_eq!(
        c.submit_message("/msg Bob hi"),
        vec![
            Effect::Send(Request::Msg {
                to: "Bob".into(),
                text: "hi".into()
            }),
            Effect::ClearMessage
        ]
    );
    assert_eq!(sent(&c.submit_message("/who")), vec![Request::Who]);
    assert_eq!(
        sent(&c.submit_message("hello all")),
        vec![Request::Say {
            text: "hello all".into()
        }]
    );
    assert!(c.submit_message("   ").is_empty());
    let fx = c.submit_message("/dance");
    assert_eq!(
        lines(&fx),
        vec![system(
            "Unknown command '/dance'. Type /help for the list of commands."
        )]
    );
    assert!(
        !fx.contains(&Effect::ClearMessage),
        "the box keeps a line to fix"
    );
    assert_eq!(
        lines(&c.submit_message("/msg bob")),
        vec![system("Usage: /msg NAME TEXT")]
    );
}

#[test]
fn a_dropped_connection_rejoins_with_the_same_name_and_resumes() {
    let mut c = joined_alice();
    c.received(&message(3, "bob", "before"));
    let fx = c.closed(1.0);
    assert_eq!(lines(&fx), vec![system(LOST_NOTICE)]);
    let (delay, token) = timer(&fx).expect("a reconnect is scheduled");
    assert_eq!(delay, 250);
    assert_eq!(
        (c.status_text().as_str(), c.status_state()),
        ("Reconnecting in 1 s…", "connecting")
    );
    assert!(!c.joined() && !c.show_join_form() && c.show_chat());
    assert!(lines(&c.submit_message("are you there?")) == vec![system(NOT_JOINED_NOTICE)]);
    assert_eq!(c.timer_fired(token), vec![Effect::Connect]);
    assert_eq!(
        sent(&c.opened()),
        vec![join(
            "alice",
            Some(Resume {
                epoch: EPOCH,
                seq: 3
            })
        )]
    );
    let fx = c.received(&welcome("alice", &["alice", "bob"], EPOCH));
    assert_eq!(lines(&fx), vec![system(REJOINED_NOTICE)]);
    assert!(
        !fx.contains(&Effect::Focus(Field::Message)),
        "no focus stolen"
    );
    assert!(c.joined());
    let fx = c.received(
        r#"{"type":"history","messages":[{"seq":3,"from":"bob","text":"before"},{"seq":4,"from":"bob","text":"missed"}]}"#,
    );
    assert_eq!(lines(&fx), vec![(Kind::Message, "bob: missed".into())]);
}

#[test]
fn reconnects_back_off_doubling_to_four_seconds() {
    let mut c = joined_alice();
    let mut delays = Vec::new();
    for _ in 0..7 {
        let (delay, token) = timer(&c.closed(1.0)).unwrap();
        delays.push(delay);
        assert_eq!(c.timer_fired(token), vec![Effect::Connect]);
        assert_eq!(sent(&c.opened()).len(), 1, "each attempt joins again");
    }
    assert_eq!(delays, [250, 500, 1000, 2000, 4000, 4000, 4000]);
    assert_eq!(c.status_text(), "Connected");
    c.received(&welcome("alice", &["alice"], EPOCH));
    let (delay, _) = timer(&c.closed(1.0)).unwrap();
    assert_eq!(delay, 250, "a success starts the back-off afresh");
}

#[test]
fn backoff_jitters_within_the_lower_half() {
    assert_eq!(backoff_ms(1, 0.0), 125);
    assert_eq!(backoff_ms(3, 0.5), 750);
    assert_eq!(backoff_ms(100, 0.0), 2000);
    assert_eq!(backoff_ms(100, 1.0), 4000);
}

#[test]
fn a_stale_timer_does_nothing() {
    let mut c = joined_alice();
    let (_, token) = timer(&c.closed(0.0)).unwrap();
    // The user chooses to join now rather than wait: the old timer no longer counts.
    assert_eq!(c.timer_fired(token.wrapping_sub(1)), vec![]);
    c.timer_fired(token);
    assert_eq!(c.timer_fired(token), vec![], "a timer fires once");
}

#[test]
fn a_gap_in_the_resumed_history_is_said() {
    let mut c = joined_alice();
    c.received(&message(3, "bob", "a"));
    c.closed(0.0);
    c.opened();
    c.received(&welcome("alice", &["alice", "bob"], EPOCH));
    let fx = c.received(
        r#"{"type":"history","messages":[{"seq":60,"from":"bob","text":"still there?"}],"gap":true}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![
            system(GAP_NOTICE),
            (Kind::Message, "bob: still there?".into())
        ]
    );
}

#[test]
fn a_new_epoch_starts_the_numbering_afresh() {
    let mut c = joined_alice();
    c.received(&message(7, "bob", "old run"));
    c.closed(0.0);
    c.opened();
    c.received(&welcome("alice", &["alice"], EPOCH + 1));
    assert_eq!(
        c.resume(),
        Some(Resume {
            epoch: EPOCH + 1,
            seq: 0
        })
    );
    let fx = c.received(
        r#"{"type":"history","messages":[{"seq":1,"from":"bob","text":"new run"}],"gap":true}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![system(GAP_NOTICE), (Kind::Message, "bob: new run".into())]
    );
}

/// Alice, told that the server is shutting down, reconnects to its next run (a new epoch).
fn back_after_an_announced_restart() -> ClientState {
    let mut c = joined_alice();
    c.received(&message(7, "bob", "old run"));
    c.received(r#"{"type":"shutdown"}"#);
    c.closed(0.0);
    c.opened();
    c.received(&welcome("alice", &["alice"], EPOCH + 1));
    c
}

#[test]
fn a_restart_announced_by_shutdown_loses_nothing_and_says_nothing_was_missed() {
    // The new run has said nothing yet: the room flags a gap it cannot rule out.
    let fx = back_after_an_announced_restart()
        .received(r#"{"type":"history","messages":[],"gap":true}"#);
    assert_eq!(lines(&fx), vec![]);
    // Its first messages, all held, are no gap either.
    let fx = back_after_an_announced_restart().received(
        r#"{"type":"history","messages":[{"seq":1,"from":"bob","text":"new run"}],"gap":true}"#,
    );
    assert_eq!(lines(&fx), vec![(Kind::Message, "bob: new run".into())]);
    // But a new run that has already dropped its first messages is a gap.
    let fx = back_after_an_announced_restart().received(
        r#"{"type":"history","messages":[{"seq":51,"from":"bob","text":"busy run"}],"gap":true}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![system(GAP_NOTICE), (Kind::Message, "bob: busy run".into())]
    );
}

/// Alice saw bob's messages 6 and 7; the server went down without a word (a crash).
fn back_after_a_crash() -> ClientState {
    let mut c = joined_alice();
    c.received(&message(6, "bob", "six"));
    c.received(&message(7, "bob", "seven"));
    c.closed(0.0);
    c.opened();
    c.received(&welcome("alice", &["alice", "bob"], EPOCH + 1));
    c
}

#[test]
fn a_restarted_server_that_reloaded_its_history_loses_nothing_and_repeats_nothing() {
    // The new run reloaded 5..7 from its log and has had 8 and 9 said since.
    let mut c = back_after_a_crash();
    let fx = c.received(
        r#"{"type":"history","messages":[{"seq":5,"from":"bob","text":"five"},{"seq":6,"from":"bob","text":"six"},{"seq":7,"from":"bob","text":"seven"},{"seq":8,"from":"carol","text":"eight"},{"seq":9,"from":"alice","text":"nine"}],"gap":true}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![
            (Kind::Message, "carol: eight".into()),
            (Kind::Own, "alice: nine".into())
        ],
        "only what came after seven, and no gap notice"
    );
    // The numbering goes on in the new epoch.
    assert_eq!(
        c.resume(),
        Some(Resume {
            epoch: EPOCH + 1,
            seq: 9
        })
    );
    assert!(c.received(&message(9, "alice", "nine")).is_empty());
    assert_eq!(lines(&c.received(&message(10, "bob", "ten"))).len(), 1);

    // Nothing said since the restart: nothing to show, nothing missed.
    let fx = back_after_a_crash().received(
        r#"{"type":"history","messages":[{"seq":6,"from":"bob","text":"six"},{"seq":7,"from":"bob","text":"seven"}],"gap":true}"#,
    );
    assert_eq!(lines(&fx), vec![]);
}

#[test]
fn a_restarted_server_whose_history_does_not_hold_the_last_message_seen_is_a_gap() {
    // The same seq with other words is another message (another log): a gap.
    let fx = back_after_a_crash().received(
        r#"{"type":"history","messages":[{"seq":7,"from":"bob","text":"other"},{"seq":8,"from":"bob","text":"eight"}],"gap":true}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![
            system(GAP_NOTICE),
            (Kind::Message, "bob: other".into()),
            (Kind::Message, "bob: eight".into())
        ]
    );
    // Moved on past what it holds: a gap too.
    let fx = back_after_a_crash().received(
        r#"{"type":"history","messages":[{"seq":60,"from":"bob","text":"much later"}],"gap":true}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![
            system(GAP_NOTICE),
            (Kind::Message, "bob: much later".into())
        ]
    );
    // Within one run, a message seen again is not looked for: the seqs already say it all.
    let mut c = joined_alice();
    c.received(&message(7, "bob", "seven"));
    c.closed(0.0);
    c.opened();
    c.received(&welcome("alice", &["alice", "bob"], EPOCH));
    let fx = c.received(
        r#"{"type":"history","messages":[{"seq":60,"from":"bob","text":"later"}],"gap":true}"#,
    );
    assert_eq!(
        lines(&fx),
        vec![system(GAP_NOTICE), (Kind::Message, "bob: later".into())]
    );
}

#[test]
fn after_an_announced_restart_a_reloaded_history_continues_where_the_page_stopped() {
    let fx = back_after_an_announced_restart().received(
        r#"{"type":"history","messages":[{"seq":7,"from":"bob","text":"old run"},{"seq":8,"from":"bob","text":"new"}],"gap":true}"#,
    );
    assert_eq!(lines(&fx), vec![(Kind::Message, "bob: new".into())]);
}

#[test]
fn a_name_timeout_at_the_form_does_not_reconnect_until_the_user_joins() {
    let mut c = ClientState::new();
    c.start();
    c.opened();
    assert!(c.received(r#"{"type":"name_timeout"}"#).is_empty());
    assert!(
        c.closed(0.0).is_empty(),
        "no reconnect loop for a page left open"
    );
    assert_eq!(c.status_state(), "closed");
    assert_eq!(c.submit_name("alice"), vec![Effect::Connect]);
}

#[test]
fn a_rejoin_refused_as_taken_is_retried_then_given_up() {
    let mut c = joined_alice();
    c.closed(0.0);
    c.opened();
    let taken = r#"{"type":"error","code":"name_taken","message":"The name 'alice' is already taken; choose another."}"#;
    for _ in 0..NAME_TAKEN_RETRIES {
        let (_, token) = timer(&c.received(taken)).expect("retried later");
        assert_eq!(c.status_text(), "Rejoining…");
        assert!(!c.show_join_form(), "no form while retrying");
        assert_eq!(sent(&c.timer_fired(token)).len(), 1);
    }
    let fx = c.received(taken);
    assert_eq!(timer(&fx), None);
    assert!(fx.contains(&Effect::Focus(Field::Name)));
    assert!(c.show_join_form() && !c.joined());
    assert_eq!(
        c.name_error(),
        "The name 'alice' is already taken; choose another."
    );
}

#[test]
fn quit_says_goodbye_and_does_not_reconnect() {
    let mut c = joined_alice();
    assert_eq!(sent(&c.submit_message("/quit")), vec![Request::Quit]);
    let fx = c.received(r#"{"type":"goodbye"}"#);
    assert_eq!(lines(&fx), vec![system("Goodbye!")]);
    assert!(fx.contains(&Effect::Focus(Field::Name)));
    assert!(!c.joined() && c.show_join_form() && c.show_chat());
    assert_eq!(
        (c.roster().len(), c.count()),
        (0, 0),
        "who is online is unknown now"
    );
    assert!(c.closed(0.0).is_empty(), "no reconnect, no notice");
    assert_eq!(
        (c.status_text().as_str(), c.status_state()),
        ("Disconnected", "closed")
    );
    // Joining again is one click, and resumes so nothing is shown twice.
    assert_eq!(c.submit_name("alice"), vec![Effect::Connect]);
    assert_eq!(
        sent(&c.opened()),
        vec![join(
            "alice",
            Some(Resume {
                epoch: EPOCH,
                seq: 0
            })
        )]
    );
}

#[test]
fn an_idle_timeout_does_not_reconnect() {
    let mut c = joined_alice();
    assert_eq!(
        lines(&c.received(r#"{"type":"idle_timeout"}"#)),
        vec![system("Disconnected: idle timeout.")]
    );
    assert!(c.closed(0.0).is_empty());
    assert_eq!(c.status_state(), "closed");
    assert!(c.show_join_form());
}

#[test]
fn a_shutdown_reconnects_until_the_server_is_back() {
    let mut c = joined_alice();
    assert_eq!(
        lines(&c.received(r#"{"type":"shutdown"}"#)),
        vec![system("*** Server is shutting down ***")]
    );
    let fx = c.closed(0.0);
    assert!(timer(&fx).is_some());
    assert_eq!(c.status_state(), "connecting");
    assert_eq!(
        c.roster(),
        ["alice", "bob"],
        "kept until the rejoin's welcome"
    );
    assert!(!c.show_join_form());
}

#[test]
fn the_form_page_reconnects_by_itself_after_a_drop_but_not_after_an_idle_timeout() {
    let mut c = ClientState::new();
    c.start();
    assert!(timer(&c.closed(0.0)).is_some(), "server not up yet: retry");
    let mut c = ClientState::new();
    c.start();
    c.opened();
    assert!(
        c.received(r#"{"type":"idle_timeout"}"#).is_empty(),
        "nothing to log yet"
    );
    assert!(c.closed(0.0).is_empty());
    assert_eq!(c.status_text(), "Disconnected");
    assert_eq!(c.submit_name("alice"), vec![Effect::Connect]);
}

#[test]
fn names_and_texts_isolate_their_direction_in_every_kind_of_entry() {
    let mut c = joined_alice();
    let events = [
        r#"{"type":"joined","name":"דני"}"#,
        r#"{"type":"private","from":"דני","text":"שלום 123"}"#,
        r#"{"type":"private_sent","to":"דני","text":"hi"}"#,
        r#"{"type":"left","name":"דני"}"#,
    ];
    for event in events {
        let fx = c.received(event);
        let Some(Effect::Append(entry)) = fx.first() else {
            panic!("{event}: {fx:?}")
        };
        for part in &entry.parts {
            let expected = match part.class {
                Some("from" | "to" | "name") => Some("bdi"),
                Some(_) => Some("span"),
                None => None,
            };
            assert_eq!(part.element(), expected, "{event}: {part:?}");
        }
        assert!(
            entry.parts.iter().any(|p| p.element() == Some("bdi")),
            "{event}: the name is isolated"
        );
    }
}

#[test]
fn look_alike_and_invisible_names_are_refused_in_the_rooms_words() {
    let mut c = ClientState::new();
    c.start();
    c.opened();
    c.name_typed("bob\u{3164}");
    assert_eq!(
        c.name_error(),
        "Name cannot contain the invisible character U+3164: use letters, digits, '_', '-' \
         and '.' only."
    );
    assert!(sent(&c.submit_name("bob\u{1160}")).is_empty());
    // The decomposed spelling is sent composed.
    assert_eq!(sent(&c.submit_name("Jose\u{301}")), [join("José", None)]);
    c.received(
        r#"{"type":"error","code":"name_confusable","message":"The name 'José' looks too much like 'J\u043esé', who is online; choose another."}"#,
    );
    assert_eq!(
        c.name_error(),
        "The name 'José' looks too much like 'J\u{43e}sé', who is online; choose another."
    );
    assert!(c.show_join_form());
}

// ----- operators and moderation -----

/// The entry of an event that appends exactly one, checked to read as `line::render` words it.
fn one_entry(c: &mut ClientState, json: &str) -> Entry {
    let event = chat_core::codec::json::decode_event(json).expect("real server JSON");
    let fx = c.received(json);
    let entries: Vec<&Entry> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Append(entry) => Some(entry),
            _ => None,
        })
        .collect();
    assert_eq!(entries.len(), 1, "{json}: {fx:?}");
    assert_eq!(entries[0].text(), line::render(&event), "the core's words");
    entries[0].clone()
}

#[test]
fn typed_operator_commands_go_out_as_json_requests() {
    let mut c = joined_alice();
    for (typed, json) in [
        ("/op s3cret word", r#"{"type":"op","token":"s3cret word"}"#),
        ("/kick bob", r#"{"type":"kick","name":"bob"}"#),
        (
            "/kick bob spamming links",
            r#"{"type":"kick","name":"bob","reason":"spamming links"}"#,
        ),
        (
            "/ban bob 10 flood",
            r#"{"type":"ban","name":"bob","minutes":10,"reason":"flood"}"#,
        ),
        ("/ban bob", r#"{"type":"ban","name":"bob"}"#),
        ("/mute bob 5", r#"{"type":"mute","name":"bob","minutes":5}"#),
        ("/unban bob", r#"{"type":"unban","name":"bob"}"#),
        ("/UNMUTE bob", r#"{"type":"unmute","name":"bob"}"#),
        ("/bans", r#"{"type":"bans"}"#),
    ] {
        let fx = c.submit_message(typed);
        let requests = sent(&fx);
        assert_eq!(requests.len(), 1, "{typed}: {fx:?}");
        assert_eq!(
            chat_core::codec::json::encode_request(&requests[0]),
            json,
            "{typed}"
        );
        assert!(fx.contains(&Effect::ClearMessage), "{typed}");
    }
    // A malformed one is refused in the room's words and sends nothing.
    assert_eq!(
        lines(&c.submit_message("/mute bob soon")),
        vec![system("Usage: /mute NAME [MINUTES]")]
    );
}

#[test]
fn a_kicked_user_is_back_at_the_name_form_with_the_reason_and_does_not_rejoin() {
    let mut c = joined_alice();
    let fx = c.received(r#"{"type":"you_were","action":"kick","by":"op","reason":"spam"}"#);
    assert_eq!(
        lines(&fx),
        vec![(Kind::Sanction, "*** You were kicked by op: spam ***".into())]
    );
    assert!(fx.contains(&Effect::Focus(Field::Name)));
    assert!(sent(&fx).is_empty() && timer(&fx).is_none());
    assert_eq!(c.name_error(), "*** You were kicked by op: spam ***");
    assert!(!c.joined() && c.show_join_form() && c.show_chat());
    assert_eq!((c.roster().len(), c.count()), (0, 0));
    // The close that follows: no reconnect, no rejoin, no notice.
    let fx = c.closed(0.0);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(
        (c.status_text().as_str(), c.status_state()),
        ("Disconnected", "closed")
    );
    for token in 0..4 {
        assert!(c.timer_fired(token).is_empty(), "no timer brings it back");
    }
    assert!(c.show_join_form() && !c.joined());
    // Coming back is the user's own call (a kick is not a ban).
    assert_eq!(c.submit_name("alice"), vec![Effect::Connect]);
}

#[test]
fn a_ban_puts_you_out_like_a_kick_and_says_so() {
    let mut c = joined_alice();
    let fx = c.received(r#"{"type":"you_were","action":"ban","by":"op"}"#);
    assert_eq!(
        lines(&fx),
        vec![(
            Kind::Sanction,
            "*** You were banned by op: no reason given ***".into()
        )]
    );
    assert_eq!(
        c.name_error(),
        "*** You were banned by op: no reason given ***"
    );
    assert!(c.closed(0.7).is_empty());
    assert!(c.show_join_form() && c.connection() == Connection::Closed);
}

#[test]
fn banned_at_the_door_or_at_the_name_the_form_says_for_how_long_and_nothing_retries() {
    // At the door: the page connects on load and is turned away instead of the prompt.
    let mut c = ClientState::new();
    c.start();
    c.opened();
    let fx = c.received(r#"{"type":"banned","minutes":42}"#);
    assert!(lines(&fx).is_empty(), "no chat to log it in yet: {fx:?}");
    assert_eq!(
        c.name_error(),
        "You are banned from this room for 42 more minutes."
    );
    assert!(c.closed(0.0).is_empty(), "not retried by itself");
    assert!(c.show_join_form() && c.connection() == Connection::Closed);

    // At the name: the join is answered with the ban, and not sent again.
    let mut c = ClientState::new();
    c.start();
    c.opened();
    assert_eq!(sent(&c.submit_name("bob")), vec![join("bob", None)]);
    let fx = c.received(r#"{"type":"banned","minutes":1}"#);
    assert!(sent(&fx).is_empty() && timer(&fx).is_none());
    assert_eq!(
        c.name_error(),
        "You are banned from this room for 1 more minutes."
    );
    assert!(c.closed(0.0).is_empty());
    assert!(c.show_join_form() && !c.joined());
    // Pressing Join again is a new try, on a new connection.
    assert_eq!(c.submit_name("bob"), vec![Effect::Connect]);
}

#[test]
fn a_rejoin_after_a_drop_turned_away_by_a_ban_stops_at_the_form() {
    let mut c = joined_alice();
    let (_, token) = timer(&c.closed(0.0)).expect("a reconnect");
    assert_eq!(c.timer_fired(token), vec![Effect::Connect]);
    assert_eq!(
        sent(&c.opened()),
        vec![join(
            "alice",
            Some(Resume {
                epoch: EPOCH,
                seq: 0
            })
        )]
    );
    assert!(!c.show_join_form(), "rejoining by itself");
    let fx = c.received(r#"{"type":"banned","minutes":59}"#);
    assert_eq!(
        lines(&fx),
        vec![(
            Kind::Sanction,
            "You are banned from this room for 59 more minutes.".into()
        )]
    );
    assert!(fx.contains(&Effect::Focus(Field::Name)));
    assert_eq!(
        c.name_error(),
        "You are banned from this room for 59 more minutes."
    );
    assert!(c.closed(0.0).is_empty(), "the ban is not retried");
    assert!(c.show_join_form());
}

#[test]
fn someone_else_put_out_is_a_line_of_its_own_and_leaves_the_roster() {
    let mut c = joined_alice();
    let version = c.roster_version();
    let entry = one_entry(
        &mut c,
        r#"{"type":"sanctioned","action":"kick","name":"bob","by":"op","reason":"spam"}"#,
    );
    assert_eq!(entry.kind, Kind::Removed);
    assert_eq!(entry.text(), "*** bob was kicked by op: spam ***");
    assert_eq!(c.roster(), ["alice"]);
    assert_eq!(c.count(), 1);
    assert!(c.roster_version() > version);
    assert!(c.joined(), "the others stay");
    // Who, by whom and why, each a run of its own.
    let runs: Vec<(Option<&str>, &str)> = entry
        .parts
        .iter()
        .map(|p| (p.class, p.text.as_str()))
        .collect();
    assert_eq!(
        runs,
        [
            (None, "*** "),
            (Some("name"), "bob"),
            (None, " was kicked by "),
            (Some("by"), "op"),
            (None, ": "),
            (Some("text"), "spam"),
            (None, " ***"),
        ]
    );
    c.received(r#"{"type":"joined","name":"cy"}"#);
    let entry = one_entry(
        &mut c,
        r#"{"type":"sanctioned","action":"ban","name":"cy","by":"op"}"#,
    );
    assert_eq!(
        (entry.kind, entry.text().as_str()),
        (
            Kind::Removed,
            "*** cy was banned by op: no reason given ***"
        )
    );
    assert_eq!(c.roster(), ["alice"]);
}

#[test]
fn a_muted_user_is_told_and_told_again_when_a_line_reaches_nobody() {
    let mut c = joined_alice();
    let entry = one_entry(&mut c, r#"{"type":"you_were","action":"mute","by":"op"}"#);
    assert_eq!(
        (entry.kind, entry.text().as_str()),
        (Kind::Sanction, "*** You were muted by op ***")
    );
    assert!(c.joined(), "a mute keeps you in");
    assert_eq!(sent(&c.submit_message("hello?")).len(), 1);
    let entry = one_entry(
        &mut c,
        r#"{"type":"error","code":"muted","message":"You are muted."}"#,
    );
    assert_eq!(
        (entry.kind, entry.text().as_str()),
        (Kind::Sanction, "You are muted.")
    );
    // Other refusals stay plain.
    let entry = one_entry(
        &mut c,
        r#"{"type":"error","code":"not_operator","message":"You are not an operator."}"#,
    );
    assert_eq!(entry.kind, Kind::System);
}

#[test]
fn an_operator_is_marked_and_sees_confirmations_and_the_bans_in_force() {
    let mut c = joined_alice();
    assert!(!c.operator() && !c.is_operator("alice"));
    let version = c.roster_version();
    let entry = one_entry(&mut c, r#"{"type":"operator"}"#);
    assert_eq!(
        (entry.kind, entry.text().as_str()),
        (Kind::Operator, "You are now an operator.")
    );
    assert!(c.operator() && c.is_operator("Alice"));
    assert!(!c.is_operator("bob"), "nobody told us about bob");
    assert!(c.roster_version() > version, "the list is drawn again");

    let entry = one_entry(
        &mut c,
        r#"{"type":"moderated","change":"banned","name":"bob","minutes":60}"#,
    );
    assert_eq!(
        (entry.kind, entry.text().as_str()),
        (Kind::Operator, "bob is banned for 60 minutes.")
    );
    let entry = one_entry(
        &mut c,
        r#"{"type":"moderated","change":"unmuted","name":"bob"}"#,
    );
    assert_eq!(entry.text(), "bob is no longer muted.");

    let entry = one_entry(
        &mut c,
        r#"{"type":"bans","bans":[{"kind":"ban","name":"bob","address":"203.0.113.7","minutes":60,"by":"alice","reason":"flood"},{"kind":"mute","name":"cy","minutes":1,"by":"alice"}]}"#,
    );
    assert_eq!(entry.kind, Kind::Bans);
    assert_eq!(
        entry.text(),
        "Bans and mutes in force (2):\n  ban bob and 203.0.113.7 by alice, 60 more minutes: flood\n  mute cy by alice, 1 more minute"
    );
    let entry = one_entry(&mut c, r#"{"type":"bans","bans":[]}"#);
    assert_eq!(
        (entry.kind, entry.text().as_str()),
        (Kind::Bans, "No bans or mutes in force.")
    );

    // Operators' notice to everyone.
    let entry = one_entry(&mut c, r#"{"type":"notice","text":"back in 5"}"#);
    assert_eq!(
        (entry.kind, entry.text().as_str()),
        (Kind::Notice, "*** Notice: back in 5 ***")
    );
}

#[test]
fn the_operators_are_known_from_who_and_lose_the_mark_when_they_leave() {
    let mut c = joined_alice();
    c.received(r#"{"type":"joined","name":"Cy"}"#);
    let version = c.roster_version();
    let entry = one_entry(
        &mut c,
        r#"{"type":"who","online":["alice","bob","Cy"],"operators":["bob","Cy"]}"#,
    );
    assert_eq!(entry.text(), "Online (3): alice, @bob, @Cy");
    assert!(c.is_operator("bob") && c.is_operator("cy") && !c.is_operator("alice"));
    assert!(c.roster_version() > version, "the list shows the marks");
    c.received(r#"{"type":"left","name":"bob"}"#);
    assert!(!c.is_operator("bob"), "gone, and no operator if back");
    c.received(r#"{"type":"joined","name":"bob"}"#);
    assert!(!c.is_operator("bob"));
    // A later answer is the whole truth.
    c.received(r#"{"type":"who","online":["alice","bob","Cy"]}"#);
    assert!(!c.is_operator("cy"));

    // Your own mark is this connection's: a drop takes it, the rejoin does not bring it back.
    c.received(r#"{"type":"operator"}"#);
    assert!(c.operator());
    c.closed(0.0);
    assert!(!c.is_operator("alice"));
    let mut c = joined_alice();
    c.received(r#"{"type":"operator"}"#);
    c.received(r#"{"type":"you_were","action":"kick","by":"op2"}"#);
    assert!(!c.operator() && !c.is_operator("alice"));
}

#[test]
fn moderation_lines_isolate_names_and_reasons() {
    let mut c = joined_alice();
    for (json, isolated) in [
        (
            r#"{"type":"sanctioned","action":"kick","name":"דני","by":"אופ","reason":"שלום 123"}"#,
            &["name", "by", "text"][..],
        ),
        (
            r#"{"type":"moderated","change":"muted","name":"דני","minutes":5}"#,
            &["name"][..],
        ),
        (r#"{"type":"notice","text":"שלום 123"}"#, &["text"][..]),
        (
            r#"{"type":"you_were","action":"mute","by":"אופ"}"#,
            &["by"][..],
        ),
    ] {
        let entry = one_entry(&mut c, json);
        let classes: Vec<&str> = entry.parts.iter().filter_map(|p| p.class).collect();
        assert_eq!(classes, isolated, "{json}");
        for part in &entry.parts {
            let expected = match part.class {
                Some("name" | "by") => Some("bdi"),
                Some(_) => Some("span"),
                None => None,
            };
            assert_eq!(part.element(), expected, "{json}: {part:?}");
        }
    }
}
