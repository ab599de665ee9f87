//! Courier integration tests.

mod bench;
mod cli_test;
mod harness;
mod host;
mod languages;
mod outbox;
mod runtime;
mod sdk;
mod webhook;
