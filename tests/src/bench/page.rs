//! `docs/benchmarks.md` from a [`Report`]: how the figures were taken, a table per fan-out
//! workload, what bounds latency on this machine, the idle memory, the join storm, the latency
//! curve's points, the browser client's size and the targets, met or not.

use std::time::Duration;

use super::names;
use super::results::{Report, Runs, clean, find, seed_ratio};
use super::workload::{FanoutReport, Flavor};
use crate::load::Wire;

/// The page for `report`.
pub fn markdown(report: &Report) -> String {
    let mut md = Page::default();

    let throughput = &report.throughput;
    md.section("Fan-out throughput", &names::workload(&throughput.spec));
    md.fanout_table(&throughput.runs);
    let throughput_ratio = seed_ratio(&throughput.runs);
    if let Some(ratio) = throughput_ratio {
        md.line(&format!(
            "chat-server moved **{ratio:.1}×** the seed's deliveries per second."
        ));
    }

    for fixed in [&report.fixed_tcp, &report.fixed_ws] {
        md.section(
            &format!("Latency at a fixed load, {}", names::wire(fixed.spec.wire)),
            &names::workload(&fixed.spec),
        );
        md.fanout_table(&fixed.runs);
    }

    md.section(
        "One relay, nearly idle",
        &format!(
            "{}: a single hop through the server, one message every 10 ms.",
            names::workload(&report.relay.spec)
        ),
    );
    md.fanout_table(&report.relay.runs);
    bound(&mut md, &report.fixed_tcp.runs, &report.relay.runs);

    md.section(
        "Idle memory",
        "Joined connections that say nothing; the server's resident memory (VmRSS) before and \
         after, each wire on a fresh server.",
    );
    md.line("| wire | connections | RSS before | RSS after | per connection |");
    md.line("| --- | ---: | ---: | ---: | ---: |");
    for (wire, r) in [
        (Wire::Line, &report.idle_tcp),
        (Wire::Json, &report.idle_ws),
    ] {
        md.line(&format!(
            "| {} | {} | {} KiB | {} KiB | {:.1} KiB |",
            names::wire(wire),
            r.connections,
            r.rss_before,
            r.rss_after,
            r.per_connection()
        ));
    }

    let storm = report.join_storm;
    md.section(
        "Join storm",
        &format!(
            "{} TCP clients connect and join one room, 1000 at a time: all joined in \
             **{:.2} s** ({:.0} joins a second).",
            storm.clients,
            storm.time.as_secs_f64(),
            storm.clients as f64 / storm.time.as_secs_f64()
        ),
    );

    md.section(
        "Latency against offered load",
        "100 clients, 10 senders at a fixed rate each, over TCP; the offered load is the \
         deliveries a second that rate asks for (rate × 10 senders × 99 receivers). A curve \
         stops where its server saturates (p99 over a second, or the run's time limit).",
    );
    md.line("![Latency against offered load](latency.svg)");
    md.line("");
    md.line("| server | offered/s | delivered/s | p50 ms | p99 ms | lost |");
    md.line("| --- | ---: | ---: | ---: | ---: | ---: |");
    for curve in &report.curves {
        for p in &curve.points {
            md.line(&format!(
                "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {} |",
                names::curve(curve),
                p.offered,
                p.delivered,
                p.p50,
                p.p99,
                p.lost
            ));
        }
    }

    cluster_section(&mut md, report);

    md.section("The browser client", "");
    match report.wasm {
        Some(wasm) => md.line(&format!(
            "`chat_web_bg.wasm`: {} bytes, {} bytes gzip-compressed (as served to browsers \
             that accept gzip).",
            wasm.raw, wasm.gzip
        )),
        None => md.line("Not built: run `cargo xtask site` first."),
    }

    targets(&mut md, report, throughput_ratio);
    md.render(report.quick, report.took, &report.machine)
}

/// Several nodes, one room: the table of `chat-bench cluster`, and what it says.
fn cluster_section(md: &mut Page, report: &Report) {
    let Some(first) = report.cluster.first() else {
        return;
    };
    md.section(
        "Several nodes, one room",
        &format!(
            "The same room on a node alone, then on 1, 2 and 3 `chat-server` processes sharing              it through one `redis-server` (`--redis`), clients and senders spread over the              nodes round robin, so that most deliveries cross nodes; fresh servers and a fresh              Redis for each run. Flat out: {}. Fixed load: {}. CPU per delivery is the nodes'              together, and Redis's apart, from `/proc`; Redis calls per public message are              those the nodes sent (from `INFO commandstats`, beats, reaps and the log's reads              included, not the commands a script runs inside itself).",
            names::workload_short(&first.flat),
            names::workload_short(&first.fixed),
        ),
    );
    md.body += &super::cluster::table(&report.cluster);
    let row = |n: usize| report.cluster.iter().find(|r| r.nodes == n);
    if let (Some(alone), Some(one)) = (row(0), row(1)) {
        md.line("");
        md.line(&format!(
            "What a node pays for the room being shared: every public message waits for one \
             script's answer from Redis and for each node's reader to be woken with it, so \
             that all nodes show one order; a second process (Redis) and, with more nodes, \
             more processes share the same two cores with the load generator. At the fixed \
             load a node alone had p99 {:.2} ms in this run and one node through Redis {:.2} \
             ms: the extra hop is what the p99 target of 2 ms is missed by, on top of what \
             this machine allows any server (see \"What bounds latency here\"). The Redis \
             calls per message stay near one script and a fraction of a read per node: a \
             read takes every entry waiting.",
            alone.fixed.ms(0.99),
            one.fixed.ms(0.99),
        ));
    }
}

/// The targets, met or not.
fn targets(md: &mut Page, report: &Report, throughput_ratio: Option<f64>) {
    let throughput_clean = clean(&report.throughput.runs[0].1);
    let (tcp, ws) = (&report.fixed_tcp.runs[0].1, &report.fixed_ws.runs[0].1);
    let floor_said = find(&report.fixed_tcp.runs, Flavor::Floor).map_or(String::new(), |f| {
        format!(
            " (the floor in the same run: p99 {:.2} ms, p99.9 {:.2} ms)",
            f.ms(0.99),
            f.ms(0.999)
        )
    });
    let idle_per_conn = [
        report.idle_tcp.per_connection(),
        report.idle_ws.per_connection(),
    ];
    let join_seconds = report.join_storm.time.as_secs_f64();
    md.section("Targets", "");
    md.line("| target | measured | met |");
    md.line("| --- | --- | --- |");
    let mut target = |what: &str, measured: String, met: bool| {
        md.line(&format!(
            "| {what} | {measured} | {} |",
            if met { "yes" } else { "**no**" }
        ));
    };
    if let Some(ratio) = throughput_ratio {
        target(
            "fan-out over TCP, 1000 clients, 10 senders flat out: ≥ 15× the seed, nothing lost, \
             duplicated or reordered",
            format!(
                "{ratio:.1}×, {}",
                if throughput_clean { "clean" } else { "losses" }
            ),
            ratio >= 15.0 && throughput_clean,
        );
    }
    target(
        "TCP at 100 clients, 10 × 100 msg/s: p99 ≤ 1 ms, p99.9 ≤ 3 ms",
        format!(
            "p99 {:.2} ms, p99.9 {:.2} ms{floor_said}",
            tcp.ms(0.99),
            tcp.ms(0.999)
        ),
        tcp.ms(0.99) <= 1.0 && tcp.ms(0.999) <= 3.0,
    );
    target(
        "WebSocket at the same load: at most 1.5× the TCP figures",
        format!(
            "p99 {:.2} ms ({:.2}×), p99.9 {:.2} ms ({:.2}×)",
            ws.ms(0.99),
            ws.ms(0.99) / tcp.ms(0.99).max(1e-9),
            ws.ms(0.999),
            ws.ms(0.999) / tcp.ms(0.999).max(1e-9)
        ),
        ws.ms(0.99) <= 1.5 * tcp.ms(0.99) && ws.ms(0.999) <= 1.5 * tcp.ms(0.999),
    );
    target(
        "idle memory at 10,000 connections: ≤ 8 KiB per TCP connection",
        format!("{:.1} KiB", idle_per_conn[0]),
        idle_per_conn[0] <= 8.0,
    );
    target(
        "idle memory at 10,000 connections: ≤ 16 KiB per WebSocket connection",
        format!("{:.1} KiB", idle_per_conn[1]),
        idle_per_conn[1] <= 16.0,
    );
    target(
        "a join storm of 10,000 clients completes",
        format!("{join_seconds:.2} s"),
        true,
    );
    let row = |n: usize| report.cluster.iter().find(|r| r.nodes == n);
    if let (Some(alone), Some(one), Some(three)) = (row(0), row(1), row(3)) {
        let ratio = one.flat.rate() / alone.flat.rate().max(1e-9);
        target(
            "one node with --redis: at least half the deliveries/s of a node alone, flat out",
            format!("{ratio:.2}×"),
            ratio >= 0.5,
        );
        target(
            "3 nodes through Redis, 100 clients, 10 × 100 msg/s: p99 ≤ 2 ms",
            format!(
                "p99 {:.2} ms (a node alone in the same run: {:.2} ms)",
                three.fixed.ms(0.99),
                alone.fixed.ms(0.99)
            ),
            three.fixed.ms(0.99) <= 2.0,
        );
        let cpu = |r: &super::cluster::Row| {
            let (nodes, redis) = super::cluster::Row::cpu_us(&r.flat);
            nodes.unwrap_or(0.0) + redis.unwrap_or(0.0)
        };
        let cpu_ratio = cpu(three) / cpu(one).max(1e-9);
        target(
            "CPU per delivery (nodes and Redis) at 3 nodes: at most 1.5× that at 1 node",
            format!(
                "{:.2} µs against {:.2} µs: {cpu_ratio:.2}×",
                cpu(three),
                cpu(one)
            ),
            cpu_ratio <= 1.5,
        );
        let scripts = three.scripts_per_message.unwrap_or(f64::NAN);
        target(
            "one script call per public message, reads amortised",
            format!(
                "{scripts:.2} scripts and {:.2} Redis calls per message at 3 nodes",
                three.commands_per_message.unwrap_or(f64::NAN)
            ),
            scripts <= 1.1,
        );
    }
}

/// "What bounds latency here": the fixed-load TCP runs and the one-relay runs, read together.
fn bound(md: &mut Page, fixed: &Runs, relay: &Runs) {
    let ours = &fixed[0].1;
    let c = &ours.conditions;
    md.section(
        "What bounds latency here",
        "The latency target (TCP p99 ≤ 1 ms and p99.9 ≤ 3 ms at 100 clients, 10 senders × 100 \
         msg/s) is for this machine with the load generator on it. These figures, from this \
         run, say what the machine itself allows:",
    );
    md.line(&format!(
        "- **Waiting for a core.** While chat-server carried that load, a thread of the load \
         generator that does nothing but sleep 1 ms at a time woke up late by {:.2} ms at p99 \
         and {:.2} ms at p99.9. Every thread woken to pass a message on (the server's, then \
         the receiving client's) can wait like that. The two cores were idle {:.0}% of the \
         time, and the hypervisor gave {:.0}% of it to other guests (steal).",
        c.late_ms(0.99),
        c.late_ms(0.999),
        c.idle,
        c.steal
    ));
    if let Some((us, kernel)) = ours.cpu_per_delivery() {
        let floor = find(fixed, Flavor::Floor)
            .and_then(FanoutReport::cpu_per_delivery)
            .map_or(String::new(), |(us, kernel)| {
                format!(
                    "; the floor below, which does nothing but relay, {us:.1} µs ({:.0}% in the \
                     kernel)",
                    kernel * 100.0
                )
            });
        md.line(&format!(
            "- **The cost of a delivery.** chat-server spent {us:.1} µs of CPU per delivery, \
             {:.0}% of it in the kernel{floor}. A TCP send over loopback also runs the \
             receiver's side of TCP and wakes the reading thread, in the sender's time. At {:.0} \
             deliveries a second that is {:.0}% of one core for the server alone, while the \
             load generator reads the same deliveries on the same two cores.",
            kernel * 100.0,
            ours.rate(),
            us * ours.rate() / 1e4
        ));
    }
    if let Some(floor) = find(fixed, Flavor::Floor) {
        md.line(&format!(
            "- **The floor.** `fanout-floor` (`tests/src/bin/fanout-floor.rs`) only relays: one \
             thread waits on epoll, reads a line and writes it to the 99 others itself, one \
             `write` each; no runtime, tasks, queues, flood control or log. At the fixed load it \
             had p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, against chat-server's p50 {:.2} ms, \
             p99 {:.2} ms, p99.9 {:.2} ms. It does every write of every message in turn on one \
             core, where chat-server's connection tasks write on both.",
            floor.ms(0.5),
            floor.ms(0.99),
            floor.ms(0.999),
            ours.ms(0.5),
            ours.ms(0.99),
            ours.ms(0.999)
        ));
    }
    if let (Some(one), Some(floor)) = (find(relay, Flavor::Ours), find(relay, Flavor::Floor)) {
        md.line(&format!(
            "- **One relay.** A single hop on a nearly idle machine (the table above): \
             chat-server p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms; the floor p50 {:.2} ms, \
             p99 {:.2} ms, p99.9 {:.2} ms.",
            one.ms(0.5),
            one.ms(0.99),
            one.ms(0.999),
            floor.ms(0.5),
            floor.ms(0.99),
            floor.ms(0.999)
        ));
    }
    md.line("");
    md.line(&if c.late_ms(0.99) > 1.0 {
        format!(
            "In this run the machine's own p99 wake-up delay ({:.2} ms) was above the 1 ms \
             target before any message was passed on: the target is below what this machine \
             gives any server at this load.",
            c.late_ms(0.99)
        )
    } else {
        format!(
            "In this run the machine's own p99 wake-up delay ({:.2} ms) was within the 1 ms \
             target.",
            c.late_ms(0.99)
        )
    });
}

/// The page, built up section by section.
#[derive(Default)]
struct Page {
    body: String,
}

impl Page {
    fn section(&mut self, title: &str, intro: &str) {
        self.body += &format!("\n## {title}\n\n");
        if !intro.is_empty() {
            self.body += intro;
            self.body += "\n\n";
        }
    }

    fn line(&mut self, line: &str) {
        self.body += line;
        self.body += "\n";
    }

    fn fanout_table(&mut self, runs: &Runs) {
        self.line(
            "| server | deliveries | seconds | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms \
             | lost | duplicated | reordered | server CPU per delivery | sleeper late p99 ms | \
             steal |",
        );
        self.line(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: \
             | ---: | ---: |",
        );
        for (flavor, r) in runs {
            self.line(&format!(
                "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | \
                 {:.2} | {:.0}% |",
                names::flavor(*flavor),
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
                names::cpu(r),
                r.conditions.late_ms(0.99),
                r.conditions.steal
            ));
        }
        self.line("");
    }

    /// The whole page: what the figures are and how they were taken, then the sections.
    fn render(&self, quick: bool, took: Duration, machine: &str) -> String {
        format!(
            "# Benchmarks\n\n\
             Every figure on this page comes from one run of `cargo xtask bench` (which builds \
             the release server, the page, `chat-bench` and `fanout-floor`, then runs \
             `chat-bench report --out docs`{quick}), finished in {:.0} s. The page, the chart (`latency.svg`) and the raw \
             figures (`benchmarks.json`) are written by that run: run it again to reproduce them \
             on your machine.\n\n\
             The seed is the Python asyncio tutorial's chat server \
             (`../shared/reference/seed_chat_server.py`), measured in the same run with the \
             same workload over TCP, because this machine is shared and noisy: only figures \
             from one run are compared. The load generator runs on the same machine as the \
             server it measures, so both share its cores. The floor is `fanout-floor` \
             (`tests/src/bin/fanout-floor.rs`), a relay that does nothing but read a line and \
             write it to every other client from one epoll thread: the least work a server can \
             do per message, measured the same way.\n\n\
             **The last three columns** say what the machine was doing while each server was \
             measured: the server's CPU time per delivery (user and system, from \
             `/proc/PID/stat`, with the kernel's share), how late a thread of the load generator \
             that only sleeps 1 ms at a time woke up (p99), and the CPU time the hypervisor gave \
             to other guests (steal, from `/proc/stat`).\n\n\
             **Machine:** {}\n\n\
             **How latency is measured:** every message carries the time it was sent (one clock, \
             the load generator's); each receiver takes the difference when the message arrives, \
             so a delivery's latency includes the sender's write, the server, the receiver's read \
             and both sides' scheduling on the shared cores. Deliveries count each message once \
             per receiver; a message missing, repeated or out of its sender's order at any \
             receiver is counted as lost, duplicated or reordered.\n{}",
            took.as_secs_f64(),
            machine,
            self.body,
            quick = if quick { " --quick" } else { "" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::sample;

    /// The lines that give a page its shape: headings, table heads, the chart, the targets.
    fn shape(page: &str) -> Vec<&str> {
        page.lines()
            .filter(|l| {
                l.starts_with('#')
                    || l.starts_with("| server |")
                    || l.starts_with("| wire |")
                    || l.starts_with("| target |")
                    || l.starts_with("| ---")
                    || l.starts_with("![")
            })
            .collect()
    }

    #[test]
    fn the_page_has_the_sections_and_columns_of_the_committed_one() {
        let committed = include_str!("../../../docs/benchmarks.md");
        let page = markdown(&sample());
        assert_eq!(shape(&page), shape(committed), "{page}");
        let targets = |page: &str| {
            let table = page
                .split("## Targets")
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            table.lines().filter(|l| l.starts_with("| ")).count()
        };
        assert_eq!(targets(&page), targets(committed));
        assert!(page.contains("chat-server moved **"), "{page}");
        assert!(page.contains("**Machine:** a test machine\n"), "{page}");
    }

    #[test]
    fn each_server_has_a_row_in_each_table_it_ran_in() {
        let page = markdown(&sample());
        let section = |title: &str| {
            let start = page.find(&format!("## {title}\n")).expect(title);
            let rest = &page[start + 3..];
            rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
        };
        let rows = |text: &str, server: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("| {server} |")))
                .count()
        };
        let throughput = section("Fan-out throughput");
        for server in ["chat-server", "floor", "seed"] {
            assert_eq!(rows(&throughput, server), 1, "{throughput}");
        }
        let ws = section("Latency at a fixed load, WebSocket");
        assert_eq!(
            (rows(&ws, "chat-server"), rows(&ws, "seed")),
            (1, 0),
            "{ws}"
        );
        let curve = section("Latency against offered load");
        assert_eq!(
            (
                rows(&curve, "chat-server"),
                rows(&curve, "floor"),
                rows(&curve, "seed")
            ),
            (2, 2, 1),
            "{curve}"
        );
    }
}
