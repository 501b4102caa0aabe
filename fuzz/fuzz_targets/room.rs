//! The room, driven by any sequence of connections, lines, JSON messages, binary messages,
//! disconnects, time and shutdowns through the test harness, which checks its invariants after
//! every input (`core/tests/harness/ops.rs`; the property tests run the same).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/harness/mod.rs"]
mod harness;

use harness::ops::{Knobs, Op};

#[derive(Arbitrary, Debug)]
struct Input {
    knobs: Knobs,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    harness::ops::run(&input.knobs, &input.ops);
});
