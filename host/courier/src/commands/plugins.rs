//! `courier plugins [--json]`: what the running host reports about its plugins, read from its
//! API (`GET /v1/plugins` at `listen`, with `COURIER_API_TOKEN`), so it shows load errors as
//! the host sees them.

use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::api_client;
use crate::config::Settings;

/// Arguments of `courier plugins` (without a subcommand).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PluginsArgs {
    /// Print the host's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Asks the running host for its plugins and prints them.
pub async fn run(settings: &Settings, args: &PluginsArgs) -> anyhow::Result<ExitCode> {
    let body = get_from_host(settings, "/v1/plugins").await?;
    let value: Value =
        serde_json::from_slice(&body).context("the host answered something other than JSON")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let plugins = value["plugins"].as_array().cloned().unwrap_or_default();
    if plugins.is_empty() {
        println!("no plugins in the host's plugins directory");
    }
    let mut failed = false;
    for plugin in &plugins {
        print!("{}", describe_plugin(plugin));
        failed |= plugin["active"].is_null();
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One plugin as a few human-readable lines.
pub fn describe_plugin(plugin: &Value) -> String {
    let mut text = String::new();
    let name = plugin["name"].as_str().unwrap_or("?");
    let state = plugin["state"].as_str().unwrap_or("?");
    let active = &plugin["active"];
    if active.is_null() {
        text.push_str(&format!("{name}  {state}\n"));
    } else {
        text.push_str(&format!(
            "{name}  {state}  {} {} ({})\n",
            active["plugin_name"].as_str().unwrap_or("?"),
            active["version"].as_str().unwrap_or("?"),
            active["kind"].as_str().unwrap_or("?"),
        ));
        for subscription in active["subscriptions"].as_array().into_iter().flatten() {
            let events: Vec<&str> = subscription["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            text.push_str(&format!(
                "    queue {} <- {}.{{{}}}\n",
                subscription["queue"].as_str().unwrap_or("?"),
                subscription["topic"].as_str().unwrap_or("?"),
                events.join(", ")
            ));
        }
    }
    if let Some(message) = plugin["error"]["message"].as_str() {
        let note = if active.is_null() {
            ""
        } else {
            " (the version above keeps serving)"
        };
        text.push_str(&format!("    load error{note}: {message}\n"));
    }
    text
}

/// GETs `path` from the host's API and returns the body of a successful answer.
pub async fn get_from_host(settings: &Settings, path: &str) -> anyhow::Result<bytes::Bytes> {
    let response = api_client::send(
        settings.listen,
        http::Method::GET,
        path,
        settings.api_token.as_deref(),
        None,
    )
    .await?;
    let address = api_client::reachable_address(settings.listen);
    if response.status == http::StatusCode::UNAUTHORIZED {
        bail!(
            "the host at http://{address} refused the API token: set COURIER_API_TOKEN to the host's token"
        );
    }
    if !response.status.is_success() {
        bail!(
            "the host at http://{address} answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    Ok(response.body)
}
