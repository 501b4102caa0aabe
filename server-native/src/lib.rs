//! `chat-server`: the chat room of `chat-core`, served with tokio over TCP (nc, telnet) and
//! HTTP (the browser page, and WebSocket on `/ws`).
//!
//! # Layout
//!
//! From the top down; a module uses only those below it.
//!
//! - [`run`] and [`run_with_reopen`] (this file): the library's entry points. They bind
//!   nothing themselves: they take bound [`Listeners`] and a shutdown future; tests bind
//!   `127.0.0.1:0` and call them.
//! - `server`: the server's shared parts as one value, the room task and the accept loops
//!   started from it, and the graceful shutdown.
//! - `bind`: binding the two listeners ([`Listeners`]), with their TLS.
//! - `accept`: the accept loops, their places, and the descriptor kept in reserve for
//!   refusing newcomers when the process has none left.
//! - `door`: what happens at `accept`: the per-address limits and their refusals.
//! - `line`: one line connection (nc): a line reader and a batching writer.
//! - `websocket`: one WebSocket connection: a reader and a batching writer with keepalive
//!   pings, in the same room as the line connections.
//! - `http`: one HTTP connection, by hyper: the page, `/healthz`, `/metrics`, the WebSocket
//!   upgrade on `/ws` with its checks, and the admin API under `/admin/`.
//! - `proxied`: connections from a trusted proxy (`--trusted-proxy`): the PROXY header read
//!   off a line connection, and the client an HTTP request's forwarding headers name.
//! - `room_task`: the one task that owns the `Room`, feeds it and routes its outputs.
//! - `sanctions`: a room alone's bans and mutes, stored beside the message log and read back
//!   at start.
//! - `cluster`: with `--redis`, the link between the room and the room's log in Redis: the
//!   scripts, the lease and reaper, publishes, the log's reader, local mode and healing.
//! - `outbox` and `frames`: a connection's outbox, between the room and its writer.
//! - `tls`: `--tls-cert` and `--tls-key`, and the handshake each connection's task performs
//!   before anything else when they are given.
//! - [`config`]: the flags, each with an environment variable.
//! - [`log`]: the message log, JSON Lines written by a thread of its own.
//! - `metrics`: the counters, gauges and histogram of `/metrics`, and their hooks.
//! - `stream`: helpers over any byte stream (the thread's read buffer, vectored writes,
//!   lingering after a close).
//! - `listener`, `clock`: which listener a connection came in on; the one clock.
//!
//! The binary in `main.rs` only parses flags, binds, prints the addresses and waits for
//! Ctrl-C or SIGTERM.

mod accept;
mod bind;
mod clock;
mod cluster;
pub mod config;
mod door;
mod frames;
mod http;
mod line;
mod listener;
pub mod log;
mod metrics;
mod outbox;
mod proxied;
mod room_task;
mod sanctions;
mod server;
mod stream;
mod tls;
mod websocket;

use std::future::Future;
use std::io;

use futures_util::Stream;

pub use bind::Listeners;
pub use config::Config;

/// Serves the room on `listeners` until `shutdown` completes; then every client is told, the
/// connections are closed and the message log is flushed before this returns.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run_when_ready(
        config,
        listeners,
        shutdown,
        futures_util::stream::pending(),
        || {},
    )
    .await
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
    run_when_ready(config, listeners, shutdown, reopen, || {}).await
}

/// [`run_with_reopen`], calling `ready` once the server is about to accept connections: at
/// once alone; with `--redis`, once this node is in the room through Redis or has waited 5
/// seconds for it and started alone. The binary prints the listening addresses then.
pub async fn run_when_ready(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reopen: impl Stream<Item = ()>,
    ready: impl FnOnce(),
) -> io::Result<()> {
    server::run(config, listeners, shutdown, reopen, ready).await
}
