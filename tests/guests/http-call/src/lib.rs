//! Test guest: a handler that makes one outbound HTTP request through `wasi:http`, to the
//! URL in config `url` (method in config `method`, `GET` by default; a `POST` sends the
//! payload). It answers ok with one log line `METHOD URL -> STATUS BODY` whatever the
//! status, and retry with the error when no response came (for example when the host is
//! not granted).

use std::time::Duration;

use courier_sdk::http::Request;
use courier_sdk::{Delivery, Outcome, RawPayload};

#[courier_sdk::handler(subscribe(queue = "http", topic = "http", events = ["call"]))]
fn handle(delivery: Delivery<RawPayload>) -> Outcome {
    let Some(url) = courier_sdk::config("url") else {
        return Outcome::fatal("config `url` is not set");
    };
    let method = courier_sdk::config_or("method", "GET").to_ascii_uppercase();
    let mut request = Request::new(method.as_str(), url.as_str()).timeout(Duration::from_secs(5));
    if method == "POST" {
        request = request
            .header("content-type", "application/json")
            .body(delivery.message.payload.0);
    }
    match request.send() {
        Ok(response) => {
            courier_sdk::log::info!("{method} {url} -> {} {}", response.status, response.text());
            Outcome::ok()
        }
        Err(error) => Outcome::retry(error),
    }
}
