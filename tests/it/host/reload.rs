//! Hot reload: new versions swap in while messages flow and lose nothing; a broken file never
//! replaces a working version; conflicting plugins are refused.

use std::time::Duration;

use courier_tests::components;
use courier_tests::postgres::TestDatabase;
use serde_json::{Value, json};

use super::{TestHost, api_list, eventually, install, write_sidecar};

/// What the API says about plugin `name`.
async fn plugin_status(host: &TestHost, name: &str) -> Value {
    api_list(host, "/v1/plugins", "plugins")
        .await
        .into_iter()
        .find(|plugin| plugin["name"] == name)
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn garbage_never_replaces_a_working_version_and_its_error_is_shown() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(&database, &[("noop", components::NOOP)], &[]).await;
    let before = plugin_status(&host, "noop").await;
    let fingerprint = before["active"]["fingerprint"].clone();

    std::fs::write(
        host.plugins.path().join("noop.wasm"),
        b"this is not WebAssembly",
    )
    .unwrap();
    let status = eventually("the load error to show", || async {
        let status = plugin_status(&host, "noop").await;
        status["error"]["message"].is_string().then_some(status)
    })
    .await;
    let message = status["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("noop.wasm") && message.contains("not a WebAssembly file"),
        "{message}"
    );
    assert_eq!(
        status["active"]["fingerprint"], fingerprint,
        "the old version keeps serving"
    );
    assert_eq!(status["state"], "loaded");

    for index in 0..20 {
        super::publish_sql(&database, "bench.noop", json!({"index": index})).await;
    }
    host.wait_delivered("bench", 20).await;

    // A fixed file clears the error.
    install(host.plugins.path(), "noop", components::NOOP);
    eventually("the error to clear", || async {
        plugin_status(&host, "noop").await["error"]
            .is_null()
            .then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test]
async fn new_versions_swap_in_under_a_steady_stream_and_nothing_is_lost() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(&database, &[("noop", components::NOOP)], &[]).await;
    let dir = host.plugins.path().to_owned();
    const MESSAGES: usize = 3000;

    let publisher = {
        let pool = database.pool().clone();
        tokio::spawn(async move {
            for chunk in 0..(MESSAGES / 50) {
                let payloads: Vec<Value> = (0..50).map(|i| json!({"n": chunk * 50 + i})).collect();
                sqlx::query(
                    "select courier.publish('bench.noop', p) from jsonb_array_elements($1) p",
                )
                .bind(Value::Array(payloads))
                .execute(&pool)
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut generations = Vec::new();
    for version in 0..4 {
        // A changed sidecar is a new version.
        write_sidecar(
            &dir,
            "noop",
            &format!("[config]\nversion = \"{version}\"\n"),
        );
        let generation = eventually("the new version to be active", || async {
            let active = host.host.registry().active();
            let current = active.get("noop")?;
            (current.sidecar.config.get("version").map(String::as_str)
                == Some(&version.to_string()))
            .then_some(current.generation)
        })
        .await;
        generations.push(generation);
        if version == 1 {
            std::fs::write(dir.join("noop.wasm"), b"\0asm garbage").unwrap();
            eventually("the broken file to be refused", || async {
                plugin_status(&host, "noop").await["error"]["message"]
                    .is_string()
                    .then_some(())
            })
            .await;
            let active = host.host.registry().active();
            assert_eq!(
                active["noop"].generation, generation,
                "a broken file never replaces a working version"
            );
            install(&dir, "noop", components::NOOP);
        }
    }
    publisher.await.unwrap();
    let bench = host.wait_delivered("bench", MESSAGES as i64).await;
    assert_eq!((bench.delivered, bench.dead), (MESSAGES as i64, 0));
    assert!(
        generations.windows(2).all(|pair| pair[0] < pair[1]),
        "{generations:?}"
    );
    host.stop().await;
}

#[tokio::test]
async fn a_removed_plugin_stops_claiming_and_its_queue_keeps_the_backlog() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(&database, &[("noop", components::NOOP)], &[]).await;
    std::fs::remove_file(host.plugins.path().join("noop.wasm")).unwrap();
    eventually("the plugin to go", || async {
        (!host.host.registry().active().contains_key("noop")).then_some(())
    })
    .await;
    for index in 0..5 {
        super::publish_sql(&database, "bench.noop", json!({"index": index})).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bench = host.queue("bench").await;
    assert_eq!((bench.pending, bench.delivered), (5, 0));

    install(host.plugins.path(), "noop", components::NOOP);
    host.wait_delivered("bench", 5).await;
    host.stop().await;
}

#[tokio::test]
async fn two_plugins_may_not_serve_the_same_queue_and_event() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(&database, &[("noop", components::NOOP)], &[]).await;
    write_sidecar(
        host.plugins.path(),
        "copycat",
        "[[subscriptions]]\nqueue = \"bench\"\ntopic = \"bench\"\nevents = [\"noop\", \"other\"]\n",
    );
    install(host.plugins.path(), "copycat", components::NOOP);
    let status = eventually("the conflict to be reported", || async {
        let status = plugin_status(&host, "copycat").await;
        status["error"]["message"].is_string().then_some(status)
    })
    .await;
    let message = status["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`bench`") && message.contains("bench.noop") && message.contains("`noop`"),
        "{message}"
    );
    assert!(status["active"].is_null());

    // Once the first plugin goes, the second one is loaded.
    std::fs::remove_file(host.plugins.path().join("noop.wasm")).unwrap();
    eventually("the second plugin to take over", || async {
        host.host
            .registry()
            .active()
            .contains_key("copycat")
            .then_some(())
    })
    .await;
    host.stop().await;
}

#[tokio::test]
async fn a_sidecar_with_a_missing_environment_variable_is_refused_with_its_name() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(&database, &[], &[]).await;
    write_sidecar(
        host.plugins.path(),
        "mailer",
        "[config]\nkey = \"${env:COURIER_TEST_SURELY_UNSET_VARIABLE}\"\n",
    );
    install(host.plugins.path(), "mailer", components::WELCOME_EMAIL);
    let status = eventually("the sidecar error", || async {
        let status = plugin_status(&host, "mailer").await;
        status["error"]["message"].as_str().map(str::to_owned)
    })
    .await;
    assert!(
        status.contains("mailer.toml") && status.contains("COURIER_TEST_SURELY_UNSET_VARIABLE"),
        "{status}"
    );
    host.stop().await;
}
