//! The `welcome-email` example handler: greets every new user and records that it did with a
//! follow-up `email.sent` event. Its contract is in README.md.

use courier_sdk::serde_json::{Value, json};
use courier_sdk::{Delivery, Outcome};

/// The sender used when the operator sets no `from`.
const DEFAULT_FROM: &str = "no-reply@example.com";

#[courier_sdk::handler(
    name = "welcome-email",
    subscribe(queue = "emails", topic = "user", events = ["created"]),
)]
fn handle(delivery: Delivery<Value>) -> Result<Outcome, Outcome> {
    let Some(email) = delivery
        .message
        .payload
        .get("email")
        .and_then(Value::as_str)
    else {
        return Ok(Outcome::fatal("payload has no `email` field"));
    };
    let from = courier_sdk::config_or("from", DEFAULT_FROM);
    courier_sdk::log::info!("sending welcome email to {email} from {from}");
    courier_sdk::publish(
        "email.sent",
        &json!({
            "to": email,
            "from": from,
            "user_message_id": delivery.message.id,
        }),
    )?;
    Ok(Outcome::ok())
}
