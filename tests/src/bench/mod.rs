//! The load generator behind `chat-bench` (`src/bin/chat-bench.rs`, which only parses flags
//! and dispatches): it starts the servers it measures itself, runs workloads against them in
//! one invocation, and renders what it measured. Measuring produces plain data; rendering
//! reads it and measures nothing.
//!
//! # Layout
//!
//! - [`workload`]: one workload (a fan-out, idle connections) against one running server, and
//!   what it measured.
//! - [`servers`]: the servers measured (chat-server, the tutorial's seed, the fan-out floor),
//!   started and killed, and one workload run on each.
//! - [`cluster`]: the fan-out spread over 1, 2 and 3 nodes sharing one room through Redis,
//!   beside a node alone.
//! - [`results`]: what a report measured, as plain data ([`results::Report`]).
//! - [`measure`]: every workload of `docs/benchmarks.md`, run in turn into a `Report`.
//! - [`names`]: how every rendering names a server, a wire, a workload and a CPU figure.
//! - [`terminal`]: the lines printed as each workload finishes, and the progress meanwhile.
//! - [`page`]: `docs/benchmarks.md`, from a `Report`.
//! - [`json`]: `docs/benchmarks.json`, from a `Report`.
//! - [`chart`]: `docs/latency.svg`, from a `Report`'s latency curves.

pub mod chart;
pub mod cluster;
pub mod json;
pub mod measure;
pub mod names;
pub mod page;
pub mod results;
pub mod servers;
pub mod terminal;
pub mod workload;
