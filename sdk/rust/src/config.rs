//! Configuration values the operator sets for a plugin in its sidecar file, read by key.

use std::fmt;
use std::str::FromStr;

use crate::Outcome;
use crate::wit::host;

/// The value the operator set for `key`, or `None` when it is not set.
///
/// Values come from the `config` table of the plugin's sidecar file (`NAME.toml` next to
/// `NAME.wasm`) and are always strings. Read them during a delivery, not in `describe`.
///
/// ```no_run
/// let endpoint: Option<String> = courier_sdk::config("endpoint");
/// ```
pub fn config(key: &str) -> Option<String> {
    host::config(key)
}

/// The value the operator set for `key`, or `default` when it is not set.
///
/// ```no_run
/// let from = courier_sdk::config_or("from", "no-reply@example.com");
/// ```
pub fn config_or(key: &str, default: &str) -> String {
    config(key).unwrap_or_else(|| default.to_owned())
}

/// The value the operator set for `key`, parsed with [`FromStr`]; `Ok(None)` when it is not
/// set, and a [`ConfigError`] naming the key and the value when it does not parse.
///
/// A [`ConfigError`] converts into a fatal [`Outcome`], so `?` works in a plugin function
/// that returns `Result<_, Outcome>`:
///
/// ```no_run
/// use courier_sdk::{Delivery, Outcome};
///
/// #[courier_sdk::handler(subscribe(queue = "batch", topic = "report", events = ["due"]))]
/// fn handle(delivery: Delivery) -> Result<Outcome, Outcome> {
///     let limit: usize = courier_sdk::config_parse("limit")?.unwrap_or(100);
///     courier_sdk::log::info!("reporting at most {limit} rows");
///     Ok(Outcome::ok())
/// }
/// # fn main() {}
/// ```
pub fn config_parse<T>(key: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    parse_value(key, config(key))
}

fn parse_value<T>(key: &str, value: Option<String>) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let Some(value) = value else {
        return Ok(None);
    };
    match value.trim().parse::<T>() {
        Ok(parsed) => Ok(Some(parsed)),
        Err(error) => Err(ConfigError {
            key: key.to_owned(),
            value,
            message: error.to_string(),
        }),
    }
}

/// A configuration value that does not parse. Its [`Display`](fmt::Display) names the key,
/// the value and the parse error, for example
/// ``config `succeed_at` = `three` is invalid: invalid digit found in string``.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    value: String,
    message: String,
}

impl ConfigError {
    /// The configuration key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value as the operator wrote it.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config `{}` = `{}` is invalid: {}",
            self.key, self.value, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// A misconfigured plugin will not do better on the next attempt: fatal. The operator fixes
/// the sidecar and redrives the dead letters.
impl From<ConfigError> for Outcome {
    fn from(error: ConfigError) -> Outcome {
        Outcome::fatal(error)
    }
}

impl crate::IntoOutcome for ConfigError {
    fn into_outcome(self) -> Outcome {
        Outcome::from(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_or_name_the_key_and_value() {
        assert_eq!(parse_value::<u32>("n", None), Ok(None));
        assert_eq!(parse_value::<u32>("n", Some(" 7 ".into())), Ok(Some(7)));
        let error = parse_value::<u32>("succeed_at", Some("three".into())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "config `succeed_at` = `three` is invalid: invalid digit found in string"
        );
        assert_eq!(
            Outcome::from(error),
            Outcome::fatal(
                "config `succeed_at` = `three` is invalid: invalid digit found in string"
            )
        );
    }
}
