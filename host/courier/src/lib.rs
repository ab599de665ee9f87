//! The Courier host: configuration, plugins directory, dispatcher, HTTP API and CLI, wiring
//! the outbox (`courier-outbox`) to the plugin runtime (`courier-runtime`).
//!
//! The path of a message: HTTP ([`api`]) or SQL publish → outbox → [`dispatcher`] (claims) →
//! the plugin's active version in the [`registry`] → outcome → [`outbox_bridge`] → outbox.

pub mod api;
pub mod api_client;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod database;
pub mod dispatcher;
pub mod host;
pub mod logging;
pub mod message_input;
pub mod metrics;
pub mod outbox_bridge;
pub mod plugins_dir;
pub mod registry;
pub mod sidecar;
pub mod units;
pub mod watcher;
