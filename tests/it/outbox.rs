//! The outbox against a real Postgres, a fresh database per test: publish and fan-out,
//! leased claims under concurrency, outcomes, rescue, dead letters, wake-ups, statistics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use courier_outbox::{
    Backoff, ClaimSpec, ClaimedDelivery, CompletedDelivery, Completion, DeadLetterQuery, Failure,
    NewMessage, Outbox, OutboxOptions, PublishError, QueueStats, RetryPolicy, Route, Wakeups,
};
use courier_tests::postgres::TestDatabase;
use futures::FutureExt;
use serde_json::json;
use sqlx::postgres::{PgListener, PgPoolOptions};
use uuid::Uuid;

mod chunks;

const LEASE: Duration = Duration::from_secs(60);
/// A guard against hanging forever on something that never comes; not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(30);

async fn outbox(db: &TestDatabase) -> Outbox {
    outbox_with(db, OutboxOptions::default()).await
}

async fn outbox_with(db: &TestDatabase, options: OutboxOptions) -> Outbox {
    let outbox = Outbox::new(db.pool().clone(), options).unwrap();
    outbox.migrate().await.unwrap();
    outbox
}

/// An outbox that archives delivered copies for an hour.
async fn archiving_outbox(db: &TestDatabase) -> Outbox {
    let options = OutboxOptions {
        archive_delivered: Some(Duration::from_secs(3600)),
        ..Default::default()
    };
    outbox_with(db, options).await
}

async fn route(outbox: &Outbox, queue: &str, topic: &str, events: &[&str]) {
    outbox
        .declare(&Route::new(queue, topic, events.iter().copied()).unwrap())
        .await
        .unwrap();
}

fn message(name: &str, n: i64) -> NewMessage {
    NewMessage::new(name, &json!({ "n": n })).unwrap()
}

async fn claim(outbox: &Outbox, queue: &str, names: &[&str], limit: u32) -> Vec<ClaimedDelivery> {
    outbox
        .claim(
            &[ClaimSpec::new(queue, names.iter().copied())],
            limit,
            LEASE,
        )
        .await
        .unwrap()
}

fn done(delivery: &ClaimedDelivery, completion: Completion) -> CompletedDelivery {
    CompletedDelivery::new(delivery.key(), completion)
}

async fn stats(outbox: &Outbox, queue: &str) -> QueueStats {
    outbox
        .queue_stats()
        .await
        .unwrap()
        .into_iter()
        .find(|stats| stats.queue == queue)
        .unwrap_or_else(|| panic!("no statistics for queue {queue}"))
}

/// Moves every lease's expiry into the past, as if its holder had stalled beyond it.
async fn expire_every_lease(db: &TestDatabase) {
    for leases in ["leases", "chunk_leases"] {
        sqlx::query(&format!(
            "UPDATE courier.{leases} SET expires_at = now() - interval '1 second'"
        ))
        .execute(db.pool())
        .await
        .unwrap();
    }
}

/// One `user.created` copy in queue `emails` (with `audit` routed from `audit.sent` for
/// follow-ups), claimed, left to expire, rescued and claimed again: returns the first and
/// the second claim of it.
async fn claimed_across_a_rescue(
    db: &TestDatabase,
    outbox: &Outbox,
) -> (ClaimedDelivery, ClaimedDelivery) {
    route(outbox, "emails", "user", &["created"]).await;
    route(outbox, "audit", "audit", &["sent"]).await;
    outbox
        .publish(db.pool(), &[message("user.created", 1)])
        .await
        .unwrap();
    let first = claim(outbox, "emails", &["user.created"], 10)
        .await
        .remove(0);
    assert!(
        outbox.rescue_expired().await.unwrap().is_empty(),
        "the lease still holds"
    );
    // The holder stalls past its lease (moved here rather than waited for).
    expire_every_lease(db).await;
    let rescued = outbox.rescue_expired().await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!((rescued[0].id, rescued[0].attempt), (first.id, 1));
    let second = claim(outbox, "emails", &["user.created"], 10)
        .await
        .remove(0);
    assert_eq!(second.id, first.id);
    assert_eq!(second.attempt, 2, "the rescued attempt stays counted");
    assert!(
        second
            .last_error
            .as_deref()
            .unwrap()
            .contains("lease expired")
    );
    (first, second)
}

/// After housekeeping, no copy, lease or message of any kind is left in the outbox.
async fn assert_nothing_stored(db: &TestDatabase, outbox: &Outbox) {
    outbox.housekeeping().await.unwrap();
    for table in [
        "messages",
        "message_releases",
        "batch_messages",
        "batch_releases",
        "chunks",
        "chunk_leases",
        "deliveries",
        "leases",
    ] {
        let left = count(db, &format!("SELECT count(*) FROM courier.{table}")).await;
        assert_eq!(left, 0, "rows left in {table}");
    }
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db.pool()).await.unwrap()
}

#[tokio::test]
async fn publishing_in_a_rolled_back_transaction_stores_nothing() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;

    let mut transaction = db.pool().begin().await.unwrap();
    outbox
        .publish(&mut *transaction, &[message("user.created", 1)])
        .await
        .unwrap();
    sqlx::query("SELECT courier.publish('user.created', '{\"n\": 2}')")
        .execute(&mut *transaction)
        .await
        .unwrap();
    transaction.rollback().await.unwrap();

    assert!(
        claim(&outbox, "emails", &["user.created"], 10)
            .await
            .is_empty()
    );
    assert_eq!(count(&db, "SELECT count(*) FROM courier.messages").await, 0);

    let mut transaction = db.pool().begin().await.unwrap();
    let id: Uuid = sqlx::query_scalar("SELECT courier.publish('user.created', '{\"n\": 3}')")
        .fetch_one(&mut *transaction)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    let claimed = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    assert_eq!(claimed[0].payload, r#"{"n": 3}"#);
    assert_eq!(claimed[0].attempt, 1);
}

#[tokio::test]
async fn fan_out_gives_every_routed_queue_its_own_copy_with_its_own_retries() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    route(&outbox, "audit", "user", &["created"]).await;
    route(&outbox, "billing", "order", &["placed"]).await;

    let sent = message("user.created", 7).header("trace", "t-1");
    let report = outbox
        .publish(db.pool(), std::slice::from_ref(&sent))
        .await
        .unwrap();
    assert_eq!(report.copies, 2);
    assert_eq!(report.ids, [sent.message_id()]);

    let emails = claim(&outbox, "emails", &["user.created"], 10).await;
    let audit = claim(&outbox, "audit", &["user.created"], 10).await;
    assert!(
        claim(&outbox, "billing", &["order.placed"], 10)
            .await
            .is_empty()
    );
    assert_eq!((emails.len(), audit.len()), (1, 1));
    assert_eq!(emails[0].id, audit[0].id);
    assert_eq!(
        emails[0].headers,
        BTreeMap::from([("trace".into(), "t-1".into())])
    );

    // The emails copy fails and is retried; the audit copy is delivered. Independent.
    let report = outbox
        .complete(&[
            done(
                &emails[0],
                Completion::Retry {
                    delay: Duration::ZERO,
                    error: "smtp down".into(),
                },
            ),
            done(&audit[0], Completion::Delivered),
        ])
        .await
        .unwrap();
    assert_eq!((report.retried, report.delivered), (1, 1));
    assert!(
        claim(&outbox, "audit", &["user.created"], 10)
            .await
            .is_empty()
    );
    let again = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("smtp down"));
    assert_eq!(again[0].payload, emails[0].payload);

    // The payload is stored once and outlives the first delivered copy; housekeeping
    // deletes it once the last copy is gone.
    outbox.housekeeping().await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM courier.messages").await, 1);
    outbox
        .complete(&[done(&again[0], Completion::Delivered)])
        .await
        .unwrap();
    assert_eq!(outbox.housekeeping().await.unwrap().releases_collected, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM courier.messages").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM courier.deliveries").await,
        0
    );
}

#[tokio::test]
async fn republishing_the_same_id_into_a_queue_is_a_no_op() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;

    let id = Uuid::now_v7();
    let first = message("user.created", 1).id(id);
    assert_eq!(
        outbox
            .publish(db.pool(), std::slice::from_ref(&first))
            .await
            .unwrap()
            .copies,
        1
    );
    assert_eq!(
        outbox
            .publish(db.pool(), std::slice::from_ref(&first))
            .await
            .unwrap()
            .copies,
        0
    );
    // Twice in one batch, and through SQL: still one copy.
    let report = outbox
        .publish(db.pool(), &[first.clone(), first])
        .await
        .unwrap();
    assert_eq!(report.copies, 0);
    sqlx::query("SELECT courier.publish('user.created', '{}', $1)")
        .bind(id)
        .execute(db.pool())
        .await
        .unwrap();

    // A message without an explicit id is new by construction: publishing the same value
    // twice is a mistake, reported as such.
    let fresh = message("user.created", 9);
    outbox
        .publish(db.pool(), std::slice::from_ref(&fresh))
        .await
        .unwrap();
    let error = outbox.publish(db.pool(), &[fresh]).await.unwrap_err();
    assert!(matches!(error, PublishError::PublishedTwice), "{error}");

    // A queue routed later gets the message when it is published again; the first queue
    // still has one copy.
    route(&outbox, "audit", "user", &["created"]).await;
    let report = outbox
        .publish(db.pool(), &[message("user.created", 1).id(id)])
        .await
        .unwrap();
    assert_eq!(report.copies, 1);
    let emails = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(emails.iter().filter(|d| d.id == id).count(), 1);
    let audit = claim(&outbox, "audit", &["user.created"], 10).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].id, id);
}

#[tokio::test]
async fn scheduled_messages_wait_for_their_time_and_due_ones_come_oldest_first() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;

    let now = Utc::now();
    let later = message("user.created", 1).deliver_at(now + chrono::Duration::hours(1));
    let older = message("user.created", 2).deliver_at(now - chrono::Duration::minutes(10));
    let old = message("user.created", 3).deliver_at(now - chrono::Duration::minutes(5));
    let current = message("user.created", 4);
    outbox
        .publish(
            db.pool(),
            &[later.clone(), current.clone(), old.clone(), older.clone()],
        )
        .await
        .unwrap();

    let emails = stats(&outbox, "emails").await;
    assert_eq!((emails.pending, emails.due, emails.scheduled), (4, 3, 1));
    let next = outbox.next_due_at(&["emails"]).await.unwrap().unwrap();
    assert!(next < now, "the oldest due copy is next: {next}");

    let claimed = claim(&outbox, "emails", &["user.created"], 10).await;
    let ids: Vec<Uuid> = claimed.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        [older.message_id(), old.message_id(), current.message_id()]
    );
    let next = outbox.next_due_at(&["emails"]).await.unwrap().unwrap();
    assert!(next > now, "only the scheduled copy waits: {next}");

    // Once its time has come (moved here rather than waited for), it is claimed.
    sqlx::query("UPDATE courier.deliveries SET deliver_at = now() WHERE lease_owner IS NULL")
        .execute(db.pool())
        .await
        .unwrap();
    let claimed = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, later.message_id());
}

#[tokio::test]
async fn names_without_a_handler_are_not_claimed_and_stay_pending() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;

    outbox
        .publish(
            db.pool(),
            &[message("user.created", 1), message("user.deleted", 2)],
        )
        .await
        .unwrap();
    let claimed = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].name, "user.created");
    assert!(
        claim(&outbox, "emails", &["user.created"], 10)
            .await
            .is_empty()
    );
    assert_eq!(stats(&outbox, "emails").await.pending, 1);

    // A later handler for the name picks the backlog up.
    let claimed = claim(&outbox, "emails", &["user.created", "user.deleted"], 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].name, "user.deleted");
}

#[tokio::test]
async fn concurrent_claimers_never_hold_the_same_row_and_deliver_each_message_once() {
    const MESSAGES: usize = 3000;
    const CLAIMERS: usize = 8;
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "work", "job", &["run"]).await;
    let batch: Vec<NewMessage> = (0..MESSAGES as i64)
        .map(|n| message("job.run", n))
        .collect();
    outbox.publish(db.pool(), &batch).await.unwrap();

    let held: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let delivered: Arc<Mutex<HashMap<Uuid, usize>>> = Arc::default();
    let mut claimers = Vec::new();
    for claimer in 0..CLAIMERS {
        let outbox = outbox.clone();
        let held = Arc::clone(&held);
        let delivered = Arc::clone(&delivered);
        claimers.push(tokio::spawn(async move {
            let limit = 20 + 10 * claimer as u32;
            loop {
                let batch = claim(&outbox, "work", &["job.run"], limit).await;
                if batch.is_empty() {
                    return;
                }
                for delivery in &batch {
                    assert!(
                        held.lock().unwrap().insert(delivery.id),
                        "{} claimed while another claimer held it",
                        delivery.id
                    );
                }
                tokio::task::yield_now().await;
                for delivery in &batch {
                    held.lock().unwrap().remove(&delivery.id);
                    *delivered.lock().unwrap().entry(delivery.id).or_default() += 1;
                }
                let completions: Vec<CompletedDelivery> = batch
                    .iter()
                    .map(|d| done(d, Completion::Delivered))
                    .collect();
                let report = outbox.complete(&completions).await.unwrap();
                assert!(report.lease_lost.is_empty());
                assert_eq!(report.delivered, batch.len());
            }
        }));
    }
    for claimer in claimers {
        claimer.await.unwrap();
    }

    {
        let delivered = delivered.lock().unwrap();
        assert_eq!(delivered.len(), MESSAGES);
        assert!(delivered.values().all(|&times| times == 1));
    }
    let work = stats(&outbox, "work").await;
    assert_eq!(
        (work.pending, work.in_flight, work.delivered),
        (0, 0, MESSAGES as u64)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM courier.messages").await, 0);
}

#[tokio::test]
async fn an_expired_lease_is_rescued_and_the_late_completion_is_refused() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    let (first, second) = claimed_across_a_rescue(&db, &outbox).await;

    // The first holder finally reports: refused, and its follow-up is not published.
    let mut late = done(&first, Completion::Delivered);
    late.follow_ups.push(message("audit.sent", 1));
    let report = outbox.complete(&[late]).await.unwrap();
    assert_eq!(report.lease_lost, [first.key()]);
    assert_eq!((report.delivered, report.follow_ups), (0, 0));
    assert!(
        claim(&outbox, "audit", &["audit.sent"], 10)
            .await
            .is_empty()
    );

    // The current holder completes, with its follow-up event published alongside.
    let mut current = done(&second, Completion::Delivered);
    current.follow_ups.push(message("audit.sent", 2));
    let report = outbox.complete(&[current]).await.unwrap();
    assert_eq!((report.delivered, report.follow_ups), (1, 1));
    assert!(report.lease_lost.is_empty());
    let follow_ups = claim(&outbox, "audit", &["audit.sent"], 10).await;
    assert_eq!(follow_ups.len(), 1);
    assert_eq!(follow_ups[0].payload, r#"{"n": 2}"#);
}

#[tokio::test]
async fn follow_up_events_of_failed_deliveries_are_discarded() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    route(&outbox, "audit", "audit", &["sent"]).await;
    outbox
        .publish(db.pool(), &[message("user.created", 1)])
        .await
        .unwrap();

    let delivery = claim(&outbox, "emails", &["user.created"], 10)
        .await
        .remove(0);
    let mut failed = done(
        &delivery,
        Completion::Retry {
            delay: Duration::from_secs(60),
            error: "later".into(),
        },
    );
    failed.follow_ups.push(message("audit.sent", 1));
    let report = outbox.complete(&[failed]).await.unwrap();
    assert_eq!((report.retried, report.follow_ups), (1, 0));
    assert!(
        claim(&outbox, "audit", &["audit.sent"], 10)
            .await
            .is_empty()
    );
    let emails = stats(&outbox, "emails").await;
    assert_eq!((emails.scheduled, emails.due), (1, 0));
}

#[tokio::test]
async fn the_attempt_limit_sends_a_delivery_to_the_dead_letters() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    let sent = message("user.created", 5).header("k", "v");
    outbox
        .publish(db.pool(), std::slice::from_ref(&sent))
        .await
        .unwrap();

    let mut policy = RetryPolicy::new(Backoff::Constant {
        delay: Duration::ZERO,
    })
    .with_max_attempts(Some(3));
    policy.min_delay = Duration::ZERO;
    let mut rng = rand::rng();
    let mut attempts = Vec::new();
    loop {
        let batch = claim(&outbox, "emails", &["user.created"], 10).await;
        let Some(delivery) = batch.first() else { break };
        attempts.push(delivery.attempt);
        let failure = Failure::Retry {
            error: format!("mailer refused attempt {}", delivery.attempt),
            delay: Some(Duration::ZERO),
        };
        let completion = policy.after_failure(delivery.attempt, failure, &mut rng);
        outbox
            .complete(&[done(delivery, completion)])
            .await
            .unwrap();
    }
    assert_eq!(attempts, [1, 2, 3]);

    let dead = outbox
        .dead_letters(&DeadLetterQuery::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.message_id, sent.message_id());
    assert_eq!(
        (letter.queue.as_str(), letter.name.as_str()),
        ("emails", "user.created")
    );
    assert_eq!(letter.payload, r#"{"n": 5}"#);
    assert_eq!(letter.headers, BTreeMap::from([("k".into(), "v".into())]));
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.last_error, "mailer refused attempt 3");
    assert!(letter.dead_at >= letter.published_at);
    let emails = stats(&outbox, "emails").await;
    assert_eq!((emails.pending, emails.dead, emails.delivered), (0, 1, 0));
}

#[tokio::test]
async fn fatal_dead_letters_at_once_and_redrive_starts_the_attempts_again() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    route(&outbox, "audit", "user", &["created"]).await;
    outbox
        .publish(
            db.pool(),
            &[message("user.created", 1), message("user.created", 2)],
        )
        .await
        .unwrap();

    let policy = RetryPolicy::default();
    let mut rng = rand::rng();
    let batch = claim(&outbox, "emails", &["user.created"], 10).await;
    let completions: Vec<CompletedDelivery> = batch
        .iter()
        .map(|delivery| {
            let failure = Failure::Fatal {
                error: "no such user".into(),
            };
            done(
                delivery,
                policy.after_failure(delivery.attempt, failure, &mut rng),
            )
        })
        .collect();
    assert_eq!(
        outbox.complete(&completions).await.unwrap().dead_lettered,
        2
    );

    // The audit copies are untouched; the payloads live on in the dead letters.
    assert_eq!(
        claim(&outbox, "audit", &["user.created"], 10).await.len(),
        2
    );
    let dead = outbox
        .dead_letters(&DeadLetterQuery::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    let page = outbox
        .dead_letters(&DeadLetterQuery {
            after_id: Some(dead[0].id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page, dead[1..]);
    assert!(
        outbox
            .dead_letters(&DeadLetterQuery {
                queue: Some("audit".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );

    assert!(outbox.redrive(dead[0].id).await.unwrap());
    assert!(
        !outbox.redrive(dead[0].id).await.unwrap(),
        "already redriven"
    );
    let again = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, dead[0].message_id);
    assert_eq!(again[0].attempt, 1, "attempts start again");
    assert_eq!(again[0].payload, dead[0].payload);
    outbox
        .complete(&[done(&again[0], Completion::Delivered)])
        .await
        .unwrap();

    let emails = stats(&outbox, "emails").await;
    assert_eq!((emails.dead, emails.delivered), (1, 1));
    assert_eq!(outbox.purge_dead_letters(Some("audit")).await.unwrap(), 0);
    assert_eq!(outbox.purge_dead_letters(Some("emails")).await.unwrap(), 1);
    assert_eq!(stats(&outbox, "emails").await.dead, 0);
    assert!(outbox.dead_letter(dead[1].id).await.unwrap().is_none());
}

#[tokio::test]
async fn redriving_a_whole_queue_brings_every_dead_letter_back() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    let batch: Vec<NewMessage> = (0..5).map(|n| message("user.created", n)).collect();
    outbox.publish(db.pool(), &batch).await.unwrap();
    let claimed = claim(&outbox, "emails", &["user.created"], 10).await;
    let completions: Vec<CompletedDelivery> = claimed
        .iter()
        .map(|d| {
            done(
                d,
                Completion::DeadLetter {
                    error: "boom".into(),
                },
            )
        })
        .collect();
    outbox.complete(&completions).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM courier.messages").await, 0);

    assert_eq!(outbox.redrive_all(Some("emails")).await.unwrap(), 5);
    let again = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|d| d.attempt == 1));
    let emails = stats(&outbox, "emails").await;
    assert_eq!((emails.in_flight, emails.dead), (5, 0));
}

#[tokio::test]
async fn a_transaction_notifies_each_queue_once() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    route(&outbox, "audit", "user", &["created"]).await;
    route(&outbox, "sentinel", "sentinel", &["sent"]).await;
    let mut listener = PgListener::connect(db.url()).await.unwrap();
    listener.listen(&outbox.wakeup_channel()).await.unwrap();

    let mut transaction = db.pool().begin().await.unwrap();
    for n in 0..50 {
        outbox
            .publish(&mut *transaction, &[message("user.created", n)])
            .await
            .unwrap();
    }
    for _ in 0..50 {
        sqlx::query("SELECT courier.publish('user.created', '{}')")
            .execute(&mut *transaction)
            .await
            .unwrap();
    }
    transaction.commit().await.unwrap();
    // Notifications arrive in commit order: once the sentinel's arrives, all of the first
    // transaction's have.
    outbox
        .publish(db.pool(), &[message("sentinel.sent", 0)])
        .await
        .unwrap();

    let mut received = Vec::new();
    loop {
        let notification = tokio::time::timeout(PATIENCE, listener.recv())
            .await
            .unwrap()
            .unwrap();
        if notification.payload() == "sentinel" {
            break;
        }
        received.push(notification.payload().to_owned());
    }
    received.sort();
    assert_eq!(received, ["audit", "emails"]);
}

#[tokio::test]
async fn a_notification_wakes_only_the_workers_of_its_queue() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    for queue in ["a", "b", "c"] {
        route(&outbox, queue, queue, &["x"]).await;
    }
    let wakeups = Wakeups::start(&outbox, Duration::from_secs(3600))
        .await
        .unwrap();
    let (a, b, c) = (wakeups.queue("a"), wakeups.queue("b"), wakeups.queue("c"));

    outbox
        .publish(db.pool(), &[message("a.x", 1)])
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, a.notified()).await.unwrap();
    outbox
        .publish(db.pool(), &[message("c.x", 1)])
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, c.notified()).await.unwrap();
    // Both notifications went through the one listener in order: b was never woken.
    assert!(b.notified().now_or_never().is_none());
    assert!(
        a.notified().now_or_never().is_none(),
        "one publish, one wake-up"
    );

    // A scheduled copy wakes nobody; the poll (or `next_due_at`) is for those.
    let later = message("a.x", 2).deliver_at(Utc::now() + chrono::Duration::hours(1));
    outbox.publish(db.pool(), &[later]).await.unwrap();
    outbox
        .publish(db.pool(), &[message("c.x", 2)])
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, c.notified()).await.unwrap();
    assert!(a.notified().now_or_never().is_none());
}

#[tokio::test]
async fn the_listener_reconnects_by_itself() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "a", "a", &["x"]).await;
    let wakeups = Wakeups::start(&outbox, Duration::from_secs(3600))
        .await
        .unwrap();
    let a = wakeups.queue("a");
    let listening = "SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    let old_pid: i32 = sqlx::query_scalar(listening)
        .fetch_one(db.pool())
        .await
        .unwrap();

    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(old_pid)
        .execute(db.pool())
        .await
        .unwrap();
    let new_pid = tokio::time::timeout(PATIENCE, async {
        loop {
            let pids: Vec<i32> = sqlx::query_scalar(listening)
                .fetch_all(db.pool())
                .await
                .unwrap();
            if let Some(pid) = pids.into_iter().find(|pid| *pid != old_pid) {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_ne!(new_pid, old_pid);

    // Losing the connection woke everyone (notifications may have been missed); a publish
    // now reaches the queue through the new session.
    tokio::time::timeout(PATIENCE, a.notified()).await.unwrap();
    outbox
        .publish(db.pool(), &[message("a.x", 1)])
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, a.notified()).await.unwrap();
}

#[tokio::test]
async fn a_connection_killed_mid_batch_loses_nothing() {
    const MESSAGES: usize = 200;
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "work", "job", &["run"]).await;
    let batch: Vec<NewMessage> = (0..MESSAGES as i64)
        .map(|n| message("job.run", n))
        .collect();
    outbox.publish(db.pool(), &batch).await.unwrap();

    // The claimer works through a connection of its own.
    let claimer_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(db.url())
        .await
        .unwrap();
    let claimer = Outbox::new(claimer_pool.clone(), OutboxOptions::default()).unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&claimer_pool)
        .await
        .unwrap();
    let claimed = claim(&claimer, "work", &["job.run"], 50).await;
    assert_eq!(claimed.len(), 50);

    // Its completion gets under way but waits on row locks held here, and its connection
    // is killed in the middle of it.
    let mut blocker = db.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM courier.deliveries WHERE lease_owner IS NOT NULL FOR UPDATE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let completions: Vec<CompletedDelivery> = claimed
        .iter()
        .map(|d| done(d, Completion::Delivered))
        .collect();
    let completing = {
        let (claimer, completions) = (claimer.clone(), completions.clone());
        tokio::spawn(async move { claimer.complete(&completions).await })
    };
    tokio::time::timeout(PATIENCE, async {
        let waiting =
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'";
        while sqlx::query_scalar::<_, i64>(waiting)
            .bind(pid)
            .fetch_one(db.pool())
            .await
            .unwrap()
            == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(
        completing.await.unwrap().is_err(),
        "the completion died with its connection"
    );
    blocker.rollback().await.unwrap();
    assert_eq!(
        stats(&outbox, "work").await.in_flight,
        50,
        "nothing was recorded"
    );

    // Its leases expire (moved here rather than waited for) and are rescued; the rest of
    // the work, and the rescued batch, are delivered by another worker.
    expire_every_lease(&db).await;
    assert_eq!(outbox.rescue_expired().await.unwrap().len(), 50);
    let mut seen = HashSet::new();
    loop {
        let batch = claim(&outbox, "work", &["job.run"], 64).await;
        if batch.is_empty() {
            break;
        }
        for delivery in &batch {
            assert!(seen.insert(delivery.id));
        }
        let completions: Vec<CompletedDelivery> = batch
            .iter()
            .map(|d| done(d, Completion::Delivered))
            .collect();
        assert_eq!(
            outbox.complete(&completions).await.unwrap().delivered,
            batch.len()
        );
    }
    assert_eq!(seen.len(), MESSAGES);
    let rescued: HashSet<Uuid> = claimed.iter().map(|d| d.id).collect();
    assert!(rescued.is_subset(&seen));

    // The old claimer, reconnected, reports its stale batch: refused, nothing changes.
    let report = claimer.complete(&completions).await.unwrap();
    assert_eq!(report.lease_lost.len(), 50);
    let work = stats(&outbox, "work").await;
    assert_eq!(
        (work.pending, work.in_flight, work.delivered),
        (0, 0, MESSAGES as u64)
    );
}

#[tokio::test]
async fn a_released_delivery_returns_without_counting_the_attempt() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    outbox
        .publish(db.pool(), &[message("user.created", 1)])
        .await
        .unwrap();
    let first = claim(&outbox, "emails", &["user.created"], 10)
        .await
        .remove(0);
    let report = outbox
        .complete(&[done(&first, Completion::Release)])
        .await
        .unwrap();
    assert_eq!(report.released, 1);
    let again = claim(&outbox, "emails", &["user.created"], 10)
        .await
        .remove(0);
    assert_eq!(again.attempt, 1);
}

#[tokio::test]
async fn bad_names_are_refused_with_a_clear_error_in_rust_and_sql() {
    let db = TestDatabase::new().await;
    outbox(&db).await;
    let error = NewMessage::new("usercreated", &json!({})).unwrap_err();
    assert!(matches!(error, PublishError::InvalidName { .. }), "{error}");
    assert!(
        error.to_string().contains("expected `topic.event`"),
        "{error}"
    );

    let error = sqlx::query("SELECT courier.publish('user created', '{}')")
        .execute(db.pool())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("invalid event name 'user created'"),
        "{error}"
    );
    let error = sqlx::query("SELECT courier.publish('user.created', NULL)")
        .execute(db.pool())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("payload is NULL"), "{error}");
    let error = sqlx::query("SELECT courier.publish_batch('[{\"name\": \"a.b\", \"pay\": 1}]')")
        .execute(db.pool())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid message"), "{error}");
    let error = sqlx::query("SELECT courier.publish('a.b', '{}', headers => '{\"n\": 1}')")
        .execute(db.pool())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("headers must be a JSON object of string"),
        "{error}"
    );
}

#[tokio::test]
async fn sql_batch_publish_returns_ids_in_order_and_unrouted_topics_are_counted() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    let given = Uuid::now_v7();
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT courier.publish_batch($1::jsonb)")
        .bind(json!([
            {"name": "user.created", "payload": {"n": 1}},
            {"name": "user.created", "payload": null, "id": given, "headers": {"h": "v"}},
            {"name": "order.placed", "payload": 3},
            {"name": "order.placed", "payload": 4, "deliver_at": "2030-01-01T00:00:00Z"},
        ]))
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[1], given);

    let claimed = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(
        claimed.iter().map(|d| d.id).collect::<HashSet<_>>(),
        HashSet::from([ids[0], ids[1]])
    );
    let with_headers = claimed.iter().find(|d| d.id == given).unwrap();
    assert_eq!(with_headers.payload, "null");
    assert_eq!(with_headers.headers["h"], "v");
    assert_eq!(outbox.unrouted().await.unwrap(), [("order".to_owned(), 2)]);
    assert_eq!(
        count(&db, "SELECT count(*) FROM courier.deliveries").await,
        2,
        "unrouted ones are not stored"
    );
}

#[tokio::test]
async fn statistics_follow_every_step_and_survive_counter_folding() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    for n in 0..10 {
        outbox
            .publish(db.pool(), &[message("user.created", n)])
            .await
            .unwrap();
    }
    let claimed = claim(&outbox, "emails", &["user.created"], 6).await;
    let completions = vec![
        done(&claimed[0], Completion::Delivered),
        done(&claimed[1], Completion::Delivered),
        done(&claimed[2], Completion::DeadLetter { error: "x".into() }),
        done(
            &claimed[3],
            Completion::Retry {
                delay: Duration::from_secs(600),
                error: "y".into(),
            },
        ),
    ];
    outbox.complete(&completions).await.unwrap();
    let expected = QueueStats {
        queue: "emails".into(),
        pending: 5,
        due: 4,
        scheduled: 1,
        in_flight: 2,
        dead: 1,
        delivered: 2,
    };
    assert_eq!(stats(&outbox, "emails").await, expected);

    let rows_before = count(&db, "SELECT count(*) FROM courier.queue_counters").await;
    assert!(outbox.compact_counters().await.unwrap() > 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM courier.queue_counters").await,
        1
    );
    assert!(rows_before > 1);
    assert_eq!(stats(&outbox, "emails").await, expected);
    assert_eq!(outbox.compact_counters().await.unwrap(), 0);
}

#[tokio::test]
async fn archived_deliveries_are_kept_then_pruned() {
    let db = TestDatabase::new().await;
    let outbox = archiving_outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    outbox
        .publish(db.pool(), &[message("user.created", 1)])
        .await
        .unwrap();
    let delivery = claim(&outbox, "emails", &["user.created"], 10)
        .await
        .remove(0);
    outbox
        .complete(&[done(&delivery, Completion::Delivered)])
        .await
        .unwrap();

    assert_eq!(
        count(&db, "SELECT count(*) FROM courier.deliveries").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM courier.delivered").await,
        1
    );
    assert_eq!(
        outbox.housekeeping().await.unwrap().pruned,
        0,
        "within retention"
    );
    assert_eq!(outbox.prune_delivered(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM courier.delivered").await,
        0
    );
}

#[tokio::test]
async fn queues_are_listed_and_deleted_with_their_backlog() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    route(&outbox, "emails", "user", &["created", "deleted"]).await;
    route(&outbox, "emails", "order", &["placed"]).await;
    route(&outbox, "audit", "user", &["created"]).await;
    let routes = outbox.routes().await.unwrap();
    let listed: Vec<(&str, &str, &[String])> = routes
        .iter()
        .map(|r| (r.queue(), r.topic(), r.events()))
        .collect();
    assert_eq!(
        listed,
        [
            ("audit", "user", &["created".to_owned()][..]),
            ("emails", "order", &["placed".to_owned()][..]),
            (
                "emails",
                "user",
                &["created".to_owned(), "deleted".to_owned()][..]
            ),
        ]
    );

    outbox
        .publish(
            db.pool(),
            &[message("user.created", 1), message("user.created", 2)],
        )
        .await
        .unwrap();
    let claimed = claim(&outbox, "emails", &["user.created"], 1).await;
    outbox
        .complete(&[done(
            &claimed[0],
            Completion::DeadLetter { error: "x".into() },
        )])
        .await
        .unwrap();
    let deleted = outbox.delete_queue("emails").await.unwrap();
    assert_eq!((deleted.copies, deleted.dead_letters), (1, 1));
    assert!(
        outbox
            .routes()
            .await
            .unwrap()
            .iter()
            .all(|r| r.queue() == "audit")
    );
    assert!(
        outbox
            .queue_stats()
            .await
            .unwrap()
            .iter()
            .all(|s| s.queue == "audit")
    );
    // The audit copies keep their messages.
    assert_eq!(
        claim(&outbox, "audit", &["user.created"], 10).await.len(),
        2
    );
    assert_eq!(count(&db, "SELECT count(*) FROM courier.messages").await, 2);

    // A queue without routes keeps its backlog.
    assert!(outbox.delete_route("audit", "user").await.unwrap());
    assert_eq!(stats(&outbox, "audit").await.in_flight, 2);
}

#[tokio::test]
async fn migrations_run_once_under_concurrency_and_schemas_are_independent() {
    let db = TestDatabase::new().await;
    let make = |schema: &str| {
        let options = OutboxOptions {
            schema: schema.into(),
            ..Default::default()
        };
        Outbox::new(db.pool().clone(), options).unwrap()
    };
    let (first, second, other) = (make("courier"), make("courier"), make("tenant_b"));
    let (a, b, c) = tokio::join!(first.migrate(), second.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
    c.unwrap();
    first.migrate().await.unwrap();
    // Each migration is recorded once per schema, however many ran it at once.
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "sql")
        })
        .count() as i64;
    assert!(migrations >= 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM courier._sqlx_migrations").await,
        migrations
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM tenant_b._sqlx_migrations").await,
        migrations
    );

    route(&first, "emails", "user", &["created"]).await;
    route(&other, "emails", "user", &["created"]).await;
    first
        .publish(db.pool(), &[message("user.created", 1)])
        .await
        .unwrap();
    let id: Uuid = sqlx::query_scalar("SELECT tenant_b.publish('user.created', '{}')")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let claimed = claim(&other, "emails", &["user.created"], 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    assert_eq!(
        claim(&first, "emails", &["user.created"], 10).await.len(),
        1
    );
    assert_eq!(other.wakeup_channel(), "tenant_b.wakeup");

    let error = Outbox::new(
        db.pool().clone(),
        OutboxOptions {
            schema: "Bad-Name".into(),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("invalid schema name `Bad-Name`"),
        "{error}"
    );
}

#[tokio::test]
async fn one_claim_serves_several_queues_oldest_first() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    route(&outbox, "orders", "order", &["placed"]).await;
    let now = Utc::now();
    let m1 = message("order.placed", 1).deliver_at(now - chrono::Duration::seconds(30));
    let m2 = message("user.created", 2).deliver_at(now - chrono::Duration::seconds(20));
    let m3 = message("order.placed", 3).deliver_at(now - chrono::Duration::seconds(10));
    outbox
        .publish(db.pool(), &[m3.clone(), m2.clone(), m1.clone()])
        .await
        .unwrap();

    let specs = [
        ClaimSpec::new("emails", ["user.created"]),
        ClaimSpec::new("orders", ["order.placed"]),
    ];
    let claimed = outbox.claim(&specs, 2, LEASE).await.unwrap();
    let ids: Vec<Uuid> = claimed.iter().map(|d| d.id).collect();
    assert_eq!(ids, [m1.message_id(), m2.message_id()]);
    let claimed = outbox.claim(&specs, 2, LEASE).await.unwrap();
    assert_eq!(
        claimed.iter().map(|d| d.id).collect::<Vec<_>>(),
        [m3.message_id()]
    );

    let error = outbox
        .claim(&[ClaimSpec::new("emails", Vec::<String>::new())], 1, LEASE)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("names no events"), "{error}");
}

#[tokio::test]
async fn fanned_out_payloads_are_deleted_after_the_last_copy_whatever_the_order() {
    // Published 10 at a time, each copy is a row sharing its message's payload.
    drain_fanned_out_concurrently(10, "SELECT count(*) FROM courier.messages").await;
}

#[tokio::test]
async fn fanned_out_chunks_are_deleted_after_the_last_copy_whatever_the_order() {
    // Published 500 at once, the copies are chunks of the batch's messages.
    drain_fanned_out_concurrently(500, "SELECT count(*) FROM courier.batch_messages").await;
}

/// Publishes 500 messages to a topic routed to three queues, `per_publish` at a time, checks
/// that `stored` counts each message once, then drains every queue with two workers claiming
/// small batches while housekeeping collects, and checks that nothing is left behind.
async fn drain_fanned_out_concurrently(per_publish: usize, stored: &str) {
    const MESSAGES: usize = 500;
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    for queue in ["q1", "q2", "q3"] {
        route(&outbox, queue, "job", &["run"]).await;
    }
    let batch: Vec<NewMessage> = (0..MESSAGES as i64)
        .map(|n| message("job.run", n))
        .collect();
    for messages in batch.chunks(per_publish) {
        assert_eq!(
            outbox.publish(db.pool(), messages).await.unwrap().copies,
            3 * messages.len() as u64
        );
    }
    assert_eq!(count(&db, stored).await, MESSAGES as i64);

    // Each queue drained by two workers with small batches, while housekeeping collects.
    let mut workers = Vec::new();
    for queue in ["q1", "q2", "q3", "q1", "q2", "q3"] {
        let outbox = outbox.clone();
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let batch = claim(&outbox, queue, &["job.run"], 37).await;
                if batch.is_empty() {
                    return ids;
                }
                let completions: Vec<CompletedDelivery> = batch
                    .iter()
                    .map(|d| done(d, Completion::Delivered))
                    .collect();
                ids.extend(batch.iter().map(|d| (d.queue.clone(), d.id)));
                outbox.complete(&completions).await.unwrap();
                outbox.housekeeping().await.unwrap();
            }
        }));
    }
    let mut delivered = Vec::new();
    for worker in workers {
        delivered.extend(worker.await.unwrap());
    }
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 3 * MESSAGES, "every copy delivered once");
    assert_nothing_stored(&db, &outbox).await;
    for queue in ["q1", "q2", "q3"] {
        let stats = stats(&outbox, queue).await;
        assert_eq!((stats.delivered, stats.pending), (MESSAGES as u64, 0));
    }
}

#[tokio::test]
async fn a_delivered_batch_records_the_copies_it_holds_and_names_the_others() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    // Two queues: the copies share one stored payload.
    route(&outbox, "emails", "user", &["created"]).await;
    route(&outbox, "audit", "user", &["created"]).await;
    let messages: Vec<NewMessage> = (0..3).map(|n| message("user.created", n)).collect();
    outbox.publish(db.pool(), &messages).await.unwrap();
    let claimed = claim(&outbox, "emails", &["user.created"], 10).await;
    assert_eq!(claimed.len(), 3);

    // The second completion names a lease this caller never held.
    let mut forged = done(&claimed[1], Completion::Delivered);
    forged.delivery.lease_token = Uuid::new_v4();
    let report = outbox
        .complete(&[
            done(&claimed[0], Completion::Delivered),
            forged.clone(),
            done(&claimed[2], Completion::Delivered),
        ])
        .await
        .unwrap();
    assert_eq!(report.delivered, 2);
    assert_eq!(report.lease_lost, [forged.delivery]);
    let emails = stats(&outbox, "emails").await;
    assert_eq!(
        (emails.pending, emails.in_flight, emails.delivered),
        (0, 1, 2)
    );

    // The real holder of the second copy completes it; the audit copies still read their
    // payloads once the emails copies are gone and housekeeping has run.
    let report = outbox
        .complete(&[done(&claimed[1], Completion::Delivered)])
        .await
        .unwrap();
    assert_eq!((report.delivered, report.lease_lost.len()), (1, 0));
    outbox.housekeeping().await.unwrap();
    let audit = claim(&outbox, "audit", &["user.created"], 10).await;
    let payloads: HashSet<&str> = audit.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(
        payloads,
        HashSet::from([r#"{"n": 0}"#, r#"{"n": 1}"#, r#"{"n": 2}"#])
    );
    let report = outbox
        .complete(
            &audit
                .iter()
                .map(|d| done(d, Completion::Delivered))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert_eq!(report.delivered, 3);
    outbox.housekeeping().await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM courier.messages").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM courier.leases").await, 0);
}

#[tokio::test]
async fn a_stale_and_a_current_outcome_of_one_copy_in_one_batch_are_told_apart() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    let (first, second) = claimed_across_a_rescue(&db, &outbox).await;

    // Both outcomes reach the outbox in one batch, the stale one first.
    let mut stale = done(&first, Completion::Delivered);
    stale.follow_ups.push(message("audit.sent", 1));
    let mut current = done(&second, Completion::Delivered);
    current.follow_ups.push(message("audit.sent", 2));
    let report = outbox.complete(&[stale, current]).await.unwrap();
    assert_eq!(report.lease_lost, [first.key()]);
    assert_eq!((report.delivered, report.follow_ups), (1, 1));
    let follow_ups = claim(&outbox, "audit", &["audit.sent"], 10).await;
    assert_eq!(follow_ups.len(), 1);
    assert_eq!(follow_ups[0].payload, r#"{"n": 2}"#);
}

#[tokio::test]
async fn one_message_collector_works_at_a_time_and_the_others_skip() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    route(&outbox, "emails", "user", &["created"]).await;
    route(&outbox, "audit", "user", &["created"]).await;
    let messages: Vec<NewMessage> = (0..3).map(|n| message("user.created", n)).collect();
    outbox.publish(db.pool(), &messages).await.unwrap();
    let emails = claim(&outbox, "emails", &["user.created"], 10).await;
    let completions: Vec<CompletedDelivery> = emails
        .iter()
        .map(|d| done(d, Completion::Delivered))
        .collect();
    outbox.complete(&completions).await.unwrap();

    // Another collector (here, a transaction holding the collectors' lock) is at work.
    let mut other = db.pool().begin().await.unwrap();
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('courier.collect_messages', 0))",
    )
    .fetch_one(&mut *other)
    .await
    .unwrap();
    assert!(locked);
    assert_eq!(outbox.collect_messages().await.unwrap(), 0);
    other.rollback().await.unwrap();

    assert_eq!(outbox.collect_messages().await.unwrap(), 3);
    assert_eq!(
        count(&db, "SELECT count(*) FROM courier.message_releases").await,
        0
    );
}
