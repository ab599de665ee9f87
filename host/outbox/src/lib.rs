//! Courier's Postgres outbox: publish and fan-out, leased claims, outcomes, retries and
//! backoff, dead letters, wake-ups and housekeeping. It speaks only SQL (through sqlx) and
//! knows nothing of plugins or WebAssembly.
//!
//! The life of a message:
//!
//! 1. [`Outbox::publish`] (or `select courier.publish(...)` in SQL) stores it once and copies
//!    it into every queue routed from its topic ([`Outbox::declare`]), in the publisher's
//!    transaction, and notifies each queue once.
//! 2. A worker woken by [`Wakeups`] calls [`Outbox::claim`]: one statement leases a batch of
//!    due copies (attempt counted) and returns them. No transaction stays open while the
//!    plugin runs.
//! 3. The worker records the outcomes with [`Outbox::complete`], in one transaction per batch,
//!    each only if its lease still holds: delivered (with follow-up events), retry later
//!    (the delay from a [`RetryPolicy`]), or dead letter.
//! 4. [`Outbox::housekeeping`] rescues expired leases (crashed or stuck hosts), prunes the
//!    archive and folds the counters behind [`Outbox::queue_stats`].

mod claim;
mod complete;
mod dead_letters;
mod error;
mod housekeeping;
mod message;
mod publish;
pub mod retry;
mod routes;
mod schema;
mod statements;
mod wakeup;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

pub use claim::{ClaimSpec, ClaimedDelivery, DeliveryKey, Lease};
pub use complete::{CompletedDelivery, Completion, CompletionReport};
pub use dead_letters::{DeadLetter, DeadLetterQuery};
pub use error::{OutboxError, PublishError};
pub use housekeeping::{HousekeepingReport, QueueStats, RescuedDelivery};
pub use message::{NewMessage, parse_message_id, topic_of, validate_name};
pub use publish::PublishReport;
pub use retry::{Backoff, Failure, RetryPolicy};
pub use routes::{DeletedQueue, Route, validate_queue};
pub use schema::{DEFAULT_SCHEMA, Schema, migrate};
pub use wakeup::Wakeups;

use statements::Statements;

/// How an [`Outbox`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOptions {
    /// The schema holding the outbox's tables and functions (default `courier`).
    pub schema: String,
    /// Keep delivered copies (with their payload) in the `delivered` table for this long
    /// instead of deleting them at completion; [`Outbox::housekeeping`] prunes them.
    /// `None` (the default): delete at completion.
    pub archive_delivered: Option<Duration>,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            schema: DEFAULT_SCHEMA.to_owned(),
            archive_delivered: None,
        }
    }
}

/// The outbox in one Postgres schema. Cheap to clone (a pool and shared statements).
#[derive(Clone)]
pub struct Outbox {
    pool: PgPool,
    inner: Arc<Inner>,
}

struct Inner {
    schema: Schema,
    archive_delivered: Option<Duration>,
    statements: Statements,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("schema", &self.inner.schema.name())
            .field("archive_delivered", &self.inner.archive_delivered)
            .finish()
    }
}

impl Outbox {
    /// An outbox on `pool`, in the schema of `options` (validated). Nothing is sent to the
    /// database; call [`Outbox::migrate`] once at start.
    pub fn new(pool: PgPool, options: OutboxOptions) -> Result<Self, OutboxError> {
        let schema = Schema::new(&options.schema)?;
        let statements = Statements::new(&schema);
        Ok(Self {
            pool,
            inner: Arc::new(Inner {
                schema,
                archive_delivered: options.archive_delivered,
                statements,
            }),
        })
    }

    /// Creates the schema if needed and applies pending migrations, under an advisory lock
    /// (hosts starting together apply them once).
    pub async fn migrate(&self) -> Result<(), OutboxError> {
        schema::migrate(&self.pool, &self.inner.schema).await
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        self.inner.schema.name()
    }

    /// The `NOTIFY` channel of this outbox (`<schema>.wakeup`); payloads are queue names.
    pub fn wakeup_channel(&self) -> String {
        self.inner.schema.wakeup_channel()
    }

    /// Whether delivered copies are archived.
    pub fn archives_delivered(&self) -> bool {
        self.inner.archive_delivered.is_some()
    }

    /// How long delivered copies are archived, when they are.
    pub fn archive_retention(&self) -> Option<Duration> {
        self.inner.archive_delivered
    }

    pub(crate) fn sql(&self) -> &Statements {
        &self.inner.statements
    }
}
