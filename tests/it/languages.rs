//! Plugins in other languages: the `welcome-email` plugins written in Rust, Python, JavaScript
//! and C answer one fixture table with the same outcomes, log lines and follow-up events; and
//! the Python and JavaScript runtimes, which import much of WASI, load and run with nothing
//! granted while every attempt to read a file, the environment or a socket fails inside the
//! guest.

use std::io::ErrorKind;
use std::net::TcpListener;

use courier_harness::{Harness, LogLevel, LogLine, LogSource, Outcome, Report, TestMessage};
use courier_tests::components::{
    NOOP, NOOP_JS, NOOP_PY, PROMISES_JS, SANDBOX_JS, SANDBOX_PY, WELCOME_EMAIL, WELCOME_EMAIL_C,
    WELCOME_EMAIL_JS, WELCOME_EMAIL_PY,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// The four variants of the same plugin, with the name each gives itself.
const WELCOME_EMAILS: &[(&str, &str)] = &[
    ("welcome-email", WELCOME_EMAIL),
    ("welcome-email-py", WELCOME_EMAIL_PY),
    ("welcome-email-js", WELCOME_EMAIL_JS),
    ("welcome-email-c", WELCOME_EMAIL_C),
];

/// One row of the table: a payload (raw JSON text, so that escapes reach the plugin as
/// written), the configured sender, and what every variant must answer.
struct Fixture {
    what: &'static str,
    payload: &'static str,
    from: Option<&'static str>,
    expected: Expected,
}

enum Expected {
    /// ok, one info line `sending welcome email to EMAIL from FROM`, one `email.sent`.
    Sent {
        email: &'static str,
        from: &'static str,
    },
    /// fatal with this reason, no logs, no follow-up.
    Fatal(&'static str),
}

const NO_EMAIL: &str = "payload has no `email` field";

fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            what: "a plain address, default sender",
            payload: r#"{"email": "ada@example.com"}"#,
            from: None,
            expected: Expected::Sent {
                email: "ada@example.com",
                from: "no-reply@example.com",
            },
        },
        Fixture {
            what: "the sender from config",
            payload: r#"{"email": "grace@example.com", "id": 42}"#,
            from: Some("hello@example.com"),
            expected: Expected::Sent {
                email: "grace@example.com",
                from: "hello@example.com",
            },
        },
        Fixture {
            what: "an empty configured sender is kept as it is",
            payload: r#"{"email": "alan@example.com"}"#,
            from: Some(""),
            expected: Expected::Sent {
                email: "alan@example.com",
                from: "",
            },
        },
        Fixture {
            what: "a nested `email` does not count, the top-level one does",
            payload: r#"{"profile": {"email": "nested@example.com"}, "tags": [1, 2.5e3, true, null],
                         "email": "top@example.com"}"#,
            from: None,
            expected: Expected::Sent {
                email: "top@example.com",
                from: "no-reply@example.com",
            },
        },
        Fixture {
            what: "escapes, non-ASCII and a surrogate pair are decoded",
            payload: r#"{"email": "\"zo\u00eb\"\\\/\t\u00e9\ud83d\ude00@example.com"}"#,
            from: Some("Zoë <zoe@example.com>"),
            expected: Expected::Sent {
                email: "\"zoë\"\\/\té😀@example.com",
                from: "Zoë <zoe@example.com>",
            },
        },
        Fixture {
            what: "an escaped key",
            payload: r#"{"em\u0061il": "escaped-key@example.com"}"#,
            from: None,
            expected: Expected::Sent {
                email: "escaped-key@example.com",
                from: "no-reply@example.com",
            },
        },
        Fixture {
            what: "no email",
            payload: r#"{"name": "Ada"}"#,
            from: None,
            expected: Expected::Fatal(NO_EMAIL),
        },
        Fixture {
            what: "an email that is a number",
            payload: r#"{"email": 42}"#,
            from: Some("hello@example.com"),
            expected: Expected::Fatal(NO_EMAIL),
        },
        Fixture {
            what: "an email that is null",
            payload: r#"{"email": null}"#,
            from: None,
            expected: Expected::Fatal(NO_EMAIL),
        },
        Fixture {
            what: "an email that is an object",
            payload: r#"{"email": {"address": "ada@example.com"}}"#,
            from: None,
            expected: Expected::Fatal(NO_EMAIL),
        },
        Fixture {
            what: "an array",
            payload: r#"["email", "ada@example.com"]"#,
            from: None,
            expected: Expected::Fatal(NO_EMAIL),
        },
        Fixture {
            what: "a string",
            payload: r#""ada@example.com""#,
            from: None,
            expected: Expected::Fatal(NO_EMAIL),
        },
        Fixture {
            what: "an empty object",
            payload: "{}",
            from: None,
            expected: Expected::Fatal(NO_EMAIL),
        },
    ]
}

/// What a delivery produced, with the follow-up events reduced to what every variant must
/// agree on: their name and parsed payload (their ids are new each time).
#[derive(Debug, PartialEq)]
struct Observed {
    outcome: Outcome,
    logs: Vec<LogLine>,
    published: Vec<(String, Value)>,
}

fn observe(variant: &str, fixture: &Fixture, report: Report) -> Observed {
    let outcome = report
        .outcome
        .unwrap_or_else(|error| panic!("{variant}, {}: the call failed: {error}", fixture.what));
    let published = report
        .published
        .iter()
        .map(|event| {
            let payload = serde_json::from_slice(&event.payload).unwrap_or_else(|error| {
                panic!(
                    "{variant}, {}: the follow-up is not JSON: {error}",
                    fixture.what
                )
            });
            assert_eq!(event.deliver_at_ms, None, "{variant}, {}", fixture.what);
            assert!(event.headers.is_empty(), "{variant}, {}", fixture.what);
            (event.name.clone(), payload)
        })
        .collect();
    Observed {
        outcome,
        logs: report.logs,
        published,
    }
}

fn expected(fixture: &Fixture, message_id: Uuid) -> Observed {
    match fixture.expected {
        Expected::Sent { email, from } => Observed {
            outcome: Outcome::Ok,
            logs: vec![LogLine {
                level: LogLevel::Info,
                source: LogSource::Plugin,
                message: format!("sending welcome email to {email} from {from}"),
            }],
            published: vec![(
                "email.sent".to_string(),
                json!({"to": email, "from": from, "user_message_id": message_id.to_string()}),
            )],
        },
        Expected::Fatal(reason) => Observed {
            outcome: Outcome::Fatal {
                reason: reason.to_string(),
            },
            logs: Vec::new(),
            published: Vec::new(),
        },
    }
}

fn load(path: &str, from: Option<&str>) -> Harness {
    let mut builder = Harness::builder();
    if let Some(from) = from {
        builder = builder.config("from", from);
    }
    builder
        .load(path)
        .unwrap_or_else(|error| panic!("cannot load {path}: {error}"))
}

/// Every variant names itself and subscribes exactly as the Rust one does.
fn assert_describes_itself(name: &str, harness: &Harness) {
    let info = harness.info();
    assert_eq!(info.name, name);
    assert_eq!(info.version, "0.1.0", "{name}");
    assert_eq!(info.subscriptions.len(), 1, "{name}");
    let subscription = &info.subscriptions[0];
    assert_eq!(
        (
            subscription.queue.as_str(),
            subscription.topic.as_str(),
            &subscription.events[..]
        ),
        ("emails", "user", &["created".to_string()][..]),
        "{name}"
    );
}

// One test for the whole table: the Python and JavaScript components take tens of seconds
// to compile the first time, so each variant is compiled once (the harness caches it).
#[test]
fn the_four_welcome_emails_answer_the_same_table_alike() {
    let fixtures = fixtures();
    for &(name, path) in WELCOME_EMAILS {
        assert_describes_itself(name, &load(path, None));
        // One harness per configuration, reused across rows: the instances are reused too,
        // as in production.
        let mut harnesses: Vec<(Option<&str>, Harness)> = Vec::new();
        for fixture in &fixtures {
            let index = match harnesses.iter().position(|(from, _)| *from == fixture.from) {
                Some(index) => index,
                None => {
                    harnesses.push((fixture.from, load(path, fixture.from)));
                    harnesses.len() - 1
                }
            };
            let harness = &harnesses[index].1;
            let id = Uuid::new_v4();
            let message =
                TestMessage::raw("user.created", fixture.payload.as_bytes().to_vec()).id(id);
            let observed = observe(name, fixture, harness.deliver(message));
            assert_eq!(observed, expected(fixture, id), "{name}, {}", fixture.what);
        }
    }
}

/// The benchmark's no-op handler in Rust, Python and JavaScript: each subscribes to
/// `bench.noop` on queue `bench` and answers ok at once, with no log line and no follow-up,
/// whatever the payload — `courier bench --plugin` compares the languages on that.
#[test]
fn the_noop_handlers_answer_ok_to_anything_in_every_language() {
    let payloads: [&[u8]; 3] = [
        b"{}",
        br#"{"email": "ada@example.com", "n": [1, 2]}"#,
        b"\xff not json",
    ];
    for (name, path) in [("noop", NOOP), ("noop-py", NOOP_PY), ("noop-js", NOOP_JS)] {
        let harness = load(path, None);
        let info = harness.info();
        assert_eq!(info.name, name);
        let subscriptions: Vec<_> = info
            .subscriptions
            .iter()
            .map(|s| (s.queue.as_str(), s.topic.as_str(), s.events.clone()))
            .collect();
        assert_eq!(
            subscriptions,
            [("bench", "bench", vec!["noop".to_string()])],
            "{name}"
        );
        for payload in payloads {
            let report = harness.deliver(TestMessage::raw("bench.noop", payload.to_vec()));
            assert_eq!(report.outcome, Ok(Outcome::Ok), "{name}, {payload:?}");
            assert!(report.logs.is_empty(), "{name}: {:?}", report.logs);
            assert!(
                report.published.is_empty(),
                "{name}: {:?}",
                report.published
            );
        }
    }
}

/// A JavaScript `handle` may answer with an outcome or with a promise of one (an `async
/// handle`): the host takes either, waits for the promise (host calls made after an `await`
/// still belong to the delivery), and counts an exception or a rejected promise as a crash,
/// logged with its stack.
/// An outcome is taken as `handle` returned it: a promise job it queued that changes the
/// returned object comes too late (the SDK's build lowers a plain answer at once).
#[test]
fn javascript_handlers_answer_with_a_value_or_a_promise() {
    let harness = load(PROMISES_JS, None);
    let retry = Outcome::Retry {
        reason: "asked to retry".to_string(),
        delay: Some(std::time::Duration::from_millis(1500)),
    };
    let fatal = Outcome::Fatal {
        reason: "asked to fail".to_string(),
    };
    let changed = Outcome::Fatal {
        reason: "changed after returning".to_string(),
    };
    for is_async in [false, true] {
        let ask = |answer: &str| {
            harness.deliver(TestMessage::new(
                "promise.ask",
                json!({ "answer": answer, "async": is_async }),
            ))
        };
        let follow_ups: &[&str] = if is_async { &["promise.settled"] } else { &[] };
        // Each answer once as is, and once after the handler grew the engine's heap by 2 MB
        // (the bindings write the answer through a view of memory taken before it grew).
        for grow in [0, 2] {
            for (answer, outcome) in [("ok", &Outcome::Ok), ("retry", &retry), ("fatal", &fatal)] {
                let report = harness.deliver(TestMessage::new(
                    "promise.ask",
                    json!({ "answer": answer, "async": is_async, "grow": grow }),
                ));
                assert_eq!(
                    report.outcome.as_ref(),
                    Ok(outcome),
                    "{answer}, async {is_async}, grow {grow}: {:?}",
                    report.logs
                );
                assert_eq!(
                    report.published_names(),
                    follow_ups,
                    "{answer}, async {is_async}, grow {grow}"
                );
            }
        }
        // A plain answer is taken as returned; an async one once its promise settles, after
        // the jobs queued before it.
        let expected = if is_async { &changed } else { &Outcome::Ok };
        assert_eq!(
            ask("ok-then-fatal").outcome.as_ref(),
            Ok(expected),
            "ok-then-fatal, async {is_async}"
        );
        let report = ask("throw");
        let crash = match &report.outcome {
            Err(error) => error.crash().expect("a crash").to_string(),
            Ok(outcome) => panic!("throw, async {is_async}: answered {outcome:?}"),
        };
        assert!(
            report
                .log_messages()
                .iter()
                .any(|line| line.contains("asked to throw (throw)")),
            "throw, async {is_async}: {crash}; {:?}",
            report.logs
        );
        // With the stack it was thrown from, through the handler.
        assert!(
            report
                .log_messages()
                .iter()
                .any(|line| line.contains("handle@") && line.contains("promises/index.js")),
            "throw, async {is_async}: no stack in {:?}",
            report.logs
        );
        // The instance that crashed is replaced: the next delivery is answered.
        assert_eq!(
            ask("ok").outcome,
            Ok(Outcome::Ok),
            "after a throw, async {is_async}"
        );
    }
}

/// Delivers one probe to a sandbox guest with nothing granted and returns its report lines,
/// after checking that nothing reached the loopback listener the guest tried to connect to.
fn probe_sandbox(path: &str) -> Vec<String> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let port = listener.local_addr().expect("its address").port();

    let harness = Harness::load(path).unwrap_or_else(|error| panic!("cannot load {path}: {error}"));
    let mut lines = Vec::new();
    // Twice: the instance that was refused everything serves the next delivery as well.
    for round in 1..=2 {
        let report = harness.deliver(TestMessage::new("sandbox.probe", json!({ "port": port })));
        assert_eq!(
            report.outcome,
            Ok(Outcome::Ok),
            "{path}, round {round}: {:?}",
            report.logs
        );
        lines = report
            .logs
            .iter()
            .filter(|line| line.source == LogSource::Plugin)
            .map(|line| line.message.clone())
            .collect();
    }
    match listener.accept() {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("{path}: the guest connected to the test listener from {peer}"),
        Err(error) => panic!("{path}: accept failed: {error}"),
    }
    lines
}

/// Checks that the guest reported exactly the three attempts, each denied for the reason
/// given (a fragment of the detail), so that an attempt that never reached the sandbox (a
/// missing module, say) does not pass for a denial.
fn assert_all_denied(path: &str, lines: &[String], reasons: [(&str, &str); 3]) {
    for (what, reason) in reasons {
        let line = lines
            .iter()
            .find(|line| line.starts_with(&format!("{what}: ")))
            .unwrap_or_else(|| panic!("{path}: no `{what}` line in {lines:?}"));
        assert!(
            line.starts_with(&format!("{what}: denied: ")),
            "{path}: {line}"
        );
        assert!(line.contains(reason), "{path}: {line:?} lacks {reason:?}");
    }
    assert_eq!(lines.len(), 3, "{path}: {lines:?}");
}

#[test]
fn python_runs_with_nothing_granted_and_reaches_nothing() {
    let lines = probe_sandbox(SANDBOX_PY);
    assert_all_denied(
        SANDBOX_PY,
        &lines,
        [
            // No directory is preopened, so no path resolves.
            ("file", "FileNotFoundError"),
            ("env", "no variables"),
            ("socket", "PermissionError"),
        ],
    );
}

#[test]
fn javascript_runs_with_nothing_granted_and_reaches_nothing() {
    let lines = probe_sandbox(SANDBOX_JS);
    assert_all_denied(
        SANDBOX_JS,
        &lines,
        [
            ("file", "no preopened directories"),
            ("env", "no variables"),
            ("socket", "access-denied"),
        ],
    );
}
