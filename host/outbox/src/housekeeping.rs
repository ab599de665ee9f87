//! Keeping the outbox healthy and observable: rescuing expired leases, pruning the archive,
//! folding counter deltas, and per-queue statistics that stay cheap however long a backlog
//! grows (they read counters and small partial indexes, never the backlog itself).

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Outbox;
use crate::error::OutboxError;

/// Expired claims rescued per statement at most, so one statement never holds many locks.
const RESCUE_BATCH: i32 = 1_000;

/// Released copies counted off their messages per statement at most.
const COLLECT_BATCH: i32 = 50_000;

/// A delivery whose lease expired and which went back to its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescuedDelivery {
    /// Its queue.
    pub queue: String,
    /// The message id.
    pub id: Uuid,
    /// The attempt that did not report back (already counted).
    pub attempt: u32,
}

/// Statistics of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Copies waiting, not in flight: `due + scheduled`.
    pub pending: u64,
    /// Copies due now and not in flight.
    pub due: u64,
    /// Copies due later (scheduled, or waiting for a retry).
    pub scheduled: u64,
    /// Copies leased to a worker right now.
    pub in_flight: u64,
    /// Dead letters of this queue.
    pub dead: u64,
    /// Copies delivered so far.
    pub delivered: u64,
}

/// What [`Outbox::housekeeping`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HousekeepingReport {
    /// Deliveries whose expired lease was rescued.
    pub rescued: Vec<RescuedDelivery>,
    /// Archived deliveries pruned.
    pub pruned: u64,
    /// Released copies of shared messages counted off (and the messages without copies
    /// deleted), plus the release records of batches checked (one per chunk or chunk lease
    /// deleted: not a count of copies; the batches without either left are deleted).
    pub releases_collected: u64,
    /// Counter rows folded together.
    pub counters_folded: u64,
}

impl Outbox {
    /// Counts the copies of shared (fanned-out) messages that left their queues off those
    /// messages and deletes the messages with no copy left, and deletes the messages of
    /// batches with no chunk or chunk lease left. Returns the releases processed: 0 when
    /// another collector (another host's housekeeping) is at work in this schema.
    pub async fn collect_messages(&self) -> Result<u64, OutboxError> {
        let mut total = 0;
        loop {
            let count: i64 = sqlx::query_scalar(&self.sql().collect_messages)
                .bind(COLLECT_BATCH)
                .fetch_one(self.pool())
                .await?;
            total += u64::try_from(count).unwrap_or(0);
            if count < i64::from(COLLECT_BATCH) {
                return Ok(total);
            }
        }
    }

    /// Returns every delivery whose lease expired (its host crashed, or is stuck past the
    /// lease) to its queue, due at once; its attempt stays counted, so a message that keeps
    /// crashing its host still reaches its attempt limit. A late outcome from the old lease
    /// holder is then refused.
    pub async fn rescue_expired(&self) -> Result<Vec<RescuedDelivery>, OutboxError> {
        let mut rescued = Vec::new();
        loop {
            let rows: Vec<(String, Uuid, i32)> = sqlx::query_as(&self.sql().rescue)
                .bind(RESCUE_BATCH)
                .fetch_all(self.pool())
                .await?;
            let full = !rows.is_empty();
            rescued.extend(
                rows.into_iter()
                    .map(|(queue, id, attempt)| RescuedDelivery {
                        queue,
                        id,
                        attempt: u32::try_from(attempt).unwrap_or(0),
                    }),
            );
            if !full {
                return Ok(rescued);
            }
        }
    }

    /// Deletes archived deliveries older than `retention`. Returns how many.
    pub async fn prune_delivered(&self, retention: Duration) -> Result<u64, OutboxError> {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let result = sqlx::query(&self.sql().prune_delivered)
            .bind(retention_ms)
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected())
    }

    /// Folds the per-batch counter deltas into one row per queue (and per unrouted topic).
    /// Returns the number of rows folded away.
    pub async fn compact_counters(&self) -> Result<u64, OutboxError> {
        let (queues, topics): (i64, i64) = sqlx::query_as(&self.sql().compact_counters)
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(queues + topics).unwrap_or(0))
    }

    /// One round of maintenance: rescue expired leases, delete shared messages whose copies
    /// are all gone, prune the archive (when archiving), fold counters. Run it every few
    /// seconds from one task per host; several hosts may run it at once.
    pub async fn housekeeping(&self) -> Result<HousekeepingReport, OutboxError> {
        let rescued = self.rescue_expired().await?;
        let releases_collected = self.collect_messages().await?;
        let pruned = match self.archive_retention() {
            Some(retention) => self.prune_delivered(retention).await?,
            None => 0,
        };
        let counters_folded = self.compact_counters().await?;
        Ok(HousekeepingReport {
            rescued,
            pruned,
            releases_collected,
            counters_folded,
        })
    }

    /// Statistics of every queue that has a route or a history, by name.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, OutboxError> {
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(&self.sql().queue_stats)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(queue, copies, dead, delivered, in_flight, scheduled)| {
                let count = |value: i64| u64::try_from(value).unwrap_or(0);
                let waiting = count(copies).saturating_sub(count(in_flight));
                let scheduled = count(scheduled).min(waiting);
                QueueStats {
                    queue,
                    pending: waiting,
                    due: waiting - scheduled,
                    scheduled,
                    in_flight: count(in_flight),
                    dead: count(dead),
                    delivered: count(delivered),
                }
            })
            .collect())
    }

    /// Messages published to topics without any route (and so not stored), per topic,
    /// since the outbox was created.
    pub async fn unrouted(&self) -> Result<Vec<(String, u64)>, OutboxError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.sql().unrouted)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(topic, count)| (topic, u64::try_from(count).unwrap_or(0)))
            .collect())
    }

    /// When the next copy waiting in one of `queues` becomes due (`None`: none waits). A
    /// worker can sleep until then instead of polling for scheduled deliveries.
    pub async fn next_due_at(&self, queues: &[&str]) -> Result<Option<DateTime<Utc>>, OutboxError> {
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(&self.sql().next_due_at)
            .bind(queues)
            .fetch_one(self.pool())
            .await?;
        Ok(next)
    }
}
