//! The server: its shared parts as one value, the room task and the two accept loops started
//! from it, and the graceful shutdown that ends them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chat_core::proxy::TrustedProxies;
use chat_core::{ConnId, Room, Wire};
use futures_util::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::accept_loop;
use crate::bind::Listeners;
use crate::clock::Clock;
use crate::cluster;
use crate::config::{Config, Switch};
use crate::door::{Door, Pass, Pending};
use crate::http::admin::Admin;
use crate::http::hosts::Hosts;
use crate::http::upgrade::Origins;
use crate::http::{self, Readiness, Site};
use crate::listener::Listener;
use crate::log::MessageLog;
use crate::metrics::Metrics;
use crate::room_task::{self, RoomInput};
use crate::sanctions;
use crate::tls::Tls;
use crate::{line, proxied, tls, websocket};

/// Places for chat connections beyond `--max-users`, so that the room can tell them it is
/// full; past that, the line listener stops accepting and `/ws` answers `503`.
const ADMISSION_SLACK: usize = 64;
/// HTTP connections served at once.
const MAX_HTTP: usize = 256;
/// How long shutdown waits for connections to take their last lines; then `run` closes the
/// log and returns, whatever a connection is still doing (the binary then gives blocking work
/// still running a moment more, and exits).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// With `--redis`: how long the server waits to be in the room before it starts alone.
const JOIN_WAIT: Duration = Duration::from_secs(5);
/// With `--redis`: how long a stopping node may take to take its users out of the room.
const RETIRE_WAIT: Duration = Duration::from_secs(2);
/// How long a stopping server waits for the last list of bans and mutes to be stored.
const SANCTIONS_WAIT: Duration = Duration::from_secs(5);
/// Inputs queued for the room before readers wait: a busy room slows the readers, not memory.
const ROOM_QUEUE: usize = 1024;

/// What every connection task shares, each part named once: in the style of mini-redis's
/// `Listener`, the server's shared state as documented fields rather than clones threaded
/// through closures.
struct Server {
    /// The room task's inputs; each connection sends through a clone.
    room: mpsc::Sender<RoomInput>,
    /// Places for chat connections (`--max-users` + [`ADMISSION_SLACK`]), line and WebSocket
    /// together: the line listener takes one at accept, an upgrade on `/ws` one at its `101`.
    admitted: Arc<Semaphore>,
    /// Places for HTTP connections ([`MAX_HTTP`]), given back when one ends or is upgraded.
    http_slots: Arc<Semaphore>,
    /// The per-address limits, both listeners together.
    door: Arc<Door>,
    /// `--trusted-proxy`: the peers whose connections say who their clients are.
    trusted: Arc<TrustedProxies>,
    /// What the HTTP listener serves.
    site: Arc<Site>,
    /// How WebSocket connections behave.
    ws: websocket::Settings,
    /// `--max-line`, for line connections.
    max_line: usize,
    /// The TLS of both listeners, if any.
    tls: Option<Tls>,
    metrics: Metrics,
    /// Connection ids, unique across both listeners.
    next_id: AtomicU64,
    /// Cancelled when the server stops: accept loops end, connections are told.
    stop: CancellationToken,
    /// Every connection task, waited for (within [`SHUTDOWN_GRACE`]) at shutdown.
    tracker: TaskTracker,
}

impl Server {
    fn new_id(&self) -> ConnId {
        ConnId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Serves one line connection in a task of its own; its TLS handshake, if any, happens
    /// there, so that accepting never waits, and waits among the connections not begun yet.
    fn spawn_line(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr, place: Place) {
        let server = self.clone();
        self.tracker.spawn(async move {
            let Some((stream, peer, place)) = server.through_proxy(stream, peer, place).await
            else {
                return;
            };
            let acceptor = server.tls.as_ref().map(|tls| &tls.line);
            // A TLS handshake waits among the connections not begun; a plain one has begun.
            let (door, stop) = (&server.door, &server.stop);
            let (stream, pending) = match acceptor {
                None => (stream, None),
                Some(_) => match door.pending(stream, peer.ip(), &place.pass, Listener::Line, stop)
                {
                    Some((stream, pending)) => (stream, Some(pending)),
                    None => return,
                },
            };
            let stop = pending.as_ref().map_or(stop, Pending::cancelled);
            let stream = tls::accept(acceptor, stream, peer, stop).await;
            drop(pending);
            if let Some(stream) = stream {
                let _open = server.metrics.open(Wire::Line);
                let (conn, room) = (server.new_id(), server.room.clone());
                line::serve(stream, peer, conn, room, server.max_line, &server.metrics).await;
            }
            drop(place);
        });
    }

    /// A line connection from a trusted proxy begins with a PROXY header that names its client
    /// (before TLS, when TLS is on); the client is then let in by the door as if it had
    /// connected itself, and is the connection's peer from here on. Any other connection is
    /// as it came. `None`: refused or closed.
    async fn through_proxy(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        place: Place,
    ) -> Option<(TcpStream, SocketAddr, Place)> {
        if !self.door.trusts(peer.ip()) {
            return Some((stream, peer, place));
        }
        let timeout = self.site.handshake_timeout;
        let client = proxied::read_header(&mut stream, peer, timeout, &self.stop).await?;
        let (stream, pass) = self.door.admit_client(stream, client, Listener::Line)?;
        Some((stream, client, Place { pass, ..place }))
    }

    /// An HTTP connection from a trusted proxy: each request's client is let in by the door.
    fn forwarding(&self, proxy: SocketAddr) -> Option<http::Forwarding> {
        if !self.door.trusts(proxy.ip()) {
            return None;
        }
        let door = self.door.clone();
        Some(http::Forwarding {
            proxy,
            trusted: self.trusted.clone(),
            admit: Box::new(move |client| {
                let pass = door.check(client, Listener::Http)?;
                Ok(Box::new(pass) as http::Held)
            }),
        })
    }

    /// Serves one HTTP connection in a task of its own, and the WebSocket it may become.
    fn spawn_http(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr, place: Place) {
        let server = self.clone();
        self.tracker.spawn(async move {
            // Not begun until its first request is in: its TLS handshake, then its request.
            let door = &server.door;
            let Some((stream, pending)) =
                door.pending(stream, peer.ip(), &place.pass, Listener::Http, &server.stop)
            else {
                return;
            };
            let acceptor = server.tls.as_ref().map(|tls| &tls.http);
            let Some(stream) = tls::accept(acceptor, stream, peer, pending.cancelled()).await
            else {
                return;
            };
            let not_begun = http::NotBegun {
                put_out: pending.cancelled().clone(),
                held: Box::new(pending),
            };
            let forwarding = server.forwarding(peer);
            // Boxed, so that hyper's state is freed once the connection is upgraded, rather
            // than kept as part of the WebSocket's task for its whole life.
            let site = server.site.clone();
            let served = http::serve(stream, peer, site, &server.stop, forwarding, not_begun);
            let upgraded = Box::pin(served).await;
            // A WebSocket holds a place among the admitted connections, not an HTTP slot.
            let Place { slot, pass } = place;
            drop(slot);
            if let Some((upgraded, client)) = upgraded {
                // Over a trusted proxy, the client the upgrade came from, holding its place.
                let (peer, _client) = match client {
                    Some(http::Client { addr, place }) => (addr, Some(place)),
                    None => (peer, None),
                };
                let _open = server.metrics.open(Wire::Json);
                let (conn, room) = (server.new_id(), server.room.clone());
                websocket::serve(upgraded, peer, conn, room, &server.ws, &server.metrics).await;
            }
            // The WebSocket counted among its address's connections until here.
            drop(pass);
        });
    }
}

/// What an accepted connection holds until it ends: its listener's place, and its address's.
struct Place {
    slot: OwnedSemaphorePermit,
    pass: Pass,
}

/// Serves the room on `listeners` until `shutdown` completes, reopening the message log each
/// time `reopen` yields; then every client is told, the connections are closed and the log is
/// flushed before this returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reopen: impl Stream<Item = ()>,
    ready: impl FnOnce(),
) -> io::Result<()> {
    // Before anything else: a missing or bad secret must stop the start, with its reason.
    let op_token = config.op_token()?;
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
    let clock = Clock::start();
    let metrics = Metrics::new(config.metrics == Switch::On, clock);
    let stop = CancellationToken::new();
    // Should this function be dropped before the end, the room still stops.
    let _stop_room = stop.clone().drop_guard();
    let max_queue = usize::try_from(config.max_queue).unwrap_or(usize::MAX);
    let admitted = Arc::new(Semaphore::new(config.max_users as usize + ADMISSION_SLACK));
    let tls = listeners.tls.clone();
    let trusted = Arc::new(config.trusted_proxies());

    let mut room_config = config.room_config();
    room_config.op_token = op_token.clone();
    room_config.wall_clock = clock.wall_at_zero();
    let node = config.node_id(tcp_addr.port());
    let (room_tx, room_rx) = mpsc::channel(ROOM_QUEUE);
    let engine = match &config.redis {
        Some(url) => {
            // The log's name for this run of the node: a restarted node is a new one there.
            let incarnation = format!("{node}@{}", room_config.epoch);
            room_config.cluster = Some(incarnation.clone());
            let settings = cluster::Settings {
                url: url.clone(),
                prefix: config.redis_prefix.clone(),
                node: incarnation,
                lease: Duration::from_secs(config.node_timeout),
                history: config.history as usize,
            };
            let started = cluster::start(
                settings,
                room_tx.clone(),
                stop.clone(),
                JOIN_WAIT,
                metrics.clone(),
            )
            .await
            .map_err(|cluster::Fatal(why)| io::Error::other(why))?;
            Some(started)
        }
        None => None,
    };
    let mut room = Room::new(room_config);
    // A room alone with --log keeps its bans and mutes beside the log; in a cluster they are
    // in Redis, with the room's log.
    let bans_path = config.log.as_deref().map(sanctions::path_beside);
    let mut keeper = None;
    if engine.is_none() {
        // In a cluster the log is the room's history, not this node's file.
        room.restore_history(recent);
        if let Some(path) = bans_path {
            let read = path.clone();
            let stored = tokio::task::spawn_blocking(move || sanctions::load(&read))
                .await
                .map_err(io::Error::other)??;
            room.restore_sanctions(stored);
            let held = room.sanctions().len();
            tracing::info!(held, path = %path.display(), "bans and mutes read back");
            keeper = Some(sanctions::start(path));
        }
    } else {
        if !recent.is_empty() {
            tracing::info!("with --redis the history comes from the room's log, not from --log");
        }
        if bans_path.as_deref().is_some_and(std::path::Path::exists) {
            tracing::info!(
                "with --redis the bans and mutes are the room's in Redis; the file \
                beside --log is neither read nor written"
            );
        }
    }
    let (keeper, sanctions_task) = keeper.unzip();
    let (publisher, link, engine_task) = match engine {
        Some((publisher, link, task)) => (Some(publisher), Some(link), Some(task)),
        None => (None, None, None),
    };
    if link.as_ref().is_some_and(|l| !l.up.load(Ordering::Acquire)) {
        tracing::warn!(
            "Redis did not answer within {} s: starting alone, and joining the room once it \
             answers",
            JOIN_WAIT.as_secs()
        );
    }
    ready();
    // Spawned, so that it runs on a worker thread: the connection tasks it wakes for every
    // delivery then go to that worker's own queue, where from the thread that runs this
    // function each wake would go through the runtime's shared queue and unpark a worker.
    let room_task = tokio::spawn({
        let (log, stop, metrics) = (log.clone(), stop.clone(), metrics.clone());
        async move {
            let routes = room_task::Routes {
                log: log.as_deref(),
                max_queue,
                metrics,
                publisher,
                sanctions: keeper,
            };
            room_task::run(room, room_rx, stop, clock, routes).await;
        }
    });
    let room_task = async {
        if let Err(err) = room_task.await
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
    };

    let handshake_timeout = Duration::from_secs(config.handshake_timeout);
    let admin =
        op_token.map(|secret| Admin::new(secret, room_tx.clone(), clock, handshake_timeout));
    let server = Arc::new(Server {
        room: room_tx,
        admitted: admitted.clone(),
        http_slots: Arc::new(Semaphore::new(MAX_HTTP)),
        door: Door::new(
            config.admission_config(),
            trusted.clone(),
            clock,
            metrics.clone(),
        ),
        trusted,
        site: Arc::new(Site {
            tcp_addr: tcp_addr.to_string(),
            tls: tls.is_some(),
            web_root: config.web_root.clone(),
            hosts: Hosts::new(&config.allow_host, &config.allow_origin, &config.http),
            origins: Origins::new(&config.allow_origin).own_page_over_https(tls.is_some()),
            admitted,
            handshake_timeout,
            metrics: metrics.clone(),
            wanted: Notify::new(),
            readiness: Readiness { node, link },
            admin,
        }),
        ws: websocket::Settings {
            max_line: config.max_line as usize,
            ping: (config.ws_ping > 0).then(|| Duration::from_secs(config.ws_ping)),
        },
        max_line: config.max_line as usize,
        tls,
        metrics,
        next_id: AtomicU64::new(1),
        stop: stop.clone(),
        tracker: TaskTracker::new(),
    });

    let tcp = accept_loop(
        listeners.tcp,
        Listener::Line,
        server.admitted.clone(),
        server.door.clone(),
        &stop,
        || server.door.make_room(Listener::Line),
        |stream, peer, slot, pass| server.spawn_line(stream, peer, Place { slot, pass }),
    );
    let http = accept_loop(
        listeners.http,
        Listener::Http,
        server.http_slots.clone(),
        server.door.clone(),
        &stop,
        || {
            server.site.make_room();
            server.door.make_room(Listener::Http);
        },
        |stream, peer, slot, pass| server.spawn_http(stream, peer, Place { slot, pass }),
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
    if let Some(task) = engine_task {
        // This node's users out of the room on every node, before the process ends.
        if tokio::time::timeout(RETIRE_WAIT, task).await.is_err() {
            tracing::warn!("could not take this node's users out of the room in time");
        }
    }
    tracing::debug!("room stopped; waiting for connections to close");

    let tracker = server.tracker.clone();
    // The connection tasks hold the server; the last of them lets go of the room's sender.
    drop(server);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    tracing::debug!("connections closed");
    // The room task has ended and let go of its end: the writer stores the last list and ends.
    let stored = match sanctions_task {
        Some(task) => match tokio::time::timeout(SANCTIONS_WAIT, task).await {
            Ok(Ok(stored)) => stored,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_) => Err(io::Error::other(
                "the bans and mutes could not be stored in time at shutdown",
            )),
        },
        None => Ok(()),
    };
    if let Some(log) = log {
        // The room task, the only other holder, has ended.
        let log = Arc::try_unwrap(log)
            .map_err(|_| io::Error::other("the message log is still in use at shutdown"))?;
        // On a thread of its own, not the blocking pool: every thread of that may be busy
        // with file reads that shutdown does not wait for.
        let (closed, close) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("log-close".into())
            .spawn(move || {
                let _ = closed.send(log.close());
            })?;
        close
            .await
            .map_err(|_| io::Error::other("closing the message log panicked"))??;
    }
    stored
}
