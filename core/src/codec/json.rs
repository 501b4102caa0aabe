//! The JSON wire: one JSON object per WebSocket text message, what the browser sends and sees.
//!
//! It carries the same events and requests as the line wire; `docs/protocol.md` shows every
//! message.

use bytes::Bytes;

use crate::command::Request;
use crate::event::Event;

/// Renders an event as one JSON object.
pub fn encode_event(event: &Event) -> Bytes {
    // Serialising these plain structs (strings, numbers, enums) into memory cannot fail.
    Bytes::from(serde_json::to_vec(event).expect("events always serialise"))
}

/// Reads an event; for clients.
pub fn decode_event(text: &str) -> Result<Event, serde_json::Error> {
    serde_json::from_str(text)
}

/// Renders a request as one JSON object; for clients.
pub fn encode_request(request: &Request) -> String {
    serde_json::to_string(request).expect("requests always serialise")
}

/// Reads a request; the error says what was wrong, for the `bad_request` reply.
pub fn decode_request(text: &str) -> Result<Request, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_code::ErrorCode;
    use crate::event::ChatMessage;

    #[test]
    fn events_are_tagged_objects() {
        let msg = Event::Message(ChatMessage {
            seq: 7,
            from: "bob".into(),
            text: "hi".into(),
        });
        assert_eq!(
            &encode_event(&msg)[..],
            br#"{"type":"message","seq":7,"from":"bob","text":"hi"}"#
        );
        let err = Event::error(ErrorCode::NameTaken, "taken");
        assert_eq!(
            &encode_event(&err)[..],
            br#"{"type":"error","code":"name_taken","message":"taken"}"#
        );
        assert_eq!(&encode_event(&Event::Goodbye)[..], br#"{"type":"goodbye"}"#);
    }

    #[test]
    fn events_and_requests_round_trip() {
        let events = [
            Event::help(),
            Event::Prompt,
            Event::Left { name: "x".into() },
        ];
        for e in events {
            let text = String::from_utf8(encode_event(&e).to_vec()).unwrap();
            assert_eq!(decode_event(&text).unwrap(), e);
        }
        let r = Request::Msg {
            to: "bob".into(),
            text: "hi \"there\"".into(),
        };
        assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
    }

    #[test]
    fn bad_requests_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"type":"dance"}"#,
            r#"{"type":"say"}"#,
            "null",
        ] {
            assert!(decode_request(bad).is_err(), "{bad}");
        }
        assert_eq!(decode_request(r#"{"type":"who"}"#).unwrap(), Request::Who);
    }
}
