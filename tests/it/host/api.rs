//! The HTTP API's contract, on the router without a socket: authentication, validation
//! errors naming the field, body limits, and no database error text in answers.

use std::sync::Arc;

use axum::body::Body;
use courier::api::{ApiState, ApiToken, router};
use courier::metrics::Metrics;
use courier::registry::Registry;
use courier_runtime::{Runtime, RuntimeConfig};
use courier_tests::postgres::TestDatabase;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

struct TestApi {
    router: axum::Router,
    _database: TestDatabase,
    _plugins: tempfile::TempDir,
}

async fn test_api(body_limit: usize) -> TestApi {
    let database = TestDatabase::new().await;
    let outbox = courier_outbox::Outbox::new(database.pool().clone(), Default::default()).unwrap();
    outbox.migrate().await.unwrap();
    outbox
        .declare(&courier_outbox::Route::new("emails", "user", ["created"]).unwrap())
        .await
        .unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let registry = Arc::new(Registry::new(plugins.path(), runtime, outbox.clone()));
    let state = ApiState {
        outbox,
        registry,
        metrics: Metrics::new(),
        body_limit,
    };
    TestApi {
        router: router(state, ApiToken::new(Some(TOKEN))),
        _database: database,
        _plugins: plugins,
    }
}

impl TestApi {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Checks that a publish of `body` is refused with 400 and an error containing `expected`.
    async fn check_bad_publish(&self, body: &str, expected: &str) {
        let (status, answer) = self.call("POST", "/v1/messages", Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{body}: `{error}` should contain `{expected}`"
        );
    }
}

#[tokio::test]
async fn every_route_but_healthz_needs_the_token() {
    let api = test_api(1 << 20).await;
    let (status, body) = api.call("GET", "/healthz", None, "").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    for (method, path) in [
        ("POST", "/v1/messages"),
        ("GET", "/v1/queues"),
        ("GET", "/v1/plugins"),
        ("GET", "/v1/dead-letters"),
        ("POST", "/v1/dead-letters/1/redrive"),
        ("GET", "/metrics"),
    ] {
        for token in [None, Some("wrong-token-0123456789")] {
            let (status, body) = api.call(method, path, token, "{}").await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        }
    }
    let (status, _) = api.call("GET", "/v1/queues", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_messages_get_400_naming_the_field() {
    let api = test_api(1 << 20).await;
    api.check_bad_publish("{not json", "not valid JSON").await;
    api.check_bad_publish("\"text\"", "message object").await;
    api.check_bad_publish(r#"{"payload": {}}"#, "`name` is missing")
        .await;
    api.check_bad_publish(
        r#"{"name": "nodot", "payload": {}}"#,
        "`name`: `nodot` is not a message name",
    )
    .await;
    api.check_bad_publish(r#"{"name": "user created", "payload": {}}"#, "`name`")
        .await;
    api.check_bad_publish(r#"{"name": "user.created"}"#, "`payload` is missing")
        .await;
    api.check_bad_publish(
        r#"{"name": "user.created", "payload": 1, "id": "42"}"#,
        "`id`",
    )
    .await;
    api.check_bad_publish(
        r#"{"name": "user.created", "payload": 1, "deliver_at": "soon"}"#,
        "`deliver_at`",
    )
    .await;
    api.check_bad_publish(
        r#"[{"name": "a.b", "payload": 1}, {"name": "a", "payload": 1}]"#,
        "`[1].name`",
    )
    .await;
    api.check_bad_publish(r#"{"name": "a.b", "payload": 1, "extra": true}"#, "`extra`")
        .await;
}

#[tokio::test]
async fn good_messages_get_202_with_their_ids() {
    let api = test_api(1 << 20).await;
    let id = "0190b1f4-7c1c-7cc0-8000-000000000042";
    let body = json!({"name": "user.created", "payload": {"email": "ada@example.com"}, "id": id});
    let (status, answer) = api
        .call("POST", "/v1/messages", Some(TOKEN), &body.to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer, json!({"ids": [id]}));
    let (_, queues) = api.call("GET", "/v1/queues", Some(TOKEN), "").await;
    let emails = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "emails")
        .cloned();
    assert_eq!(emails.unwrap()["pending"], 1);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let api = test_api(4096).await;
    let payload = "x".repeat(5000);
    let body = json!({"name": "user.created", "payload": payload}).to_string();
    let (status, answer) = api.call("POST", "/v1/messages", Some(TOKEN), &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("4096"),
        "{answer}"
    );
}

#[tokio::test]
async fn dead_letter_routes_check_their_input() {
    let api = test_api(1 << 20).await;
    let (status, answer) = api
        .call("POST", "/v1/dead-letters/abc/redrive", Some(TOKEN), "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("`id`"),
        "{answer}"
    );
    let (status, _) = api
        .call("POST", "/v1/dead-letters/999/redrive", Some(TOKEN), "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = api
        .call("GET", "/v1/dead-letters?limit=0", Some(TOKEN), "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("`limit`"),
        "{answer}"
    );
    let (status, answer) = api
        .call("GET", "/v1/dead-letters?queue=bad%20queue", Some(TOKEN), "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = api.call("GET", "/v1/dead-letters", Some(TOKEN), "").await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"dead_letters": []}))
    );
}

#[tokio::test]
async fn database_errors_are_not_echoed() {
    let api = test_api(1 << 20).await;
    // Break the database under the API.
    sqlx::query("drop schema courier cascade")
        .execute(api._database.pool())
        .await
        .unwrap();
    let (status, answer) = api.call("GET", "/v1/queues", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let error = answer["error"].as_str().unwrap();
    assert!(
        !error.contains("courier") && !error.contains("relation"),
        "{error}"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let api = test_api(1 << 20).await;
    let (status, answer) = api.call("GET", "/metrics", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
    let text = answer.as_str().unwrap();
    assert!(
        text.contains("# TYPE courier_queue_pending gauge"),
        "{text}"
    );
    assert!(
        text.contains("courier_queue_pending{queue=\"emails\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn the_host_refuses_to_listen_beyond_loopback_without_a_token() {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut settings = super::test_settings(
        "postgres://nobody@127.0.0.1:1/none",
        plugins.path(),
        data.path(),
    );
    settings.listen = "0.0.0.0:0".parse().unwrap();
    let error = courier::host::Host::start(settings).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("0.0.0.0") && message.contains("COURIER_API_TOKEN"),
        "{message}"
    );
}
