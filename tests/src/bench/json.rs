//! `docs/benchmarks.json` from a [`Report`]: the raw figures of every workload, keyed by
//! workload and server, for a script to read.

use serde_json::{Map, Value, json};

use super::names;
use super::results::{FanoutResults, Report, seed_ratio};
use super::workload::FanoutReport;
use crate::load::Wire;

/// The figures of `report`.
pub fn results(report: &Report) -> Value {
    let mut results = Map::new();
    results.insert("throughput".into(), fanout(&report.throughput));
    for fixed in [&report.fixed_tcp, &report.fixed_ws] {
        let key = format!("latency_{}", names::wire(fixed.spec.wire).to_lowercase());
        results.insert(key, fanout(fixed));
    }
    results.insert("one_relay".into(), fanout(&report.relay));
    for (wire, r) in [
        (Wire::Line, &report.idle_tcp),
        (Wire::Json, &report.idle_ws),
    ] {
        results.insert(
            format!("idle_{}", names::wire(wire).to_lowercase()),
            json!({
                "connections": r.connections, "rss_before_kib": r.rss_before,
                "rss_after_kib": r.rss_after, "kib_per_connection": r.per_connection(),
            }),
        );
    }
    let storm = report.join_storm;
    results.insert(
        "join_storm".into(),
        json!({"clients": storm.clients, "seconds": storm.time.as_secs_f64()}),
    );
    results.insert(
        "cluster".into(),
        json!(
            report
                .cluster
                .iter()
                .map(|r| {
                    let (nodes_cpu, redis_cpu) = super::cluster::Row::cpu_us(&r.flat);
                    json!({
                        "nodes": r.nodes,
                        "flat_out_deliveries_per_s": r.flat.rate(),
                        "fixed_p50_ms": r.fixed.ms(0.5),
                        "fixed_p99_ms": r.fixed.ms(0.99),
                        "fixed_p999_ms": r.fixed.ms(0.999),
                        "nodes_cpu_us_per_delivery": nodes_cpu,
                        "redis_cpu_us_per_delivery": redis_cpu,
                        "scripts_per_message": r.scripts_per_message,
                        "redis_calls_per_message": r.commands_per_message,
                    })
                })
                .collect::<Vec<_>>()
        ),
    );
    results.insert(
        "latency_curve".into(),
        json!(
            report
                .curves
                .iter()
                .map(|curve| json!({
                    "server": names::curve(curve),
                    "points": curve.points.iter().map(|p| json!({
                        "offered_per_s": p.offered, "delivered_per_s": p.delivered,
                        "p50_ms": p.p50, "p99_ms": p.p99, "lost": p.lost,
                    })).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        ),
    );
    if let Some(wasm) = report.wasm {
        results.insert(
            "wasm".into(),
            json!({"raw_bytes": wasm.raw, "gzip_bytes": wasm.gzip}),
        );
    }
    Value::Object(results)
}

/// A fan-out workload: its description, the ratio to the seed, and each server's figures
/// under its name (`chat_server`, `seed`, `floor`).
fn fanout(results: &FanoutResults) -> Value {
    let mut value = json!({
        "workload": names::workload(&results.spec),
        "ratio_to_seed": seed_ratio(&results.runs),
    });
    for (flavor, r) in &results.runs {
        value[names::flavor(*flavor).replace('-', "_")] = one(r);
    }
    value
}

/// One server's figures in a fan-out, and the machine's meanwhile.
fn one(r: &FanoutReport) -> Value {
    let c = &r.conditions;
    let cpu = r.cpu_per_delivery();
    json!({
        "deliveries": r.delivered, "seconds": r.elapsed.as_secs_f64(),
        "deliveries_per_s": r.rate(), "p50_ms": r.ms(0.5), "p99_ms": r.ms(0.99),
        "p999_ms": r.ms(0.999), "max_ms": r.max_ms(),
        "lost": r.lost, "duplicated": r.duplicated, "reordered": r.reordered,
        "server_cpu_us_per_delivery": cpu.map(|c| c.0),
        "server_cpu_kernel_share": cpu.map(|c| c.1),
        "machine": {
            "steal_percent": c.steal, "idle_percent": c.idle,
            "sleeper_late_p99_ms": c.late_ms(0.99), "sleeper_late_p999_ms": c.late_ms(0.999),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::sample;

    /// Every key path of `value` (`throughput.chat_server.p99_ms`), arrays by their first
    /// element.
    fn keys(value: &Value, at: &str, into: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let path = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    into.push(path.clone());
                    keys(v, &path, into);
                }
            }
            Value::Array(items) => {
                if let Some(first) = items.first() {
                    keys(first, &format!("{at}[]"), into);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_results_have_the_keys_of_the_committed_ones() {
        let committed: Value =
            serde_json::from_str(include_str!("../../../docs/benchmarks.json")).expect("JSON");
        let (mut want, mut got) = (Vec::new(), Vec::new());
        keys(&committed, "", &mut want);
        keys(&results(&sample()), "", &mut got);
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }
}
