//! The `courier:plugin/host` interface as the host implements it: logging into the call's log
//! sink, the operator's configuration, and buffered follow-up events.

use uuid::Uuid;

use crate::bindings::host;
use crate::instance::InstanceState;
use crate::logs::{LogLevel, LogSource};
use crate::model::FollowUp;
use crate::names::message_name_problem;

impl host::Host for InstanceState {
    fn log(&mut self, level: host::Level, message: String) {
        let level = match level {
            host::Level::Trace => LogLevel::Trace,
            host::Level::Debug => LogLevel::Debug,
            host::Level::Info => LogLevel::Info,
            host::Level::Warn => LogLevel::Warn,
            host::Level::Error => LogLevel::Error,
        };
        self.call.log(level, LogSource::Plugin, message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.shared.config.get(&key).cloned()
    }

    fn publish(
        &mut self,
        name: String,
        payload: Vec<u8>,
        options: host::PublishOptions,
    ) -> Result<String, String> {
        let follow_up = validate_follow_up(name, payload, options)?;
        let id = follow_up.id.hyphenated().to_string();
        self.call.publish(follow_up)?;
        Ok(id)
    }
}

fn validate_follow_up(
    name: String,
    payload: Vec<u8>,
    options: host::PublishOptions,
) -> Result<FollowUp, String> {
    if let Some(problem) = message_name_problem(&name) {
        return Err(problem);
    }
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        return Err(format!(
            "the payload of {name:?} is not valid JSON: {error}"
        ));
    }
    let id = match options.id {
        Some(id) => Uuid::parse_str(&id)
            .map_err(|error| format!("the id {id:?} of {name:?} is not a UUID: {error}"))?,
        None => Uuid::now_v7(),
    };
    if let Some((header, _)) = options.headers.iter().find(|(header, _)| header.is_empty()) {
        return Err(format!(
            "a header of {name:?} has an empty name (value of {header:?})"
        ));
    }
    Ok(FollowUp {
        id,
        name,
        payload,
        deliver_at_ms: options.deliver_at,
        headers: options.headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, payload: &str, id: Option<&str>, expected_error: Option<&str>) {
        let result = validate_follow_up(
            name.to_string(),
            payload.as_bytes().to_vec(),
            host::PublishOptions {
                id: id.map(str::to_string),
                deliver_at: None,
                headers: Vec::new(),
            },
        );
        match (result, expected_error) {
            (Ok(_), None) => {}
            (Err(error), Some(expected)) => {
                assert!(error.contains(expected), "{error:?} lacks {expected:?}")
            }
            (result, expected) => panic!("{name} {payload}: {result:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn follow_ups() {
        check("email.sent", r#"{"to":"a@b"}"#, None, None);
        check(
            "email.sent",
            "{}",
            Some("0190b7c2-7a4e-7cc4-8c8e-0a4c2b1f6a10"),
            None,
        );
        check("email", "{}", None, Some("invalid message name"));
        check("email.sent", "{not json", None, Some("not valid JSON"));
        check("email.sent", "", None, Some("not valid JSON"));
        check("email.sent", "{}", Some("42"), Some("not a UUID"));
    }
}
