//! What the test files share: a test server in-process on port 0 and a line client with
//! timeouts, and for the tests of the real binary the `chat-server` process, plain TCP peers,
//! the programs users type into (`nc`, `openssl s_client`) and temporary directories. Every
//! wait has a deadline, so that no failure can hang a test.

#![allow(dead_code)] // Each test file uses a different part of this.

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use chat_server::{Config, Listeners};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub tcp: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server with these extra flags, on free ports.
    pub async fn start(flags: &[&str]) -> TestServer {
        let mut args = vec![
            "chat-server",
            "--tcp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(flags);
        // Flags only: a `CHAT_*` variable in the shell must not change what the tests see.
        let config = Config::from_args_only(args).expect("valid test flags");
        let listeners = Listeners::bind(&config).await.expect("bind port 0");
        let (tcp, http) = listeners.local_addrs().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(chat_server::run(config, listeners, async {
            let _ = stopped.await;
        }));
        TestServer {
            tcp,
            http,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Triggers graceful shutdown and waits until `run` returns.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("shut down once");
        tokio::time::timeout(WAIT, task)
            .await
            .expect("shutdown finishes in time")
            .expect("run does not panic")
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.tcp).await
    }

    /// Connects, answers the prompt with `name`, and reads up to the end of the welcome.
    pub async fn join(&self, name: &str) -> Client {
        let mut c = self.connect().await;
        c.expect_prompt().await;
        c.send(name).await;
        let welcome = c.line().await;
        assert!(
            welcome.starts_with(&format!("Welcome, {name}!")),
            "{welcome:?}"
        );
        assert_eq!(c.line().await, "Type /help for the list of commands.");
        c
    }
}

pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).await.expect("connect"))
    }

    /// A client over a stream already connected.
    pub fn from_stream(stream: TcpStream) -> Client {
        let (r, w) = stream.into_split();
        Client {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// The next line, without its `\n`.
    pub async fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_until(b'\n', &mut buf))
            .await
            .expect("a line arrives in time")
            .expect("read");
        assert!(n > 0, "connection closed while a line was expected");
        assert_eq!(buf.pop(), Some(b'\n'), "line {buf:?} ends with a newline");
        String::from_utf8(buf).expect("the server sends UTF-8")
    }

    /// Skips lines until one equals `want`; returns those skipped.
    pub async fn line_eq(&mut self, want: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.line().await;
            if line == want {
                return skipped;
            }
            skipped.push(line);
        }
    }

    pub async fn expect_prompt(&mut self) {
        let mut buf = [0u8; 17];
        tokio::time::timeout(WAIT, self.reader.read_exact(&mut buf))
            .await
            .expect("the prompt arrives in time")
            .expect("read the prompt");
        assert_eq!(&buf, b"Enter your name: ");
    }

    /// Waits for the server to close the connection; returns anything it sent first.
    pub async fn closed(&mut self) -> String {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, self.reader.read_to_end(&mut rest))
            .await
            .expect("the server closes in time")
            .expect("read to the end");
        String::from_utf8_lossy(&rest).into_owned()
    }

    /// Nothing arrives within `quiet`.
    pub async fn silent_for(&mut self, quiet: Duration) {
        let mut byte = [0u8; 1];
        if let Ok(read) = tokio::time::timeout(quiet, self.reader.read(&mut byte)).await {
            panic!("expected silence, got {read:?} {:?}", byte[0] as char);
        }
    }
}

/// Flags that put both listeners on free ports; the server prints the ports it got.
pub const FREE_PORTS: [&str; 4] = ["--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"];

/// A command for `program` without the shell's `CHAT_*` variables: the server would read them
/// for every flag a test leaves out.
pub fn hermetic(program: &str) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("CHAT_")) {
        command.env_remove(name);
    }
    command
}

/// A running `chat-server` process, killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    /// The addresses it printed.
    pub tcp: String,
    pub http: String,
    /// How long it may take to exit.
    wait: Duration,
    /// Its standard error so far when kept (see [`ServerProcess::keep_stderr`]), and the
    /// thread that reads it.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `chat-server` with exactly `args` and `env`; it logs warnings to the test's
    /// standard error.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::spawn(
            hermetic(env!("CARGO_BIN_EXE_chat-server"))
                .args(args)
                .envs(env.iter().copied())
                .env("RUST_LOG", "warn"),
            WAIT,
        )
    }

    /// [`ServerProcess::start`] with [`FREE_PORTS`] before `args`.
    pub fn on_free_ports(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let mut all = FREE_PORTS.to_vec();
        all.extend_from_slice(args);
        ServerProcess::start(&all, env)
    }

    /// Spawns `command` with its standard output piped and reads the two lines the server
    /// prints first, `tcp listening on ADDR` and `http listening on ADDR`; `wait` bounds how
    /// long [`ServerProcess::wait_exit`] waits.
    pub fn spawn(command: &mut Command, wait: Duration) -> ServerProcess {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {command:?}: {err}"));
        let mut out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = |prefix: &str| {
            let mut line = String::new();
            out.read_line(&mut line).expect("read the address line");
            line.trim_end()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{line:?} starts with {prefix:?}"))
                .to_owned()
        };
        let tcp = line("tcp listening on ");
        let http = line("http listening on ");
        ServerProcess {
            child,
            tcp,
            http,
            wait,
            stderr: Arc::default(),
            stderr_reader: None,
        }
    }

    /// Reads its standard error (which must be piped) in a thread from now on, echoing each
    /// line as `[server] LINE` and keeping it for [`ServerProcess::stderr`] and
    /// [`ServerProcess::stop`].
    pub fn keep_stderr(mut self) -> ServerProcess {
        let mut err = std::io::BufReader::new(self.child.stderr.take().expect("piped stderr"));
        let kept = self.stderr.clone();
        self.stderr_reader = Some(thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).is_ok_and(|n| n > 0) {
                eprint!("[server] {line}");
                kept.lock().unwrap().push_str(&line);
                line.clear();
            }
        }));
        self
    }

    /// What it has written to standard error so far, when that is kept.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends it `signal` (`TERM`, `HUP`, `KILL`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits until it has exited; fails if that takes longer than its `wait`.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < self.wait,
                "the server did not exit in time"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and a clean exit; returns all it wrote to standard error when that is kept.
    pub fn stop(&mut self) -> String {
        self.signal("TERM");
        let status = self.wait_exit();
        assert!(status.success(), "{status}: {}", self.stderr());
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().expect("the standard error reader");
        }
        self.stderr()
    }

    /// Its resident memory (`VmRSS` in `/proc/PID/status`), in KiB. Linux only.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain TCP client of the real server that reads what it sends into a string; reads and
/// writes time out after [`WAIT`].
pub struct Peer {
    pub stream: std::net::TcpStream,
    /// What it has received (and a test has not cleared).
    pub seen: String,
}

impl Peer {
    pub fn connect(addr: &str) -> Peer {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Peer {
            stream,
            seen: String::new(),
        }
    }

    /// Connects and joins as `name`.
    pub fn join(addr: &str, name: &str) -> Peer {
        let mut peer = Peer::connect(addr);
        peer.expect("Enter your name: ");
        peer.send(name);
        peer.expect(&format!("Welcome, {name}!"));
        peer.expect("Type /help for the list of commands.\n");
        peer
    }

    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// Reads until what was received contains `want`.
    pub fn expect(&mut self, want: &str) {
        let mut buf = [0u8; 4096];
        while !self.seen.contains(want) {
            let n = self
                .stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {want:?} after {:?}: {e}", self.seen));
            assert!(
                n > 0,
                "closed while waiting for {want:?} after {:?}",
                self.seen
            );
            self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// Everything else it receives until the server closes the connection.
    pub fn read_to_end(&mut self) -> String {
        let mut rest = String::new();
        self.stream.read_to_string(&mut rest).expect("read to end");
        rest
    }
}

/// A program a user types into (`nc`, `openssl s_client`), killed when dropped. Its output
/// is collected by a thread, so that every wait has a deadline.
pub struct Terminal {
    /// Who it is, for failures: `nc`, `s_client user alice`.
    who: String,
    pub child: Child,
    /// Dropping it is the end of input (Ctrl-D).
    pub stdin: Option<ChildStdin>,
    output: mpsc::Receiver<Vec<u8>>,
    /// What it has shown since the last expectation was met.
    pub seen: String,
    /// How long an expectation may take.
    wait: Duration,
}

impl Terminal {
    /// `nc HOST PORT` to `addr`.
    pub fn nc(addr: &str, wait: Duration) -> Terminal {
        let (host, port) = addr.rsplit_once(':').unwrap();
        Terminal::spawn("nc", Command::new(nc_path()).args([host, port]), wait)
    }

    /// Spawns `command` with its standard input and output piped.
    pub fn spawn(who: &str, command: &mut Command, wait: Duration) -> Terminal {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {who}: {err}"));
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, output) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            who: who.to_owned(),
            child,
            stdin,
            output,
            seen: String::new(),
            wait,
        }
    }

    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits until the screen so far contains `want`; returns everything seen up to it since
    /// the last expectation was met.
    pub fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + self.wait;
        while !self.seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!(
                    "{} never showed {want:?}; it showed {:?}",
                    self.who, self.seen
                ),
            }
        }
        let end = self.seen.find(want).unwrap() + want.len();
        self.seen.drain(..end).collect()
    }

    /// Waits for the program to exit by itself (the server closed the connection).
    pub fn exits(&mut self) {
        let deadline = Instant::now() + self.wait;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} is still running after the server closed",
                self.who
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nc_path() -> PathBuf {
    ["/usr/bin/nc", "/bin/nc", "/usr/local/bin/nc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "nc is installed (Debian: apt-get install netcat-openbsd; `cargo xtask test` does it)",
        )
}

/// A directory of its own for one test, `chat-NAME-PID` in the system's temporary directory:
/// emptied when made, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("chat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
