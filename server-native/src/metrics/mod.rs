//! The server's metrics, served on the HTTP listener's `/metrics` in the OpenMetrics text
//! format (which Prometheus reads) by `prometheus-client`, the official Rust client.
//!
//! [`Metrics`] is a cheap handle that every part of the server holds a clone of; each hook
//! is one call where the thing happens (the door, the room task, a connection's writer). With
//! `--metrics off` the handle is empty and every hook returns at once.
//!
//! The hot path stays lock-free: counters and gauges are atomics, updated in place; the
//! delivery-latency histogram is ours ([`Latency`]), one set of atomic buckets per worker
//! thread, summed when scraped, because the crate's own histogram takes a mutex per sample.
//! The unsent bytes across connections are not counted as they change at all: a scrape adds up
//! the outboxes' own counters, which are there anyway for `--max-queue`.
//!
//! Delivery latency is sampled, exactly, on frames that find their connection's queue empty:
//! the room stamps the queue (a [`Probe`]) with the time it took the input the frame answers,
//! and the writer that has written and flushed the batch holding it records the time since.
//! Frames that queue up behind it are not sampled (their wait is the queue's depth, which the
//! queued-bytes gauges show). The room stamps the first such frame of each input and one
//! delivery in [`SAMPLE_EVERY`] besides: every message of a small room, and a spread of the
//! recipients of a broadcast to thousands, without touching a probe per delivery. A sample
//! costs no clock read in the room, one in the writer, and no memory per frame.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use chat_core::{CloseReason, LeaveReason, LogRecord, Refusal, Stats, Timestamp, Wire};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::clock::Clock;
use crate::listener::Listener;

mod cluster;
mod latency;

use latency::Latency;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label, as `[(name, value)]`.
type Label = [(&'static str, &'static str); 1];

/// Besides the first frame an input causes, one delivery in this many is stamped for the
/// latency histogram when it finds its queue empty.
const SAMPLE_EVERY: u64 = 64;

/// The metrics handle: cheap to clone; empty (and every hook free) with `--metrics off`.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Inner>>);

struct Inner {
    registry: Registry,
    /// The room's clock, so that a writer reads the time on the same scale as the room's
    /// timestamps.
    clock: Clock,
    open_tcp: Gauge,
    open_websocket: Gauge,
    accepted_tcp: Counter,
    accepted_http: Counter,
    refused_full: Counter,
    refused_address_limit: Counter,
    refused_address_rate: Counter,
    refused_out_of_fds: Counter,
    joins: Counter,
    /// By [`LeaveReason`], in [`leave_index`]'s order.
    leaves: [Counter; 8],
    public_messages: Counter,
    private_messages: Counter,
    flood_rejections: Counter,
    deliveries: Counter,
    delivered_bytes: Counter,
    too_slow: Counter,
    latency: Latency,
    /// The stamp (see [`Probe`]) last put on a frame: the room stamps the first frame of each
    /// input it takes. Only the room task touches it.
    last_stamp: AtomicU64,
    outboxes: Arc<Outboxes>,
    cluster: cluster::Cluster,
}

/// Why a connection was turned away, for `chat_connections_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `--max-users` reached: `Server is full`, or `503` for a WebSocket past the slack.
    Full,
    /// Its address already holds `--max-conns-per-ip` connections.
    AddressLimit,
    /// Its address opens connections faster than `--max-new-per-ip` a minute.
    AddressRate,
    /// The process is out of file descriptors.
    OutOfFds,
}

impl From<&Refusal> for Refused {
    fn from(refusal: &Refusal) -> Refused {
        match refusal {
            Refusal::TooManyOpen => Refused::AddressLimit,
            Refusal::TooFast { .. } => Refused::AddressRate,
        }
    }
}

/// The labels of `chat_leaves_total`, in [`leave_index`]'s order.
const LEAVE_REASONS: [&str; 8] = [
    "quit",
    "idle_timeout",
    "dropped",
    "too_slow",
    "shutdown",
    "lost",
    "kicked",
    "banned",
];

fn leave_index(reason: LeaveReason) -> usize {
    match reason {
        LeaveReason::Quit => 0,
        LeaveReason::IdleTimeout => 1,
        LeaveReason::Dropped => 2,
        LeaveReason::TooSlow => 3,
        LeaveReason::Shutdown => 4,
        LeaveReason::Lost => 5,
        LeaveReason::Kicked => 6,
        LeaveReason::Banned => 7,
    }
}

impl Metrics {
    /// The server's metrics when `on`, counting from now, with latencies read on `clock` (the
    /// room's); an empty handle otherwise.
    pub fn new(on: bool, clock: Clock) -> Metrics {
        if !on {
            return Metrics(None);
        }
        let mut registry = Registry::with_prefix("chat");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };

        let open = Family::<Label, Gauge>::default();
        registry.register(
            "connections_open",
            "Chat connections being served (past the door and any TLS handshake), by transport",
            open.clone(),
        );
        let open_tcp = open.get_or_create_owned(&[("transport", "tcp")]);
        let open_websocket = open.get_or_create_owned(&[("transport", "websocket")]);
        let [accepted_tcp, accepted_http] = family(
            &mut registry,
            "connections_accepted",
            "Connections let in at the door, by listener (http: every request, /ws included)",
            "listener",
            ["tcp", "http"],
        );
        let [
            refused_full,
            refused_address_limit,
            refused_address_rate,
            refused_out_of_fds,
        ] = family(
            &mut registry,
            "connections_refused",
            "Connections turned away, by reason: full (--max-users), address_limit \
                 (--max-conns-per-ip), address_rate (--max-new-per-ip), out_of_fds",
            "reason",
            ["full", "address_limit", "address_rate", "out_of_fds"],
        );
        let joins = counter(&mut registry, "joins", "Users who joined the room");
        let leaves = family(
            &mut registry,
            "leaves",
            "Users who left the room, by reason",
            "reason",
            LEAVE_REASONS,
        );
        let [public_messages, private_messages] = family(
            &mut registry,
            "messages",
            "Messages sent, by kind: public (to everyone, logged) or private (/msg, delivered)",
            "kind",
            ["public", "private"],
        );
        let flood_rejections = counter(
            &mut registry,
            "flood_rejections",
            "Lines and messages dropped by flood control",
        );
        let deliveries = counter(
            &mut registry,
            "deliveries",
            "Frames (encoded events) handed to connections' outboxes",
        );
        let delivered_bytes = Counter::default();
        registry.register_with_unit(
            "delivered",
            "Bytes of the frames handed to connections' outboxes",
            Unit::Bytes,
            delivered_bytes.clone(),
        );
        let too_slow = counter(
            &mut registry,
            "too_slow_disconnects",
            "Connections dropped because their unsent output passed --max-queue",
        );
        let outboxes = Arc::new(Outboxes::default());
        registry.register_with_unit(
            "queued",
            "Bytes handed to connections and not yet written to their sockets, all together",
            Unit::Bytes,
            Queued {
                outboxes: outboxes.clone(),
                max: false,
            },
        );
        registry.register_with_unit(
            "queued_max",
            "Bytes handed to one connection and not yet written, on the connection with most",
            Unit::Bytes,
            Queued {
                outboxes: outboxes.clone(),
                max: true,
            },
        );
        let latency = Latency::default();
        registry.register_with_unit(
            "delivery_latency",
            "Time from the room taking an input to the frame it caused being written to a \
             connection's socket, sampled on frames that found their connection's queue empty",
            Unit::Seconds,
            latency.clone(),
        );
        let cluster = cluster::Cluster::register(&mut registry);
        Metrics(Some(Arc::new(Inner {
            cluster,
            registry,
            clock,
            open_tcp,
            open_websocket,
            accepted_tcp,
            accepted_http,
            refused_full,
            refused_address_limit,
            refused_address_rate,
            refused_out_of_fds,
            joins,
            leaves,
            public_messages,
            private_messages,
            flood_rejections,
            deliveries,
            delivered_bytes,
            too_slow,
            latency,
            last_stamp: AtomicU64::new(UNSTAMPED),
            outboxes,
        })))
    }

    /// The metrics as OpenMetrics text ([`CONTENT_TYPE`]); `None` with `--metrics off`.
    pub fn encode(&self) -> Option<Result<String, fmt::Error>> {
        let inner = self.0.as_ref()?;
        let mut text = String::with_capacity(8 * 1024);
        Some(prometheus_client::encoding::text::encode(&mut text, &inner.registry).map(|()| text))
    }

    /// The room is about to hand a connection a frame of `len` bytes, its queue holding
    /// `was_queued` bytes before it; `now` is when the room took the input the frame answers.
    /// Counts the delivery and, for a sample of the frames that find their queue empty (the
    /// first an input causes, and one delivery in [`SAMPLE_EVERY`]), stamps the connection's
    /// [`Probe`] for its writer. Call before the frame is sent, so that the writer sees the
    /// stamp with the frame.
    ///
    /// The room task alone calls this: its counters are kept with plain loads and stores, and
    /// only a sampled frame touches the connection's probe, so a delivery costs a few
    /// instructions and no cache line another thread writes.
    pub fn enqueued(&self, probe: &Probe, was_queued: usize, len: usize, now: Timestamp) {
        let Some(m) = &self.0 else { return };
        let n = add(&m.deliveries, 1);
        add(&m.delivered_bytes, len as u64);
        if was_queued != 0 {
            return;
        }
        let at = u64::try_from(now.as_duration().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        if (m.last_stamp.load(Ordering::Relaxed) != at || n.is_multiple_of(SAMPLE_EVERY))
            && let Some(p) = &probe.0
        {
            m.last_stamp.store(at, Ordering::Relaxed);
            p.since.store(at, Ordering::Relaxed);
        }
    }

    /// Counts a connection open on `wire` (the line wire is TCP, nc; the JSON wire is
    /// WebSocket) until the returned guard is dropped.
    pub fn open(&self, wire: Wire) -> Open {
        Open(self.0.as_ref().map(|m| {
            let gauge = match wire {
                Wire::Line => &m.open_tcp,
                Wire::Json => &m.open_websocket,
            };
            gauge.inc();
            gauge.clone()
        }))
    }

    /// A connection was let in at the door.
    pub fn accepted(&self, listener: Listener) {
        if let Some(m) = &self.0 {
            match listener {
                Listener::Line => m.accepted_tcp.inc(),
                Listener::Http => m.accepted_http.inc(),
            };
        }
    }

    /// A connection was turned away.
    pub fn refused(&self, why: Refused) {
        if let Some(m) = &self.0 {
            match why {
                Refused::Full => &m.refused_full,
                Refused::AddressLimit => &m.refused_address_limit,
                Refused::AddressRate => &m.refused_address_rate,
                Refused::OutOfFds => &m.refused_out_of_fds,
            }
            .inc();
        }
    }

    /// The room closed a connection: one it refused as full counts among the refusals.
    pub fn closed(&self, reason: CloseReason) {
        if reason == CloseReason::Full {
            self.refused(Refused::Full);
        }
    }

    /// Counts what a log record says happened: a join, a leave or a public message.
    pub fn logged(&self, record: &LogRecord) {
        if let Some(m) = &self.0 {
            match record {
                LogRecord::Join { .. } => m.joins.inc(),
                LogRecord::Leave { reason, .. } => m.leaves[leave_index(*reason)].inc(),
                LogRecord::Message(_) | LogRecord::Local { .. } => m.public_messages.inc(),
                LogRecord::Moderation { .. } | LogRecord::OpRefused { .. } => 0,
            };
        }
    }

    /// Brings the counters the room keeps itself up to its [`Stats`]. Only the room task
    /// calls this, so reading a counter and adding the difference loses nothing.
    pub fn room_stats(&self, stats: &Stats) {
        if let Some(m) = &self.0 {
            catch_up(&m.private_messages, stats.private_messages);
            catch_up(&m.flood_rejections, stats.flood_rejections);
        }
    }

    /// The room dropped a connection as too slow.
    pub fn too_slow(&self) {
        if let Some(m) = &self.0 {
            m.too_slow.inc();
        }
    }

    /// Counts `queued`, an outbox's unsent bytes, in the queued-bytes gauges for as long as
    /// the outbox or its connection's end of it lives.
    pub fn track(&self, queued: &Arc<AtomicUsize>) {
        if let Some(m) = &self.0 {
            m.outboxes.track(queued);
        }
    }

    /// A new connection's [`Probe`].
    pub fn probe(&self) -> Probe {
        Probe(self.0.as_ref().map(|m| {
            Arc::new(ProbeInner {
                since: AtomicU64::new(UNSTAMPED),
                metrics: m.clone(),
            })
        }))
    }
}

/// A family of counters with one label, `key`, registered as `name`: one counter per value.
fn family<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Label, Counter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| family.get_or_create_owned(&[(key, value)]))
}

/// Adds `n` to a counter that only the room task writes, without a locked instruction; the
/// new total.
fn add(counter: &Counter, n: u64) -> u64 {
    let total = counter.inner().load(Ordering::Relaxed).wrapping_add(n);
    counter.inner().store(total, Ordering::Relaxed);
    total
}

fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Metrics(on)"
        } else {
            "Metrics(off)"
        })
    }
}

/// Counts a connection among those open while it lives.
#[must_use = "the connection counts as open until this is dropped"]
pub struct Open(Option<Gauge>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

/// `since` when no frame waiting in the queue has its time.
const UNSTAMPED: u64 = 0;

/// One connection's share of the delivery metrics, held by its outbox (the room's end) and
/// its writer: counts what the room hands it, and carries the time of the frame that found
/// its queue empty to the writer (see the module's documentation).
#[derive(Clone, Debug, Default)]
pub struct Probe(Option<Arc<ProbeInner>>);

#[derive(Debug)]
struct ProbeInner {
    /// When the room took the input whose frame found the queue empty, in nanoseconds of the
    /// room's clock plus one; [`UNSTAMPED`] once the writer has taken it.
    since: AtomicU64,
    metrics: Arc<Inner>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Probe {
    /// The writer has written and flushed a batch: if it held a stamped frame, records how
    /// long that frame took. Call before subtracting the batch from the queued bytes: until
    /// they reach zero the room stamps nothing, and then it may stamp the next frame.
    pub fn written(&self) {
        let Some(p) = &self.0 else { return };
        let since = p.since.load(Ordering::Relaxed);
        if since == UNSTAMPED {
            return; // Nothing to take: the line stays as it is, shared with the room.
        }
        p.since.store(UNSTAMPED, Ordering::Relaxed);
        let now = u64::try_from(p.metrics.clock.now().as_duration().as_nanos());
        p.metrics
            .latency
            .observe(now.unwrap_or(u64::MAX).saturating_sub(since - 1));
    }
}

/// Every outbox's unsent-bytes counter, weakly: the queued-bytes gauges add them up when
/// scraped, so that nothing on the hot path counts them twice.
#[derive(Debug, Default)]
struct Outboxes(Mutex<Vec<Weak<AtomicUsize>>>);

impl Outboxes {
    fn track(&self, queued: &Arc<AtomicUsize>) {
        let Ok(mut all) = self.0.lock() else { return };
        // Forget closed connections before growing: at most twice as many entries as ever
        // were open at once.
        if all.len() == all.capacity() {
            all.retain(|q| q.strong_count() > 0);
        }
        all.push(Arc::downgrade(queued));
    }

    /// The unsent bytes of all connections together, and of the one with most.
    fn scan(&self) -> (u64, u64) {
        let Ok(mut all) = self.0.lock() else {
            return (0, 0);
        };
        let (mut total, mut max) = (0u64, 0u64);
        all.retain(|q| {
            let Some(q) = q.upgrade() else { return false };
            let bytes = q.load(Ordering::Relaxed) as u64;
            total = total.saturating_add(bytes);
            max = max.max(bytes);
            true
        });
        (total, max)
    }
}

/// `chat_queued_bytes` (all together) or `chat_queued_max_bytes` (the largest).
#[derive(Debug)]
struct Queued {
    outboxes: Arc<Outboxes>,
    max: bool,
}

impl EncodeMetric for Queued {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let (total, max) = self.outboxes.scan();
        encoder.encode_gauge(&if self.max { max } else { total })
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_counts_nothing_and_serves_nothing() {
        let metrics = Metrics::new(false, Clock::start());
        metrics.refused(Refused::Full);
        let _open = metrics.open(Wire::Line);
        let probe = metrics.probe();
        metrics.enqueued(&probe, 0, 10, Timestamp::ZERO);
        probe.written();
        assert!(metrics.encode().is_none());
    }

    fn line<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find(|l| l.split([' ', '{']).next() == Some(name) && !l.starts_with('#'))
            .unwrap_or_else(|| panic!("{name} in {text}"))
    }

    #[test]
    fn hooks_show_in_the_text() {
        let clock = Clock::start();
        let metrics = Metrics::new(true, clock);
        let open = metrics.open(Wire::Json);
        let _tcp = metrics.open(Wire::Line);
        let _tcp2 = metrics.open(Wire::Line);
        drop(open);
        metrics.accepted(Listener::Http);
        metrics.refused(Refused::AddressRate);
        metrics.closed(CloseReason::Full);
        metrics.closed(CloseReason::Quit);
        metrics.logged(&LogRecord::Leave {
            name: "a".into(),
            reason: LeaveReason::TooSlow,
        });
        metrics.room_stats(&Stats {
            private_messages: 3,
            flood_rejections: 1,
        });
        metrics.room_stats(&Stats {
            private_messages: 5,
            flood_rejections: 1,
        });
        let queued = Arc::new(AtomicUsize::new(700));
        let other = Arc::new(AtomicUsize::new(300));
        metrics.track(&queued);
        metrics.track(&other);
        metrics.track(&Arc::new(AtomicUsize::new(1_000_000))); // Gone at once.

        let probe = metrics.probe();
        metrics.enqueued(&probe, 0, 100, clock.now());
        metrics.enqueued(&probe, 100, 50, clock.now()); // Behind the first: not stamped.
        probe.written();
        probe.written(); // Nothing stamped any more.

        let text = metrics.encode().unwrap().unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for (name, want) in [
            ("chat_connections_open{transport=\"tcp\"}", "2"),
            ("chat_connections_open{transport=\"websocket\"}", "0"),
            ("chat_connections_accepted_total{listener=\"http\"}", "1"),
            ("chat_connections_accepted_total{listener=\"tcp\"}", "0"),
            ("chat_connections_refused_total{reason=\"full\"}", "1"),
            (
                "chat_connections_refused_total{reason=\"address_rate\"}",
                "1",
            ),
            ("chat_leaves_total{reason=\"too_slow\"}", "1"),
            ("chat_messages_total{kind=\"private\"}", "5"),
            ("chat_flood_rejections_total", "1"),
            ("chat_deliveries_total", "2"),
            ("chat_delivered_bytes_total", "150"),
            ("chat_queued_bytes", "1000"),
            ("chat_queued_max_bytes", "700"),
            ("chat_delivery_latency_seconds_count", "1"),
            ("chat_delivery_latency_seconds_bucket{le=\"+Inf\"}", "1"),
        ] {
            let found = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            assert_eq!(found, format!("{name} {want}"), "{text}");
        }
        assert!(line(&text, "chat_delivery_latency_seconds_sum").len() > 10);
    }

    #[test]
    fn the_first_frame_of_each_input_and_one_in_sample_every_are_stamped() {
        let metrics = Metrics::new(true, Clock::start());
        let probes: Vec<Probe> = (0..200).map(|_| metrics.probe()).collect();
        let input = |at: u64| {
            for probe in &probes {
                metrics.enqueued(probe, 0, 1, Timestamp::from_millis(at));
            }
            probes.iter().for_each(Probe::written);
        };
        input(1); // Deliveries 1 (first of the input), 64, 128 and 192.
        input(2); // 201 (first), 256, 320 and 384.
        let text = metrics.encode().unwrap().unwrap();
        assert_eq!(
            line(&text, "chat_delivery_latency_seconds_count"),
            "chat_delivery_latency_seconds_count 8"
        );
        assert_eq!(
            line(&text, "chat_deliveries_total"),
            "chat_deliveries_total 400"
        );
    }
}
