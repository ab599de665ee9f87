//! The `courier` command line: raw arguments are parsed here, turned into validated
//! [`Settings`] once, and handed to the subcommand.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod compile_plugin;
pub mod plugins_check;
pub mod streams;
pub mod test;

pub use streams::{EXIT_FAILED, EXIT_USAGE, Streams};

use crate::commands::dead_letters::DeadLettersCommand;
use crate::commands::plugins::PluginsArgs;
use crate::commands::publish::PublishArgs;
use crate::commands::queues::QueuesArgs;
use crate::config::{ConfigArgs, Settings};

/// Courier delivers the events of a Postgres outbox to WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "courier", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the host: embedded Postgres (unless a database URL is given), the plugins in the
    /// plugins directory (hot-reloaded), the dispatcher and the HTTP API. Stop with Ctrl-C.
    Run,
    /// Applies the outbox's migrations to the database and exits.
    Migrate,
    /// Publishes one message.
    Publish(PublishArgs),
    /// Shows every queue's pending, in-flight, dead and delivered counts.
    Queues(QueuesArgs),
    /// Shows the running host's plugins and their load errors; `plugins check FILE` checks a
    /// component offline.
    Plugins(PluginsGroup),
    /// Runs a plugin offline on one message (or a batch) and prints what it did as JSON.
    Test(test::TestArgs),
    /// Lists, redrives or purges dead letters.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Measures publish and delivery through a real plugin on this machine (a throw-away
    /// embedded Postgres unless a database URL is given) and prints throughput, latency, CPU
    /// and memory.
    Bench(crate::bench::BenchArgs),
    /// Compiles a plugin for the host's cache in a process of its own (run by the host).
    #[command(hide = true)]
    CompilePlugin(compile_plugin::CompileArgs),
}

/// `courier plugins [--json]` (the running host's plugins) or `courier plugins check FILE`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PluginsGroup {
    /// An offline subcommand; none lists the running host's plugins.
    #[command(subcommand)]
    pub command: Option<PluginsCommand>,
    #[command(flatten)]
    pub list: PluginsArgs,
}

/// The subcommands of `courier plugins`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Checks that a component is a valid Courier plugin and prints what it declares.
    Check(plugins_check::CheckArgs),
}

/// Parses the process's arguments and runs the subcommand.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

/// Parses `args` (the program name first) and runs the command; the offline commands (`test`,
/// `plugins check`) and argument errors write to the given streams, so they can be tested
/// in-process.
pub fn run_with<I, T>(args: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with status 0; usage errors to stderr with 2.
            let _ = if error.use_stderr() {
                write!(stderr, "{}", error.render())
            } else {
                write!(stdout, "{}", error.render())
            };
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    let mut streams = Streams { stdout, stderr };
    match run_offline(cli.command, &mut streams) {
        Ok(code) => code,
        Err(command) => run(Cli {
            config: cli.config,
            command: *command,
        }),
    }
}

/// Runs the subcommands that need no configuration, database or host (`test`, `plugins
/// check`); gives any other command back.
pub fn run_offline(command: Command, streams: &mut Streams<'_>) -> Result<ExitCode, Box<Command>> {
    match command {
        Command::Test(args) => Ok(test::run(args, streams)),
        Command::CompilePlugin(args) => Ok(compile_plugin::run(args, streams)),
        Command::Plugins(PluginsGroup {
            command: Some(PluginsCommand::Check(args)),
            ..
        }) => Ok(plugins_check::run(args, streams)),
        command => Err(Box::new(command)),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let command = match run_offline(
        cli.command,
        &mut Streams {
            stdout: &mut std::io::stdout(),
            stderr: &mut std::io::stderr(),
        },
    ) {
        Ok(code) => return code,
        Err(command) => *command,
    };
    let cli = Cli {
        config: cli.config,
        command,
    };
    let settings = match Settings::load(&cli.config) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    // The benchmark's output is its report: only warnings unless a filter is asked for.
    let log_filter = match cli.command {
        Command::Bench(_) if cli.config.log.is_none() => "warn",
        _ => settings.log_filter.as_str(),
    };
    crate::logging::init(settings.log_format, log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(execute(cli.command, settings)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn execute(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    use crate::commands;
    match command {
        Command::Run => commands::run::run(settings).await,
        Command::Migrate => commands::migrate::run(&settings).await,
        Command::Publish(args) => commands::publish::run(&settings, &args).await,
        Command::Queues(args) => commands::queues::run(&settings, &args).await,
        Command::Plugins(PluginsGroup {
            command: None,
            list,
        }) => commands::plugins::run(&settings, &list).await,
        Command::Plugins(PluginsGroup {
            command: Some(_), ..
        })
        | Command::Test(_)
        | Command::CompilePlugin(_) => {
            unreachable!("offline commands run before the settings load")
        }
        Command::DeadLetters(command) => commands::dead_letters::run(&settings, &command).await,
        Command::Bench(args) => crate::bench::run(&settings, &args).await,
    }
}
