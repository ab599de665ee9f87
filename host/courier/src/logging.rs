//! The `tracing` subscriber of the `courier` binary: human-readable lines by default, one JSON
//! object per line with `--log-format json`. Plugin log lines (target `courier::plugin`) carry
//! the plugin, queue, message id and attempt as fields in both formats.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber writing to standard error. A second call does nothing (the
/// first subscriber stays), so tests and the binary may both call it.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::builder()
        .parse(filter)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Human => builder.with_target(true).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
