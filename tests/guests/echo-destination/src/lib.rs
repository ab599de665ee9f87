//! Test guest: a destination that logs the size of each batch and answers each delivery ok,
//! or fatal when its payload is `{"fail": true}`, or, when its payload is `{"describe": true}`,
//! fatal with every field of the delivery as it arrived.

use courier_sdk::serde_json::Value;
use courier_sdk::{Delivery, Outcome};

#[courier_sdk::destination(subscribe(queue = "echo", topic = "echo", events = ["event"]))]
fn deliver(batch: Vec<Delivery<Value>>) -> Vec<Outcome> {
    courier_sdk::log::info!("batch of {} deliveries", batch.len());
    batch
        .iter()
        .map(|delivery| {
            let message = &delivery.message;
            if message.payload.get("fail") == Some(&Value::Bool(true)) {
                Outcome::fatal(format!("message {} asked to fail", message.id))
            } else if message.payload.get("describe") == Some(&Value::Bool(true)) {
                Outcome::fatal(format!(
                    "id={} name={} topic={} payload={} published={} due={} headers={:?} \
                     queue={} attempt={}",
                    message.id,
                    message.name,
                    message.topic,
                    message.payload,
                    message.published_at.as_millis(),
                    message.deliver_at.as_millis(),
                    message.headers,
                    delivery.queue,
                    delivery.attempt,
                ))
            } else {
                Outcome::ok()
            }
        })
        .collect()
}
