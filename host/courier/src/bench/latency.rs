//! Publish → handler-start latency: the dispatcher's call probe records, for every delivery,
//! the time from the message's `published_at` (the database clock at publish) to the moment
//! just before its plugin call; percentiles are computed from every sample, not estimated.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::dispatcher::CallProbe;

/// One delivery's start: when its message was published and how long until its call began.
#[derive(Debug, Clone, Copy)]
struct Sample {
    published_at: SystemTime,
    latency: Duration,
}

/// The samples of a run, shared with the probes of every dispatcher.
#[derive(Debug, Clone, Default)]
pub struct StartLatencies {
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl StartLatencies {
    /// A probe recording into these samples.
    pub fn probe(&self) -> CallProbe {
        let samples = self.samples.clone();
        CallProbe::new(move |claimed| {
            let now = SystemTime::now();
            // The database's clock and ours are the same clock on one machine; on two, a
            // message "from the future" counts as zero.
            let latency = now.duration_since(claimed.published_at).unwrap_or_default();
            samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Sample {
                    published_at: claimed.published_at,
                    latency,
                });
        })
    }

    /// Forgets every sample (after a warm-up).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The percentiles of the deliveries of messages published at or after `since`.
    pub fn percentiles(&self, since: SystemTime) -> Option<Percentiles> {
        let mut values: Vec<Duration> = self
            .lock()
            .iter()
            .filter(|sample| sample.published_at >= since)
            .map(|sample| sample.latency)
            .collect();
        Percentiles::of(&mut values)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sample>> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Latency percentiles (nearest rank), in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many deliveries were measured.
    pub samples: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of `values` (sorted in place); `None` when there are none.
    pub fn of(values: &mut [Duration]) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank = |quantile: f64| {
            // Nearest rank: the smallest value with at least `quantile` of the values at or
            // below it.
            let count = values.len() as f64;
            let index = ((quantile * count).ceil() as usize).clamp(1, values.len()) - 1;
            values[index].as_secs_f64() * 1000.0
        };
        Some(Percentiles {
            samples: values.len() as u64,
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut values: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut values).unwrap();
        assert_eq!(p.samples, 100);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p95_ms, 95.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);

        let mut one = vec![Duration::from_micros(1500)];
        let p = Percentiles::of(&mut one).unwrap();
        assert_eq!((p.p50_ms, p.p99_ms, p.max_ms), (1.5, 1.5, 1.5));
        assert_eq!(Percentiles::of(&mut []), None);
    }
}
