//! The message box: what the user typed, as a request, by the parser nc users go through.
//!
//! That parser is `chat_core::parse_line`, so `/msg Bob hi`, `/who`, `/help` and `/quit` work
//! the same in the browser.

use chat_core::{Request, parse_line};

/// Turns the message box's text into the request to send: `Ok(None)` when there is nothing to
/// send (a blank box), or the sentence to show when it is not a valid command.
pub fn parse_input(text: &str) -> Result<Option<Request>, String> {
    // `ParseError` displays as the sentence the room answers with: the same words, no round trip.
    parse_line(text).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::codec::json;
    use chat_core::{ConnId, Event, Output, Room, Timestamp, Wire, private_prefix};

    #[test]
    fn typed_commands_become_requests() {
        assert_eq!(
            parse_input("/msg Bob hi there"),
            Ok(Some(Request::Msg {
                to: "Bob".into(),
                text: "hi there".into()
            }))
        );
        assert_eq!(parse_input("/who"), Ok(Some(Request::Who)));
        assert_eq!(parse_input("/QUIT"), Ok(Some(Request::Quit)));
        assert_eq!(parse_input("/help"), Ok(Some(Request::Help)));
        assert_eq!(
            parse_input("  hello  "),
            Ok(Some(Request::Say {
                text: "hello".into()
            }))
        );
        assert_eq!(parse_input("   "), Ok(None));
    }

    #[test]
    fn bad_commands_are_refused_in_words() {
        assert_eq!(
            parse_input("/dance now"),
            Err("Unknown command '/dance'. Type /help for the list of commands.".into())
        );
        assert_eq!(parse_input("/msg bob"), Err("Usage: /msg NAME TEXT".into()));
    }

    #[test]
    fn a_private_message_starts_with_the_name() {
        let prefix = private_prefix("Bob");
        assert_eq!(prefix, "/msg Bob ");
        assert_eq!(
            parse_input(&(prefix + "psst")),
            Ok(Some(Request::Msg {
                to: "Bob".into(),
                text: "psst".into()
            }))
        );
    }

    /// The room's own answer to `line` typed by a joined user. A browser cannot send an
    /// unparsed line over JSON, so the line goes in as an nc user's would, on a connection
    /// whose answers come back as JSON.
    fn room_answer(line: &str) -> String {
        let mut room = Room::new(chat_core::Config::default());
        let conn = ConnId(1);
        let now = Timestamp::ZERO;
        room.handle_open(now, conn, Wire::Json, None);
        room.handle_json(now, conn, r#"{"type":"join","name":"ann"}"#);
        room.handle_line(now, conn, chat_core::Line::Text(line.into()));
        let mut last = None;
        while let Some(out) = room.poll_output() {
            if let Output::Send { data, .. } = out {
                last = Some(String::from_utf8(data.to_vec()).unwrap());
            }
        }
        match json::decode_event(&last.expect("the room answered")).unwrap() {
            Event::Error { message, .. } => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn refusals_are_worded_as_the_room_words_them() {
        for line in ["/dance", "/msg", "/msg bob", "/x\u{7}y"] {
            assert_eq!(parse_input(line), Err(room_answer(line)), "{line:?}");
        }
    }
}
