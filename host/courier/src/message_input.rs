//! A message to publish as a client writes it — `{"name", "payload", "id"?, "deliver_at"?,
//! "headers"?}` — validated field by field, so every error names the field (and, in an array,
//! the index).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// A validated message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageInput {
    /// `None`: the outbox makes a new id.
    pub id: Option<Uuid>,
    /// `topic.event`.
    pub name: String,
    /// Any JSON document.
    pub payload: Value,
    /// `None`: due now.
    pub deliver_at: Option<DateTime<Utc>>,
    /// Publisher-given headers.
    pub headers: BTreeMap<String, String>,
}

/// The most messages one request may publish.
pub const MAX_MESSAGES_PER_REQUEST: usize = 10_000;

/// Parses a request body: one message object, or an array of them.
pub fn parse_body(body: &[u8]) -> Result<Vec<MessageInput>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the body is not valid JSON: {error}"))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err("the array of messages is empty".to_owned());
            }
            if items.len() > MAX_MESSAGES_PER_REQUEST {
                return Err(format!(
                    "{} messages in one request; send at most {MAX_MESSAGES_PER_REQUEST}",
                    items.len()
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| parse_message(item, &format!("[{index}].")))
                .collect()
        }
        Value::Object(_) => Ok(vec![parse_message(value, "")?]),
        _ => Err("the body must be a message object or an array of message objects".to_owned()),
    }
}

/// Validates one message object; `prefix` is put before field names in errors.
pub fn parse_message(value: Value, prefix: &str) -> Result<MessageInput, String> {
    let Value::Object(mut fields) = value else {
        let at = prefix.trim_end_matches('.');
        return Err(format!("`{at}` must be a message object"));
    };
    let name = match fields.remove("name") {
        Some(Value::String(name)) => validate_name(&name)
            .map(|()| name)
            .map_err(|problem| format!("`{prefix}name`: {problem}"))?,
        Some(_) => {
            return Err(format!(
                "`{prefix}name` must be a string such as \"user.created\""
            ));
        }
        None => return Err(format!("`{prefix}name` is missing")),
    };
    let payload = fields
        .remove("payload")
        .ok_or_else(|| format!("`{prefix}payload` is missing (use {{}} for an empty payload)"))?;
    let id = match fields.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            Some(parse_id(&text).map_err(|p| format!("`{prefix}id`: {p}"))?)
        }
        Some(_) => return Err(format!("`{prefix}id` must be a UUID string")),
    };
    let deliver_at = match fields.remove("deliver_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            parse_deliver_at(&text)
                .map_err(|problem| format!("`{prefix}deliver_at`: {problem}"))?,
        ),
        Some(_) => {
            return Err(format!(
                "`{prefix}deliver_at` must be an RFC 3339 time string such as \"2030-01-01T00:00:00Z\""
            ));
        }
    };
    let headers = match fields.remove("headers") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(headers)) => {
            let mut parsed = BTreeMap::new();
            for (key, value) in headers {
                let Value::String(value) = value else {
                    return Err(format!("`{prefix}headers.{key}` must be a string"));
                };
                parsed.insert(key, value);
            }
            parsed
        }
        Some(_) => return Err(format!("`{prefix}headers` must be an object of strings")),
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(format!(
            "`{prefix}{unknown}` is not a message field (expected name, payload, id, deliver_at, headers)"
        ));
    }
    Ok(MessageInput {
        id,
        name,
        payload,
        deliver_at,
        headers,
    })
}

/// Checks a `topic.event` name: letters, digits, `_` and `-` on both sides of one dot.
pub fn validate_name(name: &str) -> Result<(), String> {
    if courier_runtime::is_valid_message_name(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a message name: write `topic.event` with letters, digits, `_` and `-`, such as `user.created`"
        ))
    }
}

/// Parses a message id.
pub fn parse_id(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text).map_err(|_| format!("`{text}` is not a UUID"))
}

/// Parses an RFC 3339 time.
pub fn parse_deliver_at(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| format!("`{text}` is not an RFC 3339 time such as 2030-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(body: &str, expected: &str) {
        let error = parse_body(body.as_bytes()).unwrap_err();
        assert!(
            error.contains(expected),
            "`{error}` should contain `{expected}`"
        );
    }

    #[test]
    fn one_message_or_an_array() {
        let one = parse_body(br#"{"name": "user.created", "payload": {"id": 42}}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, "user.created");
        assert_eq!(one[0].payload, serde_json::json!({"id": 42}));
        let many = parse_body(
            br#"[{"name": "a.b", "payload": 1, "id": "0190b1f4-7c1c-7cc0-8000-000000000001",
                  "deliver_at": "2030-01-01T00:00:00+02:00", "headers": {"trace": "x"}},
                 {"name": "c.d", "payload": null}]"#,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(
            many[0].id.unwrap().to_string(),
            "0190b1f4-7c1c-7cc0-8000-000000000001"
        );
        assert_eq!(
            many[0].deliver_at.unwrap().to_rfc3339(),
            "2029-12-31T22:00:00+00:00"
        );
        assert_eq!(many[0].headers["trace"], "x");
    }

    #[test]
    fn errors_name_the_field() {
        check_error("{", "not valid JSON");
        check_error("42", "message object");
        check_error("[]", "empty");
        check_error(r#"{"payload": {}}"#, "`name` is missing");
        check_error(r#"{"name": 5, "payload": {}}"#, "`name` must be a string");
        check_error(
            r#"{"name": "nodot", "payload": {}}"#,
            "`name`: `nodot` is not a message name",
        );
        check_error(r#"{"name": "a.b.c", "payload": {}}"#, "`name`");
        check_error(r#"{"name": "a b.c", "payload": {}}"#, "`name`");
        check_error(r#"{"name": "a.b"}"#, "`payload` is missing");
        check_error(
            r#"{"name": "a.b", "payload": 1, "id": "x"}"#,
            "`id`: `x` is not a UUID",
        );
        check_error(
            r#"{"name": "a.b", "payload": 1, "deliver_at": "tomorrow"}"#,
            "`deliver_at`",
        );
        check_error(
            r#"{"name": "a.b", "payload": 1, "headers": {"k": 1}}"#,
            "`headers.k`",
        );
        check_error(
            r#"{"name": "a.b", "payload": 1, "colour": 1}"#,
            "`colour` is not a message field",
        );
        check_error(
            r#"[{"name": "a.b", "payload": 1}, {"name": "bad"}]"#,
            "`[1].name`",
        );
        check_error(
            r#"[{"name": "a.b", "payload": 1}, 7]"#,
            "`[1]` must be a message object",
        );
    }
}
