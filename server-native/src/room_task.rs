//! The room actor: one task owns the [`Room`], feeds it the inputs that connection tasks send,
//! wakes it at its deadlines, and routes what it outputs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use chat_core::cluster::{Logged, Publish, Refusal, Snapshot};
use chat_core::moderation::{AdminReply, AdminRequest};
use chat_core::{CloseReason, ConnId, Disconnect, Line, Output, Room, Timestamp, Wire};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::cluster::Publisher;
use crate::log::MessageLog;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing};
use crate::sanctions::Keeper;

/// Inputs taken per wake-up before the loop looks at timers and shutdown again.
const INPUT_BATCH: usize = 64;

/// What connection tasks tell the room.
#[derive(Debug)]
pub enum RoomInput {
    /// A connection was accepted; its outbox is where the room's output for it goes.
    Open {
        conn: ConnId,
        wire: Wire,
        peer: Option<IpAddr>,
        outbox: Outbox,
    },
    /// A line from a line-wire connection.
    Line { conn: ConnId, line: Line },
    /// A text message from a JSON-wire (WebSocket) connection.
    Json { conn: ConnId, text: Utf8Bytes },
    /// A binary message from a WebSocket connection, which the room refuses.
    Binary { conn: ConnId },
    /// The connection ended on its side.
    Disconnect { conn: ConnId, why: Disconnect },
    /// From the link to Redis (`--redis`).
    Cluster(ClusterInput),
    /// A request of the admin API (`/admin/...` on the HTTP listener), answered on `reply`
    /// at once; what it does goes out as the room's outputs, like an operator's command.
    Admin {
        request: AdminRequest,
        reply: oneshot::Sender<AdminReply>,
    },
}

/// What the link to Redis tells the room (`crate::cluster`).
#[derive(Debug)]
pub enum ClusterInput {
    /// In contact: the room as the log holds it.
    Snapshot(Snapshot),
    /// Entries of the log, in its order, after the snapshot.
    Logged(Vec<Logged>),
    /// A publish the log refused or that could not be sent.
    Refused(Publish, Refusal),
    /// A private message from another node for a user of this one.
    Told {
        to_key: String,
        from: String,
        text: String,
    },
    /// Whether a private message to a user of another node found its node.
    TellResult {
        from_conn: ConnId,
        to: String,
        text: String,
        heard: bool,
    },
    /// Out of contact with Redis.
    LinkDown,
}

/// Opens `conn` in the room: makes its outbox, hands the room that end, and returns the
/// connection's own end; `close`, for a wire whose close says why (WebSocket). `None` when the
/// room has stopped: the server is shutting down.
pub async fn open(
    room: &mpsc::Sender<RoomInput>,
    conn: ConnId,
    wire: Wire,
    peer: IpAddr,
    close: Option<oneshot::Sender<CloseReason>>,
    metrics: &Metrics,
) -> Option<Outgoing> {
    let (outbox, outgoing) = Outbox::new(close, metrics.probe());
    let peer = Some(peer);
    let open = RoomInput::Open {
        conn,
        wire,
        peer,
        outbox,
    };
    room.send(open).await.ok().map(|()| outgoing)
}

/// Runs the room until `shutdown` is cancelled (or every sender is gone), then tells everyone
/// and closes every connection.
pub async fn run(
    mut room: Room,
    mut inputs: mpsc::Receiver<RoomInput>,
    shutdown: CancellationToken,
    clock: Clock,
    routes: Routes<'_>,
) {
    let Routes {
        log,
        max_queue,
        metrics,
        publisher,
        sanctions,
    } = routes;
    let mut router = Router {
        outboxes: HashMap::new(),
        log,
        max_queue,
        metrics,
        publisher,
        sanctions,
    };
    loop {
        let deadline = room.poll_timeout().map(|at| clock.instant(at));
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            input = inputs.recv() => {
                let Some(input) = input else { break };
                router.feed(&mut room, clock.now(), input);
                // Take whatever else is already waiting, up to a bound so that timers and
                // shutdown are still looked at under load.
                for _ in 0..INPUT_BATCH {
                    let Ok(input) = inputs.try_recv() else { break };
                    router.feed(&mut room, clock.now(), input);
                }
            }
            () = sleep_until(deadline) => {
                room.handle_timeout(clock.now());
                router.drain(&mut room, clock.now());
            }
        }
    }
    room.shutdown(clock.now());
    router.drain(&mut room, clock.now());
}

/// Where the room's outputs go besides its connections.
pub struct Routes<'a> {
    /// `--log`.
    pub log: Option<&'a MessageLog>,
    /// `--max-queue`.
    pub max_queue: usize,
    pub metrics: Metrics,
    /// With `--redis`: where the room's publishes go.
    pub publisher: Option<Publisher>,
    /// A room alone with `--log`: where its bans and mutes are stored.
    pub sanctions: Option<Keeper>,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Router<'a> {
    outboxes: HashMap<ConnId, Outbox>,
    log: Option<&'a MessageLog>,
    max_queue: usize,
    metrics: Metrics,
    /// With `--redis`: where the room's publishes go.
    publisher: Option<Publisher>,
    /// A room alone with `--log`: where its bans and mutes are stored (dropped when the room
    /// stops, which lets the writer finish).
    sanctions: Option<Keeper>,
}

impl Router<'_> {
    fn feed(&mut self, room: &mut Room, now: Timestamp, input: RoomInput) {
        match input {
            RoomInput::Open {
                conn,
                wire,
                peer,
                outbox,
            } => {
                self.metrics.track(&outbox.queued);
                self.outboxes.insert(conn, outbox);
                room.handle_open(now, conn, wire, peer);
            }
            RoomInput::Line { conn, line } => room.handle_line(now, conn, line),
            RoomInput::Json { conn, text } => room.handle_json(now, conn, &text),
            RoomInput::Binary { conn } => room.handle_binary(now, conn),
            RoomInput::Disconnect { conn, why } => {
                self.outboxes.remove(&conn);
                room.handle_disconnect(now, conn, why);
            }
            RoomInput::Cluster(input) => match input {
                ClusterInput::Snapshot(snapshot) => room.handle_snapshot(now, snapshot),
                ClusterInput::Logged(entries) => {
                    for entry in entries {
                        room.handle_logged(now, entry);
                    }
                }
                ClusterInput::Refused(publish, refusal) => {
                    room.handle_refused(now, publish, refusal);
                }
                ClusterInput::Told { to_key, from, text } => {
                    room.handle_told(now, &to_key, from, text);
                }
                ClusterInput::TellResult {
                    from_conn,
                    to,
                    text,
                    heard,
                } => room.handle_tell_result(now, from_conn, to, text, heard),
                ClusterInput::LinkDown => room.handle_link_down(now),
            },
            RoomInput::Admin { request, reply } => {
                // The asker may have gone (its connection closed); the action holds anyway.
                let _ = reply.send(room.handle_admin(now, request));
            }
        }
        self.drain(room, now);
    }

    fn drain(&mut self, room: &mut Room, now: Timestamp) {
        while let Some(output) = room.poll_output() {
            match output {
                Output::Send { conn, data } => self.send(room, now, conn, data),
                Output::Close { conn, reason } => {
                    tracing::debug!(?conn, ?reason, "closing");
                    self.metrics.closed(reason);
                    // Dropping the sender lets the writer flush what is queued, then close.
                    if let Some(mut outbox) = self.outboxes.remove(&conn)
                        && let Some(close) = outbox.close.take()
                    {
                        let _ = close.send(reason);
                    }
                }
                // Only a room in cluster mode publishes.
                Output::Publish(publish) => {
                    let refused = match &self.publisher {
                        Some(publisher) => publisher.publish(publish),
                        None => Some(publish),
                    };
                    if let Some(publish) = refused {
                        room.handle_refused(now, publish, Refusal::Busy);
                    }
                }
                // A room alone: all its bans and mutes, to store in place of the last list.
                Output::Sanctions(all) => {
                    if let Some(keeper) = &self.sanctions {
                        keeper.keep(all);
                    }
                }
                Output::Log(record) => {
                    self.metrics.logged(&record);
                    if let Some(log) = self.log {
                        log.append(SystemTime::now(), record);
                    }
                }
            }
        }
        self.metrics.room_stats(room.stats());
    }

    fn send(&mut self, room: &mut Room, now: Timestamp, conn: ConnId, data: Bytes) {
        let Some(outbox) = self.outboxes.get(&conn) else {
            return;
        };
        let len = data.len();
        let queued = outbox.queued.load(Ordering::Acquire);
        // One frame always fits in an empty queue, so a large history replay is never a
        // reason to drop anyone; beyond that, the bound holds.
        let why = if queued > 0 && queued + len > self.max_queue {
            tracing::info!(?conn, queued, "dropping a connection that does not read");
            self.metrics.too_slow();
            Disconnect::TooSlow
        } else {
            // Counted before the writer can see the frame, so its subtraction never underflows.
            let was = outbox.queued.fetch_add(len, Ordering::AcqRel);
            self.metrics.enqueued(&outbox.probe, was, len, now);
            match outbox.frames.send(data) {
                Ok(()) => return,
                Err(_) => Disconnect::Dropped, // The writer has already gone.
            }
        };
        if let Some(outbox) = self.outboxes.remove(&conn) {
            outbox.abort.cancel();
        }
        room.handle_disconnect(now, conn, why);
    }
}
