//! Headless Chromium drives the real page served by the real server, together with real `nc`
//! users: chatting in every direction, names refused with the reason, a server restart, a
//! short disconnect that loses nothing, the page over HTTPS and WSS with an
//! `openssl s_client` user, a kicked page that stays out, and an operator in the page. Each
//! scenario leaves a screenshot in `target/e2e/`.
//!
//! The scenarios run one at a time (a Chromium is heavy for a small machine), whatever
//! `--test-threads` says.

use std::time::Duration;

use chat_tests::{
    Browser, PageState, Proxy, Server, TestCert, bounded, browser_installed, openssl_installed,
    require, web_root,
};
use tokio::sync::Mutex;

/// One browser scenario at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Waits for reconnecting, whose back-off grows up to 4 s between attempts.
const RECONNECT: Duration = Duration::from_secs(20);

/// The page's notice when a resumed history says messages are gone.
const GAP_NOTICE: &str = "were missed";

/// The prerequisites of every browser test; `None` when they are missing and skipping is
/// allowed.
fn prerequisites(test: &str) -> Option<std::path::PathBuf> {
    browser_installed(test)?;
    web_root(test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_every_direction() {
    let test = "chat_in_every_direction";
    let root = require!(prerequisites(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        let server = Server::with_page(&root, &["--flood", "off"]).await;
        let (label_a, label_b) = (format!("{test} alice"), format!("{test} bob"));
        let (a, b) = tokio::join!(Browser::start(&label_a), Browser::start(&label_b));

        // alice joins in a browser, then carol with nc, then bob in a browser.
        let joined = a.open_and_join(&server.url(), "alice").await;
        assert!(
            joined.users.contains(&"alice".to_owned()),
            "alice is in her own user list:\n{joined}"
        );
        let (mut carol, welcome) = server.nc_join("carol").await;
        assert_eq!(welcome, "Welcome, carol! Online (2): alice, carol");
        a.wait_until("carol's join", |s| s.has("joined", &["carol"]))
            .await;
        b.open_and_join(&server.url(), "bob").await;
        carol.expect("*** bob has joined the chat ***\n").await;
        a.wait_until("bob's join", |s| s.has("joined", &["bob"]))
            .await;

        // Public messages: each sender sees its own as `own`, the others as `message`.
        a.say("hello from alice").await;
        a.wait_until("alice's own message", |s| {
            s.has("own", &["alice", "hello from alice"])
        })
        .await;
        b.wait_until("alice's message at bob", |s| {
            s.has("message", &["alice", "hello from alice"])
        })
        .await;
        carol.expect("alice: hello from alice\n").await;

        b.say("hi from bob").await;
        b.wait_until("bob's own message", |s| {
            s.has("own", &["bob", "hi from bob"])
        })
        .await;
        a.wait_until("bob's message at alice", |s| {
            s.has("message", &["bob", "hi from bob"])
        })
        .await;
        carol.expect("bob: hi from bob\n").await;

        carol.type_line("hey from carol");
        for (page, who) in [(&a, "alice"), (&b, "bob")] {
            page.wait_until(&format!("carol's message at {who}"), |s| {
                s.has("message", &["carol", "hey from carol"])
            })
            .await;
        }

        // Private messages in every direction.
        a.say("/msg bob psst").await;
        b.wait_until("alice's private message to bob", |s| {
            s.has("private", &["alice", "psst"])
        })
        .await;
        a.wait_until("alice's private message as sent", |s| {
            s.has("private-sent", &["bob", "psst"])
        })
        .await;

        b.say("/msg carol ok from bob").await;
        carol.expect("[private] bob: ok from bob\n").await;
        b.wait_until("bob's private message to carol as sent", |s| {
            s.has("private-sent", &["carol", "ok from bob"])
        })
        .await;

        carol.type_line("/msg alice hi");
        carol.expect("[private to alice] hi\n").await;
        a.wait_until("carol's private message to alice", |s| {
            s.has("private", &["carol", "hi"])
        })
        .await;

        carol.type_line("/msg bob back at you");
        carol.expect("[private to bob] back at you\n").await;
        b.wait_until("carol's private message to bob", |s| {
            s.has("private", &["carol", "back at you"])
        })
        .await;

        a.say("/msg carol yo").await;
        let seen = carol.expect("[private] alice: yo\n").await;
        assert!(
            !seen.contains("psst"),
            "carol never sees alice's private message to bob: {seen:?}"
        );
        a.wait_until("alice's private message to carol as sent", |s| {
            s.has("private-sent", &["carol", "yo"])
        })
        .await;
        let at_b = b.state().await;
        assert!(
            !at_b
                .entries
                .iter()
                .any(|e| e.is("private") && e.text.ends_with("yo")),
            "bob never sees alice's private message to carol:\n{at_b}"
        );

        // The user list holds everyone; clicking a name starts a private message.
        a.wait_until("alice, bob and carol in the user list", |s| {
            ["alice", "bob", "carol"]
                .iter()
                .all(|n| s.users.iter().any(|u| u == n))
        })
        .await;
        a.click_user("carol").await;
        a.wait_until("`/msg carol ` in the input after clicking carol", |s| {
            s.input == "/msg carol "
        })
        .await;
        a.say("/who").await; // Replaces the input's text.
        a.wait_until("the answer to /who", |s| {
            s.has("system", &["Online (3): alice, bob, carol"])
        })
        .await;

        // Leaving: bob quits from his page, carol from nc.
        b.say("/quit").await;
        carol.expect("*** bob has left the chat ***\n").await;
        a.wait_until("bob's leave", |s| s.has("left", &["bob"]))
            .await;
        carol.type_line("/quit");
        carol.expect("Goodbye!\n").await;
        let at_a = a
            .wait_until("carol's leave and a user list of alice alone", |s| {
                s.has("left", &["carol"]) && s.users == ["alice"]
            })
            .await;
        b.wait_until("bob's page no longer joined after /quit", |s| {
            !s.is_joined()
        })
        .await;

        check_public_order(&at_a);
        a.screenshot(test).await;
        b.close().await;
        a.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_refused_with_the_reason() {
    let test = "names_are_refused_with_the_reason";
    let root = require!(prerequisites(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        let server = Server::with_page(&root, &[]).await;
        let (mut alice, _) = server.nc_join("alice").await;
        let page = Browser::start(test).await;
        page.open(&server.url()).await;
        page.wait_open().await;

        // Refused by the page itself, with the core's reason; nothing joins.
        for (name, reason) in [
            ("bob smith", "Name cannot contain ' '"),
            ("<b>", "Name cannot contain '<'"),
        ] {
            page.submit_name(name).await;
            let shown = page
                .wait_until(&format!("the reason {name:?} is refused"), |s| {
                    s.name_error.contains(reason)
                })
                .await;
            assert!(!shown.is_joined(), "{name:?} did not join:\n{shown}");
        }

        // Taken: the server's sentence.
        page.submit_name("Alice").await;
        let shown = page
            .wait_until("the server's refusal of a taken name", |s| {
                s.name_error == "The name 'Alice' is already taken; choose another."
            })
            .await;
        assert!(!shown.is_joined(), "Alice did not join:\n{shown}");
        page.screenshot(&format!("{test}-taken")).await;

        // A good name joins.
        page.submit_name("bob").await;
        page.wait_until(
            "joined as bob with no error shown, alice and bob in the user list",
            |s| {
                s.is_joined()
                    && s.chat_hidden == Some(false)
                    && s.name_error.is_empty()
                    && s.users == ["alice", "bob"]
            },
        )
        .await;
        let seen = alice.expect("*** bob has joined the chat ***\n").await;
        assert_eq!(
            seen, "*** bob has joined the chat ***\n",
            "no refused name ever joined"
        );
        page.screenshot(test).await;
        page.close().await;
    })
    .await;
}

/// Where each message's name and text are on the page, and how they read.
const MESSAGE_LAYOUT: &str = r#"
const part = (li, cls) => {
  const e = li.querySelector('.' + cls);
  if (!e) return null;
  const r = e.getBoundingClientRect();
  return {
    tag: e.tagName.toLowerCase(), dir: e.getAttribute('dir'),
    direction: getComputedStyle(e).direction, left: r.left, right: r.right,
    text: e.textContent,
  };
};
return Array.from(document.querySelectorAll('#messages li.entry.message'), (li) => ({
  line: li.textContent, from: part(li, 'from'), text: part(li, 'text'),
}));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_to_left_text_keeps_to_its_place_and_look_alike_names_are_refused() {
    let test = "right_to_left_text_keeps_to_its_place_and_look_alike_names_are_refused";
    let root = require!(prerequisites(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        let server = Server::with_page(&root, &["--flood", "off"]).await;
        let (mut alice, _) = server.nc_join("alice").await;
        let page = Browser::start(test).await;
        page.open(&server.url()).await;
        page.wait_open().await;

        // A look-alike of alice, with a Cyrillic а: the server's sentence, and no join.
        page.submit_name("\u{430}lice").await;
        let shown = page
            .wait_until("the server's refusal of a look-alike name", |s| {
                s.name_error
                    == "The name '\u{430}lice' looks too much like 'alice', who is online; \
                        choose another."
            })
            .await;
        assert!(!shown.is_joined(), "the look-alike did not join:\n{shown}");
        // An invisible Hangul filler: the page's own refusal, in the room's words.
        page.submit_name("bob\u{3164}").await;
        page.wait_until("the page's refusal of an invisible character", |s| {
            s.name_error
                .starts_with("Name cannot contain the invisible character U+3164")
        })
        .await;
        page.open_and_join(&server.url(), "bob").await;
        alice.expect("*** bob has joined the chat ***\n").await;

        // A Hebrew name, a message that starts with digits, an Arabic message, an override.
        let (mut dani, _) = server.nc_join("דני").await;
        dani.type_line("123 שלום");
        alice.expect("דני: 123 שלום\n").await;
        alice.type_line("مرحبا بالعالم!");
        alice.type_line("\u{202e}gnp.exe");
        dani.expect("alice: gnp.exe\n").await;
        // And the other way, from the page to nc.
        page.say("\u{202e}olleh \u{200b}there").await;
        alice.expect("bob: olleh there\n").await;

        page.wait_until("the three messages", |s| {
            s.has("message", &["alice", "gnp.exe"])
                && s.has("message", &["דני", "123 שלום"])
                && s.has("message", &["alice", "مرحبا بالعالم!"])
        })
        .await;
        // Before the checks, so that a failure leaves a picture too.
        page.screenshot(test).await;
        let layout = page.evaluate(MESSAGE_LAYOUT).await;
        let messages = layout.as_array().expect("an array of messages");
        assert_eq!(messages.len(), 3, "{layout:#}");
        for (m, direction) in messages.iter().zip(["rtl", "rtl", "ltr"]) {
            let (from, text) = (&m["from"], &m["text"]);
            assert_eq!(from["tag"], "bdi", "the name is isolated: {m:#}");
            assert_eq!(text["tag"], "span", "{m:#}");
            assert_eq!(text["dir"], "auto", "the text is isolated: {m:#}");
            assert_eq!(
                text["direction"], direction,
                "the text reads its own way: {m:#}"
            );
            let (name_right, text_left) = (
                from["right"].as_f64().unwrap_or(f64::NAN),
                text["left"].as_f64().unwrap_or(f64::NAN),
            );
            assert!(
                name_right <= text_left + 0.5,
                "the name stays at the start of the line, before its text: {m:#}"
            );
        }
        assert_eq!(
            messages[2]["text"]["text"], "gnp.exe",
            "no override reaches the page"
        );
        let dir = page
            .evaluate(
                "return Array.from(document.querySelectorAll('#users button.user'), \
                 (b) => b.getAttribute('dir'));",
            )
            .await;
        assert_eq!(
            dir,
            serde_json::json!(["auto", "auto", "auto"]),
            "the user list"
        );
        page.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_after_a_server_restart() {
    let test = "the_page_reconnects_after_a_server_restart";
    let root = require!(prerequisites(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        // With a message log, the restarted server replays what was said before the restart.
        let dir = chat_tests::TempDir::new(test);
        let log = dir.path().join("chat.jsonl");
        let log = log.to_str().expect("UTF-8 path");
        let mut server = Server::with_page(&root, &["--log", log]).await;
        let page = Browser::start(test).await;
        page.open_and_join(&server.url(), "alice").await;
        page.say("before the restart").await;
        page.wait_until("alice's own message", |s| {
            s.has("own", &["before the restart"])
        })
        .await;

        server.stop().await;
        page.wait_until("the shutdown notice and a status that is not open", |s| {
            s.mentions("shutting down") && !s.status_is("open")
        })
        .await;

        server.start_again().await;
        // The page rejoins by itself: an nc user who comes in sees alice, now or on arrival.
        let (mut carol, welcome) = server.nc_join("carol").await;
        let history = carol.expect("--- End of recent messages ---\n").await;
        assert!(
            history.contains("--- Recent messages (1) ---\nalice: before the restart\n"),
            "a newcomer after the restart is replayed the logged history: {history:?}"
        );
        if !welcome.contains("alice") {
            carol.expect("*** alice has joined the chat ***\n").await;
        }
        page.wait_until_for(RECONNECT, "the page open and joined again", |s| {
            s.status_is("open") && s.is_joined()
        })
        .await;
        carol.type_line("/who");
        carol.expect("Online (2): alice, carol\n").await;

        carol.type_line("welcome back");
        page.wait_until("carol's message after the restart", |s| {
            s.has("message", &["carol", "welcome back"])
        })
        .await;
        page.say("glad to be back").await;
        carol.expect("alice: glad to be back\n").await;

        let shown = page.state().await;
        assert_eq!(
            shown.count("own", &["before the restart"]),
            1,
            "the old messages stay, once, though the restarted server replayed them:\n{shown}"
        );
        // The server said it was shutting down, so nothing of its run can have been missed.
        assert!(
            !shown.mentions(GAP_NOTICE),
            "no gap notice after an announced restart:\n{shown}"
        );
        page.screenshot(test).await;
        page.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_disconnect_loses_nothing() {
    let test = "a_short_disconnect_loses_nothing";
    let root = require!(prerequisites(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        let server = Server::with_page(&root, &["--flood", "off"]).await;
        // The browser reaches the server through a proxy that can cut it off. The page's
        // origin is the proxy's; so is the Host header the server compares it with.
        let proxy = Proxy::start(server.http).await;
        let page = Browser::start(test).await;
        page.open_and_join(&proxy.url(), "alice").await;
        let (mut carol, _) = server.nc_join("carol").await;
        page.wait_until("carol's join", |s| s.has("joined", &["carol"]))
            .await;

        carol.type_line("m1");
        page.wait_until("m1", |s| s.has("message", &["carol", "m1"]))
            .await;

        proxy.cut();
        carol.expect("*** alice has left the chat ***\n").await;
        page.wait_until("the page noticing the drop", |s| !s.status_is("open"))
            .await;
        for m in ["m2", "m3", "m4", "m5"] {
            carol.type_line(m);
        }
        // The room has them (its answer to /who comes after them), while alice is away.
        carol.type_line("/who");
        carol.expect("Online (1): carol\n").await;
        let before = proxy.accepted();
        proxy.restore();

        carol.expect("*** alice has joined the chat ***\n").await;
        assert!(
            proxy.accepted() > before,
            "the page came back through the proxy"
        );
        page.wait_until_for(RECONNECT, "m1 to m5 after the reconnect", |s| {
            s.status_is("open")
                && ["m1", "m2", "m3", "m4", "m5"]
                    .iter()
                    .all(|m| s.has("message", &["carol", m]))
        })
        .await;
        // Anything late (a duplicate, a gap notice) has had time to arrive.
        carol.type_line("m6");
        let shown = page
            .wait_until("m6", |s| s.has("message", &["carol", "m6"]))
            .await;

        let texts: Vec<&str> = shown
            .entries
            .iter()
            .filter(|e| e.is("message"))
            .map(|e| e.text.as_str())
            .collect();
        for m in ["m1", "m2", "m3", "m4", "m5", "m6"] {
            assert_eq!(
                texts.iter().filter(|t| t.ends_with(m)).count(),
                1,
                "{m} shown exactly once:\n{shown}"
            );
        }
        let order: Vec<&str> = texts
            .iter()
            .filter_map(|t| {
                ["m1", "m2", "m3", "m4", "m5", "m6"]
                    .into_iter()
                    .find(|m| t.ends_with(m))
            })
            .collect();
        assert_eq!(
            order,
            ["m1", "m2", "m3", "m4", "m5", "m6"],
            "in order:\n{shown}"
        );
        assert!(!shown.mentions(GAP_NOTICE), "no gap notice:\n{shown}");
        check_public_order(&shown);
        page.screenshot(test).await;
        page.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_over_https_chats_over_wss_with_an_openssl_user() {
    let test = "the_page_over_https_chats_over_wss_with_an_openssl_user";
    let root = require!(prerequisites(test));
    require!(openssl_installed(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        let cert = TestCert::new(test);
        let tls = cert.flags();
        let mut flags: Vec<&str> = tls.iter().map(String::as_str).collect();
        flags.extend(["--flood", "off"]);
        let server = Server::with_page(&root, &flags).await;
        assert!(server.url().starts_with("https://"), "{}", server.url());
        let page = Browser::start_accepting_any_certificate(test).await;

        // The page loads over https:// and opens its WebSocket over wss:// by itself.
        page.open_and_join(&server.url(), "alice").await;
        let location = page.location().await;
        assert_eq!(location, server.url(), "the page is shown from https");
        let (mut carol, welcome) = server.s_client_join("carol").await;
        assert_eq!(welcome, "Welcome, carol! Online (2): alice, carol");
        page.wait_until("carol's join", |s| s.has("joined", &["carol"]))
            .await;

        page.say("hello carol, from https").await;
        carol.expect("alice: hello carol, from https\n").await;
        carol.type_line("hi alice, from s_client");
        page.wait_until("carol's message", |s| {
            s.has("message", &["carol", "hi alice, from s_client"])
        })
        .await;
        page.say("/msg carol just us").await;
        carol.expect("[private] alice: just us\n").await;
        carol.type_line("/msg alice indeed");
        carol.expect("[private to alice] indeed\n").await;
        page.wait_until("carol's private message", |s| {
            s.has("private", &["carol", "indeed"])
        })
        .await;

        carol.type_line("/quit");
        carol.expect("Goodbye!\n").await;
        let shown = page
            .wait_until("carol's leave and alice alone", |s| {
                s.has("left", &["carol"]) && s.users == ["alice"]
            })
            .await;
        assert!(
            shown.status_is("open"),
            "the page's connection stays open:\n{shown}"
        );
        check_public_order(&shown);
        page.screenshot(test).await;
        page.close().await;
    })
    .await;
}

/// The operators' secret of the moderation scenarios, written to a file for
/// `--op-token-file`.
const OP_SECRET: &str = "correct horse battery";

/// A directory holding the token file, and the flags that start the server with it.
fn operators_enabled(test: &str) -> (chat_tests::TempDir, String) {
    let dir = chat_tests::TempDir::new(test);
    let file = dir.join("op-token");
    // The first line is the secret; what follows it is not.
    std::fs::write(&file, format!("{OP_SECRET}\nnot part of it\n")).expect("write the token");
    let path = file.to_str().expect("UTF-8 path").to_owned();
    (dir, path)
}

/// Whether `#join-form` and `#operator-badge` are shown, and `body[data-operator]`.
const FORMS: &str = "return { joinForm: !document.getElementById('join-form').hidden, \
    operatorBadge: !document.getElementById('operator-badge').hidden, \
    operator: document.body.dataset.operator ?? null };";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_page_says_why_returns_to_the_name_form_and_does_not_come_back() {
    let test = "a_kicked_page_says_why_returns_to_the_name_form_and_does_not_come_back";
    let root = require!(prerequisites(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        let (_dir, token_file) = operators_enabled(test);
        let server = Server::with_page(&root, &["--op-token-file", &token_file]).await;
        let page = Browser::start(test).await;
        page.open_and_join(&server.url(), "bob").await;
        page.say("hello, I am about to misbehave").await;

        let (mut op, _) = server.nc_join("op").await;
        op.type_line(&format!("/op {OP_SECRET}"));
        op.expect("You are now an operator.\n").await;
        op.type_line("/kick bob spamming links");
        op.expect("*** bob was kicked by op: spamming links ***\n")
            .await;

        let kicked = "*** You were kicked by op: spamming links ***";
        let shown = page
            .wait_until("the kick said in the log and on the name form", |s| {
                s.has("sanction", &[kicked]) && s.name_error == kicked && !s.is_joined()
            })
            .await;
        assert!(
            shown.users.is_empty(),
            "who is online is no longer known:\n{shown}"
        );
        let forms = page.evaluate(FORMS).await;
        assert_eq!(forms["joinForm"], true, "back at the name form: {forms}");
        page.screenshot("kick").await;

        // Several reconnect back-offs later (250 ms doubling to 4 s), the page has not come
        // back by itself: the room never saw bob again.
        tokio::time::sleep(Duration::from_secs(6)).await;
        op.type_line("/who");
        let who = op
            .line_where("answering /who", |l| l.starts_with("Online ("))
            .await;
        assert_eq!(who, "Online (1): @op", "bob did not rejoin");
        let after = page.state().await;
        assert!(
            !after.is_joined() && after.status_is("closed") && after.name_error == kicked,
            "the page stays out, closed, saying why:\n{after}"
        );
        assert_eq!(
            after.count("sanction", &[kicked]),
            1,
            "said once, not again by a rejoin turned away:\n{after}"
        );

        // Coming back is the user's own call (a kick is not a ban).
        page.submit_name("bob").await;
        page.wait_until("bob joined again by hand", |s| s.is_joined())
            .await;
        op.expect("*** bob has joined the chat ***\n").await;
        page.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_in_the_page_kicks_bans_and_sees_the_bans_in_force() {
    let test = "an_operator_in_the_page_kicks_bans_and_sees_the_bans_in_force";
    let root = require!(prerequisites(test));
    let _serial = SERIAL.lock().await;
    bounded(test, async {
        let (_dir, token_file) = operators_enabled(test);
        let server = Server::with_page(&root, &["--op-token-file", &token_file]).await;
        let page = Browser::start(test).await;
        page.open_and_join(&server.url(), "alice").await;
        let (mut carol, _) = server.nc_join("carol").await;
        let (mut dave, _) = server.nc_join("dave").await;
        let (mut erin, _) = server.nc_join("erin").await;

        // A wrong secret, then the right one, typed in the page's message box.
        page.say("/op guess").await;
        page.wait_until("the wrong token refused", |s| {
            s.has("system", &["Wrong operator token."])
        })
        .await;
        page.say(&format!("/op {OP_SECRET}")).await;
        let shown = page
            .wait_until("alice an operator, marked in the list", |s| {
                s.has("operator", &["You are now an operator."])
                    && s.users.iter().any(|u| u == "@alice")
            })
            .await;
        assert!(
            !shown.mentions(OP_SECRET),
            "the secret is never shown:\n{shown}"
        );
        let forms = page.evaluate(FORMS).await;
        assert_eq!(
            (&forms["operatorBadge"], &forms["operator"]),
            (&serde_json::json!(true), &serde_json::json!("true")),
            "{forms}"
        );

        // Another operator becomes known to the page when it asks /who.
        erin.type_line(&format!("/op {OP_SECRET}"));
        erin.expect("You are now an operator.\n").await;
        page.say("/who").await;
        page.wait_until("both operators marked in /who and in the list", |s| {
            s.has("system", &["Online (4): @alice, carol, dave, @erin"])
                && s.users == ["@alice", "carol", "dave", "@erin"]
        })
        .await;

        // A kick: carol is told why and closed; everyone else sees the line.
        page.say("/kick carol flooding").await;
        carol
            .expect("*** You were kicked by alice: flooding ***\n")
            .await;
        // nc ends once both its input and the connection have: the server closed it.
        carol.close_stdin();
        let (rest, _) = carol.finished().await;
        assert_eq!(rest, "", "nothing after the kick line, then the close");
        dave.expect("*** carol was kicked by alice: flooding ***\n")
            .await;
        page.wait_until("the kick line, and carol gone from the list", |s| {
            s.has("removed", &["*** carol was kicked by alice: flooding ***"])
                && !s.users.iter().any(|u| u == "carol")
        })
        .await;

        // A ban, confirmed to the operator, and listed by /bans.
        page.say("/ban dave 10 rude").await;
        dave.expect("*** You were banned by alice: rude ***\n")
            .await;
        erin.expect("*** dave was banned by alice: rude ***\n")
            .await;
        page.wait_until("the ban's line and its confirmation", |s| {
            s.has("removed", &["*** dave was banned by alice: rude ***"])
                && s.has("operator", &["dave is banned for 10 minutes."])
        })
        .await;
        page.say("/bans").await;
        page.wait_until("the bans in force", |s| {
            s.has(
                "bans",
                &["Bans and mutes in force (1):\n  ban dave by alice, 10 more minutes: rude"],
            )
        })
        .await;
        // The ban holds: dave, back with nc, is turned away after the name.
        let mut again = chat_tests::Nc::connect(server.tcp, "dave again");
        again.expect("Enter your name: ").await;
        again.type_line("Dave");
        again
            .expect("You are banned from this room for 10 more minutes.\n")
            .await;
        again.close_stdin();
        let (rest, _) = again.finished().await;
        assert_eq!(rest, "", "closed after the refusal");

        let shown = page
            .wait_until("the list of alice and erin", |s| {
                s.users == ["@alice", "@erin"]
            })
            .await;
        page.screenshot("operator").await;
        assert_eq!(
            shown.count("sanction", &[]),
            0,
            "nothing was done to alice:\n{shown}"
        );
        page.close().await;
    })
    .await;
}

/// Public messages (those with a `data-seq`) are shown in strictly increasing `seq` order,
/// each once.
fn check_public_order(state: &PageState) {
    let seqs: Vec<u64> = state.entries.iter().filter_map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "data-seq strictly increasing: {seqs:?}\n{state}"
    );
}
