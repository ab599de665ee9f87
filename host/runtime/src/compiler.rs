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
//! (whole, via rename). Its exit status says what happened:
//! - 0: the entry is written;
//! - 65 (`EX_DATAERR`, [`CompileFailure::Invalid`]): the component does not compile, and
//!   stderr says why; the load fails with that message;
//! - killed by a signal (out of memory?): it is run once more, with no other such retry
//!   beside it, and if it is killed again the load fails, saying so;
//! - anything else (it could not start, another engine, a cache directory it cannot write:
//!   3 from [`CompileFailure::Unavailable`]): the host compiles in-process instead, with a
//!   warning.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use wasmtime::Engine;

use crate::cache::{engine_key, temporary_prefix, write_atomically};
use crate::engine::{RuntimeConfig, build_engine};

/// The program that compiles components for a [`crate::Runtime`]'s cache in a process of its
/// own (see the module documentation for its arguments and exit status). It is trusted as
/// the host's own executable is: the host maps and runs the code it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the compiler's own (for `courier`: `compile-plugin`).
    pub args: Vec<OsString>,
}

/// The exit status of a compiler process for a component that does not compile
/// (`EX_DATAERR`: a status no shell or argument parser uses for its own failures).
const EXIT_INVALID: u8 = 65;
/// The exit status of a compiler process that could not do the job it was given.
const EXIT_UNAVAILABLE: u8 = 3;

/// What a compiler process did.
#[derive(Debug)]
pub(crate) enum ChildCompile {
    /// It wrote the cache entry.
    Written,
    /// The component does not compile: the compiler's message.
    Invalid(String),
    /// It was killed before it finished (out of memory?): what is known.
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
        // A process group of its own: Ctrl-C in the host's terminal stops the host, which
        // then stops loading, rather than failing the compiles under way.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                return ChildCompile::Unavailable(format!(
                    "cannot start {}: {error}",
                    self.program.display()
                ));
            }
        };
        let pid = child.id();
        let stdin = child.stdin.take();
        // The component goes in from a thread of its own while this one reads stderr, so that
        // neither side waits on a full pipe. A write that fails (the process exited early)
        // is told by the exit status.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Some(mut stdin) = stdin {
                    let _ = stdin.write_all(bytes);
                }
            });
            child.wait_with_output()
        });
        let output = match output {
            Ok(output) => output,
            Err(error) => return ChildCompile::Unavailable(format!("waiting for it: {error}")),
        };
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        match output.status.code() {
            Some(0) => ChildCompile::Written,
            Some(code) if code == i32::from(EXIT_INVALID) => {
                ChildCompile::Invalid(if stderr.is_empty() {
                    format!("the compiler process exited with status {code} and no message")
                } else {
                    stderr
                })
            }
            Some(code) => ChildCompile::Unavailable(format!("exit status {code}{}", said(&stderr))),
            None => {
                remove_temporary_files(out, pid);
                ChildCompile::Died(format!(
                    "the compiler process {}{}",
                    died(&output.status),
                    said(&stderr)
                ))
            }
        }
    }
}

/// `: MESSAGE`, or nothing for an empty message.
fn said(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

#[cfg(unix)]
fn died(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    /// SIGKILL, the same number on every Unix: what the kernel's out-of-memory killer sends.
    const SIGKILL: i32 = 9;
    match status.signal() {
        Some(SIGKILL) => format!("was killed by signal {SIGKILL} (SIGKILL: out of memory?)"),
        Some(signal) => format!("was killed by signal {signal}"),
        None => format!("ended without an exit status ({status})"),
    }
}

#[cfg(not(unix))]
fn died(status: &ExitStatus) -> String {
    format!("ended without an exit status ({status})")
}

/// Removes what a killed compiler process `pid` left of its write to `out`.
fn remove_temporary_files(out: &Path, pid: u32) {
    let (dir, prefix) = temporary_prefix(out, pid);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Why a compiler process did not write its cache entry.
#[derive(Debug, thiserror::Error)]
pub enum CompileFailure {
    /// The component does not compile.
    #[error("{0}")]
    Invalid(String),
    /// The process cannot do the job it was given (then the host compiles in-process).
    #[error("{0}")]
    Unavailable(String),
}

impl CompileFailure {
    /// The compiler process's exit status for this failure, as the host reads it.
    pub fn exit_code(&self) -> u8 {
        match self {
            CompileFailure::Invalid(_) => EXIT_INVALID,
            CompileFailure::Unavailable(_) => EXIT_UNAVAILABLE,
        }
    }
}

/// The compiler process's side: builds the engine `config` describes, checks that its
/// compatibility key is `expected_key` and that `out`'s directory takes files, compiles
/// `bytes` and writes the cache entry to `out`.
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
    // Before the work, not after it: a cache directory that takes no files makes the host
    // compile in-process, and it should not have to wait for a compile that is thrown away.
    let (dir, prefix) = temporary_prefix(out, std::process::id());
    let probe = dir.join(format!("{prefix}probe"));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::File::create_new(&probe))
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|error| {
            CompileFailure::Unavailable(format!("cannot write in {}: {error}", dir.display()))
        })?;
    let compiled = engine
        .precompile_component(bytes)
        .map_err(|error| CompileFailure::Invalid(format!("{error:#}")))?;
    write_atomically(out, &compiled).map_err(|error| {
        CompileFailure::Unavailable(format!("cannot write {}: {error}", out.display()))
    })
}
