//! `courier test PLUGIN.wasm --message JSON | --batch FILE [--attempt N] [--queue Q]
//! [--config KEY=VALUE]... [--grant HOST]...`: runs a plugin offline on the production runtime
//! (through the harness) and prints one JSON object saying what it did.
//!
//! Exit status: 0 when the outcome is `ok`, 1 for any other outcome (retry, fatal, crashed), 2
//! when the arguments are wrong or the plugin cannot be loaded.

use std::path::PathBuf;
use std::process::ExitCode;

use courier_harness::{
    BatchReport, CallError, Crash, FollowUp, Harness, HttpRequestRecord, HttpRequestResult,
    LogLine, Outcome, PluginKind, Report, TestMessage,
};
use serde::Serialize;

use super::streams::{EXIT_FAILED, EXIT_USAGE, Streams};
use crate::message_input::{self, MessageInput};

/// Arguments of `courier test`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["message", "batch"])))]
pub struct TestArgs {
    /// The plugin component.
    #[arg(value_name = "PLUGIN.wasm")]
    pub plugin: PathBuf,
    /// The message: {"name": "user.created", "payload": {...}, "id"?: UUID, "headers"?: {...}}.
    #[arg(long, value_name = "JSON")]
    pub message: Option<String>,
    /// A file holding a JSON array of messages, delivered to a destination as one batch.
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,
    /// The attempt number (1 is the first delivery).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: u32,
    /// The queue the delivery comes from (default: the plugin's first subscription's queue).
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// A configuration value for the plugin, `KEY=VALUE`; repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub plugin_config: Vec<(String, String)>,
    /// A host the plugin may send HTTP requests to (`example.com`, `example.com:8443`,
    /// `*.example.com`); repeat for several. Granted requests are answered 404 (no network).
    #[arg(long = "grant", value_name = "HOST")]
    pub grants: Vec<String>,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Runs the plugin and prints the report.
pub fn run(args: TestArgs, streams: &mut Streams<'_>) -> ExitCode {
    match run_inner(args, streams) {
        Ok(code) => code,
        Err(Problem(message)) => {
            let _ = writeln!(streams.stderr, "error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// A wrong argument or an unloadable plugin: exit status 2.
struct Problem(String);

fn run_inner(args: TestArgs, streams: &mut Streams<'_>) -> Result<ExitCode, Problem> {
    let messages = read_messages(&args)?;

    let mut builder = Harness::builder();
    for (key, value) in &args.plugin_config {
        builder = builder.config(key, value);
    }
    for host in &args.grants {
        builder = builder.grant(host);
    }
    if let Some(queue) = &args.queue {
        builder = builder.queue(queue);
    }
    let harness = builder
        .load(&args.plugin)
        .map_err(|error| Problem(format!("cannot load {}: {error}", args.plugin.display())))?;

    let output = match messages {
        Input::One(message) => {
            let message = message.attempt(args.attempt);
            single_output(harness.deliver(message))
        }
        Input::Batch(messages) => {
            if harness.kind() != PluginKind::Destination {
                return Err(Problem(format!(
                    "--batch delivers a batch, which only destinations take; {} is a {}: use --message",
                    args.plugin.display(),
                    harness.kind()
                )));
            }
            let messages = messages.into_iter().map(|m| m.attempt(args.attempt));
            batch_output(harness.deliver_batch(messages))
        }
    };

    let ok = output.outcome == "ok";
    let json = serde_json::to_string_pretty(&output)
        .map_err(|error| Problem(format!("cannot encode the report: {error}")))?;
    writeln!(streams.stdout, "{json}")
        .map_err(|error| Problem(format!("cannot write the report: {error}")))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

enum Input {
    One(TestMessage),
    Batch(Vec<TestMessage>),
}

fn read_messages(args: &TestArgs) -> Result<Input, Problem> {
    if let Some(text) = &args.message {
        let value = serde_json::from_str(text)
            .map_err(|error| Problem(format!("--message is not valid JSON: {error}")))?;
        let message = message_input::parse_message(value, "")
            .map_err(|problem| Problem(format!("--message: {problem}")))?;
        return Ok(Input::One(test_message(message)));
    }
    let Some(path) = &args.batch else {
        return Err(Problem("give --message JSON or --batch FILE".to_string()));
    };
    let text = std::fs::read(path)
        .map_err(|error| Problem(format!("--batch: cannot read {}: {error}", path.display())))?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|error| {
        Problem(format!(
            "--batch: {} is not valid JSON: {error}",
            path.display()
        ))
    })?;
    let serde_json::Value::Array(items) = value else {
        return Err(Problem(format!(
            "--batch: {} must hold a JSON array of messages",
            path.display()
        )));
    };
    if items.is_empty() {
        return Err(Problem(format!(
            "--batch: {} holds an empty array",
            path.display()
        )));
    }
    let messages = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            message_input::parse_message(item, &format!("[{index}]."))
                .map(test_message)
                .map_err(|problem| Problem(format!("--batch {}: {problem}", path.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Input::Batch(messages))
}

fn test_message(input: MessageInput) -> TestMessage {
    let mut message = TestMessage::new(input.name, input.payload);
    if let Some(id) = input.id {
        message = message.id(id);
    }
    if let Some(at) = input.deliver_at {
        message = message.deliver_at_ms(at.timestamp_millis());
    }
    for (name, value) in input.headers {
        message = message.header(name, value);
    }
    message
}

/// The JSON object `courier test` prints.
#[derive(Debug, Serialize)]
struct TestOutput {
    /// `ok`, `retry`, `fatal` or `crashed`; for a batch, the first outcome that is not `ok`.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    /// `trap`, `timeout` or `memory` when the outcome is `crashed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    crash: Option<&'static str>,
    /// One per message of a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcomes: Option<Vec<OutcomeJson>>,
    logs: Vec<LogJson>,
    published: Vec<FollowUpJson>,
    http_requests: Vec<HttpRequestJson>,
}

#[derive(Debug, Clone, Serialize)]
struct OutcomeJson {
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crash: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct LogJson {
    level: &'static str,
    source: &'static str,
    message: String,
}

#[derive(Debug, Serialize)]
struct FollowUpJson {
    id: String,
    name: String,
    payload: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    deliver_at_ms: Option<i64>,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
struct HttpRequestJson {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    /// The body as text (invalid UTF-8 replaced).
    body: String,
    /// `denied`, `answered`, `no_stub`, `failed` or `unfinished`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn single_output(report: Report) -> TestOutput {
    let outcome = outcome_json(&report.outcome);
    TestOutput {
        outcome: outcome.outcome,
        reason: outcome.reason,
        retry_after_ms: outcome.retry_after_ms,
        crash: outcome.crash,
        outcomes: None,
        logs: logs_json(&report.logs),
        published: published_json(&report.published),
        http_requests: http_json(&report.http_requests),
    }
}

fn batch_output(report: BatchReport) -> TestOutput {
    let (top, outcomes) = match &report.outcomes {
        Ok(outcomes) => {
            let each: Vec<OutcomeJson> = outcomes
                .iter()
                .map(|outcome| outcome_json(&Ok(outcome.clone())))
                .collect();
            let top = each
                .iter()
                .find(|outcome| outcome.outcome != "ok")
                .cloned()
                .unwrap_or_else(|| outcome_json(&Ok(Outcome::Ok)));
            (top, Some(each))
        }
        Err(error) => (outcome_json(&Err(error.clone())), None),
    };
    TestOutput {
        outcome: top.outcome,
        reason: top.reason,
        retry_after_ms: top.retry_after_ms,
        crash: top.crash,
        outcomes,
        logs: logs_json(&report.logs),
        published: published_json(&report.published),
        http_requests: http_json(&report.http_requests),
    }
}

fn outcome_json(outcome: &Result<Outcome, CallError>) -> OutcomeJson {
    let plain = |outcome, reason: Option<String>| OutcomeJson {
        outcome,
        reason,
        retry_after_ms: None,
        crash: None,
    };
    match outcome {
        Ok(Outcome::Ok) => plain("ok", None),
        Ok(Outcome::Retry { reason, delay }) => OutcomeJson {
            outcome: "retry",
            reason: Some(reason.clone()),
            retry_after_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            crash: None,
        },
        Ok(Outcome::Fatal { reason }) => plain("fatal", Some(reason.clone())),
        Err(CallError::Crashed(crash)) => OutcomeJson {
            outcome: "crashed",
            reason: Some(crash.to_string()),
            retry_after_ms: None,
            crash: Some(match crash {
                Crash::Trap { .. } => "trap",
                Crash::Timeout { .. } => "timeout",
                Crash::Memory { .. } => "memory",
            }),
        },
        // Counts as a retry of the whole batch, as the host would do.
        Err(error) => plain("retry", Some(error.to_string())),
    }
}

fn logs_json(logs: &[LogLine]) -> Vec<LogJson> {
    logs.iter()
        .map(|line| LogJson {
            level: line.level.as_str(),
            source: line.source.as_str(),
            message: line.message.clone(),
        })
        .collect()
}

fn published_json(published: &[FollowUp]) -> Vec<FollowUpJson> {
    published
        .iter()
        .map(|follow_up| FollowUpJson {
            id: follow_up.id.to_string(),
            name: follow_up.name.clone(),
            // The runtime accepts only valid JSON payloads.
            payload: serde_json::from_slice(&follow_up.payload).unwrap_or(serde_json::Value::Null),
            deliver_at_ms: follow_up.deliver_at_ms,
            headers: follow_up.headers.clone(),
        })
        .collect()
}

fn http_json(requests: &[HttpRequestRecord]) -> Vec<HttpRequestJson> {
    requests
        .iter()
        .map(|request| {
            let (result, status, error) = match &request.result {
                HttpRequestResult::Denied => ("denied", None, None),
                HttpRequestResult::Answered { status } => ("answered", Some(*status), None),
                HttpRequestResult::NoStub => ("no_stub", Some(404), None),
                HttpRequestResult::Failed { error } => ("failed", None, Some(error.clone())),
                HttpRequestResult::Unfinished => ("unfinished", None, None),
            };
            HttpRequestJson {
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                body: String::from_utf8_lossy(&request.body).into_owned(),
                result,
                status,
                error,
            }
        })
        .collect()
}
