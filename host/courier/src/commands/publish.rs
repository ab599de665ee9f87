//! `courier publish NAME PAYLOAD_JSON [--deliver-at RFC3339] [--id UUID]`: publishes one
//! message into the outbox and prints its id.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::database::Connection;
use crate::message_input::{self, MessageInput};

/// Arguments of `courier publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// The message name, `topic.event`, for example `user.created`.
    pub name: String,
    /// The payload, a JSON document, for example '{"email": "ada@example.com"}'.
    pub payload: String,
    /// When the message becomes due (RFC 3339, for example 2030-01-01T09:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub deliver_at: Option<String>,
    /// The message id (a UUID); publishing the same id twice delivers it once per queue.
    #[arg(long, value_name = "UUID")]
    pub id: Option<String>,
    /// A header, `NAME=VALUE`; repeat for several.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
}

impl PublishArgs {
    /// Validates the arguments, naming the one that is wrong.
    pub fn to_message(&self) -> anyhow::Result<MessageInput> {
        message_input::validate_name(&self.name).map_err(|p| anyhow::anyhow!("NAME: {p}"))?;
        let payload = serde_json::from_str(&self.payload)
            .map_err(|error| anyhow::anyhow!("PAYLOAD_JSON is not valid JSON: {error}"))?;
        let deliver_at = match &self.deliver_at {
            Some(text) => Some(
                message_input::parse_deliver_at(text)
                    .map_err(|p| anyhow::anyhow!("--deliver-at: {p}"))?,
            ),
            None => None,
        };
        let id = match &self.id {
            Some(text) => {
                Some(message_input::parse_id(text).map_err(|p| anyhow::anyhow!("--id: {p}"))?)
            }
            None => None,
        };
        let mut headers = BTreeMap::new();
        for header in &self.headers {
            let (name, value) = header
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--header: `{header}` is not NAME=VALUE"))?;
            headers.insert(name.to_owned(), value.to_owned());
        }
        Ok(MessageInput {
            id,
            name: self.name.clone(),
            payload,
            deliver_at,
            headers,
        })
    }
}

/// Publishes the message and prints its id.
pub async fn run(settings: &Settings, args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let message = args.to_message()?;
    let connection = Connection::open_for_command(settings).await?;
    let result = async {
        let outbox = crate::outbox_bridge::open(&connection, settings).await?;
        crate::outbox_bridge::publish(&outbox, vec![message])
            .await
            .context("publishing the message")
    }
    .await;
    connection.close().await;
    let ids = result?;
    for id in ids {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}
