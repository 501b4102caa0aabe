//! The real `chat-server` binary serving a `--web-root` that holds more than regular files: a
//! FIFO (which, opened for reading, waits for a writer), a socket, a `.gz` sibling that is a
//! FIFO. Each is answered `404` at once however often it is asked for, the page loads beside
//! them, and SIGTERM still ends the server within its bound.

#![cfg(unix)]

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use chat_tests::{Server, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// How long any one answer may take: the files are local and the machine is otherwise idle.
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// GETs of things that are not files: more than the 256 HTTP connections the server serves at
/// once, so that any left hanging would stop the listener. They go in waves of [`WAVE`] at
/// once: 300 connections at once from one address would overflow the listener's places, and
/// the door then puts out the newest waiting ones, which is another test's business.
const GETS: usize = 300;
const WAVE: usize = 100;
/// Graceful shutdown ends within this (the README's "Flags" section, `SHUTDOWN_GRACE` in
/// server-native/src/server.rs and `BLOCKING_GRACE` in its main.rs): 5 s for connections to
/// take their last lines, then 1 s for blocking work still running.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(6);

fn mkfifo(path: &Path) {
    let name = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temporary path");
    // SAFETY: `name` is a NUL-terminated path that lives across the call.
    let made = unsafe { libc::mkfifo(name.as_ptr(), 0o644) };
    assert_eq!(made, 0, "mkfifo {}", path.display());
}

/// One `GET` (with `Connection: close` and `extra` headers): the status line, the headers and
/// the body, or what went wrong, within [`ANSWER_WAIT`].
async fn get(http: SocketAddr, path: &str, extra: &str) -> Result<(String, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(http)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n{extra}\r\n",
            http.port()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        match answer.split_once("\r\n\r\n") {
            Some((head, body)) => Ok((head.to_owned(), body.to_owned())),
            None => Err(format!("not an HTTP answer: {answer:?}")),
        }
    };
    tokio::time::timeout(ANSWER_WAIT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {ANSWER_WAIT:?}")))
}

#[tokio::test]
async fn fifos_and_sockets_under_the_web_root_get_404_at_once_and_sigterm_still_ends_the_server() {
    let root = TempDir::new("fifo-www");
    std::fs::write(root.join("index.html"), "<p>the web client</p>").unwrap();
    std::fs::write(root.join("app.js"), "export{}").unwrap();
    mkfifo(&root.join("app.js.gz"));
    mkfifo(&root.join("pipe"));
    mkfifo(&root.join("page.html"));
    std::fs::create_dir(root.join("dir")).unwrap();
    mkfifo(&root.join("dir/index.html"));
    let _socket = UnixListener::bind(root.join("socket")).expect("a socket in the web root");
    let mut server = Server::command()
        .args(["--web-root", root.path().to_str().unwrap()])
        .exit_wait(SHUTDOWN_BOUND)
        .start()
        .await;
    let http = server.http;

    let mut slowest = Duration::ZERO;
    for wave in 0..GETS / WAVE {
        let mut gets = JoinSet::new();
        for i in wave * WAVE..(wave + 1) * WAVE {
            let path = ["/pipe", "/page.html", "/dir/", "/socket"][i % 4];
            gets.spawn(async move {
                let start = Instant::now();
                (path, get(http, path, "").await, start.elapsed())
            });
        }
        while let Some(done) = gets.join_next().await {
            let (path, answer, took) = done.expect("the GET task does not panic");
            let (head, _) = answer.unwrap_or_else(|e| panic!("GET {path}: {e}"));
            assert!(
                head.starts_with("HTTP/1.1 404 Not Found\r\n"),
                "{path}: {head}"
            );
            slowest = slowest.max(took);
        }
    }
    eprintln!("{GETS} GETs of FIFOs and a socket, all 404, the slowest in {slowest:?}");

    // The page beside them, and a file whose `.gz` sibling is a FIFO: the plain file instead.
    let (head, body) = get(http, "/", "").await.expect("the page loads");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "<p>the web client</p>");
    let (head, body) = get(http, "/app.js", "Accept-Encoding: gzip\r\n")
        .await
        .expect("app.js loads");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert_eq!(body, "export{}");
    let (head, body) = get(http, "/healthz", "").await.expect("the health check");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "ok\n");

    let start = Instant::now();
    server.signal("TERM");
    assert!(server.wait_exit().await.success());
    eprintln!("SIGTERM to exit: {:?}", start.elapsed());
}
