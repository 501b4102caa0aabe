//! Measuring `chat-bench report`: every workload of `docs/benchmarks.md` in turn, each
//! printed to the terminal as it finishes, into one [`Report`]; the machine and the browser
//! client's size with them.

use std::path::Path;
use std::time::{Duration, Instant};

use super::results::{Curve, FanoutResults, JoinStorm, Point, Report, WasmSize};
use super::servers::Servers;
use super::terminal;
use super::workload::Fanout;
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
    let rates: &[f64] = if quick {
        &[10.0, 100.0, 400.0]
    } else {
        &[10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0]
    };
    let mut curves = Vec::new();
    for flavor in servers.flavors(Wire::Line) {
        let mut points = Vec::new();
        for &rate in rates {
            let spec = Fanout {
                clients: 100,
                senders: 10,
                messages: ((rate * if quick { 1.0 } else { 3.0 }) as u64).max(20),
                rate: Some(rate),
                aligned: false,
                window: 0,
                wire: Wire::Line,
                time_limit: Duration::from_secs(60),
            };
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
        curves.push(Curve { flavor, points });
    }
    Ok(curves)
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
