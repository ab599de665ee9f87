//! `courier migrate`: applies the outbox's migrations and exits.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::database::Connection;

/// Applies every pending migration to the configured database.
pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let connection = Connection::open_for_command(settings).await?;
    let result = crate::outbox_bridge::open(&connection, settings)
        .await
        .context("applying the migrations");
    connection.close().await;
    result?;
    println!("the database is up to date (schema `{}`)", settings.schema);
    Ok(ExitCode::SUCCESS)
}
