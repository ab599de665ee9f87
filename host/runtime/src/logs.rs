//! Where a plugin's log lines go: the host's `tracing` subscriber (tagged with the plugin, queue,
//! message id and attempt) or a per-call capture buffer (for the harness and `courier test`).

use uuid::Uuid;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Who wrote a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The plugin, through the `host.log` import.
    Plugin,
    /// The plugin's standard output, one line per newline-terminated line.
    Stdout,
    /// The plugin's standard error, one line per newline-terminated line.
    Stderr,
    /// The runtime, about the plugin (for example a denied HTTP request).
    Host,
}

impl LogSource {
    /// `plugin`, `stdout`, `stderr` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Plugin => "plugin",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Host => "host",
        }
    }
}

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity. Standard output is `info`, standard error `warn`.
    pub level: LogLevel,
    /// Who wrote it.
    pub source: LogSource,
    /// The text, without a trailing newline.
    pub message: String,
}

/// What the runtime does with a plugin's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogMode {
    /// Emit them as `tracing` events (target `courier::plugin`) with the fields `plugin`,
    /// `source`, and during a delivery `queue`, `message_id` and `attempt`.
    #[default]
    Tracing,
    /// Keep them in the call's report ([`crate::CallReport::logs`]).
    Capture,
}

/// The tags a plugin's log lines carry in [`LogMode::Tracing`].
#[derive(Debug, Clone, Default)]
pub(crate) struct CallTags {
    pub queue: Option<String>,
    pub message_id: Option<Uuid>,
    pub attempt: Option<u32>,
}

/// Emits one plugin log line as a `tracing` event.
pub(crate) fn emit_tracing(plugin: &str, tags: &CallTags, line: &LogLine) {
    let queue = tags.queue.as_deref().unwrap_or("");
    let message_id = tags.message_id.map(|id| id.to_string()).unwrap_or_default();
    let attempt = tags.attempt.unwrap_or(0);
    let source = line.source.as_str();
    let message = line.message.as_str();
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "courier::plugin",
                $level,
                plugin,
                source,
                queue,
                message_id = message_id.as_str(),
                attempt,
                "{message}"
            )
        };
    }
    match line.level {
        LogLevel::Trace => event!(tracing::Level::TRACE),
        LogLevel::Debug => event!(tracing::Level::DEBUG),
        LogLevel::Info => event!(tracing::Level::INFO),
        LogLevel::Warn => event!(tracing::Level::WARN),
        LogLevel::Error => event!(tracing::Level::ERROR),
    }
}
