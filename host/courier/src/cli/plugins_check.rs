//! `courier plugins check PLUGIN.wasm`: loads a component exactly as the host would (checking
//! its world, compiling it, calling `describe`) and prints its kind, name, version and
//! subscriptions, or why it is not a valid Courier plugin (exit status 1).

use std::path::PathBuf;
use std::process::ExitCode;

use courier_harness::{Harness, PluginInfo, PluginKind};

use super::streams::{EXIT_FAILED, Streams};

/// Arguments of `courier plugins check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The plugin component.
    #[arg(value_name = "PLUGIN.wasm")]
    pub plugin: PathBuf,
}

/// Checks the plugin and prints what it is.
pub fn run(args: CheckArgs, streams: &mut Streams<'_>) -> ExitCode {
    match Harness::load(&args.plugin) {
        Ok(harness) => {
            let text = describe(harness.kind(), harness.info());
            match write!(streams.stdout, "{text}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    let _ = writeln!(streams.stderr, "error: cannot write: {error}");
                    ExitCode::from(EXIT_FAILED)
                }
            }
        }
        Err(error) => {
            let _ = writeln!(
                streams.stderr,
                "{} is not a valid Courier plugin: {error}",
                args.plugin.display()
            );
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The report: one `field: value` line each, then one line per subscription.
fn describe(kind: PluginKind, info: &PluginInfo) -> String {
    let mut text = format!(
        "kind: {kind}\nname: {}\nversion: {}\nsubscriptions:",
        info.name, info.version
    );
    if info.subscriptions.is_empty() {
        text.push_str(" none\n");
        return text;
    }
    text.push('\n');
    for subscription in &info.subscriptions {
        let events: Vec<String> = subscription
            .events
            .iter()
            .map(|event| format!("{}.{event}", subscription.topic))
            .collect();
        text.push_str(&format!(
            "  queue {}: {}\n",
            subscription.queue,
            events.join(", ")
        ));
    }
    text
}
