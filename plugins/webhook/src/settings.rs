//! The webhook's configuration, read from the operator's config values and validated once
//! per call, with errors that name the key.

use std::time::Duration;

use crate::signature::Secret;

/// The request timeout when `timeout_ms` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How messages are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One signed POST per message, each with its own outcome.
    Single,
    /// One signed POST of a JSON array for the whole batch, whose outcome is every message's.
    Batch,
}

/// Everything a call needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub secrets: Vec<Secret>,
    pub mode: Mode,
    pub timeout: Duration,
}

impl Settings {
    /// Reads and validates the configuration through `config` (key → value).
    pub fn from_config(config: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let url = config("url")
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .ok_or("config `url` is not set: the endpoint to POST to, for example https://example.com/webhooks")?;
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(format!(
                "config `url` = `{url}` is invalid: it must start with https:// or http://"
            ));
        }

        let secrets_text = config("secret").unwrap_or_default();
        let texts: Vec<&str> = secrets_text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|text| !text.is_empty())
            .collect();
        if texts.is_empty() {
            return Err(
                "config `secret` is not set: one or more `whsec_...` signing secrets, \
                        separated by spaces or commas"
                    .to_owned(),
            );
        }
        let count = texts.len();
        let secrets = texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                Secret::parse(text).map_err(|why| {
                    format!("config `secret`: secret {} of {count} {why}", index + 1)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mode = match config("mode").as_deref().map(str::trim) {
            None | Some("single") => Mode::Single,
            Some("batch") => Mode::Batch,
            Some(other) => {
                return Err(format!(
                    "config `mode` = `{other}` is invalid: expected `single` or `batch`"
                ));
            }
        };

        let timeout = match config("timeout_ms") {
            None => DEFAULT_TIMEOUT,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(millis) if millis > 0 => Duration::from_millis(millis),
                _ => {
                    return Err(format!(
                        "config `timeout_ms` = `{text}` is invalid: expected a positive number \
                         of milliseconds"
                    ));
                }
            },
        };

        Ok(Settings {
            url,
            secrets,
            mode,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER_SECRET: &str = "whsec_c2Vjb25kIHNlY3JldA==";

    fn check(pairs: &[(&str, &str)], expected: Result<Settings, &str>) {
        let lookup = |key: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| (*value).to_owned())
        };
        assert_eq!(
            Settings::from_config(lookup),
            expected.map_err(str::to_owned),
            "config {pairs:?}"
        );
    }

    fn settings(secrets: &[&str], mode: Mode, timeout_ms: u64) -> Settings {
        Settings {
            url: "https://example.com/in".into(),
            secrets: secrets.iter().map(|s| Secret::parse(s).unwrap()).collect(),
            mode,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn valid_configurations() {
        check(
            &[("url", "https://example.com/in"), ("secret", SECRET)],
            Ok(settings(&[SECRET], Mode::Single, 10_000)),
        );
        check(
            &[
                ("url", " https://example.com/in "),
                ("secret", &format!("{SECRET}, {OTHER_SECRET}")),
                ("mode", "batch"),
                ("timeout_ms", "2500"),
            ],
            Ok(settings(&[SECRET, OTHER_SECRET], Mode::Batch, 2_500)),
        );
        check(
            &[
                ("url", "https://example.com/in"),
                ("secret", &format!("{OTHER_SECRET}\n{SECRET}")),
                ("mode", "single"),
            ],
            Ok(settings(&[OTHER_SECRET, SECRET], Mode::Single, 10_000)),
        );
    }

    #[test]
    fn invalid_configurations_name_the_key() {
        check(
            &[("secret", SECRET)],
            Err(
                "config `url` is not set: the endpoint to POST to, for example https://example.com/webhooks",
            ),
        );
        check(
            &[("url", "example.com/in"), ("secret", SECRET)],
            Err(
                "config `url` = `example.com/in` is invalid: it must start with https:// or http://",
            ),
        );
        check(
            &[("url", "https://example.com/in"), ("secret", " , ")],
            Err(
                "config `secret` is not set: one or more `whsec_...` signing secrets, separated by spaces or commas",
            ),
        );
        check(
            &[
                ("url", "https://example.com/in"),
                ("secret", &format!("{SECRET} whsec_%%%")),
            ],
            Err(
                "config `secret`: secret 2 of 2 is not `whsec_` followed by base64 (Invalid symbol 37, offset 0.)",
            ),
        );
        check(
            &[
                ("url", "https://example.com/in"),
                ("secret", SECRET),
                ("mode", "bulk"),
            ],
            Err("config `mode` = `bulk` is invalid: expected `single` or `batch`"),
        );
        check(
            &[
                ("url", "https://example.com/in"),
                ("secret", SECRET),
                ("timeout_ms", "0"),
            ],
            Err("config `timeout_ms` = `0` is invalid: expected a positive number of milliseconds"),
        );
    }
}
