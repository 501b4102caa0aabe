//! Child processes at a low level: their output read by a thread so that every read can time
//! out, their exit waited for until a deadline, signals, and a free port for one to bind.

use std::io::Read;
use std::net::TcpListener as StdTcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// A free loopback port (bound, read and released; good enough for a child to bind next).
pub fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Sends `signal` (`-TERM`, `-KILL`; a negative `pid` is a process group) with kill(1);
/// whether it was delivered.
pub(crate) fn send_signal(pid: i32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, "--", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Every process whose command line or environment contains `needle`.
pub(crate) fn processes_mentioning(needle: &str) -> Vec<i32> {
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

/// A child's standard output (or error), collected by a thread into a channel.
pub(crate) struct ChildOutput {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    closed: bool,
}

impl ChildOutput {
    pub(crate) fn collect(mut from: impl Read + Send + 'static) -> ChildOutput {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        ChildOutput { rx, closed: false }
    }

    /// The next chunk, `None` at the end, `Err` when nothing came before `deadline`.
    pub(crate) async fn next(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, ()> {
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

    /// Everything until the end, or `None` if it has not ended by `deadline`.
    pub(crate) async fn until_end(&mut self, deadline: Instant) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(bytes) = self.next(deadline).await.ok()? {
            all.extend_from_slice(&bytes);
        }
        Some(all)
    }
}

/// Polls until `child` exits, at most until `deadline`.
pub(crate) async fn wait_exit(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
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
