//! Test guest: a handler that panics (a trap, for the host) when the payload is
//! `{"panic": true}` and answers ok otherwise, so a test can trap one instance and then see
//! the next call succeed on a healthy one.

use courier_sdk::{Delivery, Outcome};
use serde::Deserialize;

#[derive(Deserialize)]
struct Order {
    #[serde(default)]
    panic: bool,
}

#[courier_sdk::handler(subscribe(queue = "trap", topic = "trap", events = ["event"]))]
fn handle(delivery: Delivery<Order>) -> Outcome {
    if delivery.message.payload.panic {
        panic!("the payload asked for a panic");
    }
    Outcome::ok()
}
