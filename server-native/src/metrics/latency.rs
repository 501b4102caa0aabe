//! The delivery-latency histogram of `/metrics`: one set of atomic buckets per worker thread,
//! summed when scraped, because prometheus-client's own histogram takes a mutex per sample.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// The upper bounds of the delivery-latency buckets, in nanoseconds (and `+Inf`): from 50 µs,
/// where a writer woken at once lands, to 5 s, when something is badly stuck.
const LATENCY_BOUNDS: [u64; 16] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];
/// Sets of latency buckets; each worker thread takes one, round robin.
const SHARDS: usize = 8;

/// A histogram of delivery latencies in nanoseconds, encoded in seconds. Each worker thread
/// adds to a shard of its own (cache-line aligned), so that writers on different threads never
/// contend; a scrape sums the shards.
#[derive(Clone, Debug, Default)]
pub struct Latency(Arc<[Shard; SHARDS]>);

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    /// Samples per bucket (not cumulative): `LATENCY_BOUNDS`, then `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Latency {
    /// Counts one sample of `nanos` nanoseconds.
    pub fn observe(&self, nanos: u64) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        let shard = &self.0[SHARD.with(|s| *s)];
        let bucket = LATENCY_BOUNDS.partition_point(|&bound| bound < nanos);
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let mut buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .map(|&bound| bound as f64 / 1e9)
            .chain([f64::INFINITY])
            .map(|bound| (bound, 0))
            .collect();
        let mut sum_nanos = 0u64;
        for shard in self.0.iter() {
            for (total, count) in buckets.iter_mut().zip(&shard.buckets) {
                total.1 += count.load(Ordering::Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(shard.sum_nanos.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|b| b.1).sum();
        encoder.encode_histogram::<NoLabelSet>(sum_nanos as f64 * 1e-9, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::{Registry, Unit};

    use super::*;

    fn line<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find(|l| l.split([' ', '{']).next() == Some(name) && !l.starts_with('#'))
            .unwrap_or_else(|| panic!("{name} in {text}"))
    }

    #[test]
    fn latency_buckets_take_each_sample_once_across_threads() {
        let latency = Latency::default();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let latency = latency.clone();
                std::thread::spawn(move || {
                    latency.observe(30_000); // 30 µs: the first bucket.
                    latency.observe(1_000_000); // 1 ms exactly: le="0.001".
                    latency.observe(60_000_000_000); // A minute: +Inf only.
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut registry = Registry::default();
        registry.register_with_unit("lat", "l", Unit::Seconds, latency);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "lat_seconds_count 12",
            "lat_seconds_bucket{le=\"0.00005\"} 4",
            "lat_seconds_bucket{le=\"0.0005\"} 4",
            "lat_seconds_bucket{le=\"0.001\"} 8",
            "lat_seconds_bucket{le=\"5.0\"} 8",
            "lat_seconds_bucket{le=\"+Inf\"} 12",
        ] {
            assert!(text.lines().any(|l| l == want), "{want} in {text}");
        }
        let sum: f64 = line(&text, "lat_seconds_sum")
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((sum - 4.0 * 60.00103).abs() < 1e-9, "{sum}");
    }
}
