//! What the in-process test files share: the server's library run on port 0 in the test's
//! own runtime, and a line client whose every wait has a deadline, so that no failure can hang
//! a test. (The tests of the real binary, with `nc`, `openssl` and temporary directories, are
//! in the `chat-tests` package, `tests/tests/`, with its harness.)

#![allow(dead_code)] // Each test file uses a different part of this.

use std::net::SocketAddr;
use std::time::Duration;

use chat_server::{Config, Listeners};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The server's library running in this test's runtime, on free ports; `run` ends with
/// [`TestServer::shutdown`] or when the runtime does.
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

/// A line client over loopback, every wait bounded by [`WAIT`].
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

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.1, 127.0.0.2, ...):
/// each is an address of its own to the server.
pub async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.expect("connect")
}

/// Everything the server sends until it closes.
pub async fn read_all(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the server closes in time")
        .expect("read");
    String::from_utf8_lossy(&all).into_owned()
}
