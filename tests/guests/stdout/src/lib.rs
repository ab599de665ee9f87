//! Test guest: a handler that prints one line to stdout and one to stderr, to show that
//! the host turns them into log lines.

use courier_sdk::{Delivery, Outcome, RawPayload};

#[courier_sdk::handler(subscribe(queue = "stdout", topic = "stdout", events = ["print"]))]
fn handle(delivery: Delivery<RawPayload>) -> Outcome {
    println!("stdout line for {}", delivery.message.id);
    eprintln!("stderr line for {}", delivery.message.id);
    Outcome::ok()
}
