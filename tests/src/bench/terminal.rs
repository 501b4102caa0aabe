//! What `chat-bench` prints to the terminal: each workload's figures as it finishes (standard
//! output), and the deliveries so far while a fan-out runs (standard error).

use std::io::Write;

use super::names;
use super::results::{Point, Runs, seed_ratio};
use super::workload::{Fanout, FanoutReport, Flavor, IdleReport};
use crate::load::Wire;

/// A fan-out's progress callback for server `who`: `  who: N of M deliveries (P%)` on one
/// line, rewritten in place.
pub fn progress(who: &str) -> impl FnMut(u64, u64) + '_ {
    move |done, of| {
        eprint!(
            "\r  {who}: {done} of {of} deliveries ({:.0}%)   ",
            done as f64 * 100.0 / of as f64
        );
        let _ = std::io::stderr().flush();
    }
}

/// Clears the progress line.
pub fn progress_done() {
    eprint!("\r{:60}\r", "");
}

/// A fan-out workload and its figures on each server, and the ratio to the seed.
pub fn fanout(spec: &Fanout, runs: &Runs) {
    println!("{}", names::workload(spec));
    for (flavor, r) in runs {
        println!("{}", fanout_line(names::flavor(*flavor), r));
        let c = &r.conditions;
        println!(
            "  {:<12} server CPU per delivery {}; machine: steal {:.0}%, idle {:.0}%, a 1 ms \
             sleeper woke late by p99 {:.2} ms, p99.9 {:.2} ms",
            "",
            names::cpu(r),
            c.steal,
            c.idle,
            c.late_ms(0.99),
            c.late_ms(0.999)
        );
    }
    if let Some(ratio) = seed_ratio(runs) {
        println!("  ratio: {ratio:.1}× the seed's deliveries per second");
    }
}

fn fanout_line(who: &str, r: &FanoutReport) -> String {
    format!(
        "  {who:<12} {:>10} deliveries in {:>6.2} s = {:>10.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, \
         p99.9 {:.2} ms, max {:.2} ms; lost {}, duplicated {}, reordered {}{}",
        r.delivered,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.ms(0.5),
        r.ms(0.99),
        r.ms(0.999),
        r.max_ms(),
        r.lost,
        r.duplicated,
        r.reordered,
        if r.timed_out {
            " (time limit reached)"
        } else {
            ""
        }
    )
}

/// Idle connections over `wire` and what they cost the server.
pub fn idle(wire: Wire, r: &IdleReport) {
    println!(
        "idle: {} {} connections: server RSS {} KiB → {} KiB, {:.1} KiB per connection \
         (joined in {:.2} s)",
        r.connections,
        names::wire(wire),
        r.rss_before,
        r.rss_after,
        r.per_connection(),
        r.join_time.as_secs_f64()
    );
}

/// A join storm of `clients` over `wire`.
pub fn join_storm(wire: Wire, clients: usize, r: &IdleReport) {
    println!(
        "join storm: {clients} {} clients joined in {:.2} s ({:.0} joins/s)",
        names::wire(wire),
        r.join_time.as_secs_f64(),
        clients as f64 / r.join_time.as_secs_f64()
    );
}

/// One load point of a latency curve.
pub fn curve_point(flavor: Flavor, p: &Point) {
    println!(
        "  {:<12} offered {:>9.0}/s: delivered {:>9.0}/s, p50 {:.2} ms, p99 {:.2} ms{}",
        names::flavor(flavor),
        p.offered,
        p.delivered,
        p.p50,
        p.p99,
        if p.lost > 0 {
            format!(", lost {}", p.lost)
        } else {
            String::new()
        }
    );
}
