//! `courier run`: the host, until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use crate::cli::compile_plugin;
use crate::config::{Settings, redact_url};
use crate::host::{Host, HostOptions, shutdown_signal};

/// Runs the host until a shutdown signal, then stops it gracefully.
pub async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    let mut options = HostOptions::from_settings(&settings);
    options.compiler = compile_plugin::this_executable();
    let host = Host::start_with(settings, options).await?;
    println!("Courier is running");
    println!("  API:      http://{}", host.api_address());
    println!("  database: {}", redact_url(host.database_url()));
    println!("  plugins:  {}", host.settings().plugins_dir.display());
    println!(
        "Publish an event with: courier publish user.created '{{\"email\": \"ada@example.com\"}}'"
    );
    shutdown_signal().await;
    eprintln!("stopping: finishing the deliveries in progress (signal again to stop at once)");
    tokio::spawn(async {
        shutdown_signal().await;
        eprintln!("stopped at once; unfinished deliveries run again when their leases expire");
        std::process::exit(130);
    });
    host.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
