//! Several nodes, one room: the same fan-out on a node alone and spread round robin over 1, 2
//! and 3 nodes sharing the room through a `redis-server` started here (a fresh one for each
//! count, on a free port, never 6379), with the nodes' CPU and Redis's apart, and the Redis
//! commands each public message cost (from `INFO commandstats`).

use std::path::Path;

use super::servers::OURS_FLAGS;
use super::terminal;
use super::workload::{self, Endpoint, Fanout, FanoutReport, Flavor};
use crate::load::Target;
use crate::redis::RedisServer;
use crate::server::{Server, ServerCommand};

/// One configuration's figures.
#[derive(Clone, Debug)]
pub struct Row {
    /// Nodes sharing the room through Redis; 0: a node alone, without `--redis`.
    pub nodes: usize,
    /// The flat-out fan-out.
    pub flat: FanoutReport,
    /// The fan-out at a fixed rate.
    pub fixed: FanoutReport,
    /// Redis calls per public message over both runs: the scripts (`EVALSHA`), and every
    /// call a node sends (beats, reaps, the log's reads included; not the commands a script
    /// runs inside itself).
    pub scripts_per_message: Option<f64>,
    pub commands_per_message: Option<f64>,
}

impl Row {
    /// Microseconds of CPU per delivery: the nodes', and Redis's.
    pub fn cpu_us(r: &FanoutReport) -> (Option<f64>, Option<f64>) {
        let per = |cpu: Option<(std::time::Duration, std::time::Duration)>| {
            let (u, s) = cpu?;
            (r.delivered > 0).then(|| (u + s).as_secs_f64() * 1e6 / r.delivered as f64)
        };
        (per(r.conditions.server_cpu), per(r.conditions.engine_cpu))
    }
}

/// Runs `flat` and `fixed` on a node alone, then on each count of `nodes`; every run on
/// fresh servers (and a fresh Redis).
pub async fn run(
    binary: &Path,
    nodes: &[usize],
    flat: &Fanout,
    fixed: &Fanout,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &count in std::iter::once(&0).chain(nodes) {
        let (flat_report, flat_calls) = run_one(binary, count, flat).await?;
        let (fixed_report, fixed_calls) = run_one(binary, count, fixed).await?;
        let messages =
            (flat.senders as u64 * flat.messages + fixed.senders as u64 * fixed.messages) as f64;
        let (scripts_per_message, commands_per_message) = match (flat_calls, fixed_calls) {
            (Some(a), Some(b)) => (
                Some((a.0 + b.0) as f64 / messages),
                Some((a.1 + b.1) as f64 / messages),
            ),
            _ => (None, None),
        };
        rows.push(Row {
            nodes: count,
            flat: flat_report,
            fixed: fixed_report,
            scripts_per_message,
            commands_per_message,
        });
    }
    Ok(rows)
}

/// One run of `spec` on `count` nodes (0: one node alone); with the Redis commands it took
/// (scripts, all) over the whole run, the joins included.
pub async fn run_one(
    binary: &Path,
    count: usize,
    spec: &Fanout,
) -> Result<(FanoutReport, Option<(u64, u64)>), String> {
    let redis = (count > 0).then(RedisServer::start);
    let mut servers = Vec::new();
    for i in 0..count.max(1) {
        let mut command = ServerCommand::of(binary).args(OURS_FLAGS).log("warn");
        if let Some(redis) = &redis {
            let id = format!("bench{i}");
            command = command.args(["--redis", &redis.url(), "--node-id", &id]);
        }
        let server: Server = command
            .try_start()
            .await
            .map_err(|e| format!("cannot start chat-server: {e}"))?;
        servers.push(server);
    }
    let endpoints: Vec<Endpoint> = servers
        .iter()
        .map(|s| Endpoint {
            target: Target {
                tcp: s.tcp,
                http: s.http,
            },
            flavor: Flavor::Ours,
            pid: Some(s.pid()),
        })
        .collect();
    let engine = redis.as_ref().map(RedisServer::pid);
    let before = redis.as_ref().map(calls);
    let who = if count == 0 {
        "alone".to_owned()
    } else {
        format!("{count} node(s)")
    };
    let report = workload::fanout_spread(&endpoints, engine, spec, terminal::progress(&who))
        .await
        .map_err(|e| format!("{who}: {e}"))?;
    terminal::progress_done();
    let used = match (redis.as_ref().map(calls), before) {
        (Some(after), Some(before)) => Some((after.0 - before.0, after.1 - before.1)),
        _ => None,
    };
    drop(servers);
    Ok((report, used))
}

/// Redis's counts so far: `EVALSHA` calls, and every call a node sent.
fn calls(redis: &RedisServer) -> (u64, u64) {
    let info = redis.info("commandstats");
    let (mut scripts, mut all) = (0, 0);
    for line in info.lines() {
        let Some((name, stats)) = line.split_once(':') else {
            continue;
        };
        let Some(n) = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let command = name.trim_start_matches("cmdstat_");
        // The commands a script runs inside itself are counted too: only those a node sends
        // are its calls.
        let sent = [
            "evalsha", "eval", "xread", "publish", "zcard", "ping", "hello",
        ]
        .contains(&command)
            || ["script|", "config|", "client|", "subscribe"]
                .iter()
                .any(|p| command.starts_with(p));
        if sent {
            all += n;
        }
        if command == "evalsha" || command == "eval" {
            scripts += n;
        }
    }
    (scripts, all)
}

/// The rows as the terminal and `docs/benchmarks.md` show them.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| nodes | flat out: deliveries/s | vs alone | fixed rate: p50 | p99 | p99.9 | nodes' CPU per delivery | Redis's CPU per delivery | scripts per message | Redis calls per message |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let alone = rows.iter().find(|r| r.nodes == 0).map(|r| r.flat.rate());
    for r in rows {
        let (nodes_cpu, redis_cpu) = Row::cpu_us(&r.flat);
        let us = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2} µs"));
        let per = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}"));
        out += &format!(
            "| {} | {:.0} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {} | {} |\n",
            if r.nodes == 0 {
                "1, alone".to_owned()
            } else {
                format!("{} with Redis", r.nodes)
            },
            r.flat.rate(),
            alone.map_or("–".to_owned(), |a| format!("{:.2}×", r.flat.rate() / a)),
            r.fixed.ms(0.5),
            r.fixed.ms(0.99),
            r.fixed.ms(0.999),
            us(nodes_cpu),
            us(redis_cpu),
            per(r.scripts_per_message),
            per(r.commands_per_message),
        );
    }
    out
}
