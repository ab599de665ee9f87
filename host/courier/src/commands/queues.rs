//! `courier queues [--json]`: per queue, how many deliveries are pending, in flight, dead and
//! delivered.

use std::process::ExitCode;

use crate::config::Settings;
use crate::database::Connection;

/// Arguments of `courier queues`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct QueuesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints the queue statistics.
pub async fn run(settings: &Settings, args: &QueuesArgs) -> anyhow::Result<ExitCode> {
    let connection = Connection::open_for_command(settings).await?;
    let result = async {
        let outbox = crate::outbox_bridge::open(&connection, settings).await?;
        crate::outbox_bridge::queue_stats(&outbox).await
    }
    .await;
    connection.close().await;
    let queues = result?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "queues": queues }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if queues.is_empty() {
        println!("no queues yet: a queue is declared when a plugin subscribing to it is loaded");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "QUEUE", "PENDING", "DUE", "IN FLIGHT", "DEAD", "DELIVERED"
    );
    for queue in queues {
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>12}",
            queue.queue, queue.pending, queue.due, queue.in_flight, queue.dead, queue.delivered
        );
    }
    Ok(ExitCode::SUCCESS)
}
