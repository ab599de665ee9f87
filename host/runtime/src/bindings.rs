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

/// What a borrowed `wit::Delivery` points into besides the delivery itself: the text of its
/// id (in a stack buffer rather than a `String`) and its headers as pairs of `&str`.
pub(crate) struct WitParts<'a> {
    id: [u8; uuid::fmt::Hyphenated::LENGTH],
    headers: Vec<(&'a str, &'a str)>,
}

impl<'a> WitParts<'a> {
    pub fn of(delivery: &'a Delivery) -> WitParts<'a> {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        delivery.message.id.hyphenated().encode_lower(&mut id);
        let headers = delivery
            .message
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        WitParts { id, headers }
    }
}

/// Borrows `delivery` as the `handle` and `deliver` exports take it: its strings and payload
/// are copied once, straight into the guest's memory. `parts` must be its [`WitParts::of`].
pub(crate) fn delivery_to_wit<'a>(
    delivery: &'a Delivery,
    parts: &'a WitParts<'a>,
) -> wit::Delivery<'a> {
    let message = &delivery.message;
    wit::Delivery {
        message: wit::Message {
            id: std::str::from_utf8(&parts.id).expect("a hyphenated UUID is ASCII"),
            name: &message.name,
            topic: topic_of(&message.name),
            payload: &message.payload,
            published_at: message.published_at_ms,
            deliver_at: message.deliver_at_ms,
            headers: &parts.headers,
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
