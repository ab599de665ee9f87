//! The SQL the Rust API sends, with the schema written in once when an [`Outbox`] is made, so
//! every statement text is fixed and sqlx prepares and caches each one per connection.
//!
//! [`Outbox`]: crate::Outbox

use crate::schema::Schema;

/// Every statement, schema-qualified.
#[derive(Debug)]
pub(crate) struct Statements {
    pub publish: String,
    pub claim: String,
    pub complete: String,
    pub complete_delivered: String,
    pub declare: String,
    pub routes: String,
    pub delete_route: String,
    pub delete_queue: String,
    pub list_dead_letters: String,
    pub get_dead_letter: String,
    pub redrive: String,
    pub redrive_queue: String,
    pub purge_dead_letters: String,
    pub rescue: String,
    pub collect_messages: String,
    pub prune_delivered: String,
    pub compact_counters: String,
    pub queue_stats: String,
    pub unrouted: String,
    pub next_due_at: String,
}

const QUEUE_STATS: &str = r#"
WITH totals AS (
    SELECT c.queue, sum(c.pending)::bigint AS copies, sum(c.dead)::bigint AS dead,
           sum(c.delivered)::bigint AS delivered
    FROM {s}.queue_counters c
    GROUP BY c.queue
),
queues AS (
    SELECT r.queue FROM {s}.routes r
    UNION
    SELECT t.queue FROM totals t
)
SELECT q.queue,
       coalesce(t.copies, 0),
       coalesce(t.dead, 0),
       coalesce(t.delivered, 0),
       (SELECT coalesce(sum(l.remaining), 0)::bigint FROM {s}.leases l
        WHERE l.queue = q.queue)
       + (SELECT coalesce(sum(cardinality(l.ids)), 0)::bigint FROM {s}.chunk_leases l
          WHERE l.queue = q.queue),
       (SELECT count(*) FROM {s}.deliveries d
        WHERE d.queue = q.queue AND d.deliver_at > now())
FROM queues q
LEFT JOIN totals t ON t.queue = q.queue
ORDER BY q.queue
"#;

const COMPACT_COUNTERS: &str = r#"
WITH folded_queues AS (
    DELETE FROM {s}.queue_counters c
    WHERE c.queue IN (SELECT queue FROM {s}.queue_counters GROUP BY queue HAVING count(*) > 1)
    RETURNING c.queue, c.pending, c.dead, c.delivered
),
queue_sums AS (
    INSERT INTO {s}.queue_counters (queue, pending, dead, delivered)
    SELECT f.queue, sum(f.pending), sum(f.dead), sum(f.delivered)
    FROM folded_queues f GROUP BY f.queue
    RETURNING 1
),
folded_topics AS (
    DELETE FROM {s}.unrouted_counters u
    WHERE u.topic IN (SELECT topic FROM {s}.unrouted_counters GROUP BY topic HAVING count(*) > 1)
    RETURNING u.topic, u.messages
),
topic_sums AS (
    INSERT INTO {s}.unrouted_counters (topic, messages)
    SELECT f.topic, sum(f.messages) FROM folded_topics f GROUP BY f.topic
    RETURNING 1
)
SELECT (SELECT count(*) FROM folded_queues) - (SELECT count(*) FROM queue_sums),
       (SELECT count(*) FROM folded_topics) - (SELECT count(*) FROM topic_sums)
"#;

const LIST_DEAD_LETTERS: &str = r#"
SELECT l.id, l.message_id, l.queue, l.name, l.payload::text, l.headers::text, l.published_at,
       l.attempts, l.last_error, l.dead_at
FROM {s}.dead_letters l
WHERE ($1::text IS NULL OR l.queue = $1) AND l.id > $2
ORDER BY l.id
LIMIT $3
"#;

const GET_DEAD_LETTER: &str = r#"
SELECT l.id, l.message_id, l.queue, l.name, l.payload::text, l.headers::text, l.published_at,
       l.attempts, l.last_error, l.dead_at
FROM {s}.dead_letters l
WHERE l.id = $1
"#;

const PURGE_DEAD_LETTERS: &str = r#"
WITH gone AS (
    DELETE FROM {s}.dead_letters l WHERE $1::text IS NULL OR l.queue = $1 RETURNING l.queue
),
counted AS (
    INSERT INTO {s}.queue_counters (queue, dead)
    SELECT g.queue, -count(*) FROM gone g GROUP BY g.queue
)
SELECT count(*) FROM gone
"#;

impl Statements {
    pub(crate) fn new(schema: &Schema) -> Self {
        let s = schema.quoted();
        let sql = |text: &str| text.replace("{s}", &s);
        Self {
            publish: sql(
                "SELECT {s}.publish_many($1::uuid[], $2::text[], $3::text[]::jsonb[], \
                 $4::timestamptz[], $5::text[]::jsonb[], $6::boolean)",
            ),
            claim: sql(
                "SELECT o_id, o_queue, o_name, o_deliver_at, o_attempt, o_lease_until, \
                 o_last_error, o_payload, o_headers, o_published_at, o_token \
                 FROM {s}.claim_with_tokens($1::text[], $2::text[], $3::integer, $4::uuid, \
                 $5::bigint)",
            ),
            complete: sql(
                "SELECT lost_queue, lost_id FROM {s}.complete_many($1::text[], $2::uuid[], \
                 $3::uuid[], $4::\"char\"[], $5::bigint[], $6::text[], $7::boolean)",
            ),
            complete_delivered: sql(
                "SELECT lost_queue, lost_id FROM {s}.complete_delivered($1::text[], \
                 $2::uuid[], $3::uuid[])",
            ),
            declare: sql(
                "INSERT INTO {s}.routes (queue, topic, events) VALUES ($1, $2, $3) \
                 ON CONFLICT (queue, topic) DO UPDATE \
                 SET events = excluded.events, declared_at = now()",
            ),
            routes: sql("SELECT queue, topic, events FROM {s}.routes ORDER BY queue, topic"),
            delete_route: sql("DELETE FROM {s}.routes WHERE queue = $1 AND topic = $2"),
            delete_queue: sql(
                "SELECT deleted_copies, deleted_dead_letters FROM {s}.delete_queue($1)",
            ),
            list_dead_letters: sql(LIST_DEAD_LETTERS),
            get_dead_letter: sql(GET_DEAD_LETTER),
            redrive: sql("SELECT {s}.redrive($1::bigint[])"),
            redrive_queue: sql(
                "SELECT {s}.redrive(ARRAY(SELECT l.id FROM {s}.dead_letters l \
                 WHERE $1::text IS NULL OR l.queue = $1))",
            ),
            purge_dead_letters: sql(PURGE_DEAD_LETTERS),
            rescue: sql(
                "SELECT rescued_queue, rescued_id, rescued_attempt FROM {s}.rescue($1::integer)",
            ),
            // One collector at a time per schema: see `migrations/0005_one_collector.sql`.
            collect_messages: sql("SELECT {s}.collect_messages($1::integer)"),
            prune_delivered: sql("DELETE FROM {s}.delivered \
                 WHERE delivered_at < now() - $1::bigint * interval '1 millisecond'"),
            compact_counters: sql(COMPACT_COUNTERS),
            queue_stats: sql(QUEUE_STATS),
            unrouted: sql(
                "SELECT topic, sum(messages)::bigint FROM {s}.unrouted_counters \
                 GROUP BY topic ORDER BY topic",
            ),
            next_due_at: sql(
                "SELECT min(n.deliver_at) FROM unnest($1::text[]) AS q(queue) \
                 CROSS JOIN LATERAL ((SELECT d.deliver_at FROM {s}.deliveries d \
                 WHERE d.queue = q.queue AND d.lease_owner IS NULL \
                 ORDER BY d.deliver_at LIMIT 1) \
                 UNION ALL \
                 (SELECT c.deliver_at FROM {s}.chunks c WHERE c.queue = q.queue \
                 ORDER BY c.deliver_at LIMIT 1)) n",
            ),
        }
    }
}
