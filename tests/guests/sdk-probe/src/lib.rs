//! Test guest: a handler that exercises every part of the Rust SDK, so the SDK's behaviour
//! can be checked on the real runtime. The payload is an order
//! `{"sku": string, "quantity": number, "action"?: string}`; anything else is refused by
//! the SDK's typed decoding (fatal, with the decoding error).
//!
//! Actions:
//! - none: logs `order SKU x QUANTITY (attempt N in QUEUE)` and publishes `probe.accepted`
//!   `{"sku", "quantity"}` with header `source: sdk-probe`, `deliver_at` = the message's
//!   `published_at` + 60 s and, when config `follow_up_id` is set, that id; then ok;
//! - `"retry"`: retry with reason `asked to retry`, after config `delay_ms` (default 1500) ms;
//! - `"fatal"`: fatal with reason `asked to fail`;
//! - `"bad-publish"`: publishes `not-a-name` and returns the SDK's fatal error for it;
//! - `"levels"`: logs `level trace` ... `level error`, one line per level; then ok;
//! - `"publish-then-retry"`: publishes `probe.accepted` and answers retry (the follow-up must
//!   be discarded).
//!
//! Config `delay_ms` that is not a number makes every delivery fatal with the SDK's
//! configuration error.

use std::time::Duration;

use courier_sdk::serde_json::json;
use courier_sdk::{Delivery, Outcome, PublishOptions, Timestamp, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct Order {
    sku: String,
    quantity: u32,
    #[serde(default)]
    action: Option<String>,
}

#[courier_sdk::handler(
    name = "sdk-probe",
    version = "9.9.9",
    subscribe(queue = "probe", topic = "probe", events = ["order"]),
    subscribe(queue = "probe-audit", topic = "audit", events = ["order", "refund"]),
)]
fn handle(delivery: Delivery<Order>) -> Result<Outcome, Outcome> {
    let delay_ms: u64 = courier_sdk::config_parse("delay_ms")?.unwrap_or(1500);
    let order = &delivery.message.payload;
    match order.action.as_deref() {
        None => {
            log::info!(
                "order {} x {} (attempt {} in {})",
                order.sku,
                order.quantity,
                delivery.attempt,
                delivery.queue
            );
            publish_accepted(&delivery)?;
            Ok(Outcome::ok())
        }
        Some("retry") => {
            Ok(Outcome::retry("asked to retry").after(Duration::from_millis(delay_ms)))
        }
        Some("fatal") => Ok(Outcome::fatal("asked to fail")),
        Some("bad-publish") => {
            courier_sdk::publish("not-a-name", &json!({}))?;
            Ok(Outcome::ok())
        }
        Some("levels") => {
            log::trace!("level trace");
            log::debug!("level debug");
            log::info!("level info");
            log::warn!("level warn");
            log::error!("level error");
            Ok(Outcome::ok())
        }
        Some("publish-then-retry") => {
            publish_accepted(&delivery)?;
            Ok(Outcome::retry("published, then asked to retry"))
        }
        Some(other) => Ok(Outcome::fatal(format!("unknown action `{other}`"))),
    }
}

fn publish_accepted(delivery: &Delivery<Order>) -> Result<String, courier_sdk::PublishError> {
    let order = &delivery.message.payload;
    let deliver_at = Timestamp::from_millis(delivery.message.published_at.as_millis() + 60_000);
    let mut options = PublishOptions::new()
        .deliver_at(deliver_at)
        .header("source", "sdk-probe");
    if let Some(id) = courier_sdk::config("follow_up_id") {
        options = options.id(id);
    }
    courier_sdk::publish_with(
        "probe.accepted",
        &json!({ "sku": order.sku, "quantity": order.quantity }),
        options,
    )
}
