//! Copies that are not rows: a batch of fresh messages published to a topic routed to several
//! queues is stored once, with a chunk of ids per queue. Everything a row copy does, a chunk
//! copy does too: claims in publish order, outcomes, rescue, dead letters, statistics, queue
//! deletion; and its message is deleted after its last copy.

use super::*;

/// Messages `job.run` numbered `from..to`, each with a header naming its number.
fn jobs(from: i64, to: i64) -> Vec<NewMessage> {
    (from..to)
        .map(|n| message("job.run", n).header("n", n.to_string()))
        .collect()
}

fn numbers(deliveries: &[ClaimedDelivery]) -> Vec<i64> {
    deliveries
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(&d.payload).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// Two queues, `q1` and `q2`, routed from topic `job`.
async fn two_queues(db: &TestDatabase) -> Outbox {
    let outbox = outbox(db).await;
    route(&outbox, "q1", "job", &["run"]).await;
    route(&outbox, "q2", "job", &["run"]).await;
    outbox
}

/// Every one of `deliveries` delivered.
fn all_delivered(deliveries: &[ClaimedDelivery]) -> Vec<CompletedDelivery> {
    deliveries
        .iter()
        .map(|d| done(d, Completion::Delivered))
        .collect()
}

/// Message `job.run` number `n`, published on its own: a row per copy, not a chunk.
async fn publish_alone(db: &TestDatabase, outbox: &Outbox, n: i64) {
    outbox
        .publish(db.pool(), &[message("job.run", n)])
        .await
        .unwrap();
}

async fn rows_in(db: &TestDatabase, table: &str) -> i64 {
    count(db, &format!("SELECT count(*) FROM courier.{table}")).await
}

#[tokio::test]
async fn a_batch_to_several_queues_is_stored_once_and_claimed_in_publish_order() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    let report = outbox.publish(db.pool(), &jobs(0, 40)).await.unwrap();
    assert_eq!(report.copies, 80);
    assert_eq!(rows_in(&db, "batch_messages").await, 40);
    assert_eq!(rows_in(&db, "chunks").await, 2);
    assert_eq!(rows_in(&db, "deliveries").await, 0, "no row per copy");
    assert_eq!(stats(&outbox, "q1").await.pending, 40);
    assert!(outbox.next_due_at(&["q1"]).await.unwrap().unwrap() <= Utc::now());

    // Claims smaller than the chunk take it from the front, in publish order.
    let mut claimed = Vec::new();
    loop {
        let batch = claim(&outbox, "q1", &["job.run"], 7).await;
        if batch.is_empty() {
            break;
        }
        claimed.extend(batch);
    }
    assert_eq!(numbers(&claimed), (0..40).collect::<Vec<_>>());
    for delivery in &claimed {
        let n = numbers(std::slice::from_ref(delivery))[0];
        assert_eq!(
            (delivery.attempt, delivery.last_error.as_deref()),
            (1, None)
        );
        assert_eq!(
            delivery.headers,
            BTreeMap::from([("n".into(), n.to_string())])
        );
    }
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.in_flight), (0, 40));

    let completions = all_delivered(&claimed);
    let report = outbox.complete(&completions).await.unwrap();
    assert_eq!((report.delivered, report.lease_lost.len()), (40, 0));
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.in_flight, q1.delivered), (0, 0, 40));

    // The messages outlive q1's copies while q2's wait, and go with the last of those.
    outbox.housekeeping().await.unwrap();
    assert_eq!(rows_in(&db, "batch_messages").await, 40);
    let q2 = claim(&outbox, "q2", &["job.run"], 100).await;
    assert_eq!(numbers(&q2), (0..40).collect::<Vec<_>>());
    outbox.complete(&all_delivered(&q2)).await.unwrap();
    assert_nothing_stored(&db, &outbox).await;
}

#[tokio::test]
async fn a_chunk_copy_that_fails_becomes_a_row_with_its_own_payload() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();

    let first = claim(&outbox, "q1", &["job.run"], 4).await;
    assert_eq!(numbers(&first), [0, 1, 2, 3]);
    let report = outbox
        .complete(&[
            done(
                &first[0],
                Completion::Retry {
                    delay: Duration::ZERO,
                    error: "boom".into(),
                },
            ),
            done(&first[1], Completion::Release),
            done(
                &first[2],
                Completion::DeadLetter {
                    error: "gone".into(),
                },
            ),
            done(&first[3], Completion::Delivered),
        ])
        .await
        .unwrap();
    assert_eq!(
        (
            report.retried,
            report.released,
            report.dead_lettered,
            report.delivered
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(rows_in(&db, "deliveries").await, 2);

    // The retried and the released copy come back first, as rows, then the chunk goes on.
    let second = claim(&outbox, "q1", &["job.run"], 3).await;
    let by_number: HashMap<i64, &ClaimedDelivery> =
        numbers(&second).into_iter().zip(&second).collect();
    assert_eq!(by_number.len(), 3);
    let retried = by_number[&0];
    assert_eq!(
        (retried.attempt, retried.last_error.as_deref()),
        (2, Some("boom"))
    );
    assert_eq!(retried.payload, first[0].payload);
    assert_eq!(retried.headers, first[0].headers);
    let released = by_number[&1];
    assert_eq!(released.attempt, 1, "a released attempt is not counted");
    assert_eq!(released.headers, first[1].headers);
    assert_eq!(by_number[&4].attempt, 1);

    let dead = outbox
        .dead_letters(&DeadLetterQuery::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].message_id, dead[0].queue.as_str()),
        (first[2].id, "q1")
    );
    assert_eq!((dead[0].attempts, dead[0].last_error.as_str()), (1, "gone"));
    assert_eq!(dead[0].payload, first[2].payload);
    assert_eq!(dead[0].headers, first[2].headers);
    assert_eq!(dead[0].published_at, first[2].published_at);
    assert!(outbox.redrive(dead[0].id).await.unwrap());
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.delivered, q1.dead, q1.in_flight), (1, 0, 3));

    // q2's copies were never touched.
    let q2 = claim(&outbox, "q2", &["job.run"], 100).await;
    assert_eq!(numbers(&q2), (0..20).collect::<Vec<_>>());
    assert!(q2.iter().all(|d| d.attempt == 1));
}

#[tokio::test]
async fn an_expired_chunk_lease_is_rescued_as_rows_and_the_late_outcome_refused() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();
    let first = claim(&outbox, "q1", &["job.run"], 5).await;
    assert!(
        outbox.rescue_expired().await.unwrap().is_empty(),
        "the lease still holds"
    );

    expire_every_lease(&db).await;
    let mut rescued = outbox.rescue_expired().await.unwrap();
    rescued.sort_by_key(|r| r.id);
    let mut expected: Vec<(Uuid, u32)> = first.iter().map(|d| (d.id, 1)).collect();
    expected.sort();
    assert_eq!(
        rescued
            .iter()
            .map(|r| (r.id, r.attempt))
            .collect::<Vec<_>>(),
        expected
    );

    // Every kind of late outcome is refused.
    let report = outbox
        .complete(&[
            done(&first[0], Completion::Delivered),
            done(&first[1], Completion::Release),
            done(
                &first[2],
                Completion::DeadLetter {
                    error: "late".into(),
                },
            ),
            done(
                &first[3],
                Completion::Retry {
                    delay: Duration::ZERO,
                    error: "late".into(),
                },
            ),
        ])
        .await
        .unwrap();
    let mut lost = report.lease_lost.clone();
    lost.sort_by_key(|key| key.id);
    let mut expected: Vec<_> = first[..4].iter().map(|d| d.key()).collect();
    expected.sort_by_key(|key| key.id);
    assert_eq!(lost, expected);
    assert_eq!(
        (
            report.delivered,
            report.released,
            report.dead_lettered,
            report.retried
        ),
        (0, 0, 0, 0)
    );

    let second = claim(&outbox, "q1", &["job.run"], 5).await;
    assert_eq!(numbers(&second), [0, 1, 2, 3, 4]);
    for (again, before) in second.iter().zip(&first) {
        assert_eq!((again.id, again.attempt), (before.id, 2));
        assert!(
            again
                .last_error
                .as_deref()
                .unwrap()
                .contains("lease expired")
        );
        assert_eq!(
            (&again.payload, &again.headers),
            (&before.payload, &before.headers)
        );
    }
    let completions = all_delivered(&second);
    assert_eq!(outbox.complete(&completions).await.unwrap().delivered, 5);
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.delivered), (15, 5));
}

#[tokio::test]
async fn deleting_a_queue_deletes_its_chunks_and_chunk_leases() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();
    let in_flight = claim(&outbox, "q1", &["job.run"], 5).await;

    let deleted = outbox.delete_queue("q1").await.unwrap();
    assert_eq!((deleted.copies, deleted.dead_letters), (20, 0));
    let completions = all_delivered(&in_flight);
    assert_eq!(
        outbox
            .complete(&completions)
            .await
            .unwrap()
            .lease_lost
            .len(),
        5
    );

    let q2 = claim(&outbox, "q2", &["job.run"], 100).await;
    assert_eq!(q2.len(), 20);
    outbox.complete(&all_delivered(&q2)).await.unwrap();
    assert_nothing_stored(&db, &outbox).await;
}

#[tokio::test]
async fn small_scheduled_and_explicit_id_batches_keep_a_row_per_copy() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;

    // Fewer than 16 of a name: rows.
    outbox.publish(db.pool(), &jobs(0, 15)).await.unwrap();
    assert_eq!(rows_in(&db, "deliveries").await, 30);
    assert_eq!(rows_in(&db, "batch_messages").await, 0);

    // Scheduled messages in a large batch: rows; the due ones: a chunk per queue.
    let later = Utc::now() + chrono::Duration::hours(1);
    let mut batch = jobs(100, 120);
    for message in &mut batch[16..] {
        *message = message.clone().deliver_at(later);
    }
    assert_eq!(outbox.publish(db.pool(), &batch).await.unwrap().copies, 40);
    assert_eq!(rows_in(&db, "batch_messages").await, 16);
    assert_eq!(rows_in(&db, "deliveries").await, 30 + 8);
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.scheduled), (35, 4));

    // Explicit ids may be published again (idempotent per queue): rows.
    let explicit: Vec<NewMessage> = jobs(200, 220)
        .into_iter()
        .map(|m| m.id(Uuid::now_v7()))
        .collect();
    outbox.publish(db.pool(), &explicit).await.unwrap();
    assert_eq!(
        outbox.publish(db.pool(), &explicit).await.unwrap().copies,
        0
    );
    assert_eq!(rows_in(&db, "batch_messages").await, 16);

    // A fresh batch published twice is a mistake, reported as for rows.
    let error = outbox.publish(db.pool(), &batch[..16]).await.unwrap_err();
    assert!(matches!(error, PublishError::PublishedTwice), "{error}");
    assert_eq!(rows_in(&db, "batch_messages").await, 16);

    // Every copy comes out once: rows and chunk copies alike.
    let all = claim(&outbox, "q1", &["job.run"], 1000).await;
    let mut got = numbers(&all);
    got.sort();
    let expected: Vec<i64> = (0..15).chain(100..116).chain(200..220).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn archived_chunk_copies_keep_their_payload() {
    let db = TestDatabase::new().await;
    let outbox = archiving_outbox(&db).await;
    route(&outbox, "q1", "job", &["run"]).await;
    route(&outbox, "q2", "job", &["run"]).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();
    let claimed = claim(&outbox, "q1", &["job.run"], 3).await;
    let completions = all_delivered(&claimed);
    assert_eq!(outbox.complete(&completions).await.unwrap().delivered, 3);
    let archived: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT message_id, payload::text, headers ->> 'n' FROM courier.delivered \
         WHERE queue = 'q1' ORDER BY payload ->> 'n'",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let expected: Vec<(Uuid, String, String)> = claimed
        .iter()
        .enumerate()
        .map(|(n, d)| (d.id, d.payload.clone(), n.to_string()))
        .collect();
    assert_eq!(archived, expected);
}

/// Claims through SQL in a transaction left open, as a claimer in the middle of its claim.
async fn open_claim(
    db: &TestDatabase,
    queue: &str,
    limit: i32,
) -> (sqlx::Transaction<'static, sqlx::Postgres>, Vec<Uuid>) {
    let mut transaction = db.pool().begin().await.unwrap();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT o_id FROM courier.claim_with_tokens(ARRAY[$1], ARRAY['job.run'], $2, $3, 60000)",
    )
    .bind(queue)
    .bind(limit)
    .bind(Uuid::now_v7())
    .fetch_all(&mut *transaction)
    .await
    .unwrap();
    (transaction, ids)
}

#[tokio::test]
async fn claimers_at_work_together_take_different_chunks_and_miss_nothing() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 250)).await.unwrap();
    assert_eq!(rows_in(&db, "chunks").await, 6, "100, 100 and 50 per queue");

    // A claim in progress holds the first chunk; another takes the next one meanwhile.
    let (first, first_ids) = open_claim(&db, "q1", 5).await;
    assert_eq!(first_ids.len(), 5);
    let second = claim(&outbox, "q1", &["job.run"], 100).await;
    assert_eq!(numbers(&second), (100..200).collect::<Vec<_>>());
    first.commit().await.unwrap();
    let third = claim(&outbox, "q1", &["job.run"], 1000).await;
    assert_eq!(
        numbers(&third),
        (5..100).chain(200..250).collect::<Vec<_>>()
    );
    let mut all: Vec<Uuid> = first_ids
        .into_iter()
        .chain(second.iter().chain(&third).map(|d| d.id))
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 250);
}

#[tokio::test]
async fn deleting_a_queue_during_a_claim_leaves_no_lease_behind() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();
    let (claiming, ids) = open_claim(&db, "q1", 5).await;
    assert_eq!(ids.len(), 5);

    // The deletion waits for the claim, then deletes what it leased too.
    let deleting = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.delete_queue("q1").await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!deleting.is_finished(), "the deletion waits for the claim");
    claiming.commit().await.unwrap();
    let deleted = tokio::time::timeout(PATIENCE, deleting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.copies, 20);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM courier.chunk_leases WHERE queue = 'q1'"
        )
        .await,
        0
    );
    assert!(
        outbox
            .queue_stats()
            .await
            .unwrap()
            .iter()
            .all(|s| s.queue != "q1")
    );
}

#[tokio::test]
async fn the_kind_with_the_older_copy_is_claimed_first() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    // A row first, then a chunk: the row comes first.
    publish_alone(&db, &outbox, -1).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();
    assert_eq!(numbers(&claim(&outbox, "q1", &["job.run"], 1).await), [-1]);
    // The chunk's copies are now older than a row published later: they come first, even
    // though rows keep arriving.
    publish_alone(&db, &outbox, 100).await;
    assert_eq!(numbers(&claim(&outbox, "q1", &["job.run"], 1).await), [0]);
    publish_alone(&db, &outbox, 101).await;
    assert_eq!(
        numbers(&claim(&outbox, "q1", &["job.run"], 2).await),
        [1, 2]
    );
    let rest = claim(&outbox, "q1", &["job.run"], 100).await;
    assert_eq!(
        numbers(&rest),
        (3..20).chain([100, 101]).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_fresh_batch_already_published_as_rows_is_refused() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    let batch = jobs(0, 20);
    for part in batch.chunks(10) {
        outbox.publish(db.pool(), part).await.unwrap();
    }
    let error = outbox.publish(db.pool(), &batch).await.unwrap_err();
    assert!(matches!(error, PublishError::PublishedTwice), "{error}");
    assert_eq!(rows_in(&db, "batch_messages").await, 0);
    assert_eq!(stats(&outbox, "q1").await.pending, 20);
}

#[tokio::test]
async fn two_outcomes_for_one_chunk_copy_in_one_sql_call_record_the_first() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();
    let claimed = claim(&outbox, "q1", &["job.run"], 2).await;
    let key = claimed[0].key();
    let lost: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT lost_queue, lost_id FROM courier.complete_many(\
         ARRAY['q1', 'q1'], ARRAY[$1, $1]::uuid[], ARRAY[$2, $2]::uuid[], \
         ARRAY['d', 'd']::\"char\"[], ARRAY[0, 0]::bigint[], ARRAY[NULL, NULL]::text[], false)",
    )
    .bind(key.id)
    .bind(key.lease_token)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(
        lost,
        [("q1".to_owned(), key.id)],
        "the second outcome is refused"
    );
    let q1 = stats(&outbox, "q1").await;
    assert_eq!(
        (q1.delivered, q1.in_flight),
        (1, 1),
        "the other copy is still held"
    );
    let report = outbox
        .complete(&[done(&claimed[1], Completion::Delivered)])
        .await
        .unwrap();
    assert_eq!((report.delivered, report.lease_lost.len()), (1, 0));
}

/// Records the copies `ids` of q1 as delivered under `token` with the SQL completion
/// function, as a completer does; returns the outcomes refused as lost.
async fn complete_delivered_in_sql<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    ids: &[Uuid],
    token: Uuid,
) -> Vec<(String, Uuid)> {
    sqlx::query_as(
        "SELECT lost_queue, lost_id FROM courier.complete_delivered(\
         array_fill('q1'::text, ARRAY[cardinality($1::uuid[])]), $1, \
         array_fill($2::uuid, ARRAY[cardinality($1::uuid[])]))",
    )
    .bind(ids)
    .bind(token)
    .fetch_all(executor)
    .await
    .unwrap()
}

/// Records `deliveries` (of q1) as delivered under `token` in a transaction left open, as a
/// completer in the middle of its completion; nothing may be lost.
async fn open_completion(
    db: &TestDatabase,
    deliveries: &[ClaimedDelivery],
    token: Uuid,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut transaction = db.pool().begin().await.unwrap();
    let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
    let lost = complete_delivered_in_sql(&mut *transaction, &ids, token).await;
    assert!(lost.is_empty(), "{lost:?}");
    transaction
}

/// The distinct lease tokens `deliveries` are held under.
fn lease_tokens(deliveries: &[ClaimedDelivery]) -> std::collections::BTreeSet<Uuid> {
    deliveries.iter().map(|d| d.lease.token).collect()
}

/// The one lease token `deliveries` (the copies of one chunk lease) are held under.
fn lease_token(deliveries: &[ClaimedDelivery]) -> Uuid {
    let tokens = lease_tokens(deliveries);
    assert_eq!(tokens.len(), 1, "one token per chunk lease");
    tokens.into_iter().next().unwrap()
}

#[tokio::test]
async fn two_completions_of_one_claim_at_once_both_count() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();
    let claimed = claim(&outbox, "q1", &["job.run"], 20).await;
    assert_eq!(claimed.len(), 20);
    let token = claimed[0].key().lease_token;

    // The 20 copies are one chunk lease. One completion of the first half holds it; the
    // other half's completion waits for it, then must see what it changed.
    let first = open_completion(&db, &claimed[..10], token).await;
    let second = tokio::spawn({
        let outbox = outbox.clone();
        let completions = all_delivered(&claimed[10..]);
        async move { outbox.complete(&completions).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "the second completion waits for the first"
    );
    first.commit().await.unwrap();
    let report = tokio::time::timeout(PATIENCE, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.delivered, report.lease_lost.len()), (10, 0));

    assert_eq!(
        rows_in(&db, "chunk_leases").await,
        0,
        "the claim holds nothing more"
    );
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.in_flight, q1.delivered), (0, 0, 20));
    expire_every_lease(&db).await;
    assert!(
        outbox.rescue_expired().await.unwrap().is_empty(),
        "nothing to deliver again"
    );
}

#[tokio::test]
async fn each_chunk_lease_has_its_own_token_and_its_completions_wait_for_no_other() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 150)).await.unwrap();
    // Two chunks (100 and 50 copies) of q1, and a row, in one claim.
    publish_alone(&db, &outbox, 150).await;
    let claimed = claim(&outbox, "q1", &["job.run"], 1000).await;
    assert_eq!(numbers(&claimed), (0..=150).collect::<Vec<_>>());
    let (first, second, row) = (&claimed[..100], &claimed[100..150], &claimed[150]);
    let (first_token, second_token) = (lease_token(first), lease_token(second));
    assert_ne!(first_token, second_token);
    assert!(![first_token, second_token].contains(&row.lease.token));

    // A completion of the first chunk's copies, left open, holds only that chunk's lease:
    // the second chunk's copies and the row complete meanwhile.
    let open = open_completion(&db, first, first_token).await;
    let mut rest = all_delivered(second);
    rest.extend(all_delivered(std::slice::from_ref(row)));
    let report = tokio::time::timeout(PATIENCE, outbox.complete(&rest))
        .await
        .expect("the other lease's completion does not wait for the open one")
        .unwrap();
    assert_eq!((report.delivered, report.lease_lost.len()), (51, 0));
    open.commit().await.unwrap();

    assert_eq!(rows_in(&db, "chunk_leases").await, 0);
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.in_flight, q1.delivered), (0, 0, 151));
}

/// Two completers whose outcomes span the same chunk leases lock them in one order (by
/// token), whatever order their outcomes come in: a completion waiting for one lease holds
/// none it would lock after it, so it blocks nobody else meanwhile and cannot deadlock with
/// another completion of the same leases.
#[tokio::test]
async fn a_completion_waiting_for_one_lease_holds_none_it_locks_after_it() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 150)).await.unwrap();
    let claimed = claim(&outbox, "q1", &["job.run"], 1000).await;
    assert_eq!(claimed.len(), 150);
    let (mut low, mut high) = (&claimed[..100], &claimed[100..]);
    if lease_token(low) > lease_token(high) {
        (low, high) = (high, low);
    }
    let low_token = lease_token(low);
    assert_ne!(low_token, lease_token(high));

    // A completer holds the first lease (in token order) mid-completion. Another completion
    // names copies of the second lease first, then copies of the first: it waits.
    let open = open_completion(&db, &low[..10], low_token).await;
    let waiting = tokio::spawn({
        let outbox = outbox.clone();
        let mut completions = all_delivered(&high[..10]);
        completions.extend(all_delivered(&low[10..20]));
        async move { outbox.complete(&completions).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "it waits for the first lease");
    // Meanwhile the second lease is free: a third completion of its other copies goes through.
    let report = tokio::time::timeout(PATIENCE, outbox.complete(&all_delivered(&high[10..])))
        .await
        .expect("the waiting completion holds no lease it would lock after the one it waits for")
        .unwrap();
    assert_eq!(
        (report.delivered, report.lease_lost.len()),
        (high.len() - 10, 0)
    );

    open.commit().await.unwrap();
    let report = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.delivered, report.lease_lost.len()), (20, 0));
    let report = outbox.complete(&all_delivered(&low[20..])).await.unwrap();
    assert_eq!(
        (report.delivered, report.lease_lost.len()),
        (low.len() - 20, 0)
    );
    assert_eq!(rows_in(&db, "chunk_leases").await, 0);
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.in_flight, q1.delivered), (0, 0, 150));
}

#[tokio::test]
async fn a_host_of_the_previous_version_claims_and_completes_with_its_claims_token() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    outbox.publish(db.pool(), &jobs(0, 150)).await.unwrap();
    // As hosts did before per-lease tokens, still running while a newer one migrated the
    // database: `claim`, and every outcome under the claim's token.
    let token = Uuid::now_v7();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT o_id FROM courier.claim(ARRAY['q1'], ARRAY['job.run'], 1000, $1, 60000)",
    )
    .bind(token)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(ids.len(), 150);
    let lost = complete_delivered_in_sql(db.pool(), &ids, token).await;
    assert_eq!(lost, Vec::<(String, Uuid)>::new());
    assert_eq!(rows_in(&db, "chunk_leases").await, 0);
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.in_flight, q1.delivered), (0, 0, 150));
}

#[tokio::test]
async fn copies_claimed_after_rows_and_over_several_passes_complete_under_their_tokens() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    // A row, then three batches of 20: chunks of 20 copies, so a claim of 51 takes the row,
    // then the chunks one pass each (a pass takes at most one chunk per 100 copies wanted).
    publish_alone(&db, &outbox, -1).await;
    for from in [0, 20, 40] {
        outbox
            .publish(db.pool(), &jobs(from, from + 20))
            .await
            .unwrap();
    }
    assert_eq!(rows_in(&db, "chunks").await, 6);
    let claimed = claim(&outbox, "q1", &["job.run"], 51).await;
    assert_eq!(numbers(&claimed), (-1..50).collect::<Vec<_>>());
    assert_eq!(
        lease_tokens(&claimed).len(),
        4,
        "the row's claim token and one per chunk lease"
    );
    assert_eq!(rows_in(&db, "chunk_leases").await, 3);

    let report = outbox.complete(&all_delivered(&claimed)).await.unwrap();
    assert_eq!((report.delivered, report.lease_lost.len()), (51, 0));
    assert_eq!(rows_in(&db, "chunk_leases").await, 0);
    let q1 = stats(&outbox, "q1").await;
    assert_eq!((q1.pending, q1.in_flight, q1.delivered), (10, 0, 51));
    let rest = claim(&outbox, "q1", &["job.run"], 100).await;
    assert_eq!(numbers(&rest), (50..60).collect::<Vec<_>>());
}

#[tokio::test]
async fn claims_of_one_name_are_not_held_back_by_another_names_old_chunks() {
    let db = TestDatabase::new().await;
    let outbox = outbox(&db).await;
    for queue in ["q1", "q2"] {
        route(&outbox, queue, "job", &["run", "skip"]).await;
    }
    // Old chunks of a name nobody claims here, then a row and chunks of the claimed name.
    let skipped: Vec<NewMessage> = (0..20).map(|n| message("job.skip", n)).collect();
    outbox.publish(db.pool(), &skipped).await.unwrap();
    publish_alone(&db, &outbox, -1).await;
    outbox.publish(db.pool(), &jobs(0, 20)).await.unwrap();
    // The row of job.run is older than its chunks: it comes first.
    assert_eq!(numbers(&claim(&outbox, "q1", &["job.run"], 1).await), [-1]);
}

#[tokio::test]
async fn an_id_given_twice_in_one_batch_is_refused_whatever_its_path() {
    let db = TestDatabase::new().await;
    let outbox = two_queues(&db).await;
    let mut batch = jobs(0, 20);
    let later = Utc::now() + chrono::Duration::hours(1);
    batch.push(batch[0].clone().deliver_at(later));
    let error = outbox.publish(db.pool(), &batch).await.unwrap_err();
    assert!(matches!(error, PublishError::PublishedTwice), "{error}");
    assert_eq!(rows_in(&db, "batch_messages").await, 0);
    assert_eq!(rows_in(&db, "deliveries").await, 0);
}
