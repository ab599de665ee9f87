//! Checks what a plugin's `describe` answered: a name, a version, and subscriptions whose
//! queue, topic and event names are all `^[A-Za-z0-9_-]+$`.

use crate::model::PluginInfo;
use crate::names::is_valid_part;

/// `Ok` when `info` is usable, otherwise the first problem found.
pub(crate) fn check_info(info: &PluginInfo) -> Result<(), String> {
    if info.name.trim().is_empty() {
        return Err("its name is empty".to_string());
    }
    if info.name.len() > 200 || info.name.chars().any(char::is_control) {
        return Err(format!(
            "its name {:?} is too long or contains control characters",
            info.name
        ));
    }
    if info.version.trim().is_empty() {
        return Err(format!("{:?} has an empty version", info.name));
    }
    for (index, subscription) in info.subscriptions.iter().enumerate() {
        let what = format!(
            "subscription {} (queue {:?})",
            index + 1,
            subscription.queue
        );
        if !is_valid_part(&subscription.queue) {
            return Err(format!(
                "{what}: the queue name must be letters, digits, `_` or `-`"
            ));
        }
        if !is_valid_part(&subscription.topic) {
            return Err(format!(
                "{what}: the topic {:?} must be letters, digits, `_` or `-`",
                subscription.topic
            ));
        }
        if subscription.events.is_empty() {
            return Err(format!("{what}: it lists no event names"));
        }
        if let Some(event) = subscription.events.iter().find(|e| !is_valid_part(e)) {
            return Err(format!(
                "{what}: the event name {event:?} must be letters, digits, `_` or `-`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Subscription;

    fn info(name: &str, queue: &str, topic: &str, events: &[&str]) -> PluginInfo {
        PluginInfo {
            name: name.to_string(),
            version: "1.0.0".to_string(),
            subscriptions: vec![Subscription {
                queue: queue.to_string(),
                topic: topic.to_string(),
                events: events.iter().map(|e| e.to_string()).collect(),
            }],
        }
    }

    fn check(info: PluginInfo, problem: Option<&str>) {
        match (check_info(&info), problem) {
            (Ok(()), None) => {}
            (Err(error), Some(expected)) => {
                assert!(error.contains(expected), "{error:?} lacks {expected:?}")
            }
            (result, expected) => panic!("{info:?}: {result:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn infos() {
        check(info("welcome-email", "emails", "user", &["created"]), None);
        check(
            info("", "emails", "user", &["created"]),
            Some("name is empty"),
        );
        check(info("x", "", "user", &["created"]), Some("queue name"));
        check(
            info("x", "e mails", "user", &["created"]),
            Some("queue name"),
        );
        check(info("x", "emails", "user.x", &["created"]), Some("topic"));
        check(info("x", "emails", "user", &[]), Some("no event names"));
        check(
            info("x", "emails", "user", &["created", "a.b"]),
            Some("\"a.b\""),
        );
    }
}
