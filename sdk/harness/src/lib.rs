//! Test a Courier plugin offline, on the production runtime: load a component, deliver messages
//! with a chosen attempt, queue, configuration, grants and limits, and look at the outcome, the
//! log lines, the follow-up events and the outbound HTTP requests (answered from stubs; nothing
//! reaches the network unless asked).
//!
//! ```no_run
//! use courier_harness::{Harness, Outcome, TestMessage};
//! use serde_json::json;
//!
//! let harness = Harness::builder()
//!     .config("from", "hello@example.com")
//!     .load("target/wasm32-wasip2/release/welcome_email.wasm")
//!     .unwrap();
//! let report = harness.deliver(TestMessage::new("user.created", json!({"email": "ada@example.com"})));
//! assert_eq!(report.outcome, Ok(Outcome::Ok));
//! assert_eq!(report.published_names(), ["email.sent"]);
//! ```
//!
//! Every method has an `_async` twin for async tests. The blocking methods work anywhere, also
//! inside an async runtime (they then run on a helper thread).
//!
//! Compiled components are cached in `<system temp dir>/courier-harness-cache` (or the
//! directory in `COURIER_HARNESS_CACHE`), so a test suite compiles each component once.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_runtime::{
    Delivery, HttpMode, HttpStub, LogMode, Message, Plugin, PluginSettings, Runtime, RuntimeConfig,
};
use uuid::Uuid;

pub use courier_runtime::{
    CallError, Crash, FollowUp, HttpRequestRecord, HttpRequestResult, InstanceUse, Limits,
    LoadError, LoadStats, LogLevel, LogLine, LogSource, Outcome, PluginInfo, PluginKind,
    RuntimeError, Subscription,
};

/// The most memory a plugin may be given in the harness.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;

/// A loaded plugin, ready to receive test messages.
#[derive(Debug, Clone)]
pub struct Harness {
    plugin: Plugin,
    default_queue: String,
}

/// Configures a [`Harness`] before loading the plugin.
#[derive(Debug, Clone)]
pub struct HarnessBuilder {
    settings: PluginSettings,
    stubs: Vec<HttpStub>,
    network: bool,
    queue: Option<String>,
}

/// The harness could not load the plugin.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The shared runtime could not start.
    #[error("{0}")]
    Runtime(String),
    /// The component is not a loadable Courier plugin.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A message to deliver. Defaults: a new UUIDv7 id, published and due now, attempt 1, the
/// plugin's first subscribed queue, no headers.
#[derive(Debug, Clone, PartialEq)]
pub struct TestMessage {
    id: Option<Uuid>,
    name: String,
    payload: Vec<u8>,
    attempt: u32,
    queue: Option<String>,
    headers: Vec<(String, String)>,
    published_at_ms: Option<i64>,
    deliver_at_ms: Option<i64>,
}

/// What one delivery produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The plugin's outcome, or how the call failed.
    pub outcome: Result<Outcome, CallError>,
    /// Everything the plugin logged (host `log`, standard output and error) and the runtime's
    /// lines about it (denied requests, missing stubs).
    pub logs: Vec<LogLine>,
    /// The follow-up events it published (which the host would commit only on `ok`).
    pub published: Vec<FollowUp>,
    /// The outbound HTTP requests it made.
    pub http_requests: Vec<HttpRequestRecord>,
    /// Which instance served the delivery.
    pub instance: InstanceUse,
}

/// What one batch delivery (destinations) produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// One outcome per message, in order, or how the call failed.
    pub outcomes: Result<Vec<Outcome>, CallError>,
    /// See [`Report::logs`].
    pub logs: Vec<LogLine>,
    /// See [`Report::published`].
    pub published: Vec<FollowUp>,
    /// See [`Report::http_requests`].
    pub http_requests: Vec<HttpRequestRecord>,
    /// Which instance served the batch.
    pub instance: InstanceUse,
}

impl Harness {
    /// Loads a component with default settings (no config, no grants, default limits).
    pub fn load(path: impl AsRef<Path>) -> Result<Harness, HarnessError> {
        Harness::builder().load(path)
    }

    /// Starts configuring a harness.
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder {
            settings: PluginSettings {
                logs: LogMode::Capture,
                ..PluginSettings::default()
            },
            stubs: Vec::new(),
            network: false,
            queue: None,
        }
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> &PluginInfo {
        self.plugin.info()
    }

    /// Handler or destination.
    pub fn kind(&self) -> PluginKind {
        self.plugin.kind()
    }

    /// Whether loading compiled the component or read it from the cache.
    pub fn load_stats(&self) -> &LoadStats {
        self.plugin.load_stats()
    }

    /// The queue messages go to when they name none.
    pub fn default_queue(&self) -> &str {
        &self.default_queue
    }

    /// The runtime's plugin, for what the harness does not wrap.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Delivers one message (to a destination: as a batch of one).
    pub fn deliver(&self, message: TestMessage) -> Report {
        block_on(self.deliver_async(message))
    }

    /// Async twin of [`Harness::deliver`].
    pub async fn deliver_async(&self, message: TestMessage) -> Report {
        let delivery = message.into_delivery(&self.default_queue);
        let report = self.plugin.handle(&delivery).await;
        Report {
            outcome: report.result,
            logs: report.logs,
            published: report.published,
            http_requests: report.http_requests,
            instance: report.instance,
        }
    }

    /// Delivers a batch to a destination in one call.
    pub fn deliver_batch(&self, messages: impl IntoIterator<Item = TestMessage>) -> BatchReport {
        let messages: Vec<TestMessage> = messages.into_iter().collect();
        block_on(self.deliver_batch_async(messages))
    }

    /// Async twin of [`Harness::deliver_batch`].
    pub async fn deliver_batch_async(
        &self,
        messages: impl IntoIterator<Item = TestMessage>,
    ) -> BatchReport {
        let batch: Vec<Delivery> = messages
            .into_iter()
            .map(|message| message.into_delivery(&self.default_queue))
            .collect();
        let report = self.plugin.deliver(&batch).await;
        BatchReport {
            outcomes: report.result,
            logs: report.logs,
            published: report.published,
            http_requests: report.http_requests,
            instance: report.instance,
        }
    }
}

impl HarnessBuilder {
    /// Sets a configuration value the plugin reads with `config(key)`.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.config.insert(key.into(), value.into());
        self
    }

    /// Sets all configuration values at once.
    pub fn configs(mut self, values: BTreeMap<String, String>) -> Self {
        self.settings.config = values;
        self
    }

    /// Grants outbound HTTP to `host` (`example.com`, `example.com:8443` or `*.example.com`).
    pub fn grant(mut self, host: impl Into<String>) -> Self {
        self.settings.allowed_hosts.push(host.into());
        self
    }

    /// Sets all limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// Sets the memory limit, in bytes (at most [`MAX_MEMORY_BYTES`]).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.settings.limits.memory_bytes = bytes;
        self
    }

    /// Sets the per-call timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.limits.timeout = timeout;
        self
    }

    /// Sets how many deliveries one instance serves (1: a fresh instance per delivery).
    pub fn max_uses(mut self, max_uses: u32) -> Self {
        self.settings.limits.max_uses = max_uses;
        self
    }

    /// Answers requests to exactly `url` with this response. Requests to granted hosts that no
    /// stub matches are answered `404 Not Found`. Requests to hosts not granted are denied
    /// whatever the stubs.
    pub fn stub_http(
        mut self,
        url: impl Into<String>,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Self {
        self.stubs.push(HttpStub {
            url: url.into(),
            status,
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            body: body.into(),
        });
        self
    }

    /// Sends requests to granted hosts over the real network instead of answering them from
    /// stubs.
    pub fn network(mut self) -> Self {
        self.network = true;
        self
    }

    /// The queue messages go to when they name none (default: the plugin's first
    /// subscription's queue, or `default` when it has none).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Loads the component file.
    pub fn load(self, path: impl AsRef<Path>) -> Result<Harness, HarnessError> {
        block_on(self.load_async(path.as_ref().to_path_buf()))
    }

    /// Loads a component from its bytes.
    pub fn load_bytes(self, bytes: impl Into<Vec<u8>>) -> Result<Harness, HarnessError> {
        block_on(self.load_bytes_async(bytes.into()))
    }

    /// Async twin of [`HarnessBuilder::load`].
    pub async fn load_async(self, path: impl AsRef<Path>) -> Result<Harness, HarnessError> {
        let path = path.as_ref();
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        self.load_bytes_async(bytes).await
    }

    /// Async twin of [`HarnessBuilder::load_bytes`].
    pub async fn load_bytes_async(
        mut self,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<Harness, HarnessError> {
        self.settings.http = if self.network {
            HttpMode::Network
        } else {
            HttpMode::Stubbed(self.stubs)
        };
        let runtime = shared_runtime()?;
        let plugin = runtime.load(bytes.into(), self.settings).await?;
        let default_queue = self.queue.unwrap_or_else(|| {
            plugin
                .info()
                .subscriptions
                .first()
                .map_or_else(|| "default".to_string(), |s| s.queue.clone())
        });
        Ok(Harness {
            plugin,
            default_queue,
        })
    }
}

impl TestMessage {
    /// A message named `name` (`topic.event`) with a JSON payload.
    pub fn new(name: impl Into<String>, payload: serde_json::Value) -> TestMessage {
        TestMessage::raw(name, payload.to_string().into_bytes())
    }

    /// A message whose payload bytes are given as they are (for example invalid JSON).
    pub fn raw(name: impl Into<String>, payload: impl Into<Vec<u8>>) -> TestMessage {
        TestMessage {
            id: None,
            name: name.into(),
            payload: payload.into(),
            attempt: 1,
            queue: None,
            headers: Vec::new(),
            published_at_ms: None,
            deliver_at_ms: None,
        }
    }

    /// Sets the message id.
    pub fn id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the 1-based attempt number.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the queue the delivery comes from.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets when the message was published, in milliseconds since the Unix epoch.
    pub fn published_at_ms(mut self, at: i64) -> Self {
        self.published_at_ms = Some(at);
        self
    }

    /// Sets when the message became due, in milliseconds since the Unix epoch.
    pub fn deliver_at_ms(mut self, at: i64) -> Self {
        self.deliver_at_ms = Some(at);
        self
    }

    /// The delivery this message becomes.
    pub fn into_delivery(self, default_queue: &str) -> Delivery {
        let now = now_ms();
        let published_at_ms = self.published_at_ms.unwrap_or(now);
        Delivery {
            message: Message {
                id: self.id.unwrap_or_else(Uuid::now_v7),
                name: self.name,
                payload: self.payload,
                published_at_ms,
                deliver_at_ms: self.deliver_at_ms.unwrap_or(published_at_ms),
                headers: self.headers,
            },
            queue: self.queue.unwrap_or_else(|| default_queue.to_string()),
            attempt: self.attempt,
        }
    }
}

impl Report {
    /// The outcome is `ok`.
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Ok(Outcome::Ok))
    }

    /// The text of every log line, in order.
    pub fn log_messages(&self) -> Vec<&str> {
        log_messages(&self.logs)
    }

    /// The names of the published follow-up events, in order.
    pub fn published_names(&self) -> Vec<&str> {
        self.published.iter().map(|f| f.name.as_str()).collect()
    }

    /// The payload of the `index`-th follow-up event, parsed (`None` when there is no such
    /// event).
    pub fn published_payload(&self, index: usize) -> Option<serde_json::Value> {
        published_payload(&self.published, index)
    }
}

impl BatchReport {
    /// The text of every log line, in order.
    pub fn log_messages(&self) -> Vec<&str> {
        log_messages(&self.logs)
    }

    /// The names of the published follow-up events, in order.
    pub fn published_names(&self) -> Vec<&str> {
        self.published.iter().map(|f| f.name.as_str()).collect()
    }
}

fn log_messages(logs: &[LogLine]) -> Vec<&str> {
    logs.iter().map(|line| line.message.as_str()).collect()
}

fn published_payload(published: &[FollowUp], index: usize) -> Option<serde_json::Value> {
    // The runtime accepted only valid JSON payloads.
    published
        .get(index)
        .and_then(|follow_up| serde_json::from_slice(&follow_up.payload).ok())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The harness's process-wide runtimes: a tokio runtime for the blocking methods and one
/// Courier runtime (engine, instance pool, compiled cache) for every harness.
struct Shared {
    tokio: tokio::runtime::Runtime,
    courier: Result<Runtime, String>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("courier-harness")
            .enable_all()
            .build()
            .expect("cannot start the harness's tokio runtime");
        let courier = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache_dir()),
            max_instances: 64,
            max_memory_bytes: MAX_MEMORY_BYTES,
            ..RuntimeConfig::default()
        })
        .map_err(|error| error.to_string());
        Shared { tokio, courier }
    })
}

fn shared_runtime() -> Result<&'static Runtime, HarnessError> {
    shared()
        .courier
        .as_ref()
        .map_err(|error| HarnessError::Runtime(error.clone()))
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("COURIER_HARNESS_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join("courier-harness-cache"),
    }
}

/// Runs `future` to completion on the harness's runtime, from any context.
fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let tokio = &shared().tokio;
    if tokio::runtime::Handle::try_current().is_err() {
        return tokio.block_on(future);
    }
    // Inside an async runtime blocking its thread is not allowed: block a helper thread.
    std::thread::scope(|scope| {
        scope
            .spawn(|| tokio.block_on(future))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
