-- Courier's outbox: routes, deliveries, leases, dead letters and the SQL publishing API.
--
-- Applied by `courier-outbox` with `search_path` set to the target schema only (default
-- `courier`): every object lands in that schema, and every function is created with
-- `SET search_path FROM CURRENT`, so it finds its tables whatever the caller's search_path.
--
-- Design, for throughput:
-- * `deliveries` holds one row per copy of a message in a queue, keyed by
--   (message_id, queue), which also makes re-publishing idempotent. A message copied into
--   one queue carries its payload in that row; a message fanned out to several queues in
--   one publish stores its payload once in `messages`, with a count of the copies left.
-- * A claim reads the index `deliveries_ready` (queue, due time) and takes a lease by
--   setting columns no index covers, in a table with room on every page: the lease is a
--   HOT update, which writes no index entry. The claim also records one row in `leases`
--   per queue (owner token, expiry, the ids): rescue and in-flight counts read that small
--   table, never the backlog.
-- * Completing deletes the row (a copy sharing its payload is recorded in
--   `message_releases`; housekeeping deletes the message after its last copy); retrying
--   moves its due time.
-- * Statistics come from `queue_counters`, an append-only table of per-batch deltas that
--   housekeeping folds together, so they stay cheap however long a backlog grows and no
--   publisher ever waits on a counter row held by another.

-- A time-ordered UUID (version 7): new ids sort by creation time, which keeps the indexes
-- they enter compact and recent.
CREATE FUNCTION uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT encode(
        set_bit(
            set_bit(
                overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
                52, 1),
            53, 1),
        'hex')::uuid
$$;

-- Which queues receive the messages of a topic. `events` are the event names (after the
-- dot) the queue's subscriber handles; fan-out copies every message of the topic.
CREATE TABLE routes (
    queue       text        NOT NULL,
    topic       text        NOT NULL,
    events      text[]      NOT NULL,
    declared_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, topic)
);
CREATE INDEX routes_topic ON routes (topic);

-- Payloads shared by the copies of a message published to several queues at once, until
-- the last copy is delivered or dead-lettered (see `message_releases`).
CREATE TABLE messages (
    id        uuid    PRIMARY KEY,
    remaining integer NOT NULL,
    payload   jsonb   NOT NULL,
    headers   jsonb   NOT NULL
) WITH (fillfactor = 90,
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_vacuum_cost_delay = 0);

-- One row per copy sharing a payload in `messages` that left its queue (delivered,
-- dead-lettered, deleted). Housekeeping counts them off `messages.remaining` and deletes
-- the messages with no copy left: completions only append here, so queues completing
-- copies of the same messages at the same time never wait on each other.
CREATE TABLE message_releases (
    message_id uuid NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);

-- One row per copy of a message in a queue, until it is delivered or dead-lettered.
-- `payload` is NULL when the copy shares its payload and headers in `messages`; otherwise
-- NULL `headers` means none. Half of every page is left free so that leasing a row (a HOT
-- update) finds room on its own page.
CREATE TABLE deliveries (
    message_id   uuid        NOT NULL,
    deliver_at   timestamptz NOT NULL,
    published_at timestamptz NOT NULL,
    attempt      integer     NOT NULL DEFAULT 0,
    lease_owner  uuid,
    lease_until  timestamptz,
    queue        text        NOT NULL,
    name         text        NOT NULL,
    last_error   text,
    payload      jsonb,
    headers      jsonb,
    PRIMARY KEY (message_id, queue)
) WITH (fillfactor = 50,
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_vacuum_cost_delay = 0);
CREATE INDEX deliveries_ready ON deliveries (queue, deliver_at);

-- One row per claim and queue: who holds the lease, until when, on which copies, and how
-- many of them have no outcome yet.
CREATE TABLE leases (
    token      uuid        NOT NULL,
    queue      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    remaining  integer     NOT NULL,
    ids        uuid[]      NOT NULL,
    PRIMARY KEY (token, queue)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
-- The ids (16 bytes each, thousands per claim) do not compress: do not try.
ALTER TABLE leases ALTER COLUMN ids SET STORAGE EXTERNAL;
CREATE INDEX leases_expiry ON leases (expires_at);

-- Deliveries that failed for good, with everything needed to redrive them.
CREATE TABLE dead_letters (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   uuid        NOT NULL,
    queue        text        NOT NULL,
    name         text        NOT NULL,
    payload      jsonb       NOT NULL,
    headers      jsonb       NOT NULL,
    published_at timestamptz NOT NULL,
    attempts     integer     NOT NULL,
    last_error   text        NOT NULL,
    dead_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_queue ON dead_letters (queue, id);

-- Delivered copies, kept only when the host archives them for a retention period.
CREATE TABLE delivered (
    message_id   uuid        NOT NULL,
    queue        text        NOT NULL,
    name         text        NOT NULL,
    payload      jsonb       NOT NULL,
    headers      jsonb       NOT NULL,
    published_at timestamptz NOT NULL,
    attempts     integer     NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivered_at ON delivered (delivered_at);

-- Per-queue counter deltas, one row per batch; housekeeping folds them into one row per
-- queue. `pending` counts copies in the queue (due, scheduled or in flight), `dead` the
-- queue's dead letters, `delivered` every copy delivered so far.
CREATE TABLE queue_counters (
    queue     text   NOT NULL,
    pending   bigint NOT NULL DEFAULT 0,
    dead      bigint NOT NULL DEFAULT 0,
    delivered bigint NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);

-- Messages published to a topic no queue is routed from (they are not stored), as deltas.
CREATE TABLE unrouted_counters (
    topic    text   NOT NULL,
    messages bigint NOT NULL
);

-- The core of publishing: validates, copies each message into every queue routed from its
-- topic (idempotent per (queue, id)), counts, and notifies each queue that got a due copy
-- once, whatever the number of rows. Returns the number of copies made. Array elements
-- correspond; NULL deliver_at means now, NULL headers means none.
-- p_fresh_ids promises that every id was just generated (unique, never published): the
-- rows are then inserted without the conflict checks that idempotence needs, which cost
-- about three times as much.
CREATE FUNCTION publish_many(
    p_ids         uuid[],
    p_names       text[],
    p_payloads    jsonb[],
    p_deliver_ats timestamptz[],
    p_headers     jsonb[],
    p_fresh_ids   boolean DEFAULT false
) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_count   integer := coalesce(cardinality(p_ids), 0);
    v_bad     text;
    v_copies  bigint;
    v_wake    text[];
    v_channel text := current_schema() || '.wakeup';
BEGIN
    IF v_count = 0 THEN
        RETURN 0;
    END IF;
    IF coalesce(cardinality(p_names), 0) <> v_count
        OR coalesce(cardinality(p_payloads), 0) <> v_count
        OR (p_deliver_ats IS NOT NULL AND cardinality(p_deliver_ats) <> v_count)
        OR (p_headers IS NOT NULL AND cardinality(p_headers) <> v_count) THEN
        RAISE EXCEPTION 'courier: publish_many needs arrays of the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A batch usually repeats a few names: check each distinct one once.
    SELECT n INTO v_bad FROM (SELECT DISTINCT unnest(p_names) AS n) AS names
    WHERE n IS NULL OR n !~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$'
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'courier: invalid event name %', coalesce(quote_literal(v_bad), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'An event name is "topic.event": letters, digits, "_" or "-" on each side of one dot, for example "user.created".';
    END IF;
    IF array_position(p_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'courier: a message id is NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(p_payloads, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'courier: a payload is NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''null''::jsonb for a JSON null payload.';
    END IF;
    IF p_headers IS NOT NULL AND EXISTS (
        SELECT 1 FROM unnest(p_headers) AS h
        WHERE h IS NOT NULL AND h <> '{}'::jsonb
          AND (jsonb_typeof(h) <> 'object'
               OR EXISTS (SELECT 1 FROM jsonb_each(h) AS e WHERE jsonb_typeof(e.value) <> 'string'))
    ) THEN
        RAISE EXCEPTION 'courier: headers must be a JSON object of string values'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF p_fresh_ids THEN
        WITH input AS (
            SELECT t.id, t.name, split_part(t.name, '.', 1) AS topic, t.payload,
                   coalesce(t.deliver_at, now()) AS deliver_at,
                   coalesce(t.headers, '{}'::jsonb) AS headers
            FROM unnest(p_ids, p_names, p_payloads,
                        coalesce(p_deliver_ats, array_fill(NULL::timestamptz, ARRAY[v_count])),
                        coalesce(p_headers, array_fill(NULL::jsonb, ARRAY[v_count])))
                 AS t(id, name, payload, deliver_at, headers)
        ),
        fan AS (
            SELECT r.topic, count(*)::integer AS copies FROM routes r GROUP BY r.topic
        ),
        routed AS (
            SELECT i.id, i.name, i.deliver_at, i.payload, i.headers, r.queue, f.copies
            FROM input i
            JOIN routes r ON r.topic = i.topic
            JOIN fan f ON f.topic = i.topic
        ),
        copied AS (
            INSERT INTO deliveries (message_id, deliver_at, published_at, queue, name,
                                    payload, headers)
            SELECT id, deliver_at, now(), queue, name,
                   CASE WHEN copies = 1 THEN payload END,
                   CASE WHEN copies = 1 AND headers <> '{}'::jsonb THEN headers END
            FROM routed
        ),
        shared AS (
            INSERT INTO messages (id, remaining, payload, headers)
            SELECT i.id, f.copies, i.payload, i.headers
            FROM input i JOIN fan f ON f.topic = i.topic
            WHERE f.copies > 1
        ),
        counted AS (
            INSERT INTO queue_counters (queue, pending)
            SELECT queue, count(*) FROM routed GROUP BY queue
        ),
        unrouted AS (
            INSERT INTO unrouted_counters (topic, messages)
            SELECT i.topic, count(*) FROM input i
            WHERE NOT EXISTS (SELECT 1 FROM fan f WHERE f.topic = i.topic)
            GROUP BY i.topic
        )
        SELECT count(*), array_agg(DISTINCT queue) FILTER (WHERE deliver_at <= now())
        INTO v_copies, v_wake
        FROM routed;
    ELSE
        WITH input AS (
            SELECT DISTINCT ON (t.id)
                   t.id, t.name, split_part(t.name, '.', 1) AS topic, t.payload,
                   coalesce(t.deliver_at, now()) AS deliver_at,
                   coalesce(t.headers, '{}'::jsonb) AS headers
            FROM unnest(p_ids, p_names, p_payloads,
                        coalesce(p_deliver_ats, array_fill(NULL::timestamptz, ARRAY[v_count])),
                        coalesce(p_headers, array_fill(NULL::jsonb, ARRAY[v_count])))
                 WITH ORDINALITY AS t(id, name, payload, deliver_at, headers, position)
            ORDER BY t.id, t.position
        ),
        fan AS (
            SELECT r.topic, count(*)::integer AS copies FROM routes r GROUP BY r.topic
        ),
        routed AS (
            SELECT i.id, i.name, i.topic, i.deliver_at, i.payload, i.headers, r.queue,
                   f.copies
            FROM input i
            LEFT JOIN routes r ON r.topic = i.topic
            LEFT JOIN fan f ON f.topic = i.topic
        ),
        copied AS (
            INSERT INTO deliveries (message_id, deliver_at, published_at, queue, name,
                                    payload, headers)
            SELECT id, deliver_at, now(), queue, name,
                   CASE WHEN copies = 1 THEN payload END,
                   CASE WHEN copies = 1 AND headers <> '{}'::jsonb THEN headers END
            FROM routed WHERE queue IS NOT NULL
            ORDER BY id, queue
            ON CONFLICT DO NOTHING
            RETURNING message_id, queue, deliver_at, payload IS NULL AS shares
        ),
        per_message AS (
            SELECT message_id, count(*)::integer AS copies
            FROM copied WHERE shares GROUP BY message_id
        ),
        shared AS (
            INSERT INTO messages (id, remaining, payload, headers)
            SELECT i.id, c.copies, i.payload, i.headers
            FROM input i JOIN per_message c ON c.message_id = i.id
            ORDER BY i.id
            ON CONFLICT (id) DO UPDATE SET remaining = messages.remaining + excluded.remaining
        ),
        counted AS (
            INSERT INTO queue_counters (queue, pending)
            SELECT queue, count(*) FROM copied GROUP BY queue
        ),
        unrouted AS (
            INSERT INTO unrouted_counters (topic, messages)
            SELECT topic, count(*) FROM routed WHERE queue IS NULL GROUP BY topic
        )
        SELECT count(*), array_agg(DISTINCT queue) FILTER (WHERE deliver_at <= now())
        INTO v_copies, v_wake
        FROM copied;
    END IF;

    IF v_wake IS NOT NULL THEN
        -- One notification per queue; Postgres also folds identical notifications of one
        -- transaction into one, so a transaction publishing many times still wakes each
        -- queue once.
        PERFORM pg_notify(v_channel, q) FROM unnest(v_wake) AS q;
    END IF;
    RETURN v_copies;
END
$$;

-- Publishes one message; returns its id. The SQL face of Courier:
--   select courier.publish('user.created', '{"id": 42}');
-- It is stored if and only if the calling transaction commits.
CREATE FUNCTION publish(
    name       text,
    payload    jsonb,
    id         uuid        DEFAULT NULL,
    deliver_at timestamptz DEFAULT NULL,
    headers    jsonb       DEFAULT '{}'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_id uuid := coalesce($3, uuid_v7());
BEGIN
    PERFORM publish_many(ARRAY[v_id], ARRAY[$1], ARRAY[$2], ARRAY[$4], ARRAY[$5], $3 IS NULL);
    RETURN v_id;
END
$$;

-- Publishes a JSON array of messages, each an object
--   {"name": "user.created", "payload": {...}, "id"?: uuid, "deliver_at"?: timestamp,
--    "headers"?: {"name": "value"}}
-- and returns their ids in order.
CREATE FUNCTION publish_batch(messages jsonb) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_bad    jsonb;
    v_fresh  boolean;
    v_ids    uuid[];
    v_names  text[];
    v_bodies jsonb[];
    v_ats    timestamptz[];
    v_heads  jsonb[];
BEGIN
    IF messages IS NULL OR jsonb_typeof(messages) <> 'array' THEN
        RAISE EXCEPTION 'courier: publish_batch expects a JSON array of messages'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT e INTO v_bad FROM jsonb_array_elements(messages) AS e
    WHERE jsonb_typeof(e) <> 'object'
       OR NOT (e ? 'name') OR jsonb_typeof(e -> 'name') <> 'string'
       OR NOT (e ? 'payload')
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(e) AS k
                  WHERE k NOT IN ('name', 'payload', 'id', 'deliver_at', 'headers'))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'courier: invalid message %', left(v_bad::text, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Each message is an object with "name" and "payload", and optionally "id", "deliver_at" and "headers".';
    END IF;

    SELECT bool_and(NOT (e ? 'id')),
           array_agg(coalesce((e ->> 'id')::uuid, uuid_v7()) ORDER BY position),
           array_agg(e ->> 'name' ORDER BY position),
           array_agg(e -> 'payload' ORDER BY position),
           array_agg((e ->> 'deliver_at')::timestamptz ORDER BY position),
           array_agg(coalesce(e -> 'headers', '{}'::jsonb) ORDER BY position)
    INTO v_fresh, v_ids, v_names, v_bodies, v_ats, v_heads
    FROM jsonb_array_elements(messages) WITH ORDINALITY AS t(e, position);

    PERFORM publish_many(v_ids, v_names, v_bodies, v_ats, v_heads, coalesce(v_fresh, true));
    RETURN QUERY SELECT unnest(v_ids);
END
$$;

-- Counts released copies (at most p_limit of them) off their shared messages and deletes
-- the messages with no copy left. Returns the number of releases processed. Several
-- callers may run at once: each takes its own releases, and row locks on `messages` order
-- the count-downs so that exactly one sees zero.
CREATE FUNCTION collect_messages(p_limit integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_count bigint;
    v_zero  uuid[];
BEGIN
    WITH batch AS (
        SELECT r.ctid AS row_id FROM message_releases r
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    released AS (
        DELETE FROM message_releases r
        WHERE r.ctid = ANY (ARRAY(SELECT b.row_id FROM batch b))
        RETURNING r.message_id
    ),
    per_message AS (
        SELECT r.message_id AS id, count(*)::integer AS copies
        FROM released r GROUP BY r.message_id
    ),
    -- The common case: these were the message's last copies.
    finished AS (
        DELETE FROM messages m
        USING per_message c
        WHERE m.id = c.id AND m.remaining = c.copies
        RETURNING m.id
    ),
    -- Other copies remain (or a concurrent publish of the same id added some).
    counted_down AS (
        UPDATE messages m
        SET remaining = m.remaining - c.copies
        FROM per_message c
        WHERE m.id = c.id AND m.id NOT IN (SELECT f.id FROM finished f)
        RETURNING m.id, m.remaining
    )
    SELECT (SELECT count(*) FROM released),
           (SELECT array_agg(z.id) FROM counted_down z WHERE z.remaining <= 0)
    INTO v_count, v_zero;
    IF v_zero IS NOT NULL THEN
        DELETE FROM messages m WHERE m.id = ANY (v_zero) AND m.remaining <= 0;
    END IF;
    RETURN v_count;
END
$$;

-- Counts down the copies of claims that got an outcome (one element per claim and queue,
-- with how many), and deletes the claims that have none left.
CREATE FUNCTION settle_leases(p_tokens uuid[], p_queues text[], p_counts integer[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_zero_tokens uuid[];
    v_zero_queues text[];
BEGIN
    IF p_tokens IS NULL OR cardinality(p_tokens) = 0 THEN
        RETURN;
    END IF;
    WITH settled AS (
        SELECT * FROM unnest(p_tokens, p_queues, p_counts) AS t(token, queue, copies)
    ),
    finished AS (
        DELETE FROM leases l
        USING settled s
        WHERE l.token = s.token AND l.queue = s.queue AND l.remaining = s.copies
        RETURNING l.token, l.queue
    ),
    counted_down AS (
        UPDATE leases l
        SET remaining = l.remaining - s.copies
        FROM settled s
        WHERE l.token = s.token AND l.queue = s.queue
          AND (l.token, l.queue) NOT IN (SELECT f.token, f.queue FROM finished f)
        RETURNING l.token, l.queue, l.remaining
    )
    SELECT array_agg(z.token), array_agg(z.queue)
    INTO v_zero_tokens, v_zero_queues
    FROM counted_down z WHERE z.remaining <= 0;
    IF v_zero_tokens IS NOT NULL THEN
        DELETE FROM leases l
        USING unnest(v_zero_tokens, v_zero_queues) AS z(token, queue)
        WHERE l.token = z.token AND l.queue = z.queue AND l.remaining <= 0;
    END IF;
END
$$;

-- Records the outcomes of claimed deliveries, each only if its lease is still held by the
-- given owner token. Kinds: 'd' delivered, 'r' retry after delay_ms, 'x' dead letter,
-- 'l' released (back to the queue, the attempt not counted). Returns the deliveries whose
-- lease was lost (expired and rescued, or claimed again): nothing changed for them.
CREATE FUNCTION complete_many(
    p_queues    text[],
    p_ids       uuid[],
    p_tokens    uuid[],
    p_kinds     "char"[],
    p_delays_ms bigint[],
    p_errors    text[],
    p_archive   boolean
) RETURNS TABLE (lost_queue text, lost_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_wake      text[];
    v_lost_q    text[];
    v_lost_id   uuid[];
    v_l_tokens  uuid[];
    v_l_queues  text[];
    v_l_counts  integer[];
    v_channel   text := current_schema() || '.wakeup';
BEGIN
    WITH input AS (
        SELECT * FROM unnest(p_queues, p_ids, p_tokens, p_kinds, p_delays_ms, p_errors)
            AS t(queue, id, token, kind, delay_ms, error)
    ),
    removed AS (
        DELETE FROM deliveries d
        USING input i
        WHERE i.kind IN ('d', 'x')
          AND d.message_id = i.id AND d.queue = i.queue AND d.lease_owner = i.token
        RETURNING d.message_id, d.queue, d.name, d.attempt, d.published_at, d.payload,
                  d.headers, i.kind, i.error, i.token
    ),
    changed AS (
        UPDATE deliveries d
        SET deliver_at = CASE WHEN i.kind = 'r'
                              THEN now() + i.delay_ms * interval '1 millisecond'
                              ELSE d.deliver_at END,
            attempt = CASE WHEN i.kind = 'l' THEN greatest(d.attempt - 1, 0) ELSE d.attempt END,
            last_error = CASE WHEN i.kind = 'r' THEN i.error ELSE d.last_error END,
            lease_owner = NULL,
            lease_until = NULL
        FROM input i
        WHERE i.kind IN ('r', 'l')
          AND d.message_id = i.id AND d.queue = i.queue AND d.lease_owner = i.token
        RETURNING d.message_id, d.queue, d.deliver_at, i.token
    ),
    buried AS (
        INSERT INTO dead_letters (message_id, queue, name, payload, headers, published_at,
                                  attempts, last_error)
        SELECT r.message_id, r.queue, r.name, coalesce(r.payload, m.payload),
               coalesce(r.headers, m.headers, '{}'), r.published_at, r.attempt,
               coalesce(r.error, '')
        FROM removed r LEFT JOIN messages m ON r.payload IS NULL AND m.id = r.message_id
        WHERE r.kind = 'x'
    ),
    archived AS (
        INSERT INTO delivered (message_id, queue, name, payload, headers, published_at,
                               attempts)
        SELECT r.message_id, r.queue, r.name, coalesce(r.payload, m.payload),
               coalesce(r.headers, m.headers, '{}'), r.published_at, r.attempt
        FROM removed r LEFT JOIN messages m ON r.payload IS NULL AND m.id = r.message_id
        WHERE p_archive AND r.kind = 'd'
    ),
    counted AS (
        INSERT INTO queue_counters (queue, pending, dead, delivered)
        SELECT r.queue, -count(*), count(*) FILTER (WHERE r.kind = 'x'),
               count(*) FILTER (WHERE r.kind = 'd')
        FROM removed r GROUP BY r.queue
    ),
    released AS (
        INSERT INTO message_releases (message_id)
        SELECT r.message_id FROM removed r WHERE r.payload IS NULL
    ),
    per_lease AS (
        SELECT s.token, s.queue, count(*)::integer AS copies
        FROM (SELECT r.token, r.queue FROM removed r
              UNION ALL
              SELECT c.token, c.queue FROM changed c) s
        GROUP BY s.token, s.queue
    ),
    lost AS (
        SELECT i.queue, i.id FROM input i
        WHERE NOT EXISTS (SELECT 1 FROM removed r
                          WHERE r.queue = i.queue AND r.message_id = i.id)
          AND NOT EXISTS (SELECT 1 FROM changed c
                          WHERE c.queue = i.queue AND c.message_id = i.id)
    )
    SELECT (SELECT array_agg(DISTINCT c.queue) FROM changed c WHERE c.deliver_at <= now()),
           (SELECT array_agg(l.queue) FROM lost l),
           (SELECT array_agg(l.id) FROM lost l),
           (SELECT array_agg(p.token) FROM per_lease p),
           (SELECT array_agg(p.queue) FROM per_lease p),
           (SELECT array_agg(p.copies) FROM per_lease p)
    INTO v_wake, v_lost_q, v_lost_id, v_l_tokens, v_l_queues, v_l_counts;

    PERFORM settle_leases(v_l_tokens, v_l_queues, v_l_counts);
    IF v_wake IS NOT NULL THEN
        PERFORM pg_notify(v_channel, q) FROM unnest(v_wake) AS q;
    END IF;
    IF v_lost_q IS NOT NULL THEN
        RETURN QUERY SELECT * FROM unnest(v_lost_q, v_lost_id);
    END IF;
END
$$;

-- Returns the deliveries of claims whose lease expired (their host crashed or is stuck) to
-- their queue, looking at p_limit expired claims at most; their attempt stays counted.
-- Returns the deliveries returned.
CREATE FUNCTION rescue(p_limit integer)
RETURNS TABLE (rescued_queue text, rescued_id uuid, rescued_attempt integer)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_queues   text[];
    v_ids      uuid[];
    v_attempts integer[];
    v_channel  text := current_schema() || '.wakeup';
BEGIN
    WITH expired AS (
        SELECT l.ctid AS row_id FROM leases l
        WHERE l.expires_at < now()
        ORDER BY l.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM leases l
        WHERE l.ctid = ANY (ARRAY(SELECT e.row_id FROM expired e))
        RETURNING l.token, l.queue, l.ids
    ),
    held AS (
        SELECT g.token, g.queue, k.id FROM gone g, unnest(g.ids) AS k(id)
    ),
    returned AS (
        UPDATE deliveries d
        SET lease_owner = NULL,
            lease_until = NULL,
            last_error = format('the lease expired before attempt %s reported its outcome',
                                d.attempt)
        FROM held h
        WHERE d.message_id = h.id AND d.queue = h.queue AND d.lease_owner = h.token
        RETURNING d.queue, d.message_id, d.attempt
    )
    SELECT array_agg(r.queue), array_agg(r.message_id), array_agg(r.attempt)
    INTO v_queues, v_ids, v_attempts
    FROM returned r;

    IF v_queues IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_notify(v_channel, q) FROM (SELECT DISTINCT unnest(v_queues) AS q) t;
    RETURN QUERY SELECT * FROM unnest(v_queues, v_ids, v_attempts);
END
$$;

-- Moves dead letters back to their queues as new deliveries (attempt counter reset) and
-- returns how many were redriven.
CREATE FUNCTION redrive(p_ids bigint[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_count   bigint;
    v_wake    text[];
    v_channel text := current_schema() || '.wakeup';
BEGIN
    WITH gone AS (
        DELETE FROM dead_letters l WHERE l.id = ANY (p_ids)
        RETURNING l.message_id, l.queue, l.name, l.payload, l.headers, l.published_at
    ),
    copied AS (
        INSERT INTO deliveries (message_id, deliver_at, published_at, queue, name, payload,
                                headers)
        SELECT DISTINCT ON (g.message_id, g.queue)
               g.message_id, now(), g.published_at, g.queue, g.name, g.payload,
               nullif(g.headers, '{}'::jsonb)
        FROM gone g
        ON CONFLICT DO NOTHING
        RETURNING message_id, queue
    ),
    counted AS (
        INSERT INTO queue_counters (queue, pending, dead)
        SELECT g.queue,
               (SELECT count(*) FROM copied c WHERE c.queue = g.queue),
               -count(*)
        FROM gone g GROUP BY g.queue
    )
    SELECT (SELECT count(*) FROM gone), (SELECT array_agg(DISTINCT c.queue) FROM copied c)
    INTO v_count, v_wake;

    IF v_wake IS NOT NULL THEN
        PERFORM pg_notify(v_channel, q) FROM unnest(v_wake) AS q;
    END IF;
    RETURN v_count;
END
$$;

-- Deletes a queue: its routes, its copies (waiting or in flight), its leases, its dead
-- letters, its archive and its counters. Returns the number of copies and dead letters
-- deleted.
CREATE FUNCTION delete_queue(p_queue text, OUT deleted_copies bigint,
                             OUT deleted_dead_letters bigint)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM routes r WHERE r.queue = p_queue;
    WITH gone AS (
        DELETE FROM deliveries d WHERE d.queue = p_queue
        RETURNING d.message_id, d.payload IS NULL AS shares
    ),
    released AS (
        INSERT INTO message_releases (message_id)
        SELECT g.message_id FROM gone g WHERE g.shares
    )
    SELECT count(*) INTO deleted_copies FROM gone;
    DELETE FROM leases l WHERE l.queue = p_queue;
    WITH gone AS (
        DELETE FROM dead_letters l WHERE l.queue = p_queue RETURNING 1
    )
    SELECT count(*) INTO deleted_dead_letters FROM gone;
    DELETE FROM delivered a WHERE a.queue = p_queue;
    DELETE FROM queue_counters c WHERE c.queue = p_queue;
END
$$;
