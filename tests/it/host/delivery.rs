//! Messages published by SQL and HTTP are delivered; retries, dead letters, redrive and
//! follow-up events work end to end.

use courier::api_client;
use courier_tests::components;
use courier_tests::postgres::TestDatabase;
use http::{Method, StatusCode};
use serde_json::json;

use super::{TestHost, api_list, eventually, install, publish_sql, quick_retry};

/// A noop plugin serving the `email.sent` follow-ups of welcome-email through queue `sent`.
const SENT_AUDIT: &str =
    "[[subscriptions]]\nqueue = \"sent\"\ntopic = \"email\"\nevents = [\"sent\"]\n";

#[tokio::test]
async fn sql_and_http_publishes_are_delivered_and_follow_ups_reach_a_second_plugin() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(
        &database,
        &[
            ("welcome-email", components::WELCOME_EMAIL),
            ("sent-audit", components::NOOP),
        ],
        &[("sent-audit", SENT_AUDIT)],
    )
    .await;

    publish_sql(
        &database,
        "user.created",
        json!({"email": "ada@example.com"}),
    )
    .await;
    let body = json!([
        {"name": "user.created", "payload": {"email": "grace@example.com"}},
        {"name": "user.created", "payload": {"email": "alan@example.com"}, "headers": {"trace": "1"}},
    ]);
    let response = api_client::send(
        host.address(),
        Method::POST,
        "/v1/messages",
        None,
        Some(body.to_string().into_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(response.status, StatusCode::ACCEPTED, "{:?}", response.body);
    assert_eq!(response.json()["ids"].as_array().unwrap().len(), 2);

    let emails = host.wait_delivered("emails", 3).await;
    assert_eq!((emails.delivered, emails.dead), (3, 0));
    // Each delivery published one `email.sent`, delivered to the second plugin.
    let sent = host.wait_delivered("sent", 3).await;
    assert_eq!((sent.delivered, sent.dead), (3, 0));
    host.wait_metric(
        "courier_delivered_total{plugin=\"welcome-email\",queue=\"emails\"}",
        3.0,
    )
    .await;
    assert_eq!(host.metric("courier_published_total{source=\"http\"}"), 2.0);
    assert_eq!(
        host.metric("courier_published_total{source=\"plugin\"}"),
        3.0
    );
    host.stop().await;
}

#[tokio::test]
async fn a_flaky_plugin_is_retried_until_it_succeeds() {
    let database = TestDatabase::new().await;
    let sidecar = format!("{}\n[config]\nsucceed_at = \"3\"\n", quick_retry(5));
    let host = TestHost::start(
        &database,
        &[("flaky", components::FLAKY)],
        &[("flaky", &sidecar)],
    )
    .await;

    publish_sql(&database, "flaky.event", json!({})).await;
    let flaky = host.wait_delivered("flaky", 1).await;
    assert_eq!(flaky.dead, 0);
    let labels = "{plugin=\"flaky\",queue=\"flaky\"}";
    host.wait_metric(&format!("courier_delivered_total{labels}"), 1.0)
        .await;
    // Each counter moves after its own outcome is recorded, not all at once: wait for them.
    host.wait_metric(&format!("courier_retried_total{labels}"), 2.0)
        .await;
    assert_eq!(host.metric(&format!("courier_calls_total{labels}")), 3.0);
    host.stop().await;
}

#[tokio::test]
async fn running_out_of_attempts_dead_letters_the_delivery() {
    let database = TestDatabase::new().await;
    let sidecar = format!("{}\n[config]\nsucceed_at = \"10\"\n", quick_retry(2));
    let host = TestHost::start(
        &database,
        &[("flaky", components::FLAKY)],
        &[("flaky", &sidecar)],
    )
    .await;

    publish_sql(&database, "flaky.event", json!({})).await;
    let dead = eventually("a dead letter", || async {
        api_list(&host, "/v1/dead-letters", "dead_letters")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(dead["queue"], "flaky");
    assert_eq!(dead["attempts"], 2);
    assert!(
        dead["last_error"].as_str().unwrap().contains("attempt 2"),
        "{dead}"
    );
    let next_page = format!("/v1/dead-letters?after={}", dead["id"]);
    let response = api_client::send(host.address(), Method::GET, &next_page, None, None)
        .await
        .unwrap();
    assert_eq!(response.json(), json!({"dead_letters": []}));
    host.stop().await;
}

#[tokio::test]
async fn a_fatal_outcome_is_dead_lettered_then_redriven_to_a_fixed_plugin() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(
        &database,
        &[("welcome-email", components::WELCOME_EMAIL)],
        &[],
    )
    .await;

    let id = publish_sql(&database, "user.created", json!({"name": "no email"})).await;
    let dead = eventually("a dead letter", || async {
        api_list(&host, "/v1/dead-letters?queue=emails", "dead_letters")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(dead["message_id"], id.to_string());
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["last_error"].as_str().unwrap().contains("email"),
        "{dead}"
    );
    assert_eq!(host.queue("emails").await.dead, 1);

    // The operator replaces the plugin with one that accepts the payload, then redrives.
    std::fs::remove_file(host.plugins.path().join("welcome-email.wasm")).unwrap();
    super::write_sidecar(
        host.plugins.path(),
        "fixed-email",
        "[[subscriptions]]\nqueue = \"emails\"\ntopic = \"user\"\nevents = [\"created\"]\n",
    );
    install(host.plugins.path(), "fixed-email", components::NOOP);
    eventually("the fixed plugin to replace the old one", || async {
        let active = host.host.registry().active();
        (active.contains_key("fixed-email") && !active.contains_key("welcome-email")).then_some(())
    })
    .await;

    let path = format!("/v1/dead-letters/{}/redrive", dead["id"]);
    let response = api_client::send(host.address(), Method::POST, &path, None, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
    let emails = host.wait_delivered("emails", 1).await;
    assert_eq!(emails.dead, 0);
    host.wait_metric(
        "courier_delivered_total{plugin=\"fixed-email\",queue=\"emails\"}",
        1.0,
    )
    .await;

    // Redriving it again finds nothing.
    let response = api_client::send(host.address(), Method::POST, &path, None, None)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    host.stop().await;
}

#[tokio::test]
async fn a_destination_gets_batches_and_per_delivery_outcomes() {
    let database = TestDatabase::new().await;
    let host = TestHost::start(
        &database,
        &[("echo", components::ECHO_DESTINATION)],
        &[(
            "echo",
            &format!("[limits]\nbatch_size = 10\n{}", quick_retry(1)),
        )],
    )
    .await;
    let mut messages = Vec::new();
    for index in 0..25 {
        messages
            .push(json!({"name": "echo.event", "payload": {"index": index, "fail": index == 7}}));
    }
    let response = api_client::send(
        host.address(),
        Method::POST,
        "/v1/messages",
        None,
        Some(serde_json::Value::Array(messages).to_string().into_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(response.status, StatusCode::ACCEPTED);
    let echo = eventually("the batch to be delivered", || async {
        let view = host.queue("echo").await;
        (view.delivered == 24 && view.dead == 1).then_some(view)
    })
    .await;
    assert_eq!(echo.pending, 0);
    host.stop().await;
}
