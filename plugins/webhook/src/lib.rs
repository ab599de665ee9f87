//! The `webhook` destination: POSTs each message (or each batch) to an HTTP endpoint,
//! signed with Standard Webhooks, and turns the endpoint's answer into outcomes. Its
//! contract is in README.md.

mod envelope;
mod settings;
mod signature;
mod verdict;

use std::time::{SystemTime, UNIX_EPOCH};

use courier_sdk::http::{HttpErrorKind, Request};
use courier_sdk::{Delivery, Outcome, RawPayload, log};

use crate::settings::{Mode, Settings};
use crate::verdict::Answer;

/// How much of a response body is read: enough for a reason's excerpt.
const RESPONSE_LIMIT: usize = 4096;

#[courier_sdk::destination(
    name = "webhook",
    subscribe(queue = "webhook", topic = "email", events = ["sent"]),
)]
fn deliver(batch: Vec<Delivery<RawPayload>>) -> Vec<Outcome> {
    let settings = match Settings::from_config(courier_sdk::config) {
        Ok(settings) => settings,
        Err(reason) => {
            log::error!("{reason}");
            return vec![Outcome::fatal(reason); batch.len()];
        }
    };
    match settings.mode {
        Mode::Single => deliver_each(&settings, &batch),
        Mode::Batch => deliver_together(&settings, &batch),
    }
}

/// One POST per message. After a failure to reach the endpoint (or a 429), the rest of the
/// batch is not attempted: it gets the same outcome.
fn deliver_each(settings: &Settings, batch: &[Delivery<RawPayload>]) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut stopped: Option<Outcome> = None;
    for delivery in batch {
        if let Some(outcome) = &stopped {
            outcomes.push(outcome.clone());
            continue;
        }
        let message = &delivery.message;
        let body = match envelope::message_json(message) {
            Ok(body) => body,
            Err(reason) => {
                outcomes.push(Outcome::fatal(reason));
                continue;
            }
        };
        let sent = post(settings, &message.id, body.as_bytes());
        log_result(
            &sent.outcome,
            &format!("{} {}", message.name, message.id),
            settings,
        );
        if sent.stop_batch {
            stopped = Some(sent.outcome.clone());
        }
        outcomes.push(sent.outcome);
    }
    outcomes
}

/// One POST of a JSON array for the whole batch; every message gets its outcome.
fn deliver_together(settings: &Settings, batch: &[Delivery<RawPayload>]) -> Vec<Outcome> {
    let mut objects = Vec::with_capacity(batch.len());
    for delivery in batch {
        match envelope::message_json(&delivery.message) {
            Ok(object) => objects.push(object),
            Err(reason) => return vec![Outcome::fatal(reason); batch.len()],
        }
    }
    let body = envelope::batch_json(objects.iter().map(String::as_str));
    let id = envelope::batch_id(batch.iter().map(|delivery| delivery.message.id.as_str()));
    let sent = post(settings, &id, body.as_bytes());
    log_result(
        &sent.outcome,
        &format!("batch of {} ({id})", batch.len()),
        settings,
    );
    vec![sent.outcome; batch.len()]
}

/// The outcome of one POST, and whether the rest of a batch should not be attempted.
struct Sent {
    outcome: Outcome,
    stop_batch: bool,
}

/// Signs and POSTs `body` as webhook `id`.
fn post(settings: &Settings, id: &str, body: &[u8]) -> Sent {
    let now = SystemTime::now();
    let timestamp = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let timestamp = i64::try_from(timestamp).unwrap_or(i64::MAX);
    let signature = signature::sign(&settings.secrets, id, timestamp, body);
    let request = Request::post(settings.url.as_str())
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("courier-webhook/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .timeout(settings.timeout)
        .response_limit(RESPONSE_LIMIT);
    match request.send() {
        Ok(response) => {
            let answer = Answer {
                status: response.status,
                retry_after: response.header("retry-after"),
                location: response.header("location"),
                body: &response.body,
            };
            Sent {
                outcome: verdict::classify(&settings.url, answer, now),
                stop_batch: response.status == 429,
            }
        }
        Err(error) => {
            let outcome = match error.kind() {
                HttpErrorKind::Denied | HttpErrorKind::InvalidRequest => Outcome::fatal(&error),
                _ => Outcome::retry(&error),
            };
            Sent {
                outcome,
                stop_batch: true,
            }
        }
    }
}

fn log_result(outcome: &Outcome, what: &str, settings: &Settings) {
    match outcome {
        Outcome::Ok => log::debug!("delivered {what} to {}", settings.url),
        Outcome::Retry { reason, .. } => log::warn!("{what} will be retried: {reason}"),
        Outcome::Fatal(reason) => log::error!("{what} failed for good: {reason}"),
    }
}
