//! The metrics of the link to Redis (`--redis`): whether this node is in the room, how long
//! Redis takes to answer, what waits to be sent, how far the log's reader is behind, and how
//! many nodes the log counts alive. Zero on a node alone.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug)]
pub(super) struct Cluster {
    link_up: Gauge,
    round_trip: Histogram,
    queue: Gauge,
    read: Counter,
    behind: Gauge,
    nodes: Gauge,
}

impl Cluster {
    pub(super) fn register(registry: &mut Registry) -> Cluster {
        let c = Cluster {
            link_up: Gauge::default(),
            // 100 µs to about 3 s.
            round_trip: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            queue: Gauge::default(),
            read: Counter::default(),
            behind: Gauge::default(),
            nodes: Gauge::default(),
        };
        registry.register(
            "cluster_link_up",
            "1 while this node is in the room through Redis (--redis), 0 while out of contact \
             or alone",
            c.link_up.clone(),
        );
        registry.register_with_unit(
            "cluster_round_trip",
            "Time Redis took to answer a script call or a pipeline of publishes",
            Unit::Seconds,
            c.round_trip.clone(),
        );
        registry.register(
            "cluster_publish_queue",
            "Publishes (messages, names, leaves, private messages) waiting to be sent to Redis",
            c.queue.clone(),
        );
        registry.register(
            "cluster_log_entries_read",
            "Entries of the room's log read back from Redis",
            c.read.clone(),
        );
        registry.register(
            "cluster_reader_behind",
            "Messages the log holds that this node had not read back, at the last beat",
            c.behind.clone(),
        );
        registry.register(
            "cluster_nodes_alive",
            "Nodes the room's log counts alive, this one included, at the last beat",
            c.nodes.clone(),
        );
        c
    }
}

impl super::Metrics {
    pub fn cluster_link(&self, up: bool) {
        if let Some(m) = &self.0 {
            m.cluster.link_up.set(i64::from(up));
        }
    }

    pub fn cluster_round_trip(&self, took: Duration) {
        if let Some(m) = &self.0 {
            m.cluster.round_trip.observe(took.as_secs_f64());
        }
    }

    pub fn cluster_queue(&self, depth: usize) {
        if let Some(m) = &self.0 {
            m.cluster
                .queue
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
    }

    pub fn cluster_read(&self, entries: usize) {
        if let Some(m) = &self.0 {
            m.cluster.read.inc_by(entries as u64);
        }
    }

    pub fn cluster_behind(&self, messages: u64) {
        if let Some(m) = &self.0 {
            m.cluster
                .behind
                .set(i64::try_from(messages).unwrap_or(i64::MAX));
        }
    }

    pub fn cluster_nodes(&self, nodes: u64) {
        if let Some(m) = &self.0 {
            m.cluster
                .nodes
                .set(i64::try_from(nodes).unwrap_or(i64::MAX));
        }
    }
}
