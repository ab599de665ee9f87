//! Placeholder.

pub mod components;
