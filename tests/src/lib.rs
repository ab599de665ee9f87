//! Placeholder.

pub mod components;
pub mod postgres;
