//! The real `chat-server` binary as a child process: how it is started ([`ServerCommand`]: on
//! free ports unless told otherwise, with exactly the flags and variables a test gives and none
//! of the shell's `CHAT_*`), the addresses it prints, its standard error, signals, a bounded
//! exit, starting again on the same addresses, and users joining it through `nc` or
//! `openssl s_client`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::child::{ChildOutput, send_signal, wait_exit};
use crate::line_process::{LineProcess, Nc};
use crate::load;
use crate::paths::server_binary;
use crate::scenario::WAIT;

/// The address both listeners get unless a test says otherwise: any free port.
const ANY_PORT: &str = "127.0.0.1:0";

/// Where the server's standard error goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stderr {
    /// To the test's own standard error.
    Inherit,
    /// Read by a thread, echoed as `[server] LINE` and kept for [`Server::stderr`].
    Keep,
    /// A pipe whose reading end is closed once the server has printed its addresses, as
    /// under `chat-server 2>&1 | tee` after the `tee` has gone.
    Closed,
}

/// How to start `chat-server`: by default the binary cargo built for this run
/// ([`server_binary`]) with `--tcp 127.0.0.1:0 --http 127.0.0.1:0`, the test's `RUST_LOG`
/// (else `warn`), its standard error inherited, and no `CHAT_*` variable of the shell, which
/// would set every flag a test leaves out.
#[derive(Clone, Debug)]
pub struct ServerCommand {
    binary: PathBuf,
    /// A program that execs the server (`prlimit --nofile=64:64 --`), so that the process the
    /// test holds is the server.
    wrapper: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Whether `--tcp` and `--http` are given (free ports, or the first run's addresses).
    port_flags: bool,
    /// `RUST_LOG`, when the test sets it.
    log: Option<String>,
    stderr: Stderr,
    /// How long the server may take to exit.
    exit_wait: Duration,
}

impl ServerCommand {
    /// The server at `binary` (a release build, for the load generator).
    pub fn of(binary: impl Into<PathBuf>) -> ServerCommand {
        ServerCommand {
            binary: binary.into(),
            wrapper: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            port_flags: true,
            log: None,
            stderr: Stderr::Inherit,
            exit_wait: WAIT,
        }
    }

    /// These flags, after the addresses.
    pub fn args<I, S>(mut self, args: I) -> ServerCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The environment variable `name` set to `value` (the shell's `CHAT_*` are not passed).
    pub fn env(mut self, name: &str, value: &str) -> ServerCommand {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// [`ServerCommand::env`] for each pair.
    pub fn envs(self, vars: &[(&str, &str)]) -> ServerCommand {
        vars.iter()
            .fold(self, |command, (name, value)| command.env(name, value))
    }

    /// No `--tcp` or `--http`: the test gives the addresses itself, as flags or variables.
    pub fn without_port_flags(mut self) -> ServerCommand {
        self.port_flags = false;
        self
    }

    /// Runs the server through `wrapper`, which must exec it (`prlimit --nofile=64:64 --`).
    pub fn wrapped_in(mut self, wrapper: &[&str]) -> ServerCommand {
        self.wrapper = wrapper.iter().map(|w| (*w).to_owned()).collect();
        self
    }

    /// `RUST_LOG=filter`, whatever the test's own `RUST_LOG` says: for a test that reads the log.
    pub fn log(mut self, filter: &str) -> ServerCommand {
        self.log = Some(filter.to_owned());
        self
    }

    /// Keeps its standard error for [`Server::stderr`] and [`Server::stop`], echoing each line
    /// as `[server] LINE` (plain text: the server colours its diagnostics on a terminal only).
    pub fn keep_stderr(mut self) -> ServerCommand {
        self.stderr = Stderr::Keep;
        self
    }

    /// Its standard error a pipe that nobody reads from once it has printed its addresses.
    pub fn close_stderr(mut self) -> ServerCommand {
        self.stderr = Stderr::Closed;
        self
    }

    /// How long [`Server::stop`] and [`Server::wait_exit`] wait for it to exit ([`WAIT`]).
    pub fn exit_wait(mut self, wait: Duration) -> ServerCommand {
        self.exit_wait = wait;
        self
    }

    /// Starts it and reads the addresses it prints; panics saying why if it cannot.
    pub async fn start(self) -> Server {
        self.try_start().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts it and reads the addresses it prints, `tcp listening on ADDR` and
    /// `http listening on ADDR`, within [`WAIT`].
    pub async fn try_start(self) -> Result<Server, String> {
        let stderr = Arc::new(Mutex::new(String::new()));
        let spawned = self.spawn(None, &stderr).await?;
        Ok(Server {
            child: Some(spawned.child),
            tcp: spawned.tcp,
            http: spawned.http,
            command: self,
            stderr,
            stderr_readers: spawned.stderr_reader.into_iter().collect(),
        })
    }

    /// Runs it to its exit, within its exit wait, and returns what it printed: for `--help`
    /// and for settings it must refuse. Panics if it is still running by then.
    pub async fn output(self) -> std::process::Output {
        let mut command = self.command(None);
        command.stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let mut stdout = ChildOutput::collect(child.stdout.take().expect("piped stdout"));
        let mut stderr = ChildOutput::collect(child.stderr.take().expect("piped stderr"));
        let deadline = Instant::now() + self.exit_wait;
        let (Some(status), Some(stdout), Some(stderr)) = (
            wait_exit(&mut child, deadline).await,
            stdout.until_end(deadline).await,
            stderr.until_end(deadline).await,
        ) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} was still running after {:?}", self.exit_wait);
        };
        std::process::Output {
            status,
            stdout,
            stderr,
        }
    }

    /// The process to spawn, on `addrs` when given (a restart) or free ports.
    fn command(&self, addrs: Option<(SocketAddr, SocketAddr)>) -> Command {
        let mut command = match self.wrapper.split_first() {
            None => Command::new(&self.binary),
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&self.binary);
                command
            }
        };
        let shell_chat_vars = std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| name.to_string_lossy().starts_with("CHAT_"));
        for name in shell_chat_vars {
            command.env_remove(name);
        }
        if self.port_flags {
            let (tcp, http) = addrs.map_or((ANY_PORT.to_owned(), ANY_PORT.to_owned()), |(t, h)| {
                (t.to_string(), h.to_string())
            });
            command.args(["--tcp", &tcp, "--http", &http]);
        }
        command.args(&self.args);
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        let log = self
            .log
            .clone()
            .unwrap_or_else(|| std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()));
        command.env("RUST_LOG", log);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match self.stderr {
                Stderr::Inherit => Stdio::inherit(),
                Stderr::Keep | Stderr::Closed => Stdio::piped(),
            });
        command
    }

    /// Spawns the server and reads its two address lines; kills it if they do not come.
    async fn spawn(
        &self,
        addrs: Option<(SocketAddr, SocketAddr)>,
        kept: &Arc<Mutex<String>>,
    ) -> Result<Spawned, String> {
        let mut command = self.command(addrs);
        let mut child = command
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.binary.display()))?;
        let stderr_reader = match self.stderr {
            Stderr::Keep => {
                let stderr = child.stderr.take().expect("piped stderr");
                Some(keep_lines(stderr, kept.clone()))
            }
            Stderr::Inherit | Stderr::Closed => None,
        };
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
        let read = async {
            let tcp = read_addr(&mut rx, "tcp listening on ", deadline).await?;
            let http = read_addr(&mut rx, "http listening on ", deadline).await?;
            Ok::<_, String>((tcp, http))
        };
        match read.await {
            Ok((tcp, http)) => {
                if self.stderr == Stderr::Closed {
                    drop(child.stderr.take());
                }
                Ok(Spawned {
                    child,
                    tcp,
                    http,
                    stderr_reader,
                })
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let said = match stderr_reader {
                    Some(reader) => {
                        // It has the rest of the pipe to read, which closed with the server.
                        let deadline = Instant::now() + Duration::from_secs(1);
                        while !reader.is_finished() && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        kept.lock().unwrap_or_else(PoisonError::into_inner).clone()
                    }
                    None => "(see above)".to_owned(),
                };
                Err(format!("{command:?}: {e}; its standard error: {said}"))
            }
        }
    }
}

/// A server process just started, with the addresses it printed.
struct Spawned {
    child: Child,
    tcp: SocketAddr,
    http: SocketAddr,
    stderr_reader: Option<JoinHandle<()>>,
}

/// Reads `stderr` line by line in a thread, echoing each as `[server] LINE` and adding it to
/// `kept`.
fn keep_lines(
    stderr: impl std::io::Read + Send + 'static,
    kept: Arc<Mutex<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stderr = BufReader::new(stderr);
        let mut line = String::new();
        while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
            eprint!("[server] {line}");
            kept.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&line);
            line.clear();
        }
    })
}

/// Reads the server's next stdout line, `PREFIX ADDR`.
async fn read_addr(
    rx: &mut mpsc::UnboundedReceiver<String>,
    prefix: &str,
    deadline: Instant,
) -> Result<SocketAddr, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, rx.recv()).await {
        Ok(Some(line)) => line
            .strip_prefix(prefix)
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .ok_or_else(|| format!("it printed {line:?}, not {prefix}ADDR")),
        Ok(None) => Err(format!("it exited before printing {prefix:?}")),
        Err(_) => Err(format!("it did not print {prefix:?} within {WAIT:?}")),
    }
}

/// The real `chat-server` binary, run as a child process. Killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// The nc listener.
    pub tcp: SocketAddr,
    /// The HTTP (page and WebSocket) listener.
    pub http: SocketAddr,
    /// How it was started, to start it again.
    command: ServerCommand,
    /// Its standard error so far, when kept.
    stderr: Arc<Mutex<String>>,
    /// The threads reading it, one per run.
    stderr_readers: Vec<JoinHandle<()>>,
}

impl Server {
    /// How to start the server cargo built for this run ([`server_binary`]).
    pub fn command() -> ServerCommand {
        ServerCommand::of(server_binary())
    }

    /// Starts the server on free ports with these extra flags.
    pub async fn start(extra: &[&str]) -> Server {
        Server::command().args(extra).start().await
    }

    /// Starts the server with `--web-root DIR` and these extra flags.
    pub async fn with_page(web_root: &Path, extra: &[&str]) -> Server {
        let root = web_root.to_str().expect("UTF-8 path");
        Server::command()
            .args(["--web-root", root])
            .args(extra)
            .start()
            .await
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

    /// Its resident memory (`VmRSS` in `/proc/PID/status`), in KiB. Linux only.
    pub fn rss_kib(&self) -> u64 {
        load::rss_kib(self.pid()).expect("the server's VmRSS")
    }

    /// What the server wrote to its standard error so far, if it was started with
    /// [`ServerCommand::keep_stderr`].
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends it `signal` (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, signal: &str) {
        assert!(
            send_signal(self.pid() as i32, &format!("-{signal}")),
            "kill -{signal} {}",
            self.pid()
        );
    }

    /// Waits until it has exited, at most its exit wait ([`ServerCommand::exit_wait`]), and
    /// returns how; kills it and fails if it is still running then.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let wait = self.command.exit_wait;
        match wait_exit(&mut child, Instant::now() + wait).await {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chat-server did not exit within {wait:?}");
            }
        }
    }

    /// Sends SIGTERM and waits for a successful exit; returns all it wrote to its standard
    /// error when that is kept.
    pub async fn stop(&mut self) -> String {
        self.signal("TERM");
        let status = self.wait_exit().await;
        assert!(
            status.success(),
            "chat-server exited with {status}: {}",
            self.stderr()
        );
        // The readers end with the pipe, which closed when the server exited.
        let deadline = Instant::now() + WAIT;
        while !self.stderr_readers.iter().all(JoinHandle::is_finished) && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stderr()
    }

    /// Starts the server again on the same two addresses, with the same flags.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        assert!(
            self.command.port_flags,
            "only a server started on free ports can be started on them again"
        );
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .command
                .spawn(Some((self.tcp, self.http)), &self.stderr)
                .await
            {
                Ok(spawned) => {
                    self.child = Some(spawned.child);
                    self.stderr_readers.extend(spawned.stderr_reader);
                    return;
                }
                // A port may be briefly unavailable; try again until the deadline.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!(
                    "cannot restart chat-server on {} and {}: {e}",
                    self.tcp, self.http
                ),
            }
        }
    }

    /// Whether it was started with a certificate (and so speaks TLS on both listeners).
    pub fn tls(&self) -> bool {
        self.command.args.iter().any(|flag| flag == "--tls-cert")
            || self
                .command
                .env
                .iter()
                .any(|(name, _)| name == "CHAT_TLS_CERT")
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

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
