//! The host's Prometheus metrics: what was published, delivered, retried and dead-lettered,
//! and how long deliveries took, per plugin and queue. Served by `GET /metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The labels of every per-delivery metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginQueue {
    pub plugin: String,
    pub queue: String,
}

/// The labels of the publish counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishSource {
    /// `http`, `cli` or `plugin` (follow-up events).
    pub source: String,
}

/// The labels of the per-queue gauges, sampled from the database when scraped.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

type HistogramFamily = Family<PluginQueue, Histogram, fn() -> Histogram>;

/// Every metric the host keeps. Cheap to clone; clones share the values.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Messages published through the host (HTTP, CLI through the API, follow-up events).
    pub published: Family<PublishSource, Counter>,
    /// Plugin calls started, one per delivery (a destination's batch counts each delivery).
    pub calls: Family<PluginQueue, Counter>,
    /// Deliveries that ended `ok`.
    pub delivered: Family<PluginQueue, Counter>,
    /// Deliveries scheduled for another attempt (retry outcomes and crashes).
    pub retried: Family<PluginQueue, Counter>,
    /// Deliveries moved to the dead letters.
    pub dead: Family<PluginQueue, Counter>,
    /// Calls that crashed (trap, timeout, memory limit).
    pub crashed: Family<PluginQueue, Counter>,
    /// Seconds from a delivery's due time to the end of its plugin call.
    pub delivery_latency: HistogramFamily,
    /// Seconds one plugin call took.
    pub call_duration: HistogramFamily,
    /// Deliveries due or scheduled, per queue (sampled when scraped).
    pub queue_pending: Family<QueueLabel, Gauge>,
    /// Deliveries under a lease, per queue (sampled when scraped).
    pub queue_in_flight: Family<QueueLabel, Gauge>,
    /// Dead letters, per queue (sampled when scraped).
    pub queue_dead: Family<QueueLabel, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("courier");
        let published = Family::<PublishSource, Counter>::default();
        let calls = Family::<PluginQueue, Counter>::default();
        let delivered = Family::<PluginQueue, Counter>::default();
        let retried = Family::<PluginQueue, Counter>::default();
        let dead = Family::<PluginQueue, Counter>::default();
        let crashed = Family::<PluginQueue, Counter>::default();
        let delivery_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let call_duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let queue_pending = Family::<QueueLabel, Gauge>::default();
        let queue_in_flight = Family::<QueueLabel, Gauge>::default();
        let queue_dead = Family::<QueueLabel, Gauge>::default();
        registry.register(
            "published",
            "Messages published through this host",
            published.clone(),
        );
        registry.register("calls", "Deliveries handed to a plugin call", calls.clone());
        registry.register("delivered", "Deliveries that ended ok", delivered.clone());
        registry.register(
            "retried",
            "Deliveries scheduled for another attempt",
            retried.clone(),
        );
        registry.register("dead", "Deliveries moved to the dead letters", dead.clone());
        registry.register(
            "crashed",
            "Plugin calls that trapped, timed out or hit their memory limit",
            crashed.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Seconds from a delivery's due time to the end of its plugin call",
            delivery_latency.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Seconds one plugin call took",
            call_duration.clone(),
        );
        registry.register(
            "queue_pending",
            "Deliveries waiting in a queue, due or scheduled",
            queue_pending.clone(),
        );
        registry.register(
            "queue_in_flight",
            "Deliveries of a queue under a lease",
            queue_in_flight.clone(),
        );
        registry.register("queue_dead", "Dead letters of a queue", queue_dead.clone());
        Metrics {
            registry: Arc::new(registry),
            published,
            calls,
            delivered,
            retried,
            dead,
            crashed,
            delivery_latency,
            call_duration,
            queue_pending,
            queue_in_flight,
            queue_dead,
        }
    }

    /// Counts messages published from `source`.
    pub fn count_published(&self, source: &str, count: u64) {
        self.published
            .get_or_create(&PublishSource {
                source: source.to_owned(),
            })
            .inc_by(count);
    }

    /// The handles of one (plugin, queue), to keep and update without a lookup per delivery.
    pub fn for_plugin_queue(&self, plugin: &str, queue: &str) -> PluginQueueMetrics {
        let labels = PluginQueue {
            plugin: plugin.to_owned(),
            queue: queue.to_owned(),
        };
        let follow_ups = PublishSource {
            source: "plugin".to_owned(),
        };
        PluginQueueMetrics {
            follow_ups: self.published.get_or_create(&follow_ups).clone(),
            calls: self.calls.get_or_create(&labels).clone(),
            delivered: self.delivered.get_or_create(&labels).clone(),
            retried: self.retried.get_or_create(&labels).clone(),
            dead: self.dead.get_or_create(&labels).clone(),
            crashed: self.crashed.get_or_create(&labels).clone(),
            delivery_latency: self.delivery_latency.get_or_create(&labels).clone(),
            call_duration: self.call_duration.get_or_create(&labels).clone(),
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The metrics of one (plugin, queue).
#[derive(Debug, Clone)]
pub struct PluginQueueMetrics {
    /// `published{source="plugin"}`: follow-up events published with completions.
    pub follow_ups: Counter,
    pub calls: Counter,
    pub delivered: Counter,
    pub retried: Counter,
    pub dead: Counter,
    pub crashed: Counter,
    pub delivery_latency: Histogram,
    pub call_duration: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_labelled_by_plugin_and_queue() {
        let metrics = Metrics::new();
        let handles = metrics.for_plugin_queue("welcome-email", "emails");
        handles.delivered.inc();
        handles.delivered.inc();
        handles.delivery_latency.observe(0.002);
        metrics.count_published("http", 3);
        let text = metrics.encode();
        assert!(
            text.contains("courier_delivered_total{plugin=\"welcome-email\",queue=\"emails\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("courier_published_total{source=\"http\"} 3"),
            "{text}"
        );
        assert!(text.contains("courier_delivery_latency_seconds_count{plugin=\"welcome-email\",queue=\"emails\"} 1"), "{text}");
    }
}
