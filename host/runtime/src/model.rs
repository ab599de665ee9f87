//! The values the runtime exchanges with its callers: messages, deliveries, outcomes and what a
//! plugin says about itself. These are Courier's own types; the WIT-generated ones never leave
//! the `bindings` module.

use std::time::Duration;

use uuid::Uuid;

/// An event, as it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Stable across retries and queues.
    pub id: Uuid,
    /// `topic.event`, for example `user.created`.
    pub name: String,
    /// A JSON document, as UTF-8 bytes.
    pub payload: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub published_at_ms: i64,
    /// When the message became (or becomes) due, in milliseconds since the Unix epoch.
    pub deliver_at_ms: i64,
    /// Publisher-given headers, as (name, value) pairs.
    pub headers: Vec<(String, String)>,
}

impl Message {
    /// The part of the name before the first dot (the whole name when there is no dot).
    pub fn topic(&self) -> &str {
        topic_of(&self.name)
    }
}

/// The part of a `topic.event` name before the first dot.
pub(crate) fn topic_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(topic, _)| topic)
}

/// One copy of a message in one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message being delivered.
    pub message: Message,
    /// The queue this copy belongs to.
    pub queue: String,
    /// 1-based attempt number.
    pub attempt: u32,
}

/// What a plugin answered for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; follow-up events are committed.
    Ok,
    /// Try again later; `delay` is the plugin's wish (`None`: the queue's policy decides).
    Retry {
        /// Why the delivery failed.
        reason: String,
        /// The delay the plugin asked for.
        delay: Option<Duration>,
    },
    /// Failed for good: dead-letter now.
    Fatal {
        /// Why the delivery failed.
        reason: String,
    },
}

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// Exports `courier:plugin/handler`: one delivery per call.
    Handler,
    /// Exports `courier:plugin/destination`: a batch of deliveries per call.
    Destination,
}

impl PluginKind {
    /// `handler` or `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Handler => "handler",
            PluginKind::Destination => "destination",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One subscription declared by a plugin: `topic` events named in `events`, through `queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The durable queue, for example `emails`.
    pub queue: String,
    /// The topic, for example `user`.
    pub topic: String,
    /// Event names within the topic, for example `created`.
    pub events: Vec<String>,
}

/// What a plugin says about itself (its `describe` export), validated at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// A short name, for example `welcome-email`.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// What the plugin wants to receive.
    pub subscriptions: Vec<Subscription>,
}

/// A follow-up event published by a plugin during a call, buffered by the runtime. The host
/// publishes it only when the delivery ends `ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// The id the plugin gave, or a new UUIDv7.
    pub id: Uuid,
    /// `topic.event`, already validated.
    pub name: String,
    /// A JSON document, already validated.
    pub payload: Vec<u8>,
    /// When it becomes due (`None`: now), in milliseconds since the Unix epoch.
    pub deliver_at_ms: Option<i64>,
    /// Headers, as (name, value) pairs.
    pub headers: Vec<(String, String)>,
}
