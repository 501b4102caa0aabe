//! `Room::stats`: what the room counts for a driver's metrics, and nothing else.

use chat_core::{Config, ConnId, FloodConfig, Room, Stats, Timestamp, Wire, codec::line::Line};

fn joined(room: &mut Room, t: Timestamp, names: &[(ConnId, &str)]) {
    for &(conn, name) in names {
        room.handle_open(t, conn, Wire::Line, None);
        room.handle_line(t, conn, Line::Text(name.into()));
    }
    while room.poll_output().is_some() {}
}

#[test]
fn private_messages_are_counted_once_delivered() {
    let mut room = Room::new(Config::default());
    let t = Timestamp::from_secs(0);
    let (alice, bob) = (ConnId(1), ConnId(2));
    joined(&mut room, t, &[(alice, "alice"), (bob, "bob")]);
    assert_eq!(*room.stats(), Stats::default());

    room.handle_line(t, alice, Line::Text("/msg bob psst".into()));
    room.handle_line(t, alice, Line::Text("/msg BOB again".into()));
    // Not delivered: nobody of that name, no text, or a public message.
    room.handle_line(t, alice, Line::Text("/msg carol hi".into()));
    room.handle_line(t, alice, Line::Text("/msg bob".into()));
    room.handle_line(t, bob, Line::Text("hello".into()));
    room.handle_json(t, alice, r#"{"type":"msg","to":"bob","text":"x"}"#);
    assert_eq!(room.stats().private_messages, 3);
    assert_eq!(room.stats().flood_rejections, 0);
}

#[test]
fn every_line_flood_control_drops_is_counted_though_the_notice_goes_once() {
    let flood = FloodConfig::default();
    let mut room = Room::new(Config {
        flood: Some(flood),
        ..Config::default()
    });
    let t = Timestamp::from_secs(0);
    let (alice, bob) = (ConnId(1), ConnId(2));
    joined(&mut room, t, &[(alice, "alice"), (bob, "bob")]);
    // The burst gets through at once (the name took one line of it); the next 7 lines are
    // dropped, with a single notice.
    let burst = u64::from(flood.burst);
    for i in 0..burst - 1 + 7 {
        room.handle_line(t, alice, Line::Text(format!("line {i}")));
    }
    let mut notices = 0;
    while let Some(out) = room.poll_output() {
        if let chat_core::Output::Send { conn, data } = out {
            notices += usize::from(conn == alice && data.starts_with(b"Error: you are sending"));
        }
    }
    assert_eq!(notices, 1);
    assert_eq!(room.stats().flood_rejections, 7);
    // `/quit` always works and is no rejection.
    room.handle_line(t, alice, Line::Text("/quit".into()));
    assert_eq!(room.stats().flood_rejections, 7);
    assert_eq!(room.stats().private_messages, 0);
}
