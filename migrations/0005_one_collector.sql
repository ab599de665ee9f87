-- One message collector at a time per schema. Two collectors counting down copies of the
-- same shared messages in different orders deadlock; the others now skip (returning 0) and
-- the next housekeeping run collects what they left. The lock is taken inside the function,
-- so a collector called from SQL is covered too.
ALTER FUNCTION collect_messages(integer) RENAME TO collect_messages_unlocked;

CREATE FUNCTION collect_messages(p_limit integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended(current_schema() || '.collect_messages', 0)) THEN
        RETURN 0;
    END IF;
    RETURN collect_messages_unlocked(p_limit);
END
$$;
