//! What the text and name rules cost: every message goes through `clean_message`, every join
//! through `validate_name` and `look_key`. A plain loop in release mode, no framework:
//!
//! ```text
//! cargo bench -p chat-core --bench text
//! ```
//!
//! Each figure is the best of five rounds, per call.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chat_core::codec::line::Line;
use chat_core::name::look_key;
use chat_core::text::{clean_message, clean_text, is_forbidden_control};
use chat_core::{Config, ConnId, Room, Timestamp, Wire, validate_name};

const ROUNDS: usize = 5;

/// The best of [`ROUNDS`] rounds of `calls` calls, per call.
fn best(calls: u32, mut round: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            round();
            start.elapsed() / calls
        })
        .min()
        .unwrap_or_default()
}

fn report(what: &str, per_call: Duration) {
    println!("{what:<58} {:>10.1} ns", per_call.as_secs_f64() * 1e9);
}

/// The check main made of every message before: control characters only.
fn controls_only(text: &str) -> bool {
    text.chars().any(is_forbidden_control)
}

fn main() {
    let ascii = "hello everyone, the meeting moves to three o'clock today!";
    let long_ascii = "the quick brown fox jumps over the lazy dog ".repeat(93);
    let accented = "Ça va ? Zoë et José arrivent à l'hôtel, très bien ✓";
    let hebrew = "שלום לכולם, הפגישה עוברת לשעה שלוש היום";
    let emoji = "great 👍🏽 👨\u{200d}👩\u{200d}👧 ❤\u{fe0f} 🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";
    let spoofed = "\u{202e}gnp.exe\u{202c} zero\u{200b}width\u{2028}line";
    let nfd = "Jose\u{301} and Zoe\u{308} went to the cafe\u{301}";
    const N: u32 = 200_000;

    println!("per call, best of {ROUNDS} rounds, release mode\n");
    for (what, text) in [
        ("printable ASCII, 57 B", ascii),
        ("printable ASCII, 4092 B", long_ascii.as_str()),
        ("accented Latin, clean", accented),
        ("Hebrew, clean", hebrew),
        ("emoji with ZWJ, VS16 and a flag tag sequence", emoji),
        ("bidi override, zero-width space, U+2028", spoofed),
        ("decomposed (NFD) accents", nfd),
    ] {
        let n = if text.len() > 1000 { N / 20 } else { N };
        report(
            &format!("main's controls-only check: {what}"),
            best(n, || {
                for _ in 0..n {
                    black_box(controls_only(black_box(text)));
                }
            }),
        );
        report(
            &format!("clean_text: {what}"),
            best(n, || {
                for _ in 0..n {
                    black_box(clean_text(black_box(text)));
                }
            }),
        );
        // clean_message takes the text by value: the Strings are made outside the clock.
        let mut per_call = Duration::MAX;
        for _ in 0..ROUNDS {
            let texts: Vec<String> = (0..n).map(|_| text.to_owned()).collect();
            let start = Instant::now();
            for t in texts {
                black_box(clean_message(black_box(t)));
            }
            per_call = per_call.min(start.elapsed() / n);
        }
        report(&format!("clean_message: {what}"), per_call);
        println!();
    }

    for name in [
        "alice",
        "alice_1234",
        "Zoë.Müller-Lüdenscheidt",
        "𝐚𝐥𝐢𝐜𝐞",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ] {
        report(
            &format!("validate_name + look_key: {name}"),
            best(N / 4, || {
                for _ in 0..N / 4 {
                    if let Ok(name) = validate_name(black_box(name)) {
                        black_box(look_key(&name));
                    }
                }
            }),
        );
    }

    // Joins into a room that already holds many: the look-alike check is one map lookup.
    println!();
    for online in [1_000u64, 10_000] {
        let t = Timestamp::ZERO;
        let mut room = Room::new(Config {
            max_users: online as usize + 10,
            flood: None,
            ..Config::default()
        });
        let start = Instant::now();
        for i in 0..online {
            room.handle_open(t, ConnId(i), Wire::Line, None);
            room.handle_line(t, ConnId(i), Line::Text(format!("user{i}")));
            while room.poll_output().is_some() {}
        }
        report(
            &format!("a join (open, name, welcome) up to {online} online"),
            start.elapsed() / online as u32,
        );
        let tries = 10_000u32;
        let newcomer = ConnId(online + 1);
        room.handle_open(t, newcomer, Wire::Line, None);
        let start = Instant::now();
        for _ in 0..tries {
            // Cyrillic ѕ and е: looks like user7 and is refused.
            room.handle_line(t, newcomer, Line::Text("u\u{455}\u{435}r7".into()));
            while room.poll_output().is_some() {}
        }
        assert_eq!(room.name_of(newcomer), None, "the look-alike was refused");
        report(
            &format!("a look-alike refused with {online} online"),
            start.elapsed() / tries,
        );
    }
}
