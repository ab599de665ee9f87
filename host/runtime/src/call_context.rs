//! The state of one call into a plugin: its log tags and the buffers that collect its log lines,
//! follow-up events and outbound HTTP requests until the call's report is built.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::http_grants::{HttpRequestRecord, HttpRequestResult};
use crate::logs::{CallTags, LogLevel, LogLine, LogMode, LogSource, emit_tracing};
use crate::model::FollowUp;

/// At most this many follow-up events per call.
pub(crate) const MAX_FOLLOW_UPS: usize = 1_000;
/// A standard output line longer than this is cut into several log lines.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// At most this many lines are captured per call; later ones are counted and dropped.
const MAX_CAPTURED_LINES: usize = 10_000;

pub(crate) struct CallContext {
    plugin: Arc<str>,
    tags: CallTags,
    mode: LogMode,
    buffers: Mutex<CallBuffers>,
}

#[derive(Default)]
pub(crate) struct CallBuffers {
    pub logs: Vec<LogLine>,
    pub published: Vec<FollowUp>,
    pub http_requests: Vec<HttpRequestRecord>,
    dropped_lines: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl CallContext {
    pub fn new(plugin: Arc<str>, tags: CallTags, mode: LogMode) -> CallContext {
        CallContext {
            plugin,
            tags,
            mode,
            buffers: Mutex::new(CallBuffers::default()),
        }
    }

    pub fn log(&self, level: LogLevel, source: LogSource, message: String) {
        let line = LogLine {
            level,
            source,
            message,
        };
        self.emit(line, None);
    }

    /// Sends a line to `tracing` or keeps it, in `buffers` when the caller holds them.
    fn emit(&self, line: LogLine, buffers: Option<&mut CallBuffers>) {
        match (self.mode, buffers) {
            (LogMode::Tracing, _) => emit_tracing(&self.plugin, &self.tags, &line),
            (LogMode::Capture, Some(buffers)) => push_line(buffers, line),
            (LogMode::Capture, None) => push_line(&mut self.lock(), line),
        }
    }

    /// Appends guest output and logs every complete line in it.
    pub fn write_output(&self, source: LogSource, bytes: &[u8]) {
        let mut lines = Vec::new();
        {
            let mut buffers = self.lock();
            let pending = match source {
                LogSource::Stderr => &mut buffers.stderr,
                _ => &mut buffers.stdout,
            };
            pending.extend_from_slice(bytes);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                lines.push(line_text(&line[..line.len() - 1]));
            }
            while pending.len() >= MAX_LINE_BYTES {
                let line: Vec<u8> = pending.drain(..MAX_LINE_BYTES).collect();
                lines.push(line_text(&line));
            }
        }
        // Blank lines (such as the one a Rust panic message starts with) carry nothing.
        for line in lines.into_iter().filter(|line| !line.trim().is_empty()) {
            self.log(output_level(source), source, line);
        }
    }

    pub fn publish(&self, follow_up: FollowUp) -> Result<(), String> {
        let mut buffers = self.lock();
        if buffers.published.len() >= MAX_FOLLOW_UPS {
            return Err(format!(
                "too many follow-up events: at most {MAX_FOLLOW_UPS} per delivery"
            ));
        }
        buffers.published.push(follow_up);
        Ok(())
    }

    /// Records an outbound request; returns its index for [`Self::set_http_result`].
    pub fn record_http(&self, record: HttpRequestRecord) -> usize {
        let mut buffers = self.lock();
        buffers.http_requests.push(record);
        buffers.http_requests.len() - 1
    }

    pub fn set_http_result(&self, index: usize, result: HttpRequestResult) {
        if let Some(record) = self.lock().http_requests.get_mut(index) {
            record.result = result;
        }
    }

    /// Logs unterminated output lines and hands over everything collected.
    pub fn finish(&self) -> CallBuffers {
        let mut buffers = std::mem::take(&mut *self.lock());
        let rests = [
            (LogSource::Stdout, std::mem::take(&mut buffers.stdout)),
            (LogSource::Stderr, std::mem::take(&mut buffers.stderr)),
        ];
        for (source, rest) in rests {
            if !rest.trim_ascii().is_empty() {
                let line = LogLine {
                    level: output_level(source),
                    source,
                    message: line_text(&rest),
                };
                self.emit(line, Some(&mut buffers));
            }
        }
        if buffers.dropped_lines > 0 {
            buffers.logs.push(LogLine {
                level: LogLevel::Warn,
                source: LogSource::Host,
                message: format!(
                    "{} more log lines were dropped (at most {MAX_CAPTURED_LINES} are kept per call)",
                    buffers.dropped_lines
                ),
            });
        }
        buffers
    }

    fn lock(&self) -> MutexGuard<'_, CallBuffers> {
        // A poisoned lock only means another thread panicked while pushing a line: the buffers
        // are still consistent.
        self.buffers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn push_line(buffers: &mut CallBuffers, line: LogLine) {
    if buffers.logs.len() >= MAX_CAPTURED_LINES {
        buffers.dropped_lines += 1;
    } else {
        buffers.logs.push(line);
    }
}

fn output_level(source: LogSource) -> LogLevel {
    match source {
        LogSource::Stderr => LogLevel::Warn,
        _ => LogLevel::Info,
    }
}

fn line_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}
