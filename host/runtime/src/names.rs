//! The shapes of names Courier accepts: queue, topic and event names (`^[A-Za-z0-9_-]+$`) and
//! message names (`topic.event`).

/// Whether `name` matches `^[A-Za-z0-9_-]+$` (a queue, topic or event name).
pub fn is_valid_part(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `name` is `topic.event` (`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`).
pub fn is_valid_message_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((topic, event)) => is_valid_part(topic) && is_valid_part(event),
        None => false,
    }
}

/// Explains why `name` is not a valid message name, or `None` when it is.
pub fn message_name_problem(name: &str) -> Option<String> {
    if is_valid_message_name(name) {
        return None;
    }
    Some(format!(
        "invalid message name {name:?}: expected `topic.event`, each part made of letters, digits, `_` or `-`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names() {
        let check =
            |name: &str, valid: bool| assert_eq!(is_valid_message_name(name), valid, "{name}");
        check("user.created", true);
        check("a-b_c.D9", true);
        check("user", false);
        check("user.", false);
        check(".created", false);
        check("user.created.now", false);
        check("user created.x", false);
        check("", false);
    }

    #[test]
    fn parts() {
        let check = |name: &str, valid: bool| assert_eq!(is_valid_part(name), valid, "{name}");
        check("emails", true);
        check("e-mails_2", true);
        check("", false);
        check("e.mails", false);
        check("émails", false);
    }
}
