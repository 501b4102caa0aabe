//! How every rendering (the terminal, the page, the JSON) names a server, a wire, a workload
//! and a server's CPU figure, so that they all say the same.

use std::time::Duration;

use super::workload::{Fanout, FanoutReport, Flavor};
use crate::load::Wire;

/// `chat-server`, `seed` or `floor`.
pub fn flavor(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Ours => "chat-server",
        Flavor::Seed => "seed",
        Flavor::Floor => "floor",
    }
}

/// A fan-out run's shape in a few words, from what it measured: `100 clients, 10 000
/// messages`.
pub fn workload_short(r: &super::workload::FanoutReport) -> String {
    format!(
        "{} deliveries in {:.1} s",
        r.delivered,
        r.elapsed.as_secs_f64()
    )
}

/// A latency curve's server: its flavor, or the nodes sharing a room through Redis.
pub fn curve(curve: &super::results::Curve) -> String {
    if curve.nodes > 0 {
        format!("chat-server, {} nodes + Redis", curve.nodes)
    } else {
        flavor(curve.flavor).to_owned()
    }
}

/// `TCP` or `WebSocket`.
pub fn wire(wire: Wire) -> &'static str {
    match wire {
        Wire::Line => "TCP",
        Wire::Json => "WebSocket",
    }
}

/// A fan-out workload in one line: `fan-out over TCP: 100 clients, 10 senders × 1000 messages
/// at 100 msg/s each, spread evenly over each period`.
pub fn workload(spec: &Fanout) -> String {
    let pace = match spec.rate {
        Some(rate) if spec.aligned => format!("at {rate} msg/s each, all at the same instants"),
        Some(rate) => format!("at {rate} msg/s each, spread evenly over each period"),
        None => format!("flat out (window {})", spec.window),
    };
    format!(
        "fan-out over {}: {} clients, {} sender{} × {} messages {pace}",
        wire(spec.wire),
        spec.clients,
        spec.senders,
        if spec.senders == 1 { "" } else { "s" },
        spec.messages
    )
}

/// The server's CPU per delivery, e.g. `7.1 µs (83% kernel)`, or `-` when unknown or too
/// little to split: the kernel splits a process's CPU time into user and system by sampling
/// at its clock tick, which says little about a few hundred milliseconds.
pub fn cpu(r: &FanoutReport) -> String {
    let enough = r
        .conditions
        .server_cpu
        .is_some_and(|(user, system)| user + system >= Duration::from_millis(500));
    match r.cpu_per_delivery() {
        Some((us, kernel)) if enough => format!("{us:.1} µs ({:.0}% kernel)", kernel * 100.0),
        _ => "-".into(),
    }
}
