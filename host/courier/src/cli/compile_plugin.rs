//! `courier compile-plugin` (hidden): the compiler process the host runs so that compiling a
//! plugin leaves none of the compiler's memory behind in the host. It reads the component
//! from stdin and writes the cache entry; see `courier_runtime::CompilerCommand` for the
//! protocol.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use courier_runtime::{CompileFailure, CompilerCommand, EXIT_INVALID, RuntimeConfig};

use super::streams::Streams;

/// The exit status of a compiler process that could not do its job (the host then compiles
/// in-process).
const EXIT_UNAVAILABLE: u8 = 3;

/// Arguments of `courier compile-plugin`, as the runtime passes them.
#[derive(Debug, Clone, clap::Args)]
pub struct CompileArgs {
    /// Where to write the compiled component (whole, via rename).
    #[arg(long)]
    pub out: PathBuf,
    /// The host engine's compatibility key: nothing is compiled for another engine.
    #[arg(long)]
    pub engine_key: String,
    /// The host runtime's `max_instances`.
    #[arg(long)]
    pub max_instances: u32,
    /// The host runtime's `max_memory_bytes`.
    #[arg(long)]
    pub max_memory_bytes: u64,
}

/// This executable's `compile-plugin` subcommand, for the runtime's `compiler` setting. On
/// Linux through `/proc/self/exe`, which is the running executable even after an upgrade
/// replaced (or removed) the file it was started from.
pub fn this_executable() -> std::io::Result<CompilerCommand> {
    let program = if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    Ok(CompilerCommand {
        program,
        args: vec!["compile-plugin".into()],
    })
}

/// Compiles the component on stdin.
pub fn run(args: CompileArgs, streams: &mut Streams<'_>) -> ExitCode {
    let mut bytes = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut bytes) {
        let _ = writeln!(
            streams.stderr,
            "cannot read the component from stdin: {error}"
        );
        return ExitCode::from(EXIT_UNAVAILABLE);
    }
    let config = RuntimeConfig {
        max_instances: args.max_instances,
        max_memory_bytes: args.max_memory_bytes,
        ..RuntimeConfig::default()
    };
    match courier_runtime::compile_to_file(&config, &args.engine_key, &bytes, &args.out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(streams.stderr, "{failure}");
            ExitCode::from(match failure {
                CompileFailure::Invalid(_) => EXIT_INVALID,
                CompileFailure::Unavailable(_) => EXIT_UNAVAILABLE,
            })
        }
    }
}
