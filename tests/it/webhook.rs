//! The `webhook` destination on the real runtime: what it sends (signed Standard Webhooks
//! requests, verified by an independent library), what each answer of the endpoint becomes,
//! and how it fails when the host is not granted or not reachable.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use courier_harness::{
    Harness, HarnessBuilder, HttpRequestRecord, HttpRequestResult, Outcome, PluginKind, TestMessage,
};
use courier_tests::components::WEBHOOK;
use serde_json::{Value, json};
use uuid::Uuid;

const URL: &str = "https://hooks.example.com/in";
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(crate) const ROTATED_SECRET: &str = "whsec_c2Vjb25kIHNlY3JldA==";

fn configured() -> HarnessBuilder {
    Harness::builder()
        .config("url", URL)
        .config("secret", format!("{SECRET} {ROTATED_SECRET}"))
        .grant("hooks.example.com")
}

fn email_sent(to: &str) -> TestMessage {
    TestMessage::new("email.sent", json!({"to": to})).id(Uuid::now_v7())
}

fn header<'a>(request: &'a HttpRequestRecord, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Checks the request with the `standardwebhooks` crate, once per secret.
pub(crate) fn assert_verifies(headers: &[(String, String)], body: &[u8]) {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    for secret in [SECRET, ROTATED_SECRET] {
        let verifier = standardwebhooks::Webhook::new(secret).unwrap();
        assert!(
            verifier.verify(body, &map).is_ok(),
            "{secret} does not verify {headers:?}"
        );
    }
}

#[test]
fn each_message_is_posted_signed_in_the_seed_json_form() {
    let harness = configured()
        .stub_http(URL, 204, &[], "")
        .load(WEBHOOK)
        .unwrap();
    assert_eq!(harness.kind(), PluginKind::Destination);
    let first = email_sent("ada@example.com")
        .published_at_ms(1_614_265_330_123)
        .header("tenant", "acme");
    let second = email_sent("bob@example.com");
    let report = harness.deliver_batch([first.clone(), second]);
    assert_eq!(report.outcomes, Ok(vec![Outcome::Ok, Outcome::Ok]));
    assert_eq!(report.http_requests.len(), 2);

    let request = &report.http_requests[0];
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("POST", URL)
    );
    assert_eq!(request.result, HttpRequestResult::Answered { status: 204 });
    assert_eq!(header(request, "content-type"), Some("application/json"));
    let id = first
        .clone()
        .into_delivery("webhook")
        .message
        .id
        .to_string();
    assert_eq!(header(request, "webhook-id"), Some(id.as_str()));
    let signature = header(request, "webhook-signature").unwrap();
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    assert_verifies(&request.headers, &request.body);

    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({
            "name": "email.sent",
            "meta": {
                "uuid": id,
                "published_at": "2021-02-25T15:02:10.123Z",
                "deliver_at": "2021-02-25T15:02:10.123Z",
                "headers": {"tenant": "acme"},
            },
            "payload": {"to": "ada@example.com"},
        })
    );
    let second_body: Value = serde_json::from_slice(&report.http_requests[1].body).unwrap();
    assert_eq!(second_body["payload"], json!({"to": "bob@example.com"}));
}

/// (status, response headers, response body, expected outcome).
type StatusCase = (
    u16,
    Vec<(&'static str, &'static str)>,
    &'static str,
    Outcome,
);

#[test]
fn the_endpoints_answer_decides_the_outcome() {
    let retry = |reason: &str, delay: Option<u64>| Outcome::Retry {
        reason: reason.to_owned(),
        delay: delay.map(Duration::from_secs),
    };
    let fatal = |reason: &str| Outcome::Fatal {
        reason: reason.to_owned(),
    };
    let cases: Vec<StatusCase> = vec![
        (200, vec![], "", Outcome::Ok),
        (202, vec![], "accepted", Outcome::Ok),
        (
            503,
            vec![("retry-after", "2")],
            "busy",
            retry(&format!("{URL} answered 503: busy"), Some(2)),
        ),
        (500, vec![], "", retry(&format!("{URL} answered 500"), None)),
        (
            429,
            vec![("retry-after", "30")],
            "",
            retry(&format!("{URL} answered 429"), Some(30)),
        ),
        (408, vec![], "", retry(&format!("{URL} answered 408"), None)),
        (
            410,
            vec![],
            "gone",
            fatal(&format!(
                "{URL} answered 410 Gone: the endpoint no longer accepts deliveries"
            )),
        ),
        (
            400,
            vec![],
            "{\"error\": \"bad signature\"}",
            fatal(&format!(
                "{URL} answered 400: {{\"error\": \"bad signature\"}}"
            )),
        ),
        (
            301,
            vec![("location", "https://new.example.com/in")],
            "",
            retry(
                &format!(
                    "{URL} answered 301, a redirect to https://new.example.com/in, which is \
                     not followed: configure the final URL"
                ),
                None,
            ),
        ),
    ];
    for (status, headers, body, expected) in cases {
        let report = configured()
            .stub_http(URL, status, &headers, body)
            .load(WEBHOOK)
            .unwrap()
            .deliver_batch([email_sent("ada@example.com")]);
        assert_eq!(report.outcomes, Ok(vec![expected]), "status {status}");
        assert_eq!(report.http_requests.len(), 1, "status {status}");
    }
}

#[test]
fn after_a_429_the_rest_of_the_batch_waits_without_a_request() {
    let report = configured()
        .stub_http(URL, 429, &[("retry-after", "5")], "")
        .load(WEBHOOK)
        .unwrap()
        .deliver_batch([email_sent("a@example.com"), email_sent("b@example.com")]);
    let expected = Outcome::Retry {
        reason: format!("{URL} answered 429"),
        delay: Some(Duration::from_secs(5)),
    };
    assert_eq!(report.outcomes, Ok(vec![expected.clone(), expected]));
    assert_eq!(report.http_requests.len(), 1);
}

#[test]
fn batch_mode_posts_one_signed_array() {
    let harness = configured()
        .config("mode", "batch")
        .stub_http(URL, 200, &[], "")
        .load(WEBHOOK)
        .unwrap();
    let messages = [
        email_sent("a@example.com"),
        email_sent("b@example.com"),
        email_sent("c@example.com"),
    ];
    let report = harness.deliver_batch(messages.clone());
    assert_eq!(report.outcomes, Ok(vec![Outcome::Ok; 3]));
    let [request] = report.http_requests.as_slice() else {
        panic!("one request expected: {:?}", report.http_requests);
    };
    assert_verifies(&request.headers, &request.body);
    let body: Vec<Value> = serde_json::from_slice(&request.body).unwrap();
    let recipients: Vec<&Value> = body
        .iter()
        .map(|message| &message["payload"]["to"])
        .collect();
    assert_eq!(
        recipients,
        [
            &json!("a@example.com"),
            &json!("b@example.com"),
            &json!("c@example.com")
        ]
    );
    let batch_id = header(request, "webhook-id").unwrap().to_owned();
    assert!(batch_id.starts_with("batch_"), "{batch_id}");

    // The same batch again (a retry) carries the same id.
    let again = harness.deliver_batch(messages);
    assert_eq!(
        header(&again.http_requests[0], "webhook-id"),
        Some(batch_id.as_str())
    );
}

#[test]
fn batch_mode_gives_every_message_the_batchs_outcome() {
    let report = configured()
        .config("mode", "batch")
        .stub_http(URL, 500, &[], "")
        .load(WEBHOOK)
        .unwrap()
        .deliver_batch([email_sent("a@example.com"), email_sent("b@example.com")]);
    let retry = Outcome::Retry {
        reason: format!("{URL} answered 500"),
        delay: None,
    };
    assert_eq!(report.outcomes, Ok(vec![retry.clone(), retry]));
}

#[test]
fn a_host_not_granted_fails_at_once_naming_the_host_to_grant() {
    let report = Harness::builder()
        .config("url", URL)
        .config("secret", SECRET)
        .load(WEBHOOK)
        .unwrap()
        .deliver_batch([email_sent("a@example.com"), email_sent("b@example.com")]);
    let fatal = Outcome::Fatal {
        reason: format!(
            "request to {URL} denied: the host `hooks.example.com` is not granted to this \
             plugin (grant it in the plugin's sidecar file)"
        ),
    };
    assert_eq!(report.outcomes, Ok(vec![fatal.clone(), fatal]));
    assert_eq!(report.http_requests.len(), 1);
    assert_eq!(report.http_requests[0].result, HttpRequestResult::Denied);
}

#[test]
fn a_configuration_error_is_fatal_naming_the_key() {
    for (config, reason) in [
        (
            vec![("secret", SECRET)],
            "config `url` is not set: the endpoint to POST to, for example https://example.com/webhooks",
        ),
        (
            vec![("url", URL)],
            "config `secret` is not set: one or more `whsec_...` signing secrets, separated by spaces or commas",
        ),
        (
            vec![("url", URL), ("secret", SECRET), ("mode", "bulk")],
            "config `mode` = `bulk` is invalid: expected `single` or `batch`",
        ),
    ] {
        let mut builder = Harness::builder().grant("hooks.example.com");
        for (key, value) in &config {
            builder = builder.config(*key, *value);
        }
        let report = builder
            .load(WEBHOOK)
            .unwrap()
            .deliver_batch([email_sent("a@example.com")]);
        assert_eq!(
            report.outcomes,
            Ok(vec![Outcome::Fatal {
                reason: reason.to_owned()
            }]),
            "{config:?}"
        );
        assert!(report.http_requests.is_empty());
    }
}

/// One request as a loopback server received it.
pub(crate) struct Received {
    pub(crate) request_line: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// Serves `count` connections on loopback, answering each `204 No Content`, and sends what
/// it received.
fn serve(count: usize) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let stream = stream.unwrap();
            let received = read_request(&stream);
            let mut stream = stream;
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .unwrap();
            if sender.send(received).is_err() {
                return;
            }
        }
    });
    (address, receiver)
}

pub(crate) fn read_request(stream: &TcpStream) -> Received {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Received {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body,
    }
}

#[test]
fn a_real_endpoint_receives_each_message_once_with_a_valid_signature() {
    let (address, received) = serve(2);
    let url = format!("http://{address}/hooks");
    let harness = Harness::builder()
        .config("url", url.clone())
        .config("secret", format!("{SECRET},{ROTATED_SECRET}"))
        .grant(address.clone())
        .network()
        .load(WEBHOOK)
        .unwrap();
    let report = harness.deliver_batch([email_sent("a@example.com"), email_sent("b@example.com")]);
    assert_eq!(report.outcomes, Ok(vec![Outcome::Ok, Outcome::Ok]));
    let mut recipients = Vec::new();
    for _ in 0..2 {
        let request = received.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(request.request_line, "POST /hooks HTTP/1.1");
        assert_verifies(&request.headers, &request.body);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        recipients.push(body["payload"]["to"].as_str().unwrap().to_owned());
    }
    assert_eq!(recipients, ["a@example.com", "b@example.com"]);
}

#[test]
fn an_endpoint_that_is_down_is_retried() {
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    // The listener is dropped: nothing listens on `address` any more.
    let url = format!("http://{address}/hooks");
    let report = Harness::builder()
        .config("url", url.clone())
        .config("secret", SECRET)
        .grant(address)
        .network()
        .load(WEBHOOK)
        .unwrap()
        .deliver_batch([email_sent("a@example.com"), email_sent("b@example.com")]);
    let outcomes = report.outcomes.unwrap();
    assert_eq!(outcomes.len(), 2);
    for outcome in &outcomes {
        match outcome {
            Outcome::Retry {
                reason,
                delay: None,
            } => assert!(
                reason.starts_with(&format!("request to {url} failed: ")),
                "{reason}"
            ),
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(report.http_requests.len(), 1);
}
