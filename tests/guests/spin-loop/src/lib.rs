//! Test guest: a handler whose `handle` never returns, to show that the host's deadline
//! stops it.

use courier_sdk::{Delivery, Outcome, RawPayload};

#[courier_sdk::handler(subscribe(queue = "spin", topic = "spin", events = ["loop"]))]
fn handle(_delivery: Delivery<RawPayload>) -> Outcome {
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}
