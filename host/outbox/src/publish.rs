//! Publishing from Rust: a batch of messages in one statement, through any sqlx executor, so
//! the caller's transaction decides whether the messages exist. The statement calls the same
//! SQL function as `courier.publish()`, so fan-out, idempotence, counting and notification
//! have one implementation.

use sqlx::{Executor, Postgres};
use uuid::Uuid;

use crate::Outbox;
use crate::error::PublishError;
use crate::message::NewMessage;

/// SQLSTATE of a unique-constraint violation.
const UNIQUE_VIOLATION: &str = "23505";

/// What a publish stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// The ids of the messages, in the order given.
    pub ids: Vec<Uuid>,
    /// Copies made, over all queues. Messages whose topic has no route make none (they are
    /// counted as unrouted); a copy already in its queue (same id) is not made again.
    pub copies: u64,
}

impl Outbox {
    /// Publishes `messages` through `executor`: a pool (its own transaction), or the caller's
    /// transaction or connection (`&mut *transaction`), in which case the messages exist if
    /// and only if that transaction commits. Every queue routed from a message's topic gets
    /// a copy; each queue that got a due copy is notified once.
    pub async fn publish<'e, E>(
        &self,
        executor: E,
        messages: &[NewMessage],
    ) -> Result<PublishReport, PublishError>
    where
        E: Executor<'e, Database = Postgres>,
    {
        if messages.is_empty() {
            return Ok(PublishReport::default());
        }
        let mut ids = Vec::with_capacity(messages.len());
        let mut names = Vec::with_capacity(messages.len());
        let mut payloads = Vec::with_capacity(messages.len());
        let mut deliver_ats = Vec::with_capacity(messages.len());
        let mut headers: Vec<Option<String>> = Vec::with_capacity(messages.len());
        for message in messages {
            ids.push(message.id);
            names.push(message.name.as_str());
            payloads.push(message.payload.as_str());
            deliver_ats.push(message.deliver_at);
            headers.push(if message.headers.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&message.headers).map_err(|error| {
                    PublishError::InvalidPayload {
                        reason: error.to_string(),
                    }
                })?)
            });
        }
        let fresh_ids = messages.iter().all(|message| message.fresh_id);
        let copies: i64 = sqlx::query_scalar(&self.sql().publish)
            .bind(&ids)
            .bind(&names)
            .bind(&payloads)
            .bind(&deliver_ats)
            .bind(&headers)
            .bind(fresh_ids)
            .fetch_one(executor)
            .await
            .map_err(|error| match &error {
                sqlx::Error::Database(database)
                    if fresh_ids && database.code().as_deref() == Some(UNIQUE_VIOLATION) =>
                {
                    PublishError::PublishedTwice
                }
                _ => PublishError::Database(error),
            })?;
        Ok(PublishReport {
            ids,
            copies: u64::try_from(copies).unwrap_or(0),
        })
    }

    /// Publishes one message; see [`Outbox::publish`].
    pub async fn publish_one<'e, E>(
        &self,
        executor: E,
        message: &NewMessage,
    ) -> Result<Uuid, PublishError>
    where
        E: Executor<'e, Database = Postgres>,
    {
        self.publish(executor, std::slice::from_ref(message))
            .await?;
        Ok(message.id)
    }
}
