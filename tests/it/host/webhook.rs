//! The `webhook` destination through the host, against a real HTTP endpoint on loopback:
//! `Retry-After` is honoured, 410 dead-letters at once, an endpoint that is down is retried
//! until the attempt limit, and a host that is not granted fails with a clear reason.

use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use courier_tests::components;
use courier_tests::postgres::TestDatabase;
use serde_json::{Value, json};

use super::{TestHost, api_list, eventually, publish_sql, queue_view, quick_retry};
use crate::webhook::{ROTATED_SECRET, Received, SECRET, assert_verifies, read_request};

/// A loopback endpoint that answers its connections with `responses`, in order, and sends
/// each request it received with the instant it arrived.
fn endpoint(responses: Vec<&'static str>) -> (String, mpsc::Receiver<(Instant, Received)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for response in responses {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let received = read_request(&stream);
            let arrived = Instant::now();
            let mut stream = stream;
            let _ = stream.write_all(response.as_bytes());
            if sender.send((arrived, received)).is_err() {
                return;
            }
        }
    });
    (address, receiver)
}

/// The sidecar of a webhook posting to `address`, granted it when `granted`.
fn sidecar(address: &str, granted: bool, retry: &str) -> String {
    let grants = if granted {
        format!("[grants]\noutbound_hosts = [\"{address}\"]\n")
    } else {
        String::new()
    };
    format!(
        "[config]\nurl = \"http://{address}/hooks\"\nsecret = \"{SECRET} {ROTATED_SECRET}\"\n\
         timeout_ms = \"2000\"\n{grants}{retry}"
    )
}

/// A host serving the webhook destination posting to `address` (see [`sidecar`]).
async fn start_webhook(
    database: &TestDatabase,
    address: &str,
    granted: bool,
    retry: &str,
) -> TestHost {
    TestHost::start(
        database,
        &[("webhook", components::WEBHOOK)],
        &[("webhook", &sidecar(address, granted, retry))],
    )
    .await
}

async fn one_dead_letter(host: &TestHost) -> Value {
    eventually("a dead letter", || async {
        api_list(host, "/v1/dead-letters", "dead_letters")
            .await
            .into_iter()
            .next()
    })
    .await
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_that_delay_and_delivered_once() {
    let database = TestDatabase::new().await;
    let (address, received) = endpoint(vec![
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy",
        "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
    ]);
    // The policy alone would wait 30 s: a retry after about 2 s can only come from the header.
    let retry = "[retry]\npolicy = \"constant\"\ndelay = \"30s\"\njitter = 0\nmax_attempts = 5\n";
    let host = start_webhook(&database, &address, true, retry).await;

    let id = publish_sql(&database, "email.sent", json!({"to": "ada@example.com"})).await;
    host.wait_delivered("webhook", 1).await;

    let (first_at, first) = received.recv_timeout(Duration::from_secs(5)).unwrap();
    let (second_at, second) = received.recv_timeout(Duration::from_secs(5)).unwrap();
    let waited = second_at - first_at;
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(25),
        "the retry came {waited:?} after the 503"
    );
    for request in [&first, &second] {
        assert_eq!(request.request_line, "POST /hooks HTTP/1.1");
        assert_verifies(&request.headers, &request.body);
        let webhook_id = request
            .headers
            .iter()
            .find(|(name, _)| name == "webhook-id")
            .map(|(_, value)| value.clone());
        assert_eq!(webhook_id, Some(id.to_string()), "the same id on every try");
    }
    assert!(
        received.recv_timeout(Duration::from_millis(300)).is_err(),
        "delivered once"
    );
    host.stop().await;
}

#[tokio::test]
async fn a_410_dead_letters_at_once() {
    let database = TestDatabase::new().await;
    let (address, received) = endpoint(vec![
        "HTTP/1.1 410 Gone\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ]);
    let host = start_webhook(&database, &address, true, &quick_retry(5)).await;

    publish_sql(&database, "email.sent", json!({"to": "ada@example.com"})).await;
    let dead = one_dead_letter(&host).await;
    assert_eq!(dead["queue"], "webhook");
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["last_error"].as_str().unwrap().contains("410"),
        "{dead}"
    );
    assert!(received.recv_timeout(Duration::from_secs(5)).is_ok());
    assert_eq!(queue_view(host.host.outbox(), "webhook").await.pending, 0);
    host.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_retried_then_dead_lettered_after_the_limit() {
    let database = TestDatabase::new().await;
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    // The listener is dropped: nothing listens on `address` any more.
    let host = start_webhook(&database, &address, true, &quick_retry(3)).await;

    publish_sql(&database, "email.sent", json!({"to": "ada@example.com"})).await;
    let dead = one_dead_letter(&host).await;
    assert_eq!(dead["attempts"], 3);
    let reason = dead["last_error"].as_str().unwrap();
    assert!(reason.contains(&address), "{reason}");
    host.stop().await;
}

#[tokio::test]
async fn a_host_that_is_not_granted_fails_with_a_reason_naming_it() {
    let database = TestDatabase::new().await;
    let (address, received) =
        endpoint(vec!["HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"]);
    let host = start_webhook(&database, &address, false, &quick_retry(3)).await;

    publish_sql(&database, "email.sent", json!({"to": "ada@example.com"})).await;
    let dead = one_dead_letter(&host).await;
    let reason = dead["last_error"].as_str().unwrap();
    assert!(
        reason.contains("not granted") && reason.contains(&address),
        "{reason}"
    );
    assert!(
        received.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing reached the endpoint"
    );
    host.stop().await;
}
