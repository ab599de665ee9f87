//! Courier's plugin runtime: loads WebAssembly components implementing the `courier:plugin`
//! contract and calls them, sandboxed and limited. It knows nothing of Postgres or HTTP servers.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use courier_runtime::{Delivery, Message, PluginSettings, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig {
//!     cache_dir: Some(".courier/cache".into()),
//!     ..RuntimeConfig::default()
//! })?;
//! let plugin = runtime.load_file("plugins/welcome-email.wasm", PluginSettings::default()).await?;
//! let report = plugin
//!     .handle(&Delivery {
//!         message: Message {
//!             id: uuid::Uuid::now_v7(),
//!             name: "user.created".into(),
//!             payload: br#"{"email": "ada@example.com"}"#.to_vec(),
//!             published_at_ms: 0,
//!             deliver_at_ms: 0,
//!             headers: Vec::new(),
//!         },
//!         queue: "emails".into(),
//!         attempt: 1,
//!     })
//!     .await;
//! println!("{:?}", report.result);
//! # Ok(()) }
//! ```
//!
//! - One [`Runtime`] holds one wasmtime engine (pooling allocator, epoch interruption driven by
//!   a ticker thread), a linker with all of WASI p2 (deny-by-default: no files, environment or
//!   sockets), `wasi:http` (only to granted hosts) and the Courier `host` interface, and a
//!   compiled-artifact cache on disk.
//! - [`Runtime::load`] checks which world a component implements, compiles it (or maps it from
//!   the cache), calls its `describe` and validates the answer, giving a [`Plugin`].
//! - [`Plugin::handle`] / [`Plugin::deliver`] run one call on a warm instance from the
//!   plugin's pool (or a fresh one) under its deadline and memory limit, and return a
//!   [`CallReport`]. A trap, timeout or memory kill is a [`Crash`], never a host panic; the
//!   instance is then dropped.

mod bindings;
mod cache;
mod call_context;
mod compiler;
mod engine;
mod error;
mod host_imports;
mod http_grants;
mod inspect;
mod instance;
mod limits;
mod logs;
mod model;
mod names;
mod plugin;
mod pool;
mod runtime;
mod stdio;
mod validate;

pub use cache::LoadStats;
pub use compiler::{CompileFailure, CompilerCommand, compile_to_file};
pub use engine::RuntimeConfig;
pub use error::{CallError, Crash, LoadError, RuntimeError};
pub use http_grants::{HttpMode, HttpRequestRecord, HttpRequestResult, HttpStub};
pub use limits::Limits;
pub use logs::{LogLevel, LogLine, LogMode, LogSource};
pub use model::{Delivery, FollowUp, Message, Outcome, PluginInfo, PluginKind, Subscription};
pub use names::{is_valid_message_name, is_valid_part};
pub use plugin::{CallReport, InstanceUse, Plugin};
pub use runtime::{PluginSettings, Runtime};
