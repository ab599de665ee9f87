//! The operator's sidecar file `NAME.toml` beside a plugin: limits, retry policy, grants,
//! configuration values (with `${env:VAR}` secrets) and an optional subscriptions override.
//!
//! ```toml
//! [limits]
//! memory = "64MiB"      # linear memory per instance
//! timeout = "10s"       # per call
//! concurrency = 16      # calls at once
//! max_uses = 1000       # calls per warm instance; 1 = a fresh instance per delivery
//! batch_size = 100      # deliveries per call, destinations only
//!
//! [retry]               # the outbox's retry policy
//! max_attempts = 10
//!
//! [grants]
//! outbound_hosts = ["api.example.com"]
//!
//! [config]
//! from = "hello@example.com"
//! api_key = "${env:MAILER_API_KEY}"
//!
//! [[subscriptions]]     # replaces what the plugin asks for
//! queue = "emails"
//! topic = "user"
//! events = ["created"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::units::{parse_byte_size, parse_duration};

/// What the sidecar says, validated, with environment references substituted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sidecar {
    /// Resource limits.
    pub limits: Limits,
    /// The retry policy, as written in the `[retry]` table (`None`: the default policy).
    pub retry: Option<toml::Table>,
    /// Hosts the plugin may reach over outbound HTTP (`host` or `host:port`).
    pub outbound_hosts: Vec<String>,
    /// Configuration values the plugin reads with `config(key)`.
    pub config: BTreeMap<String, String>,
    /// Subscriptions replacing the plugin's own, when set.
    pub subscriptions: Option<Vec<Subscription>>,
}

/// Resource limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per instance, in bytes.
    pub memory_bytes: u64,
    /// The longest one call may run.
    pub timeout: Duration,
    /// How many calls may run at once.
    pub concurrency: u32,
    /// How many calls one warm instance serves before it is replaced; 1 = fresh every time.
    pub max_uses: u64,
    /// The most deliveries in one call to a destination.
    pub batch_size: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(10),
            concurrency: 16,
            max_uses: 1000,
            batch_size: 100,
        }
    }
}

/// One subscription: the events of `topic` named in `events`, through `queue`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub queue: String,
    pub topic: String,
    pub events: Vec<String>,
}

/// Why a sidecar file is unusable. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid sidecar {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid `{key}` in {path}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}: `{key}` refers to the environment variable {variable}, which is not set")]
    MissingEnv {
        path: PathBuf,
        key: String,
        variable: String,
    },
}

impl Sidecar {
    /// Reads `path` if it exists; a missing file means every default.
    pub fn read_optional(path: &Path) -> Result<Sidecar, SidecarError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Sidecar::parse(path, &text, |name| std::env::var(name).ok()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Sidecar::default()),
            Err(source) => Err(SidecarError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses the text of the sidecar at `path`; `env` looks up one environment variable.
    pub fn parse(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Sidecar, SidecarError> {
        let file: SidecarFile = toml::from_str(text).map_err(|error| SidecarError::Parse {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        let invalid = |key: &str, message: String| SidecarError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let mut sidecar = Sidecar::default();
        if let Some(limits) = file.limits {
            let target = &mut sidecar.limits;
            if let Some(memory) = limits.memory {
                let bytes = match memory {
                    TextOrNumber::Text(text) => parse_byte_size(&text),
                    TextOrNumber::Number(number) => Ok(number),
                }
                .map_err(|message| invalid("limits.memory", message))?;
                if bytes < 1 << 20 {
                    return Err(invalid("limits.memory", "use at least 1MiB".to_owned()));
                }
                target.memory_bytes = bytes;
            }
            if let Some(timeout) = limits.timeout {
                let timeout = parse_duration(&timeout)
                    .map_err(|message| invalid("limits.timeout", message))?;
                if timeout < Duration::from_millis(1) {
                    return Err(invalid("limits.timeout", "use at least 1ms".to_owned()));
                }
                target.timeout = timeout;
            }
            if let Some(concurrency) = limits.concurrency {
                if concurrency == 0 {
                    return Err(invalid("limits.concurrency", "use at least 1".to_owned()));
                }
                target.concurrency = concurrency;
            }
            if let Some(max_uses) = limits.max_uses {
                if max_uses == 0 {
                    return Err(invalid("limits.max_uses", "use at least 1".to_owned()));
                }
                target.max_uses = max_uses;
            }
            if let Some(batch_size) = limits.batch_size {
                if batch_size == 0 {
                    return Err(invalid("limits.batch_size", "use at least 1".to_owned()));
                }
                target.batch_size = batch_size;
            }
        }
        sidecar.retry = file.retry;
        if let Some(grants) = file.grants {
            for host in &grants.outbound_hosts {
                if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                    return Err(invalid(
                        "grants.outbound_hosts",
                        format!(
                            "`{host}` is not a host name (write `api.example.com` or `api.example.com:8443`, without a scheme or path)"
                        ),
                    ));
                }
            }
            sidecar.outbound_hosts = grants.outbound_hosts;
        }
        for (key, value) in file.config.unwrap_or_default() {
            let value = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Float(number) => number.to_string(),
                toml::Value::Boolean(flag) => flag.to_string(),
                _ => {
                    return Err(invalid(
                        &format!("config.{key}"),
                        "a configuration value is a string, a number or a boolean".to_owned(),
                    ));
                }
            };
            let value = substitute_env(&value, &env).map_err(|problem| match problem {
                Substitution::Missing(variable) => SidecarError::MissingEnv {
                    path: path.to_owned(),
                    key: format!("config.{key}"),
                    variable,
                },
                Substitution::Malformed(message) => invalid(&format!("config.{key}"), message),
            })?;
            sidecar.config.insert(key, value);
        }
        if let Some(subscriptions) = file.subscriptions {
            for (index, subscription) in subscriptions.iter().enumerate() {
                let key = format!("subscriptions[{index}]");
                if !is_name_part(&subscription.queue) {
                    return Err(invalid(
                        &format!("{key}.queue"),
                        name_part_message(&subscription.queue),
                    ));
                }
                if !is_name_part(&subscription.topic) {
                    return Err(invalid(
                        &format!("{key}.topic"),
                        name_part_message(&subscription.topic),
                    ));
                }
                if subscription.events.is_empty() {
                    return Err(invalid(
                        &format!("{key}.events"),
                        "list at least one event name".to_owned(),
                    ));
                }
                if let Some(event) = subscription.events.iter().find(|e| !is_name_part(e)) {
                    return Err(invalid(&format!("{key}.events"), name_part_message(event)));
                }
            }
            sidecar.subscriptions = Some(subscriptions);
        }
        Ok(sidecar)
    }
}

impl Sidecar {
    /// How the runtime should run the plugin `name` described by this sidecar.
    pub fn plugin_settings(&self, name: &str) -> courier_runtime::PluginSettings {
        courier_runtime::PluginSettings {
            name: Some(name.to_owned()),
            limits: courier_runtime::Limits {
                memory_bytes: self.limits.memory_bytes,
                timeout: self.limits.timeout,
                max_uses: u32::try_from(self.limits.max_uses).unwrap_or(u32::MAX),
                max_instances: self.limits.concurrency,
            },
            config: self.config.clone(),
            allowed_hosts: self.outbound_hosts.clone(),
            ..courier_runtime::PluginSettings::default()
        }
    }
}

/// A queue, topic or event name: letters, digits, `_` and `-`, as in message names.
pub fn is_name_part(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn name_part_message(text: &str) -> String {
    format!("`{text}` is not a valid name: use letters, digits, `_` and `-`")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SidecarFile {
    limits: Option<LimitsSection>,
    retry: Option<toml::Table>,
    grants: Option<GrantsSection>,
    config: Option<BTreeMap<String, toml::Value>>,
    subscriptions: Option<Vec<Subscription>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    memory: Option<TextOrNumber>,
    timeout: Option<String>,
    concurrency: Option<u32>,
    max_uses: Option<u64>,
    batch_size: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsSection {
    #[serde(default)]
    outbound_hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TextOrNumber {
    Text(String),
    Number(u64),
}

enum Substitution {
    Missing(String),
    Malformed(String),
}

/// Replaces every `${env:VAR}` in `value` with the variable's value.
fn substitute_env(
    value: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, Substitution> {
    let mut output = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        output.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(Substitution::Malformed(
                "`${` is not closed; write `${env:VARIABLE}`".to_owned(),
            ));
        };
        let reference = &after[..end];
        let Some(variable) = reference.strip_prefix("env:") else {
            return Err(Substitution::Malformed(format!(
                "`${{{reference}}}` is not a reference Courier knows; write `${{env:VARIABLE}}`"
            )));
        };
        let valid = !variable.is_empty()
            && !variable.starts_with(|c: char| c.is_ascii_digit())
            && variable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Substitution::Malformed(format!(
                "`{variable}` is not an environment variable name"
            )));
        }
        let Some(found) = env(variable) else {
            return Err(Substitution::Missing(variable.to_owned()));
        };
        output.push_str(&found);
        rest = &after[end + 1..];
    }
    output.push_str(rest);
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Sidecar, String> {
        let env = |name: &str| (name == "MAILER_KEY").then(|| "s3cret".to_owned());
        Sidecar::parse(Path::new("plugins/mailer.toml"), text, env).map_err(|e| e.to_string())
    }

    fn check_error(text: &str, expected: &[&str]) {
        let error = parse(text).unwrap_err();
        assert!(
            error.contains("plugins/mailer.toml"),
            "`{error}` should name the file"
        );
        for part in expected {
            assert!(error.contains(part), "`{error}` should contain `{part}`");
        }
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(parse("").unwrap(), Sidecar::default());
    }

    #[test]
    fn full_file() {
        let sidecar = parse(
            r#"
            [limits]
            memory = "32MiB"
            timeout = "2s"
            concurrency = 4
            max_uses = 1
            batch_size = 50

            [retry]
            max_attempts = 3

            [grants]
            outbound_hosts = ["api.example.com", "hooks.example.com:8443"]

            [config]
            from = "hello@example.com"
            key = "Bearer ${env:MAILER_KEY}!"
            retries = 3

            [[subscriptions]]
            queue = "emails"
            topic = "user"
            events = ["created", "deleted"]
            "#,
        )
        .unwrap();
        assert_eq!(
            sidecar.limits,
            Limits {
                memory_bytes: 32 << 20,
                timeout: Duration::from_secs(2),
                concurrency: 4,
                max_uses: 1,
                batch_size: 50,
            }
        );
        assert_eq!(sidecar.retry.unwrap()["max_attempts"].as_integer(), Some(3));
        assert_eq!(
            sidecar.outbound_hosts,
            ["api.example.com", "hooks.example.com:8443"]
        );
        assert_eq!(sidecar.config["from"], "hello@example.com");
        assert_eq!(sidecar.config["key"], "Bearer s3cret!");
        assert_eq!(sidecar.config["retries"], "3");
        let subscriptions = sidecar.subscriptions.unwrap();
        assert_eq!(subscriptions[0].queue, "emails");
        assert_eq!(subscriptions[0].events, ["created", "deleted"]);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        check_error("[limts]\nmemory = 1", &["unknown field `limts`"]);
        check_error("[limits]\nmemroy = 1", &["unknown field `memroy`"]);
        check_error("[limits]\nmemory = \"lots\"", &["`limits.memory`"]);
        check_error("[limits]\nmemory = 1024", &["`limits.memory`", "1MiB"]);
        check_error("[limits]\ntimeout = \"10\"", &["`limits.timeout`", "30s"]);
        check_error("[limits]\nconcurrency = 0", &["`limits.concurrency`"]);
        check_error("[limits]\nmax_uses = 0", &["`limits.max_uses`"]);
        check_error(
            "[grants]\noutbound_hosts = [\"https://x.com/\"]",
            &["`grants.outbound_hosts`"],
        );
        check_error("[grants]\nfiles = []", &["unknown field `files`"]);
        check_error(
            "[config]\nkey = \"${env:NOPE}\"",
            &["`config.key`", "NOPE", "not set"],
        );
        check_error(
            "[config]\nkey = \"${env:NOPE\"",
            &["`config.key`", "not closed"],
        );
        check_error("[config]\nkey = \"${file:x}\"", &["`config.key`", "env:"]);
        check_error("[config]\nkey = [1]", &["`config.key`", "string"]);
        check_error(
            "[[subscriptions]]\nqueue = \"a b\"\ntopic = \"user\"\nevents = [\"x\"]",
            &["`subscriptions[0].queue`"],
        );
        check_error(
            "[[subscriptions]]\nqueue = \"q\"\ntopic = \"user\"\nevents = []",
            &["`subscriptions[0].events`"],
        );
        check_error(
            "[[subscriptions]]\nqueue = \"q\"\ntopic = \"user\"\nevents = [\"x\"]\nname = \"y\"",
            &["unknown field `name`"],
        );
    }

    #[test]
    fn missing_file_means_defaults() {
        let sidecar = Sidecar::read_optional(Path::new("/nonexistent/courier/none.toml")).unwrap();
        assert_eq!(sidecar, Sidecar::default());
    }
}
