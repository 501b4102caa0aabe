//! The servers `chat-bench` measures, started by it and killed when dropped: chat-server (a
//! release build, through the harness's [`ServerCommand`]), the tutorial's seed and the
//! fan-out floor (both speak the seed's protocol on `PORT`); and one workload run on each.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::names;
use super::results::Runs;
use super::terminal;
use super::workload::{self, Endpoint, Fanout, FanoutReport, Flavor, IdleReport};
use crate::load::{Target, Wire};
use crate::server::{Server, ServerCommand};

/// The flags chat-server is measured with: room for every client, and nothing that would
/// drop one (flood control, the idle timeout, a queue smaller than a burst).
pub(crate) const OURS_FLAGS: [&str; 8] = [
    "--max-users",
    "20000",
    "--flood",
    "off",
    "--idle-timeout",
    "0",
    "--max-queue",
    "16777216",
];

/// What to measure.
pub struct Servers {
    /// The chat-server binary.
    ours: PathBuf,
    /// The seed's Python file, when it is measured.
    seed: Option<PathBuf>,
    /// The Python that runs it.
    python: String,
    /// The `fanout-floor` binary, when it is measured.
    floor: Option<PathBuf>,
}

/// A server being measured; killed when dropped.
pub struct Running {
    /// Where it listens, what it speaks, its process.
    pub endpoint: Endpoint,
    /// chat-server, which kills itself when dropped.
    _ours: Option<Server>,
    /// The seed or the floor.
    other: Option<Child>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.other {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Servers {
    /// chat-server at `ours`, and the seed and the floor where given; fails if one of those
    /// is not there.
    pub fn new(
        ours: PathBuf,
        seed: Option<PathBuf>,
        python: String,
        floor: Option<PathBuf>,
    ) -> Result<Servers, String> {
        if let Some(seed) = &seed
            && !seed.exists()
        {
            return Err(format!(
                "no seed server at {} (use --seed none)",
                seed.display()
            ));
        }
        if let Some(floor) = &floor
            && !floor.exists()
        {
            return Err(format!(
                "no fan-out floor at {} (build it: cargo build --release -p chat-tests --bin \
                     fanout-floor; or use --floor none)",
                floor.display()
            ));
        }
        Ok(Servers {
            ours,
            seed,
            python,
            floor,
        })
    }

    /// The chat-server binary measured.
    pub fn ours(&self) -> &std::path::Path {
        &self.ours
    }

    async fn start_ours(&self) -> Result<Running, String> {
        let server = ServerCommand::of(&self.ours)
            .args(OURS_FLAGS)
            .log("warn")
            .try_start()
            .await
            .map_err(|e| {
                format!(
                    "cannot start chat-server: {e} (build it: cargo build --release -p chat-server)"
                )
            })?;
        Ok(Running {
            endpoint: Endpoint {
                target: Target {
                    tcp: server.tcp,
                    http: server.http,
                },
                flavor: Flavor::Ours,
                pid: Some(server.pid()),
            },
            _ours: Some(server),
            other: None,
        })
    }

    /// The seed, or the floor.
    fn start_other(&self, flavor: Flavor) -> Result<Running, String> {
        let command = match (flavor, &self.seed, &self.floor) {
            (Flavor::Seed, Some(seed), _) => {
                let mut python = Command::new(&self.python);
                python.arg(seed);
                python
            }
            (Flavor::Floor, _, Some(floor)) => Command::new(floor),
            _ => return Err(format!("no {} to run", names::flavor(flavor))),
        };
        start_seed_protocol(command, flavor)
    }

    /// Runs `spec` on the server of `flavor`, started for it.
    pub async fn fanout_one(&self, spec: &Fanout, flavor: Flavor) -> Result<FanoutReport, String> {
        let running = match flavor {
            Flavor::Ours => self.start_ours().await?,
            Flavor::Seed | Flavor::Floor => self.start_other(flavor)?,
        };
        let who = names::flavor(flavor);
        let report = workload::fanout(running.endpoint, spec, terminal::progress(who))
            .await
            .map_err(|e| format!("{who}: {e}"))?;
        terminal::progress_done();
        Ok(report)
    }

    /// The servers a workload on `wire` runs against: ours, then (over TCP) the floor and
    /// the seed, those that are there.
    pub fn flavors(&self, wire: Wire) -> Vec<Flavor> {
        let mut flavors = vec![Flavor::Ours];
        if wire == Wire::Line {
            if self.floor.is_some() {
                flavors.push(Flavor::Floor);
            }
            if self.seed.is_some() {
                flavors.push(Flavor::Seed);
            }
        }
        flavors
    }

    /// Runs `spec` on each of [`Servers::flavors`], one after the other.
    pub async fn fanout_all(&self, spec: &Fanout) -> Result<Runs, String> {
        let mut runs = Vec::new();
        for flavor in self.flavors(spec.wire) {
            runs.push((flavor, self.fanout_one(spec, flavor).await?));
        }
        Ok(runs)
    }

    /// `connections` idle joined connections over `wire` on a fresh chat-server, held for
    /// `hold` after measuring; with `worst_history`, each joined after the history was filled
    /// with its worst case.
    pub async fn idle(
        &self,
        wire: Wire,
        connections: usize,
        hold: Duration,
        worst_history: bool,
    ) -> Result<IdleReport, String> {
        // The HTTP listener serves 256 connections at once and puts out handshakes waiting
        // beyond that (the door's lobby): WebSocket clients connect 200 at a time.
        let concurrency = if wire == Wire::Json { 200 } else { 500 };
        self.idle_with(wire, connections, concurrency, hold, worst_history)
            .await
    }

    /// A join storm: `clients` over `wire`, `concurrency` at a time, on a fresh chat-server.
    pub async fn join(
        &self,
        wire: Wire,
        clients: usize,
        concurrency: usize,
    ) -> Result<IdleReport, String> {
        self.idle_with(wire, clients, concurrency, Duration::ZERO, false)
            .await
    }

    async fn idle_with(
        &self,
        wire: Wire,
        count: usize,
        concurrency: usize,
        hold: Duration,
        worst_history: bool,
    ) -> Result<IdleReport, String> {
        let running = self.start_ours().await?;
        let pid = running.endpoint.pid.ok_or("chat-server's process id")?;
        workload::idle(
            running.endpoint,
            pid,
            wire,
            count,
            concurrency,
            Duration::from_secs(300),
            hold,
            worst_history,
        )
        .await
        .map_err(|e| e.to_string())
    }
}

/// Starts `command`, a server of the seed's protocol (the seed, the floor) of `flavor`, on a
/// free `PORT`, and waits until it listens, at most 10 s.
pub fn start_seed_protocol(mut command: Command, flavor: Flavor) -> Result<Running, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = command
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        // The seed prints every message; nobody reads it.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the {}: {e}", names::flavor(flavor)))?;
    // Killed when dropped from here on, also if it does not come up.
    let running = Running {
        endpoint: Endpoint {
            target: Target {
                tcp: addr,
                http: addr,
            },
            flavor,
            pid: Some(child.id()),
        },
        _ours: None,
        other: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "the {} did not start listening",
                names::flavor(flavor)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(running)
}
