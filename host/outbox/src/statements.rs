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

/// The claim: per queue, the oldest due unleased copies of the served names (an ordered
/// scan of `deliveries_ready`; copies due at the same time come in the order they were
/// stored), locked with SKIP LOCKED; the oldest `limit` of those are
/// leased (a HOT update: no index covers the lease columns) and returned with their payload,
/// and the lease is recorded per queue in `leases`.
///
/// The claim's commit does not wait for the disk (`synchronous_commit` off for its own
/// transaction): if the database crashed before flushing it, the deliveries would just be
/// claimed again, so it need not cost a disk flush, and a claim returns milliseconds sooner.
/// The commits that record outcomes and publish do wait.
const CLAIM: &str = r#"
WITH settings AS (
    SELECT set_config('synchronous_commit', 'off', true)
),
served AS (
    SELECT s.queue, array_agg(s.name) AS names
    FROM unnest($1::text[], $2::text[]) AS s(queue, name), settings
    GROUP BY s.queue
),
picked AS (
    SELECT c.row_id, c.deliver_at, c.message_id
    FROM served
    CROSS JOIN LATERAL (
        SELECT d.ctid AS row_id, d.deliver_at, d.message_id
        FROM {s}.deliveries d
        WHERE d.queue = served.queue
          AND d.deliver_at <= now()
          AND d.lease_owner IS NULL
          AND d.name = ANY (served.names)
        ORDER BY d.deliver_at
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY c.deliver_at
    LIMIT $3
),
claimed AS (
    UPDATE {s}.deliveries d
    SET attempt = d.attempt + 1,
        lease_owner = $4,
        lease_until = now() + $5 * interval '1 millisecond'
    WHERE d.ctid = ANY (ARRAY(SELECT p.row_id FROM picked p))
    RETURNING d.message_id, d.queue, d.name, d.deliver_at, d.published_at, d.attempt,
              d.lease_until, d.last_error, d.payload, d.headers
),
leased AS (
    INSERT INTO {s}.leases (token, queue, expires_at, remaining, ids)
    SELECT $4, c.queue, min(c.lease_until), count(*), array_agg(c.message_id)
    FROM claimed c
    GROUP BY c.queue
)
SELECT c.message_id, c.queue, c.name, c.deliver_at, c.attempt, c.lease_until, c.last_error,
       CASE WHEN c.payload IS NULL
            THEN (SELECT m.payload FROM {s}.messages m WHERE m.id = c.message_id)
            ELSE c.payload END::text,
       CASE WHEN c.payload IS NULL
            THEN (SELECT m.headers FROM {s}.messages m WHERE m.id = c.message_id)
            ELSE coalesce(c.headers, '{}') END::text,
       c.published_at
FROM claimed c
ORDER BY c.deliver_at, c.message_id
"#;

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
            claim: sql(CLAIM),
            complete: sql(
                "SELECT lost_queue, lost_id FROM {s}.complete_many($1::text[], $2::uuid[], \
                 $3::uuid[], $4::\"char\"[], $5::bigint[], $6::text[], $7::boolean)",
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
                 CROSS JOIN LATERAL (SELECT d.deliver_at FROM {s}.deliveries d \
                 WHERE d.queue = q.queue AND d.lease_owner IS NULL \
                 ORDER BY d.deliver_at LIMIT 1) n",
            ),
        }
    }
}
