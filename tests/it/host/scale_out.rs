//! Several hosts on one database share the work: every message is delivered once when
//! nothing fails.

use courier_tests::components;
use courier_tests::postgres::TestDatabase;
use serde_json::{Value, json};

use super::{TestHost, wait_delivered};

#[tokio::test]
async fn two_hosts_on_one_database_deliver_each_message_once() {
    let database = TestDatabase::new().await;
    let first = TestHost::start(&database, &[("noop", components::NOOP)], &[]).await;
    let second = TestHost::start(&database, &[("noop", components::NOOP)], &[]).await;
    const MESSAGES: i64 = 4000;
    for chunk in 0..(MESSAGES / 500) {
        let payloads: Vec<Value> = (0..500).map(|i| json!({"n": chunk * 500 + i})).collect();
        sqlx::query("select courier.publish('bench.noop', p) from jsonb_array_elements($1) p")
            .bind(Value::Array(payloads))
            .execute(database.pool())
            .await
            .unwrap();
    }
    let bench = wait_delivered(first.host.outbox(), "bench", MESSAGES).await;
    assert_eq!((bench.delivered, bench.dead), (MESSAGES, 0));

    let calls = "courier_calls_total{plugin=\"noop\",queue=\"bench\"}";
    let (first_calls, second_calls) = (first.metric(calls), second.metric(calls));
    assert_eq!(
        first_calls + second_calls,
        MESSAGES as f64,
        "each message is handed to a plugin once"
    );
    first.stop().await;
    second.stop().await;
}
