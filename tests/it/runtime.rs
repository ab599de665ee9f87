//! The plugin runtime on real components: deadlines, memory limits, traps and the instance pool,
//! the compiled-artifact cache, clear load errors, HTTP grants and guest output.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use courier_runtime::{
    CallError, CallReport, Crash, Delivery, HttpMode, HttpRequestResult, Limits, LoadError,
    LogMode, LogSource, Message, Outcome, Plugin, PluginKind, PluginSettings, Runtime,
    RuntimeConfig, Subscription,
};
use courier_tests::components::{
    ECHO_DESTINATION, ECHO_DESTINATION_JS, HTTP_CALL, MEMORY_BOMB, NOOP, OTHER_VERSION, SPIN_LOOP,
    STDOUT, TRAP, WELCOME_EMAIL, WRONG_WORLD,
};
use uuid::Uuid;

mod compiler;

/// A runtime with a small pool, sharing one compiled-artifact cache across tests and runs.
fn runtime() -> Runtime {
    runtime_with_cache(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("runtime-cache"))
}

fn runtime_with_cache(cache_dir: PathBuf) -> Runtime {
    Runtime::new(config_with_cache(cache_dir)).expect("the runtime starts")
}

/// The suite's runtime settings: a small pool and `cache_dir`.
fn config_with_cache(cache_dir: PathBuf) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(cache_dir),
        max_instances: 16,
        max_memory_bytes: 256 << 20,
        ..RuntimeConfig::default()
    }
}

fn capture(limits: Limits) -> PluginSettings {
    PluginSettings {
        limits,
        logs: LogMode::Capture,
        ..PluginSettings::default()
    }
}

async fn load(path: &str, settings: PluginSettings) -> Plugin {
    runtime()
        .load_file(path, settings)
        .await
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn delivery(name: &str, payload: &str, queue: &str) -> Delivery {
    Delivery {
        message: Message {
            id: Uuid::now_v7(),
            name: name.to_string(),
            payload: payload.as_bytes().to_vec(),
            published_at_ms: 1_700_000_000_000,
            deliver_at_ms: 1_700_000_000_000,
            headers: Vec::new(),
        },
        queue: queue.to_string(),
        attempt: 1,
    }
}

fn crash<T: std::fmt::Debug>(report: &CallReport<T>) -> &Crash {
    match &report.result {
        Err(CallError::Crashed(crash)) => crash,
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[tokio::test]
async fn describe_is_called_and_validated_at_load() {
    let plugin = load(WELCOME_EMAIL, PluginSettings::default()).await;
    assert_eq!(plugin.kind(), PluginKind::Handler);
    assert_eq!(plugin.info().name, "welcome-email");
    assert_eq!(plugin.label(), "welcome-email");
    assert_eq!(
        plugin.info().subscriptions,
        [Subscription {
            queue: "emails".into(),
            topic: "user".into(),
            events: vec!["created".into()],
        }]
    );
    let destination = load(ECHO_DESTINATION, PluginSettings::default()).await;
    assert_eq!(destination.kind(), PluginKind::Destination);
}

/// Calls `spin.EVENT` twice on a plugin with a 200 ms timeout: each call crashes with the
/// timeout, and the instance is dropped.
async fn assert_stopped_by_the_deadline(event: &str) {
    let limit = Duration::from_millis(200);
    let limits = Limits {
        timeout: limit,
        ..Limits::default()
    };
    let plugin = load(SPIN_LOOP, capture(limits)).await;
    for _ in 0..2 {
        let report = plugin
            .handle(&delivery(&format!("spin.{event}"), "{}", "spin"))
            .await;
        assert_eq!(crash(&report), &Crash::Timeout { limit }, "spin.{event}");
    }
    assert_eq!(
        plugin.idle_instances(),
        0,
        "a timed-out instance is dropped"
    );
}

#[tokio::test]
async fn a_loop_is_stopped_by_its_deadline() {
    assert_stopped_by_the_deadline("loop").await;
}

/// A guest waiting in a host function (here sleeping an hour on a clock) runs no
/// WebAssembly, so no epoch tick can stop it: the call's own timer does.
#[tokio::test]
async fn a_call_blocked_in_a_host_function_is_stopped_by_its_deadline() {
    assert_stopped_by_the_deadline("sleep").await;
}

/// Where the process may not reserve address space for the instance pool (`ulimit -v`: here
/// 3 GB, far below the pool's terabytes), the runtime maps each instance's memory on its own
/// instead: plugins still load and run. In a child process, so that the limit binds only it.
#[test]
fn plugins_run_where_the_address_space_is_limited() {
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -v 3000000 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_courier-under-test"))
        .args([
            "test",
            NOOP,
            "--message",
            r#"{"name": "bench.noop", "payload": {}}"#,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(report["outcome"], "ok", "{report}");
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_its_limit() {
    let limits = Limits {
        memory_bytes: 32 << 20,
        max_uses: 100,
        ..Limits::default()
    };
    let plugin = load(MEMORY_BOMB, capture(limits)).await;
    let report = plugin
        .handle(&delivery("bomb.allocate", "{}", "bomb"))
        .await;
    assert_eq!(
        crash(&report),
        &Crash::Memory {
            limit_bytes: 32 << 20
        }
    );
    assert_eq!(plugin.idle_instances(), 0, "a killed instance is dropped");
}

#[tokio::test]
async fn a_trap_does_not_poison_the_pool() {
    let limits = Limits {
        max_uses: 100,
        ..Limits::default()
    };
    let plugin = load(TRAP, capture(limits)).await;
    let call = |payload: &'static str| {
        let plugin = plugin.clone();
        async move {
            plugin
                .handle(&delivery("trap.event", payload, "trap"))
                .await
        }
    };

    let first = call("{}").await;
    assert_eq!(first.result, Ok(Outcome::Ok));
    assert!(first.instance.fresh);
    let second = call("{}").await;
    assert_eq!(second.result, Ok(Outcome::Ok));
    assert!(!second.instance.fresh, "a healthy instance is reused");

    let trapped = call(r#"{"panic": true}"#).await;
    match crash(&trapped) {
        Crash::Trap { message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(
        !trapped.instance.fresh,
        "the trap happened on the reused instance"
    );
    assert!(
        trapped
            .logs
            .iter()
            .any(|line| line.source == LogSource::Stderr
                && line.message.contains("the payload asked for a panic")),
        "the panic message reaches the logs: {:?}",
        trapped.logs
    );

    let after = call("{}").await;
    assert_eq!(after.result, Ok(Outcome::Ok));
    assert!(after.instance.fresh, "the trapped instance was replaced");
    assert_eq!(after.instance.calls, 1);
}

#[tokio::test]
async fn instances_serve_at_most_max_uses_calls() {
    for (max_uses, expected_calls) in [
        (1, vec![1, 1, 1, 1]),
        (3, vec![1, 2, 3, 1, 2, 3, 1]),
        (100, vec![1, 2, 3, 4, 5]),
    ] {
        let limits = Limits {
            max_uses,
            ..Limits::default()
        };
        let plugin = load(NOOP, capture(limits)).await;
        let mut calls = Vec::new();
        for _ in 0..expected_calls.len() {
            let report = plugin.handle(&delivery("bench.noop", "{}", "bench")).await;
            assert_eq!(report.result, Ok(Outcome::Ok));
            assert_eq!(report.instance.fresh, report.instance.calls == 1);
            calls.push(report.instance.calls);
        }
        assert_eq!(calls, expected_calls, "max_uses {max_uses}");
    }
}

#[tokio::test]
async fn concurrent_calls_each_get_their_own_instance() {
    let limits = Limits {
        max_uses: 1_000,
        max_instances: 4,
        ..Limits::default()
    };
    let plugin = load(NOOP, capture(limits)).await;
    let calls = (0..16).map(|_| {
        let plugin = plugin.clone();
        tokio::spawn(async move { plugin.handle(&delivery("bench.noop", "{}", "bench")).await })
    });
    let reports = futures::future::join_all(calls).await;
    let mut fresh = 0;
    for report in reports {
        let report = report.expect("the call task completes");
        assert_eq!(report.result, Ok(Outcome::Ok));
        fresh += usize::from(report.instance.fresh);
    }
    assert!((1..=4).contains(&fresh), "{fresh} instances for 4 permits");
    assert_eq!(
        plugin.idle_instances(),
        fresh,
        "every instance went back to the pool"
    );
}

#[tokio::test]
async fn a_second_load_reads_the_compiled_cache() {
    let cache = tempfile::tempdir().unwrap();
    let first = runtime_with_cache(cache.path().to_path_buf())
        .load_file(NOOP, PluginSettings::default())
        .await
        .unwrap();
    assert!(first.load_stats().compiled);
    let cache_file = first.load_stats().cache_file.clone().unwrap();
    assert!(cache_file.starts_with(cache.path()) && cache_file.exists());

    // A new runtime (as after a restart) with the same configuration and directory.
    let second = runtime_with_cache(cache.path().to_path_buf())
        .load_file(NOOP, PluginSettings::default())
        .await
        .unwrap();
    assert!(!second.load_stats().compiled, "loaded from {cache_file:?}");
    assert_eq!(second.load_stats().cache_file.as_ref(), Some(&cache_file));
    let report = second.handle(&delivery("bench.noop", "{}", "bench")).await;
    assert_eq!(report.result, Ok(Outcome::Ok));
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime_with_cache(cache.path().to_path_buf());
    let first = runtime
        .load_file(NOOP, PluginSettings::default())
        .await
        .unwrap();
    let cache_file = first.load_stats().cache_file.clone().unwrap();

    for garbage in [
        &b""[..],
        b"not a compiled component",
        b"\x7fELF\x02\x01\x01\0garbage",
    ] {
        std::fs::write(&cache_file, garbage).unwrap();
        let reloaded = runtime
            .load_file(NOOP, PluginSettings::default())
            .await
            .unwrap();
        assert!(
            reloaded.load_stats().compiled,
            "recompiled over {garbage:?}"
        );
        let report = reloaded
            .handle(&delivery("bench.noop", "{}", "bench"))
            .await;
        assert_eq!(report.result, Ok(Outcome::Ok));
        let again = runtime
            .load_file(NOOP, PluginSettings::default())
            .await
            .unwrap();
        assert!(!again.load_stats().compiled, "the entry was rewritten");
    }
}

#[tokio::test]
async fn components_that_are_not_plugins_get_clear_errors() {
    let runtime = runtime();
    let cases: [(&str, Vec<u8>, &[&str]); 5] = [
        (
            "garbage",
            b"this is not WebAssembly".to_vec(),
            &["not a WebAssembly file"],
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            &[
                "a core WebAssembly module, not a component",
                "wasm-tools component new",
            ],
        ),
        (
            "truncated component",
            std::fs::read(NOOP).unwrap()[..100].to_vec(),
            &["invalid WebAssembly"],
        ),
        (
            "wrong world",
            std::fs::read(WRONG_WORLD).unwrap(),
            &[
                "not a Courier plugin",
                "courier:plugin/handler@0.1.0",
                "wasi:cli/run",
            ],
        ),
        (
            "other version",
            std::fs::read(OTHER_VERSION).unwrap(),
            &[
                "another version of the Courier contract",
                "courier:plugin/handler@0.2.0",
                "courier:plugin@0.1.0",
            ],
        ),
    ];
    for (case, bytes, expected) in cases {
        let error = runtime
            .load(bytes, PluginSettings::default())
            .await
            .expect_err(case)
            .to_string();
        for part in expected {
            assert!(error.contains(part), "{case}: {error:?} lacks {part:?}");
        }
    }
    let missing = runtime
        .load_file("/nonexistent/plugin.wasm", PluginSettings::default())
        .await
        .expect_err("no such file");
    assert!(matches!(missing, LoadError::Read { .. }), "{missing}");
    assert!(missing.to_string().contains("/nonexistent/plugin.wasm"));
}

#[tokio::test]
async fn invalid_settings_are_rejected_at_load() {
    let cases: [(PluginSettings, &str); 4] = [
        (
            capture(Limits {
                memory_bytes: 1 << 40,
                ..Limits::default()
            }),
            "memory limit",
        ),
        (
            capture(Limits {
                max_uses: 0,
                ..Limits::default()
            }),
            "max_uses",
        ),
        (
            capture(Limits {
                max_instances: 17,
                ..Limits::default()
            }),
            "max_instances",
        ),
        (
            PluginSettings {
                allowed_hosts: vec!["exa mple.com".into()],
                ..PluginSettings::default()
            },
            "invalid grant \"exa mple.com\"",
        ),
    ];
    let runtime = runtime();
    for (settings, expected) in cases {
        let error = runtime
            .load_file(NOOP, settings)
            .await
            .expect_err(expected)
            .to_string();
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
    }
}

#[tokio::test]
async fn a_request_to_a_host_not_granted_is_denied_in_the_guest() {
    let mut settings = capture(Limits::default());
    settings
        .config
        .insert("url".into(), "https://example.com/hook".into());
    settings.allowed_hosts = vec!["example.org".into()];
    // Network mode: a denied request must never reach it.
    settings.http = HttpMode::Network;
    let plugin = load(HTTP_CALL, settings).await;
    let report = plugin.handle(&delivery("http.call", "{}", "http")).await;

    match &report.result {
        Ok(Outcome::Retry { reason, .. }) => assert!(
            reason.contains("denied") && reason.contains("example.com"),
            "{reason}"
        ),
        other => panic!("expected a retry naming the denial, got {other:?}"),
    }
    assert_eq!(report.http_requests.len(), 1);
    assert_eq!(report.http_requests[0].method, "GET");
    assert_eq!(report.http_requests[0].url, "https://example.com/hook");
    assert_eq!(report.http_requests[0].result, HttpRequestResult::Denied);
    let host_lines: Vec<&str> = report
        .logs
        .iter()
        .filter(|line| line.source == LogSource::Host)
        .map(|line| line.message.as_str())
        .collect();
    assert_eq!(host_lines.len(), 1, "{host_lines:?}");
    for part in ["GET https://example.com/hook", "not granted", "grants"] {
        assert!(
            host_lines[0].contains(part),
            "{:?} lacks {part:?}",
            host_lines[0]
        );
    }
}

#[tokio::test]
async fn guest_output_becomes_log_lines() {
    let plugin = load(STDOUT, capture(Limits::default())).await;
    let delivery = delivery("stdout.print", "{}", "stdout");
    let report = plugin.handle(&delivery).await;
    assert_eq!(report.result, Ok(Outcome::Ok));
    let id = delivery.message.id;
    let lines: Vec<(LogSource, &str)> = report
        .logs
        .iter()
        .map(|line| (line.source, line.message.as_str()))
        .collect();
    assert!(
        lines.contains(&(LogSource::Stdout, &format!("stdout line for {id}")))
            && lines.contains(&(LogSource::Stderr, &format!("stderr line for {id}"))),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_plugin_receives_every_field_of_a_delivery_as_sent() {
    assert_receives_every_field_as_sent(ECHO_DESTINATION).await;
}

/// The same batch through the JavaScript destination, whose bindings lift a batch of
/// deliveries from one view of the guest's memory (`sdk/js/build.mjs`).
#[tokio::test]
async fn a_javascript_destination_receives_every_field_of_a_batch_as_sent() {
    assert_receives_every_field_as_sent(ECHO_DESTINATION_JS).await;
}

/// Delivers a batch of a large delivery and two described ones, one with headers, then one of
/// them alone, then the two described ones around one that asks the plugin to grow its
/// memory, to an echo destination: each described answer spells out every field as the
/// plugin received it.
async fn assert_receives_every_field_as_sent(path: &str) {
    let plugin = load(path, capture(Limits::default())).await;
    let described = |id: Uuid, headers: &str, queue: &str, attempt: u32| Outcome::Fatal {
        reason: format!(
            "id={id} name=order.placed topic=order payload={{\"describe\":true}} \
                 published=1700000000123 due=1700000004567 headers={headers} queue={queue} \
                 attempt={attempt}"
        ),
    };
    let mut first = delivery("order.placed", r#"{"describe": true}"#, "orders");
    first.message.published_at_ms = 1_700_000_000_123;
    first.message.deliver_at_ms = 1_700_000_004_567;
    first.message.headers = vec![
        ("trace-id".into(), "abc".into()),
        ("tenant".into(), "é".into()),
    ];
    first.attempt = 4;
    let mut second = first.clone();
    second.message.id = Uuid::now_v7();
    second.message.headers.clear();
    second.queue = "orders-eu".into();
    second.attempt = 1;

    // A first delivery with a payload of 4 MiB: lifting it grows the guest's memory before
    // the others are lifted.
    let large = delivery(
        "order.placed",
        &format!(r#"{{"pad": "{}"}}"#, "x".repeat(4 << 20)),
        "orders",
    );

    let batch = plugin
        .deliver(&[large, first.clone(), second.clone()])
        .await;
    assert_eq!(
        batch.result,
        Ok(vec![
            Outcome::Ok,
            described(
                first.message.id,
                r#"[("trace-id", "abc"), ("tenant", "é")]"#,
                "orders",
                4
            ),
            described(second.message.id, "[]", "orders-eu", 1),
        ])
    );
    let single = plugin.handle(&second).await;
    assert_eq!(
        single.result,
        Ok(described(second.message.id, "[]", "orders-eu", 1))
    );

    // Answers lowered after the plugin grew its memory by 8 MiB while answering (the
    // JavaScript destination does; the Rust one ignores the request), in a batch of 4,000:
    // the JavaScript destination's list of answers (128 KB) is then allocated past the
    // memory its bindings viewed when they lifted the batch (a build whose tag writes went
    // nowhere outside that view failed here).
    let mut batch = vec![
        first.clone(),
        delivery("order.placed", r#"{"grow": 8}"#, "orders"),
        second.clone(),
    ];
    batch.extend((3..4000).map(|_| delivery("order.placed", "{}", "orders")));
    let grown = plugin
        .deliver(&batch)
        .await
        .result
        .expect("a batch answered");
    assert_eq!(grown.len(), 4000);
    assert_eq!(
        grown[..3],
        [
            described(
                first.message.id,
                r#"[("trace-id", "abc"), ("tenant", "é")]"#,
                "orders",
                4,
            ),
            Outcome::Ok,
            described(second.message.id, "[]", "orders-eu", 1),
        ]
    );
    let not_ok = grown[3..].iter().filter(|outcome| **outcome != Outcome::Ok);
    assert_eq!(not_ok.count(), 0);
}

#[tokio::test]
async fn a_destination_answers_one_outcome_per_delivery() {
    let plugin = load(ECHO_DESTINATION, capture(Limits::default())).await;
    let batch = [
        delivery("echo.event", "{}", "echo"),
        delivery("echo.event", r#"{"fail": true}"#, "echo"),
        delivery("echo.event", r#"{"fail": false}"#, "echo"),
    ];
    let report = plugin.deliver(&batch).await;
    let failed_id = batch[1].message.id;
    assert_eq!(
        report.result,
        Ok(vec![
            Outcome::Ok,
            Outcome::Fatal {
                reason: format!("message {failed_id} asked to fail")
            },
            Outcome::Ok,
        ])
    );
    assert_eq!(report.logs.len(), 1);
    assert_eq!(report.logs[0].message, "batch of 3 deliveries");

    let single = plugin.handle(&batch[0]).await;
    assert_eq!(
        single.result,
        Ok(Outcome::Ok),
        "handle sends a batch of one"
    );

    let handler = load(NOOP, PluginSettings::default()).await;
    let wrong = handler.deliver(&batch).await;
    assert_eq!(
        wrong.result,
        Err(CallError::WrongKind {
            kind: PluginKind::Handler
        })
    );
}

/// Records the events of target `courier::plugin` with their fields, on the current thread.
#[derive(Clone, Default)]
struct PluginEvents(std::sync::Arc<std::sync::Mutex<Vec<BTreeMap<String, String>>>>);

struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for PluginEvents {
    fn enabled(&self, _metadata: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() != "courier::plugin" {
            return;
        }
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        fields
            .0
            .insert("level".into(), event.metadata().level().to_string());
        self.0.lock().unwrap().push(fields.0);
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

#[test]
fn in_tracing_mode_plugin_lines_carry_the_delivery_tags() {
    let events = PluginEvents::default();
    let mut delivery = delivery("user.created", r#"{"email": "ada@example.com"}"#, "emails");
    delivery.attempt = 3;
    let report = tracing::subscriber::with_default(events.clone(), || {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio.block_on(async {
            let plugin = load(WELCOME_EMAIL, PluginSettings::default()).await;
            plugin.handle(&delivery).await
        })
    });
    assert_eq!(report.result, Ok(Outcome::Ok));
    assert!(
        report.logs.is_empty(),
        "nothing is captured in tracing mode"
    );
    let events = events.0.lock().unwrap();
    let expected: BTreeMap<String, String> = [
        ("level", "INFO"),
        ("plugin", "welcome-email"),
        ("source", "plugin"),
        ("queue", "emails"),
        ("message_id", &delivery.message.id.to_string()),
        ("attempt", "3"),
        (
            "message",
            "sending welcome email to ada@example.com from no-reply@example.com",
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect();
    assert_eq!(events.as_slice(), [expected]);
}
