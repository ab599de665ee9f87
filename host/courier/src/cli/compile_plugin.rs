//! `courier compile-plugin` (hidden): the compiler process the host runs so that compiling a
//! plugin leaves none of the compiler's memory behind in the host. It reads the component
//! from stdin and writes the cache entry; see `courier_runtime::CompilerCommand` for the
//! protocol.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use courier_runtime::{CompileFailure, CompilerCommand, RuntimeConfig};

use super::streams::Streams;

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

/// This executable's `compile-plugin`, for the runtime's `compiler` setting: only for the
/// `courier` executable itself (any other program would be run with arguments it does not
/// know). On Linux through `/proc/self/exe`, the running executable even after an upgrade
/// replaced (or removed) the file it was started from. None, with a warning (plugins then
/// compile in the host), where the executable's path is unknown.
pub fn this_executable() -> Option<CompilerCommand> {
    let program = if cfg!(target_os = "linux") {
        Ok(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    };
    match program {
        Ok(program) => Some(CompilerCommand {
            program,
            args: vec!["compile-plugin".into()],
        }),
        Err(error) => {
            tracing::warn!(
                "cannot find this executable's path, compiling plugins in-process: {error}"
            );
            None
        }
    }
}

/// Compiles the component on stdin.
pub fn run(args: CompileArgs, streams: &mut Streams<'_>) -> ExitCode {
    let mut bytes = Vec::new();
    let compiled = match std::io::stdin().read_to_end(&mut bytes) {
        Ok(_) => {
            let config = RuntimeConfig {
                max_instances: args.max_instances,
                max_memory_bytes: args.max_memory_bytes,
                ..RuntimeConfig::default()
            };
            courier_runtime::compile_to_file(&config, &args.engine_key, &bytes, &args.out)
        }
        Err(error) => Err(CompileFailure::Unavailable(format!(
            "cannot read the component from stdin: {error}"
        ))),
    };
    match compiled {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(streams.stderr, "{failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
