//! The message model: names (`topic.event`), payloads, ids, scheduling and headers, validated
//! when a message is built so that a bad one never reaches the database.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::PublishError;

/// A message to publish. Built with [`NewMessage::new`] (or
/// [`NewMessage::from_json_text`]), then adjusted:
///
/// ```
/// # use courier_outbox::NewMessage;
/// let message = NewMessage::new("user.created", &serde_json::json!({"id": 42}))?
///     .header("trace-id", "abc");
/// # Ok::<(), courier_outbox::PublishError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub(crate) id: Uuid,
    /// Whether `id` was generated here (and so was never published): such messages are
    /// inserted without the conflict checks idempotence needs.
    pub(crate) fresh_id: bool,
    pub(crate) name: String,
    pub(crate) payload: String,
    pub(crate) deliver_at: Option<DateTime<Utc>>,
    pub(crate) headers: BTreeMap<String, String>,
}

impl NewMessage {
    /// A message named `name` (`topic.event`) carrying `payload`, with a new time-ordered id,
    /// due now, without headers.
    pub fn new(name: impl Into<String>, payload: &serde_json::Value) -> Result<Self, PublishError> {
        Self::with_payload_text(name.into(), payload.to_string())
    }

    /// Like [`NewMessage::new`], with the payload given as JSON text (checked to be JSON).
    pub fn from_json_text(
        name: impl Into<String>,
        payload: impl Into<String>,
    ) -> Result<Self, PublishError> {
        let payload = payload.into();
        serde_json::from_str::<serde::de::IgnoredAny>(&payload).map_err(|error| {
            PublishError::InvalidPayload {
                reason: error.to_string(),
            }
        })?;
        Self::with_payload_text(name.into(), payload)
    }

    fn with_payload_text(name: String, payload: String) -> Result<Self, PublishError> {
        validate_name(&name)?;
        Ok(Self {
            id: Uuid::now_v7(),
            fresh_id: true,
            name,
            payload,
            deliver_at: None,
            headers: BTreeMap::new(),
        })
    }

    /// Sets the id. Publishing the same id into a queue again is a no-op while that copy is
    /// still in the queue.
    ///
    /// Without an explicit id a message gets a new time-ordered one and is stored without
    /// the conflict checks that make re-publishing a no-op (they cost about three times as
    /// much): publishing the same such value twice fails with a duplicate-key error. Give
    /// an id to messages that may be published again.
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = id;
        self.fresh_id = false;
        self
    }

    /// Schedules the message: it is not delivered before `deliver_at`.
    pub fn deliver_at(mut self, deliver_at: DateTime<Utc>) -> Self {
        self.deliver_at = Some(deliver_at);
        self
    }

    /// Adds a header (replacing one of the same name).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Replaces all headers.
    pub fn headers(mut self, headers: BTreeMap<String, String>) -> Self {
        self.headers = headers;
        self
    }

    /// The message id.
    pub fn message_id(&self) -> Uuid {
        self.id
    }

    /// The name, `topic.event`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic: the part of the name before the dot.
    pub fn topic(&self) -> &str {
        topic_of(&self.name)
    }

    /// The payload, as JSON text.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    /// When the message becomes due (`None`: when it is published).
    pub fn scheduled_for(&self) -> Option<DateTime<Utc>> {
        self.deliver_at
    }

    /// The headers.
    pub fn header_map(&self) -> &BTreeMap<String, String> {
        &self.headers
    }
}

/// Parses a message id given as text.
pub fn parse_message_id(id: &str) -> Result<Uuid, PublishError> {
    Uuid::parse_str(id).map_err(|_| PublishError::InvalidId { id: id.to_owned() })
}

/// Checks that `name` is `topic.event`: one dot with a non-empty part on each side, each made
/// of ASCII letters, digits, `_` and `-` (the pattern `^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`).
pub fn validate_name(name: &str) -> Result<(), PublishError> {
    let valid = match name.split_once('.') {
        Some((topic, event)) => is_word(topic) && is_word(event),
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(PublishError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// The topic of a valid name: the part before the dot.
pub fn topic_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(topic, _)| topic)
}

/// Whether `text` is a non-empty run of ASCII letters, digits, `_` and `-`: the shape of a
/// topic and of an event name.
pub(crate) fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, valid: bool) {
        assert_eq!(validate_name(name).is_ok(), valid, "{name:?}");
    }

    #[test]
    fn names_follow_the_seed_pattern() {
        check("user.created", true);
        check("User_1.Created-2", true);
        check("a.b", true);
        check("user", false);
        check("user.", false);
        check(".created", false);
        check("user.created.twice", false);
        check("user created", false);
        check("usér.created", false);
        check("", false);
    }

    #[test]
    fn invalid_name_error_says_what_is_expected() {
        let error = NewMessage::new("nodot", &serde_json::json!(1)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid event name `nodot`: expected `topic.event`, letters, digits, `_` or `-` on \
             each side of one dot, for example `user.created`"
        );
    }

    #[test]
    fn json_text_payloads_are_checked() {
        assert!(NewMessage::from_json_text("a.b", "{\"x\": [1, 2]}").is_ok());
        let error = NewMessage::from_json_text("a.b", "{nope").unwrap_err();
        assert!(
            matches!(error, PublishError::InvalidPayload { .. }),
            "{error}"
        );
    }

    #[test]
    fn topic_is_the_part_before_the_dot() {
        assert_eq!(topic_of("user.created"), "user");
    }
}
