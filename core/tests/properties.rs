//! Property-based tests (proptest): the line decoder, the JSON codec and the room hold their
//! promises for any input, not only the inputs the transcript tests thought of. The same
//! checks run under `cargo xtask fuzz` for much longer (`fuzz/`).
//!
//! A failure prints the smallest input proptest found; it is kept in
//! `core/tests/properties.proptest-regressions` and tried first on every later run.

mod harness;

use chat_core::{Request, Resume};
use harness::checks;
use harness::ops::{self, Knobs, Op, Typed};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Where the smallest failing inputs are kept, to be tried first on later runs (tests run in
/// the package's folder).
const REGRESSIONS: &str = "tests/properties.proptest-regressions";

fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    }
}

/// Bytes as a peer might send them: mostly text, many line ends, some invalid UTF-8.
fn wire_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            4 => b'a'..=b'z',
            2 => Just(b'\n'),
            1 => Just(b'\r'),
            1 => any::<u8>(),
        ],
        0..max,
    )
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn the_line_decoder_gives_the_same_lines_however_the_bytes_are_cut(
        max_line in 0usize..40,
        data in wire_bytes(300),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        checks::line_decoder(max_line, &data, &cuts);
    }

    #[test]
    fn a_run_of_one_long_line_is_one_error_and_the_next_line_is_intact(
        max_line in 1usize..40,
        extra in 1usize..200,
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let mut data = vec![b'x'; max_line + extra];
        data.extend_from_slice(b"\r\nnext\n");
        checks::line_decoder(max_line.max(4), &data, &cuts);
    }

    #[test]
    fn any_text_read_as_json_never_panics_and_requests_round_trip(
        text in prop_oneof![
            any::<String>(),
            r#"\{"type":"(join|say|msg|who|help|quit|dance)"(,"(name|text|to|resume|seq|epoch)":("[^"]{0,6}"|-?[0-9]{1,21}|null|true|\[\]|\{"epoch":[0-9]{1,21},"seq":-?[0-9]{1,21}\}))*\}"#,
        ],
    ) {
        checks::json_text(&text);
    }

    #[test]
    fn every_request_round_trips_through_json(request in any_request()) {
        checks::request_round_trip(&request);
    }
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            any::<String>(),
            proptest::option::of((any::<u64>(), any::<u64>()))
        )
            .prop_map(|(name, resume)| Request::Join {
                name,
                resume: resume.map(|(epoch, seq)| Resume { epoch, seq }),
            }),
        any::<String>().prop_map(|text| Request::Say { text }),
        (any::<String>(), any::<String>()).prop_map(|(to, text)| Request::Msg { to, text }),
        Just(Request::Who),
        Just(Request::Help),
        Just(Request::Quit),
    ]
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        any::<u8>(),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        any::<u8>(),
        any::<u8>(),
        any::<bool>(),
        any::<u8>(),
        prop_oneof![1u16..50, any::<u16>()],
    )
        .prop_map(
            |(max_users, idle_secs, name_secs, max_line, history, flood, limit, interval)| Knobs {
                max_users,
                idle_secs,
                name_secs,
                max_line,
                history,
                flood,
                announce_limit: limit,
                announce_interval_ms: interval,
            },
        )
}

/// Text with the awkward bits: control characters, escapes, non-ASCII, nothing at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,12}",
        "(?s).{0,24}",
        Just(String::new()),
        Just("\u{1b}[2J\u{7}\u{85}x".to_owned()),
    ]
}

fn typed() -> impl Strategy<Value = Typed> {
    prop_oneof![
        6 => any::<u8>().prop_map(Typed::Name),
        2 => (any::<u8>(), any::<bool>(), any::<u8>()).prop_map(|(name, other_epoch, seq)| {
            Typed::Resume { name, other_epoch, seq }
        }),
        4 => text().prop_map(Typed::Text),
        1 => (any::<u8>(), text()).prop_map(|(to, text)| Typed::Msg(to, text)),
        1 => Just(Typed::Who),
        1 => Just(Typed::Help),
        1 => Just(Typed::Quit),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<bool>().prop_map(|json| Op::Open { json }),
        12 => (any::<u8>(), typed()).prop_map(|(who, what)| Op::Typed { who, what }),
        2 => (any::<u8>(), wire_bytes(60)).prop_map(|(who, bytes)| Op::Raw { who, bytes }),
        1 => any::<u8>().prop_map(|who| Op::Binary { who }),
        3 => (any::<u8>(), any::<bool>()).prop_map(|(who, slow)| Op::Disconnect { who, slow }),
        5 => prop_oneof![0u32..3_000, any::<u32>()].prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Shutdown),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// The room through the harness, whose invariants are checked after every input (see
    /// `harness/ops.rs`): names unique regardless of case, rosters kept by JSON clients equal
    /// to the room's, nothing sent to a closed connection, `poll_timeout` never in the past.
    #[test]
    fn the_room_keeps_its_invariants_under_any_sequence_of_inputs(
        knobs in knobs(),
        ops in vec(op(), 0..100),
    ) {
        ops::run(&knobs, &ops);
    }
}
