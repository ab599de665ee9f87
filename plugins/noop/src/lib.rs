//! The `noop` example handler: answers ok at once, without reading anything — the smallest
//! possible unit of work, for benchmarks. Its contract is in README.md.

use courier_sdk::{Delivery, Outcome, RawPayload};

#[courier_sdk::handler(
    name = "noop",
    subscribe(queue = "bench", topic = "bench", events = ["noop"]),
)]
fn handle(_delivery: Delivery<RawPayload>) -> Outcome {
    Outcome::ok()
}
