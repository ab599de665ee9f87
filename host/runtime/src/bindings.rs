//! The host's bindings to the `courier:plugin` WIT package: the one place `bindgen!` runs, and
//! the conversions between the generated types and Courier's own (`crate::model`). The `host`
//! interface is implemented next door, in `host_imports`.

use std::time::Duration;

use uuid::Uuid;

use crate::model::{Delivery, Outcome, PluginInfo, Subscription, topic_of};

/// The `handler-plugin` world. Owns the generated `types` and `host` interfaces.
pub(crate) mod handler_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "courier:plugin/handler-plugin",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// The `destination-plugin` world, sharing the handler world's `types` and `host`.
pub(crate) mod destination_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "courier:plugin/destination-plugin",
        exports: { default: async },
        with: {
            "courier:plugin/types": super::handler_world::courier::plugin::types,
            "courier:plugin/host": super::handler_world::courier::plugin::host,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

pub(crate) use destination_world::{DestinationPlugin, DestinationPluginPre};
pub(crate) use handler_world::courier::plugin::host;
pub(crate) use handler_world::courier::plugin::types as wit;
pub(crate) use handler_world::{HandlerPlugin, HandlerPluginPre};

/// The export names a plugin may implement, in the form they appear in a component.
pub(crate) const HANDLER_EXPORT: &str = "courier:plugin/handler@0.1.0";
pub(crate) const DESTINATION_EXPORT: &str = "courier:plugin/destination@0.1.0";
/// The contract version this host implements.
pub(crate) const CONTRACT_VERSION: &str = "0.1.0";

pub(crate) fn delivery_to_wit(delivery: &Delivery) -> wit::Delivery {
    let message = &delivery.message;
    wit::Delivery {
        message: wit::Message {
            // Straight into the buffer, without the formatting machinery of `to_string`.
            id: String::from(
                &*message
                    .id
                    .hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer()),
            ),
            name: message.name.clone(),
            topic: topic_of(&message.name).to_string(),
            payload: message.payload.clone(),
            published_at: message.published_at_ms,
            deliver_at: message.deliver_at_ms,
            headers: message.headers.clone(),
        },
        queue: delivery.queue.clone(),
        attempt: delivery.attempt,
    }
}

pub(crate) fn outcome_from_wit(outcome: wit::Outcome) -> Outcome {
    match outcome {
        wit::Outcome::Ok => Outcome::Ok,
        wit::Outcome::Retry(retry) => Outcome::Retry {
            reason: retry.reason,
            delay: retry.delay_ms.map(Duration::from_millis),
        },
        wit::Outcome::Fatal(reason) => Outcome::Fatal { reason },
    }
}

pub(crate) fn info_from_wit(info: wit::PluginInfo) -> PluginInfo {
    PluginInfo {
        name: info.name,
        version: info.version,
        subscriptions: info
            .subscriptions
            .into_iter()
            .map(|s| Subscription {
                queue: s.queue,
                topic: s.topic,
                events: s.events,
            })
            .collect(),
    }
}
