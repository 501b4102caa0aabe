//! A real Redis (Debian's `redis-server`) for the cluster tests: a child process of the test on
//! a free port of its own (never 6379, where a system service may listen), with a temporary
//! directory of its own, persisting nothing unless a test asks; paused, resumed, killed and
//! started again on the same port by its pid; and a small blocking RESP client to ask it
//! anything (`INFO commandstats`, `CONFIG SET`, `XLEN`, `DEBUG SLEEP`). Killed when dropped,
//! also when a test panics.
//!
//! Everything here blocks the calling thread, briefly: starting waits (at most [`WAIT`]) for
//! the first `PONG`, and each command for its answer.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::child::{free_port, send_signal};
use crate::prerequisites::REDIS_SERVER;
use crate::scenario::WAIT;
use crate::temp::TempDir;

/// Redis's usual port: a system service may hold it, so the tests never take it.
const DEFAULT_PORT: u16 = 6379;
/// What the server writes, its log and anything on its standard output and error, in its
/// directory.
const OUTPUT: &str = "redis.out";

/// One answer of Redis, as RESP2 encodes it.
#[derive(Clone, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: Redis refused the command (the text after the `-`).
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$5 hello`: bytes, usually text.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`: no value.
    Nil,
    /// `*2 ...`.
    Array(Vec<RespValue>),
}

impl RespValue {
    /// The text of a simple string, or of a bulk string (lossy UTF-8).
    pub fn text(&self) -> Option<String> {
        match self {
            RespValue::Simple(s) => Some(s.clone()),
            RespValue::Bulk(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }

    /// The number of an integer reply, or of a simple or bulk string holding one.
    pub fn integer(&self) -> Option<i64> {
        match self {
            RespValue::Integer(n) => Some(*n),
            _ => self.text()?.trim().parse().ok(),
        }
    }

    /// The items of an array reply.
    pub fn array(&self) -> Option<&[RespValue]> {
        match self {
            RespValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The message of an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            RespValue::Error(message) => Some(message),
            _ => None,
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, RespValue::Nil)
    }

    /// Whether it is the simple string `OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, RespValue::Simple(s) if s == "OK")
    }
}

impl fmt::Debug for RespValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespValue::Simple(s) => write!(f, "+{s}"),
            RespValue::Error(s) => write!(f, "-{s}"),
            RespValue::Integer(n) => write!(f, ":{n}"),
            RespValue::Bulk(bytes) => write!(f, "{:?}", String::from_utf8_lossy(bytes)),
            RespValue::Nil => write!(f, "nil"),
            RespValue::Array(items) => f.debug_list().entries(items).finish(),
        }
    }
}

/// One connection to a Redis, speaking RESP in blocking code: for a test that needs a
/// connection of its own (`SUBSCRIBE`, `CLIENT` commands, a `MULTI`), or a short timeout.
pub struct RespConnection {
    reader: BufReader<TcpStream>,
}

impl RespConnection {
    /// Connects to `addr`; each later read and write may take at most `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<RespConnection> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        let mut connection = RespConnection {
            reader: BufReader::new(stream),
        };
        connection.set_timeout(timeout)?;
        Ok(connection)
    }

    /// How long each read and write may take from now on.
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let stream = self.reader.get_ref();
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))
    }

    /// Sends one command (each argument a bulk string) without reading the answer.
    pub fn send(&mut self, args: &[&str]) -> io::Result<()> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request)
    }

    /// The next value Redis sends: an answer, or a message of a subscription.
    pub fn read(&mut self) -> io::Result<RespValue> {
        read_value(&mut self.reader)
    }

    /// Sends one command and reads its answer.
    pub fn command(&mut self, args: &[&str]) -> io::Result<RespValue> {
        self.send(args)?;
        self.read()
    }
}

/// Reads one RESP2 value.
fn read_value(reader: &mut impl BufRead) -> io::Result<RespValue> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "Redis closed the connection",
        ));
    }
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(invalid(&line, "a line not ended by CRLF"));
    };
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| invalid(line, "an empty line"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    let number = || {
        text.parse::<i64>()
            .map_err(|_| invalid(line, "a length or integer that is not a number"))
    };
    match kind {
        b'+' => Ok(RespValue::Simple(text)),
        b'-' => Ok(RespValue::Error(text)),
        b':' => Ok(RespValue::Integer(number()?)),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(RespValue::Nil);
            };
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes)?;
            if !bytes.ends_with(b"\r\n") {
                return Err(invalid(line, "a bulk string not ended by CRLF"));
            }
            bytes.truncate(len);
            Ok(RespValue::Bulk(bytes))
        }
        b'*' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(RespValue::Nil);
            };
            let items = (0..len)
                .map(|_| read_value(reader))
                .collect::<io::Result<_>>()?;
            Ok(RespValue::Array(items))
        }
        _ => Err(invalid(line, "an unknown RESP type")),
    }
}

fn invalid(line: &[u8], what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "Redis sent {what}: {:?}",
            String::from_utf8_lossy(line).trim_end()
        ),
    )
}

/// A running `redis-server`, `--port P --bind 127.0.0.1 --save '' --appendonly no
/// --enable-debug-command local` on a free port P (never 6379) with its own directory as
/// `--dir`, and any options a test adds; killed (SIGKILL, by its pid) when dropped.
pub struct RedisServer {
    port: u16,
    /// Its `--dir`, kept across [`RedisServer::restart`], with its output in `redis.out`.
    dir: TempDir,
    /// The options after the defaults, for every start.
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts Redis persisting nothing, and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts Redis with `args` after the default options (which they may override, such as
    /// `--appendonly yes --appendfsync everysec`), and waits until it answers `PING`.
    pub fn start_with(args: &[&str]) -> RedisServer {
        let mut redis = RedisServer {
            port: DEFAULT_PORT,
            dir: TempDir::new("redis"),
            extra: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        // A port free when looked at may be taken before Redis binds it: then another one.
        let mut failure = String::new();
        for _attempt in 0..3 {
            redis.port = free_port();
            while redis.port == DEFAULT_PORT {
                redis.port = free_port();
            }
            match redis.spawn_and_wait() {
                Ok(()) => return redis,
                Err(why) => failure = why,
            }
        }
        panic!("{failure}");
    }

    /// Starts the process with this port, directory and options, and waits until it answers
    /// `PING`; or says why it did not.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let output = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(OUTPUT))
            .map_err(|e| format!("cannot open {OUTPUT}: {e}"))?;
        let errors = output
            .try_clone()
            .map_err(|e| format!("cannot open {OUTPUT}: {e}"))?;
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // `DEBUG SLEEP` and the like, which Redis 7 refuses by default.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .map_err(|e| format!("cannot start {REDIS_SERVER}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited with {status} at start; its output:\n{}",
                    self.port,
                    self.output()
                ));
            }
            let pong = self
                .try_command(&["PING"], Duration::from_millis(500))
                .is_ok_and(|answer| answer == RespValue::Simple("PONG".to_owned()));
            if pong {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {WAIT:?}; its output:\n{}",
                    self.port,
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/0`, for `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its `--dir`, where an RDB or AOF file goes when a test asks for one.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its process id; panics if it is not running (killed and not started again).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("Redis is running").id()
    }

    /// Whether the process is still running (a paused one is).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Everything it wrote so far, its log included, across restarts.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join(OUTPUT)).unwrap_or_default()
    }

    /// SIGSTOP: it holds its connections but answers nothing until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid();
        assert!(
            send_signal(pid as i32, signal),
            "kill {signal} {pid} (redis-server)"
        );
    }

    /// SIGKILL, and waits until it is gone; nothing if it is not running. Its port is free
    /// again (and its directory kept) for [`RedisServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL to its pid, which also ends a paused process.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if it is running, then starts it again on the same port with the same
    /// directory and options (so with `--appendonly yes` it reads back its AOF, and with the
    /// defaults it comes back empty), and waits until it answers `PING`.
    pub fn restart(&mut self) {
        self.kill();
        // The port was just released; a client's connection may still hold it for an instant.
        let deadline = Instant::now() + WAIT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(failure) if Instant::now() >= deadline => panic!("restart: {failure}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A connection of its own, with reads and writes bounded by `timeout`.
    pub fn connect(&self, timeout: Duration) -> io::Result<RespConnection> {
        RespConnection::connect(self.addr(), timeout)
    }

    /// Runs one command on a connection of its own and returns the answer, an error reply
    /// ([`RespValue::Error`]) included; panics if Redis does not answer within [`WAIT`].
    pub fn command(&self, args: &[&str]) -> RespValue {
        self.try_command(args, WAIT)
            .unwrap_or_else(|e| panic!("redis {}: {e}", args.join(" ")))
    }

    /// Runs one command on a connection of its own, connecting, writing and reading within
    /// `timeout` each: `Err` (`WouldBlock` or `TimedOut`) from a paused Redis.
    pub fn try_command(&self, args: &[&str], timeout: Duration) -> io::Result<RespValue> {
        self.connect(timeout)?.command(args)
    }

    /// `INFO SECTION`'s text.
    pub fn info(&self, section: &str) -> String {
        let answer = self.command(&["INFO", section]);
        answer
            .text()
            .unwrap_or_else(|| panic!("INFO {section}: {answer:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<RespValue> {
        read_value(&mut Cursor::new(bytes.to_vec()))
    }

    #[test]
    fn every_resp2_type_is_read() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), RespValue::Simple("OK".into()));
        assert_eq!(
            parse(b"-ERR unknown command\r\n").unwrap(),
            RespValue::Error("ERR unknown command".into())
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), RespValue::Integer(-42));
        assert_eq!(
            parse(b"$8\r\na\r\nb c d\r\n").unwrap(),
            RespValue::Bulk(b"a\r\nb c d".to_vec())
        );
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), RespValue::Bulk(Vec::new()));
        assert_eq!(parse(b"$-1\r\n").unwrap(), RespValue::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), RespValue::Nil);
        assert_eq!(
            parse(b"*3\r\n:1\r\n*1\r\n$1\r\nx\r\n$-1\r\n").unwrap(),
            RespValue::Array(vec![
                RespValue::Integer(1),
                RespValue::Array(vec![RespValue::Bulk(b"x".to_vec())]),
                RespValue::Nil,
            ])
        );
    }

    #[test]
    fn what_is_not_resp_is_an_error() {
        for bytes in [
            &b""[..],
            b"+OK\n",
            b"?x\r\n",
            b":x\r\n",
            b"$3\r\nabcd\r\n",
            b"*2\r\n:1\r\n",
        ] {
            assert!(
                parse(bytes).is_err(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn accessors() {
        assert_eq!(RespValue::Bulk(b"12".to_vec()).integer(), Some(12));
        assert_eq!(
            RespValue::Simple("PONG".into()).text().as_deref(),
            Some("PONG")
        );
        assert!(RespValue::Simple("OK".into()).is_ok());
        assert_eq!(
            RespValue::Error("NOSCRIPT x".into()).error(),
            Some("NOSCRIPT x")
        );
        assert_eq!(RespValue::Nil.text(), None);
        assert_eq!(RespValue::Array(vec![]).array(), Some(&[][..]));
    }
}
