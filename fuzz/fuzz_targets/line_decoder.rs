//! The line decoder, fed any bytes cut anywhere: the same lines as one feed of the whole,
//! the protocol's lines (a reference splitter), never a line over the limit, never more than
//! `max_line + 1` bytes held. The checks are `core/tests/harness/checks.rs`, which the property
//! tests run too.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/harness/mod.rs"]
mod harness;

#[derive(Arbitrary, Debug)]
struct Input {
    max_line: u8,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c)).collect();
    harness::checks::line_decoder(usize::from(input.max_line), &input.data, &cuts);
});
