-- Copies that are not rows.
--
-- With a row per copy, a message fanned out to four queues cost four times what it cost in
-- one: every copy was inserted, leased (an update), deleted and vacuumed, and released its
-- shared payload. Now a publish of many fresh messages (at least 16 of one name, due at
-- once) to a topic routed to several queues stores each message once, in `batch_messages`,
-- and gives every queue one row per name listing the ids of its copies: a chunk. A claim
-- takes ids off the front of a chunk (deleting it when it takes the last) and records them
-- in a `chunk_leases` row; an outcome removes the id from that row. Only a copy that does
-- not get delivered at its first attempt becomes a row in `deliveries`, with its own payload:
-- retried, released, dead-lettered or rescued copies follow the row path from there.
--
-- The functions of the row path are kept under new names (`*_rows`); the functions the host
-- and applications call (`publish_many`, `claim`, `complete_many`, `complete_delivered`,
-- `rescue`, `delete_queue`, `collect_messages`) keep their signatures and serve both.
-- Single messages and small batches keep a row per copy: a chunk of one copy would only add
-- a lease row to each claim.

-- One id per publish statement that made chunks.
CREATE SEQUENCE batch_ids;

-- The messages of chunks, once whatever the number of queues, until no chunk or chunk lease
-- of their batch is left (see `batch_releases`).
CREATE TABLE batch_messages (
    id           uuid        PRIMARY KEY,
    batch_id     bigint      NOT NULL,
    name         text        NOT NULL,
    published_at timestamptz NOT NULL,
    payload      jsonb       NOT NULL,
    headers      jsonb       NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_vacuum_cost_delay = 0);
CREATE INDEX batch_messages_batch ON batch_messages (batch_id);

-- The copies of one batch's messages of one name waiting in one queue, oldest first.
-- A claim shortens `ids` in place (a HOT update: no index covers it).
CREATE TABLE chunks (
    batch_id   bigint      NOT NULL,
    queue      text        NOT NULL,
    name       text        NOT NULL,
    deliver_at timestamptz NOT NULL,
    ids        uuid[]      NOT NULL,
    PRIMARY KEY (batch_id, queue, name)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE chunks ALTER COLUMN ids SET STORAGE EXTERNAL;
CREATE INDEX chunks_ready ON chunks (queue, deliver_at);

-- The copies of chunks a claim holds, per claim, queue and batch, that have no outcome yet.
-- Their attempt is the first.
CREATE TABLE chunk_leases (
    token      uuid        NOT NULL,
    queue      text        NOT NULL,
    batch_id   bigint      NOT NULL,
    deliver_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ids        uuid[]      NOT NULL,
    PRIMARY KEY (token, queue, batch_id)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE chunk_leases ALTER COLUMN ids SET STORAGE EXTERNAL;
CREATE INDEX chunk_leases_batch ON chunk_leases (batch_id);
CREATE INDEX chunk_leases_expiry ON chunk_leases (expires_at);

-- One row each time a chunk or a chunk lease of a batch is deleted. The collector checks
-- those batches and deletes the messages of each that has neither left: the last deletion's
-- row commits with the deletion, so the collector never misses a finished batch, and
-- nothing ever waits on a shared counter.
CREATE TABLE batch_releases (
    batch_id bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);

ALTER FUNCTION publish_many(uuid[], text[], jsonb[], timestamptz[], jsonb[], boolean)
    RENAME TO publish_many_rows;
ALTER FUNCTION claim(text[], text[], integer, uuid, bigint) RENAME TO claim_rows;
ALTER FUNCTION complete_many(text[], uuid[], uuid[], "char"[], bigint[], text[], boolean)
    RENAME TO complete_many_rows;
ALTER FUNCTION complete_delivered(text[], uuid[], uuid[]) RENAME TO complete_delivered_rows;
ALTER FUNCTION rescue(integer) RENAME TO rescue_rows;
ALTER FUNCTION delete_queue(text) RENAME TO delete_queue_rows;

-- Refuses a batch of messages `publish_many_rows` would refuse, with the same errors.
CREATE FUNCTION check_messages(
    p_ids         uuid[],
    p_names       text[],
    p_payloads    jsonb[],
    p_deliver_ats timestamptz[],
    p_headers     jsonb[]
) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_count integer := coalesce(cardinality(p_ids), 0);
    v_bad   text;
BEGIN
    IF coalesce(cardinality(p_names), 0) <> v_count
        OR coalesce(cardinality(p_payloads), 0) <> v_count
        OR (p_deliver_ats IS NOT NULL AND cardinality(p_deliver_ats) <> v_count)
        OR (p_headers IS NOT NULL AND cardinality(p_headers) <> v_count) THEN
        RAISE EXCEPTION 'courier: publish_many needs arrays of the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
END
$$;

-- Publishing: the messages that make chunks (fresh ids, due now, a topic routed to several
-- queues, at least 16 of their name in this batch) are stored once with a chunk per queue
-- and name; the others go through `publish_many_rows`. Same arguments, result, errors and
-- notifications as before.
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
    v_fanned  text[];
    v_chunked integer[];
    v_rest    integer[];
    v_batch   bigint;
    v_copies  bigint;
    v_wake    text[];
    v_channel text := current_schema() || '.wakeup';
BEGIN
    IF p_fresh_ids AND v_count >= 16 THEN
        SELECT array_agg(f.topic) INTO v_fanned
        FROM (SELECT r.topic FROM routes r
              WHERE r.topic = ANY (ARRAY(SELECT DISTINCT split_part(n, '.', 1)
                                         FROM unnest(p_names) AS n))
              GROUP BY r.topic HAVING count(*) > 1) f;
    END IF;
    IF v_fanned IS NULL THEN
        RETURN publish_many_rows(p_ids, p_names, p_payloads, p_deliver_ats, p_headers,
                                 p_fresh_ids);
    END IF;
    PERFORM check_messages(p_ids, p_names, p_payloads, p_deliver_ats, p_headers);

    WITH input AS (
        SELECT t.position::integer AS position, t.name,
               (t.deliver_at IS NULL OR t.deliver_at <= now()) AS due,
               count(*) OVER (PARTITION BY t.name) AS of_name
        FROM unnest(p_names, p_deliver_ats) WITH ORDINALITY AS t(name, deliver_at, position)
    )
    SELECT array_agg(i.position) FILTER (WHERE i.chunk),
           array_agg(i.position) FILTER (WHERE NOT i.chunk)
    INTO v_chunked, v_rest
    FROM (SELECT i.position,
                 i.due AND i.of_name >= 16 AND split_part(i.name, '.', 1) = ANY (v_fanned)
                 AS chunk
          FROM input i) i;

    IF v_chunked IS NULL THEN
        RETURN publish_many_rows(p_ids, p_names, p_payloads, p_deliver_ats, p_headers, true);
    END IF;

    v_batch := nextval('batch_ids');
    WITH chunked AS (
        SELECT p AS position, p_ids[p] AS id, p_names[p] AS name,
               split_part(p_names[p], '.', 1) AS topic, p_payloads[p] AS payload,
               coalesce(p_headers[p], '{}'::jsonb) AS headers
        FROM unnest(v_chunked) AS p
    ),
    stored AS (
        INSERT INTO batch_messages (id, batch_id, name, published_at, payload, headers)
        SELECT c.id, v_batch, c.name, now(), c.payload, c.headers FROM chunked c
    ),
    routed AS (
        SELECT r.queue, c.name, array_agg(c.id ORDER BY c.position) AS ids
        FROM chunked c JOIN routes r ON r.topic = c.topic
        GROUP BY r.queue, c.name
    ),
    made AS (
        INSERT INTO chunks (batch_id, queue, name, deliver_at, ids)
        SELECT v_batch, r.queue, r.name, now(), r.ids FROM routed r
    ),
    counted AS (
        INSERT INTO queue_counters (queue, pending)
        SELECT r.queue, sum(cardinality(r.ids)) FROM routed r GROUP BY r.queue
    )
    SELECT sum(cardinality(r.ids)), array_agg(DISTINCT r.queue)
    INTO v_copies, v_wake
    FROM routed r;

    PERFORM pg_notify(v_channel, q) FROM unnest(v_wake) AS q;
    IF v_rest IS NOT NULL THEN
        v_copies := v_copies + publish_many_rows(
            ARRAY(SELECT p_ids[p] FROM unnest(v_rest) AS p),
            ARRAY(SELECT p_names[p] FROM unnest(v_rest) AS p),
            ARRAY(SELECT p_payloads[p] FROM unnest(v_rest) AS p),
            ARRAY(SELECT p_deliver_ats[p] FROM unnest(v_rest) AS p),
            ARRAY(SELECT p_headers[p] FROM unnest(v_rest) AS p),
            true);
    END IF;
    RETURN v_copies;
END
$$;

-- Claims: copies held as rows first (`claim_rows`: retries, scheduled and single copies,
-- oldest due first), then copies off the front of the oldest due chunks of the served
-- queues and names, up to p_limit in all. Chunk copies come at their first attempt.
CREATE FUNCTION claim(
    p_queues   text[],
    p_names    text[],
    p_limit    integer,
    p_token    uuid,
    p_lease_ms bigint
) RETURNS TABLE (o_id uuid, o_queue text, o_name text, o_deliver_at timestamptz,
                 o_attempt integer, o_lease_until timestamptz, o_last_error text,
                 o_payload text, o_headers text, o_published_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET enable_seqscan = off
SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    v_left  integer;
    v_take  integer;
    v_until timestamptz := now() + p_lease_ms * interval '1 millisecond';
    v_chunk record;
BEGIN
    RETURN QUERY SELECT * FROM claim_rows(p_queues, p_names, p_limit, p_token, p_lease_ms);
    GET DIAGNOSTICS v_left = ROW_COUNT;
    v_left := p_limit - v_left;
    IF v_left <= 0 THEN
        RETURN;
    END IF;
    -- A chunk holds at least one copy: lock no more chunks per queue than could be needed
    -- when they are small.
    FOR v_chunk IN
        WITH served AS (
            SELECT s.queue, array_agg(s.name) AS names
            FROM unnest(p_queues, p_names) AS s(queue, name)
            GROUP BY s.queue
        )
        SELECT c.* FROM served
        CROSS JOIN LATERAL (
            SELECT k.batch_id, k.queue, k.name, k.deliver_at, k.ids
            FROM chunks k
            WHERE k.queue = served.queue
              AND k.deliver_at <= now()
              AND k.name = ANY (served.names)
            ORDER BY k.deliver_at
            LIMIT least(v_left, 64)
            FOR UPDATE SKIP LOCKED
        ) c
        ORDER BY c.deliver_at, c.batch_id
    LOOP
        v_take := least(cardinality(v_chunk.ids), v_left);
        IF v_take = cardinality(v_chunk.ids) THEN
            DELETE FROM chunks k
            WHERE k.batch_id = v_chunk.batch_id AND k.queue = v_chunk.queue
              AND k.name = v_chunk.name;
            INSERT INTO batch_releases (batch_id) VALUES (v_chunk.batch_id);
        ELSE
            UPDATE chunks k SET ids = k.ids[v_take + 1:]
            WHERE k.batch_id = v_chunk.batch_id AND k.queue = v_chunk.queue
              AND k.name = v_chunk.name;
        END IF;
        INSERT INTO chunk_leases AS l (token, queue, batch_id, deliver_at, expires_at, ids)
        VALUES (p_token, v_chunk.queue, v_chunk.batch_id, v_chunk.deliver_at, v_until,
                v_chunk.ids[1:v_take])
        ON CONFLICT (token, queue, batch_id) DO UPDATE SET ids = l.ids || excluded.ids;
        RETURN QUERY
        SELECT m.id, v_chunk.queue, v_chunk.name, v_chunk.deliver_at, 1, v_until, NULL::text,
               m.payload::text, m.headers::text, m.published_at
        FROM unnest(v_chunk.ids[1:v_take]) WITH ORDINALITY AS u(id, position)
        JOIN batch_messages m ON m.id = u.id
        ORDER BY u.position;
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
END
$$;

-- Records the outcomes of the given copies that a chunk lease of their token still holds
-- (arguments as `complete_many`'s): delivered and dead-lettered copies leave, retried and
-- released ones become rows in `deliveries` with their own payload. Returns the positions
-- (1-based) of the arguments it did not find in a chunk lease: copies held as rows, or lost.
--
-- A claim's lease holds thousands of ids: matching them against the outcomes is a hash join
-- whatever the planner guesses of the arrays' sizes (it guesses ten elements, and a nested
-- loop over them cost a second per call). Disabling a plan type makes the planner's costs
-- look huge, which would compile the statement with JIT on every call: JIT is off here.
CREATE FUNCTION complete_chunk_copies(
    p_queues    text[],
    p_ids       uuid[],
    p_tokens    uuid[],
    p_kinds     "char"[],
    p_delays_ms bigint[],
    p_errors    text[],
    p_archive   boolean
) RETURNS SETOF integer
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_nestloop = off
SET enable_mergejoin = off
SET jit = off
AS $$
DECLARE
    v_rest        integer[];
    v_kept        integer[];
    v_deliver_ats timestamptz[];
BEGIN
    WITH input AS (
        SELECT * FROM unnest(p_queues, p_ids, p_tokens, p_kinds)
            WITH ORDINALITY AS t(queue, id, token, kind, position)
    ),
    leased AS (
        SELECT l.token, l.queue, l.batch_id, l.deliver_at, l.ids
        FROM chunk_leases l
        WHERE (l.token, l.queue) IN (SELECT DISTINCT i.token, i.queue FROM input i)
        -- Two completions of one claim lock its leases in the same order: no deadlock.
        ORDER BY l.token, l.queue, l.batch_id
        FOR UPDATE
    ),
    held AS (
        SELECT i.*, l.batch_id, l.deliver_at
        FROM leased l
        CROSS JOIN LATERAL unnest(l.ids) AS u(id)
        JOIN input i ON i.token = l.token AND i.queue = l.queue AND i.id = u.id
    ),
    per_lease AS (
        SELECT h.token, h.queue, h.batch_id, count(*) AS done, array_agg(h.id) AS ids
        FROM held h GROUP BY h.token, h.queue, h.batch_id
    ),
    finished AS (
        DELETE FROM chunk_leases l
        USING leased k, per_lease p
        WHERE k.token = p.token AND k.queue = p.queue AND k.batch_id = p.batch_id
          AND cardinality(k.ids) = p.done
          AND l.token = p.token AND l.queue = p.queue AND l.batch_id = p.batch_id
        RETURNING l.batch_id
    ),
    shrunk AS (
        UPDATE chunk_leases l
        SET ids = ARRAY(SELECT unnest(k.ids) EXCEPT ALL SELECT unnest(p.ids))
        FROM leased k, per_lease p
        WHERE k.token = p.token AND k.queue = p.queue AND k.batch_id = p.batch_id
          AND cardinality(k.ids) > p.done
          AND l.token = p.token AND l.queue = p.queue AND l.batch_id = p.batch_id
    ),
    released AS (
        INSERT INTO batch_releases (batch_id) SELECT f.batch_id FROM finished f
    ),
    counted AS (
        INSERT INTO queue_counters (queue, pending, dead, delivered)
        SELECT h.queue, -count(*), count(*) FILTER (WHERE h.kind = 'x'),
               count(*) FILTER (WHERE h.kind = 'd')
        FROM held h WHERE h.kind IN ('d', 'x') GROUP BY h.queue
    )
    SELECT (SELECT array_agg(h.position::integer ORDER BY h.position) FROM held h
            WHERE h.kind <> 'd' OR p_archive),
           (SELECT array_agg(h.deliver_at ORDER BY h.position) FROM held h
            WHERE h.kind <> 'd' OR p_archive),
           (SELECT array_agg(i.position::integer) FROM input i
            WHERE NOT EXISTS (SELECT 1 FROM held h WHERE h.position = i.position))
    INTO v_kept, v_deliver_ats, v_rest;

    IF v_kept IS NOT NULL THEN
        PERFORM keep_chunk_copies(
            ARRAY(SELECT p_queues[k] FROM unnest(v_kept) AS k),
            ARRAY(SELECT p_ids[k] FROM unnest(v_kept) AS k),
            ARRAY(SELECT p_kinds[k] FROM unnest(v_kept) AS k),
            ARRAY(SELECT p_delays_ms[k] FROM unnest(v_kept) AS k),
            ARRAY(SELECT p_errors[k] FROM unnest(v_kept) AS k),
            v_deliver_ats);
    END IF;
    IF v_rest IS NOT NULL THEN
        RETURN QUERY SELECT unnest(v_rest);
    END IF;
END
$$;

-- What outlives a chunk copy that left its lease with an outcome, from its message: a dead
-- letter ('x'), an archived delivery ('d'), or a row in `deliveries` ('r' retried after
-- delay_ms, attempt 1 counted; 'l' released, due again at p_deliver_ats, attempt not
-- counted). Wakes the queues with a copy due again.
CREATE FUNCTION keep_chunk_copies(
    p_queues      text[],
    p_ids         uuid[],
    p_kinds       "char"[],
    p_delays_ms   bigint[],
    p_errors      text[],
    p_deliver_ats timestamptz[]
) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_wake    text[];
    v_channel text := current_schema() || '.wakeup';
BEGIN
    WITH outcome AS (
        SELECT t.*, m.name, m.payload, m.headers, m.published_at
        FROM unnest(p_queues, p_ids, p_kinds, p_delays_ms, p_errors, p_deliver_ats)
             AS t(queue, id, kind, delay_ms, error, deliver_at)
        JOIN batch_messages m ON m.id = t.id
    ),
    buried AS (
        INSERT INTO dead_letters (message_id, queue, name, payload, headers, published_at,
                                  attempts, last_error)
        SELECT o.id, o.queue, o.name, o.payload, o.headers, o.published_at, 1,
               coalesce(o.error, '')
        FROM outcome o WHERE o.kind = 'x'
    ),
    archived AS (
        INSERT INTO delivered (message_id, queue, name, payload, headers, published_at,
                               attempts)
        SELECT o.id, o.queue, o.name, o.payload, o.headers, o.published_at, 1
        FROM outcome o WHERE o.kind = 'd'
    ),
    requeued AS (
        INSERT INTO deliveries (message_id, deliver_at, published_at, attempt, queue, name,
                                last_error, payload, headers)
        SELECT o.id,
               CASE WHEN o.kind = 'r' THEN now() + o.delay_ms * interval '1 millisecond'
                    ELSE o.deliver_at END,
               o.published_at,
               CASE WHEN o.kind = 'r' THEN 1 ELSE 0 END,
               o.queue, o.name,
               CASE WHEN o.kind = 'r' THEN o.error END,
               o.payload, nullif(o.headers, '{}'::jsonb)
        FROM outcome o WHERE o.kind IN ('r', 'l')
        ON CONFLICT DO NOTHING
        RETURNING queue, deliver_at
    )
    SELECT array_agg(DISTINCT r.queue) FILTER (WHERE r.deliver_at <= now())
    INTO v_wake FROM requeued r;
    IF v_wake IS NOT NULL THEN
        PERFORM pg_notify(v_channel, q) FROM unnest(v_wake) AS q;
    END IF;
END
$$;

-- Every kind of outcome, for copies held in chunk leases or as rows.
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
    v_rest integer[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM chunk_leases l WHERE l.token = ANY (p_tokens)) THEN
        RETURN QUERY SELECT * FROM complete_many_rows(p_queues, p_ids, p_tokens, p_kinds,
                                                      p_delays_ms, p_errors, p_archive);
        RETURN;
    END IF;
    SELECT array_agg(r) INTO v_rest
    FROM complete_chunk_copies(p_queues, p_ids, p_tokens, p_kinds, p_delays_ms, p_errors,
                               p_archive) AS r;
    IF v_rest IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM complete_many_rows(
        ARRAY(SELECT p_queues[r] FROM unnest(v_rest) AS r),
        ARRAY(SELECT p_ids[r] FROM unnest(v_rest) AS r),
        ARRAY(SELECT p_tokens[r] FROM unnest(v_rest) AS r),
        ARRAY(SELECT p_kinds[r] FROM unnest(v_rest) AS r),
        ARRAY(SELECT p_delays_ms[r] FROM unnest(v_rest) AS r),
        ARRAY(SELECT p_errors[r] FROM unnest(v_rest) AS r),
        p_archive);
END
$$;

-- Delivered copies with no archive to keep, held in chunk leases or as rows.
CREATE FUNCTION complete_delivered(p_queues text[], p_ids uuid[], p_tokens uuid[])
RETURNS TABLE (lost_queue text, lost_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_count integer := coalesce(cardinality(p_ids), 0);
    v_rest  integer[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM chunk_leases l WHERE l.token = ANY (p_tokens)) THEN
        RETURN QUERY SELECT * FROM complete_delivered_rows(p_queues, p_ids, p_tokens);
        RETURN;
    END IF;
    SELECT array_agg(r) INTO v_rest
    FROM complete_chunk_copies(p_queues, p_ids, p_tokens,
                               array_fill('d'::"char", ARRAY[v_count]),
                               array_fill(0::bigint, ARRAY[v_count]),
                               array_fill(NULL::text, ARRAY[v_count]),
                               false) AS r;
    IF v_rest IS NULL THEN
        RETURN;
    ELSE
        RETURN QUERY SELECT * FROM complete_delivered_rows(
            ARRAY(SELECT p_queues[r] FROM unnest(v_rest) AS r),
            ARRAY(SELECT p_ids[r] FROM unnest(v_rest) AS r),
            ARRAY(SELECT p_tokens[r] FROM unnest(v_rest) AS r));
    END IF;
END
$$;

-- Rescue: expired claims of rows (`rescue_rows`), then expired chunk leases, whose copies
-- become rows due again at their first deliver time, attempt 1 counted.
CREATE FUNCTION rescue(p_limit integer)
RETURNS TABLE (rescued_queue text, rescued_id uuid, rescued_attempt integer)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_queues   text[];
    v_ids      uuid[];
    v_channel  text := current_schema() || '.wakeup';
BEGIN
    RETURN QUERY SELECT * FROM rescue_rows(p_limit);
    WITH expired AS (
        SELECT l.token, l.queue, l.batch_id FROM chunk_leases l
        WHERE l.expires_at < now()
        ORDER BY l.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM chunk_leases l
        USING expired e
        WHERE l.token = e.token AND l.queue = e.queue AND l.batch_id = e.batch_id
        RETURNING l.queue, l.batch_id, l.deliver_at, l.ids
    ),
    released AS (
        INSERT INTO batch_releases (batch_id) SELECT g.batch_id FROM gone g
    ),
    returned AS (
        INSERT INTO deliveries (message_id, deliver_at, published_at, attempt, queue, name,
                                last_error, payload, headers)
        SELECT m.id, g.deliver_at, m.published_at, 1, g.queue, m.name,
               'the lease expired before attempt 1 reported its outcome',
               m.payload, nullif(m.headers, '{}'::jsonb)
        FROM gone g
        CROSS JOIN LATERAL unnest(g.ids) AS u(id)
        JOIN batch_messages m ON m.id = u.id
        ON CONFLICT DO NOTHING
        RETURNING queue, message_id
    )
    SELECT array_agg(r.queue), array_agg(r.message_id) INTO v_queues, v_ids FROM returned r;

    IF v_queues IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_notify(v_channel, q) FROM (SELECT DISTINCT unnest(v_queues) AS q) t;
    RETURN QUERY SELECT q, i, 1 FROM unnest(v_queues, v_ids) AS t(q, i);
END
$$;

-- Deletes a queue, its chunks and chunk leases included.
CREATE FUNCTION delete_queue(p_queue text, OUT deleted_copies bigint,
                             OUT deleted_dead_letters bigint)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_chunked bigint;
BEGIN
    WITH waiting AS (
        DELETE FROM chunks c WHERE c.queue = p_queue
        RETURNING c.batch_id, cardinality(c.ids) AS copies
    ),
    held AS (
        DELETE FROM chunk_leases l WHERE l.queue = p_queue
        RETURNING l.batch_id, cardinality(l.ids) AS copies
    ),
    gone AS (
        SELECT w.batch_id, w.copies FROM waiting w
        UNION ALL
        SELECT h.batch_id, h.copies FROM held h
    ),
    released AS (
        INSERT INTO batch_releases (batch_id) SELECT g.batch_id FROM gone g
    )
    SELECT coalesce(sum(g.copies), 0) INTO v_chunked FROM gone g;
    SELECT d.deleted_copies + v_chunked, d.deleted_dead_letters
    INTO deleted_copies, deleted_dead_letters
    FROM delete_queue_rows(p_queue) AS d;
END
$$;

-- Deletes the messages of the released batches (at most p_limit releases) that have no
-- chunk and no chunk lease left. Returns the number of releases processed.
CREATE FUNCTION collect_batches(p_limit integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_count bigint;
BEGIN
    WITH batch AS (
        SELECT r.ctid AS row_id FROM batch_releases r
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    released AS (
        DELETE FROM batch_releases r
        WHERE r.ctid = ANY (ARRAY(SELECT b.row_id FROM batch b))
        RETURNING r.batch_id
    ),
    finished AS (
        SELECT DISTINCT r.batch_id FROM released r
        WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.batch_id = r.batch_id)
          AND NOT EXISTS (SELECT 1 FROM chunk_leases l WHERE l.batch_id = r.batch_id)
    ),
    deleted AS (
        DELETE FROM batch_messages m
        WHERE m.batch_id IN (SELECT f.batch_id FROM finished f)
    )
    SELECT count(*) INTO v_count FROM released;
    RETURN v_count;
END
$$;

-- The collector (one at a time per schema, see 0005) now also collects batches.
CREATE OR REPLACE FUNCTION collect_messages(p_limit integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended(current_schema() || '.collect_messages', 0)) THEN
        RETURN 0;
    END IF;
    RETURN collect_messages_unlocked(p_limit) + collect_batches(p_limit);
END
$$;
