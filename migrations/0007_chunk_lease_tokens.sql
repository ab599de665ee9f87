-- A lease token per chunk lease.
--
-- A claim's copies all carried the claim's token, so an outcome had to look at every chunk
-- lease of the claim to find the one holding its copy: each completion unnested all of a
-- claim's ids (4,000 for a full claim) to match a few hundred outcomes, and locked all of
-- its chunk leases, so two completers finishing different parts of one claim waited for
-- each other. Now every chunk lease gets a token of its own, returned with each copy
-- (`o_token`): an outcome names exactly the lease that holds its copy, and a completion
-- reads and locks only the leases it settles. Rows keep the claim's token (`p_token`).
--
-- The host claims with `claim_with_tokens`, which returns the extra column. `claim` keeps
-- its signature and its meaning, one token (the claim's) for every copy, for a host of the
-- previous version still running while another applies this migration: it completes with
-- its claim's token, which the completion functions (unchanged: they find chunk leases by
-- the distinct tokens of their outcomes) still accept. Both are the same claim, which
-- `p_lease_tokens` switches; `claim_chunks` of 0006 is replaced by
-- `claim_chunks_with_tokens`.

-- `claim_chunks` (0006), with a token of its own for each chunk lease (`p_lease_tokens`) or
-- the claim's for all (`p_token`).
CREATE FUNCTION claim_chunks_with_tokens(
    p_queues       text[],
    p_names        text[],
    p_limit        integer,
    p_token        uuid,
    p_lease_ms     bigint,
    p_lease_tokens boolean
) RETURNS TABLE (o_id uuid, o_queue text, o_name text, o_deliver_at timestamptz,
                 o_attempt integer, o_lease_until timestamptz, o_last_error text,
                 o_payload text, o_headers text, o_published_at timestamptz,
                 o_token uuid)
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
            SELECT o.*, least(o.size, v_left - o.before)::integer AS take,
                   CASE WHEN p_lease_tokens THEN gen_random_uuid() ELSE p_token END AS token
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
            SELECT t.token, t.id, t.queue, t.batch_id, t.deliver_at, v_until, t.ids[1:t.take]
            FROM taken t
        )
        SELECT m.id, t.queue, t.name, t.deliver_at, 1, v_until, NULL::text, m.payload,
               m.headers, m.published_at, t.token
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

-- `claim` (0006) returning each copy's lease token, `o_token`: `p_token` for rows and, for
-- chunk copies, the chunk lease's own (or `p_token` too, without `p_lease_tokens`).
CREATE FUNCTION claim_with_tokens(
    p_queues       text[],
    p_names        text[],
    p_limit        integer,
    p_token        uuid,
    p_lease_ms     bigint,
    p_lease_tokens boolean DEFAULT true
) RETURNS TABLE (o_id uuid, o_queue text, o_name text, o_deliver_at timestamptz,
                 o_attempt integer, o_lease_until timestamptz, o_last_error text,
                 o_payload text, o_headers text, o_published_at timestamptz,
                 o_token uuid)
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
        RETURN QUERY SELECT r.*, p_token
                     FROM claim_rows(p_queues, p_names, p_limit, p_token, p_lease_ms) AS r;
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
        RETURN QUERY SELECT r.*, p_token
                     FROM claim_rows(p_queues, p_names, p_limit, p_token, p_lease_ms) AS r;
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        IF v_taken < p_limit THEN
            RETURN QUERY SELECT * FROM claim_chunks_with_tokens(
                p_queues, p_names, p_limit - v_taken, p_token, p_lease_ms, p_lease_tokens);
        END IF;
    ELSE
        RETURN QUERY SELECT * FROM claim_chunks_with_tokens(
            p_queues, p_names, p_limit, p_token, p_lease_ms, p_lease_tokens);
        GET DIAGNOSTICS v_taken = ROW_COUNT;
        IF v_taken < p_limit THEN
            RETURN QUERY SELECT r.*, p_token
                         FROM claim_rows(p_queues, p_names, p_limit - v_taken, p_token,
                                         p_lease_ms) AS r;
        END IF;
    END IF;
END
$$;

-- The claim of 0006, for hosts of the previous version: one token for all the copies.
CREATE OR REPLACE FUNCTION claim(
    p_queues   text[],
    p_names    text[],
    p_limit    integer,
    p_token    uuid,
    p_lease_ms bigint
) RETURNS TABLE (o_id uuid, o_queue text, o_name text, o_deliver_at timestamptz,
                 o_attempt integer, o_lease_until timestamptz, o_last_error text,
                 o_payload text, o_headers text, o_published_at timestamptz)
LANGUAGE sql VOLATILE
SET search_path FROM CURRENT
AS $$
    SELECT c.o_id, c.o_queue, c.o_name, c.o_deliver_at, c.o_attempt, c.o_lease_until,
           c.o_last_error, c.o_payload, c.o_headers, c.o_published_at
    FROM claim_with_tokens(p_queues, p_names, p_limit, p_token, p_lease_ms, false) AS c
$$;

DROP FUNCTION claim_chunks(text[], text[], integer, uuid, bigint);
