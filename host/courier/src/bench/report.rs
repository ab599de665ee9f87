//! What `courier bench` measured: one [`Report`], printed as a table or, with `--json`, as one
//! JSON object with the same fields.

use std::fmt::Write as _;

use serde::Serialize;

use super::latency::Percentiles;

/// The figures of one benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `drain`, `steady` or `idle`.
    pub mode: &'static str,
    /// The plugin delivered to: `noop (built-in)` or the file given.
    pub plugin: String,
    /// `embedded` (a throw-away cluster started for the run) or `external` (`--database-url`).
    pub database: &'static str,
    /// Dispatchers (hosts) on the database, each with its own runtime and connection pool.
    pub hosts: u32,
    /// Queues each message is copied into.
    pub fanout: u32,
    /// Concurrent calls per plugin and host.
    pub concurrency: u32,
    /// Bytes of each payload.
    pub payload_bytes: usize,
    /// Messages per publish statement (drain: the batch; steady: the most one statement
    /// carries when publishing falls behind).
    pub batch_size: u32,
    /// The most deliveries one claim takes.
    pub claim_batch_size: u32,
    /// The publish rate asked for (steady), per second.
    pub target_rate: Option<u64>,
    /// Messages published (each copied into `fanout` queues).
    pub published: u64,
    /// Seconds publishing took.
    pub publish_seconds: f64,
    /// Messages published per second.
    pub published_per_second: f64,
    /// Deliveries that ended ok (over all queues).
    pub delivered: u64,
    /// Deliveries expected: `published × fanout`.
    pub expected_deliveries: u64,
    /// Deliveries scheduled for another attempt.
    pub retried: u64,
    /// Deliveries moved to the dead letters.
    pub dead: u64,
    /// Copies still in the outbox when the run ended (0 when everything was delivered).
    pub left_in_outbox: u64,
    /// Seconds from the start of delivering (drain: the plugins being activated; steady: the
    /// first publish) to the last delivery recorded.
    pub deliver_seconds: f64,
    /// Deliveries per second over `deliver_seconds`.
    pub delivered_per_second: f64,
    /// Publish → handler start, from the message's `published_at` (database clock) to the
    /// instant before the plugin call, for every delivery (steady only).
    pub latency: Option<Percentiles>,
    /// CPU seconds of the hosts during `deliver_seconds` (the benchmark's own publisher is
    /// not counted).
    pub host_cpu_seconds: f64,
    /// `host_cpu_seconds` as a share of one core over `deliver_seconds`, in percent.
    pub host_cpu_percent: f64,
    /// The process's peak resident set size during the run, in bytes: from the RSS at its
    /// start, so in a comparison memory still held from earlier runs counts.
    pub peak_rss_bytes: u64,
    /// CPU seconds of the embedded Postgres (every process of it) during `deliver_seconds`;
    /// `null` for an external server.
    pub postgres_cpu_seconds: Option<f64>,
}

impl Report {
    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let queues = if self.fanout == 1 {
            "1 queue".to_owned()
        } else {
            format!("{} queues", self.fanout)
        };
        let hosts = if self.hosts == 1 {
            "1 host".to_owned()
        } else {
            format!("{} hosts", self.hosts)
        };
        let _ = writeln!(
            out,
            "courier bench: {} mode, plugin {}, {queues}, {hosts}, concurrency {}, {} Postgres",
            self.mode, self.plugin, self.concurrency, self.database
        );
        let mut row = |label: &str, value: String| {
            let _ = writeln!(out, "  {label:<22} {value}");
        };
        if let Some(rate) = self.target_rate {
            row("target rate", format!("{}/s", thousands(rate as f64)));
        }
        row(
            "published",
            format!(
                "{:>10} in {:.2} s = {}/s  ({} B payloads, {} per statement)",
                thousands(self.published as f64),
                self.publish_seconds,
                thousands(self.published_per_second),
                self.payload_bytes,
                self.batch_size
            ),
        );
        row(
            "delivered",
            format!(
                "{:>10} in {:.2} s = {}/s  (of {} expected; claims of up to {})",
                thousands(self.delivered as f64),
                self.deliver_seconds,
                thousands(self.delivered_per_second),
                thousands(self.expected_deliveries as f64),
                self.claim_batch_size
            ),
        );
        if self.retried > 0 || self.dead > 0 || self.left_in_outbox > 0 {
            row(
                "not delivered",
                format!(
                    "{} retried, {} dead, {} left in the outbox",
                    self.retried, self.dead, self.left_in_outbox
                ),
            );
        }
        if let Some(latency) = &self.latency {
            row(
                "publish → start",
                format!(
                    "p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} deliveries)",
                    latency.p50_ms,
                    latency.p95_ms,
                    latency.p99_ms,
                    latency.max_ms,
                    thousands(latency.samples as f64)
                ),
            );
        }
        row(
            "host CPU",
            format!(
                "{:.2} s  ({:.1}% of one core)",
                self.host_cpu_seconds, self.host_cpu_percent
            ),
        );
        row(
            "host peak RSS",
            format!("{:.1} MiB", self.peak_rss_bytes as f64 / (1 << 20) as f64),
        );
        row(
            "Postgres CPU",
            match self.postgres_cpu_seconds {
                Some(seconds) => format!("{seconds:.2} s"),
                None => "not measured (external server)".to_owned(),
            },
        );
        out
    }
}

/// A number rounded to a whole and grouped by thousands: `45,210`.
pub(super) fn thousands(value: f64) -> String {
    let whole = value.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(45_210.6), "45,211");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
