//! The state of the call in progress on one plugin instance: its log tags and the buffers that
//! collect its log lines, follow-up events and outbound HTTP requests until the call's report is
//! built.

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

/// The call context of one instance, reused by every call the instance serves. A call runs
/// from [`Self::begin`] to [`Self::finish`]; outside calls, lines go to `tracing` untagged.
pub(crate) struct CallContext {
    plugin: Arc<str>,
    state: Mutex<CallState>,
}

struct CallState {
    /// Numbers the calls (and the gaps between them: it moves on when a call begins and when
    /// it finishes), so that work a call left running (an HTTP request still in flight)
    /// cannot write into a later call's report.
    call: u64,
    tags: CallTags,
    mode: LogMode,
    buffers: CallBuffers,
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

impl CallBuffers {
    fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.published.is_empty()
            && self.http_requests.is_empty()
            && self.dropped_lines == 0
            && self.stdout.is_empty()
            && self.stderr.is_empty()
    }
}

/// The call of a [`CallContext`] some work belongs to (an outbound HTTP request), with the
/// tags of that call: a line the work logs after the call finished still carries them.
#[derive(Debug, Clone)]
pub(crate) struct CallRef {
    number: u64,
    tags: CallTags,
}

impl CallContext {
    pub fn new(plugin: Arc<str>) -> CallContext {
        CallContext {
            plugin,
            state: Mutex::new(CallState {
                call: 0,
                tags: CallTags::default(),
                mode: LogMode::Tracing,
                buffers: CallBuffers::default(),
            }),
        }
    }

    /// Starts a call: its lines carry `tags` and go where `mode` says until [`Self::finish`].
    pub fn begin(&self, tags: CallTags, mode: LogMode) {
        let mut state = self.lock();
        debug_assert!(
            state.buffers.is_empty(),
            "the previous call on this context was finished"
        );
        state.call += 1;
        state.tags = tags;
        state.mode = mode;
    }

    /// The call in progress.
    pub fn current(&self) -> CallRef {
        let state = self.lock();
        CallRef {
            number: state.call,
            tags: state.tags.clone(),
        }
    }

    pub fn log(&self, level: LogLevel, source: LogSource, message: String) {
        let line = LogLine {
            level,
            source,
            message,
        };
        self.emit(&mut self.lock(), line);
    }

    /// Logs a line for call `call`; once that call has finished (its report is built), the
    /// line goes to `tracing` with that call's tags.
    pub fn log_for(&self, call: &CallRef, level: LogLevel, source: LogSource, message: String) {
        let line = LogLine {
            level,
            source,
            message,
        };
        let mut state = self.lock();
        if state.call == call.number {
            self.emit(&mut state, line);
        } else {
            drop(state);
            emit_tracing(&self.plugin, &call.tags, &line);
        }
    }

    /// Sends a line to `tracing` or keeps it, as the call in progress wants.
    fn emit(&self, state: &mut CallState, line: LogLine) {
        match state.mode {
            LogMode::Tracing => emit_tracing(&self.plugin, &state.tags, &line),
            LogMode::Capture => push_line(&mut state.buffers, line),
        }
    }

    /// Appends guest output and logs every complete line in it.
    pub fn write_output(&self, source: LogSource, bytes: &[u8]) {
        let mut lines = Vec::new();
        {
            let buffers = &mut self.lock().buffers;
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
        let published = &mut self.lock().buffers.published;
        if published.len() >= MAX_FOLLOW_UPS {
            return Err(format!(
                "too many follow-up events: at most {MAX_FOLLOW_UPS} per delivery"
            ));
        }
        published.push(follow_up);
        Ok(())
    }

    /// Records an outbound request of call `call`; returns its index for
    /// [`Self::set_http_result`] (`None` once that call has finished).
    pub fn record_http(&self, call: &CallRef, record: HttpRequestRecord) -> Option<usize> {
        let mut state = self.lock();
        if state.call != call.number {
            return None;
        }
        let requests = &mut state.buffers.http_requests;
        requests.push(record);
        Some(requests.len() - 1)
    }

    pub fn set_http_result(&self, call: &CallRef, index: usize, result: HttpRequestResult) {
        let mut state = self.lock();
        if state.call == call.number
            && let Some(record) = state.buffers.http_requests.get_mut(index)
        {
            record.result = result;
        }
    }

    /// Ends the call in progress: logs its unterminated output lines and hands over
    /// everything it collected.
    pub fn finish(&self) -> CallBuffers {
        let mut state = self.lock();
        let rests = [
            (LogSource::Stdout, std::mem::take(&mut state.buffers.stdout)),
            (LogSource::Stderr, std::mem::take(&mut state.buffers.stderr)),
        ];
        for (source, rest) in rests {
            if !rest.trim_ascii().is_empty() {
                let line = LogLine {
                    level: output_level(source),
                    source,
                    message: line_text(&rest),
                };
                self.emit(&mut state, line);
            }
        }
        let mut buffers = std::mem::take(&mut state.buffers);
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
        state.call += 1;
        state.tags = CallTags::default();
        state.mode = LogMode::Tracing;
        buffers
    }

    fn lock(&self) -> MutexGuard<'_, CallState> {
        // A poisoned lock only means another thread panicked while pushing a line: the buffers
        // are still consistent.
        self.state
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> HttpRequestRecord {
        HttpRequestRecord {
            method: "GET".to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            result: HttpRequestResult::Unfinished,
        }
    }

    #[test]
    fn work_left_running_by_a_call_stays_out_of_the_next_calls_report() {
        let context = CallContext::new(Arc::from("plugin"));
        context.begin(CallTags::default(), LogMode::Capture);
        let first = context.current();
        let index = context.record_http(&first, request("http://first/"));
        assert_eq!(index, Some(0));
        context.log(LogLevel::Info, LogSource::Plugin, "one".to_string());
        let report = context.finish();
        assert_eq!(report.http_requests.len(), 1);
        assert_eq!(report.logs.len(), 1);

        context.begin(CallTags::default(), LogMode::Capture);
        let second = context.current();
        assert_ne!(first.number, second.number);
        // The first call's request answers, logs and makes another record after its call ended.
        context.set_http_result(&first, 0, HttpRequestResult::NoStub);
        context.log_for(&first, LogLevel::Warn, LogSource::Host, "late".to_string());
        assert_eq!(context.record_http(&first, request("http://late/")), None);
        context.record_http(&second, request("http://second/"));
        context.log_for(&second, LogLevel::Info, LogSource::Host, "two".to_string());
        let report = context.finish();
        assert_eq!(report.http_requests.len(), 1);
        assert_eq!(report.http_requests[0].url, "http://second/");
        assert_eq!(
            report.http_requests[0].result,
            HttpRequestResult::Unfinished
        );
        let messages: Vec<_> = report
            .logs
            .iter()
            .map(|line| line.message.as_str())
            .collect();
        assert_eq!(messages, ["two"]);
    }

    /// Records the `queue` and message of every `courier::plugin` event, in order.
    #[derive(Clone, Default)]
    struct QueueAndMessage(Arc<Mutex<Vec<(String, String)>>>);

    #[derive(Default)]
    struct Fields {
        queue: String,
        message: String,
    }

    impl tracing::field::Visit for Fields {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "queue" {
                self.queue = value.to_string();
            }
        }

        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.message = format!("{value:?}");
            }
        }
    }

    impl tracing::Subscriber for QueueAndMessage {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            metadata.target() == "courier::plugin"
        }

        fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }

        fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

        fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push((fields.queue, fields.message));
        }

        fn enter(&self, _span: &tracing::span::Id) {}

        fn exit(&self, _span: &tracing::span::Id) {}
    }

    #[test]
    fn a_line_logged_after_its_call_finished_carries_that_calls_tags() {
        let tags = |queue: &str| CallTags {
            queue: Some(queue.to_string()),
            message_id: None,
            attempt: Some(1),
        };
        let context = CallContext::new(Arc::from("plugin"));
        context.begin(tags("first"), LogMode::Tracing);
        let first = context.current();
        context.finish();
        context.begin(tags("second"), LogMode::Tracing);
        let events = QueueAndMessage::default();
        tracing::subscriber::with_default(events.clone(), || {
            // Another test's thread may have registered these callsites while this subscriber
            // was being set, caching "no interest": ask every callsite again, with it in place.
            tracing::callsite::rebuild_interest_cache();
            context.log_for(&first, LogLevel::Warn, LogSource::Host, "late".to_string());
            context.log(LogLevel::Info, LogSource::Plugin, "now".to_string());
        });
        context.finish();
        let events = events.0.lock().unwrap();
        let expected = [("first", "late"), ("second", "now")]
            .map(|(queue, message)| (queue.to_string(), message.to_string()));
        assert_eq!(events.as_slice(), expected);
    }
}
