//! Recording outcomes: delivered, retry later, dead letter or release, for a whole batch in
//! one call, each only if the caller still holds the delivery's lease. Follow-up events of
//! delivered messages are published in the same transaction.

use std::collections::HashSet;
use std::time::Duration;

use uuid::Uuid;

use crate::Outbox;
use crate::claim::DeliveryKey;
use crate::error::OutboxError;
use crate::message::NewMessage;

/// What became of a claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Delivered: the copy leaves the queue (and is archived, when archiving is on).
    Delivered,
    /// Failed, to be tried again after `delay` (from the database's clock); the attempt
    /// stays counted and `error` is kept as the delivery's last error.
    Retry {
        /// How long to wait.
        delay: Duration,
        /// Why the attempt failed.
        error: String,
    },
    /// Failed for good: the copy moves to the dead letters with `error`.
    DeadLetter {
        /// Why.
        error: String,
    },
    /// Not attempted after all (for example, the host is shutting down): the copy returns to
    /// its queue, due at once, and the attempt counted at claim time is given back.
    Release,
}

/// The outcome of one claimed delivery, with the follow-up events its handler published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedDelivery {
    /// The delivery and the lease it was claimed under.
    pub delivery: DeliveryKey,
    /// Its outcome.
    pub completion: Completion,
    /// Follow-up events, published with the outcome only when it is
    /// [`Completion::Delivered`] (and the lease still held); discarded otherwise.
    pub follow_ups: Vec<NewMessage>,
}

impl CompletedDelivery {
    /// An outcome without follow-up events.
    pub fn new(delivery: DeliveryKey, completion: Completion) -> Self {
        Self {
            delivery,
            completion,
            follow_ups: Vec::new(),
        }
    }
}

/// What [`Outbox::complete`] recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletionReport {
    /// Deliveries recorded as delivered.
    pub delivered: usize,
    /// Deliveries scheduled for another attempt.
    pub retried: usize,
    /// Deliveries moved to the dead letters.
    pub dead_lettered: usize,
    /// Deliveries released back to their queue.
    pub released: usize,
    /// Deliveries whose lease was no longer the caller's (it expired and the delivery was
    /// rescued, or claimed again): nothing was recorded for them and their follow-up events
    /// were not published. The delivery runs again, or already has.
    pub lease_lost: Vec<DeliveryKey>,
    /// Follow-up messages published.
    pub follow_ups: usize,
}

impl CompletionReport {
    fn absorb(&mut self, other: CompletionReport) {
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.released += other.released;
        self.lease_lost.extend(other.lease_lost);
        self.follow_ups += other.follow_ups;
    }
}

impl Outbox {
    /// Records a batch of outcomes in one transaction. Each is applied only if the caller
    /// still holds the delivery's lease; the others are listed in
    /// [`CompletionReport::lease_lost`] and change nothing. Follow-up events of delivered
    /// messages are published in the same transaction.
    pub async fn complete(
        &self,
        completions: &[CompletedDelivery],
    ) -> Result<CompletionReport, OutboxError> {
        if completions.is_empty() {
            return Ok(CompletionReport::default());
        }
        // Two outcomes for one copy in a batch (its lease expired and it was claimed again
        // while the first outcome waited): the statements name lost leases by queue and id,
        // so the second outcome goes in a statement of its own.
        let mut seen = HashSet::with_capacity(completions.len());
        if let Some(split) = completions
            .iter()
            .position(|c| !seen.insert((c.delivery.queue.as_str(), c.delivery.id)))
        {
            let mut report = Box::pin(self.complete(&completions[..split])).await?;
            report.absorb(Box::pin(self.complete(&completions[split..])).await?);
            return Ok(report);
        }
        let mut queues = Vec::with_capacity(completions.len());
        let mut ids = Vec::with_capacity(completions.len());
        let mut tokens = Vec::with_capacity(completions.len());
        let mut kinds = Vec::with_capacity(completions.len());
        let mut delays = Vec::with_capacity(completions.len());
        let mut errors: Vec<Option<&str>> = Vec::with_capacity(completions.len());
        for completed in completions {
            let (kind, delay, error) = match &completed.completion {
                Completion::Delivered => (b'd', 0, None),
                Completion::Retry { delay, error } => (
                    b'r',
                    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                    Some(error.as_str()),
                ),
                Completion::DeadLetter { error } => (b'x', 0, Some(error.as_str())),
                Completion::Release => (b'l', 0, None),
            };
            queues.push(completed.delivery.queue.as_str());
            ids.push(completed.delivery.id);
            tokens.push(completed.delivery.lease_token);
            kinds.push(kind as i8);
            delays.push(delay);
            errors.push(error);
        }
        let has_follow_ups = completions.iter().any(|completed| {
            completed.completion == Completion::Delivered && !completed.follow_ups.is_empty()
        });
        // Copies delivered and not archived (the common case) take the lean statement.
        let all_delivered = !self.archives_delivered()
            && completions
                .iter()
                .all(|completed| completed.completion == Completion::Delivered);
        let query = if all_delivered {
            sqlx::query_as::<_, (String, Uuid)>(&self.sql().complete_delivered)
                .bind(&queues)
                .bind(&ids)
                .bind(&tokens)
        } else {
            sqlx::query_as::<_, (String, Uuid)>(&self.sql().complete)
                .bind(&queues)
                .bind(&ids)
                .bind(&tokens)
                .bind(&kinds)
                .bind(&delays)
                .bind(&errors)
                .bind(self.archives_delivered())
        };

        // Follow-up events are published in the transaction that records their delivery.
        let mut transaction = if has_follow_ups {
            Some(self.pool().begin().await?)
        } else {
            None
        };
        let lost: Vec<(String, Uuid)> = match transaction.as_mut() {
            Some(transaction) => query.fetch_all(&mut **transaction).await?,
            None => query.fetch_all(self.pool()).await?,
        };
        let lost_set: HashSet<(&str, Uuid)> = lost
            .iter()
            .map(|(queue, id)| (queue.as_str(), *id))
            .collect();
        let mut follow_ups = 0;
        if let Some(mut transaction) = transaction {
            let messages: Vec<NewMessage> = completions
                .iter()
                .filter(|completed| {
                    completed.completion == Completion::Delivered
                        && !lost_set
                            .contains(&(completed.delivery.queue.as_str(), completed.delivery.id))
                })
                .flat_map(|completed| completed.follow_ups.iter().cloned())
                .collect();
            follow_ups = messages.len();
            self.publish(&mut *transaction, &messages).await?;
            transaction.commit().await?;
        }

        let mut report = CompletionReport {
            follow_ups,
            ..CompletionReport::default()
        };
        for completed in completions {
            let key = &completed.delivery;
            if lost_set.contains(&(key.queue.as_str(), key.id)) {
                report.lease_lost.push(key.clone());
                continue;
            }
            match completed.completion {
                Completion::Delivered => report.delivered += 1,
                Completion::Retry { .. } => report.retried += 1,
                Completion::DeadLetter { .. } => report.dead_lettered += 1,
                Completion::Release => report.released += 1,
            }
        }
        Ok(report)
    }
}
