//! `courier dead-letters list [--json] | redrive ID | purge [--queue Q]`.

use std::process::ExitCode;

use anyhow::bail;

use crate::config::Settings;
use crate::database::Connection;

/// The `dead-letters` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadLettersCommand {
    /// Lists dead letters, oldest first.
    List {
        /// Only this queue's.
        #[arg(long)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Puts a dead letter back into its queue, attempts reset.
    Redrive {
        /// The dead letter's id, as `list` shows it.
        id: String,
    },
    /// Deletes dead letters for good.
    Purge {
        /// Only this queue's.
        #[arg(long)]
        queue: Option<String>,
    },
}

/// Runs one `dead-letters` subcommand.
pub async fn run(settings: &Settings, command: &DeadLettersCommand) -> anyhow::Result<ExitCode> {
    let connection = Connection::open_for_command(settings).await?;
    let result = async {
        let outbox = crate::outbox_bridge::open(&connection, settings).await?;
        execute(&outbox, command).await
    }
    .await;
    connection.close().await;
    result
}

async fn execute(
    outbox: &courier_outbox::Outbox,
    command: &DeadLettersCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        DeadLettersCommand::List { queue, limit, json } => {
            let dead =
                crate::outbox_bridge::dead_letters(outbox, queue.as_deref(), None, *limit).await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "dead_letters": dead }))?
                );
            } else if dead.is_empty() {
                println!("no dead letters");
            } else {
                for letter in dead {
                    println!("{}", letter.summary_line());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadLettersCommand::Redrive { id } => {
            let Ok(parsed) = id.parse() else {
                bail!("ID: `{id}` is not a dead letter id (see `courier dead-letters list`)");
            };
            if crate::outbox_bridge::redrive(outbox, parsed).await? {
                println!("redriven {id}");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("no dead letter with id {id}");
            }
        }
        DeadLettersCommand::Purge { queue } => {
            let purged = crate::outbox_bridge::purge(outbox, queue.as_deref()).await?;
            println!("purged {purged} dead letters");
            Ok(ExitCode::SUCCESS)
        }
    }
}
