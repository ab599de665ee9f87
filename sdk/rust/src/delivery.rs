//! The typed view of what the host hands to a plugin: a delivery of a message whose JSON
//! payload is decoded into the plugin's own type.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use crate::wit::types as wit;

/// One copy of a message in one queue, as handed to a plugin.
///
/// `T` is the payload type (see [`Payload`]); the default, [`serde_json::Value`], accepts
/// any JSON.
///
/// ```no_run
/// use courier_sdk::{Delivery, Outcome};
///
/// #[courier_sdk::handler(subscribe(queue = "orders", topic = "order", events = ["placed"]))]
/// fn handle(delivery: Delivery) -> Outcome {
///     if delivery.attempt > 1 {
///         courier_sdk::log::warn!("{} is on attempt {}", delivery.message.id, delivery.attempt);
///     }
///     match delivery.message.payload.get("total") {
///         Some(total) => Outcome::ok(),
///         None => Outcome::fatal("an order without a total"),
///     }
/// }
/// # fn main() {}
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery<T = serde_json::Value> {
    /// The message being delivered.
    pub message: Message<T>,
    /// The queue this copy belongs to.
    pub queue: String,
    /// Which attempt this is, starting at 1.
    pub attempt: u32,
}

/// An event, as it was published, with its payload decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Message<T = serde_json::Value> {
    /// The message id, a lowercase hyphenated UUID. It is the same on every attempt and in
    /// every queue: use it as an idempotency key.
    pub id: String,
    /// The full name `topic.event`, for example `user.created`.
    pub name: String,
    /// The part of `name` before the dot, for example `user`.
    pub topic: String,
    /// The decoded payload.
    pub payload: T,
    /// When the message was published.
    pub published_at: Timestamp,
    /// When the message became due for delivery.
    pub deliver_at: Timestamp,
    /// Headers given by the publisher, as (name, value) pairs in their published order.
    pub headers: Vec<(String, String)>,
}

impl<T> Message<T> {
    /// The part of [`name`](Message::name) after the dot, for example `created`.
    ///
    /// ```
    /// # let message = courier_sdk::Message {
    /// #     id: String::new(), name: "user.created".into(), topic: "user".into(),
    /// #     payload: (), published_at: courier_sdk::Timestamp::from_millis(0),
    /// #     deliver_at: courier_sdk::Timestamp::from_millis(0), headers: Vec::new(),
    /// # };
    /// assert_eq!(message.event(), "created");
    /// ```
    pub fn event(&self) -> &str {
        match self.name.split_once('.') {
            Some((_topic, event)) => event,
            None => "",
        }
    }

    /// The value of the first header named `name`, compared without regard to ASCII case.
    ///
    /// ```
    /// # let message = courier_sdk::Message {
    /// #     id: String::new(), name: "user.created".into(), topic: "user".into(),
    /// #     payload: (), published_at: courier_sdk::Timestamp::from_millis(0),
    /// #     deliver_at: courier_sdk::Timestamp::from_millis(0),
    /// #     headers: vec![("Tenant".into(), "acme".into())],
    /// # };
    /// assert_eq!(message.header("tenant"), Some("acme"));
    /// assert_eq!(message.header("trace-id"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A point in time, in milliseconds since 1970-01-01T00:00:00Z, as the host counts it.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use courier_sdk::Timestamp;
///
/// let at = Timestamp::from_millis(1_700_000_000_000);
/// assert_eq!(at.as_millis(), 1_700_000_000_000);
/// assert_eq!(at.to_system_time(), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// assert_eq!(Timestamp::from(at.to_system_time()), at);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `millis` milliseconds after the Unix epoch (before it when negative).
    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time of the host.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// The same instant as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_millis(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl From<SystemTime> for Timestamp {
    /// Converts, truncating to the millisecond and saturating at the `i64` range.
    fn from(time: SystemTime) -> Timestamp {
        let millis = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_millis())
                .map(|millis| -millis)
                .unwrap_or(i64::MIN),
        };
        Timestamp(millis)
    }
}

/// A type a message payload decodes into.
///
/// Implemented for every [`serde::de::DeserializeOwned`] type (decoded from JSON with
/// `serde_json`) and for [`RawPayload`] (the bytes, undecoded). You do not implement it
/// yourself: derive [`serde::Deserialize`] instead.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a Courier payload type",
    note = "derive `serde::Deserialize` for it, or take `Delivery<courier_sdk::RawPayload>` for the raw bytes"
)]
pub trait Payload: Sized {
    /// Decodes the payload bytes.
    fn decode(bytes: Vec<u8>) -> Result<Self, PayloadError>;
}

impl<T: DeserializeOwned> Payload for T {
    fn decode(bytes: Vec<u8>) -> Result<T, PayloadError> {
        serde_json::from_slice(&bytes).map_err(|error| PayloadError {
            type_name: short_type_name(std::any::type_name::<T>()),
            message: error.to_string(),
        })
    }
}

/// A payload left as the bytes the publisher sent (a JSON document in UTF-8), for plugins
/// that forward it untouched or decode it themselves.
///
/// ```no_run
/// use courier_sdk::{Delivery, Outcome, RawPayload};
///
/// #[courier_sdk::handler(subscribe(queue = "mirror", topic = "user", events = ["created"]))]
/// fn handle(delivery: Delivery<RawPayload>) -> Outcome {
///     courier_sdk::log::info!("{} bytes: {}", delivery.message.payload.len(), delivery.message.payload.as_str());
///     Outcome::ok()
/// }
/// # fn main() {}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawPayload(pub Vec<u8>);

impl RawPayload {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text. The host only accepts JSON payloads, so this is lossless in
    /// practice; invalid UTF-8 would be replaced by U+FFFD.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the bytes as `T`, for plugins that choose their payload type at run time.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        T::decode(self.0.clone())
    }
}

impl Payload for RawPayload {
    fn decode(bytes: Vec<u8>) -> Result<RawPayload, PayloadError> {
        Ok(RawPayload(bytes))
    }
}

/// Why a payload did not decode into the plugin's type.
///
/// Its [`Display`](fmt::Display) reads `does not decode as UserCreated: missing field
/// `email` at line 1 column 2`; the SDK prefixes it with the message name and id when it
/// turns it into a fatal outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadError {
    type_name: String,
    message: String,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "does not decode as {}: {}", self.type_name, self.message)
    }
}

impl std::error::Error for PayloadError {}

/// `my_plugin::UserCreated` → `UserCreated`; `alloc::vec::Vec<my_plugin::Item>` →
/// `Vec<Item>`: the names a plugin author wrote, without module paths.
fn short_type_name(full: &str) -> String {
    let mut short = String::with_capacity(full.len());
    let mut segment = String::new();
    for character in full.chars() {
        if character.is_alphanumeric() || character == '_' || character == ':' {
            segment.push(character);
        } else {
            short.push_str(segment.rsplit("::").next().unwrap_or(&segment));
            segment.clear();
            short.push(character);
        }
    }
    short.push_str(segment.rsplit("::").next().unwrap_or(&segment));
    short
}

impl<T: Payload> Delivery<T> {
    /// Decodes a delivery from the bindings, or says why its payload does not fit `T`.
    pub(crate) fn decode(delivery: wit::Delivery) -> Result<Delivery<T>, String> {
        let wit::Delivery {
            message,
            queue,
            attempt,
        } = delivery;
        let wit::Message {
            id,
            name,
            topic,
            payload,
            published_at,
            deliver_at,
            headers,
        } = message;
        let payload = match T::decode(payload) {
            Ok(payload) => payload,
            Err(error) => return Err(format!("payload of {name} (message {id}) {error}")),
        };
        Ok(Delivery {
            message: Message {
                id,
                name,
                topic,
                payload,
                published_at: Timestamp(published_at),
                deliver_at: Timestamp(deliver_at),
                headers,
            },
            queue,
            attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_short_type_name(full: &str, expected: &str) {
        assert_eq!(short_type_name(full), expected, "short name of {full}");
    }

    #[test]
    fn short_type_names_drop_module_paths() {
        check_short_type_name("welcome_email::UserCreated", "UserCreated");
        check_short_type_name("u32", "u32");
        check_short_type_name("alloc::vec::Vec<my_plugin::events::Item>", "Vec<Item>");
        check_short_type_name(
            "std::collections::hash::map::HashMap<alloc::string::String, i64>",
            "HashMap<String, i64>",
        );
        check_short_type_name("(a::B, c::D)", "(B, D)");
    }

    fn wit_delivery(payload: &str) -> wit::Delivery {
        wit::Delivery {
            message: wit::Message {
                id: "0190d4a8-0000-7000-8000-000000000001".into(),
                name: "user.created".into(),
                topic: "user".into(),
                payload: payload.as_bytes().to_vec(),
                published_at: 1_000,
                deliver_at: 2_000,
                headers: vec![("Tenant".into(), "acme".into())],
            },
            queue: "emails".into(),
            attempt: 3,
        }
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct UserCreated {
        email: String,
    }

    #[test]
    fn a_payload_that_fits_decodes_with_every_field_carried_over() {
        let delivery = Delivery::<UserCreated>::decode(wit_delivery(r#"{"email": "a@b.c"}"#));
        assert_eq!(
            delivery,
            Ok(Delivery {
                message: Message {
                    id: "0190d4a8-0000-7000-8000-000000000001".into(),
                    name: "user.created".into(),
                    topic: "user".into(),
                    payload: UserCreated {
                        email: "a@b.c".into()
                    },
                    published_at: Timestamp::from_millis(1_000),
                    deliver_at: Timestamp::from_millis(2_000),
                    headers: vec![("Tenant".into(), "acme".into())],
                },
                queue: "emails".into(),
                attempt: 3,
            })
        );
    }

    #[test]
    fn a_payload_that_does_not_fit_names_the_message_the_type_and_the_error() {
        let error = Delivery::<UserCreated>::decode(wit_delivery(r#"{"name": "Ada"}"#));
        assert_eq!(
            error,
            Err(
                "payload of user.created (message 0190d4a8-0000-7000-8000-000000000001) \
                 does not decode as UserCreated: missing field `email` at line 1 column 15"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_raw_payload_keeps_the_bytes() {
        let delivery = Delivery::<RawPayload>::decode(wit_delivery("[1, 2]")).unwrap();
        assert_eq!(delivery.message.payload.as_str(), "[1, 2]");
        assert_eq!(delivery.message.event(), "created");
    }

    #[test]
    fn timestamps_before_the_epoch_round_trip() {
        let before = Timestamp::from_millis(-1_500);
        assert_eq!(Timestamp::from(before.to_system_time()), before);
    }
}
