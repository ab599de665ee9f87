//! Claiming deliveries: one statement picks the oldest due copies of some queues
//! (`FOR UPDATE SKIP LOCKED`, so concurrent claimers never take the same row), leases them to
//! the caller and counts the attempt, then returns them with their message. The transaction
//! ends with the statement: the caller runs plugins holding no lock.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Outbox;
use crate::error::OutboxError;
use crate::message::{topic_of, validate_name};

/// Which deliveries a claim may take: the copies in `queue` whose message name is one of
/// `names` (full names, `topic.event`). Copies of other names stay in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSpec {
    /// The queue.
    pub queue: String,
    /// The message names served, `topic.event`.
    pub names: Vec<String>,
}

impl ClaimSpec {
    /// A spec for `queue` and `names`.
    pub fn new(
        queue: impl Into<String>,
        names: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            queue: queue.into(),
            names: names.into_iter().map(Into::into).collect(),
        }
    }
}

/// A lease on a claimed delivery: only its holder may record the outcome, until it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The owner token: the claim's own for copies held as rows; for copies of a chunk, the
    /// token of the chunk lease holding them (one per chunk a claim takes from).
    pub token: Uuid,
    /// When the lease expires (database clock); after that, rescue may return the delivery
    /// to its queue and the holder's outcome is refused.
    pub expires_at: DateTime<Utc>,
}

/// Identifies a claimed delivery and the lease it was claimed under; what completing needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    /// The queue of this copy.
    pub queue: String,
    /// The message id.
    pub id: Uuid,
    /// The lease owner token.
    pub lease_token: Uuid,
}

/// A delivery claimed by [`Outbox::claim`]: one copy of a message in one queue, leased to
/// the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// The message id: the same in every queue and on every attempt.
    pub id: Uuid,
    /// The queue this copy is in.
    pub queue: String,
    /// The message name, `topic.event`.
    pub name: String,
    /// The payload, as JSON text.
    pub payload: String,
    /// The publisher's headers.
    pub headers: BTreeMap<String, String>,
    /// This attempt, starting at 1; counted at claim time, so an attempt that crashed its
    /// host still counts.
    pub attempt: u32,
    /// When the message was published.
    pub published_at: DateTime<Utc>,
    /// When this copy became due.
    pub deliver_at: DateTime<Utc>,
    /// Why the previous attempt failed, if one did.
    pub last_error: Option<String>,
    /// The lease this claim holds.
    pub lease: Lease,
}

impl ClaimedDelivery {
    /// The key to complete this delivery with.
    pub fn key(&self) -> DeliveryKey {
        DeliveryKey {
            queue: self.queue.clone(),
            id: self.id,
            lease_token: self.lease.token,
        }
    }

    /// The topic: the part of the name before the dot.
    pub fn topic(&self) -> &str {
        topic_of(&self.name)
    }
}

/// One claimed row as the database returns it.
type ClaimRow = (
    Uuid,
    String,
    String,
    DateTime<Utc>,
    i32,
    DateTime<Utc>,
    Option<String>,
    String,
    String,
    DateTime<Utc>,
    Uuid,
);

impl Outbox {
    /// Claims up to `limit` due deliveries of the queues and names in `specs`, oldest first
    /// (by due time, then id), leasing them for `lease` and counting the attempt.
    ///
    /// Concurrent claimers (in this process or other hosts) never receive the same
    /// delivery while its lease holds. Returns an empty list when nothing is due.
    pub async fn claim(
        &self,
        specs: &[ClaimSpec],
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, OutboxError> {
        if limit == 0 || limit > 100_000 {
            return Err(OutboxError::InvalidArgument(format!(
                "a claim takes 1 to 100000 deliveries, not {limit}"
            )));
        }
        let lease_ms = i64::try_from(lease.as_millis())
            .ok()
            .filter(|ms| *ms >= 1)
            .ok_or_else(|| {
                OutboxError::InvalidArgument(format!("invalid lease duration {lease:?}"))
            })?;
        let mut queues = Vec::new();
        let mut names = Vec::new();
        for spec in specs {
            crate::routes::validate_queue(&spec.queue)?;
            if spec.names.is_empty() {
                return Err(OutboxError::NoEventNames(spec.queue.clone()));
            }
            for name in &spec.names {
                validate_name(name)?;
                queues.push(spec.queue.as_str());
                names.push(name.as_str());
            }
        }
        if queues.is_empty() {
            return Ok(Vec::new());
        }

        let token = Uuid::new_v4();
        // One statement, one round trip: `claim_with_tokens` (`migrations/0007`) takes rows
        // with `claim_rows` (`claim` in `migrations/0002_claim_function.sql`: how it keeps to
        // the ready index and why its commit does not wait for the disk) and chunk copies,
        // each returned with the token of its lease.
        let rows: Vec<ClaimRow> = sqlx::query_as(&self.sql().claim)
            .bind(&queues)
            .bind(&names)
            .bind(i32::try_from(limit).expect("checked above"))
            .bind(token)
            .bind(lease_ms)
            .fetch_all(self.pool())
            .await?;
        rows.into_iter()
            .map(|row| {
                let (
                    id,
                    queue,
                    name,
                    deliver_at,
                    attempt,
                    expires_at,
                    last_error,
                    payload,
                    headers,
                    published_at,
                    lease_token,
                ) = row;
                Ok(ClaimedDelivery {
                    id,
                    queue,
                    name,
                    payload,
                    headers: decode_headers(&headers)?,
                    attempt: u32::try_from(attempt).unwrap_or(0),
                    published_at,
                    deliver_at,
                    last_error,
                    lease: Lease {
                        token: lease_token,
                        expires_at,
                    },
                })
            })
            .collect()
    }
}

/// Headers are stored as a JSON object of strings.
pub(crate) fn decode_headers(text: &str) -> Result<BTreeMap<String, String>, OutboxError> {
    if text == "{}" {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(text).map_err(|error| {
        OutboxError::Database(sqlx::Error::Decode(
            format!("stored headers are not a JSON object of strings: {error}").into(),
        ))
    })
}
