//! The runtime's errors: creating a runtime, loading a plugin, and the ways a call can fail.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::PluginKind;

/// The runtime could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine configuration was rejected (for example a pool too large for this machine).
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    /// The compiled-artifact cache directory cannot be created.
    #[error("cannot create the compiled-plugin cache directory {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The epoch ticker thread could not be started.
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}

/// A component could not be loaded as a Courier plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "a core WebAssembly module, not a component: build it with the component target (for Rust, `wasm32-wasip2`) or `wasm-tools component new`"
    )]
    CoreModule,
    /// Malformed WebAssembly.
    #[error("invalid WebAssembly: {0}")]
    Malformed(String),
    /// A component that implements neither Courier world.
    #[error(
        "not a Courier plugin: it exports neither `courier:plugin/handler@0.1.0` nor `courier:plugin/destination@0.1.0`; it exports {}",
        describe_exports(.exports)
    )]
    NotAPlugin {
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// A plugin built against another version of the contract.
    #[error(
        "built against another version of the Courier contract: it exports `{found}`, and this host supports `courier:plugin@{supported}`; rebuild it against courier:plugin@{supported}"
    )]
    ContractVersion {
        /// The export found, for example `courier:plugin/handler@0.2.0`.
        found: String,
        /// The version this host implements.
        supported: &'static str,
    },
    /// A component exporting both worlds' interfaces.
    #[error(
        "exports both `courier:plugin/handler` and `courier:plugin/destination`: a plugin is one or the other"
    )]
    BothKinds,
    /// The engine could not compile the component.
    #[error("cannot compile the component: {0}")]
    Compile(String),
    /// The component imports something the host does not provide.
    #[error("the component imports something Courier does not provide: {0}")]
    Link(String),
    /// Instantiating the component or calling its `describe` failed.
    #[error("calling the plugin's `describe` failed: {0}")]
    Describe(Crash),
    /// `describe` answered something invalid.
    #[error("the plugin describes itself wrongly: {0}")]
    InvalidInfo(String),
    /// The plugin's settings are invalid.
    #[error("invalid plugin settings: {0}")]
    Settings(String),
}

fn describe_exports(exports: &[String]) -> String {
    if exports.is_empty() {
        return "nothing".to_string();
    }
    exports
        .iter()
        .map(|export| format!("`{export}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a plugin instance died during a call. The instance is dropped; the delivery counts as a
/// retryable failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Crash {
    /// The guest trapped (a Rust panic, `unreachable`, an out-of-bounds access...).
    #[error("the plugin trapped: {message}")]
    Trap {
        /// The trap and its WebAssembly backtrace.
        message: String,
    },
    /// The call ran past its deadline.
    #[error("the plugin ran past its {}ms timeout", limit.as_millis())]
    Timeout {
        /// The plugin's timeout.
        limit: Duration,
    },
    /// The guest needed more memory than its limit (a growth was denied, then it trapped).
    #[error("the plugin exceeded its memory limit of {limit_bytes} bytes")]
    Memory {
        /// The plugin's memory limit.
        limit_bytes: u64,
    },
}

/// Why a call produced no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The instance crashed.
    #[error(transparent)]
    Crashed(#[from] Crash),
    /// A destination answered a number of outcomes other than the batch size: the whole batch
    /// counts as a retry.
    #[error("the destination returned {returned} outcomes for a batch of {expected}")]
    OutcomeCount {
        /// The batch size.
        expected: usize,
        /// How many outcomes came back.
        returned: usize,
    },
    /// `deliver` was called on a handler.
    #[error("`deliver` takes a batch and only destinations implement it; this plugin is a {kind}")]
    WrongKind {
        /// The plugin's kind.
        kind: PluginKind,
    },
}

impl CallError {
    /// The crash, when the call failed by crashing.
    pub fn crash(&self) -> Option<&Crash> {
        match self {
            CallError::Crashed(crash) => Some(crash),
            _ => None,
        }
    }
}
