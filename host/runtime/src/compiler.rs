//! Compiling a component in a process of its own. Compiling a JavaScript or Python plugin
//! allocates 300–400 MB across the compiler's threads; in the host, the allocator keeps a
//! good part of it after the compile (fragmented, it cannot all be returned), and several
//! plugins compiling side by side on a cold start add up to most of a gigabyte. A compiler
//! process takes all of that with it when it exits: the host only maps the cache entry the
//! process wrote, as it would on a warm start.
//!
//! The host runs [`CompilerCommand`] (for `courier`, its own executable's hidden
//! `compile-plugin` subcommand) with the component on stdin and these arguments:
//!
//! ```text
//! --out PATH --engine-key KEY --max-instances N --max-memory-bytes BYTES
//! ```
//!
//! The process builds the engine those settings describe, refuses to go on unless its
//! compatibility key is `KEY` (the host's), compiles and writes the cache entry to `PATH`
//! (whole, via rename). Its exit status says what happened: [`EXIT_INVALID`] with the
//! compiler's message on stderr when the component does not compile, any other failure when
//! it could not do the job, in which case the host compiles in-process instead.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wasmtime::Engine;

use crate::cache::{engine_key, write_atomically};
use crate::engine::{RuntimeConfig, build_engine};

/// The program that compiles components for a [`crate::Runtime`]'s cache in a process of its
/// own (see the module documentation for its arguments and exit status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the compiler's own (for `courier`: `compile-plugin`).
    pub args: Vec<OsString>,
}

/// The exit status of a compiler process for a component that does not compile.
pub const EXIT_INVALID: u8 = 1;

/// What a compiler process did.
#[derive(Debug)]
pub(crate) enum ChildCompile {
    /// It wrote the cache entry.
    Written,
    /// The component does not compile: the compiler's message.
    Invalid(String),
    /// It died or was killed before it finished (out of memory?): what is known.
    Died(String),
    /// It could not do the job (not started, another engine, a write error): compile in
    /// this process instead.
    Unavailable(String),
}

impl CompilerCommand {
    /// Runs the compiler on `bytes` for an engine built from `config`, writing the cache entry
    /// to `out`.
    pub(crate) fn compile(
        &self,
        config: &RuntimeConfig,
        engine_key: &str,
        bytes: &[u8],
        out: &Path,
    ) -> ChildCompile {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .arg("--out")
            .arg(out)
            .args(["--engine-key", engine_key])
            .arg("--max-instances")
            .arg(config.max_instances.to_string())
            .arg("--max-memory-bytes")
            .arg(config.max_memory_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                return ChildCompile::Unavailable(format!(
                    "cannot start {}: {error}",
                    self.program.display()
                ));
            }
        };
        // The compiler reads all of stdin before it writes anything. A write that fails
        // (the process exited early) is told by its exit status below.
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(bytes);
        }
        let output = match child.wait_with_output() {
            Ok(output) => output,
            Err(error) => return ChildCompile::Unavailable(format!("waiting for it: {error}")),
        };
        let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        match output.status.code() {
            Some(0) => ChildCompile::Written,
            Some(code) if code == i32::from(EXIT_INVALID) => ChildCompile::Invalid(message),
            Some(code) => ChildCompile::Unavailable(format!("exit status {code}: {message}")),
            None => ChildCompile::Died(died(&output.status, &message)),
        }
    }
}

#[cfg(unix)]
fn died(status: &std::process::ExitStatus, message: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let signal = status.signal().unwrap_or_default();
    let hint = if signal == libc::SIGKILL {
        " (SIGKILL: out of memory?)"
    } else {
        ""
    };
    let stderr = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    format!("the compiler process was killed by signal {signal}{hint}{stderr}")
}

#[cfg(not(unix))]
fn died(status: &std::process::ExitStatus, message: &str) -> String {
    format!("the compiler process ended without an exit code ({status}): {message}")
}

/// Why a compiler process did not write its cache entry.
#[derive(Debug, thiserror::Error)]
pub enum CompileFailure {
    /// The component does not compile (exit status [`EXIT_INVALID`]).
    #[error("{0}")]
    Invalid(String),
    /// The process cannot do the job it was given.
    #[error("{0}")]
    Unavailable(String),
}

/// The compiler process's side: builds the engine `config` describes, checks that its
/// compatibility key is `expected_key`, compiles `bytes` and writes the cache entry to `out`.
pub fn compile_to_file(
    config: &RuntimeConfig,
    expected_key: &str,
    bytes: &[u8],
    out: &Path,
) -> Result<(), CompileFailure> {
    let engine: Engine = build_engine(config)
        .map_err(|error| CompileFailure::Unavailable(format!("building the engine: {error}")))?;
    let key = engine_key(&engine);
    if key != expected_key {
        return Err(CompileFailure::Unavailable(format!(
            "this compiler's engine (key {key}) is not the host's ({expected_key})"
        )));
    }
    let compiled = engine
        .precompile_component(bytes)
        .map_err(|error| CompileFailure::Invalid(format!("{error:#}")))?;
    write_atomically(out, &compiled).map_err(|error| {
        CompileFailure::Unavailable(format!("cannot write {}: {error}", out.display()))
    })
}
