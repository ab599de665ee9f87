//! Test guest: a destination that logs the size of each batch and answers each delivery ok,
//! or fatal when its payload is `{"fail": true}`.

use courier_sdk::serde_json::Value;
use courier_sdk::{Delivery, Outcome};

#[courier_sdk::destination(subscribe(queue = "echo", topic = "echo", events = ["event"]))]
fn deliver(batch: Vec<Delivery<Value>>) -> Vec<Outcome> {
    courier_sdk::log::info!("batch of {} deliveries", batch.len());
    batch
        .iter()
        .map(|delivery| {
            if delivery.message.payload.get("fail") == Some(&Value::Bool(true)) {
                Outcome::fatal(format!("message {} asked to fail", delivery.message.id))
            } else {
                Outcome::ok()
            }
        })
        .collect()
}
