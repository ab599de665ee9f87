//! The `flaky` example handler: fails with `retry` until a configured attempt, then
//! succeeds — a plugin to watch retries and backoff with. Its contract is in README.md.

use courier_sdk::{Delivery, Outcome, RawPayload};

/// The attempt that succeeds when the operator sets no `succeed_at`.
const DEFAULT_SUCCEED_AT: u32 = 3;

#[courier_sdk::handler(
    name = "flaky",
    subscribe(queue = "flaky", topic = "flaky", events = ["event"]),
)]
fn handle(delivery: Delivery<RawPayload>) -> Result<Outcome, Outcome> {
    let succeed_at = courier_sdk::config_parse("succeed_at")?.unwrap_or(DEFAULT_SUCCEED_AT);
    if delivery.attempt >= succeed_at {
        return Ok(Outcome::ok());
    }
    Ok(Outcome::retry(format!(
        "attempt {} of {succeed_at}",
        delivery.attempt
    )))
}
