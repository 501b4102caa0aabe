//! The real `chat-server` binary as a child process: started on free ports, stopped with
//! SIGTERM, started again on the same addresses, and users joining it through `nc` or
//! `openssl s_client`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::child::{send_signal, wait_exit};
use crate::line_process::{LineProcess, Nc};
use crate::paths::server_binary;
use crate::scenario::WAIT;

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
