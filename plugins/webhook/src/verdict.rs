//! What an endpoint's answer means for a delivery, by the status codes webhook receivers
//! expect: 2xx ok; 408, 425, 429 and 5xx retry (after `Retry-After` when given); 410 fatal;
//! other 4xx fatal with the status and the start of the body; 3xx a retried failure, since
//! redirects are not followed.

use std::time::{Duration, SystemTime};

use courier_sdk::Outcome;

/// How much of a response body a reason quotes.
pub const EXCERPT_BYTES: usize = 200;

/// The parts of a response that decide the outcome.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<&'a str>,
    /// The `Location` header, if any.
    pub location: Option<&'a str>,
    /// The body, or its beginning.
    pub body: &'a [u8],
}

/// The outcome of POSTing to `url` and getting `answer`, at `now`.
pub fn classify(url: &str, answer: Answer<'_>, now: SystemTime) -> Outcome {
    let status = answer.status;
    match status {
        200..=299 => Outcome::ok(),
        300..=399 => {
            let location = match answer.location {
                Some(location) => format!(" to {location}"),
                None => String::new(),
            };
            Outcome::retry(format!(
                "{url} answered {status}, a redirect{location}, which is not followed: \
                 configure the final URL"
            ))
        }
        408 | 425 | 429 | 500..=599 => {
            let outcome =
                Outcome::retry(format!("{url} answered {status}{}", excerpt(answer.body)));
            match answer
                .retry_after
                .and_then(|value| parse_retry_after(value, now))
            {
                Some(delay) => outcome.after(delay),
                None => outcome,
            }
        }
        410 => Outcome::fatal(format!(
            "{url} answered 410 Gone: the endpoint no longer accepts deliveries"
        )),
        400..=499 => Outcome::fatal(format!("{url} answered {status}{}", excerpt(answer.body))),
        _ => Outcome::retry(format!("{url} answered an unexpected status {status}")),
    }
}

/// `Retry-After` as a delay from `now`: either whole seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, zero when past). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `: <the first bytes of the body>` on one line, or nothing for an empty body.
fn excerpt(body: &[u8]) -> String {
    let cut = body.len() > EXCERPT_BYTES;
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return String::new();
    }
    if cut {
        format!(": {text}…")
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const URL: &str = "https://hooks.example.com/in";

    /// 2015-10-21T07:28:00Z, the date of the HTTP-date examples.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    fn check(status: u16, retry_after: Option<&str>, body: &str, expected: Outcome) {
        let answer = Answer {
            status,
            retry_after,
            location: None,
            body: body.as_bytes(),
        };
        assert_eq!(classify(URL, answer, now()), expected, "status {status}");
    }

    #[test]
    fn statuses_map_to_outcomes() {
        check(200, None, "", Outcome::ok());
        check(204, None, "", Outcome::ok());
        check(299, Some("5"), "x", Outcome::ok());
        check(
            301,
            None,
            "",
            Outcome::retry(format!(
                "{URL} answered 301, a redirect, which is not followed: configure the final URL"
            )),
        );
        check(408, None, "", Outcome::retry(format!("{URL} answered 408")));
        check(
            425,
            None,
            "too early",
            Outcome::retry(format!("{URL} answered 425: too early")),
        );
        check(
            429,
            Some("7"),
            "slow down",
            Outcome::retry(format!("{URL} answered 429: slow down")).after(Duration::from_secs(7)),
        );
        check(
            503,
            Some("Wed, 21 Oct 2015 07:30:00 GMT"),
            "",
            Outcome::retry(format!("{URL} answered 503")).after(Duration::from_secs(120)),
        );
        check(
            500,
            Some("soon"),
            "",
            Outcome::retry(format!("{URL} answered 500")),
        );
        check(
            410,
            None,
            "gone",
            Outcome::fatal(format!(
                "{URL} answered 410 Gone: the endpoint no longer accepts deliveries"
            )),
        );
        check(
            400,
            None,
            "{\"error\":\n  \"bad signature\"}",
            Outcome::fatal(format!(
                "{URL} answered 400: {{\"error\": \"bad signature\"}}"
            )),
        );
        check(404, None, "", Outcome::fatal(format!("{URL} answered 404")));
        check(
            101,
            None,
            "",
            Outcome::retry(format!("{URL} answered an unexpected status 101")),
        );
    }

    #[test]
    fn a_redirect_names_its_location() {
        let answer = Answer {
            status: 308,
            retry_after: None,
            location: Some("https://new.example.com/in"),
            body: b"",
        };
        assert_eq!(
            classify(URL, answer, now()).reason(),
            Some(
                "https://hooks.example.com/in answered 308, a redirect to \
                 https://new.example.com/in, which is not followed: configure the final URL"
            )
        );
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "x".repeat(EXCERPT_BYTES + 50);
        let answer = Answer {
            status: 422,
            retry_after: None,
            location: None,
            body: body.as_bytes(),
        };
        let expected = format!("{URL} answered 422: {}…", "x".repeat(EXCERPT_BYTES));
        assert_eq!(
            classify(URL, answer, now()).reason(),
            Some(expected.as_str())
        );
    }

    fn check_retry_after(value: &str, expected: Option<u64>) {
        assert_eq!(
            parse_retry_after(value, now()),
            expected.map(Duration::from_secs),
            "Retry-After: {value}"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        check_retry_after("0", Some(0));
        check_retry_after(" 2 ", Some(2));
        check_retry_after("86400", Some(86_400));
        check_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", Some(30));
        check_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", Some(0));
        check_retry_after("-1", None);
        check_retry_after("1.5", None);
        check_retry_after("", None);
        check_retry_after("tomorrow", None);
    }
}
