//! `docs/protocol.md` stays true: every JSON example under "Requests" is a request, every one
//! under "Events" an event, and each re-encodes to exactly the same text.

use chat_core::codec::json;
use std::collections::BTreeSet;

/// The JSON examples of the doc, each with the heading it stands under.
fn json_examples() -> Vec<(String, String)> {
    let doc = include_str!("../../docs/protocol.md");
    let mut examples = Vec::new();
    let mut heading = String::new();
    let mut in_json = false;
    for line in doc.lines() {
        match line.trim() {
            h if h.starts_with('#') => heading = h.trim_start_matches('#').trim().to_owned(),
            "```json" => in_json = true,
            "```" => in_json = false,
            example if in_json && !example.is_empty() => {
                examples.push((heading.clone(), example.to_owned()));
            }
            _ => {}
        }
    }
    examples
}

#[test]
fn every_json_example_in_the_protocol_doc_is_exact() {
    let (mut requests, mut events) = (BTreeSet::new(), BTreeSet::new());
    let tag = |example: &str| {
        let value: serde_json::Value = serde_json::from_str(example).expect(example);
        value["type"].as_str().expect(example).to_owned()
    };
    for (heading, example) in json_examples() {
        if heading.starts_with("Requests") {
            let request = json::decode_request(&example)
                .unwrap_or_else(|e| panic!("{example} is not a request: {e}"));
            assert_eq!(json::encode_request(&request), example);
            requests.insert(tag(&example));
        } else if heading.starts_with("Events") {
            let event = json::decode_event(&example)
                .unwrap_or_else(|e| panic!("{example} is not an event: {e}"));
            assert_eq!(&json::encode_event(&event)[..], example.as_bytes());
            events.insert(tag(&example));
        }
    }
    assert_eq!(
        requests.len(),
        13,
        "an example of every request: {requests:?}"
    );
    assert_eq!(events.len(), 27, "an example of every event: {events:?}");
}

#[test]
fn the_help_example_is_what_the_room_sends() {
    let help = json::encode_event(&chat_core::Event::help());
    let help = std::str::from_utf8(&help).unwrap();
    assert!(json_examples().iter().any(|(_, e)| e == help), "{help}");
}
