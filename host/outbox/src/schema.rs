//! The schema the outbox lives in, and the migrations that create it there.
//!
//! The SQL files in `migrations/` name no schema: they are applied on a connection whose
//! `search_path` is the target schema (then `pg_temp`, so that a session's temporary tables
//! never shadow the outbox's), and their functions capture it with
//! `SET search_path FROM CURRENT`. Each schema therefore has its own tables, functions and
//! `_sqlx_migrations` history, and several outboxes can share one database.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};

use crate::error::OutboxError;

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "courier";

/// The migrations in `migrations/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Key of the advisory lock that serialises schema creation and migrations across hosts
/// (`hashtext('courier.migrate')` would do as well; a constant is easier to find).
const MIGRATION_LOCK: i64 = 0x0063_6f75_7269_6572; // "courier" in ASCII

/// A validated schema name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema(String);

impl Schema {
    /// Checks that `name` is 1 to 48 lowercase ASCII letters, digits or `_`, not starting with
    /// a digit: safe to quote into SQL, and short enough for the notification channel name
    /// derived from it.
    pub fn new(name: &str) -> Result<Self, OutboxError> {
        let valid = !name.is_empty()
            && name.len() <= 48
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(OutboxError::InvalidSchema(name.to_owned()))
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// The channel the outbox notifies when a queue gets due deliveries; the payload is the
    /// queue name.
    pub fn wakeup_channel(&self) -> String {
        format!("{}.wakeup", self.0)
    }
}

impl Default for Schema {
    fn default() -> Self {
        Self(DEFAULT_SCHEMA.to_owned())
    }
}

/// Creates `schema` if needed and applies every pending migration to it, under an advisory
/// lock so that hosts starting together apply them once. Uses a connection of its own (with
/// the pool's settings), so the pool's sessions keep their `search_path`.
pub async fn migrate(pool: &PgPool, schema: &Schema) -> Result<(), OutboxError> {
    let options: PgConnectOptions = pool.connect_options().as_ref().clone();
    let mut connection = options.connect().await?;
    let result = migrate_locked(&mut connection, schema).await;
    let _ = connection.close().await;
    result
}

async fn migrate_locked(connection: &mut PgConnection, schema: &Schema) -> Result<(), OutboxError> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *connection)
        .await?;
    let result = async {
        let quoted = schema.quoted();
        connection
            .execute(
                format!(
                    "CREATE SCHEMA IF NOT EXISTS {quoted}; SET search_path TO {quoted}, pg_temp"
                )
                .as_str(),
            )
            .await?;
        MIGRATOR.run(&mut *connection).await?;
        Ok::<(), OutboxError>(())
    }
    .await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *connection)
        .await;
    result?;
    unlocked?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for good in ["courier", "courier_2", "_x", "a"] {
            assert!(Schema::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Courier",
            "1courier",
            "cour-ier",
            "a\"b",
            &"x".repeat(49),
        ] {
            assert!(Schema::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_channel_carries_the_schema() {
        assert_eq!(Schema::default().wakeup_channel(), "courier.wakeup");
    }
}
