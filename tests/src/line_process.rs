//! Programs a user types into, as child processes read line by line with bounded waits: `nc`,
//! `openssl s_client`, and any other (the Python WebSocket client).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::child::{ChildOutput, wait_exit};
use crate::prerequisites::OPENSSL;
use crate::scenario::WAIT;

/// A child process with piped stdin and stdout: what it printed is kept in `seen`
/// until an expectation consumes it. Killed when dropped.
pub struct LineProcess {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    output: ChildOutput,
    /// Printed and not yet consumed by an expectation.
    pub seen: String,
    /// How long an expectation may take: [`WAIT`] unless [`LineProcess::with_wait`] says.
    wait: Duration,
}

impl LineProcess {
    pub fn spawn(label: &str, command: &mut Command) -> LineProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {label} ({command:?}): {e}"));
        let stdin = child.stdin.take();
        let output = ChildOutput::collect(child.stdout.take().expect("piped stdout"));
        LineProcess {
            label: label.to_owned(),
            child,
            stdin,
            output,
            seen: String::new(),
            wait: WAIT,
        }
    }

    /// The same, with expectations that may take up to `wait` each.
    pub fn with_wait(mut self, wait: Duration) -> LineProcess {
        self.wait = wait;
        self
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
                "{}: timed out after {:?} waiting for {why}; it printed {:?}",
                self.label, self.wait, self.seen
            ),
        }
    }

    /// Waits until the output contains `want`; returns everything up to and including it and
    /// consumes it.
    pub async fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + self.wait;
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
        let deadline = Instant::now() + self.wait;
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
        let deadline = Instant::now() + self.wait;
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
        let deadline = Instant::now() + self.wait;
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
