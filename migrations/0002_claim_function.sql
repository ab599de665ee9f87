-- Claims in one round trip.
--
-- Per queue, the oldest due unleased copies of the served names (an ordered scan of
-- `deliveries_ready`; copies due at the same time come in the order they were stored),
-- locked with SKIP LOCKED, so concurrent claimers never take the same copy; the oldest
-- p_limit of those are leased to p_token for p_lease_ms (a HOT update: no index covers the
-- lease columns), their attempt is counted, the lease is recorded per queue in `leases`, and
-- they are returned with their payload. Arrays p_queues and p_names correspond: one element
-- per (queue, served name).
--
-- The planner settings ride on the function: with stale statistics (a burst into a table
-- autovacuum has not analyzed yet) a bitmap or sequential scan that reads and sorts the
-- whole backlog on every claim looks cheaper than walking the index, and is ten times
-- slower at 100,000 rows. The claim's commit does not wait for the disk: were the database
-- to crash before flushing it, the copies would just be claimed again.
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
AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH served AS (
        SELECT s.queue, array_agg(s.name) AS names
        FROM unnest(p_queues, p_names) AS s(queue, name)
        GROUP BY s.queue
    ),
    picked AS (
        SELECT c.row_id, c.deliver_at
        FROM served
        CROSS JOIN LATERAL (
            SELECT d.ctid AS row_id, d.deliver_at
            FROM deliveries d
            WHERE d.queue = served.queue
              AND d.deliver_at <= now()
              AND d.lease_owner IS NULL
              AND d.name = ANY (served.names)
            ORDER BY d.deliver_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) c
        ORDER BY c.deliver_at
        LIMIT p_limit
    ),
    claimed AS (
        UPDATE deliveries d
        SET attempt = d.attempt + 1,
            lease_owner = p_token,
            lease_until = now() + p_lease_ms * interval '1 millisecond'
        WHERE d.ctid = ANY (ARRAY(SELECT p.row_id FROM picked p))
        RETURNING d.message_id, d.queue, d.name, d.deliver_at, d.published_at, d.attempt,
                  d.lease_until, d.last_error, d.payload, d.headers
    ),
    leased AS (
        INSERT INTO leases (token, queue, expires_at, remaining, ids)
        SELECT p_token, c.queue, min(c.lease_until), count(*), array_agg(c.message_id)
        FROM claimed c
        GROUP BY c.queue
    )
    SELECT c.message_id, c.queue, c.name, c.deliver_at, c.attempt, c.lease_until,
           c.last_error,
           coalesce(c.payload, m.payload)::text,
           CASE WHEN c.payload IS NULL THEN m.headers
                ELSE coalesce(c.headers, '{}') END::text,
           c.published_at
    FROM claimed c
    -- A shared payload is looked up once per copy (never by scanning `messages`).
    LEFT JOIN LATERAL (
        SELECT s.payload, s.headers FROM messages s
        WHERE c.payload IS NULL AND s.id = c.message_id
    ) m ON true
    ORDER BY c.deliver_at, c.message_id;
END
$$;
