//! What a report measured, as plain data: every workload's runs on each server, the idle
//! memory, the join storm, the latency curves, the browser client's size and the machine;
//! and the few figures read off them that more than one rendering needs.

use std::time::Duration;

use super::workload::{Fanout, FanoutReport, Flavor, IdleReport};

/// One workload's results, one per server, chat-server's first.
pub type Runs = Vec<(Flavor, FanoutReport)>;

/// A fan-out workload and what it gave on each server.
#[derive(Clone, Debug)]
pub struct FanoutResults {
    pub spec: Fanout,
    pub runs: Runs,
}

/// One load point of a latency curve.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Deliveries a second the senders' rate asks for.
    pub offered: f64,
    /// Deliveries a second that arrived.
    pub delivered: f64,
    /// Latency p50 and p99, milliseconds.
    pub p50: f64,
    pub p99: f64,
    pub lost: u64,
}

/// A server's latency against offered load, up to where it saturated.
#[derive(Clone, Debug)]
pub struct Curve {
    pub flavor: Flavor,
    /// Nodes sharing the room through Redis; 0: a server alone.
    pub nodes: usize,
    pub points: Vec<Point>,
}

/// A join storm: how many clients, and how long until all had joined.
#[derive(Clone, Copy, Debug)]
pub struct JoinStorm {
    pub clients: usize,
    pub time: Duration,
}

/// The built browser client, `chat_web_bg.wasm`: bytes as built and gzip-compressed.
#[derive(Clone, Copy, Debug)]
pub struct WasmSize {
    pub raw: u64,
    pub gzip: u64,
}

/// Everything `chat-bench report` measured, in the order it ran.
#[derive(Clone, Debug)]
pub struct Report {
    /// Whether it was the short version (`--quick`).
    pub quick: bool,
    /// From the first workload to the last measurement.
    pub took: Duration,
    /// The CPU model, core count, memory and kernel.
    pub machine: String,
    /// 1000 clients, 10 senders flat out, over TCP.
    pub throughput: FanoutResults,
    /// 100 clients, 10 senders at 100 msg/s, over TCP and then WebSocket.
    pub fixed_tcp: FanoutResults,
    pub fixed_ws: FanoutResults,
    /// 2 clients, one message every 10 ms.
    pub relay: FanoutResults,
    /// Idle joined connections, TCP then WebSocket, each on a fresh server.
    pub idle_tcp: IdleReport,
    pub idle_ws: IdleReport,
    pub join_storm: JoinStorm,
    /// Latency against offered load, one curve per server (and one for several nodes).
    pub curves: Vec<Curve>,
    /// Several nodes, one room: a node alone, then 1, 2 and 3 nodes through Redis.
    pub cluster: Vec<super::cluster::Row>,
    /// `None` when the page was not built.
    pub wasm: Option<WasmSize>,
}

/// The run of `flavor` among `runs`, if it ran.
pub fn find(runs: &Runs, flavor: Flavor) -> Option<&FanoutReport> {
    runs.iter().find(|(f, _)| *f == flavor).map(|(_, r)| r)
}

/// chat-server's deliveries per second over the seed's, when both ran.
pub fn seed_ratio(runs: &Runs) -> Option<f64> {
    let (ours, seed) = (find(runs, Flavor::Ours)?, find(runs, Flavor::Seed)?);
    Some(ours.rate() / seed.rate().max(1e-9))
}

/// Nothing lost, duplicated or reordered.
pub fn clean(r: &FanoutReport) -> bool {
    r.lost == 0 && r.duplicated == 0 && r.reordered == 0 && !r.timed_out
}

/// A report with made-up figures and every server present, for the renderers' tests.
#[cfg(test)]
pub(crate) fn sample() -> Report {
    use hdrhistogram::Histogram;

    use super::workload::Conditions;
    use crate::load::Wire;

    let histogram = |values: &[u64]| {
        let mut h = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
        for &v in values {
            h.record(v).expect("in bounds");
        }
        h
    };
    let run = |delivered: u64, ms: u64| FanoutReport {
        expected: delivered,
        delivered,
        lost: 0,
        duplicated: 0,
        reordered: 0,
        elapsed: Duration::from_secs(10),
        join_time: Duration::from_millis(300),
        latency: histogram(&[ms * 1000, ms * 2000, ms * 5000]),
        timed_out: false,
        disconnected: 0,
        conditions: Conditions {
            steal: 2.0,
            idle: 40.0,
            sleeper_late: histogram(&[100, 300, 3000]),
            server_cpu: Some((Duration::from_millis(700), Duration::from_millis(2100))),
            engine_cpu: None,
        },
    };
    let workload = |clients, wire, rate| FanoutResults {
        spec: Fanout {
            clients,
            senders: 10,
            messages: 100,
            rate,
            aligned: false,
            window: 64,
            wire,
            time_limit: Duration::from_secs(60),
        },
        runs: match wire {
            Wire::Line => vec![
                (Flavor::Ours, run(990_000, 1)),
                (Flavor::Floor, run(980_000, 3)),
                (Flavor::Seed, run(800_000, 900)),
            ],
            Wire::Json => vec![(Flavor::Ours, run(990_000, 1))],
        },
    };
    let idle = |rss_after| IdleReport {
        connections: 10_000,
        rss_before: 4700,
        rss_after,
        join_time: Duration::from_secs(1),
    };
    let curve = |flavor, points: &[(f64, f64)]| Curve {
        flavor,
        nodes: 0,
        points: points
            .iter()
            .map(|&(offered, p99)| Point {
                offered,
                delivered: offered,
                p50: p99 / 3.0,
                p99,
                lost: 0,
            })
            .collect(),
    };
    Report {
        quick: false,
        took: Duration::from_secs(233),
        machine: "a test machine".into(),
        throughput: workload(1000, Wire::Line, None),
        fixed_tcp: workload(100, Wire::Line, Some(100.0)),
        fixed_ws: workload(100, Wire::Json, Some(100.0)),
        relay: workload(2, Wire::Line, Some(100.0)),
        idle_tcp: idle(48_000),
        idle_ws: idle(84_000),
        join_storm: JoinStorm {
            clients: 10_000,
            time: Duration::from_millis(840),
        },
        curves: vec![
            curve(Flavor::Ours, &[(9900.0, 4.0), (99_000.0, 3.0)]),
            curve(Flavor::Floor, &[(9900.0, 2.5), (99_000.0, 1700.0)]),
            curve(Flavor::Seed, &[(9900.0, 3.4)]),
        ],
        cluster: (0..4)
            .map(|nodes| super::cluster::Row {
                nodes,
                flat: workload(100, Wire::Line, None).runs[0].1.clone(),
                fixed: workload(100, Wire::Line, Some(100.0)).runs[0].1.clone(),
                scripts_per_message: (nodes > 0).then_some(1.02),
                commands_per_message: (nodes > 0).then_some(1.1),
            })
            .collect(),
        wasm: Some(WasmSize {
            raw: 236_993,
            gzip: 88_797,
        }),
    }
}
