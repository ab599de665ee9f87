//! Converts between the outbox's rows and the runtime's values, so that the dispatcher, the
//! API and the CLI speak in deliveries and outcomes: claimed rows become runtime deliveries,
//! outcomes become completions (with follow-up events as new messages), and the outbox's
//! records become the API's JSON.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use courier_outbox::{
    ClaimSpec, CompletedDelivery, Completion, DeliveryKey, NewMessage, Outbox, OutboxError,
    OutboxOptions,
};
use courier_runtime::{Delivery, FollowUp, Message};
use serde::Serialize;
use uuid::Uuid;

use crate::config::Settings;
use crate::database::Connection;
use crate::message_input::MessageInput;
use crate::metrics::PluginQueueMetrics;
use crate::sidecar::Subscription;

/// The (queue, names) a plugin version claims, merged per queue.
#[derive(Debug, Clone)]
pub struct ClaimSet {
    specs: Vec<ClaimSpec>,
}

impl ClaimSet {
    /// The claim specs of `subscriptions`: per queue, every `topic.event` name served.
    pub fn new(subscriptions: &[Subscription]) -> ClaimSet {
        let mut by_queue: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for subscription in subscriptions {
            let names = by_queue.entry(&subscription.queue).or_default();
            for event in &subscription.events {
                let name = format!("{}.{event}", subscription.topic);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        ClaimSet {
            specs: by_queue
                .into_iter()
                .map(|(queue, names)| ClaimSpec::new(queue, names))
                .collect(),
        }
    }

    /// The queues claimed from.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        self.specs.iter().map(|spec| spec.queue.as_str())
    }
}

/// A claimed delivery, ready for a plugin.
#[derive(Debug)]
pub struct Claimed {
    /// What the plugin receives.
    pub delivery: Delivery,
    /// What completing it needs.
    pub key: DeliveryKey,
    /// When it became due (for the latency metric).
    pub due_at: SystemTime,
    /// When it was published (the database clock, microseconds), for latency measurements.
    pub published_at: SystemTime,
    /// When this host claimed it.
    pub claimed_at: Instant,
}

/// Claims up to `limit` deliveries of `set`.
pub async fn claim(
    outbox: &Outbox,
    set: &ClaimSet,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Claimed>, OutboxError> {
    let limit = u32::try_from(limit.clamp(1, 100_000)).unwrap_or(100_000);
    let rows = outbox.claim(&set.specs, limit, lease).await?;
    let claimed_at = Instant::now();
    Ok(rows
        .into_iter()
        .map(|row| {
            let key = row.key();
            let due_at: SystemTime = row.deliver_at.into();
            let published_at: SystemTime = row.published_at.into();
            Claimed {
                delivery: Delivery {
                    message: Message {
                        id: row.id,
                        name: row.name,
                        payload: row.payload.into_bytes(),
                        published_at_ms: row.published_at.timestamp_millis(),
                        deliver_at_ms: row.deliver_at.timestamp_millis(),
                        headers: row.headers.into_iter().collect(),
                    },
                    queue: row.queue,
                    attempt: row.attempt,
                },
                key,
                due_at,
                published_at,
                claimed_at,
            }
        })
        .collect())
}

/// A finished delivery on its way to the outbox.
#[derive(Debug)]
pub struct Finished {
    pub claimed: Claimed,
    pub completion: Completion,
    /// Published with the completion when it is [`Completion::Delivered`].
    pub follow_ups: Vec<FollowUp>,
    /// Counted once the outcome is recorded.
    pub metrics: Option<std::sync::Arc<PluginQueueMetrics>>,
}

impl Finished {
    fn count(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        match self.completion {
            Completion::Delivered => {
                metrics.follow_ups.inc_by(self.follow_ups.len() as u64);
                metrics.delivered.inc()
            }
            Completion::Retry { .. } => metrics.retried.inc(),
            Completion::DeadLetter { .. } => metrics.dead.inc(),
            Completion::Release => 0,
        };
    }
}

/// Records a batch of finished deliveries in one transaction, with the follow-up events of
/// the delivered ones, and counts them in the metrics. Returns how many were refused because
/// their lease had expired.
pub async fn record(outbox: &Outbox, batch: &[Finished]) -> Result<usize, OutboxError> {
    let completions: Vec<CompletedDelivery> = batch
        .iter()
        .map(|finished| CompletedDelivery {
            delivery: finished.claimed.key.clone(),
            completion: finished.completion.clone(),
            follow_ups: if finished.completion == Completion::Delivered {
                follow_up_messages(&finished.follow_ups)
            } else {
                Vec::new()
            },
        })
        .collect();
    let report = outbox.complete(&completions).await?;
    if report.lease_lost.is_empty() {
        for finished in batch {
            finished.count();
        }
    } else {
        let lost: std::collections::HashSet<&DeliveryKey> = report.lease_lost.iter().collect();
        for finished in batch {
            if !lost.contains(&finished.claimed.key) {
                finished.count();
            }
        }
    }
    Ok(report.lease_lost.len())
}

/// Releases deliveries that were claimed but never attempted: back to their queues, due at
/// once, their attempt given back.
pub async fn release(outbox: &Outbox, keys: Vec<DeliveryKey>) -> Result<usize, OutboxError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let completions: Vec<CompletedDelivery> = keys
        .into_iter()
        .map(|key| CompletedDelivery::new(key, Completion::Release))
        .collect();
    Ok(outbox.complete(&completions).await?.released)
}

fn follow_up_messages(follow_ups: &[FollowUp]) -> Vec<NewMessage> {
    follow_ups
        .iter()
        .filter_map(|follow_up| {
            let payload = String::from_utf8_lossy(&follow_up.payload).into_owned();
            let message = match NewMessage::from_json_text(follow_up.name.clone(), payload) {
                Ok(message) => message,
                Err(error) => {
                    tracing::error!(name = %follow_up.name, %error, "a follow-up event is invalid and was dropped");
                    return None;
                }
            };
            let mut message = message
                .id(follow_up.id)
                .headers(follow_up.headers.iter().cloned().collect());
            if let Some(at) = follow_up.deliver_at_ms.and_then(DateTime::<Utc>::from_timestamp_millis) {
                message = message.deliver_at(at);
            }
            Some(message)
        })
        .collect()
}

/// Publishes validated messages; returns their ids in order.
pub async fn publish(
    outbox: &Outbox,
    messages: Vec<MessageInput>,
) -> Result<Vec<Uuid>, OutboxError> {
    let messages = messages
        .into_iter()
        .map(|input| {
            let mut message = NewMessage::new(input.name, &input.payload)?.headers(input.headers);
            if let Some(id) = input.id {
                message = message.id(id);
            }
            if let Some(at) = input.deliver_at {
                message = message.deliver_at(at);
            }
            Ok(message)
        })
        .collect::<Result<Vec<_>, courier_outbox::PublishError>>()?;
    let report = outbox.publish(outbox.pool(), &messages).await?;
    Ok(report.ids)
}

/// One queue's statistics, as the API and the CLI show them.
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    pub queue: String,
    pub pending: i64,
    pub due: i64,
    pub scheduled: i64,
    pub in_flight: i64,
    pub dead: i64,
    pub delivered: i64,
}

/// Every queue's statistics.
pub async fn queue_stats(outbox: &Outbox) -> Result<Vec<QueueView>, OutboxError> {
    let signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    Ok(outbox
        .queue_stats()
        .await?
        .into_iter()
        .map(|stats| QueueView {
            queue: stats.queue,
            pending: signed(stats.pending),
            due: signed(stats.due),
            scheduled: signed(stats.scheduled),
            in_flight: signed(stats.in_flight),
            dead: signed(stats.dead),
            delivered: signed(stats.delivered),
        })
        .collect())
}

/// A dead letter, as the API and the CLI show it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    pub id: i64,
    pub message_id: Uuid,
    pub queue: String,
    pub name: String,
    pub payload: serde_json::Value,
    pub headers: BTreeMap<String, String>,
    pub published_at: DateTime<Utc>,
    pub attempts: u32,
    pub last_error: String,
    pub dead_at: DateTime<Utc>,
}

impl DeadLetterView {
    /// One line for the CLI.
    pub fn summary_line(&self) -> String {
        format!(
            "{}  {}  {}  {}  attempts {}  {}  {}",
            self.id,
            self.dead_at.format("%Y-%m-%d %H:%M:%S"),
            self.queue,
            self.name,
            self.attempts,
            self.message_id,
            self.last_error
        )
    }
}

/// Dead letters, oldest first, optionally of one queue, after the dead letter `after`.
pub async fn dead_letters(
    outbox: &Outbox,
    queue: Option<&str>,
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<DeadLetterView>, OutboxError> {
    let query = courier_outbox::DeadLetterQuery {
        queue: queue.map(str::to_owned),
        after_id: after,
        limit,
    };
    Ok(outbox
        .dead_letters(&query)
        .await?
        .into_iter()
        .map(|letter| DeadLetterView {
            id: letter.id,
            message_id: letter.message_id,
            queue: letter.queue,
            name: letter.name,
            payload: serde_json::from_str(&letter.payload)
                .unwrap_or(serde_json::Value::String(letter.payload)),
            headers: letter.headers,
            published_at: letter.published_at,
            attempts: letter.attempts,
            last_error: letter.last_error,
            dead_at: letter.dead_at,
        })
        .collect())
}

/// Sends a dead letter back to its queue; `false` when there is none with that id.
pub async fn redrive(outbox: &Outbox, id: i64) -> Result<bool, OutboxError> {
    outbox.redrive(id).await
}

/// Deletes dead letters; returns how many.
pub async fn purge(outbox: &Outbox, queue: Option<&str>) -> Result<u64, OutboxError> {
    outbox.purge_dead_letters(queue).await
}

/// The outbox of the configured schema on `connection`, migrated.
pub async fn open(connection: &Connection, settings: &Settings) -> Result<Outbox, OutboxError> {
    let outbox = Outbox::new(
        connection.pool.clone(),
        OutboxOptions {
            schema: settings.schema.clone(),
            ..OutboxOptions::default()
        },
    )?;
    outbox.migrate().await?;
    Ok(outbox)
}
