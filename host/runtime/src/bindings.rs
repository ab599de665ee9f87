//! The host's bindings to the `courier:plugin` WIT package: the one place `bindgen!` runs, and
//! the conversions between the generated types and Courier's own (`crate::model`). The `host`
//! interface is implemented next door, in `host_imports`.

use std::time::Duration;

use crate::model::{Delivery, Outcome, PluginInfo, Subscription, topic_of};

/// The `handler-plugin` world. Owns the generated `types` and `host` interfaces.
pub(crate) mod handler_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "courier:plugin/handler-plugin",
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
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
        ownership: Borrowing { duplicate_if_necessary: true },
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

/// The text form of a message id, written into a stack buffer rather than a `String`.
pub(crate) type IdText = [u8; uuid::fmt::Hyphenated::LENGTH];
/// An empty [`IdText`] to write an id into.
pub(crate) const NO_ID: IdText = [0; uuid::fmt::Hyphenated::LENGTH];

/// The headers of a message as `wit::Delivery` borrows them.
pub(crate) fn headers_to_wit(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// Borrows `delivery` as the `handle` and `deliver` exports take it: its strings and payload
/// are copied once, straight into the guest's memory. `id` holds the id's text and `headers`
/// the [`headers_to_wit`] of its message while the delivery is lowered.
pub(crate) fn delivery_to_wit<'a>(
    delivery: &'a Delivery,
    id: &'a mut IdText,
    headers: &'a [(&'a str, &'a str)],
) -> wit::Delivery<'a> {
    let message = &delivery.message;
    wit::Delivery {
        message: wit::Message {
            id: message.id.hyphenated().encode_lower(id),
            name: &message.name,
            topic: topic_of(&message.name),
            payload: &message.payload,
            published_at: message.published_at_ms,
            deliver_at: message.deliver_at_ms,
            headers,
        },
        queue: &delivery.queue,
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
