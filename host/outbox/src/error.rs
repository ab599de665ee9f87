//! The outbox's errors: what a caller did wrong (with a message saying how to fix it) or what
//! the database said.

/// Why a message could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The name is not `topic.event`.
    #[error(
        "invalid event name `{name}`: expected `topic.event`, letters, digits, `_` or `-` on \
         each side of one dot, for example `user.created`"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The payload is not a JSON document.
    #[error("invalid payload: not JSON ({reason})")]
    InvalidPayload {
        /// What the JSON parser said.
        reason: String,
    },
    /// The id is not a UUID.
    #[error(
        "invalid message id `{id}`: expected a UUID such as 0191d3f8-5e2a-7c1e-9b1a-3f4e5d6c7b8a"
    )]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// A message built without an explicit id was published a second time.
    #[error(
        "a message without an explicit id was published twice; give messages that may be \
         published again an id (NewMessage::id), which makes re-publishing a no-op"
    )]
    PublishedTwice,
    /// The database refused the publish or could not be reached.
    #[error("publishing failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The schema name cannot be used.
    #[error(
        "invalid schema name `{0}`: use 1 to 48 lowercase letters, digits or `_`, starting \
         with a letter or `_`"
    )]
    InvalidSchema(String),
    /// A queue name cannot be used.
    #[error(
        "invalid queue name `{0}`: use 1 to 200 letters, digits, `_`, `-` or `.`, for example \
         `emails`"
    )]
    InvalidQueue(String),
    /// A topic cannot be used.
    #[error("invalid topic `{0}`: use letters, digits, `_` or `-`, for example `user`")]
    InvalidTopic(String),
    /// An event name within a topic cannot be used.
    #[error(
        "invalid event `{0}`: use the part after the dot of an event name, letters, digits, \
         `_` or `-`, for example `created`"
    )]
    InvalidEvent(String),
    /// A claim asked for no event names in a queue.
    #[error("a claim for queue `{0}` names no events; give at least one `topic.event` name")]
    NoEventNames(String),
    /// A count or duration is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// Publishing (directly or as follow-up events) failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Applying the migrations failed.
    #[error("migrating the outbox schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused the operation or could not be reached.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
}
