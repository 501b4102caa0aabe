//! The line wire: what nc and telnet users send and see.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::event::{Action, Change, Event, PRESENCE_NAMES};
use crate::moderation::SanctionKind;

/// The name prompt, sent without a newline so the cursor waits after it.
pub const PROMPT: &str = "Enter your name: ";

/// One item out of the [`LineDecoder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line: the end of line (`\n` or `\r\n`) removed, invalid UTF-8 replaced with
    /// U+FFFD. Control characters are still in it; the room removes them.
    Text(String),
    /// A line longer than the limit was discarded. Reported once per long line, as soon as the
    /// decoder knows, even before its end arrives.
    TooLong,
}

/// Splits a byte stream into lines, holding at most `max_line + 1` bytes of an unfinished line
/// however much a peer sends without a newline.
///
/// "Incomplete" is a normal state: bytes without a newline stay buffered until the rest
/// arrives. A line over the limit is skipped up to its newline, without being buffered.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    max_line: usize,
    /// Inside a line already reported as too long: drop bytes until its newline.
    discarding: bool,
}

impl LineDecoder {
    /// A decoder for lines of at most `max_line` bytes, not counting the end of line.
    pub fn new(max_line: usize) -> Self {
        LineDecoder {
            buf: Vec::new(),
            max_line,
            discarding: false,
        }
    }

    /// Bytes held of a line whose end has not arrived yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes as they come off the wire; pushes every line they complete onto `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Line>) {
        while let Some(nl) = memchr::memchr(b'\n', data) {
            let head = &data[..nl];
            data = &data[nl + 1..];
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let mut len = self.buf.len() + head.len();
            let ends_with_cr = match head.last() {
                Some(&last) => last == b'\r',
                None => self.buf.last() == Some(&b'\r'),
            };
            if ends_with_cr {
                len -= 1;
            }
            if len > self.max_line {
                out.push(Line::TooLong);
            } else if self.buf.is_empty() {
                out.push(Line::Text(decode(&head[..len])));
            } else {
                self.buf.extend_from_slice(head);
                self.buf.truncate(len);
                out.push(Line::Text(decode(&self.buf)));
            }
            self.buf.clear();
        }
        if self.discarding || data.is_empty() {
            return;
        }
        // One byte of slack: a line of exactly `max_line` bytes may still get its `\r`.
        if self.buf.len() + data.len() > self.max_line + 1 {
            self.buf.clear();
            self.discarding = true;
            out.push(Line::TooLong);
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    /// The end of input: an unfinished last line (`printf hi | nc ...`) still counts.
    #[must_use = "an unfinished last line is still a line for the room"]
    pub fn finish(&mut self) -> Option<Line> {
        let discarding = std::mem::take(&mut self.discarding);
        if discarding || self.buf.is_empty() {
            self.buf.clear();
            return None;
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        // The one byte of slack may hold a line one byte too long that no `\r` followed.
        let line = if self.buf.len() > self.max_line {
            Line::TooLong
        } else {
            Line::Text(decode(&self.buf))
        };
        self.buf.clear();
        Some(line)
    }
}

fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The line that opens the replay of `count` recent messages (after a welcome).
pub fn history_header(count: usize) -> String {
    format!("--- Recent messages ({count}) ---")
}

/// The line that closes the replay of recent messages.
pub const HISTORY_FOOTER: &str = "--- End of recent messages ---";

/// Encodes an event as the exact text of `docs/protocol.md`: zero or more lines, each ending
/// in `\n`, except the prompt which has none.
pub fn encode(event: &Event) -> Bytes {
    let mut out = render(event);
    if *event != Event::Prompt {
        out.push('\n');
    }
    Bytes::from(out)
}

/// The words an nc user reads for `event`, as [`encode`] writes them without the end of the
/// last line: what a client shows when it words an event as the room does.
pub fn render(event: &Event) -> String {
    let mut out = String::new();
    // `write!` into a String cannot fail; the results are ignored on purpose.
    match event {
        Event::Prompt => out.push_str(PROMPT),
        Event::Full => out.push_str("Server is full, please try again later."),
        Event::Welcome {
            name,
            count,
            online,
            ..
        } => {
            let _ = write!(
                out,
                "Welcome, {name}! Online ({count}): {}",
                online.join(", ")
            );
            if *count > online.len() {
                let _ = write!(out, " and {} more", count - online.len());
            }
            out.push_str("\nType /help for the list of commands.");
        }
        Event::History { messages, .. } => {
            out.push_str(&history_header(messages.len()));
            for m in messages {
                let _ = write!(out, "\n{}: {}", m.from, m.text);
            }
            out.push('\n');
            out.push_str(HISTORY_FOOTER);
        }
        Event::Message(m) => {
            let _ = write!(out, "{}: {}", m.from, m.text);
        }
        Event::LocalMessage { from, text } => {
            let _ = write!(out, "{from}: {text}");
        }
        Event::Joined { name } => {
            let _ = write!(out, "*** {name} has joined the chat ***");
        }
        Event::Left { name } => {
            let _ = write!(out, "*** {name} has left the chat ***");
        }
        Event::Presence {
            joined,
            left,
            count,
        } => {
            out.push_str("*** ");
            if !joined.is_empty() {
                name_list(&mut out, "joined", joined);
            }
            if !left.is_empty() {
                if !joined.is_empty() {
                    out.push_str("; ");
                }
                name_list(&mut out, "left", left);
            }
            let _ = write!(out, " ({count} online) ***");
        }
        Event::Private { from, text } => {
            let _ = write!(out, "[private] {from}: {text}");
        }
        Event::PrivateSent { to, text } => {
            let _ = write!(out, "[private to {to}] {text}");
        }
        Event::Who { online, operators } => {
            let _ = write!(out, "Online ({}):", online.len());
            for (i, name) in online.iter().enumerate() {
                let sep = if i == 0 { " " } else { ", " };
                let op = if operators.contains(name) { "@" } else { "" };
                let _ = write!(out, "{sep}{op}{name}");
            }
        }
        Event::Help { commands } => {
            out.push_str("Commands:");
            // One column for the usages, as wide as the longest (an operator's are longer).
            let width = commands
                .iter()
                .map(|c| c.usage.chars().count())
                .max()
                .unwrap_or(0)
                .max(16);
            for c in commands {
                let _ = write!(out, "\n  {:<width$} {}", c.usage, c.description);
            }
        }
        Event::Error { message, .. } => out.push_str(message),
        Event::Goodbye => out.push_str("Goodbye!"),
        Event::IdleTimeout => out.push_str("Disconnected: idle timeout."),
        Event::NameTimeout => out.push_str("Disconnected: no name given in time."),
        Event::Shutdown => out.push_str("*** Server is shutting down ***"),
        Event::Degraded => out.push_str(
            "*** Lost contact with the other servers; only people on this server can hear you now ***",
        ),
        Event::Restored { .. } => out.push_str("*** Back in contact with the other servers ***"),
        Event::Operator => out.push_str("You are now an operator."),
        Event::Sanctioned {
            action,
            name,
            by,
            reason,
        } => {
            let reason = reason.as_deref().unwrap_or(NO_REASON);
            let _ = write!(out, "*** {name} was {} by {by}: {reason} ***", action.done());
        }
        Event::YouWere { action, by, reason } => {
            let _ = write!(out, "*** You were {} by {by}", action.done());
            if *action != Action::Mute {
                let _ = write!(out, ": {}", reason.as_deref().unwrap_or(NO_REASON));
            }
            out.push_str(" ***");
        }
        Event::Banned { minutes } => {
            let _ = write!(
                out,
                "You are banned from this room for {minutes} more minutes."
            );
        }
        Event::Moderated {
            change,
            name,
            minutes,
        } => {
            let _ = match change {
                Change::Banned => write!(out, "{name} is banned"),
                Change::Muted => write!(out, "{name} is muted"),
                Change::Unbanned => write!(out, "{name} is no longer banned"),
                Change::Unmuted => write!(out, "{name} is no longer muted"),
            };
            if let Some(minutes) = minutes {
                let _ = write!(out, " for {minutes} {}", plural(*minutes, "minute"));
            }
            out.push('.');
        }
        Event::Bans { bans } if bans.is_empty() => out.push_str("No bans or mutes in force."),
        Event::Bans { bans } => {
            let _ = write!(out, "Bans and mutes in force ({}):", bans.len());
            for b in bans {
                let kind = match b.kind {
                    SanctionKind::Ban => "ban",
                    SanctionKind::Mute => "mute",
                };
                let _ = write!(out, "\n  {kind} {}", b.name);
                if let Some(address) = &b.address {
                    let _ = write!(out, " and {address}");
                }
                let _ = write!(
                    out,
                    " by {}, {} more {}",
                    b.by,
                    b.minutes,
                    plural(b.minutes, "minute")
                );
                if let Some(reason) = &b.reason {
                    let _ = write!(out, ": {reason}");
                }
            }
        }
        Event::Notice { text } => {
            let _ = write!(out, "*** Notice: {text} ***");
        }
    }
    out
}

/// What the kick and ban lines say after the colon when the operator gave no reason.
pub const NO_REASON: &str = "no reason given";

/// `unit`, or its plural unless `n` is 1.
fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        unit.to_owned()
    } else {
        format!("{unit}s")
    }
}

/// `3 joined: ann, bob, cy`, at most [`PRESENCE_NAMES`] names and then `and N others`: a
/// digest line stays short however large the churn.
fn name_list(out: &mut String, verb: &str, names: &[String]) {
    let shown = names.len().min(PRESENCE_NAMES);
    let _ = write!(out, "{} {verb}: {}", names.len(), names[..shown].join(", "));
    match names.len() - shown {
        0 => {}
        1 => out.push_str(" and 1 other"),
        more => {
            let _ = write!(out, " and {more} others");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(dec: &mut LineDecoder, chunks: &[&[u8]]) -> Vec<Line> {
        let mut out = Vec::new();
        for c in chunks {
            dec.feed(c, &mut out);
        }
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.into())
    }

    #[test]
    fn splits_lines_across_and_within_chunks() {
        let mut dec = LineDecoder::new(100);
        let out = feed_all(&mut dec, &[b"hel", b"lo\nwor", b"ld\r\n\nlast"]);
        assert_eq!(out, vec![text("hello"), text("world"), text("")]);
        assert_eq!(dec.finish(), Some(text("last")));
        assert_eq!(dec.finish(), None);
    }

    #[test]
    fn crlf_split_between_chunks_is_one_end_of_line() {
        let mut dec = LineDecoder::new(100);
        assert_eq!(feed_all(&mut dec, &[b"hi\r", b"\n"]), vec![text("hi")]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let mut dec = LineDecoder::new(100);
        let out = feed_all(&mut dec, &[b"caf\xc3", b"\xa9 \xff\xfe ok\n"]);
        assert_eq!(out, vec![text("café \u{fffd}\u{fffd} ok")]);
    }

    #[test]
    fn the_limit_is_inclusive_and_ignores_the_end_of_line() {
        let mut dec = LineDecoder::new(4);
        let out = feed_all(&mut dec, &[b"abcd\r\nabcde\nab", b"cd\r", b"\n"]);
        assert_eq!(out, vec![text("abcd"), Line::TooLong, text("abcd")]);
    }

    #[test]
    fn a_long_line_is_reported_once_and_skipped_without_buffering() {
        let mut dec = LineDecoder::new(8);
        let mut out = Vec::new();
        dec.feed(b"0123456789", &mut out);
        assert_eq!(out, vec![Line::TooLong]);
        for _ in 0..1000 {
            dec.feed(&[b'x'; 1000], &mut out);
            assert_eq!(dec.buffered(), 0);
        }
        dec.feed(b"tail\nnext\n", &mut out);
        assert_eq!(out, vec![Line::TooLong, text("next")]);
    }

    #[test]
    fn an_unfinished_long_line_at_eof_is_not_a_line() {
        let mut dec = LineDecoder::new(3);
        assert_eq!(feed_all(&mut dec, &[b"abcdef"]), vec![Line::TooLong]);
        assert_eq!(dec.finish(), None);
    }

    #[test]
    fn an_unfinished_last_line_one_byte_over_the_limit_is_too_long_at_eof() {
        // Found by the property test: the byte of slack for a `\r` let it through at EOF.
        let mut dec = LineDecoder::new(7);
        assert_eq!(feed_all(&mut dec, &[b"aaa\ra\raa"]), vec![]);
        assert_eq!(dec.finish(), Some(Line::TooLong));
        let mut dec = LineDecoder::new(7);
        assert_eq!(feed_all(&mut dec, &[b"aaaaaaa\r"]), vec![]);
        assert_eq!(dec.finish(), Some(text("aaaaaaa")));
    }

    #[test]
    fn renders_the_protocol_text() {
        let e = |ev: Event| String::from_utf8(encode(&ev).to_vec()).unwrap();
        assert_eq!(e(Event::Prompt), "Enter your name: ");
        assert_eq!(
            e(Event::Joined { name: "bob".into() }),
            "*** bob has joined the chat ***\n"
        );
        assert_eq!(
            e(Event::Private {
                from: "bob".into(),
                text: "hi".into()
            }),
            "[private] bob: hi\n"
        );
        assert_eq!(
            e(Event::PrivateSent {
                to: "Bob".into(),
                text: "hi".into()
            }),
            "[private to Bob] hi\n"
        );
        assert_eq!(
            e(Event::Who {
                online: vec!["a".into(), "b".into()],
                operators: Vec::new()
            }),
            "Online (2): a, b\n"
        );
        assert_eq!(
            e(Event::Welcome {
                name: "a".into(),
                count: 3,
                online: vec!["a".into(), "b".into()],
                epoch: 7,
            }),
            "Welcome, a! Online (3): a, b and 1 more\nType /help for the list of commands.\n"
        );
        assert_eq!(
            e(Event::NameTimeout),
            "Disconnected: no name given in time.\n"
        );
    }

    #[test]
    fn rendered_words_are_the_encoded_lines_without_the_last_end_of_line() {
        let history = Event::History {
            messages: vec![crate::event::ChatMessage {
                seq: 1,
                from: "bob".into(),
                text: "hi".into(),
            }],
            gap: false,
        };
        assert_eq!(
            &encode(&history)[..],
            b"--- Recent messages (1) ---\nbob: hi\n--- End of recent messages ---\n"
        );
        assert_eq!(
            render(&history),
            format!("{}\nbob: hi\n{HISTORY_FOOTER}", history_header(1))
        );
        for event in [Event::help(), Event::Goodbye, Event::Full, history] {
            let mut words = render(&event);
            words.push('\n');
            assert_eq!(words.as_bytes(), &encode(&event)[..], "{event:?}");
        }
        assert_eq!(
            render(&Event::Prompt).as_bytes(),
            &encode(&Event::Prompt)[..]
        );
    }

    #[test]
    fn a_digest_names_at_most_ten_of_each_list_and_counts_the_rest() {
        let e = |ev: Event| String::from_utf8(encode(&ev).to_vec()).unwrap();
        let names = |n: usize| -> Vec<String> { (0..n).map(|i| format!("u{i:02}")).collect() };
        let presence = |joined: usize, left: usize| Event::Presence {
            joined: names(joined),
            left: names(left),
            count: 1204,
        };
        assert_eq!(
            e(presence(3, 2)),
            "*** 3 joined: u00, u01, u02; 2 left: u00, u01 (1204 online) ***\n"
        );
        assert_eq!(e(presence(1, 0)), "*** 1 joined: u00 (1204 online) ***\n");
        assert_eq!(e(presence(0, 1)), "*** 1 left: u00 (1204 online) ***\n");
        let ten = names(10).join(", ");
        assert_eq!(
            e(presence(11, 300)),
            format!(
                "*** 11 joined: {ten} and 1 other; 300 left: {ten} and 290 others \
                 (1204 online) ***\n"
            )
        );
        // Bounded whatever the lists: ten names of at most 32 characters each, twice.
        let long: Vec<String> = (0..1000).map(|i| format!("{i:0>32}")).collect();
        let big = Event::Presence {
            joined: long.clone(),
            left: long,
            count: 1000,
        };
        assert!(e(big).len() < 2 * 10 * 34 + 100);
    }
}
