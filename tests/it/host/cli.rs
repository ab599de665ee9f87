//! The real `courier` binary: `publish`, `queues`, `plugins`, `dead-letters` against a
//! running host's database, and `run` stopped by SIGTERM in the middle of a stream, losing
//! nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use courier_tests::components;
use courier_tests::postgres::TestDatabase;
use serde_json::{Value, json};
use sqlx::Connection as _;

use super::{TestHost, cache_dir, eventually, install, queue_view, quick_retry, wait_delivered};

const BINARY: &str = env!("CARGO_BIN_EXE_courier-under-test");

/// Runs `courier ARGS` against `database_url` and returns its output. Asynchronously: the
/// host it talks to may run on this test's runtime.
async fn courier(database_url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(BINARY)
        .args(args)
        .env("COURIER_DATABASE_URL", database_url)
        .env("COURIER_CACHE_DIR", cache_dir())
        .env_remove("COURIER_API_TOKEN")
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "courier failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn the_cli_publishes_and_shows_queues_plugins_and_dead_letters() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(
        &database,
        &[("welcome-email", components::WELCOME_EMAIL)],
        &[("welcome-email", &quick_retry(3))],
    )
    .await;
    let url = database.url();

    let published = stdout(
        &courier(
            url,
            &["publish", "user.created", r#"{"email": "ada@example.com"}"#],
        )
        .await,
    );
    let id: uuid::Uuid = published.trim().parse().unwrap();
    host.wait_delivered("emails", 1).await;

    let fatal_id = "0190b1f4-7c1c-7cc0-8000-0000000000aa";
    stdout(
        &courier(
            url,
            &[
                "publish",
                "user.created",
                r#"{"name": "no email"}"#,
                "--id",
                fatal_id,
            ],
        )
        .await,
    );
    eventually("the dead letter", || async {
        (host.queue("emails").await.dead == 1).then_some(())
    })
    .await;

    let queues: Value =
        serde_json::from_str(&stdout(&courier(url, &["queues", "--json"]).await)).unwrap();
    let emails = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "emails")
        .unwrap()
        .clone();
    assert_eq!(
        (emails["delivered"].clone(), emails["dead"].clone()),
        (json!(1), json!(1))
    );
    let table = stdout(&courier(url, &["queues"]).await);
    assert!(table.contains("emails"), "{table}");

    let listen = host.address().to_string();
    let plugins: Value = serde_json::from_str(&stdout(
        &courier(url, &["plugins", "--json", "--listen", &listen]).await,
    ))
    .unwrap();
    assert_eq!(plugins["plugins"][0]["name"], "welcome-email");
    assert_eq!(plugins["plugins"][0]["state"], "loaded");

    let dead: Value = serde_json::from_str(&stdout(
        &courier(url, &["dead-letters", "list", "--json"]).await,
    ))
    .unwrap();
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["message_id"], fatal_id);
    assert_ne!(letter["message_id"], id.to_string());
    let dead_id = letter["id"].to_string();
    stdout(&courier(url, &["dead-letters", "redrive", &dead_id]).await);
    // Fatal again: back in the dead letters, then purged.
    eventually("the redriven delivery to die again", || async {
        let view = host.queue("emails").await;
        (view.dead == 1 && view.pending == 0 && view.in_flight == 0).then_some(())
    })
    .await;
    let purged = stdout(&courier(url, &["dead-letters", "purge", "--queue", "emails"]).await);
    assert!(purged.contains("purged 1"), "{purged}");
    assert_eq!(host.queue("emails").await.dead, 0);
    host.stop().await;
}

#[tokio::test]
async fn cli_errors_name_the_problem() {
    let database = TestDatabase::new().await;
    let url = database.url();
    let output = courier(url, &["publish", "nodot", "{}"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NAME") && stderr.contains("nodot"),
        "{stderr}"
    );

    let output = courier(url, &["publish", "user.created", "{nope"]).await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("PAYLOAD_JSON"));

    let output = courier("postgres://courier@127.0.0.1:1/nowhere", &["queues"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("courier run"),
        "{stderr}"
    );

    let output = Command::new(BINARY)
        .args(["queues"])
        .env("COURIER_DATABASE_URL", url)
        .env("COURIER_POLL_INTERVAL", "often")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`poll_interval`") && stderr.contains("COURIER_POLL_INTERVAL"),
        "{stderr}"
    );

    let output = courier(url, &["plugins", "--listen", "127.0.0.1:1"]).await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("courier run"));
}

/// `courier run` as a child process; its API address is read from its standard output.
struct RunningHost {
    child: Child,
}

impl RunningHost {
    fn start(database_url: &str, plugins: &Path, data: &Path) -> RunningHost {
        let mut child = Command::new(BINARY)
            .args(["run", "--listen", "127.0.0.1:0", "--plugins"])
            .arg(plugins)
            .arg("--data-dir")
            .arg(data)
            .env("COURIER_DATABASE_URL", database_url)
            .env("COURIER_CACHE_DIR", cache_dir())
            .env("COURIER_POLL_INTERVAL", "100ms")
            .env("COURIER_SHUTDOWN_GRACE", "10s")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.next().unwrap().unwrap();
        assert!(ready.contains("Courier is running"), "{ready}");
        // Keep reading so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        RunningHost { child }
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "courier run exited with {exit}");
    }
}

#[tokio::test]
async fn sigterm_mid_stream_loses_nothing() {
    let database = TestDatabase::new().await;
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "noop", components::NOOP);
    let outbox = courier_outbox::Outbox::new(database.pool().clone(), Default::default()).unwrap();

    let host = RunningHost::start(database.url(), plugins.path(), data.path());
    eventually("the route to be declared", || async {
        let routes = outbox.routes().await.ok()?;
        (!routes.is_empty()).then_some(())
    })
    .await;
    const MESSAGES: i64 = 20_000;
    let payloads: Vec<Value> = (0..MESSAGES).map(|i| json!({"n": i})).collect();
    sqlx::query("select courier.publish('bench.noop', p) from jsonb_array_elements($1) p")
        .bind(Value::Array(payloads))
        .execute(database.pool())
        .await
        .unwrap();
    eventually("some deliveries", || async {
        (queue_view(&outbox, "bench").await.delivered > 0).then_some(())
    })
    .await;
    tokio::task::spawn_blocking(move || host.terminate())
        .await
        .unwrap();

    let after_stop = queue_view(&outbox, "bench").await;
    assert_eq!(
        after_stop.in_flight, 0,
        "every lease was released: {after_stop:?}"
    );
    assert_eq!(after_stop.dead, 0);
    assert_eq!(
        after_stop.delivered + after_stop.pending,
        MESSAGES,
        "{after_stop:?}"
    );

    let host = RunningHost::start(database.url(), plugins.path(), data.path());
    let bench = wait_delivered(&outbox, "bench", MESSAGES).await;
    assert_eq!((bench.delivered, bench.dead), (MESSAGES, 0));
    tokio::task::spawn_blocking(move || host.terminate())
        .await
        .unwrap();
}

#[tokio::test]
async fn courier_connects_with_jit_compilation_off() {
    let database = TestDatabase::new().await;
    // A server whose sessions compile with JIT by default (Postgres's own default).
    sqlx::query(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET jit = on', current_database()); END $$",
    )
    .execute(database.pool())
    .await
    .unwrap();
    let mut plain = sqlx::postgres::PgConnection::connect(database.url())
        .await
        .unwrap();
    let server_default: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    assert_eq!(server_default, "on");
    let settings = courier::config::Settings::with_defaults(courier::config::Database::Url(
        database.url().to_owned(),
    ));
    let connection = courier::database::Connection::open_for_command(&settings)
        .await
        .unwrap();
    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&connection.pool)
        .await
        .unwrap();
    assert_eq!(jit, "off", "statistics and claims are never JIT-compiled");
}
