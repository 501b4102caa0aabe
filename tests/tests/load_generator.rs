//! The load generator measures what it claims: a small fan-out over each wire against the real
//! server, and over TCP against the tutorial's seed server and the fan-out floor, delivers every
//! message exactly once and in order, and the report adds up.

use std::time::Duration;

use chat_tests::bench::servers::start_seed_protocol;
use chat_tests::bench::workload::{self, Endpoint, Fanout, Flavor};
use chat_tests::load::{Target, Wire};
use chat_tests::{Server, workspace_root};

fn spec(wire: Wire, rate: Option<f64>) -> Fanout {
    Fanout {
        clients: 30,
        senders: 3,
        messages: 40,
        rate,
        aligned: true,
        window: 8,
        wire,
        time_limit: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_over_either_wire_delivers_everything_once_in_order() {
    let server = Server::start(&["--flood", "off"]).await;
    let endpoint = Endpoint {
        target: Target {
            tcp: server.tcp,
            http: server.http,
        },
        flavor: Flavor::Ours,
        // In this process: its CPU time would be the load generator's too.
        pid: None,
    };
    for (wire, rate) in [
        (Wire::Line, None),
        (Wire::Json, None),
        (Wire::Line, Some(200.0)),
    ] {
        let spec = spec(wire, rate);
        let report = workload::fanout(endpoint, &spec, |_, _| {})
            .await
            .expect("the run completes");
        let expected = 3 * 40 * 29;
        assert_eq!(report.expected, expected, "{wire:?}");
        assert_eq!(report.delivered, expected, "{wire:?}: {report:?}");
        assert_eq!(
            (report.lost, report.duplicated, report.reordered),
            (0, 0, 0),
            "{wire:?} at {rate:?}"
        );
        assert!(!report.timed_out);
        assert_eq!(
            report.latency.len(),
            expected,
            "one latency sample per delivery"
        );
        assert!(report.rate() > 0.0 && report.ms(0.5) <= report.ms(0.99));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_server_is_measured_by_the_same_code() {
    let seed = workspace_root().join("../shared/reference/seed_chat_server.py");
    if !seed.exists() {
        // The seed lives beside the project, not in it; without it there is nothing to run.
        eprintln!("SKIPPED: no seed server at {}", seed.display());
        return;
    }
    let mut python = std::process::Command::new("python3");
    python.arg(&seed);
    measure_seed_protocol(python, Flavor::Seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_server_is_measured_by_the_same_code() {
    let floor = std::process::Command::new(env!("CARGO_BIN_EXE_fanout-floor"));
    measure_seed_protocol(floor, Flavor::Floor).await;
}

/// Starts `server` (which speaks the seed's protocol on `PORT`) as `chat-bench` does, runs a
/// small fan-out against it and checks that everything arrived once, in order, and that the
/// server's CPU was read.
async fn measure_seed_protocol(server: std::process::Command, flavor: Flavor) {
    let running =
        start_seed_protocol(server, flavor).unwrap_or_else(|e| panic!("{flavor:?} listens: {e}"));
    let report = workload::fanout(running.endpoint, &spec(Wire::Line, None), |_, _| {}).await;
    drop(running);
    let report = report.expect("the run completes");
    assert_eq!(report.delivered, report.expected, "{flavor:?}");
    assert_eq!(
        (report.lost, report.duplicated, report.reordered),
        (0, 0, 0),
        "{flavor:?}"
    );
    // The server's CPU was read from /proc while it ran (a small run may round to zero ticks).
    let cpu = report.conditions.server_cpu;
    assert!(cpu.is_some(), "{flavor:?}: no CPU time read");
    if let Some((per_delivery, kernel)) = report.cpu_per_delivery() {
        assert!(
            per_delivery > 0.0 && (0.0..=1.0).contains(&kernel),
            "{cpu:?}"
        );
    }
    assert!(
        !report.conditions.sleeper_late.is_empty(),
        "the sleeper ran"
    );
}
