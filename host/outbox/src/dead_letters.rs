//! Dead letters: deliveries that failed for good (fatal, or out of attempts), kept with their
//! payload and last error until an operator redrives or purges them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Outbox;
use crate::claim::decode_headers;
use crate::error::OutboxError;
use crate::routes::validate_queue;

/// A delivery that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead letter's own id (what redrive takes).
    pub id: i64,
    /// The message id.
    pub message_id: Uuid,
    /// The queue the copy was in.
    pub queue: String,
    /// The message name.
    pub name: String,
    /// The payload, as JSON text.
    pub payload: String,
    /// The publisher's headers.
    pub headers: BTreeMap<String, String>,
    /// When the message was published.
    pub published_at: DateTime<Utc>,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub last_error: String,
    /// When it was dead-lettered.
    pub dead_at: DateTime<Utc>,
}

/// Which dead letters to list: optionally one queue's, oldest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Only this queue's (`None`: every queue's).
    pub queue: Option<String>,
    /// Only those with an id greater than this (the last id of the previous page).
    pub after_id: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

impl Default for DeadLetterQuery {
    fn default() -> Self {
        Self {
            queue: None,
            after_id: None,
            limit: 100,
        }
    }
}

type DeadLetterRow = (
    i64,
    Uuid,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    i32,
    String,
    DateTime<Utc>,
);

fn dead_letter_from_row(row: DeadLetterRow) -> Result<DeadLetter, OutboxError> {
    let (
        id,
        message_id,
        queue,
        name,
        payload,
        headers,
        published_at,
        attempts,
        last_error,
        dead_at,
    ) = row;
    Ok(DeadLetter {
        id,
        message_id,
        queue,
        name,
        payload,
        headers: decode_headers(&headers)?,
        published_at,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error,
        dead_at,
    })
}

impl Outbox {
    /// Lists dead letters, oldest first.
    pub async fn dead_letters(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetter>, OutboxError> {
        if let Some(queue) = &query.queue {
            validate_queue(queue)?;
        }
        let rows: Vec<DeadLetterRow> = sqlx::query_as(&self.sql().list_dead_letters)
            .bind(query.queue.as_deref())
            .bind(query.after_id.unwrap_or(0))
            .bind(i64::from(query.limit))
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(dead_letter_from_row).collect()
    }

    /// One dead letter, if it exists.
    pub async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, OutboxError> {
        let row: Option<DeadLetterRow> = sqlx::query_as(&self.sql().get_dead_letter)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(dead_letter_from_row).transpose()
    }

    /// Sends dead letter `id` back to its queue as a new delivery (attempts start again at
    /// 1), due now. Returns `false` when there is no such dead letter.
    pub async fn redrive(&self, id: i64) -> Result<bool, OutboxError> {
        let count: i64 = sqlx::query_scalar(&self.sql().redrive)
            .bind(vec![id])
            .fetch_one(self.pool())
            .await?;
        Ok(count > 0)
    }

    /// Redrives every dead letter of `queue` (`None`: of every queue). Returns how many.
    pub async fn redrive_all(&self, queue: Option<&str>) -> Result<u64, OutboxError> {
        if let Some(queue) = queue {
            validate_queue(queue)?;
        }
        let count: i64 = sqlx::query_scalar(&self.sql().redrive_queue)
            .bind(queue)
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Deletes the dead letters of `queue` (`None`: of every queue). Returns how many.
    pub async fn purge_dead_letters(&self, queue: Option<&str>) -> Result<u64, OutboxError> {
        if let Some(queue) = queue {
            validate_queue(queue)?;
        }
        let count: i64 = sqlx::query_scalar(&self.sql().purge_dead_letters)
            .bind(queue)
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
