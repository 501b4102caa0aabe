//! Properties of the codecs that hold for any input, shared by the property tests
//! (`core/tests/properties.rs`) and the fuzz targets (`fuzz/`). Each panics when one fails.

use chat_core::codec::json;
use chat_core::{Line, LineDecoder, Request};

/// How far past `max_line` the decoder may buffer: the `\r` of a line of exactly `max_line`.
pub const DECODER_SLACK: usize = 1;

/// Feeds `data` to a [`LineDecoder`] cut at `cuts` (positions in `data`, any order, any
/// number) and checks that it gives what one feed of the whole gives, and what the protocol
/// says: every complete line, without its `\n` or `\r\n`, or one `TooLong` for a line over
/// `max_line`, the lines after it intact; then the unfinished last line at the end of input.
/// Never a `Text` over `max_line`, never more than `max_line + 1` bytes held.
pub fn line_decoder(max_line: usize, data: &[u8], cuts: &[usize]) {
    let mut whole = LineDecoder::new(max_line);
    let mut once = Vec::new();
    whole.feed(data, &mut once);
    once.extend(whole.finish());

    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    cuts.sort_unstable();
    let mut decoder = LineDecoder::new(max_line);
    let mut chunked = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([data.len()]) {
        decoder.feed(&data[from..cut], &mut chunked);
        from = cut;
        assert!(
            decoder.buffered() <= max_line + DECODER_SLACK,
            "{} bytes held with max_line {max_line}",
            decoder.buffered()
        );
    }
    chunked.extend(decoder.finish());
    assert_eq!(decoder.buffered(), 0, "nothing held after the end of input");
    assert_eq!(decoder.finish(), None, "the end of input is reported once");

    assert_eq!(chunked, once, "chunking changed the lines");
    assert_eq!(
        once,
        reference_lines(max_line, data),
        "not the protocol's lines"
    );
    for line in &once {
        if let Line::Text(text) = line {
            // Each U+FFFD (3 bytes) replaced at least one invalid byte of the line.
            let replaced = text
                .chars()
                .filter(|&c| c == char::REPLACEMENT_CHARACTER)
                .count();
            let at_least = text.len() - 2 * replaced;
            assert!(
                at_least <= max_line,
                "a line of {at_least} bytes passed: {text:?}"
            );
        }
    }
}

/// The lines of `data` by the protocol's rules, the simple way: the whole input at once.
fn reference_lines(max_line: usize, data: &[u8]) -> Vec<Line> {
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    // After the last `\n`: the unfinished last line, a line only if it is not empty.
    let tail = pieces.pop().filter(|t| !t.is_empty());
    pieces
        .into_iter()
        .chain(tail)
        .map(|piece| {
            let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            if piece.len() > max_line {
                Line::TooLong
            } else {
                Line::Text(String::from_utf8_lossy(piece).into_owned())
            }
        })
        .collect()
}

/// Whatever `text` is, reading it as a request or an event returns, and a request read from
/// it is written back as JSON that reads as the same request.
pub fn json_text(text: &str) {
    let _ = json::decode_event(text);
    if let Ok(request) = json::decode_request(text) {
        request_round_trip(&request);
    }
}

/// `request` written as JSON reads back as itself.
pub fn request_round_trip(request: &Request) {
    let text = json::encode_request(request);
    match json::decode_request(&text) {
        Ok(back) => assert_eq!(&back, request, "{text}"),
        Err(err) => panic!("{text} does not read back: {err}"),
    }
}
