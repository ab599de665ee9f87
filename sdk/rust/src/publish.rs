//! Follow-up events: published by the host only if the current delivery ends ok, in the
//! same transaction that records the outcome.

use std::fmt;

use serde::Serialize;

use crate::wit::host;
use crate::{Outcome, Timestamp};

/// Publishes a follow-up event `name` (`topic.event`) with `payload` serialized as JSON, and
/// returns its message id.
///
/// The event is buffered: the host publishes it only if the current delivery ends with
/// [`Outcome::ok`]; after a retry or a fatal outcome it is discarded (and published again
/// by the attempt that succeeds). To keep a retried delivery from publishing twice under
/// two ids, give the event a stable id with [`publish_with`] and [`PublishOptions::id`].
///
/// ```no_run
/// use courier_sdk::serde_json::json;
///
/// let id = courier_sdk::publish("email.sent", &json!({ "to": "ada@example.com" }))?;
/// courier_sdk::log::info!("published {id}");
/// # Ok::<(), courier_sdk::PublishError>(())
/// ```
pub fn publish<P: Serialize + ?Sized>(name: &str, payload: &P) -> Result<String, PublishError> {
    publish_with(name, payload, PublishOptions::new())
}

/// Publishes a follow-up event with options: a chosen id, a delivery time, headers.
///
/// ```no_run
/// use courier_sdk::{PublishOptions, Timestamp};
/// use courier_sdk::serde_json::json;
///
/// let reminder_at = Timestamp::from_millis(Timestamp::now().as_millis() + 86_400_000);
/// courier_sdk::publish_with(
///     "user.reminder",
///     &json!({ "user": 42 }),
///     PublishOptions::new()
///         .id("0190d4a8-7c1e-7000-8000-00000000002a")
///         .deliver_at(reminder_at)
///         .header("tenant", "acme"),
/// )?;
/// # Ok::<(), courier_sdk::PublishError>(())
/// ```
pub fn publish_with<P: Serialize + ?Sized>(
    name: &str,
    payload: &P,
    options: PublishOptions,
) -> Result<String, PublishError> {
    let payload = serde_json::to_vec(payload).map_err(|error| PublishError::Payload {
        name: name.to_owned(),
        message: error.to_string(),
    })?;
    let options = host::PublishOptions {
        id: options.id,
        deliver_at: options.deliver_at.map(Timestamp::as_millis),
        headers: options.headers,
    };
    host::publish(name, &payload, &options).map_err(|message| PublishError::Rejected {
        name: name.to_owned(),
        message,
    })
}

/// Options of a follow-up event, built by chaining.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishOptions {
    id: Option<String>,
    deliver_at: Option<Timestamp>,
    headers: Vec<(String, String)>,
}

impl PublishOptions {
    /// No id (the host makes one), due now, no headers.
    pub fn new() -> PublishOptions {
        PublishOptions::default()
    }

    /// The message id, a UUID. Publishing the same id twice into a queue delivers it once,
    /// so an id derived from the delivery's own id makes the follow-up idempotent.
    pub fn id(mut self, id: impl Into<String>) -> PublishOptions {
        self.id = Some(id.into());
        self
    }

    /// When the event becomes due; by default, now.
    pub fn deliver_at(mut self, at: Timestamp) -> PublishOptions {
        self.deliver_at = Some(at);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> PublishOptions {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Why a follow-up event was not published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The payload did not serialize to JSON.
    Payload {
        /// The event name.
        name: String,
        /// The serializer's message.
        message: String,
    },
    /// The host refused the event: an invalid name, payload, id or option.
    Rejected {
        /// The event name.
        name: String,
        /// The host's reason.
        message: String,
    },
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Payload { name, message } => {
                write!(
                    f,
                    "cannot publish {name}: the payload is not JSON: {message}"
                )
            }
            PublishError::Rejected { name, message } => {
                write!(f, "cannot publish {name}: {message}")
            }
        }
    }
}

impl std::error::Error for PublishError {}

/// An event the host refuses is a defect of the plugin, not a passing condition: fatal.
impl From<PublishError> for Outcome {
    fn from(error: PublishError) -> Outcome {
        Outcome::fatal(error)
    }
}

impl crate::IntoOutcome for PublishError {
    fn into_outcome(self) -> Outcome {
        Outcome::from(self)
    }
}
