//! Measuring `chat-bench report`: every workload of `docs/benchmarks.md` in turn, each
//! printed to the terminal as it finishes, into one [`Report`]; the machine and the browser
//! client's size with them.

use std::path::Path;
use std::time::{Duration, Instant};

use super::results::{Curve, FanoutResults, JoinStorm, Point, Report, WasmSize};
use super::servers::Servers;
use super::workload::Fanout;
use super::{names, terminal};
use crate::load::Wire;

/// Runs every workload against `servers`; with `quick`, smaller counts and fewer load points.
pub async fn report(servers: &Servers, quick: bool) -> Result<Report, String> {
    let scale = |full: usize, small: usize| if quick { small } else { full };
    let started = Instant::now();

    // 1. Throughput: 1000 clients, 10 senders flat out, TCP, both servers.
    let throughput = fanout(
        servers,
        Fanout {
            clients: scale(1000, 200),
            senders: 10,
            messages: scale(300, 50) as u64,
            rate: None,
            aligned: false,
            window: 64,
            wire: Wire::Line,
            time_limit: Duration::from_secs(300),
        },
    )
    .await?;

    // 2. Latency at a fixed load: 100 clients, 10 senders at 100 msg/s, on both wires.
    let fixed = |wire| Fanout {
        clients: 100,
        senders: 10,
        messages: scale(1000, 200) as u64,
        rate: Some(100.0),
        aligned: false,
        window: 0,
        wire,
        time_limit: Duration::from_secs(120),
    };
    let fixed_tcp = fanout(servers, fixed(Wire::Line)).await?;
    let fixed_ws = fanout(servers, fixed(Wire::Json)).await?;

    // 2b. One relay on a nearly idle machine: 2 clients, one message every 10 ms.
    let relay = fanout(
        servers,
        Fanout {
            clients: 2,
            senders: 1,
            messages: scale(1000, 200) as u64,
            rate: Some(100.0),
            aligned: false,
            window: 0,
            wire: Wire::Line,
            time_limit: Duration::from_secs(60),
        },
    )
    .await?;

    // 3. Idle memory, each wire on a fresh server.
    let idle = |wire| async move {
        let r = servers
            .idle(wire, scale(10_000, 1000), Duration::ZERO, false)
            .await?;
        terminal::idle(wire, &r);
        Ok::<_, String>(r)
    };
    let idle_tcp = idle(Wire::Line).await?;
    let idle_ws = idle(Wire::Json).await?;

    // 4. Join storm.
    let clients = scale(10_000, 1000);
    let r = servers.join(Wire::Line, clients, 1000).await?;
    terminal::join_storm(Wire::Line, clients, &r);
    let join_storm = JoinStorm {
        clients,
        time: r.join_time,
    };

    // 5. Latency against offered load, every server, for the chart.
    let curves = curves(servers, quick).await?;

    // 5b. Several nodes, one room: flat out and at the fixed load, alone and on 1, 2 and 3
    // nodes through Redis; and the latency curve of 3 nodes.
    let flat = Fanout {
        clients: 100,
        senders: 10,
        messages: scale(1000, 200) as u64,
        rate: None,
        aligned: false,
        window: 64,
        wire: Wire::Line,
        time_limit: Duration::from_secs(300),
    };
    let fixed_load = Fanout {
        rate: Some(100.0),
        messages: scale(500, 200) as u64,
        window: 0,
        ..flat.clone()
    };
    let cluster = super::cluster::run(servers.ours(), &[1, 2, 3], &flat, &fixed_load).await?;
    println!("{}", names::workload(&flat));
    println!("{}", names::workload(&fixed_load));
    print!("{}", super::cluster::table(&cluster));
    let mut curves = curves;
    curves.push(cluster_curve(servers, quick, 3).await?);

    // 6. The browser client's size, as `cargo xtask site` built it.
    let wasm = wasm_size();

    Ok(Report {
        quick,
        took: started.elapsed(),
        machine: machine(),
        throughput,
        fixed_tcp,
        fixed_ws,
        relay,
        idle_tcp,
        idle_ws,
        join_storm,
        curves,
        cluster,
        wasm,
    })
}

/// Runs `spec` on every server that speaks its wire and prints the figures.
async fn fanout(servers: &Servers, spec: Fanout) -> Result<FanoutResults, String> {
    let runs = servers.fanout_all(&spec).await?;
    terminal::fanout(&spec, &runs);
    Ok(FanoutResults { spec, runs })
}

/// 100 clients, 10 senders at rising rates over TCP, on each server until it saturates.
async fn curves(servers: &Servers, quick: bool) -> Result<Vec<Curve>, String> {
    let mut curves = Vec::new();
    for flavor in servers.flavors(Wire::Line) {
        let mut points = Vec::new();
        for &rate in rates(quick) {
            let spec = curve_spec(quick, rate);
            let r = servers.fanout_one(&spec, flavor).await?;
            let point = Point {
                offered: rate * spec.senders as f64 * (spec.clients - 1) as f64,
                delivered: r.rate(),
                p50: r.ms(0.5),
                p99: r.ms(0.99),
                lost: r.lost,
            };
            terminal::curve_point(flavor, &point);
            points.push(point);
            if r.ms(0.99) > 1000.0 || r.timed_out {
                break; // saturated: higher loads only take longer to say so
            }
        }
        curves.push(Curve {
            flavor,
            nodes: 0,
            points,
        });
    }
    Ok(curves)
}

/// The latency curve of `nodes` nodes sharing the room through Redis, clients and senders
/// spread over them, fresh nodes and Redis for each rate.
async fn cluster_curve(servers: &Servers, quick: bool, nodes: usize) -> Result<Curve, String> {
    let mut points = Vec::new();
    for &rate in rates(quick) {
        let spec = curve_spec(quick, rate);
        let (r, _) = super::cluster::run_one(servers.ours(), nodes, &spec).await?;
        let point = Point {
            offered: rate * spec.senders as f64 * (spec.clients - 1) as f64,
            delivered: r.rate(),
            p50: r.ms(0.5),
            p99: r.ms(0.99),
            lost: r.lost,
        };
        println!(
            "  {nodes} nodes + Redis at {:.0} offered/s: p50 {:.2} ms, p99 {:.2} ms",
            point.offered, point.p50, point.p99
        );
        points.push(point);
        if r.ms(0.99) > 1000.0 || r.timed_out {
            break;
        }
    }
    Ok(Curve {
        flavor: super::workload::Flavor::Ours,
        nodes,
        points,
    })
}

/// The senders' rates of the latency curves.
fn rates(quick: bool) -> &'static [f64] {
    if quick {
        &[10.0, 100.0, 400.0]
    } else {
        &[10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0]
    }
}

/// One point of a latency curve: 100 clients, 10 senders at `rate`, over TCP.
fn curve_spec(quick: bool, rate: f64) -> Fanout {
    Fanout {
        clients: 100,
        senders: 10,
        messages: ((rate * if quick { 1.0 } else { 3.0 }) as u64).max(20),
        rate: Some(rate),
        aligned: false,
        window: 0,
        wire: Wire::Line,
        time_limit: Duration::from_secs(60),
    }
}

/// The size of the built wasm module, raw and gzip, from `target/site`.
fn wasm_size() -> Option<WasmSize> {
    let dir = Path::new("target/site");
    let entries = std::fs::read_dir(dir).ok()?;
    let wasm = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wasm"))?;
    let raw = std::fs::metadata(&wasm).ok()?.len();
    let mut gz = wasm.into_os_string();
    gz.push(".gz");
    let gzip = std::fs::metadata(gz).ok()?.len();
    Some(WasmSize { raw, gzip })
}

/// The CPU model, core count, memory and kernel of this machine.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or("unknown memory".to_string(), |kib| {
            format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown kernel".to_string(), |k| k.trim().to_string());
    format!("{model}, {cores} cores, {memory}, Linux {kernel}")
}
