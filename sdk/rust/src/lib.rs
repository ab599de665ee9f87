//! Write Courier plugins in Rust: one attribute on one function, typed payloads, outcomes,
//! logging, operator configuration, follow-up events and outbound HTTP.
//!
//! A Courier plugin is a WebAssembly component built for `wasm32-wasip2` against the WIT
//! package `courier:plugin@0.1.0`. This crate hides the bindings: a **handler** receives one
//! [`Delivery`] per call and returns an [`Outcome`]; a **destination** receives a batch and
//! returns one outcome per delivery.
//!
//! ```no_run
//! use courier_sdk::{Delivery, Outcome};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct UserCreated {
//!     email: String,
//! }
//!
//! #[courier_sdk::handler(subscribe(queue = "emails", topic = "user", events = ["created"]))]
//! fn handle(delivery: Delivery<UserCreated>) -> Outcome {
//!     let from = courier_sdk::config_or("from", "no-reply@example.com");
//!     courier_sdk::log::info!("welcoming {} from {from}", delivery.message.payload.email);
//!     Outcome::ok()
//! }
//! # fn main() {}
//! ```
//!
//! The crate that holds the function is a `cdylib`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! courier-sdk = "0.1"
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! and `cargo build --release --target wasm32-wasip2` writes the component to
//! `target/wasm32-wasip2/release/NAME.wasm`. Test it offline with
//! `courier test NAME.wasm --message '{"name": "user.created", "payload": {...}}'` or from
//! `cargo test` with the `courier-harness` crate, then drop it into the host's `plugins/`.
//!
//! # What the host provides
//!
//! - [`log`]: leveled log lines, tagged by the host with the plugin, queue, message id and
//!   attempt. `println!` and `eprintln!` also become log lines.
//! - [`config`], [`config_or`], [`config_parse`]: values the operator set in the plugin's
//!   sidecar file.
//! - [`publish`], [`publish_with`]: follow-up events, published by the host only if the
//!   delivery ends with [`Outcome::ok`].
//! - [`http`]: outbound HTTP requests, to the hosts the operator granted and nowhere else.
//!
//! Nothing else: no files, no environment variables, no sockets.

#![warn(missing_docs)]

mod config;
mod delivery;
pub mod http;
pub mod log;
mod outcome;
mod publish;

#[doc(hidden)]
pub mod __private;

pub use config::{ConfigError, config, config_or, config_parse};
pub use delivery::{Delivery, Message, Payload, PayloadError, RawPayload, Timestamp};
pub use outcome::{IntoOutcome, Outcome};
pub use publish::{PublishError, PublishOptions, publish, publish_with};

/// The JSON library the SDK decodes payloads with, re-exported so that `json!` is at hand.
pub use serde_json;

/// Exports a function as a Courier **handler**: one delivery per call, one outcome back.
///
/// ```no_run
/// use courier_sdk::{Delivery, Outcome};
///
/// #[courier_sdk::handler(
///     name = "audit",
///     version = "1.0.0",
///     subscribe(queue = "audit-users", topic = "user", events = ["created", "deleted"]),
///     subscribe(queue = "audit-orders", topic = "order", events = ["placed"]),
/// )]
/// fn handle(delivery: Delivery) -> Outcome {
///     courier_sdk::log::info!("{} in {}", delivery.message.name, delivery.queue);
///     Outcome::ok()
/// }
/// # fn main() {}
/// ```
///
/// # The attribute
///
/// - `name = "..."`: the plugin's name, shown by the host; defaults to the crate name.
/// - `version = "..."`: the plugin's version; defaults to the crate version.
/// - `subscribe(queue = "...", topic = "...", events = ["...", ...])`, once per queue: the
///   plugin receives the messages named `topic.event` for each listed event through the
///   durable queue `queue`. The operator may override subscriptions in the sidecar file.
///
/// # The function
///
/// It takes one [`Delivery<T>`](Delivery) and returns anything that implements
/// [`IntoOutcome`]: an [`Outcome`], `()` (always ok), or a `Result` of those (so `?` works
/// on [`PublishError`], [`ConfigError`] and `Result<_, Outcome>`).
///
/// `T` is the payload type: any [`serde::de::DeserializeOwned`] type (the default is
/// [`serde_json::Value`]), or [`RawPayload`] for the bytes as published. A payload that
/// does not decode as `T` never reaches the function: the delivery ends as
/// [`Outcome::fatal`] with a reason naming the message, the type and the decoding error.
///
/// A panic inside the function aborts the call; the host counts it as a retryable failure
/// and logs the panic message.
pub use courier_sdk_macros::handler;

/// Exports a function as a Courier **destination**: a batch of deliveries per call, one
/// outcome per delivery back, in the same order.
///
/// ```no_run
/// use courier_sdk::{Delivery, Outcome};
///
/// #[courier_sdk::destination(subscribe(queue = "archive", topic = "order", events = ["placed"]))]
/// fn deliver(batch: Vec<Delivery>) -> Vec<Outcome> {
///     courier_sdk::log::info!("archiving {} orders", batch.len());
///     batch.iter().map(|_| Outcome::ok()).collect()
/// }
/// # fn main() {}
/// ```
///
/// The attribute is the same as [`handler`]'s. The function takes a `Vec<Delivery<T>>` and
/// returns a `Vec` of anything that implements [`IntoOutcome`], one per delivery in the
/// order received. Deliveries whose payload does not decode as `T` are answered
/// [`Outcome::fatal`] by the SDK and left out of the batch the function sees; the SDK puts
/// the function's outcomes back in place. If the function returns a list of another length,
/// every delivery of the batch is retried, with a reason saying so.
pub use courier_sdk_macros::destination;

/// The raw bindings of the WIT package `courier:plugin@0.1.0`, as generated by
/// `wit-bindgen`. The rest of this crate wraps them; use them only for what the wrappers
/// do not offer.
#[expect(
    missing_docs,
    reason = "generated from the WIT package, documented by its comments where it has them"
)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package courier:sdk;

            /// What every plugin imports, whichever world it exports.
            world imports {
                import courier:plugin/types@0.1.0;
                import courier:plugin/host@0.1.0;
            }
        ",
        world: "courier:sdk/imports",
        generate_unused_types: true,
        generate_all,
    });

    pub use courier::plugin::{host, types};
}
