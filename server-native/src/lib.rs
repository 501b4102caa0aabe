//! `chat-server`: the chat room of `chat-core`, served with tokio over TCP (nc, telnet) and
//! HTTP (the browser page, and WebSocket on `/ws`).
//!
//! # Layout
//!
//! - [`config`]: the command-line flags and their environment variables.
//! - [`run`] (this file): binds nothing itself; takes bound listeners and a shutdown future,
//!   accepts connections, and shuts down gracefully. Tests bind `127.0.0.1:0` and call it.
//! - `door`: what happens at `accept`: the per-address limits and their refusals, and the
//!   descriptor kept in reserve for refusing newcomers when the process has none left.
//! - `room_task`: the one task that owns the `Room`, feeds it and routes its outputs.
//! - `connection`: one TCP connection: a line reader and a batching writer.
//! - `http`: the HTTP listener's answers, and the `/ws` upgrade.
//! - `websocket`: the upgrade's checks and one WebSocket connection: a reader and a batching
//!   writer with keepalive pings, in the same room as the TCP connections.
//! - `files`: the static files of `--web-root`.
//! - `tls`: `--tls-cert` and `--tls-key`, and the handshake each connection's task performs
//!   before anything else when they are given.
//! - [`log`]: the message log, JSON Lines written by a thread of its own.
//! - `metrics`: the counters, gauges and histogram of `/metrics`, and their hooks.
//!
//! The binary in `main.rs` only parses flags, binds, prints the addresses and waits for
//! Ctrl-C or SIGTERM.

pub mod config;
mod connection;
mod door;
mod files;
mod frames;
mod http;
pub mod log;
mod metrics;
mod room_task;
mod tls;
mod websocket;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chat_core::{ConnId, Room};
use futures_util::{Stream, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use door::{Door, Listener, Pass, Reserve};

pub use config::Config;
use log::MessageLog;
use metrics::{Metrics, Transport};
use tls::Tls;

/// Connections accepted beyond `--max-users` at once, so that the room can tell them it is
/// full; past that, the server stops accepting until some close.
const ADMISSION_SLACK: usize = 64;
/// HTTP requests served at once.
const MAX_HTTP: usize = 256;
/// How long shutdown waits for connections to take their last lines.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The longest pause after an accept error (out of file descriptors, say).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Connections the kernel may hold completed for each listener until they are accepted (it
/// caps this at `net.core.somaxconn`, 4096 on current Linux).
const LISTEN_BACKLOG: u32 = 4096;

/// The server's bound listeners, and the TLS both speak, if any.
pub struct Listeners {
    /// The line-protocol listener.
    pub tcp: TcpListener,
    /// The HTTP listener.
    pub http: TcpListener,
    tls: Option<Tls>,
}

impl Listeners {
    /// Reads the certificate and key of `config`, if any, then binds its addresses; the error
    /// names the flag whose file or address failed.
    pub async fn bind(config: &Config) -> io::Result<Listeners> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--tls-cert and --tls-key go together: give both or neither",
                ));
            }
        };
        let bind = |flag: &'static str, addr: String| async move {
            listen(&addr).await.map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("cannot listen on {addr} (--{flag}): {err}"),
                )
            })
        };
        Ok(Listeners {
            tcp: bind("tcp", config.tcp.clone()).await?,
            http: bind("http", config.http.clone()).await?,
            tls,
        })
    }

    /// Whether both listeners speak TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.tcp.local_addr()?, self.http.local_addr()?))
    }
}

/// Binds `addr` (a host name is resolved; the first address that binds wins) and listens with
/// a backlog of [`LISTEN_BACKLOG`]. The standard library's 128 is too small for a crowd
/// arriving at once: the kernel then drops SYNs, which come back only after a second or more,
/// and with SYN cookies a client can even be left believing it is connected to a connection
/// the server never had, waiting for a prompt that never comes.
async fn listen(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        // As `TcpListener::bind` does: a restarted server can bind while old connections of
        // its port are in TIME_WAIT.
        let bound = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(LISTEN_BACKLOG)
        });
        match bound {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

/// Serves the room on `listeners` until `shutdown` completes; then every client is told, the
/// connections are closed and the message log is flushed before this returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run_with_reopen(config, listeners, shutdown, futures_util::stream::pending()).await
}

/// [`run`], reopening the message log's path each time `reopen` yields (the binary feeds it
/// SIGHUP, for logrotate). With `--log`, the room starts with the log's last messages as its
/// history and numbers on after them.
pub async fn run_with_reopen(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reopen: impl Stream<Item = ()>,
) -> io::Result<()> {
    let (log, recent) = match config.log_options() {
        Some(options) => {
            let history = config.history as usize;
            let (log, recent) =
                tokio::task::spawn_blocking(move || MessageLog::open(options, history))
                    .await
                    .map_err(io::Error::other)??;
            tracing::info!(
                messages = recent.len(),
                "history read back from the message log"
            );
            (Some(Arc::new(log)), recent)
        }
        None => (None, Vec::new()),
    };
    let (tcp_addr, _) = listeners.local_addrs()?;
    let tls = listeners.tls.clone();
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (room_tx, room_rx) = mpsc::channel(1024);

    let metrics = Metrics::new(config.metrics == config::Switch::On);
    let mut room = Room::new(config.room_config());
    room.restore_history(recent);
    let max_queue = usize::try_from(config.max_queue).unwrap_or(usize::MAX);
    // Spawned, so that it runs on a worker thread: the connection tasks it wakes for every
    // delivery then go to that worker's own queue, where from the thread that runs this
    // function each wake would go through the runtime's shared queue and unpark a worker.
    let (room_log, room_stop, room_metrics) = (log.clone(), stop.clone(), metrics.clone());
    let room_task = tokio::spawn(async move {
        room_task::run(
            room,
            room_rx,
            room_stop,
            room_log.as_deref(),
            max_queue,
            room_metrics,
        )
        .await;
    });
    let room_task = async {
        if let Err(err) = room_task.await {
            if err.is_panic() {
                std::panic::resume_unwind(err.into_panic());
            }
        }
    };
    // Should this function be dropped before the end, the room still stops.
    let _stop_room = stop.clone().drop_guard();

    let max_line = config.max_line as usize;
    // Per-address limits, for both listeners together.
    let door = Door::new(config.admission_config(), metrics.clone());
    let admitted = Arc::new(Semaphore::new(config.max_users as usize + ADMISSION_SLACK));
    // Connection ids, unique across both listeners.
    let next_id = Arc::new(AtomicU64::new(1));
    let new_id = move || ConnId(next_id.fetch_add(1, Ordering::Relaxed));
    let tcp_tracker = tracker.clone();
    let tcp_room = room_tx.clone();
    let tcp_id = new_id.clone();
    let tcp_tls = tls.as_ref().map(|tls| tls.line.clone());
    let tcp_stop = stop.clone();
    let tcp_metrics = metrics.clone();
    // Each connection gets a clone of the room's sender; the room itself stops on `stop`.
    // Its TLS handshake, if any, happens in its own task, so that accepting never waits.
    let tcp = accept_loop(
        listeners.tcp,
        Listener::Line,
        admitted.clone(),
        door.clone(),
        &stop,
        move |stream, peer, permit, pass| {
            let conn = tcp_id();
            let room = tcp_room.clone();
            let (tls, stop) = (tcp_tls.clone(), tcp_stop.clone());
            let metrics = tcp_metrics.clone();
            tcp_tracker.spawn(async move {
                if let Some(stream) = tls::accept(tls.as_ref(), stream, peer, &stop).await {
                    let _open = metrics.open(Transport::Tcp);
                    connection::serve(stream, peer, conn, room, max_line, &metrics).await;
                }
                drop((permit, pass));
            });
        },
    );
    let site = Arc::new(http::Site {
        tcp_addr: tcp_addr.to_string(),
        tls: tls.is_some(),
        web_root: config.web_root.clone(),
        ws: websocket::Settings {
            max_line,
            ping: (config.ws_ping > 0).then(|| Duration::from_secs(config.ws_ping)),
            origins: websocket::Origins::new(&config.allow_origin)
                .own_page_over_https(tls.is_some()),
            max_queue,
        },
        admitted,
        handshake_timeout: Duration::from_secs(config.handshake_timeout),
        metrics,
    });
    let http_slots = Arc::new(Semaphore::new(MAX_HTTP));
    let http_tls = tls.map(|tls| tls.http);
    let http_stop = stop.clone();
    let http = accept_loop(
        listeners.http,
        Listener::Http,
        http_slots,
        door,
        &stop,
        |stream, peer, permit, pass| {
            let site = site.clone();
            let room = room_tx.clone();
            let new_id = new_id.clone();
            let (tls, stop) = (http_tls.clone(), http_stop.clone());
            tracker.spawn(async move {
                let Some(stream) = tls::accept(tls.as_ref(), stream, peer, &stop).await else {
                    return;
                };
                let upgraded = http::serve(stream, &site).await;
                // A WebSocket holds a place among the admitted connections, not an HTTP slot.
                drop(permit);
                if let Some(upgraded) = upgraded {
                    let _open = site.metrics.open(Transport::WebSocket);
                    websocket::serve(upgraded, peer, new_id(), room, &site.ws, &site.metrics).await;
                }
                // The WebSocket counted among its address's connections until here.
                drop(pass);
            });
        },
    );

    let signal = async {
        shutdown.await;
        tracing::info!("shutting down");
        stop.cancel();
    };
    let reopen = async {
        let mut reopen = std::pin::pin!(reopen);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                next = reopen.next() => match (next, &log) {
                    (None, _) => return stop.cancelled().await,
                    (Some(()), Some(log)) => log.reopen(),
                    (Some(()), None) => tracing::info!("no message log to reopen"),
                },
            }
        }
    };
    tokio::join!(room_task, tcp, http, signal, reopen);
    tracing::debug!("room stopped; waiting for connections to close");

    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    tracing::debug!("connections closed");
    if let Some(log) = log {
        // The room task, the only other holder, has ended.
        let log = Arc::try_unwrap(log)
            .map_err(|_| io::Error::other("the message log is still in use at shutdown"))?;
        tokio::task::spawn_blocking(move || log.close())
            .await
            .map_err(io::Error::other)??;
    }
    Ok(())
}

/// Accepts connections until `stop`, holding one permit of `slots` per connection and, at
/// the door, one place among those of its address: a connection over its address's limits is
/// refused there, before anything is spawned for it.
///
/// When `accept` fails for want of file descriptors, the one kept in [`Reserve`] is given up
/// to accept the waiting connection, refuse it (`Server is full`, or 503) and close it, so that
/// newcomers are told at once rather than left waiting in the kernel's queue; connected users
/// go on chatting, and newcomers are let in again as soon as descriptors are free. Other errors
/// (and running out while no reserve could be kept) are logged and retried after a pause that
/// grows up to [`MAX_ACCEPT_BACKOFF`]; they never end the server.
async fn accept_loop(
    listener: TcpListener,
    kind: Listener,
    slots: Arc<Semaphore>,
    door: Arc<Door>,
    stop: &CancellationToken,
    mut spawn: impl FnMut(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit, Pass),
) {
    let name = kind.name();
    let mut reserve = Reserve::open();
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                reserve.restore();
                if let Some((stream, pass)) = door.admit(stream, peer, kind) {
                    let _ = stream.set_nodelay(true);
                    spawn(stream, peer, permit, pass);
                }
            }
            Err(err) if door::out_of_fds(&err) && reserve.release() => {
                // The reserve's descriptor is free now: take the waiting connection with it.
                match futures_util::FutureExt::now_or_never(listener.accept()) {
                    Some(Ok((stream, peer))) => door.refuse_out_of_fds(stream, peer, kind),
                    Some(Err(err)) => tracing::debug!(listener = name, %err, "accept failed"),
                    None => {} // It went away meanwhile.
                }
                if !reserve.restore() {
                    tracing::warn!(listener = name, "out of file descriptors, none in reserve");
                    pause(stop, &mut backoff).await;
                }
            }
            Err(err) => {
                tracing::warn!(listener = name, %err, ?backoff, "accept failed; retrying");
                pause(stop, &mut backoff).await;
            }
        }
    }
}

/// Waits `backoff`, or until `stop`, and doubles it up to [`MAX_ACCEPT_BACKOFF`].
async fn pause(stop: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(MAX_ACCEPT_BACKOFF);
}
