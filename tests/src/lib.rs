//! Support for the end-to-end tests: the real `chat-server` binary as a child process, real
//! `nc` users, `openssl s_client` users when the server speaks TLS (with a certificate made at
//! test time), a headless Chromium driven through chromedriver (WebDriver, with fantoccini), a
//! TCP proxy that can cut connections, and a line-oriented child process for WebSocket clients
//! the project did not write.
//!
//! Every wait is bounded ([`WAIT`]) and a failed wait says what was seen. Every child process
//! is killed when its handle is dropped, also when a test panics.
//!
//! What the tests need beyond cargo (`cargo xtask test` installs and builds it): Debian's
//! `chromium` and `chromium-driver`, `nc` (netcat-openbsd), `openssl`, Python 3 with the
//! `websockets` package, and the built page, whose directory is named by `CHAT_WEB_ROOT`. When one is
//! missing a test fails and says so; with `CHAT_E2E_SKIP=1` it prints a loud "SKIPPED" line and
//! passes instead.
//!
//! Environment: `CHAT_WEB_ROOT` (the built page, required by the browser tests),
//! `CHAT_E2E_SKIP=1` (skip when a prerequisite is missing), `CHAT_SERVER_BIN` (the server to
//! test; by default `target/debug/chat-server`, built when missing or stale), `CHAT_PYTHON`
//! (the interpreter with `websockets`; by default `python3`). Screenshots go to `target/e2e/`.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub mod bench;
pub mod load;

/// How long a test waits for any one thing it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a whole scenario may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the page is looked at while waiting.
const POLL: Duration = Duration::from_millis(50);

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const OPENSSL: &str = "/usr/bin/openssl";

// ---------------------------------------------------------------------------------------------
// Prerequisites

/// Whether `CHAT_E2E_SKIP=1` asks to skip tests whose prerequisites are missing.
pub fn skipping_allowed() -> bool {
    std::env::var("CHAT_E2E_SKIP").is_ok_and(|v| v == "1")
}

/// A prerequisite is missing: fails the test, or with `CHAT_E2E_SKIP=1` prints a loud line
/// and returns `None` so that the test can return.
pub fn missing<T>(test: &str, what: &str) -> Option<T> {
    if skipping_allowed() {
        // Straight to stderr, past the test harness's capture, so that it is always seen.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPED {test}: {what} (CHAT_E2E_SKIP=1; run `cargo xtask test` to run it) !!!!!!!!\n"
        );
        None
    } else {
        panic!(
            "{test} cannot run: {what}.\n\
             Run `cargo xtask test`, which installs Chromium, chromedriver and Python's websockets \
             and builds the page; or set CHAT_E2E_SKIP=1 to skip the end-to-end tests."
        )
    }
}

/// Returns early from a test when a prerequisite is missing and skipping is allowed.
#[macro_export]
macro_rules! require {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

/// The built page: the directory in `CHAT_WEB_ROOT`, which must hold `index.html`.
pub fn web_root(test: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("CHAT_WEB_ROOT") else {
        return missing(
            test,
            "CHAT_WEB_ROOT is not set (it names the built page, target/site)",
        );
    };
    let dir = PathBuf::from(dir);
    if !dir.join("index.html").is_file() {
        return missing(
            test,
            &format!(
                "CHAT_WEB_ROOT={} holds no index.html (build the page with `cargo xtask site`)",
                dir.display()
            ),
        );
    }
    Some(dir)
}

/// Chromium and chromedriver, Debian's packages.
pub fn browser_installed(test: &str) -> Option<()> {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        if !Path::new(path).exists() {
            return missing(
                test,
                &format!("{path} is missing (Debian package {package})"),
            );
        }
    }
    Some(())
}

/// `openssl`, Debian's package, for `s_client` users.
pub fn openssl_installed(test: &str) -> Option<()> {
    if Path::new(OPENSSL).exists() {
        Some(())
    } else {
        missing(
            test,
            &format!("{OPENSSL} is missing (Debian package openssl)"),
        )
    }
}

/// The Python interpreter (`CHAT_PYTHON`, else `python3` from PATH) if it has `websockets`.
pub fn python_with_websockets(test: &str) -> Option<String> {
    let python = std::env::var("CHAT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok = Command::new(&python)
        .args(["-c", "import websockets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(python)
    } else {
        missing(
            test,
            &format!("`{python}` cannot import websockets (pip package websockets)"),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Paths

/// The workspace root (this package's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding the test executable (`target/debug`), from `target/debug/deps/X`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/PROFILE/deps")
        .to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else where the test executable lives.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_relative() {
                workspace_root().join(dir)
            } else {
                dir
            }
        }
        None => profile_dir()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| workspace_root().join("target")),
    }
}

/// Where screenshots go: `target/e2e/`.
pub fn screenshot_dir() -> PathBuf {
    target_dir().join("e2e")
}

/// The `chat-server` binary: `CHAT_SERVER_BIN`, else the one beside the test executable,
/// built first (once per test process) when it is missing or older than its sources.
pub fn server_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("CHAT_SERVER_BIN") {
                return PathBuf::from(bin);
            }
            let bin = profile_dir().join("chat-server");
            if !bin.exists() || older_than_sources(&bin) {
                eprintln!("building chat-server for the end-to-end tests");
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args(["build", "-p", "chat-server", "--bin", "chat-server"])
                    .current_dir(workspace_root())
                    .status()
                    .expect("run cargo build -p chat-server");
                assert!(status.success(), "cargo build -p chat-server failed");
            }
            assert!(bin.exists(), "{} exists after the build", bin.display());
            bin
        })
        .clone()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether a source of the server is newer than `bin` (so that `cargo test -p chat-tests`
/// never runs a stale server).
fn older_than_sources(bin: &Path) -> bool {
    let Some(built) = modified(bin) else {
        return true;
    };
    let root = workspace_root();
    let mut stack = vec![
        root.join("server-native/src"),
        root.join("core/src"),
        root.join("server-native/Cargo.toml"),
        root.join("core/Cargo.toml"),
    ];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if let Ok(dir) = std::fs::read_dir(&path) {
                stack.extend(dir.flatten().map(|e| e.path()));
            }
        } else if modified(&path).is_some_and(|m| m > built) {
            return true;
        }
    }
    false
}

/// A free loopback port (bound, read and released; good enough for a child to bind next).
pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "chat-e2e-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn send_signal(pid: i32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Every process whose command line or environment contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            ["cmdline", "environ"].iter().any(|file| {
                std::fs::read(format!("/proc/{pid}/{file}"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Child processes whose output is read by a thread, so that reads can time out

/// A child's stdout, collected by a thread into a channel.
struct Output {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    closed: bool,
}

impl Output {
    fn collect(mut stdout: impl Read + Send + 'static) -> Output {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Output { rx, closed: false }
    }

    /// The next chunk, `None` at the end, `Err` when nothing came before `deadline`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, ()> {
        if self.closed {
            return Ok(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.rx.recv()).await {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Ok(None) => {
                self.closed = true;
                Ok(None)
            }
            Err(_) => Err(()),
        }
    }
}

/// A child process with piped stdin and stdout: what it printed is kept in `seen`
/// until an expectation consumes it. Killed when dropped.
pub struct LineProcess {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    output: Output,
    /// Printed and not yet consumed by an expectation.
    pub seen: String,
}

impl LineProcess {
    pub fn spawn(label: &str, command: &mut Command) -> LineProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {label} ({command:?}): {e}"));
        let stdin = child.stdin.take();
        let output = Output::collect(child.stdout.take().expect("piped stdout"));
        LineProcess {
            label: label.to_owned(),
            child,
            stdin,
            output,
            seen: String::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes `line` and a newline to the child's stdin.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: write {line:?}: {e}", self.label));
    }

    /// Closes the child's stdin (end of input, Ctrl-D at a terminal).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads more output; false at the end of output. Panics (saying what was seen and `why`)
    /// when nothing arrives before `deadline`.
    async fn read_more(&mut self, deadline: Instant, why: &str) -> bool {
        match self.output.next(deadline).await {
            Ok(Some(bytes)) => {
                self.seen.push_str(&String::from_utf8_lossy(&bytes));
                true
            }
            Ok(None) => false,
            Err(()) => panic!(
                "{}: timed out after {WAIT:?} waiting for {why}; it printed {:?}",
                self.label, self.seen
            ),
        }
    }

    /// Waits until the output contains `want`; returns everything up to and including it and
    /// consumes it.
    pub async fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while !self.seen.contains(want) {
            if !self.read_more(deadline, &format!("{want:?}")).await {
                panic!(
                    "{}: output ended while waiting for {want:?}; it printed {:?}",
                    self.label, self.seen
                );
            }
        }
        let end = self.seen.find(want).expect("contains") + want.len();
        self.seen.drain(..end).collect()
    }

    /// Waits for the next complete line (without its newline) and consumes it.
    pub async fn line(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.seen.find('\n') {
                let line: String = self.seen.drain(..=i).collect();
                return line.trim_end_matches('\n').to_owned();
            }
            if !self.read_more(deadline, "a line").await {
                panic!(
                    "{}: output ended while waiting for a line; it printed {:?}",
                    self.label, self.seen
                );
            }
        }
    }

    /// Reads lines until one satisfies `pred`; returns it. The lines before it are consumed.
    pub async fn line_where(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            if let Some(i) = self.seen.find('\n') {
                let line: String = self.seen.drain(..=i).collect();
                let line = line.trim_end_matches('\n').to_owned();
                if pred(&line) {
                    return line;
                }
                skipped.push(line);
                continue;
            }
            if let Ok(Some(bytes)) = self.output.next(deadline).await {
                self.seen.push_str(&String::from_utf8_lossy(&bytes));
                continue;
            }
            panic!(
                "{}: no line {what} arrived in time; it printed {skipped:#?} then {:?}",
                self.label, self.seen
            );
        }
    }

    /// Reads whatever arrives for `quiet` and returns it unconsumed (in `seen`) too.
    pub async fn drain_for(&mut self, quiet: Duration) -> &str {
        let deadline = Instant::now() + quiet;
        while Instant::now() < deadline {
            match self.output.next(deadline).await {
                Ok(Some(bytes)) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(()) => break,
            }
        }
        &self.seen
    }

    /// Waits for the end of output and the exit; returns what was printed and not consumed.
    pub async fn finished(&mut self) -> (String, ExitStatus) {
        let deadline = Instant::now() + WAIT;
        while self.read_more(deadline, "the end of its output").await {}
        let status = wait_exit(&mut self.child, deadline)
            .await
            .unwrap_or_else(|| panic!("{} did not exit in time", self.label));
        (std::mem::take(&mut self.seen), status)
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `child` exits, at most until `deadline`.
async fn wait_exit(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The server

/// The real `chat-server` binary, run as a child process. Killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// The nc listener.
    pub tcp: SocketAddr,
    /// The HTTP (page and WebSocket) listener.
    pub http: SocketAddr,
    extra: Vec<String>,
    /// Where the server's standard error goes, when not to the test's.
    stderr: Option<PathBuf>,
}

impl Server {
    /// Starts the server on free ports with these extra flags.
    pub async fn start(extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Server::start_inner(extra, None).await
    }

    /// Starts the server like [`Server::start`], with its standard error (its log) written to
    /// `stderr`, for a test to read with [`Server::stderr`].
    pub async fn start_logging_to(extra: &[&str], stderr: &Path) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Server::start_inner(extra, Some(stderr.to_owned())).await
    }

    async fn start_inner(extra: Vec<String>, stderr: Option<PathBuf>) -> Server {
        let (child, tcp, http) =
            Self::spawn("127.0.0.1:0", "127.0.0.1:0", &extra, stderr.as_deref())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        Server {
            child: Some(child),
            tcp,
            http,
            extra,
            stderr,
        }
    }

    /// The server's process id (to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// What the server wrote to its standard error so far, if it was started with
    /// [`Server::start_logging_to`].
    pub fn stderr(&self) -> String {
        self.stderr
            .as_deref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Starts the server with `--web-root DIR` and these extra flags.
    pub async fn with_page(web_root: &Path, extra: &[&str]) -> Server {
        let mut flags = vec!["--web-root", web_root.to_str().expect("UTF-8 path")];
        flags.extend_from_slice(extra);
        Server::start(&flags).await
    }

    async fn spawn(
        tcp: &str,
        http: &str,
        extra: &[String],
        stderr: Option<&Path>,
    ) -> Result<(Child, SocketAddr, SocketAddr), String> {
        let bin = server_binary();
        let stderr = match stderr {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("open {}: {e}", path.display()))?;
                Stdio::from(file)
            }
            None => Stdio::inherit(),
        };
        let mut child = Command::new(&bin)
            .args(["--tcp", tcp, "--http", http])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        // Reads the address lines, then keeps reading so that the server never writes
        // into a full or closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let result = async {
            let tcp = read_addr(&mut rx, "tcp listening on ", deadline, &bin).await?;
            let http = read_addr(&mut rx, "http listening on ", deadline, &bin).await?;
            Ok::<_, String>((tcp, http))
        }
        .await;
        match result {
            Ok((tcp, http)) => Ok((child, tcp, http)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Whether it was started with `--tls-cert` (and so speaks TLS on both listeners).
    pub fn tls(&self) -> bool {
        self.extra.iter().any(|flag| flag == "--tls-cert")
    }

    /// `http://ADDR/`, the page (`https://` over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://{}/", self.http)
    }

    /// `ws://ADDR/ws` (`wss://` over TLS).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.http)
    }

    /// Sends SIGTERM and waits for a successful exit.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        send_signal(child.id() as i32, "-TERM");
        let status = wait_exit(&mut child, Instant::now() + WAIT).await;
        match status {
            Some(status) => assert!(status.success(), "chat-server exited with {status}"),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chat-server did not exit within {WAIT:?} of SIGTERM");
            }
        }
    }

    /// Starts the server again on the same two addresses, with the same flags.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let deadline = Instant::now() + WAIT;
        loop {
            let (tcp, http) = (self.tcp.to_string(), self.http.to_string());
            match Self::spawn(&tcp, &http, &self.extra, self.stderr.as_deref()).await {
                Ok((child, _, _)) => {
                    self.child = Some(child);
                    return;
                }
                // A port may be briefly unavailable; try again until the deadline.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot restart chat-server on {tcp} and {http}: {e}"),
            }
        }
    }

    /// Connects an nc user, answers the prompt with `name` and reads the welcome's first
    /// line, which it returns (`Welcome, NAME! Online (N): ...`).
    pub async fn nc_join(&self, name: &str) -> (Nc, String) {
        join(Nc::connect(self.tcp, name), name).await
    }

    /// Like [`Server::nc_join`] with `openssl s_client` on a server that speaks TLS.
    pub async fn s_client_join(&self, name: &str) -> (LineProcess, String) {
        join(LineProcess::s_client(self.tcp, name), name).await
    }
}

/// Answers the prompt with `name` and reads the welcome's first line, which it returns.
async fn join(mut user: LineProcess, name: &str) -> (LineProcess, String) {
    user.expect("Enter your name: ").await;
    user.type_line(name);
    let welcome = user
        .line_where("starting with the welcome", |l| l.starts_with("Welcome, "))
        .await;
    assert!(
        welcome.starts_with(&format!("Welcome, {name}! Online (")),
        "{name}'s welcome: {welcome:?}"
    );
    user.expect("Type /help for the list of commands.\n").await;
    (user, welcome)
}

/// A self-signed certificate for `127.0.0.1` and `localhost`, made at test time, and its
/// key, as PEM files in a directory removed when dropped.
pub struct TestCert {
    dir: TempDir,
}

impl TestCert {
    pub fn new(label: &str) -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("make a certificate");
        let dir = TempDir::new(&format!("cert-{label}"));
        std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).expect("write cert.pem");
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem())
            .expect("write key.pem");
        TestCert { dir }
    }

    /// `--tls-cert CERT --tls-key KEY`, for [`Server::start`].
    pub fn flags(&self) -> Vec<String> {
        ["cert", "key"]
            .iter()
            .flat_map(|what| {
                let path = self.dir.path().join(format!("{what}.pem"));
                [format!("--tls-{what}"), path.display().to_string()]
            })
            .collect()
    }
}

/// Reads the server's next stdout line, `PREFIX ADDR`.
async fn read_addr(
    rx: &mut mpsc::UnboundedReceiver<String>,
    prefix: &str,
    deadline: Instant,
    bin: &Path,
) -> Result<SocketAddr, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, rx.recv()).await {
        Ok(Some(line)) => line
            .strip_prefix(prefix)
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .ok_or_else(|| format!("chat-server printed {line:?}, not {prefix}ADDR")),
        Ok(None) => Err(format!(
            "chat-server ({}) exited before printing {prefix:?} (see its stderr above)",
            bin.display()
        )),
        Err(_) => Err(format!("chat-server did not print {prefix:?} in time")),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// nc

/// The real `nc` (Debian's netcat-openbsd) as a user runs it.
pub type Nc = LineProcess;

pub fn nc_path() -> PathBuf {
    ["/usr/bin/nc", "/bin/nc", "/usr/local/bin/nc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "nc is installed (Debian: apt-get install netcat-openbsd; `cargo xtask test` does it)",
        )
}

impl LineProcess {
    /// `openssl s_client -quiet -connect ADDR`, as the README tells users of a server with TLS
    /// to connect; labelled with the user's name. `-quiet` also means `-ign_eof`: closing its
    /// input does not end the session, and no line is a command of s_client's own.
    pub fn s_client(addr: SocketAddr, name: &str) -> LineProcess {
        LineProcess::spawn(
            &format!("openssl s_client user {name}"),
            Command::new(OPENSSL)
                .args(["s_client", "-quiet", "-connect", &addr.to_string()])
                // The certificate's details and "self-signed certificate": not the chat.
                .stderr(Stdio::null()),
        )
    }

    /// `nc HOST PORT`, labelled with the user's name for failure messages.
    pub fn connect(addr: SocketAddr, name: &str) -> Nc {
        LineProcess::spawn(
            &format!("nc user {name}"),
            Command::new(nc_path())
                .arg(addr.ip().to_string())
                .arg(addr.port().to_string())
                .stderr(Stdio::null()),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The browser

/// One entry of `#messages`: its kind (the classes other than `entry`), its text and, for a
/// public message, its `data-seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub kind: String,
    pub text: String,
    pub seq: Option<u64>,
}

impl Entry {
    pub fn is(&self, kind: &str) -> bool {
        self.kind.split_whitespace().any(|k| k == kind)
    }

    /// Whether it is of `kind` and its text contains every one of `needles`.
    pub fn matches(&self, kind: &str, needles: &[&str]) -> bool {
        self.is(kind) && needles.iter().all(|n| self.text.contains(n))
    }
}

/// What the page shows, read in one script call.
#[derive(Clone, Debug, Default)]
pub struct PageState {
    /// `#status[data-state]`.
    pub status: Option<String>,
    pub status_text: String,
    /// `body[data-joined]`.
    pub joined: Option<String>,
    /// `#name-error`'s text.
    pub name_error: String,
    /// `#chat`'s `hidden`.
    pub chat_hidden: Option<bool>,
    /// `#message-input`'s value.
    pub input: String,
    /// The texts of `#users button.user`.
    pub users: Vec<String>,
    pub user_count: String,
    pub entries: Vec<Entry>,
}

impl PageState {
    pub fn is_joined(&self) -> bool {
        self.joined.as_deref() == Some("true")
    }

    pub fn status_is(&self, state: &str) -> bool {
        self.status.as_deref() == Some(state)
    }

    /// Whether some entry is of `kind` and contains every one of `needles`.
    pub fn has(&self, kind: &str, needles: &[&str]) -> bool {
        self.entries.iter().any(|e| e.matches(kind, needles))
    }

    /// How many entries are of `kind` and contain every one of `needles`.
    pub fn count(&self, kind: &str, needles: &[&str]) -> usize {
        self.entries
            .iter()
            .filter(|e| e.matches(kind, needles))
            .count()
    }

    /// Whether any entry (of any kind) contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.entries.iter().any(|e| e.text.contains(needle))
    }

    fn from_json(v: &Value) -> PageState {
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        PageState {
            status: s("status"),
            status_text: s("statusText").unwrap_or_default(),
            joined: s("joined"),
            name_error: s("nameError").unwrap_or_default(),
            chat_hidden: v["chatHidden"].as_bool(),
            input: s("input").unwrap_or_default(),
            users: v["users"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            user_count: s("userCount").unwrap_or_default(),
            entries: v["entries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| Entry {
                            kind: e["kind"].as_str().unwrap_or_default().to_owned(),
                            text: e["text"].as_str().unwrap_or_default().to_owned(),
                            seq: e["seq"].as_str().and_then(|s| s.parse().ok()),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl fmt::Display for PageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  #status[data-state={:?}] {:?}",
            self.status, self.status_text
        )?;
        writeln!(
            f,
            "  body[data-joined={:?}]  #chat hidden={:?}",
            self.joined, self.chat_hidden
        )?;
        writeln!(f, "  #name-error: {:?}", self.name_error)?;
        writeln!(
            f,
            "  #users: {:?}  #user-count: {:?}",
            self.users, self.user_count
        )?;
        writeln!(f, "  #message-input: {:?}", self.input)?;
        writeln!(f, "  #messages ({} entries):", self.entries.len())?;
        for e in &self.entries {
            match e.seq {
                Some(seq) => writeln!(f, "    [{}] seq={seq} {:?}", e.kind, e.text)?,
                None => writeln!(f, "    [{}] {:?}", e.kind, e.text)?,
            }
        }
        Ok(())
    }
}

const READ_PAGE: &str = r#"
const q = (s) => document.querySelector(s);
const text = (s) => { const e = q(s); return e ? e.textContent : null; };
const status = q('#status');
const chat = q('#chat');
const input = q('#message-input');
return {
  status: status ? (status.dataset.state ?? null) : null,
  statusText: status ? status.textContent.trim() : null,
  joined: document.body ? (document.body.dataset.joined ?? null) : null,
  nameError: text('#name-error'),
  chatHidden: chat ? chat.hidden : null,
  input: input ? input.value : null,
  users: Array.from(document.querySelectorAll('#users button.user'), (b) => b.textContent.trim()),
  userCount: text('#user-count'),
  entries: Array.from(document.querySelectorAll('#messages li.entry'), (li) => ({
    kind: Array.from(li.classList).filter((c) => c !== 'entry').join(' '),
    text: li.textContent.trim(),
    seq: li.dataset.seq ?? null,
  })),
};
"#;

/// Where a failed wait leaves its screenshot: `target/e2e/failed-LABEL.png`.
fn failure_screenshot_path(label: &str) -> PathBuf {
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    screenshot_dir().join(format!("failed-{name}.png"))
}

/// The environment variable that marks a browser's processes.
const PROCESS_MARK: &str = "CHAT_E2E_BROWSER";

/// A headless Chromium, driven through its own chromedriver. Dropping it ends the session,
/// kills chromedriver's process group and any Chromium process left with its profile.
pub struct Browser {
    label: String,
    client: Option<Client>,
    driver: Child,
    profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile. `label` names it in
    /// failure messages (say, `TEST alice`).
    pub async fn start(label: &str) -> Browser {
        Browser::start_with(label, false).await
    }

    /// Like [`Browser::start`], but the browser accepts any certificate (WebDriver's
    /// `acceptInsecureCerts`), such as the self-signed one of [`TestCert`], for the page and
    /// its WebSocket alike.
    pub async fn start_accepting_any_certificate(label: &str) -> Browser {
        Browser::start_with(label, true).await
    }

    async fn start_with(label: &str, accept_insecure_certs: bool) -> Browser {
        let _ = std::fs::remove_file(failure_screenshot_path(label));
        let port = free_port();
        let profile = TempDir::new(&format!("chromium-{label}"));
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Inherited by every process of this browser, also those that leave the process
            // group (the crash handler), so that they can all be found and killed.
            .env(PROCESS_MARK, profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that it and the browser it starts die together.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        let mut browser = Browser {
            label: label.to_owned(),
            client: None,
            driver,
            profile,
        };
        let deadline = Instant::now() + WAIT;
        while StdTcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver exited at once: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver does not answer on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1100,800",
                    format!("--user-data-dir={}", browser.profile.path().display()),
                ],
            }),
        );
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        if accept_insecure_certs {
            caps.insert("acceptInsecureCerts".to_owned(), json!(true));
        }
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}");
        let client = tokio::time::timeout(WAIT, builder.connect(&url))
            .await
            .unwrap_or_else(|_| panic!("{label}: no WebDriver session within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{label}: cannot start a WebDriver session: {e}"));
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// The address of the page shown (`location.href`).
    pub async fn location(&self) -> String {
        let v = tokio::time::timeout(WAIT, self.client().execute("return location.href", vec![]))
            .await
            .unwrap_or_else(|_| panic!("{}: the page did not answer in time", self.label))
            .unwrap_or_else(|e| panic!("{}: cannot read location.href: {e}", self.label));
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn open(&self, url: &str) {
        tokio::time::timeout(WAIT, self.client().goto(url))
            .await
            .unwrap_or_else(|_| panic!("{}: {url} did not load in time", self.label))
            .unwrap_or_else(|e| panic!("{}: open {url}: {e}", self.label));
    }

    /// Reads what the page shows.
    pub async fn state(&self) -> PageState {
        let v = tokio::time::timeout(WAIT, self.client().execute(READ_PAGE, vec![]))
            .await
            .unwrap_or_else(|_| panic!("{}: the page did not answer in time", self.label))
            .unwrap_or_else(|e| panic!("{}: cannot read the page: {e}", self.label));
        PageState::from_json(&v)
    }

    /// Polls the page until `pred` holds and returns what it showed then; panics after
    /// [`WAIT`] saying what it was waiting for and what the page showed.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&PageState) -> bool) -> PageState {
        self.wait_until_for(WAIT, what, pred).await
    }

    pub async fn wait_until_for(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&PageState) -> bool,
    ) -> PageState {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.state().await;
            if pred(&state) {
                return state;
            }
            if Instant::now() >= deadline {
                let shot = self.failure_screenshot().await;
                panic!(
                    "{}: waited {limit:?} for {what}; the page shows ({shot}):\n{state}",
                    self.label
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the page's WebSocket is open.
    pub async fn wait_open(&self) -> PageState {
        self.wait_until("#status[data-state=open]", |s| s.status_is("open"))
            .await
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client().find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!(
                "{}: no {css} ({e}); the page shows:\n{}",
                self.label,
                self.state().await
            ),
        }
    }

    /// Replaces the text of the input `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        let typed = async {
            input.clear().await?;
            input.send_keys(text).await
        };
        if let Err(e) = typed.await {
            panic!(
                "{}: cannot type {text:?} into {css}: {e}; the page shows:\n{}",
                self.label,
                self.state().await
            );
        }
    }

    pub async fn click(&self, css: &str) {
        if let Err(e) = self.find(css).await.click().await {
            panic!(
                "{}: cannot click {css}: {e}; the page shows:\n{}",
                self.label,
                self.state().await
            );
        }
    }

    /// Types `name` into `#name-input` and clicks `#join-button`.
    pub async fn submit_name(&self, name: &str) {
        self.fill("#name-input", name).await;
        self.click("#join-button").await;
    }

    /// Opens the page, waits for the connection, joins as `name` and waits until joined.
    pub async fn open_and_join(&self, url: &str, name: &str) -> PageState {
        self.open(url).await;
        self.wait_open().await;
        self.submit_name(name).await;
        self.wait_until(&format!("joined as {name}"), |s| {
            s.is_joined() && s.chat_hidden == Some(false)
        })
        .await
    }

    /// Types `text` into `#message-input` and presses Enter.
    pub async fn say(&self, text: &str) {
        let enter: char = fantoccini::key::Key::Enter.into();
        self.fill("#message-input", &format!("{text}{enter}")).await;
    }

    /// Clicks the user list's button for `name`.
    pub async fn click_user(&self, name: &str) {
        let buttons = self
            .client()
            .find_all(Locator::Css("#users button.user"))
            .await
            .unwrap_or_else(|e| panic!("{}: find #users button.user: {e}", self.label));
        for b in buttons {
            if b.text().await.is_ok_and(|t| t.trim() == name) {
                b.click()
                    .await
                    .unwrap_or_else(|e| panic!("{}: click {name}: {e}", self.label));
                return;
            }
        }
        panic!(
            "{}: no user button {name:?}; the page shows:\n{}",
            self.label,
            self.state().await
        );
    }

    /// Saves a screenshot as `target/e2e/NAME.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client()
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("{}: screenshot: {e}", self.label));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create target/e2e");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// A screenshot of a failure, `target/e2e/failed-LABEL.png`; says where it is.
    async fn failure_screenshot(&self) -> String {
        let path = failure_screenshot_path(&self.label);
        let taken = tokio::time::timeout(WAIT, self.client().screenshot()).await;
        match taken {
            Ok(Ok(png)) => match std::fs::create_dir_all(screenshot_dir())
                .and_then(|()| std::fs::write(&path, png))
            {
                Ok(()) => format!("screenshot {}", path.display()),
                Err(e) => format!("no screenshot: {e}"),
            },
            Ok(Err(e)) => format!("no screenshot: {e}"),
            Err(_) => "no screenshot: timed out".to_owned(),
        }
    }

    /// Ends the session, then makes sure no process of this browser is left.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.close()).await;
        }
        let left = self.kill_everything();
        assert!(
            left.is_empty(),
            "{}: processes {left:?} of this browser outlived SIGKILL",
            self.label
        );
    }

    /// Kills chromedriver's process group and every process marked as this browser's;
    /// returns those still there after 5 s.
    fn kill_everything(&mut self) -> Vec<i32> {
        send_signal(-(self.driver.id() as i32), "-KILL");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Processes that left the group (the crash handler): found by their mark.
        let needle = self.profile.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut killed = HashSet::new();
        loop {
            let left = processes_mentioning(&needle);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            for &pid in &left {
                if killed.insert(pid) {
                    send_signal(pid, "-KILL");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the WebDriver session (which quits Chromium) on the test's runtime.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                    tokio::task::block_in_place(|| {
                        handle.block_on(async {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(3), client.close()).await;
                        })
                    });
                }
            }
        }
        let left = self.kill_everything();
        if !left.is_empty() {
            eprintln!(
                "{}: processes {left:?} of this browser outlived SIGKILL",
                self.label
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can cut connections

/// A TCP proxy in front of `upstream`. [`Proxy::cut`] closes every connection through it and
/// refuses new ones (accepts and closes them at once) until [`Proxy::restore`].
pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let open = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(AtomicU64::new(0));
        let (cut, _) = watch::channel(0u64);
        let task = {
            let open = open.clone();
            let accepted = accepted.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut down, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if !open.load(Ordering::SeqCst) {
                        drop(down);
                        continue;
                    }
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let mut cut_rx = cut.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut up) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                            _ = cut_rx.changed() => {}
                        }
                    });
                }
            })
        };
        Proxy {
            addr,
            open,
            cut,
            accepted,
            task,
        }
    }

    /// `http://ADDR/`, the page through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// How many connections were let through so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Ends the connection tasks too.
        self.cut.send_modify(|n| *n += 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Running a scenario

/// Runs `scenario` with an overall bound of [`TEST_TIMEOUT`].
pub async fn bounded<F: std::future::Future<Output = ()>>(name: &str, scenario: F) {
    let start = Instant::now();
    if tokio::time::timeout(TEST_TIMEOUT, scenario).await.is_err() {
        panic!("{name} did not finish within {TEST_TIMEOUT:?}");
    }
    eprintln!("{name}: {:.1} s", start.elapsed().as_secs_f64());
}
