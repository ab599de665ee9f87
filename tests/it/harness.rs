//! The harness crate as a plugin author uses it: every example plugin, HTTP grants and stubs,
//! batches, and the blocking API inside and outside an async runtime.

use courier_harness::{
    Harness, HttpRequestResult, LogLevel, LogLine, LogSource, Outcome, PluginKind, TestMessage,
};
use courier_tests::components::{ECHO_DESTINATION, FLAKY, HTTP_CALL, WELCOME_EMAIL};
use serde_json::json;
use uuid::Uuid;

fn plugin_line(message: &str) -> LogLine {
    LogLine {
        level: LogLevel::Info,
        source: LogSource::Plugin,
        message: message.to_string(),
    }
}

#[test]
fn welcome_email_sends_and_records_the_email() {
    let harness = Harness::builder()
        .config("from", "hello@courier.dev")
        .load(WELCOME_EMAIL)
        .unwrap();
    assert_eq!(harness.kind(), PluginKind::Handler);
    assert_eq!(harness.default_queue(), "emails");

    let id = Uuid::now_v7();
    let report = harness
        .deliver(TestMessage::new("user.created", json!({"email": "ada@example.com"})).id(id));
    assert_eq!(report.outcome, Ok(Outcome::Ok));
    assert_eq!(
        report.logs,
        [plugin_line(
            "sending welcome email to ada@example.com from hello@courier.dev"
        )]
    );
    assert_eq!(report.published_names(), ["email.sent"]);
    assert_eq!(
        report.published_payload(0),
        Some(json!({"to": "ada@example.com", "from": "hello@courier.dev", "user_message_id": id}))
    );
    assert!(report.http_requests.is_empty());
}

#[test]
fn welcome_email_without_config_uses_the_default_sender() {
    let report = Harness::load(WELCOME_EMAIL)
        .unwrap()
        .deliver(TestMessage::new(
            "user.created",
            json!({"email": "bob@example.com"}),
        ));
    assert_eq!(
        report.log_messages(),
        ["sending welcome email to bob@example.com from no-reply@example.com"]
    );
}

#[test]
fn welcome_email_without_an_email_is_fatal() {
    let harness = Harness::load(WELCOME_EMAIL).unwrap();
    for payload in [json!({}), json!({"email": 42}), json!({"name": "Ada"})] {
        let report = harness.deliver(TestMessage::new("user.created", payload.clone()));
        assert_eq!(
            report.outcome,
            Ok(Outcome::Fatal {
                reason: "payload has no `email` field".into()
            }),
            "{payload}"
        );
        assert!(report.published.is_empty(), "{payload}");
    }
}

#[test]
fn flaky_retries_until_the_configured_attempt() {
    let harness = Harness::builder()
        .config("succeed_at", "4")
        .load(FLAKY)
        .unwrap();
    for (attempt, expected) in [
        (1, Some("attempt 1 of 4")),
        (2, Some("attempt 2 of 4")),
        (3, Some("attempt 3 of 4")),
        (4, None),
        (5, None),
    ] {
        let report = harness.deliver(TestMessage::new("flaky.event", json!({})).attempt(attempt));
        let expected = match expected {
            Some(reason) => Outcome::Retry {
                reason: reason.into(),
                delay: None,
            },
            None => Outcome::Ok,
        };
        assert_eq!(report.outcome, Ok(expected), "attempt {attempt}");
    }
}

#[test]
fn flaky_with_a_bad_setting_is_fatal() {
    let report = Harness::builder()
        .config("succeed_at", "soon")
        .load(FLAKY)
        .unwrap()
        .deliver(TestMessage::new("flaky.event", json!({})));
    match report.outcome {
        Ok(Outcome::Fatal { reason }) => {
            assert!(
                reason.contains("succeed_at") && reason.contains("soon"),
                "{reason}"
            )
        }
        other => panic!("expected fatal, got {other:?}"),
    }
}

#[test]
fn a_granted_request_reaches_its_stub() {
    let harness = Harness::builder()
        .config("url", "https://api.example.com/v1/send?x=1")
        .config("method", "POST")
        .grant("api.example.com")
        .stub_http(
            "https://api.example.com/v1/send?x=1",
            202,
            &[("content-type", "text/plain")],
            "queued",
        )
        .load(HTTP_CALL)
        .unwrap();
    let report = harness.deliver(TestMessage::new("http.call", json!({"n": 1})));
    assert_eq!(report.outcome, Ok(Outcome::Ok));
    assert_eq!(
        report.log_messages(),
        ["POST https://api.example.com/v1/send?x=1 -> 202 queued"]
    );
    assert_eq!(report.http_requests.len(), 1);
    let request = &report.http_requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.url, "https://api.example.com/v1/send?x=1");
    assert_eq!(request.body, br#"{"n":1}"#);
    assert!(
        request
            .headers
            .contains(&("content-type".into(), "application/json".into())),
        "{:?}",
        request.headers
    );
    assert_eq!(request.result, HttpRequestResult::Answered { status: 202 });
}

#[test]
fn a_granted_request_without_a_stub_is_answered_404() {
    let report = Harness::builder()
        .config("url", "https://api.example.com/missing")
        .grant("*.example.com")
        .stub_http("https://api.example.com/other", 200, &[], "")
        .load(HTTP_CALL)
        .unwrap()
        .deliver(TestMessage::new("http.call", json!({})));
    assert_eq!(report.outcome, Ok(Outcome::Ok));
    assert_eq!(report.http_requests[0].result, HttpRequestResult::NoStub);
    let messages = report.log_messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        messages[0],
        "no HTTP stub for GET https://api.example.com/missing: answered 404"
    );
    assert!(
        messages[1].starts_with("GET https://api.example.com/missing -> 404 no stub for"),
        "{messages:?}"
    );
}

#[test]
fn a_request_to_a_host_not_granted_is_denied_even_with_a_stub() {
    let report = Harness::builder()
        .config("url", "https://evil.example.net/steal")
        .grant("api.example.com")
        .stub_http("https://evil.example.net/steal", 200, &[], "")
        .load(HTTP_CALL)
        .unwrap()
        .deliver(TestMessage::new("http.call", json!({})));
    match &report.outcome {
        Ok(Outcome::Retry { reason, .. }) => assert!(reason.contains("denied"), "{reason}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    assert_eq!(report.http_requests[0].result, HttpRequestResult::Denied);
    let host_lines = report
        .logs
        .iter()
        .filter(|line| line.source == LogSource::Host && line.level == LogLevel::Warn)
        .count();
    assert_eq!(host_lines, 1, "{:?}", report.logs);
}

#[test]
fn a_destination_takes_a_batch() {
    let harness = Harness::load(ECHO_DESTINATION).unwrap();
    assert_eq!(harness.kind(), PluginKind::Destination);
    let failing = Uuid::now_v7();
    let report = harness.deliver_batch([
        TestMessage::new("echo.event", json!({})),
        TestMessage::new("echo.event", json!({"fail": true})).id(failing),
    ]);
    assert_eq!(
        report.outcomes,
        Ok(vec![
            Outcome::Ok,
            Outcome::Fatal {
                reason: format!("message {failing} asked to fail")
            }
        ])
    );
    assert_eq!(report.log_messages(), ["batch of 2 deliveries"]);
}

#[test]
fn messages_carry_queue_attempt_and_id_as_given() {
    let harness = Harness::builder()
        .queue("other-queue")
        .load(WELCOME_EMAIL)
        .unwrap();
    assert_eq!(harness.default_queue(), "other-queue");
    let id = Uuid::now_v7();
    let delivery = TestMessage::new("user.created", json!({}))
        .id(id)
        .attempt(7)
        .queue("explicit")
        .header("trace", "abc")
        .into_delivery(harness.default_queue());
    assert_eq!(delivery.queue, "explicit");
    assert_eq!(delivery.attempt, 7);
    assert_eq!(delivery.message.id, id);
    assert_eq!(delivery.message.headers, [("trace".into(), "abc".into())]);
    assert_eq!(delivery.message.payload, b"{}");
}

#[tokio::test]
async fn the_harness_works_inside_an_async_test() {
    let harness = Harness::builder()
        .config("from", "async@example.com")
        .load_async(WELCOME_EMAIL)
        .await
        .unwrap();
    let message = || TestMessage::new("user.created", json!({"email": "a@example.com"}));
    let awaited = harness.deliver_async(message()).await;
    assert_eq!(awaited.outcome, Ok(Outcome::Ok));
    // The blocking method, called from inside the runtime, runs on a helper thread.
    let blocking = harness.deliver(message());
    assert_eq!(blocking.outcome, Ok(Outcome::Ok));
    assert_eq!(blocking.log_messages(), awaited.log_messages());
}
