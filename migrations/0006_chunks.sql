-- Copies that are not rows.
--
-- With a row per copy, a message fanned out to four queues cost four times what it cost in
-- one: every copy was inserted, leased (an update), deleted and vacuumed, and released its
-- shared payload. Now a publish of many fresh messages (at least 16 of one name, without a
-- delivery time) to a topic routed to several queues stores each message once, in
-- `batch_messages`, and gives every queue rows listing the ids of its copies, up to 100 ids
-- each: chunks. A claim takes ids off the front of the oldest chunks and records them in
-- one `chunk_leases` row per chunk; an outcome removes the id from that row. Only a copy
-- that does not get delivered at its first attempt becomes a row in `deliveries`, with its
-- own payload: retried, released, dead-lettered or rescued copies follow the row path from
-- there.
--
-- The functions of the row path are kept under new names (`*_rows`); the functions the host
-- and applications call (`publish_many`, `claim`, `complete_many`, `complete_delivered`,
-- `rescue`, `delete_queue`, `collect_messages`) keep their signatures and serve both.
-- Single messages and small batches keep a row per copy: a chunk of one copy would only add
-- a lease row to each claim. So do messages with a delivery time (scheduled, or explicit)
-- and messages with explicit ids (publishing them again is a no-op per queue).

-- One id per publish statement that made chunks; chunk ids, in publish order.
CREATE SEQUENCE batch_ids;
CREATE SEQUENCE chunk_ids;

-- The messages of chunks, once whatever the number of queues, until no chunk or chunk lease
-- of their batch is left (see `batch_releases`). Payload and headers are kept as the JSON
-- text claims return: converted once at publish rather than once per queue at every claim.
-- `seq` numbers the batch's messages of one name from 0 in publish order: a chunk's copies
-- are a run of them, which a claim reads as one index range.
CREATE TABLE batch_messages (
    id           uuid        PRIMARY KEY,
    batch_id     bigint      NOT NULL,
    name         text        NOT NULL,
    seq          integer     NOT NULL,
    published_at timestamptz NOT NULL,
    payload      text        NOT NULL,
    headers      text        NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.05,
        autovacuum_vacuum_cost_delay = 0);
CREATE INDEX batch_messages_run ON batch_messages (batch_id, name, seq);

-- Up to 100 copies of one batch's messages of one name, waiting in one queue, in publish
-- order: the messages numbered `first_seq` on, whose ids are `ids`. 100 ids (1.6 kB) stay
-- in the row, out of TOAST; a claim shortens `ids` in place (a HOT update: no index covers
-- it).
CREATE TABLE chunks (
    id         bigint      PRIMARY KEY,
    batch_id   bigint      NOT NULL,
    queue      text        NOT NULL,
    name       text        NOT NULL,
    deliver_at timestamptz NOT NULL,
    first_seq  integer     NOT NULL,
    ids        uuid[]      NOT NULL
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX chunks_ready ON chunks (queue, deliver_at, id);
CREATE INDEX chunks_batch ON chunks (batch_id);

-- The copies of one chunk a claim holds and that have no outcome yet; their attempt is the
-- first.
CREATE TABLE chunk_leases (
    token      uuid        NOT NULL,
    chunk_id   bigint      NOT NULL,
    queue      text        NOT NULL,
    batch_id   bigint      NOT NULL,
    deliver_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ids        uuid[]      NOT NULL,
    PRIMARY KEY (token, chunk_id)
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
CREATE INDEX chunk_leases_batch ON chunk_leases (batch_id);
CREATE INDEX chunk_leases_expiry ON chunk_leases (expires_at);

-- One row when a batch is stored and each time one of its chunks or chunk leases is
-- deleted. The collector checks those batches and deletes the messages of each that has
-- neither left: the last deletion's row commits with the deletion, so the collector never
-- misses a finished batch, and nothing ever waits on a shared counter.
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

-- Publishing: the messages that make chunks (fresh ids, no delivery time, a topic routed to
-- several queues, at least 16 of their name in this batch) are stored once with chunks of
-- up to 100 copies per queue and name; the others go through `publish_many_rows`. Same
-- arguments, result, errors and notifications as before.
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

    SELECT array_agg(i.position) FILTER (WHERE i.chunk),
           array_agg(i.position) FILTER (WHERE NOT i.chunk)
    INTO v_chunked, v_rest
    FROM (SELECT t.position::integer AS position,
                 t.deliver_at IS NULL
                 AND count(*) FILTER (WHERE t.deliver_at IS NULL)
                         OVER (PARTITION BY t.name) >= 16
                 AND split_part(t.name, '.', 1) = ANY (v_fanned) AS chunk
          FROM unnest(p_names, p_deliver_ats) WITH ORDINALITY AS t(name, deliver_at, position)
         ) i;

    IF v_chunked IS NULL THEN
        RETURN publish_many_rows(p_ids, p_names, p_payloads, p_deliver_ats, p_headers, true);
    END IF;
    -- Fresh ids are new by promise: one already in a queue as a row, or given twice in this
    -- call (once for a chunk, once for a row), is a message published twice, refused as the
    -- row path refuses it.
    IF EXISTS (SELECT 1 FROM deliveries d
               WHERE d.message_id = ANY (ARRAY(SELECT p_ids[p] FROM unnest(v_chunked) AS p)))
       OR (v_rest IS NOT NULL
           AND EXISTS (SELECT 1 FROM unnest(v_rest) AS r JOIN unnest(v_chunked) AS c
                       ON p_ids[r] = p_ids[c])) THEN
        RAISE EXCEPTION 'courier: a fresh message id was published before'
            USING ERRCODE = 'unique_violation';
    END IF;

    v_batch := nextval('batch_ids');
    WITH chunked AS (
        SELECT p AS position, p_ids[p] AS id, p_names[p] AS name,
               split_part(p_names[p], '.', 1) AS topic, p_payloads[p] AS payload,
               coalesce(p_headers[p], '{}'::jsonb) AS headers,
               row_number() OVER (PARTITION BY p_names[p] ORDER BY p)::integer - 1 AS seq
        FROM unnest(v_chunked) AS p
    ),
    stored AS (
        INSERT INTO batch_messages (id, batch_id, name, seq, published_at, payload, headers)
        SELECT c.id, v_batch, c.name, c.seq, now(), c.payload::text, c.headers::text
        FROM chunked c
    ),
    -- A chunk per 100 messages of a name, the same runs in every queue.
    made AS (
        INSERT INTO chunks (id, batch_id, queue, name, deliver_at, first_seq, ids)
        SELECT nextval('chunk_ids'), v_batch, g.queue, g.name, now(), g.first_seq, g.ids
        FROM (SELECT r.queue, c.name, min(c.seq) AS first_seq,
                     array_agg(c.id ORDER BY c.seq) AS ids
              FROM chunked c JOIN routes r ON r.topic = c.topic
              GROUP BY r.queue, c.name, c.seq / 100
              ORDER BY c.seq / 100, r.queue, c.name) g
        RETURNING queue, cardinality(ids) AS copies
    ),
    -- Checked by the collector like every other release: were the routes deleted since
    -- they were read above, the batch has no chunk and its messages are deleted.
    released AS (
        INSERT INTO batch_releases (batch_id) VALUES (v_batch)
    ),
    counted AS (
        INSERT INTO queue_counters (queue, pending)
        SELECT m.queue, sum(m.copies) FROM made m GROUP BY m.queue
    )
    SELECT coalesce(sum(m.copies), 0), array_agg(DISTINCT m.queue)
    INTO v_copies, v_wake
    FROM made m;

    IF v_wake IS NOT NULL THEN
        PERFORM pg_notify(v_channel, q) FROM unnest(v_wake) AS q;
    END IF;
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

-- Claims up to p_limit copies from the oldest chunks of the served queues and names, each
-- taken from its front into a chunk lease. Per queue, it locks no more chunks than it could
-- need (a chunk holds at most 100 copies), so that concurrent claimers each lock only what
-- they take; when chunks hold fewer, it goes round again. Chunk copies come at their first
-- attempt.
CREATE FUNCTION claim_chunks(
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
SET enable_memoize = off
SET jit = off
AS $$
DECLARE
    v_left  integer := p_limit;
    v_taken integer;
    v_until timestamptz := now() + p_lease_ms * interval '1 millisecond';
BEGIN
    WHILE v_left > 0 LOOP
        RETURN QUERY
        WITH served AS (
            SELECT s.queue, array_agg(s.name) AS names
            FROM unnest(p_queues, p_names) AS s(queue, name)
            GROUP BY s.queue
        ),
        picked AS (
            SELECT c.* FROM served
            CROSS JOIN LATERAL (
                SELECT k.id, k.batch_id, k.queue, k.name, k.deliver_at, k.first_seq, k.ids,
                       cardinality(k.ids) AS size
                FROM chunks k
                WHERE k.queue = served.queue
                  AND k.deliver_at <= now()
                  AND k.name = ANY (served.names)
                ORDER BY k.deliver_at, k.id
                LIMIT (v_left + 99) / 100
                FOR UPDATE SKIP LOCKED
            ) c
        ),
        taken AS (
            SELECT o.*, least(o.size, v_left - o.before)::integer AS take
            FROM (SELECT p.*, sum(p.size) OVER (ORDER BY p.deliver_at, p.id) - p.size AS before
                  FROM picked p) o
            WHERE o.before < v_left
        ),
        emptied AS (
            DELETE FROM chunks k
            WHERE k.id = ANY (ARRAY(SELECT t.id FROM taken t WHERE t.take = t.size))
            RETURNING k.batch_id
        ),
        shortened AS (
            UPDATE chunks k SET ids = k.ids[t.take + 1:], first_seq = k.first_seq + t.take
            FROM taken t
            WHERE k.id = t.id AND t.take < t.size
        ),
        released AS (
            INSERT INTO batch_releases (batch_id) SELECT e.batch_id FROM emptied e
        ),
        leased AS (
            INSERT INTO chunk_leases (token, chunk_id, queue, batch_id, deliver_at, expires_at,
                                      ids)
            SELECT p_token, t.id, t.queue, t.batch_id, t.deliver_at, v_until, t.ids[1:t.take]
            FROM taken t
        )
        SELECT m.id, t.queue, t.name, t.deliver_at, 1, v_until, NULL::text, m.payload,
               m.headers, m.published_at
        FROM taken t
        JOIN batch_messages m
          ON m.batch_id = t.batch_id AND m.name = t.name
         AND m.seq >= t.first_seq AND m.seq < t.first_seq + t.take
        ORDER BY t.deliver_at, t.id, m.seq;
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        EXIT WHEN v_taken = 0;
        v_left := v_left - v_taken;
    END LOOP;
END
$$;

-- Claims up to p_limit copies, rows (`claim_rows`) and chunk copies (`claim_chunks`). Each
-- kind comes oldest first; the kind whose oldest due copy is older goes first, so that a
-- steady flow of one kind never starves the other.
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
    v_chunks_from timestamptz;
    v_rows_from   timestamptz;
    v_taken       integer;
BEGIN
    -- As in `claim_rows`: the claim's commit does not wait for the disk.
    PERFORM set_config('synchronous_commit', 'off', true);
    WITH served AS (
        SELECT s.queue, array_agg(s.name) AS names
        FROM unnest(p_queues, p_names) AS s(queue, name)
        GROUP BY s.queue
    )
    SELECT min(c.deliver_at) INTO v_chunks_from
    FROM served
    CROSS JOIN LATERAL (
        SELECT k.deliver_at FROM chunks k
        WHERE k.queue = served.queue AND k.deliver_at <= now()
          AND k.name = ANY (served.names)
        ORDER BY k.deliver_at LIMIT 1
    ) c;
    IF v_chunks_from IS NULL THEN
        RETURN QUERY SELECT * FROM claim_rows(p_queues, p_names, p_limit, p_token, p_lease_ms);
        RETURN;
    END IF;
    WITH served AS (
        SELECT s.queue, array_agg(s.name) AS names
        FROM unnest(p_queues, p_names) AS s(queue, name)
        GROUP BY s.queue
    )
    SELECT min(d.deliver_at) INTO v_rows_from
    FROM served
    CROSS JOIN LATERAL (
        SELECT r.deliver_at FROM deliveries r
        WHERE r.queue = served.queue AND r.deliver_at <= now() AND r.lease_owner IS NULL
          AND r.name = ANY (served.names)
        ORDER BY r.deliver_at LIMIT 1
    ) d;
    IF v_rows_from IS NOT NULL AND v_rows_from <= v_chunks_from THEN
        RETURN QUERY SELECT * FROM claim_rows(p_queues, p_names, p_limit, p_token, p_lease_ms);
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        IF v_taken < p_limit THEN
            RETURN QUERY SELECT * FROM claim_chunks(p_queues, p_names, p_limit - v_taken,
                                                    p_token, p_lease_ms);
        END IF;
    ELSE
        RETURN QUERY SELECT * FROM claim_chunks(p_queues, p_names, p_limit, p_token,
                                                p_lease_ms);
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        IF v_taken < p_limit THEN
            RETURN QUERY SELECT * FROM claim_rows(p_queues, p_names, p_limit - v_taken,
                                                  p_token, p_lease_ms);
        END IF;
    END IF;
END
$$;

-- Records the outcomes of the given copies that a chunk lease of their token still holds
-- (arguments as `complete_many`'s, plus p_claims: the distinct tokens): delivered and dead-lettered copies leave, retried and
-- released ones become rows in `deliveries` with their own payload. Returns the positions
-- (1-based) of the arguments it did not record: copies held as rows, lost ones, a second
-- outcome for one copy, unknown kinds.
--
-- A claim holds thousands of ids: matching them against the outcomes is a hash join
-- whatever the planner guesses of the arrays' sizes (it guesses ten elements, and a nested
-- loop over them cost a second per call). Disabling a plan type makes the planner's costs
-- look huge, which would compile the statement with JIT on every call: JIT is off here. The
-- lease rows are found by token through their primary key and changed by their row id, so
-- no join reaches the table itself.
CREATE FUNCTION complete_chunk_copies(
    p_queues    text[],
    p_ids       uuid[],
    p_tokens    uuid[],
    p_kinds     "char"[],
    p_delays_ms bigint[],
    p_errors    text[],
    p_archive   boolean,
    p_claims    uuid[]
) RETURNS SETOF integer
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_nestloop = off
SET enable_mergejoin = off
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_rest        integer[];
    v_kept        integer[];
    v_deliver_ats timestamptz[];
BEGIN
    -- The claims' leases are locked first, in a statement of their own: two completions of
    -- one claim lock them in the same order (no deadlock), and the statement below, with a
    -- snapshot taken once it holds them, sees their latest versions, which it changes by
    -- row id.
    PERFORM 1 FROM chunk_leases l
    WHERE l.token = ANY (p_claims)
    ORDER BY l.token, l.chunk_id
    FOR UPDATE;
    -- The first outcome of each copy (a second one is not recorded).
    WITH input AS (
        SELECT t.queue, t.id, t.token, min(t.position)::integer AS position
        FROM unnest(p_queues, p_ids, p_tokens, p_kinds)
             WITH ORDINALITY AS t(queue, id, token, kind, position)
        WHERE t.kind IN ('d', 'x', 'r', 'l')
        GROUP BY t.token, t.queue, t.id
    ),
    leased AS (
        SELECT l.ctid AS row_id, l.token, l.queue, l.deliver_at, l.ids
        FROM chunk_leases l
        WHERE l.token = ANY (p_claims)
    ),
    -- Every id the leases hold, then matched: unnesting after a join would unnest each
    -- lease once per outcome of its claim.
    lease_ids AS MATERIALIZED (
        SELECT l.row_id, l.token, l.queue, l.deliver_at, u.id
        FROM leased l CROSS JOIN LATERAL unnest(l.ids) AS u(id)
    ),
    held AS (
        SELECT i.position, i.queue, p_kinds[i.position] AS kind, e.row_id, e.deliver_at, e.id
        FROM lease_ids e
        JOIN input i ON i.token = e.token AND i.queue = e.queue AND i.id = e.id
    ),
    per_lease AS (
        SELECT h.row_id, count(*) AS done, array_agg(h.id) AS ids
        FROM held h GROUP BY h.row_id
    ),
    outcome AS (
        SELECT p.row_id, p.done = cardinality(k.ids) AS emptied,
               CASE WHEN p.done < cardinality(k.ids)
                    THEN ARRAY(SELECT unnest(k.ids) EXCEPT ALL SELECT unnest(p.ids)) END AS ids
        FROM per_lease p JOIN leased k ON k.row_id = p.row_id
    ),
    finished AS (
        DELETE FROM chunk_leases l
        WHERE l.ctid = ANY (ARRAY(SELECT o.row_id FROM outcome o WHERE o.emptied))
        RETURNING l.batch_id
    ),
    shrunk AS (
        UPDATE chunk_leases l
        SET ids = (SELECT o.ids FROM outcome o WHERE o.row_id = l.ctid)
        WHERE l.ctid = ANY (ARRAY(SELECT o.row_id FROM outcome o WHERE NOT o.emptied))
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
           CASE WHEN (SELECT count(*) FROM held) < cardinality(p_ids) THEN
               (SELECT array_agg(t.position::integer)
                FROM generate_subscripts(p_ids, 1) AS t(position)
                WHERE NOT EXISTS (SELECT 1 FROM held h WHERE h.position = t.position))
           END
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
-- counted). Wakes the queues with a copy due again. Plans as usual (index lookups of the
-- messages), whatever its caller's settings.
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
SET enable_nestloop = on
SET enable_mergejoin = on
SET enable_seqscan = on
AS $$
DECLARE
    v_wake    text[];
    v_channel text := current_schema() || '.wakeup';
BEGIN
    WITH outcome AS (
        SELECT t.*, m.name, m.payload::jsonb AS payload, m.headers::jsonb AS headers,
               m.published_at
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
        -- The same message already waits in the queue as a row (published twice): one
        -- copy is enough, and the other leaves the count.
        ON CONFLICT DO NOTHING
        RETURNING queue, deliver_at
    ),
    merged AS (
        INSERT INTO queue_counters (queue, pending)
        SELECT o.queue, -(count(*) - coalesce(
                   (SELECT count(*) FROM requeued r WHERE r.queue = o.queue), 0))
        FROM outcome o WHERE o.kind IN ('r', 'l')
        GROUP BY o.queue
        HAVING count(*) > (SELECT count(*) FROM requeued r WHERE r.queue = o.queue)
    )
    SELECT array_agg(DISTINCT r.queue) FILTER (WHERE r.deliver_at <= now())
    INTO v_wake FROM requeued r;
    IF v_wake IS NOT NULL THEN
        PERFORM pg_notify(v_channel, q) FROM unnest(v_wake) AS q;
    END IF;
END
$$;

-- Whether any of these claims holds chunk copies (an index probe, however small the table
-- looked when the statement was planned).
CREATE FUNCTION holds_chunk_leases(p_claims uuid[]) RETURNS boolean
LANGUAGE sql STABLE
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
    SELECT EXISTS (SELECT 1 FROM chunk_leases l WHERE l.token = ANY (p_claims))
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
    v_claims uuid[] := ARRAY(SELECT DISTINCT unnest(p_tokens));
    v_rest   integer[];
BEGIN
    IF NOT holds_chunk_leases(v_claims) THEN
        RETURN QUERY SELECT * FROM complete_many_rows(p_queues, p_ids, p_tokens, p_kinds,
                                                      p_delays_ms, p_errors, p_archive);
        RETURN;
    END IF;
    SELECT array_agg(r) INTO v_rest
    FROM complete_chunk_copies(p_queues, p_ids, p_tokens, p_kinds, p_delays_ms, p_errors,
                               p_archive, v_claims) AS r;
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
    v_count  integer := coalesce(cardinality(p_ids), 0);
    v_claims uuid[] := ARRAY(SELECT DISTINCT unnest(p_tokens));
    v_rest   integer[];
BEGIN
    IF NOT holds_chunk_leases(v_claims) THEN
        RETURN QUERY SELECT * FROM complete_delivered_rows(p_queues, p_ids, p_tokens);
        RETURN;
    END IF;
    SELECT array_agg(r) INTO v_rest
    FROM complete_chunk_copies(p_queues, p_ids, p_tokens,
                               array_fill('d'::"char", ARRAY[v_count]),
                               array_fill(0::bigint, ARRAY[v_count]),
                               array_fill(NULL::text, ARRAY[v_count]),
                               false, v_claims) AS r;
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
        SELECT l.ctid AS row_id FROM chunk_leases l
        WHERE l.expires_at < now()
        ORDER BY l.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM chunk_leases l
        WHERE l.ctid = ANY (ARRAY(SELECT e.row_id FROM expired e))
        RETURNING l.queue, l.batch_id, l.deliver_at, l.ids
    ),
    released AS (
        INSERT INTO batch_releases (batch_id) SELECT g.batch_id FROM gone g
    ),
    copies AS (
        SELECT g.queue, g.deliver_at, u.id FROM gone g CROSS JOIN LATERAL unnest(g.ids) AS u(id)
    ),
    returned AS (
        INSERT INTO deliveries (message_id, deliver_at, published_at, attempt, queue, name,
                                last_error, payload, headers)
        SELECT m.id, c.deliver_at, m.published_at, 1, c.queue, m.name,
               'the lease expired before attempt 1 reported its outcome',
               m.payload::jsonb, nullif(m.headers::jsonb, '{}'::jsonb)
        FROM copies c JOIN batch_messages m ON m.id = c.id
        -- The same message already waits in the queue as a row (published twice): one
        -- copy is enough, and the other leaves the count.
        ON CONFLICT DO NOTHING
        RETURNING queue, message_id
    ),
    merged AS (
        INSERT INTO queue_counters (queue, pending)
        SELECT c.queue, -(count(*) - coalesce(
                   (SELECT count(*) FROM returned r WHERE r.queue = c.queue), 0))
        FROM copies c GROUP BY c.queue
        HAVING count(*) > (SELECT count(*) FROM returned r WHERE r.queue = c.queue)
    )
    SELECT array_agg(r.queue), array_agg(r.message_id) INTO v_queues, v_ids FROM returned r;

    IF v_queues IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_notify(v_channel, q) FROM (SELECT DISTINCT unnest(v_queues) AS q) t;
    RETURN QUERY SELECT q, i, 1 FROM unnest(v_queues, v_ids) AS t(q, i);
END
$$;

-- Deletes a queue, its chunks and chunk leases included. The chunk leases are deleted in a
-- statement of their own: deleting the chunks waits for the claims holding them, and only a
-- later statement sees the chunk leases those claims made.
CREATE FUNCTION delete_queue(p_queue text, OUT deleted_copies bigint,
                             OUT deleted_dead_letters bigint)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_waiting bigint;
    v_held    bigint;
BEGIN
    DELETE FROM routes r WHERE r.queue = p_queue;
    WITH waiting AS (
        DELETE FROM chunks c WHERE c.queue = p_queue
        RETURNING c.batch_id, cardinality(c.ids) AS copies
    ),
    released AS (
        INSERT INTO batch_releases (batch_id) SELECT w.batch_id FROM waiting w
    )
    SELECT coalesce(sum(w.copies), 0) INTO v_waiting FROM waiting w;
    WITH held AS (
        DELETE FROM chunk_leases l WHERE l.queue = p_queue
        RETURNING l.batch_id, cardinality(l.ids) AS copies
    ),
    released AS (
        INSERT INTO batch_releases (batch_id) SELECT h.batch_id FROM held h
    )
    SELECT coalesce(sum(h.copies), 0) INTO v_held FROM held h;
    SELECT d.deleted_copies + v_waiting + v_held, d.deleted_dead_letters
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
