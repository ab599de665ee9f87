//! What a plugin answers for a delivery: ok, retry later (with an optional delay) or fatal,
//! and the conversions that let a plugin function return `()`, `Result`s and `?`.

use std::fmt;
use std::time::Duration;

use crate::wit::types as wit;

/// What became of a delivery.
///
/// ```
/// use std::time::Duration;
/// use courier_sdk::Outcome;
///
/// let done = Outcome::ok();
/// let later = Outcome::retry("the mail server is down").after(Duration::from_secs(30));
/// let never = Outcome::fatal("no such user");
/// assert!(done.is_ok());
/// assert_eq!(later, Outcome::Retry {
///     reason: "the mail server is down".into(),
///     delay: Some(Duration::from_secs(30)),
/// });
/// assert_eq!(never, Outcome::Fatal("no such user".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The delivery succeeded. Follow-up events published during the call are committed.
    Ok,
    /// The delivery failed and may succeed later. It is retried until the queue's attempt
    /// limit, then dead-lettered. Follow-up events published during the call are discarded.
    Retry {
        /// Why it failed; kept with the delivery and shown to operators.
        reason: String,
        /// How long to wait before the next attempt; `None` lets the queue's retry policy
        /// decide. The host clamps it to the policy's bounds and counts whole milliseconds.
        delay: Option<Duration>,
    },
    /// The delivery failed for good: it goes to the dead letters at once, with this reason.
    /// Follow-up events published during the call are discarded.
    Fatal(String),
}

impl Outcome {
    /// The delivery succeeded.
    pub fn ok() -> Outcome {
        Outcome::Ok
    }

    /// Try the delivery again later, when the queue's retry policy says. Chain
    /// [`after`](Outcome::after) to choose the delay.
    ///
    /// Takes anything [`Display`](fmt::Display), so errors map straight into it:
    ///
    /// ```
    /// use courier_sdk::Outcome;
    ///
    /// fn parse(text: &str) -> Result<u32, Outcome> {
    ///     text.parse::<u32>().map_err(Outcome::retry)
    /// }
    /// assert_eq!(parse("x"), Err(Outcome::retry("invalid digit found in string")));
    /// ```
    pub fn retry(reason: impl fmt::Display) -> Outcome {
        Outcome::Retry {
            reason: reason.to_string(),
            delay: None,
        }
    }

    /// Give up on the delivery: it goes to the dead letters now, with `reason`.
    pub fn fatal(reason: impl fmt::Display) -> Outcome {
        Outcome::Fatal(reason.to_string())
    }

    /// Sets the delay before the next attempt of a [`retry`](Outcome::retry); it leaves `ok`
    /// and `fatal` unchanged.
    ///
    /// ```
    /// use std::time::Duration;
    /// use courier_sdk::Outcome;
    ///
    /// let outcome = Outcome::retry("rate limited").after(Duration::from_millis(1500));
    /// assert_eq!(outcome.delay(), Some(Duration::from_millis(1500)));
    /// assert_eq!(Outcome::ok().after(Duration::from_secs(1)), Outcome::ok());
    /// ```
    pub fn after(self, delay: Duration) -> Outcome {
        match self {
            Outcome::Retry { reason, .. } => Outcome::Retry {
                reason,
                delay: Some(delay),
            },
            other => other,
        }
    }

    /// Whether this is [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// The reason of a retry or a fatal outcome.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Ok => None,
            Outcome::Retry { reason, .. } | Outcome::Fatal(reason) => Some(reason),
        }
    }

    /// The delay of a retry, when one was set.
    pub fn delay(&self) -> Option<Duration> {
        match self {
            Outcome::Retry { delay, .. } => *delay,
            _ => None,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Outcome {
        match self {
            Outcome::Ok => wit::Outcome::Ok,
            Outcome::Retry { reason, delay } => wit::Outcome::Retry(wit::Retry {
                reason,
                delay_ms: delay.map(|delay| u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            }),
            Outcome::Fatal(reason) => wit::Outcome::Fatal(reason),
        }
    }
}

/// What a plugin function may return: anything that becomes an [`Outcome`].
///
/// - [`Outcome`] itself;
/// - `()`: [`Outcome::ok`];
/// - `Result<T, E>` where both become outcomes, so `?` works inside a function returning
///   `Result<Outcome, Outcome>` on every error type that converts into [`Outcome`]
///   ([`PublishError`](crate::PublishError) and [`ConfigError`](crate::ConfigError) become
///   fatal):
///
/// ```no_run
/// use courier_sdk::{Delivery, Outcome};
///
/// #[courier_sdk::handler(subscribe(queue = "counter", topic = "counter", events = ["tick"]))]
/// fn handle(delivery: Delivery) -> Result<(), Outcome> {
///     let step: u64 = courier_sdk::config_parse("step")?.unwrap_or(1);
///     courier_sdk::publish("counter.ticked", &serde_json::json!({ "step": step }))?;
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[diagnostic::on_unimplemented(
    message = "a Courier plugin function cannot return `{Self}`",
    note = "return `courier_sdk::Outcome`, `()`, or a `Result` of those"
)]
pub trait IntoOutcome {
    /// Converts into the outcome sent to the host.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Ok
    }
}

impl<T: IntoOutcome, E: IntoOutcome> IntoOutcome for Result<T, E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(value) => value.into_outcome(),
            Err(error) => error.into_outcome(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(outcome: impl IntoOutcome, expected: wit::Outcome) {
        let actual = outcome.into_outcome().into_wit();
        assert_eq!(format!("{actual:?}"), format!("{expected:?}"));
    }

    #[test]
    fn outcomes_convert_to_the_wit_variant() {
        check(Outcome::ok(), wit::Outcome::Ok);
        check((), wit::Outcome::Ok);
        check(
            Outcome::retry("down"),
            wit::Outcome::Retry(wit::Retry {
                reason: "down".into(),
                delay_ms: None,
            }),
        );
        check(
            Outcome::retry("down").after(Duration::from_micros(2_500_900)),
            wit::Outcome::Retry(wit::Retry {
                reason: "down".into(),
                delay_ms: Some(2_500),
            }),
        );
        check(Outcome::fatal("gone"), wit::Outcome::Fatal("gone".into()));
        check(
            Err::<(), Outcome>(Outcome::fatal("bad")),
            wit::Outcome::Fatal("bad".into()),
        );
        check(Ok::<(), Outcome>(()), wit::Outcome::Ok);
        check(
            Ok::<Outcome, Outcome>(Outcome::retry("later")),
            wit::Outcome::Retry(wit::Retry {
                reason: "later".into(),
                delay_ms: None,
            }),
        );
    }
}
