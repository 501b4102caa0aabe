//! The engine task: this node's link to the room's Redis. It keeps the node's lease, reaps
//! nodes that stopped answering, sends the room's publishes (in order, pipelined, over one
//! connection), reads the log back (a connection of its own, blocked in `XREAD`) and hears
//! the private messages for this node's users (PUB/SUB). When Redis is lost it tells the room,
//! which goes on alone for this node's users, and keeps trying; when Redis answers again, a
//! snapshot makes the room one again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chat_core::cluster::{Logged, Publish, Refusal};
use chat_core::{LeaveReason, name_key};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::scripts::{self, Keys, Reply, Scripts};
use crate::metrics::Metrics;
use crate::room_task::{ClusterInput, RoomInput};

/// How long a script call may take before the link counts as lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the reader blocks in `XREAD`, and how long it waits for the answer (more than the
/// block: a timeout shorter than the block would cancel every quiet read).
const READ_BLOCK_MS: u64 = 1000;
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Entries read at once.
const READ_COUNT: usize = 256;
/// Publishes sent in one pipeline.
const BATCH: usize = 64;
/// Between two attempts to reach Redis.
const RETRY: Duration = Duration::from_millis(500);
/// Every node reaps this often: a dead node's users leave within its lease and this.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// Publishes waiting for Redis beyond which a message, a name or a private message is
/// refused as "busy" (a leave is always taken).
pub const QUEUE_BOUND: usize = 4096;

/// What the engine needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    pub url: String,
    pub prefix: String,
    /// This node's name in the log: its `--node-id` and its start time, so that a restarted
    /// node is a new one to the log (its message numbers start again).
    pub node: String,
    /// `--node-timeout`.
    pub lease: Duration,
    /// `--history`: the recent messages a snapshot brings.
    pub history: usize,
}

/// What the room task and `/readyz` see of the link.
#[derive(Debug, Default)]
pub struct Link {
    /// In contact with the room through Redis.
    pub up: AtomicBool,
    /// Publishes waiting to be sent.
    pub depth: AtomicUsize,
    /// Nodes alive in the log, at the last beat.
    pub nodes: AtomicU64,
}

/// The room task's end: where its publishes go.
#[derive(Clone, Debug)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Publish>,
    link: Arc<Link>,
}

impl Publisher {
    /// Queues `publish` for Redis; gives it back when it cannot be sent now (the link is
    /// down, or too much is waiting): the room then tells the sender the server is busy. A
    /// leave is always queued: the log must have it.
    pub fn publish(&self, publish: Publish) -> Option<Publish> {
        let release = matches!(publish, Publish::Release { .. });
        if !release
            && (!self.link.up.load(Ordering::Acquire)
                || self.link.depth.load(Ordering::Acquire) >= QUEUE_BOUND)
        {
            return Some(publish);
        }
        self.link.depth.fetch_add(1, Ordering::AcqRel);
        match self.tx.send(publish) {
            Ok(()) => None,
            Err(e) => {
                self.link.depth.fetch_sub(1, Ordering::AcqRel);
                Some(e.0)
            }
        }
    }
}

/// In contact: the connections of a session, and the snapshot it began with.
struct Contact {
    con: MultiplexedConnection,
    reader: MultiplexedConnection,
    pubsub: redis::aio::PubSub,
    taken: scripts::Taken,
}

/// Why a session with Redis ended.
enum Ended {
    /// That Redis must not hold the room.
    Fatal(Fatal),
    /// The server is stopping; this node's users were taken out of the room.
    Stopped,
    /// The log forgot this node (its lease ran out, or Redis came back empty): a new
    /// snapshot, without telling anyone that contact was lost.
    Resync,
    /// Redis stopped answering, or answered wrongly.
    Lost(String),
}

/// Refused to start: a setting of that Redis would lose the room.
#[derive(Debug)]
pub struct Fatal(pub String);

/// Starts the engine. Waits until this node is in the room through Redis, or `wait` has
/// passed (the node then starts alone and keeps trying), or Redis's settings make it unfit
/// (`Err`).
pub async fn start(
    settings: Settings,
    room: mpsc::Sender<RoomInput>,
    stop: CancellationToken,
    wait: Duration,
    metrics: Metrics,
) -> Result<(Publisher, Arc<Link>, JoinHandle<()>), Fatal> {
    let client = Client::open(settings.url.as_str()).map_err(|e| Fatal(e.to_string()))?;
    let link = Arc::new(Link::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let engine = Engine {
        scripts: Scripts::new(
            Keys::new(&settings.prefix),
            freeze_ms(settings.lease).as_millis() as u64,
        ),
        settings,
        client,
        room,
        link: link.clone(),
        publishes: rx,
        seen: Arc::new(Seen::default()),
        stop,
        ready: Some(ready_tx),
        metrics,
        retry: Vec::new(),
    };
    let task = tokio::spawn(engine.run());
    let publisher = Publisher {
        tx,
        link: link.clone(),
    };
    match timeout(wait, ready_rx).await {
        Ok(Ok(Err(fatal))) => {
            task.abort();
            Err(fatal)
        }
        Ok(Ok(Ok(()))) => Ok((publisher, link, task)),
        // Not in contact in time: alone for now, as after a loss.
        Ok(Err(_)) | Err(_) => Ok((publisher, link, task)),
    }
}

/// The freeze threshold: a silence of every node longer than this means Redis itself was
/// stopped (each node calls a script at least every second). Half the lease, so that a lease
/// renewed a beat (a third of it) ago outlasts any silence not compensated; from 1.2 s, above
/// the reaper's second, to 2.5 s.
fn freeze_ms(lease: Duration) -> Duration {
    (lease / 2).clamp(Duration::from_millis(1200), Duration::from_millis(2500))
}

/// What this node has applied of the log: the epoch and last message number it last heard,
/// for the snapshot's epoch fencing.
#[derive(Debug, Default)]
struct Seen {
    epoch: AtomicU64,
    seq: AtomicU64,
}

struct Engine {
    settings: Settings,
    scripts: Scripts,
    client: Client,
    room: mpsc::Sender<RoomInput>,
    link: Arc<Link>,
    publishes: mpsc::UnboundedReceiver<Publish>,
    seen: Arc<Seen>,
    stop: CancellationToken,
    ready: Option<oneshot::Sender<Result<(), Fatal>>>,
    metrics: Metrics,
    /// Messages in flight when the link was lost, to send again when it is back.
    retry: Vec<Publish>,
}

impl Engine {
    async fn run(mut self) {
        // Whether this stretch out of contact was said in the log already.
        let mut said = false;
        loop {
            let ended = self.session().await;
            if self.link.up.swap(false, Ordering::AcqRel) {
                said = false;
            }
            self.metrics.cluster_link(false);
            match ended {
                Ended::Stopped | Ended::Fatal(_) => return,
                Ended::Resync => continue,
                Ended::Lost(why) => {
                    if said {
                        tracing::debug!(%why, "Redis still out of reach");
                    } else {
                        tracing::warn!(%why, "out of contact with Redis; this node goes on alone");
                        said = true;
                    }
                    // Also right after start: the room then knows its users are alone.
                    if self.send(ClusterInput::LinkDown).await.is_err() {
                        return;
                    }
                }
            }
            // Until Redis answers, whatever the room still sends is refused as busy.
            let retry = sleep(RETRY);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = &mut retry => break,
                    Some(p) = self.publishes.recv() => {
                        self.link.depth.fetch_sub(1, Ordering::AcqRel);
                        self.refuse(p, Refusal::Busy).await;
                    }
                }
            }
        }
    }

    async fn send(&self, input: ClusterInput) -> Result<(), ()> {
        self.room
            .send(RoomInput::Cluster(input))
            .await
            .map_err(drop)
    }

    async fn refuse(&self, publish: Publish, refusal: Refusal) {
        if matches!(publish, Publish::Release { .. }) {
            // The next snapshot releases whoever is gone.
            return;
        }
        let _ = self.send(ClusterInput::Refused(publish, refusal)).await;
    }

    async fn connection(&self, response: Duration) -> Result<MultiplexedConnection, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(response));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("cannot connect: {e}"))
    }

    /// Gets in contact: connects, checks, loads the scripts, beats, takes a snapshot and
    /// opens the reader's and the channel's connections.
    async fn setup(&self) -> Result<Contact, Ended> {
        let mut con = self.connection(CALL_TIMEOUT).await.map_err(Ended::Lost)?;
        if let Err(fatal) = self.check(&mut con).await {
            return Err(Ended::Fatal(fatal));
        }
        let mut load = redis::pipe();
        for cmd in self.scripts.load_commands() {
            load.add_command(cmd).ignore();
        }
        timeout(CALL_TIMEOUT, load.query_async::<()>(&mut con))
            .await
            .map_err(|_| Ended::Lost("Redis did not answer in time".into()))?
            .map_err(|e| Ended::Lost(format!("cannot load the scripts: {e}")))?;
        let node = &self.settings.node;
        let lease_ms = self.settings.lease.as_millis() as u64;
        self.call(&mut con, self.scripts.beat(node, lease_ms))
            .await
            .map_err(Ended::Lost)?;
        let seen = (
            self.seen.epoch.load(Ordering::Acquire),
            self.seen.seq.load(Ordering::Acquire),
        );
        let snapshot = self.scripts.snapshot(seen.0, seen.1, self.settings.history);
        let value = self.call(&mut con, snapshot).await.map_err(Ended::Lost)?;
        let taken = scripts::snapshot(&value)
            .ok_or_else(|| Ended::Lost("a snapshot this server cannot read".into()))?;
        let reader = self.connection(READ_TIMEOUT).await.map_err(Ended::Lost)?;
        let mut pubsub = timeout(CALL_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| Ended::Lost("Redis did not answer in time".into()))?
            .map_err(|e| Ended::Lost(format!("cannot subscribe: {e}")))?;
        let channel = self.scripts.keys().channel(node);
        timeout(CALL_TIMEOUT, pubsub.subscribe(&channel))
            .await
            .map_err(|_| Ended::Lost("Redis did not answer in time".into()))?
            .map_err(|e| Ended::Lost(format!("cannot subscribe: {e}")))?;
        Ok(Contact {
            con,
            reader,
            pubsub,
            taken,
        })
    }

    /// One stretch of contact with Redis: from connecting to losing it (or stopping).
    async fn session(&mut self) -> Ended {
        let setup = tokio::select! {
            () = self.stop.cancelled() => return Ended::Stopped,
            setup = self.setup() => setup,
        };
        let Contact {
            mut con,
            mut reader,
            pubsub,
            taken,
        } = match setup {
            Ok(contact) => contact,
            Err(Ended::Fatal(fatal)) => {
                tracing::error!("{}", fatal.0);
                let why = fatal.0.clone();
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Err(fatal));
                }
                return Ended::Lost(why);
            }
            Err(ended) => return ended,
        };
        let node = self.settings.node.clone();
        let lease_ms = self.settings.lease.as_millis() as u64;
        self.seen
            .epoch
            .store(taken.snapshot.epoch, Ordering::Release);
        self.seen.seq.store(taken.snapshot.seq, Ordering::Release);
        tracing::info!(
            node = %self.settings.node,
            epoch = taken.snapshot.epoch,
            seq = taken.snapshot.seq,
            users = taken.snapshot.members.len(),
            "in the room through Redis"
        );
        // Up before the room has the snapshot: what it publishes in applying it (its users
        // claimed again, its operators, the releases of those gone or banned) must be taken,
        // not refused as busy because this task had not yet said so.
        self.link.up.store(true, Ordering::Release);
        self.metrics.cluster_link(true);
        if self
            .send(ClusterInput::Snapshot(taken.snapshot))
            .await
            .is_err()
        {
            return Ended::Stopped;
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
        // The messages in flight when contact was lost, first and in their order.
        let retry = std::mem::take(&mut self.retry);
        if !retry.is_empty() {
            tracing::info!(messages = retry.len(), "sending again what was in flight");
            for batch in retry.chunks(BATCH) {
                if let Some(ended) = self.send_batch(&mut con, batch.to_vec()).await {
                    return ended;
                }
            }
        }

        let read = {
            let (log, room, seen) = (
                self.scripts.keys().log.clone(),
                self.room.clone(),
                self.seen.clone(),
            );
            let last = taken.top.clone();
            let metrics = self.metrics.clone();
            async move {
                let mut last = last;
                loop {
                    let mut cmd = redis::cmd("XREAD");
                    cmd.arg("COUNT")
                        .arg(READ_COUNT)
                        .arg("BLOCK")
                        .arg(READ_BLOCK_MS)
                        .arg("STREAMS")
                        .arg(&log)
                        .arg(&last);
                    let value: Value = match cmd.query_async(&mut reader).await {
                        Ok(v) => v,
                        Err(e) => return format!("the log's reader: {e}"),
                    };
                    let mut batch: Vec<Logged> = Vec::new();
                    for (id, entry) in scripts::read(&value) {
                        last = id;
                        if let Some(entry) = entry {
                            if let Logged::Message { seq, .. } = &entry {
                                seen.seq.store(*seq, Ordering::Release);
                            }
                            batch.push(entry);
                        }
                    }
                    metrics.cluster_read(batch.len());
                    if !batch.is_empty()
                        && room
                            .send(RoomInput::Cluster(ClusterInput::Logged(batch)))
                            .await
                            .is_err()
                    {
                        return "the room has stopped".to_owned();
                    }
                }
            }
        };
        let hear = {
            let room = self.room.clone();
            async move {
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Some(told) = told(&payload) else {
                        continue;
                    };
                    if room.send(RoomInput::Cluster(told)).await.is_err() {
                        break;
                    }
                }
                "the private message channel closed".to_owned()
            }
        };
        tokio::pin!(read, hear);

        let mut beat = interval(self.settings.lease / 3);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        beat.reset();
        let mut reap = interval(REAP_EVERY);
        reap.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => {
                    let retire = self.scripts.retire(&node, LeaveReason::Shutdown);
                    match self.call(&mut con, retire).await {
                        Ok(gone) => tracing::info!(?gone, "left the room through Redis"),
                        Err(e) => tracing::warn!(%e, "could not take this node's users out"),
                    }
                    return Ended::Stopped;
                }
                why = &mut read => return Ended::Lost(why),
                why = &mut hear => return Ended::Lost(why),
                Some(first) = self.publishes.recv() => {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match self.publishes.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    let left = self.link.depth.fetch_sub(batch.len(), Ordering::AcqRel);
                    self.metrics.cluster_queue(left.saturating_sub(batch.len()));
                    if let Some(ended) = self.send_batch(&mut con, batch).await {
                        return ended;
                    }
                }
                _ = beat.tick() => {
                    match self.call(&mut con, self.scripts.beat(&node, lease_ms)).await {
                        Ok(v) => match scripts::beat(&v) {
                            Some(b) if b.lapsed || b.epoch != Some(self.seen.epoch.load(Ordering::Acquire)) => {
                                tracing::warn!(lapsed = b.lapsed, "the log forgot this node; joining it again");
                                return Ended::Resync;
                            }
                            Some(b) => {
                                let top: u64 = b.top.split('-').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                                let seen = self.seen.seq.load(Ordering::Acquire);
                                self.metrics.cluster_behind(top.saturating_sub(seen));
                            }
                            None => return Ended::Lost("a beat this server cannot read".into()),
                        },
                        Err(e) => return Ended::Lost(e),
                    }
                    let count: redis::RedisResult<u64> = timeout(
                        CALL_TIMEOUT,
                        redis::cmd("ZCARD").arg(&self.scripts.keys().nodes).query_async(&mut con),
                    )
                    .await
                    .unwrap_or(Ok(0));
                    if let Ok(n) = count {
                        self.link.nodes.store(n, Ordering::Release);
                        self.metrics.cluster_nodes(n);
                    }
                }
                _ = reap.tick() => {
                    match self.call(&mut con, self.scripts.reap()).await {
                        Ok(Value::Int(n)) if n > 0 => tracing::info!(users = n, "wrote out the users of nodes gone silent"),
                        Ok(_) => {}
                        Err(e) => return Ended::Lost(e),
                    }
                }
            }
        }
    }

    /// Refuses to run against a Redis that may delete the room's keys when full.
    async fn check(&self, con: &mut MultiplexedConnection) -> Result<(), Fatal> {
        let policy: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(con)
            .await;
        match policy {
            Ok(pair) => match pair.get(1).map(String::as_str) {
                Some("noeviction") | None => Ok(()),
                Some(other) => Err(Fatal(format!(
                    "Redis at {} has maxmemory-policy {other}, which may delete the room's keys \
                     when it is full; set `maxmemory-policy noeviction` (redis.conf, or \
                     CONFIG SET maxmemory-policy noeviction) and start again",
                    self.settings.url
                ))),
            },
            // CONFIG may be renamed away on a managed Redis: said, not fatal.
            Err(e) => {
                tracing::warn!(%e, "cannot read Redis's maxmemory-policy; it must be noeviction");
                Ok(())
            }
        }
    }

    /// One script call with its timeout; an error reply is the link's fault as much as a
    /// silence (a `NOSCRIPT` after a restart is mended by the next session's loading).
    async fn call(
        &self,
        con: &mut MultiplexedConnection,
        cmd: redis::Cmd,
    ) -> Result<Value, String> {
        let started = Instant::now();
        let result = timeout(CALL_TIMEOUT, cmd.query_async::<Value>(con)).await;
        self.metrics.cluster_round_trip(started.elapsed());
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("Redis did not answer in time".into()),
        }
    }

    /// Sends `batch` in one pipeline, in order, and hands the room what was refused. `Some`
    /// when the session must end.
    async fn send_batch(
        &mut self,
        con: &mut MultiplexedConnection,
        batch: Vec<Publish>,
    ) -> Option<Ended> {
        let node = &self.settings.node;
        let mut pipe = redis::pipe();
        for p in &batch {
            let cmd = match p {
                Publish::Claim {
                    conn,
                    key,
                    look,
                    name,
                } => self.scripts.claim(node, *conn, key, look, name),
                Publish::Say {
                    conn,
                    origin,
                    key,
                    from,
                    text,
                } => self.scripts.say(node, *conn, key, from, text, *origin),
                Publish::Release {
                    conn, key, reason, ..
                } => self.scripts.release(node, *conn, key, *reason),
                Publish::Tell {
                    node: to_node,
                    from,
                    to_key,
                    text,
                    ..
                } => {
                    let payload = serde_json::json!({"to": to_key, "from": from, "text": text});
                    let mut cmd = redis::cmd("PUBLISH");
                    cmd.arg(self.scripts.keys().channel(to_node))
                        .arg(payload.to_string());
                    cmd
                }
                Publish::Moderate { moderation, .. } => self.scripts.moderate(node, moderation),
            };
            pipe.add_command(cmd);
        }
        let started = Instant::now();
        let replies = timeout(CALL_TIMEOUT, pipe.query_async::<Vec<Value>>(con)).await;
        self.metrics.cluster_round_trip(started.elapsed());
        let replies = match replies {
            Ok(Ok(replies)) if replies.len() == batch.len() => replies,
            other => {
                let why = match other {
                    Ok(Ok(_)) => "a pipeline answered short".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "Redis did not answer in time".to_owned(),
                };
                for p in batch {
                    match p {
                        // Perhaps logged, perhaps not: sent again once Redis answers, and
                        // logged once whatever happened (the script drops a seen origin).
                        Publish::Say { .. } if self.retry.len() < QUEUE_BOUND => {
                            self.retry.push(p);
                        }
                        p => self.refuse(p, Refusal::Busy).await,
                    }
                }
                return Some(Ended::Lost(why));
            }
        };
        let mut resync = false;
        for (p, value) in batch.into_iter().zip(replies) {
            match p {
                Publish::Release { .. } => {}
                Publish::Tell {
                    from_conn,
                    to,
                    text,
                    ..
                } => {
                    let heard = matches!(value, Value::Int(n) if n > 0);
                    let result = ClusterInput::TellResult {
                        from_conn,
                        to,
                        text,
                        heard,
                    };
                    let _ = self.send(result).await;
                }
                p => match scripts::reply(&value) {
                    Some(Reply::Ok(_) | Reply::Duplicate) => {}
                    Some(Reply::Taken) => self.refuse(p, Refusal::Taken).await,
                    Some(Reply::LooksLike(other)) => {
                        self.refuse(p, Refusal::LooksLike(other)).await;
                    }
                    Some(Reply::NotMember) => self.refuse(p, Refusal::NotMember).await,
                    Some(Reply::Muted) => self.refuse(p, Refusal::Muted).await,
                    Some(Reply::Lapsed | Reply::NoEpoch) => {
                        resync = true;
                        self.refuse(p, Refusal::Busy).await;
                    }
                    None => {
                        tracing::warn!(?value, "a reply this server cannot read");
                        self.refuse(p, Refusal::Busy).await;
                    }
                },
            }
        }
        resync.then_some(Ended::Resync)
    }
}

/// A private message relayed from another node.
fn told(payload: &str) -> Option<ClusterInput> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let field = |name: &str| v.get(name)?.as_str().map(str::to_owned);
    let to_key = field("to")?;
    Some(ClusterInput::Told {
        // Keys as the sender computed them; the same function on every node.
        to_key: name_key(&to_key),
        from: field("from")?,
        text: field("text")?,
    })
}
