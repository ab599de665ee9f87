//! Retry policies: when a failed delivery is tried again, and when it is given up. Pure
//! functions of the attempt number (and of a random source, for jitter): no clock is read,
//! the database adds the delay to its own `now()`, and [`RetryPolicy::retry_at`] takes the
//! clock as an argument.
//!
//! The backoff formulas are the seed library's, in seconds, "first called for attempt 2"
//! (the delay before attempt `n` is `f(n)`):
//!
//! | policy | delay before attempt `n` |
//! |---|---|
//! | `constant(d)` | `d` |
//! | `linear(c, k, limit)` | `min(c + k·(n−2), limit)` |
//! | `exponential(c, a, b, limit)` | `min(c + a·(e^(b·(n−2)) − 1), limit)` |
//!
//! Linear and exponential delays are rounded to whole seconds, as the seed does: so
//! `linear(5s, 2s, 15s)` waits 5, 7, 9, 11, 13, 15, 15 s before attempts 2 to 8, and
//! `exponential(5s, 2s, 2, 10000s)` waits 5, 18, 112, 810, 5965, 10000 s before attempts 2
//! to 7.
//!
//! In a plugin's sidecar file the policy is the `[retry]` table:
//!
//! ```toml
//! [retry]
//! policy = "exponential"   # or "constant" (with `delay`) or "linear" (`initial`, `step`, `limit`)
//! initial = "5s"           # c
//! scale = "2s"             # a
//! rate = 2.0               # b
//! limit = "10000s"
//! max_attempts = 10        # or "unlimited"
//! jitter = 0.1             # ±10 % (default 0 with an explicit policy, 0.1 without)
//! max_delay = "24h"        # cap on every delay, including a plugin's own
//! min_delay = "1s"         # floor on a plugin's own delay
//! ```
//!
//! Every key is optional; with no `policy`, the [default backoff](RetryPolicy::default)
//! applies and only the common keys (`max_attempts`, `jitter`, `max_delay`, `min_delay`) may
//! be set. Durations are `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`, or a number of seconds.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::complete::Completion;

/// The backoff used when no policy is configured: `exponential(5s, 5s, 1, 1h)`, that is
/// 5, 14, 37, 100, 273, 742 and 2017 s before attempts 2 to 8, then an hour.
pub const DEFAULT_BACKOFF: Backoff = Backoff::Exponential {
    initial: Duration::from_secs(5),
    scale: Duration::from_secs(5),
    rate: 1.0,
    limit: Duration::from_secs(3600),
};

/// Attempts made when no limit is configured: with the default backoff, about 18 hours of
/// retrying.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 25;

/// Jitter of the default policy: ±10 %.
pub const DEFAULT_JITTER: f64 = 0.1;

/// Cap on every delay unless configured: a day.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Floor on a delay a plugin asks for unless configured: a second.
pub const DEFAULT_MIN_DELAY: Duration = Duration::from_secs(1);

/// How long to wait before the next attempt, by attempt number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// Always `delay`.
    Constant {
        /// The delay.
        delay: Duration,
    },
    /// `min(initial + step·(n−2), limit)`, rounded to whole seconds.
    Linear {
        /// `c`: the delay before attempt 2.
        initial: Duration,
        /// `k`: added per attempt.
        step: Duration,
        /// The largest delay.
        limit: Duration,
    },
    /// `min(initial + scale·(e^(rate·(n−2)) − 1), limit)`, rounded to whole seconds.
    Exponential {
        /// `c`: the delay before attempt 2.
        initial: Duration,
        /// `a`: the scale of the exponential part.
        scale: Duration,
        /// `b`: its growth rate per attempt.
        rate: f64,
        /// The largest delay.
        limit: Duration,
    },
}

impl Backoff {
    /// The delay before attempt `attempt` (1-based; the first retry is attempt 2, and
    /// attempts below 2 are treated as 2).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let steps = f64::from(attempt.max(2) - 2);
        match *self {
            Self::Constant { delay } => delay,
            Self::Linear {
                initial,
                step,
                limit,
            } => {
                let seconds = initial.as_secs_f64() + step.as_secs_f64() * steps;
                whole_seconds(seconds.min(limit.as_secs_f64()))
            }
            Self::Exponential {
                initial,
                scale,
                rate,
                limit,
            } => {
                let seconds =
                    initial.as_secs_f64() + scale.as_secs_f64() * ((rate * steps).exp() - 1.0);
                whole_seconds(seconds.min(limit.as_secs_f64()))
            }
        }
    }
}

fn whole_seconds(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(seconds.round().min(u64::MAX as f64 / 2.0))
}

/// Why an attempt failed, as the plugin (or the host) reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// May succeed later; `delay` is the plugin's own wish, if any.
    Retry {
        /// Why.
        error: String,
        /// How long the plugin asks to wait.
        delay: Option<Duration>,
    },
    /// Will never succeed: dead-letter at once.
    Fatal {
        /// Why.
        error: String,
    },
}

/// When and how often a failed delivery is tried again. See the [module](self) for the
/// formulas and the sidecar syntax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RetryConfig", into = "RetryConfig")]
pub struct RetryPolicy {
    /// The delay before each next attempt.
    pub backoff: Backoff,
    /// Total attempts before giving up (the seed's `WithLimit`); `None`: never give up.
    pub max_attempts: Option<u32>,
    /// Random spread of computed delays, as a fraction: 0.1 makes each delay between 90 %
    /// and 110 % of the formula's. Never applied to a plugin's own delay.
    pub jitter: f64,
    /// Cap on every delay, including a plugin's own.
    pub max_delay: Duration,
    /// Floor on a plugin's own delay.
    pub min_delay: Duration,
}

impl Default for RetryPolicy {
    /// [`DEFAULT_BACKOFF`] with ±10 % jitter, at most [`DEFAULT_MAX_ATTEMPTS`] attempts:
    /// retries after about 5 s, 14 s, 37 s, 100 s, 4.5 min, 12 min, 34 min, then hourly,
    /// giving up after the 25th attempt, about 18 hours after the first.
    fn default() -> Self {
        Self {
            backoff: DEFAULT_BACKOFF,
            max_attempts: Some(DEFAULT_MAX_ATTEMPTS),
            jitter: DEFAULT_JITTER,
            max_delay: DEFAULT_MAX_DELAY,
            min_delay: DEFAULT_MIN_DELAY,
        }
    }
}

impl RetryPolicy {
    /// A policy with `backoff`, no jitter, no attempt limit and the default bounds.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            max_attempts: None,
            jitter: 0.0,
            max_delay: DEFAULT_MAX_DELAY,
            min_delay: DEFAULT_MIN_DELAY,
        }
    }

    /// Sets the attempt limit.
    pub fn with_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the jitter fraction (clamped to 0..=1).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// What to record after attempt `attempt` failed: a fatal failure, or a failure at the
    /// attempt limit, goes to the dead letters; any other is retried after the backoff's
    /// delay (with jitter from `rng`, capped by `max_delay`) or, when the plugin asked for
    /// one, after the plugin's delay clamped to `min_delay..=max_delay`.
    pub fn after_failure(&self, attempt: u32, failure: Failure, rng: &mut impl Rng) -> Completion {
        match failure {
            Failure::Fatal { error } => Completion::DeadLetter { error },
            Failure::Retry { error, .. } if self.is_last_attempt(attempt) => {
                Completion::DeadLetter { error }
            }
            Failure::Retry {
                error,
                delay: Some(requested),
            } => Completion::Retry {
                delay: self.clamp_requested(requested),
                error,
            },
            Failure::Retry { error, delay: None } => Completion::Retry {
                delay: self.delay_after(attempt, rng),
                error,
            },
        }
    }

    /// Whether attempt `attempt` is the last one allowed.
    pub fn is_last_attempt(&self, attempt: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempt >= max)
    }

    /// Whether a delivery claimed at `attempt` is past the limit: an earlier attempt took its
    /// host down (or outlived its lease) at the last allowed attempt. Dead-letter it without
    /// running it.
    pub fn is_exhausted(&self, attempt: u32) -> bool {
        self.max_attempts.is_some_and(|max| attempt > max)
    }

    /// The delay after attempt `attempt` failed: the backoff's delay before attempt
    /// `attempt + 1`, spread by the jitter and capped by `max_delay`.
    pub fn delay_after(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = self.backoff.delay_before(attempt.saturating_add(1));
        let spread = if self.jitter > 0.0 {
            let factor = 1.0 + self.jitter * rng.random_range(-1.0..=1.0);
            base.mul_f64(factor.max(0.0))
        } else {
            base
        };
        spread.min(self.max_delay)
    }

    /// A plugin's own delay, clamped to `min_delay..=max_delay`.
    pub fn clamp_requested(&self, requested: Duration) -> Duration {
        requested.clamp(self.min_delay.min(self.max_delay), self.max_delay)
    }

    /// When the attempt after `attempt` is due, by the injected clock `now` (no jitter).
    pub fn retry_at(&self, now: DateTime<Utc>, attempt: u32) -> DateTime<Utc> {
        let delay = self
            .backoff
            .delay_before(attempt.saturating_add(1))
            .min(self.max_delay);
        now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
    }

    /// The delays before attempts 2, 3, … up to the attempt limit (at most `max` of them),
    /// without jitter: what operators see as the schedule.
    pub fn schedule(&self, max: usize) -> Vec<Duration> {
        let last = self.max_attempts.map_or(u32::MAX, |limit| limit.max(1));
        (2..=last)
            .take(max)
            .map(|attempt| self.backoff.delay_before(attempt).min(self.max_delay))
            .collect()
    }
}

/// The `[retry]` table as written.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<BackoffKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay: Option<ConfigDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    initial: Option<ConfigDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<ConfigDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scale: Option<ConfigDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<ConfigDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_attempts: Option<MaxAttempts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jitter: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_delay: Option<ConfigDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_delay: Option<ConfigDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackoffKind {
    Constant,
    Linear,
    Exponential,
}

impl TryFrom<RetryConfig> for RetryPolicy {
    type Error = String;

    fn try_from(config: RetryConfig) -> Result<Self, String> {
        let given = |key: &str| match key {
            "delay" => config.delay.is_some(),
            "initial" => config.initial.is_some(),
            "step" => config.step.is_some(),
            "scale" => config.scale.is_some(),
            "rate" => config.rate.is_some(),
            "limit" => config.limit.is_some(),
            _ => false,
        };
        let formula_keys = ["delay", "initial", "step", "scale", "rate", "limit"];
        let (backoff, default_jitter) = match config.policy {
            None => {
                if let Some(key) = formula_keys.iter().find(|key| given(key)) {
                    return Err(format!(
                        "`{key}` needs a `policy`: \"constant\" (with `delay`), \"linear\" (with \
                         `initial`, `step`, `limit`) or \"exponential\" (with `initial`, `scale`, \
                         `rate`, `limit`)"
                    ));
                }
                (DEFAULT_BACKOFF, DEFAULT_JITTER)
            }
            Some(kind) => {
                let (name, needed): (&str, &[&str]) = match kind {
                    BackoffKind::Constant => ("constant", &["delay"]),
                    BackoffKind::Linear => ("linear", &["initial", "step", "limit"]),
                    BackoffKind::Exponential => {
                        ("exponential", &["initial", "scale", "rate", "limit"])
                    }
                };
                if let Some(key) = formula_keys
                    .iter()
                    .find(|key| given(key) && !needed.contains(key))
                {
                    return Err(format!(
                        "`{key}` does not apply to policy = \"{name}\", which takes {}",
                        backticked(needed)
                    ));
                }
                if let Some(key) = needed.iter().find(|key| !given(key)) {
                    return Err(format!(
                        "policy = \"{name}\" needs `{key}` (it takes {})",
                        backticked(needed)
                    ));
                }
                let duration =
                    |value: Option<ConfigDuration>| value.map(|d| d.0).unwrap_or_default();
                let backoff = match kind {
                    BackoffKind::Constant => Backoff::Constant {
                        delay: duration(config.delay),
                    },
                    BackoffKind::Linear => Backoff::Linear {
                        initial: duration(config.initial),
                        step: duration(config.step),
                        limit: duration(config.limit),
                    },
                    BackoffKind::Exponential => {
                        let rate = config.rate.unwrap_or_default();
                        if !rate.is_finite() || rate <= 0.0 || rate > 20.0 {
                            return Err(format!(
                                "`rate` must be a number above 0 and at most 20, not {rate}"
                            ));
                        }
                        Backoff::Exponential {
                            initial: duration(config.initial),
                            scale: duration(config.scale),
                            rate,
                            limit: duration(config.limit),
                        }
                    }
                };
                (backoff, 0.0)
            }
        };
        let jitter = config.jitter.unwrap_or(default_jitter);
        if !(0.0..=1.0).contains(&jitter) {
            return Err(format!("`jitter` must be between 0 and 1, not {jitter}"));
        }
        let max_attempts = match config.max_attempts {
            None => Some(DEFAULT_MAX_ATTEMPTS),
            Some(MaxAttempts(limit)) => limit,
        };
        let max_delay = config.max_delay.map_or(DEFAULT_MAX_DELAY, |d| d.0);
        let min_delay = config.min_delay.map_or(DEFAULT_MIN_DELAY, |d| d.0);
        if min_delay > max_delay {
            return Err(format!(
                "`min_delay` ({}) is above `max_delay` ({})",
                format_duration(min_delay),
                format_duration(max_delay)
            ));
        }
        Ok(Self {
            backoff,
            max_attempts,
            jitter,
            max_delay,
            min_delay,
        })
    }
}

impl From<RetryPolicy> for RetryConfig {
    fn from(policy: RetryPolicy) -> Self {
        let mut config = RetryConfig {
            max_attempts: Some(MaxAttempts(policy.max_attempts)),
            jitter: Some(policy.jitter),
            max_delay: Some(ConfigDuration(policy.max_delay)),
            min_delay: Some(ConfigDuration(policy.min_delay)),
            ..RetryConfig::default()
        };
        match policy.backoff {
            Backoff::Constant { delay } => {
                config.policy = Some(BackoffKind::Constant);
                config.delay = Some(ConfigDuration(delay));
            }
            Backoff::Linear {
                initial,
                step,
                limit,
            } => {
                config.policy = Some(BackoffKind::Linear);
                config.initial = Some(ConfigDuration(initial));
                config.step = Some(ConfigDuration(step));
                config.limit = Some(ConfigDuration(limit));
            }
            Backoff::Exponential {
                initial,
                scale,
                rate,
                limit,
            } => {
                config.policy = Some(BackoffKind::Exponential);
                config.initial = Some(ConfigDuration(initial));
                config.scale = Some(ConfigDuration(scale));
                config.rate = Some(rate);
                config.limit = Some(ConfigDuration(limit));
            }
        }
        config
    }
}

fn backticked(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|key| format!("`{key}`")).collect();
    keys.join(", ")
}

/// `max_attempts`: a positive whole number, or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MaxAttempts(Option<u32>);

impl<'de> Deserialize<'de> for MaxAttempts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MaxAttempts;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of attempts (1 or more) or \"unlimited\"")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<MaxAttempts, E> {
                match u32::try_from(value) {
                    Ok(limit) if limit >= 1 => Ok(MaxAttempts(Some(limit))),
                    _ => Err(E::custom(format!(
                        "`max_attempts` must be 1 or more (or \"unlimited\"), not {value}"
                    ))),
                }
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<MaxAttempts, E> {
                self.visit_i64(i64::try_from(value).unwrap_or(i64::MAX))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<MaxAttempts, E> {
                if value == "unlimited" {
                    Ok(MaxAttempts(None))
                } else {
                    Err(E::custom(format!(
                        "`max_attempts` must be a number or \"unlimited\", not \"{value}\""
                    )))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for MaxAttempts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(limit) => serializer.serialize_u32(limit),
            None => serializer.serialize_str("unlimited"),
        }
    }
}

/// A duration in configuration: `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"` (units may be
/// combined, `"1m30s"`), or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConfigDuration(Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"250ms\", \"5m\", \"1h\", or seconds")
            }

            fn visit_f64<E: serde::de::Error>(self, seconds: f64) -> Result<ConfigDuration, E> {
                Duration::try_from_secs_f64(seconds)
                    .map(ConfigDuration)
                    .map_err(|_| E::custom(format!("{seconds} is not a duration in seconds")))
            }

            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<ConfigDuration, E> {
                u64::try_from(seconds)
                    .map(|s| ConfigDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("{seconds} is not a duration in seconds")))
            }

            fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<ConfigDuration, E> {
                Ok(ConfigDuration(Duration::from_secs(seconds)))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ConfigDuration, E> {
                parse_duration(text).map(ConfigDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`, or combinations such as `"1m30s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "`{text}` is not a duration: write a number and a unit (ms, s, m, h, d), such as \
             \"250ms\", \"30s\", \"1m30s\""
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let amount: f64 = number.parse().map_err(|_| invalid())?;
        let seconds_per_unit = match unit.trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(invalid()),
        };
        let part = Duration::try_from_secs_f64(amount * seconds_per_unit).map_err(|_| invalid())?;
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = tail.trim_start();
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it, in the largest exact unit.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn delays(backoff: Backoff, attempts: std::ops::RangeInclusive<u32>) -> Vec<u64> {
        attempts
            .map(|attempt| backoff.delay_before(attempt).as_secs())
            .collect()
    }

    #[test]
    fn linear_matches_the_seed_pinned_values() {
        let linear = Backoff::Linear {
            initial: secs(5),
            step: secs(2),
            limit: secs(15),
        };
        assert_eq!(delays(linear, 2..=8), [5, 7, 9, 11, 13, 15, 15]);
    }

    #[test]
    fn exponential_matches_the_seed_pinned_values() {
        let exponential = Backoff::Exponential {
            initial: secs(5),
            scale: secs(2),
            rate: 2.0,
            limit: secs(10_000),
        };
        assert_eq!(delays(exponential, 2..=7), [5, 18, 112, 810, 5965, 10_000]);
    }

    #[test]
    fn constant_is_constant_and_keeps_milliseconds() {
        let constant = Backoff::Constant {
            delay: Duration::from_millis(250),
        };
        assert_eq!(constant.delay_before(2), Duration::from_millis(250));
        assert_eq!(constant.delay_before(50), Duration::from_millis(250));
    }

    #[test]
    fn the_default_schedule_is_as_documented() {
        let policy = RetryPolicy::default();
        let schedule: Vec<u64> = policy.schedule(100).iter().map(Duration::as_secs).collect();
        assert_eq!(schedule.len(), 24);
        assert_eq!(&schedule[..8], [5, 14, 37, 100, 273, 742, 2017, 3600]);
        assert!(schedule[8..].iter().all(|&s| s == 3600));
        let total: u64 = schedule.iter().sum();
        assert_eq!(total, 64_388);
    }

    #[test]
    fn attempts_below_two_count_as_two() {
        assert_eq!(DEFAULT_BACKOFF.delay_before(0), secs(5));
        assert_eq!(DEFAULT_BACKOFF.delay_before(1), secs(5));
    }

    #[test]
    fn fatal_dead_letters_at_once_and_the_limit_dead_letters_the_last_attempt() {
        let policy =
            RetryPolicy::new(Backoff::Constant { delay: secs(30) }).with_max_attempts(Some(3));
        let mut rng = StdRng::seed_from_u64(1);
        let retry = |error: &str| Failure::Retry {
            error: error.to_owned(),
            delay: None,
        };
        assert_eq!(
            policy.after_failure(
                1,
                Failure::Fatal {
                    error: "bad".into()
                },
                &mut rng
            ),
            Completion::DeadLetter {
                error: "bad".into()
            }
        );
        assert_eq!(
            policy.after_failure(2, retry("down"), &mut rng),
            Completion::Retry {
                delay: secs(30),
                error: "down".into()
            }
        );
        assert_eq!(
            policy.after_failure(3, retry("down"), &mut rng),
            Completion::DeadLetter {
                error: "down".into()
            }
        );
        assert!(!policy.is_exhausted(3));
        assert!(policy.is_exhausted(4));
    }

    #[test]
    fn unlimited_attempts_never_give_up() {
        let policy = RetryPolicy::new(Backoff::Constant { delay: secs(1) });
        assert!(!policy.is_last_attempt(u32::MAX));
        let mut rng = StdRng::seed_from_u64(1);
        let completion = policy.after_failure(
            1_000_000,
            Failure::Retry {
                error: "x".into(),
                delay: None,
            },
            &mut rng,
        );
        assert!(matches!(completion, Completion::Retry { .. }));
    }

    #[test]
    fn a_plugin_delay_is_honoured_but_clamped() {
        let policy = RetryPolicy::new(Backoff::Constant { delay: secs(30) });
        let mut rng = StdRng::seed_from_u64(1);
        let asked = |delay: Duration| Failure::Retry {
            error: "later".into(),
            delay: Some(delay),
        };
        let delay_of = |completion: Completion| match completion {
            Completion::Retry { delay, .. } => delay,
            other => panic!("expected a retry, got {other:?}"),
        };
        assert_eq!(
            delay_of(policy.after_failure(1, asked(secs(90)), &mut rng)),
            secs(90)
        );
        assert_eq!(
            delay_of(policy.after_failure(1, asked(Duration::ZERO), &mut rng)),
            DEFAULT_MIN_DELAY
        );
        assert_eq!(
            delay_of(policy.after_failure(1, asked(secs(7 * 86_400)), &mut rng)),
            DEFAULT_MAX_DELAY
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_cap_holds() {
        let mut policy = RetryPolicy::new(Backoff::Constant { delay: secs(100) }).with_jitter(0.1);
        let mut rng = StdRng::seed_from_u64(7);
        let samples: Vec<Duration> = (0..1000).map(|_| policy.delay_after(1, &mut rng)).collect();
        assert!(samples.iter().all(|d| *d >= secs(90) && *d <= secs(110)));
        assert!(
            samples.iter().any(|d| *d != secs(100)),
            "jitter must spread delays"
        );
        policy.max_delay = secs(95);
        assert!((0..1000).all(|_| policy.delay_after(1, &mut rng) <= secs(95)));
    }

    #[test]
    fn retry_at_uses_the_injected_clock() {
        let policy = RetryPolicy::new(Backoff::Linear {
            initial: secs(5),
            step: secs(2),
            limit: secs(15),
        });
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            policy.retry_at(now, 2).to_rfc3339(),
            "2024-01-01T00:00:07+00:00"
        );
    }

    fn parse(toml_text: &str) -> Result<RetryPolicy, String> {
        toml::from_str(toml_text).map_err(|error| error.to_string())
    }

    #[test]
    fn sidecar_tables_deserialize() {
        assert_eq!(parse("").unwrap(), RetryPolicy::default());
        assert_eq!(
            parse("max_attempts = 3").unwrap(),
            RetryPolicy {
                max_attempts: Some(3),
                ..RetryPolicy::default()
            }
        );
        assert_eq!(
            parse(
                r#"policy = "exponential"
                   initial = "5s"
                   scale = 2
                   rate = 2.0
                   limit = "10000s"
                   max_attempts = "unlimited""#
            )
            .unwrap(),
            RetryPolicy::new(Backoff::Exponential {
                initial: secs(5),
                scale: secs(2),
                rate: 2.0,
                limit: secs(10_000),
            })
        );
        assert_eq!(
            parse(
                r#"policy = "constant"
                   delay = "250ms"
                   jitter = 0.2
                   max_delay = "1h"
                   min_delay = "100ms""#
            )
            .unwrap(),
            RetryPolicy {
                backoff: Backoff::Constant {
                    delay: Duration::from_millis(250)
                },
                max_attempts: Some(DEFAULT_MAX_ATTEMPTS),
                jitter: 0.2,
                max_delay: secs(3600),
                min_delay: Duration::from_millis(100),
            }
        );
    }

    #[test]
    fn sidecar_mistakes_are_named() {
        let check = |text: &str, expected: &str| {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        };
        check("step = \"1s\"", "`step` needs a `policy`");
        check(
            "policy = \"linear\"\ninitial = \"1s\"\nlimit = \"1m\"",
            "needs `step`",
        );
        check(
            "policy = \"constant\"\ndelay = \"1s\"\nrate = 2",
            "`rate` does not apply to policy = \"constant\"",
        );
        check("policy = \"fibonacci\"", "unknown variant `fibonacci`");
        check("max_attempts = 0", "`max_attempts` must be 1 or more");
        check("max_attempts = \"lots\"", "\"unlimited\"");
        check("jitter = 1.5", "`jitter` must be between 0 and 1");
        check("retries = 3", "unknown field `retries`");
        check("max_delay = \"soon\"", "is not a duration");
        check(
            "min_delay = \"2h\"\nmax_delay = \"1h\"",
            "is above `max_delay`",
        );
        check(
            "policy = \"exponential\"\ninitial = 1\nscale = 1\nrate = -1\nlimit = 10",
            "`rate` must be a number above 0",
        );
    }

    #[test]
    fn policies_serialize_back_to_the_same_policy() {
        for policy in [
            RetryPolicy::default(),
            RetryPolicy::new(Backoff::Linear {
                initial: secs(5),
                step: Duration::from_millis(1500),
                limit: secs(60),
            }),
        ] {
            let json = serde_json::to_value(&policy).unwrap();
            let back: RetryPolicy = serde_json::from_value(json).unwrap();
            assert_eq!(back, policy);
        }
    }

    #[test]
    fn durations_parse_and_format() {
        let check = |text: &str, millis: u64| {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(millis),
                "{text}"
            );
        };
        check("250ms", 250);
        check("30s", 30_000);
        check("5m", 300_000);
        check("1h", 3_600_000);
        check("1d", 86_400_000);
        check("1m30s", 90_000);
        check("1.5s", 1_500);
        for bad in ["", "5", "5 parsecs", "s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(secs(7200)), "2h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
