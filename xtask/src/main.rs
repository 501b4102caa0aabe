//! `cargo xtask`: the project's everyday commands, with nothing but cargo needed.
//!
//! - `cargo xtask run [-- SERVER FLAGS]`: builds the browser client's site and the server in
//!   release mode and starts it with its defaults (nc on 127.0.0.1:8888, the page on
//!   http://127.0.0.1:8080).
//! - `cargo xtask test`: installs what the tests need when it is missing, then checks
//!   formatting, lints, the core's wasm build and dependency tree, builds the site, and runs
//!   every test.
//! - `cargo xtask site`: builds the browser client into `target/site/` (the page of `www/`,
//!   the wasm module and its wasm-bindgen glue), installing the wasm-bindgen CLI of the
//!   version in `Cargo.lock` if it is missing.
//! - `cargo xtask fuzz [TARGET] [--time SECS]`: runs the fuzz targets of `fuzz/` (every one
//!   by default, 60 s each) with cargo-fuzz, installing it if it is missing, on the stable
//!   toolchain; prints each run's figures and any input that crashed.
//! - `cargo xtask bench [-- CHAT-BENCH ARGS]`: builds the release server and the load
//!   generator, and measures (by default everything of `docs/benchmarks.md`).
//! - `cargo xtask cluster [N] [-- SERVER FLAGS]`: builds like `run`, starts a Redis of its own
//!   on a free port (never 6379) and N servers (default 3) sharing one room through it, nc on
//!   127.0.0.1:8888, 8889, ... and the page on http://127.0.0.1:8080, 8081, ...; Ctrl-C, or any
//!   of them exiting, stops them all.

use std::env;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Crates that would mean native I/O slipped into the sans-IO core.
const FORBIDDEN_IN_CORE: &[&str] = &["tokio", "mio", "socket2", "getrandom"];
const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// The cargo profile of the browser client (small before fast; see the workspace manifest).
const WASM_PROFILE: &str = "wasm-release";
/// The variable that tells the server (and the end-to-end tests) where the site is.
const WEB_ROOT_VAR: &str = "CHAT_WEB_ROOT";
/// The fuzz targets of `fuzz/fuzz_targets/`.
const FUZZ_TARGETS: &[&str] = &["line_decoder", "json_decoder", "room"];
/// Seconds each target runs when `--time` is not given.
const FUZZ_SECONDS: u64 = 60;
/// Nodes `cargo xtask cluster` starts when not told how many, and the most it starts.
const CLUSTER_NODES: usize = 3;
const CLUSTER_MAX_NODES: usize = 100;
/// The first node's line and HTTP ports, the defaults of `cargo xtask run`; node i adds i.
const CLUSTER_TCP_PORT: u16 = 8888;
const CLUSTER_HTTP_PORT: u16 = 8080;
/// Redis's usual port, which a system service may hold: the cluster's own Redis never takes it.
const REDIS_DEFAULT_PORT: u16 = 6379;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") | Some("ci") => test(),
        Some("site") => site().map(drop),
        Some("fuzz") => fuzz(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("cluster") => cluster(&args[1..]),
        _ => {
            eprintln!(
                "usage:\n  cargo xtask run [-- SERVER FLAGS]   build the site and start the server\n  \
                 cargo xtask test                    install what is missing, run every check and test\n  \
                 cargo xtask site                    build the browser client into target/site\n  \
                 cargo xtask fuzz [TARGET] [--time SECS]\n                                      \
                 fuzz TARGET ({}; default: each) for SECS (default {FUZZ_SECONDS}) each\n  \
                 cargo xtask bench [-- CHAT-BENCH ARGS]\n                                      \
                 build, then measure against the seed (default: `report --out docs`)\n  \
                 cargo xtask cluster [N] [-- SERVER FLAGS]\n                                      \
                 build, then start a Redis and N servers (default {CLUSTER_NODES}) as one room",
                FUZZ_TARGETS.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(server_args: &[String]) -> Result {
    let server_args = after_dashes(server_args);
    let (site, binary) = site_and_release_server()?;
    step(&format!("starting {}", binary.display()));
    // The server says where it listens (its flags may have moved it from the defaults).
    eprintln!("stop the server with Ctrl-C");
    let mut server = Command::new(&binary);
    // Through the environment, so that a `--web-root` among the user's flags still wins.
    server.env(WEB_ROOT_VAR, &site).args(server_args);
    // Become the server, so that Ctrl-C reaches it alone and the shell waits for its
    // graceful shutdown.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = server.exec();
        Err(format!("cannot start {}: {err}", binary.display()))
    }
    #[cfg(not(unix))]
    {
        let status = server
            .status()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        check(
            status.success(),
            &format!("chat-server exited with {status}"),
        )
    }
}

/// The arguments after a leading `--`, or all of them.
fn after_dashes(args: &[String]) -> &[String] {
    match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    }
}

/// What `run` and `cluster` start: the site (built) and the release server (built), as the
/// site's absolute path and the server's binary.
fn site_and_release_server() -> Result<(PathBuf, PathBuf)> {
    let site = site()?;
    step("server");
    cargo(&["build", "--release", "-p", "chat-server"])?;
    Ok((site, target_dir().join("release").join("chat-server")))
}

/// `cargo xtask cluster [N] [-- SERVER FLAGS]`: a Redis of its own and N servers sharing one
/// room through it, on the addresses of `run` counted up (node i: line port 8888 + i, HTTP
/// port 8080 + i), each with the flags given after `--`. Runs until Ctrl-C (or SIGTERM, or
/// SIGHUP), or until any of the processes exits; then stops the servers gracefully (SIGTERM;
/// SIGKILL for one still there after 10 s) and then Redis, each by its pid.
fn cluster(args: &[String]) -> Result {
    let (nodes, server_args) = match args.first().map(String::as_str) {
        None | Some("--") => (CLUSTER_NODES, after_dashes(args)),
        Some(n) => {
            let nodes = n
                .parse()
                .ok()
                .filter(|n| (1..=CLUSTER_MAX_NODES).contains(n))
                .ok_or(format!(
                    "cluster {n}: the number of nodes is 1 to {CLUSTER_MAX_NODES} \
                     (usage: cargo xtask cluster [N] [-- SERVER FLAGS])"
                ))?;
            (nodes, after_dashes(&args[1..]))
        }
    };
    step("prerequisites");
    ensure_debian_packages(&[REDIS_TOOL], "`cargo xtask cluster` needs redis-server")?;
    let (site, binary) = site_and_release_server()?;
    // From here on Ctrl-C stops the processes in order instead of ending xtask at once. (The
    // terminal sends it to the servers too, being in the same process group; they stop
    // gracefully, and xtask waits for them before it stops Redis.)
    catch_stop_signals();

    let mut cluster = Cluster::default();
    let (redis_url, redis_port) = cluster.start_redis()?;
    step(&format!(
        "{nodes} node{} on {redis_url}",
        if nodes == 1 { "" } else { "s" }
    ));
    let (tx, rx) = mpsc::channel();
    for i in 0..nodes {
        let name = format!("node-{}", i + 1);
        let mut command = Command::new(&binary);
        command
            .env(WEB_ROOT_VAR, &site)
            .arg("--redis")
            .arg(&redis_url)
            .arg("--tcp")
            .arg(format!("127.0.0.1:{}", CLUSTER_TCP_PORT + i as u16))
            .arg("--http")
            .arg(format!("127.0.0.1:{}", CLUSTER_HTTP_PORT + i as u16))
            .arg("--node-id")
            .arg(&name)
            .args(server_args);
        cluster.start_node(i, &name, command, &tx)?;
    }
    drop(tx);

    // Each node prints its two addresses once it is in the room (or, after 5 s without
    // Redis, alone). (A `--tcp`, `--http` or `--node-id` among the flags given is one too
    // many: that node exits at once saying so, and everything stops.)
    let mut addresses = vec![(None, None); nodes];
    let deadline = Instant::now() + Duration::from_secs(30);
    while addresses
        .iter()
        .any(|(tcp, http)| tcp.is_none() || http.is_none())
    {
        if let Some(stop) = cluster.stopped() {
            return cluster.stop(stop);
        }
        if Instant::now() >= deadline {
            return cluster.stop(Err(
                "a node did not print its addresses within 30 s".to_owned()
            ));
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Listening { node, http, addr }) => {
                let slot = &mut addresses[node];
                if http {
                    slot.1 = Some(addr);
                } else {
                    slot.0 = Some(addr);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
        }
    }
    let tls = server_args.iter().any(|a| a.starts_with("--tls-cert"));
    println!();
    for (i, (tcp, http)) in addresses.iter().enumerate() {
        let (tcp, http) = (
            tcp.as_deref().unwrap_or("?"),
            http.as_deref().unwrap_or("?"),
        );
        let line = if tls {
            format!("openssl s_client -quiet -connect {tcp}")
        } else {
            match tcp.rsplit_once(':') {
                Some((host, port)) => {
                    format!(
                        "nc {} {port}",
                        host.trim_start_matches('[').trim_end_matches(']')
                    )
                }
                None => format!("nc {tcp}"),
            }
        };
        let scheme = if tls { "https" } else { "http" };
        // The pid, to pause a node (`kill -STOP`) and let it go on (`kill -CONT`).
        let pid = cluster.nodes[i].1.id();
        println!("node-{}: {line}    {scheme}://{http}    pid {pid}", i + 1);
    }
    let redis_pid = cluster.redis.as_ref().map_or(0, Child::id);
    println!("redis: {redis_url}    redis-cli -p {redis_port}    pid {redis_pid}");
    println!("Ctrl-C stops everything");
    loop {
        if let Some(stop) = cluster.stopped() {
            return cluster.stop(stop);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node's listener, as it printed it: `tcp listening on ADDR` or `http listening on ADDR`.
struct Listening {
    node: usize,
    http: bool,
    addr: String,
}

/// The processes of `cargo xtask cluster`: Redis and the nodes. Dropping it kills any still
/// running, so that no early return leaves one behind.
#[derive(Default)]
struct Cluster {
    redis: Option<Child>,
    nodes: Vec<(String, Child)>,
}

impl Cluster {
    /// Starts `redis-server` on a free port other than 6379 and waits until it answers PING;
    /// its URL and port.
    fn start_redis(&mut self) -> Result<(String, u16)> {
        step("redis");
        for _attempt in 0..3 {
            let port = free_port_but(REDIS_DEFAULT_PORT)?;
            let mut command = Command::new(REDIS_SERVER);
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--loglevel", "warning"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            // A process group of its own, so that the terminal's Ctrl-C reaches only the
            // nodes: they leave the room through Redis, and then xtask stops it.
            #[cfg(unix)]
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let mut child = command
                .spawn()
                .map_err(|e| format!("cannot start {REDIS_SERVER}: {e}"))?;
            echo_lines("[redis] ", child.stdout.take(), |_| {});
            echo_lines("[redis] ", child.stderr.take(), |_| {});
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    // Another program may have taken the port meanwhile: another one.
                    eprintln!("redis-server on port {port} exited with {status}");
                    break;
                }
                if redis_pings(port) {
                    self.redis = Some(child);
                    return Ok((format!("redis://127.0.0.1:{port}/0"), port));
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "redis-server on port {port} did not answer PING in 10 s"
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err("redis-server did not start (three ports tried)".to_owned())
    }

    /// Starts node `index` from `command`, its output echoed with its name in front, and its
    /// address lines sent to `tx`.
    fn start_node(
        &mut self,
        index: usize,
        name: &str,
        mut command: Command,
        tx: &mpsc::Sender<Listening>,
    ) -> Result {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let tx = tx.clone();
        echo_lines(&format!("[{name}] "), child.stdout.take(), move |line| {
            for (prefix, http) in [("tcp listening on ", false), ("http listening on ", true)] {
                if let Some(addr) = line.strip_prefix(prefix) {
                    let _ = tx.send(Listening {
                        node: index,
                        http,
                        addr: addr.trim().to_owned(),
                    });
                }
            }
        });
        echo_lines(&format!("[{name}] "), child.stderr.take(), |_| {});
        self.nodes.push((name.to_owned(), child));
        Ok(())
    }

    /// Why everything should stop now, if it should: a signal (`Ok`), or a process that
    /// exited (`Err`, saying which).
    fn stopped(&mut self) -> Option<Result> {
        if STOP_SIGNAL.load(Ordering::SeqCst) {
            eprintln!("\nstopping the nodes, then Redis");
            return Some(Ok(()));
        }
        for (name, child) in &mut self.nodes {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(format!(
                    "{name} exited with {status}; the other nodes and Redis were stopped"
                )));
            }
        }
        if let Some(Ok(Some(status))) = self.redis.as_mut().map(Child::try_wait) {
            return Some(Err(format!(
                "redis-server exited with {status}; the nodes were stopped"
            )));
        }
        None
    }

    /// Stops the nodes gracefully, then Redis; returns `outcome`.
    fn stop(&mut self, outcome: Result) -> Result {
        let nodes: Vec<&mut Child> = self.nodes.iter_mut().map(|(_, c)| c).collect();
        stop_processes(nodes, Duration::from_secs(10));
        stop_processes(self.redis.iter_mut().collect(), Duration::from_secs(3));
        outcome
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let all = self
            .nodes
            .iter_mut()
            .map(|(_, c)| c)
            .chain(self.redis.iter_mut());
        for child in all {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// SIGTERM to each of `children` still running, by its pid, then SIGKILL to any still there
/// after `grace`; waits for them all.
fn stop_processes(mut children: Vec<&mut Child>, grace: Duration) {
    children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
    for child in &children {
        // Still running or not yet reaped: its pid is its own.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        if children.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for child in children {
        eprintln!(
            "process {} still running after {grace:?}: killed",
            child.id()
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Echoes each line read from `from` to standard error after `prefix`, in a thread of its
/// own, after handing it to `also`.
fn echo_lines(
    prefix: &str,
    from: Option<impl Read + Send + 'static>,
    also: impl Fn(&str) + Send + 'static,
) {
    let Some(from) = from else {
        return;
    };
    let prefix = prefix.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else {
                break;
            };
            also(&line);
            eprintln!("{prefix}{line}");
        }
    });
}

/// A free loopback port (bound by the system's choice and released) other than `not`.
fn free_port_but(not: u16) -> Result<u16> {
    for _ in 0..10 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        if port != not {
            return Ok(port);
        }
    }
    Err(format!("the system kept offering port {not}"))
}

/// Whether a Redis on the loopback `port` answers PING with PONG (RESP, by hand).
fn redis_pings(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// Set once SIGINT, SIGTERM or SIGHUP reaches `cargo xtask cluster`.
static STOP_SIGNAL: AtomicBool = AtomicBool::new(false);

/// From now on SIGINT, SIGTERM and SIGHUP set [`STOP_SIGNAL`] instead of ending xtask. The
/// children started afterwards get the default dispositions back when they exec.
fn catch_stop_signals() {
    #[cfg(unix)]
    {
        extern "C" fn on_signal(_signal: i32) {
            STOP_SIGNAL.store(true, Ordering::SeqCst);
        }
        unsafe extern "C" {
            /// The C library's `signal(2)` (glibc: BSD semantics, the handler stays).
            fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        }
        const SIGHUP: i32 = 1;
        const SIGINT: i32 = 2;
        const SIGTERM: i32 = 15;
        for signum in [SIGHUP, SIGINT, SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe {
                signal(signum, on_signal);
            }
        }
    }
}

/// Builds the site, the release server and the load generator, then runs `chat-bench` from
/// the workspace root: by default its `report`, which measures everything of
/// docs/benchmarks.md against the seed's server and rewrites that page, its chart and its data.
fn bench(args: &[String]) -> Result {
    let args: Vec<&str> = match args.first().map(String::as_str) {
        Some("--") => args[1..].iter().map(String::as_str).collect(),
        Some(_) => args.iter().map(String::as_str).collect(),
        None => vec!["report", "--out", "docs"],
    };
    check(
        Command::new("python3")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "the seed's server needs python3 (Debian: apt-get install python3)",
    )?;
    // For the wasm bundle's size in the report.
    site()?;
    step("release builds of chat-server, chat-bench and the fan-out floor");
    cargo(&[
        "build",
        "--release",
        "-p",
        "chat-server",
        "-p",
        "chat-tests",
        "--bin",
        "chat-server",
        "--bin",
        "chat-bench",
        "--bin",
        "fanout-floor",
    ])?;
    let bench = target_dir().join("release").join("chat-bench");
    step(&format!("chat-bench {}", args.join(" ")));
    let status = Command::new(&bench)
        .args(&args)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", bench.display()))?;
    check(
        status.success(),
        &format!("chat-bench exited with {status}"),
    )
}

fn test() -> Result {
    step("prerequisites");
    ensure_rustup_component("rustfmt", &["fmt", "--version"])?;
    ensure_rustup_component("clippy", &["clippy", "--version"])?;
    ensure_wasm_target()?;
    ensure_debian_tools()?;
    ensure_python_websockets()?;

    step("formatting");
    cargo(&["fmt", "--all", "--check"])?;
    step("lints");
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The client's DOM layer is compiled for wasm32 only.
    cargo(&[
        "clippy",
        "-p",
        "chat-web",
        "--target",
        WASM_TARGET,
        "--",
        "-D",
        "warnings",
    ])?;
    step("chat-core builds for wasm32 with no native I/O in its tree");
    cargo(&["build", "-p", "chat-core", "--target", WASM_TARGET])?;
    check_core_tree()?;
    step("documentation");
    let status = Command::new(cargo_bin())
        .args(["doc", "--workspace", "--no-deps", "--quiet"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo doc: {e}"))?;
    check(status.success(), "cargo doc found broken documentation")?;
    // The end-to-end tests drive a browser on the page.
    let site = site()?;
    // Last, so that the summary of the tests closes the output.
    step("tests");
    run_tests(&site)
}

/// Builds the browser client and assembles the site: the files of `www/` beside the wasm
/// module and its JS glue. Returns the site's absolute path.
fn site() -> Result<PathBuf> {
    step("site: the browser client");
    ensure_wasm_target()?;
    let wasm_bindgen = ensure_wasm_bindgen()?;
    cargo(&[
        "build",
        "-p",
        "chat-web",
        "--target",
        WASM_TARGET,
        "--profile",
        WASM_PROFILE,
    ])?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join(WASM_PROFILE)
        .join("chat_web.wasm");
    let site = std::path::absolute(target_dir().join("site"))
        .map_err(|e| format!("cannot resolve the site's path: {e}"))?;
    fs::create_dir_all(&site).map_err(|e| format!("cannot create {}: {e}", site.display()))?;
    let status = Command::new(&wasm_bindgen)
        .args(["--target", "web", "--no-typescript"])
        .args(["--remove-name-section", "--remove-producers-section"])
        .arg("--out-dir")
        .arg(&site)
        .arg(&wasm)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", wasm_bindgen.display()))?;
    check(status.success(), "wasm-bindgen failed")?;
    copy_dir(&root().join("www"), &site)?;
    // The server sends `NAME.gz` to browsers that take gzip: the module and its glue are most
    // of what a visitor downloads.
    let mut sizes = Vec::new();
    for name in ["chat_web_bg.wasm", "chat_web.js"] {
        let file = site.join(name);
        let bytes = fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let packed = gzip(&bytes)?;
        let gz = site.join(format!("{name}.gz"));
        fs::write(&gz, &packed).map_err(|e| format!("cannot write {}: {e}", gz.display()))?;
        sizes.push(format!(
            "{name} {} bytes, {} gzip",
            grouped(bytes.len()),
            grouped(packed.len())
        ));
    }
    let shown = site.strip_prefix(root()).unwrap_or(&site);
    println!("site: {} ({})", shown.display(), sizes.join("; "));
    Ok(site)
}

/// `cargo xtask fuzz [TARGET] [--time SECS]`: each target in turn with cargo-fuzz, its corpus
/// in `fuzz/corpus/TARGET` (kept between runs), crashes in `fuzz/artifacts/TARGET`.
///
/// cargo-fuzz passes nightly `-Z` flags to rustc; `RUSTC_BOOTSTRAP=1` lets the stable
/// toolchain take them, so no nightly is needed. The targets are built optimised with debug
/// assertions and overflow checks, without a sanitizer: the code fuzzed is safe Rust, and
/// AddressSanitizer would cost more than half the speed.
fn fuzz(args: &[String]) -> Result {
    let mut targets: Vec<&str> = Vec::new();
    let mut seconds = FUZZ_SECONDS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                let value = args.next().ok_or("--time needs a number of seconds")?;
                seconds = value
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or(format!("--time {value}: not a number of seconds"))?;
            }
            target => match FUZZ_TARGETS.iter().find(|&&t| t == target) {
                Some(&t) => targets.push(t),
                None => {
                    return Err(format!(
                        "no fuzz target {target:?}; the targets are {}",
                        FUZZ_TARGETS.join(", ")
                    ));
                }
            },
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.to_vec();
    }
    step("prerequisites");
    ensure_cargo_fuzz()?;
    let fuzz_dir = root().join("fuzz");
    let mut summaries = Vec::new();
    let mut crashed = Vec::new();
    for target in targets {
        step(&format!("fuzz {target} for {seconds} s"));
        let corpus = fuzz_dir.join("corpus").join(target);
        let artifacts = fuzz_dir.join("artifacts").join(target);
        for dir in [&corpus, &artifacts] {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let before = files_in(&artifacts);
        let mut child = Command::new(cargo_bin())
            .args(["fuzz", "run", "--release", "--debug-assertions"])
            .args(["--sanitizer", "none", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(&fuzz_dir)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut stats = FuzzStats::default();
        for line in BufReader::new(stderr).lines() {
            let line = line.map_err(|e| format!("cannot read cargo fuzz's output: {e}"))?;
            eprintln!("{line}");
            stats.read(&line);
        }
        let status = child.wait().map_err(|e| format!("cargo fuzz: {e}"))?;
        let found: Vec<PathBuf> = files_in(&artifacts)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        let outcome = if found.is_empty() && status.success() {
            "nothing found".to_owned()
        } else if found.is_empty() {
            format!("cargo fuzz failed ({status}) before fuzzing")
        } else {
            format!("FOUND {}", shown(&found))
        };
        summaries.push(format!("{target}: {}; {outcome}", stats.summary()));
        if !(found.is_empty() && status.success()) {
            crashed.push((target, found));
        }
    }
    println!();
    for summary in &summaries {
        println!("fuzz {summary}");
    }
    for (target, found) in &crashed {
        for input in found {
            println!(
                "replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --release --debug-assertions \
                 --sanitizer none {target} {} (in fuzz/)",
                input.display()
            );
        }
    }
    check(crashed.is_empty(), "a fuzz target failed")
}

/// The figures libFuzzer prints at the end (`-print_final_stats=1`) and along the way.
#[derive(Default)]
struct FuzzStats {
    runs: Option<u64>,
    per_second: Option<u64>,
    /// Edges covered and features, from the last status line (`cov: 1234 ft: 5678`).
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<String>,
}

impl FuzzStats {
    fn read(&mut self, line: &str) {
        let number = |key: &str| {
            line.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .and_then(|n| n.parse().ok())
        };
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.runs = n.trim().parse().ok();
        } else if let Some(n) = line.strip_prefix("stat::average_exec_per_sec:") {
            self.per_second = n.trim().parse().ok();
        } else if line.starts_with('#') {
            self.cov = number("cov:").or(self.cov);
            self.ft = number("ft:").or(self.ft);
            if let Some(corp) = line.split("corp: ").nth(1) {
                self.corpus = corp.split_whitespace().next().map(str::to_owned);
            }
        }
    }

    fn summary(&self) -> String {
        let figure = |n: Option<u64>| n.map_or("?".to_owned(), |n| grouped(n as usize));
        format!(
            "{} runs, {} exec/s, coverage {} edges ({} features), corpus {}",
            figure(self.runs),
            figure(self.per_second),
            figure(self.cov),
            figure(self.ft),
            // libFuzzer's `corp: 3163/1512Kb`.
            self.corpus
                .as_deref()
                .map_or("?".to_owned(), |c| c.replace('/', " inputs, "))
        )
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn shown(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(root()).unwrap_or(p).display().to_string())
        .collect();
    names.join(", ")
}

/// cargo-fuzz from crates.io when `cargo fuzz` is not there.
fn ensure_cargo_fuzz() -> Result {
    let works = || {
        Command::new(cargo_bin())
            .args(["fuzz", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return Ok(());
    }
    eprintln!("installing cargo-fuzz (about a minute, once)");
    if cargo(&["install", "cargo-fuzz", "--locked"]).is_err() {
        // Its own lock file may name a dependency the registry no longer serves.
        eprintln!("retrying without --locked");
        cargo(&["install", "cargo-fuzz"])?;
    }
    check(
        works(),
        "cargo fuzz does not run after installing cargo-fuzz",
    )
}

/// Copies the files under `from` into `to`, keeping the folders.
fn copy_dir(from: &Path, to: &Path) -> Result {
    let entries = fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        if source.is_dir() {
            fs::create_dir_all(&dest)
                .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
            copy_dir(&source, &dest)?;
        } else {
            fs::copy(&source, &dest)
                .map_err(|e| format!("cannot copy {}: {e}", source.display()))?;
        }
    }
    Ok(())
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| format!("gzip: {e}"))
}

/// `1234567` as `1 234 567`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

/// The wasm-bindgen CLI must be the very version of the `wasm-bindgen` crate in Cargo.lock:
/// finds it on the PATH or in cargo's bin folder, or installs it from crates.io.
fn ensure_wasm_bindgen() -> Result<PathBuf> {
    let version = locked_version("wasm-bindgen")?;
    let installed = cargo_home().join("bin").join("wasm-bindgen");
    for candidate in [PathBuf::from("wasm-bindgen"), installed.clone()] {
        if wasm_bindgen_version(&candidate).as_deref() == Some(version.as_str()) {
            return Ok(candidate);
        }
    }
    eprintln!(
        "installing wasm-bindgen-cli {version}, the version in Cargo.lock (a few minutes, once)"
    );
    let started = Instant::now();
    let exact = format!("={version}");
    let install = ["install", "wasm-bindgen-cli", "--version", &exact];
    if cargo(&[&install[..], &["--locked"]].concat()).is_err() {
        // The CLI's own lock file may name a dependency the registry no longer serves.
        eprintln!("retrying without --locked");
        cargo(&install)?;
    }
    eprintln!(
        "installed wasm-bindgen-cli {version} in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    check(
        wasm_bindgen_version(&installed).as_deref() == Some(version.as_str()),
        &format!("{} is not wasm-bindgen {version}", installed.display()),
    )?;
    Ok(installed)
}

/// The version `wasm-bindgen --version` reports (`wasm-bindgen 0.2.130`), if it runs.
fn wasm_bindgen_version(binary: &Path) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1)?;
    out.status.success().then(|| version.to_owned())
}

/// The version of `package` that Cargo.lock pins.
fn locked_version(package: &str) -> Result<String> {
    let path = root().join("Cargo.lock");
    let lock =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == name_line {
            let version = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'));
            if let Some(version) = version {
                return Ok(version.to_owned());
            }
        }
    }
    Err(format!("Cargo.lock has no {package}"))
}

/// Runs every test, echoing the output, and closes with one line adding up all test binaries.
///
/// The end-to-end tests find the site in `CHAT_WEB_ROOT`, the variable the server reads too;
/// the other tests run without it, so that a server they start has its defaults.
fn run_tests(site: &Path) -> Result {
    let mut totals = Totals::default();
    let ok = cargo_test(&["--workspace"], site, &mut totals)?;
    let Totals {
        passed,
        failed,
        ignored,
    } = totals;
    println!("\ntests: {passed} passed, {failed} failed, {ignored} skipped");
    check(ok && failed == 0, "some tests failed")?;
    check(passed > 0, "no test ran")
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// One `cargo test` over `packages`, echoed and added to `totals`; whether it succeeded. The
/// end-to-end tests find the built page through `CHAT_WEB_ROOT`; the server's own tests choose
/// their flags without reading the environment.
fn cargo_test(packages: &[&str], web_root: &Path, totals: &mut Totals) -> Result<bool> {
    let mut command = Command::new(cargo_bin());
    command
        .arg("test")
        .args(packages)
        .arg("--no-fail-fast")
        .env(WEB_ROOT_VAR, web_root)
        .current_dir(root())
        .stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("cannot read cargo test's output: {e}"))?;
        println!("{line}");
        if let Some(counts) = line.strip_prefix("test result: ") {
            totals.passed += count(counts, " passed");
            totals.failed += count(counts, " failed");
            totals.ignored += count(counts, " ignored");
        }
    }
    let status = child.wait().map_err(|e| format!("cargo test: {e}"))?;
    Ok(status.success())
}

/// The number before `label` in a `test result:` line (`ok. 3 passed; 0 failed; ...`).
fn count(counts: &str, label: &str) -> u64 {
    counts
        .split(';')
        .find_map(|part| part.trim_end().strip_suffix(label))
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn check_core_tree() -> Result {
    let out = Command::new(cargo_bin())
        .args([
            "tree",
            "-p",
            "chat-core",
            "--target",
            WASM_TARGET,
            "-e",
            "normal",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    check(out.status.success(), "cargo tree failed")?;
    let tree = String::from_utf8_lossy(&out.stdout);
    let mut crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    crates.sort_unstable();
    crates.dedup();
    let found: Vec<&str> = crates
        .iter()
        .copied()
        .filter(|name| FORBIDDEN_IN_CORE.contains(name))
        .collect();
    check(
        found.is_empty(),
        &format!("chat-core's wasm dependency tree holds {found:?}; the core must stay sans-IO"),
    )?;
    println!("chat-core's wasm dependency tree: {}", crates.join(", "));
    Ok(())
}

fn ensure_rustup_component(component: &str, probe: &[&str]) -> Result {
    if Command::new(cargo_bin())
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    install(&["rustup", "component", "add", component])
}

fn ensure_wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|t| t == WASM_TARGET)
        })
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    install(&["rustup", "target", "add", WASM_TARGET])
}

/// Debian packages the end-to-end tests drive: the real nc, Chromium with its WebDriver,
/// openssl, HAProxy and Redis.
/// Each is a file that shows it installed, and the package that installs it.
const DEBIAN_TOOLS: &[(&[&str], &str)] = &[
    (
        &["/usr/bin/nc", "/bin/nc", "/usr/local/bin/nc"],
        "netcat-openbsd",
    ),
    (&["/usr/bin/chromium"], "chromium"),
    (&["/usr/bin/chromedriver"], "chromium-driver"),
    // `openssl s_client`: the TLS tests' line users.
    (&["/usr/bin/openssl"], "openssl"),
    // A real load balancer in front of the server, for `--trusted-proxy` (tests/haproxy.rs).
    (&["/usr/sbin/haproxy"], "haproxy"),
    REDIS_TOOL,
    // `script`: a terminal for the server, to see its diagnostics in colour (Essential in
    // Debian, so normally there).
    (&["/usr/bin/script"], "bsdutils"),
];

/// The Redis that several nodes share (`--redis`), for the cluster tests and
/// `cargo xtask cluster`, each of which starts its own on a free port. Debian's postinst may
/// start the system's service on 6379 as well; nothing here uses that one.
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_TOOL: (&[&str], &str) = (&[REDIS_SERVER], "redis-server");

fn ensure_debian_tools() -> Result {
    ensure_debian_packages(DEBIAN_TOOLS, "the end-to-end tests need them")
}

/// Installs with apt-get (as root) the packages of `tools` whose files are all missing;
/// otherwise fails saying `why` and how to install them.
fn ensure_debian_packages(tools: &[(&[&str], &str)], why: &str) -> Result {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(paths, _)| !paths.iter().any(|p| Path::new(p).exists()))
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let how = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    check(
        is_root() && Path::new("/usr/bin/apt-get").exists(),
        &format!(
            "{why}; install {} as root with: {how}",
            if missing.len() == 1 { "it" } else { "them" }
        ),
    )?;
    install(&["apt-get", "update", "-qq"])?;
    install(&[&["apt-get", "install", "-y", "-qq"][..], &missing].concat())
}

/// Python's `websockets`, for the tests' WebSocket client the project did not write.
fn ensure_python_websockets() -> Result {
    let python = env::var("CHAT_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_it = || {
        Command::new(&python)
            .args(["-c", "import websockets"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_it() {
        return Ok(());
    }
    // pip where the interpreter takes packages (pyenv, a venv); Debian's package where pip is
    // refused for the system's Python.
    let pip = install(&[&python, "-m", "pip", "install", "--quiet", "websockets"]);
    if pip.is_err() && is_root() && Path::new("/usr/bin/apt-get").exists() {
        install(&["apt-get", "install", "-y", "-qq", "python3-websockets"])?;
    }
    check(
        has_it(),
        &format!(
            "`{python}` cannot import websockets; install it with: {python} -m pip install websockets"
        ),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn install(command: &[&str]) -> Result {
    eprintln!("installing: {}", command.join(" "));
    let status = Command::new(command[0])
        .args(&command[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
    check(status.success(), &format!("`{}` failed", command.join(" ")))
}

fn cargo(args: &[&str]) -> Result {
    let status = Command::new(cargo_bin())
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    check(
        status.success(),
        &format!("`cargo {}` failed", args.join(" ")),
    )
}

fn check(ok: bool, err: &str) -> Result {
    if ok { Ok(()) } else { Err(err.to_owned()) }
}

fn step(name: &str) {
    eprintln!("\n==> {name}");
}

fn cargo_bin() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace root: xtask lives one level below it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}
