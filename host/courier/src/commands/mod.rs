//! The subcommands of `courier` that run the host or talk to its database and API: `run`,
//! `migrate`, `publish`, `queues`, `plugins`, `dead-letters`.

pub mod dead_letters;
pub mod migrate;
pub mod plugins;
pub mod publish;
pub mod queues;
pub mod run;
