-- The common outcome in one lean statement: copies delivered, with no archive to keep.
-- `complete_many` handles every kind of outcome; this does what it does for kind 'd' alone
-- (delete each copy whose lease p_tokens still holds, count it, release its shared payload,
-- count down its lease) without the plan nodes the other kinds need, which at small batches
-- cost more to start than the work itself. Returns the copies whose lease was lost:
-- nothing changed for them.
CREATE FUNCTION complete_delivered(p_queues text[], p_ids uuid[], p_tokens uuid[])
RETURNS TABLE (lost_queue text, lost_id uuid)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_removed   bigint;
    v_queues    text[];
    v_ids       uuid[];
    v_l_tokens  uuid[];
    v_l_queues  text[];
    v_l_counts  integer[];
BEGIN
    WITH removed AS (
        DELETE FROM deliveries d
        USING unnest(p_queues, p_ids, p_tokens) AS i(queue, id, token)
        WHERE d.message_id = i.id AND d.queue = i.queue AND d.lease_owner = i.token
        RETURNING d.message_id, d.queue, d.lease_owner AS token, d.payload IS NULL AS shared
    ),
    counted AS (
        INSERT INTO queue_counters (queue, pending, delivered)
        SELECT r.queue, -count(*), count(*) FROM removed r GROUP BY r.queue
    ),
    released AS (
        INSERT INTO message_releases (message_id)
        SELECT r.message_id FROM removed r WHERE r.shared
    ),
    per_lease AS (
        SELECT r.token, r.queue, count(*)::integer AS copies
        FROM removed r GROUP BY r.token, r.queue
    )
    SELECT (SELECT count(*) FROM removed),
           (SELECT array_agg(r.queue) FROM removed r),
           (SELECT array_agg(r.message_id) FROM removed r),
           (SELECT array_agg(p.token) FROM per_lease p),
           (SELECT array_agg(p.queue) FROM per_lease p),
           (SELECT array_agg(p.copies) FROM per_lease p)
    INTO v_removed, v_queues, v_ids, v_l_tokens, v_l_queues, v_l_counts;

    PERFORM settle_leases(v_l_tokens, v_l_queues, v_l_counts);
    IF v_removed < cardinality(p_ids) THEN
        -- Some leases were lost: the copies not removed above.
        RETURN QUERY
        SELECT i.queue, i.id FROM unnest(p_queues, p_ids) AS i(queue, id)
        EXCEPT ALL
        SELECT r.queue, r.id FROM unnest(v_queues, v_ids) AS r(queue, id);
    END IF;
END
$$;
