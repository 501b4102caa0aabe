//! `chat-bench`, the load generator: its flags, and each workload dispatched to the library's
//! `chat_tests::bench` (which starts the servers it measures itself, the release
//! `chat-server`, the tutorial's seed server and the fan-out floor, runs the workload against
//! each in the same invocation, and prints the figures and their ratio: this machine is shared
//! and noisy, so only figures from one run are compared).
//!
//! ```text
//! chat-bench fanout --clients 1000 --senders 10 --messages 300       # vs the seed, TCP
//! chat-bench fanout --wire ws --rate 100 --clients 100 --messages 500
//! chat-bench idle --connections 10000 --wire tcp
//! chat-bench idle --connections 1000 --wire ws --worst-history
//! chat-bench join --clients 10000
//! chat-bench cluster --nodes 1,2,3                                    # several nodes, Redis
//! chat-bench report --out docs                                        # everything, + chart
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chat_tests::bench::results::Report;
use chat_tests::bench::servers::Servers;
use chat_tests::bench::workload::Fanout;
use chat_tests::bench::{chart, json, measure, names, page, terminal};
use chat_tests::load::{self, Wire};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "chat-bench",
    about = "Load generator for chat-server, compared with the seed"
)]
struct Cli {
    /// The chat-server binary to measure.
    #[arg(long, default_value = "target/release/chat-server")]
    server: PathBuf,
    /// The seed's server to compare with; `none` skips it.
    #[arg(long, default_value = "../shared/reference/seed_chat_server.py")]
    seed: String,
    /// Python for the seed.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The fan-out floor (`fanout-floor`: one epoll thread, a write per receiver, nothing
    /// else), measured beside the servers over TCP to show what the machine itself allows;
    /// `none` skips it.
    #[arg(long, default_value = "target/release/fanout-floor")]
    floor: String,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// N clients join, S send M messages each (flat out or at a rate); deliveries per second,
    /// latency, and lost, duplicated or reordered deliveries.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        #[arg(long, default_value_t = 300)]
        messages: u64,
        /// Messages per second per sender; flat out when absent.
        #[arg(long)]
        rate: Option<f64>,
        /// With --rate: all senders send at the same instants (bursts), instead of spread
        /// evenly over the period.
        #[arg(long)]
        aligned: bool,
        /// Flat out: messages of one sender not yet received by everyone, at most.
        #[arg(long, default_value_t = 64)]
        window: u64,
        #[arg(long, value_enum, default_value_t = WireArg::Tcp)]
        wire: WireArg,
        /// The run ends by then, whatever has arrived.
        #[arg(long, default_value_t = 300)]
        time_limit: u64,
    },
    /// N idle joined connections: the server's memory per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, value_enum, default_value_t = WireArg::Tcp)]
        wire: WireArg,
        /// Seconds to keep the connections open after measuring, to look at the server.
        #[arg(long, default_value_t = 0)]
        hold: u64,
        /// Fill the history with its worst case first (50 messages of 4 096 `"`, over 400 kB
        /// of JSON), so that every connection is sent it as it joins; the figure is then what
        /// a connection keeps after that.
        #[arg(long)]
        worst_history: bool,
    },
    /// The time for N clients to join one room (a join storm).
    Join {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, value_enum, default_value_t = WireArg::Tcp)]
        wire: WireArg,
        /// Clients joining at once.
        #[arg(long, default_value_t = 1000)]
        concurrency: usize,
    },
    /// Several nodes, one room: the fan-out on a node alone, then spread round robin over
    /// each count of --nodes sharing the room through a redis-server started for it: flat out
    /// (deliveries/s), then at a fixed rate (latency), with the nodes' and Redis's CPU per
    /// delivery and the Redis commands per public message.
    Cluster {
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3])]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        senders: usize,
        /// Messages per sender, flat out.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Messages per second per sender in the fixed-rate run, for 5 seconds.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, value_enum, default_value_t = WireArg::Tcp)]
        wire: WireArg,
    },
    /// Every workload of docs/benchmarks.md, then the chart of latency against offered load
    /// (SVG) and the results (JSON) into `--out`.
    Report {
        #[arg(long, default_value = "docs")]
        out: PathBuf,
        /// A short version, for a quick look (smaller counts, fewer load points).
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum WireArg {
    Tcp,
    Ws,
}

impl From<WireArg> for Wire {
    fn from(w: WireArg) -> Wire {
        match w {
            WireArg::Tcp => Wire::Line,
            WireArg::Ws => Wire::Json,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limit = load::raise_open_files_limit();
    eprintln!("chat-bench: open files limit {limit}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<(), String> {
    let servers = Servers::new(
        cli.server.clone(),
        (cli.seed != "none").then(|| PathBuf::from(&cli.seed)),
        cli.python.clone(),
        (cli.floor != "none").then(|| PathBuf::from(&cli.floor)),
    )?;
    match &cli.workload {
        &Workload::Fanout {
            clients,
            senders,
            messages,
            rate,
            aligned,
            window,
            wire,
            time_limit,
        } => {
            let spec = Fanout {
                clients,
                senders,
                messages,
                rate,
                aligned,
                window,
                wire: wire.into(),
                time_limit: Duration::from_secs(time_limit),
            };
            let runs = servers.fanout_all(&spec).await?;
            terminal::fanout(&spec, &runs);
        }
        &Workload::Idle {
            connections,
            wire,
            hold,
            worst_history,
        } => {
            let hold = Duration::from_secs(hold);
            let report = servers
                .idle(wire.into(), connections, hold, worst_history)
                .await?;
            terminal::idle(wire.into(), &report);
        }
        &Workload::Join {
            clients,
            wire,
            concurrency,
        } => {
            let report = servers.join(wire.into(), clients, concurrency).await?;
            terminal::join_storm(wire.into(), clients, &report);
        }
        Workload::Cluster {
            nodes,
            clients,
            senders,
            messages,
            rate,
            wire,
        } => {
            let flat = Fanout {
                clients: *clients,
                senders: *senders,
                messages: *messages,
                rate: None,
                aligned: false,
                window: 64,
                wire: (*wire).into(),
                time_limit: Duration::from_secs(300),
            };
            let fixed = Fanout {
                rate: Some(*rate),
                messages: (*rate * 5.0) as u64,
                ..flat.clone()
            };
            let rows = chat_tests::bench::cluster::run(&cli.server, nodes, &flat, &fixed).await?;
            println!("{}", names::workload(&flat));
            println!("{}", names::workload(&fixed));
            print!("{}", chat_tests::bench::cluster::table(&rows));
        }
        Workload::Report { out, quick } => {
            let report = measure::report(&servers, *quick).await?;
            write_report(&report, out)?;
        }
    }
    Ok(())
}

/// `benchmarks.md`, `latency.svg` and `benchmarks.json` into `out`.
fn write_report(report: &Report, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let svg = out.join("latency.svg");
    std::fs::write(&svg, chart::svg(&report.curves)).map_err(|e| e.to_string())?;
    let results = out.join("benchmarks.json");
    let text = serde_json::to_string_pretty(&json::results(report)).map_err(|e| e.to_string())?;
    std::fs::write(&results, text + "\n").map_err(|e| e.to_string())?;
    let md = out.join("benchmarks.md");
    std::fs::write(&md, page::markdown(report)).map_err(|e| e.to_string())?;
    println!(
        "wrote {}, {} and {}",
        md.display(),
        svg.display(),
        results.display()
    );
    Ok(())
}
