//! Test guest: a handler whose `handle` never returns, to show that the host's deadline
//! stops it — by looping in WebAssembly (`spin.loop`), or by sleeping in a host function
//! (`spin.sleep`: a blocking wait on a `wasi:clocks` pollable, where no epoch tick reaches it).

use courier_sdk::{Delivery, Outcome, RawPayload};

#[courier_sdk::handler(subscribe(queue = "spin", topic = "spin", events = ["loop", "sleep"]))]
fn handle(delivery: Delivery<RawPayload>) -> Outcome {
    if delivery.message.event() == "sleep" {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        return Outcome::ok();
    }
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}
