//! The Rust SDK as plugins see it, on the real runtime: the `sdk-probe` guest exercises the
//! attribute's metadata, typed payload decoding, outcomes with delays, configuration
//! parsing, follow-up options and log levels.

use std::time::Duration;

use courier_harness::{Harness, LogLevel, LogLine, LogSource, Outcome, PluginKind, TestMessage};
use courier_tests::components::SDK_PROBE;
use serde_json::json;
use uuid::Uuid;

fn probe() -> Harness {
    Harness::load(SDK_PROBE).unwrap()
}

fn fatal(reason: &str) -> Outcome {
    Outcome::Fatal {
        reason: reason.to_owned(),
    }
}

#[test]
fn the_attribute_describes_the_plugin() {
    let harness = probe();
    assert_eq!(harness.kind(), PluginKind::Handler);
    let info = harness.info();
    assert_eq!(
        (info.name.as_str(), info.version.as_str()),
        ("sdk-probe", "9.9.9")
    );
    let subscriptions: Vec<(&str, &str, Vec<&str>)> = info
        .subscriptions
        .iter()
        .map(|s| {
            (
                s.queue.as_str(),
                s.topic.as_str(),
                s.events.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        subscriptions,
        [
            ("probe", "probe", vec!["order"]),
            ("probe-audit", "audit", vec!["order", "refund"]),
        ]
    );
}

/// A payload that does not fit the handler's type never reaches the handler: the SDK
/// answers fatal, naming the message, the type and serde's error.
#[test]
fn a_payload_that_does_not_decode_is_fatal_with_a_clear_reason() {
    let harness = probe();
    let id = Uuid::parse_str("0190d4a8-7c1e-7000-8000-00000000002a").unwrap();
    for (payload, error) in [
        (
            r#"{"sku": "A-1"}"#,
            "missing field `quantity` at line 1 column 14",
        ),
        (
            r#"{"sku": "A-1", "quantity": -1}"#,
            "invalid value: integer `-1`, expected u32 at line 1 column 29",
        ),
        (
            "[1, 2]",
            "invalid type: integer `1`, expected a string at line 1 column 2",
        ),
    ] {
        let report = harness.deliver(TestMessage::raw("probe.order", payload).id(id));
        let reason = format!(
            "payload of probe.order (message 0190d4a8-7c1e-7000-8000-00000000002a) \
             does not decode as Order: {error}"
        );
        assert_eq!(report.outcome, Ok(fatal(&reason)), "{payload}");
        assert!(report.logs.is_empty(), "{payload}: {:?}", report.logs);
        assert!(report.published.is_empty(), "{payload}");
    }
}

#[test]
fn a_decoded_delivery_carries_every_field_and_publishes_with_options() {
    let harness = Harness::builder()
        .config("follow_up_id", "0190d4a8-7c1e-7000-8000-0000000000ff")
        .load(SDK_PROBE)
        .unwrap();
    let report = harness.deliver(
        TestMessage::new("probe.order", json!({"sku": "A-1", "quantity": 2}))
            .attempt(3)
            .published_at_ms(1_700_000_000_000),
    );
    assert_eq!(report.outcome, Ok(Outcome::Ok));
    assert_eq!(
        report.logs,
        [LogLine {
            level: LogLevel::Info,
            source: LogSource::Plugin,
            message: "order A-1 x 2 (attempt 3 in probe)".into(),
        }]
    );
    let [follow_up] = report.published.as_slice() else {
        panic!("one follow-up expected: {:?}", report.published);
    };
    assert_eq!(follow_up.name, "probe.accepted");
    assert_eq!(
        follow_up.id,
        Uuid::parse_str("0190d4a8-7c1e-7000-8000-0000000000ff").unwrap()
    );
    assert_eq!(follow_up.deliver_at_ms, Some(1_700_000_060_000));
    assert_eq!(
        follow_up.headers,
        [("source".to_owned(), "sdk-probe".to_owned())]
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&follow_up.payload).unwrap(),
        json!({"sku": "A-1", "quantity": 2})
    );
}

#[test]
fn outcomes_reach_the_host_with_their_reason_and_delay() {
    let harness = Harness::builder()
        .config("delay_ms", "2500")
        .load(SDK_PROBE)
        .unwrap();
    let order = |action: &str| {
        TestMessage::new(
            "probe.order",
            json!({"sku": "A-1", "quantity": 1, "action": action}),
        )
    };
    assert_eq!(
        harness.deliver(order("retry")).outcome,
        Ok(Outcome::Retry {
            reason: "asked to retry".into(),
            delay: Some(Duration::from_millis(2500)),
        })
    );
    assert_eq!(
        harness.deliver(order("fatal")).outcome,
        Ok(fatal("asked to fail"))
    );
    assert_eq!(
        harness.deliver(order("dance")).outcome,
        Ok(fatal("unknown action `dance`"))
    );
}

#[test]
fn a_follow_up_the_host_refuses_is_fatal_naming_the_event() {
    let report = probe().deliver(TestMessage::new(
        "probe.order",
        json!({"sku": "A-1", "quantity": 1, "action": "bad-publish"}),
    ));
    let reason = match &report.outcome {
        Ok(Outcome::Fatal { reason }) => reason.clone(),
        other => panic!("expected fatal, got {other:?}"),
    };
    assert!(
        reason.starts_with("cannot publish not-a-name: ") && reason.len() > 27,
        "{reason}"
    );
    assert!(report.published.is_empty());
}

#[test]
fn a_config_value_that_does_not_parse_is_fatal_naming_key_and_value() {
    let report = Harness::builder()
        .config("delay_ms", "soon")
        .load(SDK_PROBE)
        .unwrap()
        .deliver(TestMessage::new(
            "probe.order",
            json!({"sku": "A-1", "quantity": 1}),
        ));
    assert_eq!(
        report.outcome,
        Ok(fatal(
            "config `delay_ms` = `soon` is invalid: invalid digit found in string"
        ))
    );
}

#[test]
fn log_macros_keep_their_level() {
    let report = probe().deliver(TestMessage::new(
        "probe.order",
        json!({"sku": "A-1", "quantity": 1, "action": "levels"}),
    ));
    assert_eq!(report.outcome, Ok(Outcome::Ok));
    let levels: Vec<(LogLevel, &str)> = report
        .logs
        .iter()
        .filter(|line| line.source == LogSource::Plugin)
        .map(|line| (line.level, line.message.as_str()))
        .collect();
    assert_eq!(
        levels,
        [
            (LogLevel::Trace, "level trace"),
            (LogLevel::Debug, "level debug"),
            (LogLevel::Info, "level info"),
            (LogLevel::Warn, "level warn"),
            (LogLevel::Error, "level error"),
        ]
    );
}
