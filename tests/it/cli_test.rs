//! `courier test` and `courier plugins check`, run in-process through `courier::cli::run_with`
//! (the binary's `main` only forwards to `courier::cli::main`): exit status, the JSON report,
//! and error messages that name the problem.

use std::process::ExitCode;

use courier_tests::components::{ECHO_DESTINATION, FLAKY, TRAP, WELCOME_EMAIL, WRONG_WORLD};
use serde_json::{Value, json};

struct Run {
    code: ExitCode,
    stdout: String,
    stderr: String,
}

fn courier(args: &[&str]) -> Run {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = courier::cli::run_with(
        std::iter::once("courier").chain(args.iter().copied()),
        &mut stdout,
        &mut stderr,
    );
    Run {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!("stdout is not one JSON object ({error}): {}", self.stdout)
        })
    }
}

#[test]
fn test_prints_the_report_and_exits_0_on_ok() {
    let run = courier(&[
        "test",
        WELCOME_EMAIL,
        "--message",
        r#"{"name": "user.created", "payload": {"email": "ada@example.com"}, "id": "0190b1f4-7c1c-7cc0-8000-000000000001"}"#,
        "--config",
        "from=hello@courier.dev",
    ]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.stderr);
    assert_eq!(
        run.json(),
        json!({
            "outcome": "ok",
            "logs": [{
                "level": "info",
                "source": "plugin",
                "message": "sending welcome email to ada@example.com from hello@courier.dev",
            }],
            "published": [{
                "id": run.json()["published"][0]["id"],
                "name": "email.sent",
                "payload": {
                    "to": "ada@example.com",
                    "from": "hello@courier.dev",
                    "user_message_id": "0190b1f4-7c1c-7cc0-8000-000000000001",
                },
                "headers": [],
            }],
            "http_requests": [],
        })
    );
}

#[test]
fn test_exits_1_on_every_other_outcome() {
    let cases: [(&str, &[&str], Value); 3] = [
        (
            WELCOME_EMAIL,
            &["--message", r#"{"name": "user.created", "payload": {}}"#],
            json!({"outcome": "fatal", "reason": "payload has no `email` field"}),
        ),
        (
            FLAKY,
            &[
                "--message",
                r#"{"name": "flaky.event", "payload": {}}"#,
                "--attempt",
                "2",
                "--config",
                "succeed_at=3",
            ],
            json!({"outcome": "retry", "reason": "attempt 2 of 3"}),
        ),
        (
            TRAP,
            &[
                "--message",
                r#"{"name": "trap.event", "payload": {"panic": true}}"#,
            ],
            json!({"outcome": "crashed", "crash": "trap"}),
        ),
    ];
    for (plugin, args, expected) in cases {
        let mut all = vec!["test", plugin];
        all.extend_from_slice(args);
        let run = courier(&all);
        assert_eq!(run.code, ExitCode::from(1), "{plugin}: {}", run.stderr);
        let report = run.json();
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&report[key], value, "{plugin}: {key} in {report}");
        }
    }
}

#[test]
fn test_delivers_a_batch_to_a_destination() {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.json");
    std::fs::write(
        &batch,
        r#"[{"name": "echo.event", "payload": {}},
            {"name": "echo.event", "payload": {"fail": true}, "id": "0190b1f4-7c1c-7cc0-8000-000000000002"}]"#,
    )
    .unwrap();
    let run = courier(&["test", ECHO_DESTINATION, "--batch", batch.to_str().unwrap()]);
    assert_eq!(run.code, ExitCode::from(1), "{}", run.stderr);
    let report = run.json();
    let reason = "message 0190b1f4-7c1c-7cc0-8000-000000000002 asked to fail";
    assert_eq!(report["outcome"], "fatal");
    assert_eq!(report["reason"], reason);
    assert_eq!(
        report["outcomes"],
        json!([{"outcome": "ok"}, {"outcome": "fatal", "reason": reason}])
    );
    assert_eq!(report["logs"][0]["message"], "batch of 2 deliveries");
}

#[test]
fn test_exits_2_naming_the_wrong_argument() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("plugin.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let not_wasm = not_wasm.to_str().unwrap();
    let message = r#"{"name": "user.created", "payload": {}}"#;
    let cases: [(&[&str], &str); 9] = [
        (
            &[WELCOME_EMAIL, "--message", "{"],
            "--message is not valid JSON",
        ),
        (
            &[WELCOME_EMAIL, "--message", r#"{"payload": {}}"#],
            "`name` is missing",
        ),
        (
            &[
                WELCOME_EMAIL,
                "--message",
                r#"{"name": "user", "payload": {}}"#,
            ],
            "`name`: `user` is not a message name",
        ),
        (
            &[WELCOME_EMAIL, "--message", r#"{"name": "user.created"}"#],
            "`payload` is missing",
        ),
        (
            &[
                WELCOME_EMAIL,
                "--message",
                r#"{"name": "a.b", "payload": 1, "id": "7"}"#,
            ],
            "`id`: `7` is not a UUID",
        ),
        (
            &[WELCOME_EMAIL, "--message", message, "--config", "from"],
            "`from` is not KEY=VALUE",
        ),
        (
            &[WELCOME_EMAIL, "--message", message, "--attempt", "0"],
            "--attempt",
        ),
        (&[WELCOME_EMAIL], "--message"),
        (&[not_wasm, "--message", message], "not a WebAssembly file"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        let run = courier(&all);
        assert_eq!(run.code, ExitCode::from(2), "{args:?}: {}", run.stdout);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.contains(expected),
            "{args:?}: {:?} lacks {expected:?}",
            run.stderr
        );
    }

    let batch_on_handler = dir.path().join("batch.json");
    std::fs::write(&batch_on_handler, format!("[{message}]")).unwrap();
    let run = courier(&[
        "test",
        WELCOME_EMAIL,
        "--batch",
        batch_on_handler.to_str().unwrap(),
    ]);
    assert_eq!(run.code, ExitCode::from(2));
    assert!(run.stderr.contains("only destinations"), "{}", run.stderr);
}

#[test]
fn plugins_check_prints_what_a_plugin_declares() {
    let run = courier(&["plugins", "check", WELCOME_EMAIL]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "kind: handler");
    assert_eq!(lines[1], "name: welcome-email");
    assert!(lines[2].starts_with("version: "), "{lines:?}");
    assert_eq!(
        lines[3..],
        ["subscriptions:", "  queue emails: user.created"]
    );

    let destination = courier(&["plugins", "check", ECHO_DESTINATION]);
    assert!(
        destination.stdout.starts_with("kind: destination\n"),
        "{}",
        destination.stdout
    );
}

#[test]
fn plugins_check_explains_why_a_file_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, "hello").unwrap();
    for (path, expected) in [
        (WRONG_WORLD, "wasi:cli/run"),
        (garbage.to_str().unwrap(), "not a WebAssembly file"),
        ("/nonexistent.wasm", "cannot read /nonexistent.wasm"),
    ] {
        let run = courier(&["plugins", "check", path]);
        assert_eq!(run.code, ExitCode::from(1), "{path}");
        assert!(run.stdout.is_empty());
        assert!(
            run.stderr.contains("is not a valid Courier plugin") && run.stderr.contains(expected),
            "{path}: {}",
            run.stderr
        );
    }
}
