//! The JSON codec, fed any text: reading it as a request or an event never panics, and a
//! request read from it round-trips. Bytes that are not UTF-8 are read as text with
//! replacements, as the WebSocket layer never hands the room anything but text.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/harness/mod.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::checks::json_text(&String::from_utf8_lossy(data));
});
