//! Routes: which queues receive the messages of a topic. Declaring a route creates the
//! queue; a queue keeps its backlog while nobody serves it, until it is deleted.

use crate::Outbox;
use crate::error::OutboxError;
use crate::message::is_word;

/// A route: `queue` receives a copy of every message published to `topic`. `events` are the
/// event names (after the dot) its subscriber handles; claims use them, fan-out does not
/// (as in the seed: a copy of every message of the topic is made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    queue: String,
    topic: String,
    events: Vec<String>,
}

impl Route {
    /// A route, validated: the queue name (1 to 200 letters, digits, `_`, `-`, `.`), the
    /// topic and each event name (letters, digits, `_`, `-`).
    pub fn new(
        queue: impl Into<String>,
        topic: impl Into<String>,
        events: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, OutboxError> {
        let route = Self {
            queue: queue.into(),
            topic: topic.into(),
            events: events.into_iter().map(Into::into).collect(),
        };
        validate_queue(&route.queue)?;
        if !is_word(&route.topic) {
            return Err(OutboxError::InvalidTopic(route.topic));
        }
        if let Some(bad) = route.events.iter().find(|event| !is_word(event)) {
            return Err(OutboxError::InvalidEvent(bad.clone()));
        }
        Ok(route)
    }

    /// The queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The event names within the topic.
    pub fn events(&self) -> &[String] {
        &self.events
    }

    /// The full message names, `topic.event`, of the events.
    pub fn names(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|event| format!("{}.{event}", self.topic))
            .collect()
    }
}

/// Checks a queue name: 1 to 200 ASCII letters, digits, `_`, `-` or `.`.
pub fn validate_queue(queue: &str) -> Result<(), OutboxError> {
    let valid = !queue.is_empty()
        && queue.len() <= 200
        && queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(OutboxError::InvalidQueue(queue.to_owned()))
    }
}

/// What [`Outbox::delete_queue`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeletedQueue {
    /// Copies that were waiting or in flight.
    pub copies: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

impl Outbox {
    /// Declares a route, replacing the event names of an existing one for the same queue
    /// and topic. Messages published before a route exists are not copied into it.
    pub async fn declare(&self, route: &Route) -> Result<(), OutboxError> {
        let route = Route::new(&route.queue, &route.topic, route.events.iter())?;
        sqlx::query(&self.sql().declare)
            .bind(&route.queue)
            .bind(&route.topic)
            .bind(&route.events)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every route, by queue then topic.
    pub async fn routes(&self) -> Result<Vec<Route>, OutboxError> {
        let rows: Vec<(String, String, Vec<String>)> = sqlx::query_as(&self.sql().routes)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(queue, topic, events)| Route {
                queue,
                topic,
                events,
            })
            .collect())
    }

    /// Removes one route; the queue keeps its backlog. Returns whether it existed.
    pub async fn delete_route(&self, queue: &str, topic: &str) -> Result<bool, OutboxError> {
        let result = sqlx::query(&self.sql().delete_route)
            .bind(queue)
            .bind(topic)
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes a queue: its routes, its copies (waiting or in flight), its dead letters, its
    /// archive and its statistics.
    pub async fn delete_queue(&self, queue: &str) -> Result<DeletedQueue, OutboxError> {
        validate_queue(queue)?;
        let (copies, dead_letters): (i64, i64) = sqlx::query_as(&self.sql().delete_queue)
            .bind(queue)
            .fetch_one(self.pool())
            .await?;
        Ok(DeletedQueue {
            copies: u64::try_from(copies).unwrap_or(0),
            dead_letters: u64::try_from(dead_letters).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_validated() {
        assert!(Route::new("emails", "user", ["created"]).is_ok());
        assert!(Route::new("emails.v2", "user", ["created", "deleted"]).is_ok());
        assert!(matches!(
            Route::new("", "user", ["created"]),
            Err(OutboxError::InvalidQueue(_))
        ));
        assert!(matches!(
            Route::new("emails", "user.x", ["created"]),
            Err(OutboxError::InvalidTopic(_))
        ));
        assert!(matches!(
            Route::new("emails", "user", ["user.created"]),
            Err(OutboxError::InvalidEvent(_))
        ));
    }

    #[test]
    fn names_join_topic_and_event() {
        let route = Route::new("emails", "user", ["created", "deleted"]).unwrap();
        assert_eq!(route.names(), ["user.created", "user.deleted"]);
    }
}
