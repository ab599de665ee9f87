//! Test guest: a handler that allocates (and touches) memory until the host's memory limit
//! stops it.

use courier_sdk::{Delivery, Outcome, RawPayload};

/// Grows the heap a MiB at a time.
const CHUNK: usize = 1024 * 1024;

#[courier_sdk::handler(subscribe(queue = "bomb", topic = "bomb", events = ["allocate"]))]
fn handle(_delivery: Delivery<RawPayload>) -> Outcome {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![0xA5; CHUNK]));
        std::hint::black_box(&hoard);
    }
}
