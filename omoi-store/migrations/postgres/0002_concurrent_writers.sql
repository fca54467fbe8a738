-- 0002: writers that do not serialize on one row, claims that start what they lease.
--
-- Event cursors. 0001 handed cursors out from the single row of event_counter, locked until
-- commit: every event-writing transaction in every process waited for the previous one's
-- commit (and its WAL flush). Now a cursor is (the writing transaction's id << 24) + its
-- ordinal within that transaction, and readers only return events of transactions older than
-- the oldest one still in flight (pg_snapshot_xmin of the reading statement's snapshot). Every
-- transaction that can still commit has an id at or above that bound, so its cursors lie above
-- every cursor a reader has already been given: a reader that has seen cursor n has seen every
-- event below n, with no lock shared between writers. Cursors are increasing, not gap-free.
-- Notifications moved out of the writing transaction as well (pg_notify takes a database-wide
-- lock from pre-commit to the end of commit); the store sends them after commit, coalesced.

DROP FUNCTION omoi_emit(timestamptz, jsonb);
DROP TABLE event_counter;

-- Appends p_events (a JSON array of serialized events) at p_at and returns the cursor of the
-- last one. At most 2^24 - 1 events per transaction; transaction ids up to 2^39.
CREATE FUNCTION omoi_emit(p_at timestamptz, p_events jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n    int := jsonb_array_length(p_events);
    base bigint;
    used bigint;
BEGIN
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    base := (pg_current_xact_id()::text::bigint) << 24;
    SELECT coalesce(max(e.cursor) - base, 0) INTO used
      FROM events e WHERE e.cursor > base AND e.cursor < base + 16777216;
    IF used + n >= 16777216 THEN
        RAISE EXCEPTION 'omoi: more than 16777215 events in one transaction' USING ERRCODE = '54000';
    END IF;
    INSERT INTO events (cursor, at, data)
    SELECT base + used + e.ord, p_at, e.value
      FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(value, ord);
    RETURN base + used + n;
END
$$;

-- The highest cursor a reader may hand out now: below every transaction still in flight.
CREATE FUNCTION omoi_visible_bound() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint) << 24
$$;

-- Claims: p_start also marks the leased tasks running (Claimed -> Running) in the same
-- statement, with a task.started event after each task.claimed. Aging (queue::aged_band): a
-- ready task with run_at <= p_cutoff is claimed one band higher. Only while such a task exists
-- do candidates come from a sort of every due ready row; otherwise from the ordered index.
DROP FUNCTION omoi_claim(uuid, text[], int, timestamptz, timestamptz);

CREATE FUNCTION omoi_claim(p_holder uuid, p_caps text[], p_limit int, p_now timestamptz, p_expires timestamptz,
                           p_start boolean, p_cutoff timestamptz)
RETURNS SETOF tasks
LANGUAGE plpgsql AS $$
DECLARE
    chosen   uuid[] := '{}';
    rejected uuid[] := '{}';
    c_ids    uuid[];
    c_keys   text[];
    c_limits int[];
    keyed    boolean;
    taken    jsonb;
    k        text;
    n        int;
    i        int;
    rounds   int := 0;
    want     int;
    aged     boolean;
BEGIN
    aged := p_cutoff IS NOT NULL AND EXISTS (
        SELECT 1 FROM tasks t WHERE t.state = 'ready' AND t.band IN (1, 2, 3) AND t.run_at <= p_cutoff);
    LOOP
        want := p_limit - cardinality(chosen);
        EXIT WHEN want <= 0 OR rounds >= 8;
        rounds := rounds + 1;
        IF aged THEN
        SELECT coalesce(array_agg(c.id ORDER BY c.eb, c.run_at, c.id), '{}'),
               coalesce(array_agg(c.concurrency_key ORDER BY c.eb, c.run_at, c.id), '{}'),
               coalesce(array_agg(c.concurrency_limit ORDER BY c.eb, c.run_at, c.id), '{}')
          INTO c_ids, c_keys, c_limits
          FROM (SELECT t.id, t.band - CASE WHEN t.band > 0 AND t.run_at <= p_cutoff THEN 1 ELSE 0 END AS eb,
                       t.run_at, t.concurrency_key, t.concurrency_limit
                  FROM tasks t
                 -- The CASE hides `<@` from the planner, whose default estimate for it (0.5 %)
                 -- would trade the ordered index scan for a sort of every ready row.
                 WHERE t.state = 'ready' AND t.run_at <= p_now
                   AND CASE WHEN t.capabilities <@ p_caps THEN true ELSE false END
                   AND (cardinality(rejected) = 0 OR t.id <> ALL (rejected))
                   AND (cardinality(chosen) = 0 OR t.id <> ALL (chosen))
                 ORDER BY 2, t.run_at, t.id
                 LIMIT want
                   FOR UPDATE SKIP LOCKED) c;
        ELSE
        SELECT coalesce(array_agg(c.id ORDER BY c.band, c.run_at, c.id), '{}'),
               coalesce(array_agg(c.concurrency_key ORDER BY c.band, c.run_at, c.id), '{}'),
               coalesce(array_agg(c.concurrency_limit ORDER BY c.band, c.run_at, c.id), '{}')
          INTO c_ids, c_keys, c_limits
          FROM (SELECT t.id, t.band, t.run_at, t.concurrency_key, t.concurrency_limit
                  FROM tasks t
                 -- The CASE hides `<@` from the planner, whose default estimate for it (0.5 %)
                 -- would trade the ordered index scan for a sort of every ready row.
                 WHERE t.state = 'ready' AND t.run_at <= p_now
                   AND CASE WHEN t.capabilities <@ p_caps THEN true ELSE false END
                   AND (cardinality(rejected) = 0 OR t.id <> ALL (rejected))
                   AND (cardinality(chosen) = 0 OR t.id <> ALL (chosen))
                 ORDER BY t.band, t.run_at, t.id
                 LIMIT want
                   FOR UPDATE SKIP LOCKED) c;
        END IF;
        n := cardinality(c_ids);
        EXIT WHEN n = 0;
        keyed := false;
        FOR i IN 1..n LOOP
            IF c_keys[i] IS NOT NULL THEN keyed := true; EXIT; END IF;
        END LOOP;
        IF NOT keyed THEN
            chosen := chosen || c_ids;
            EXIT WHEN n < want;
            CONTINUE;
        END IF;
        -- Lock every key among the candidates, in a fixed order (no deadlocks between claimers).
        FOR k IN SELECT DISTINCT x FROM unnest(c_keys) AS x WHERE x IS NOT NULL ORDER BY x LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('omoi.concurrency:' || current_schema() || ':' || k, 0));
        END LOOP;
        -- Fresh snapshot: leases per key as of now, plus those taken earlier in this call.
        SELECT coalesce(jsonb_object_agg(l.concurrency_key, l.n), '{}') INTO taken
          FROM (SELECT t.concurrency_key, count(*) AS n
                  FROM tasks t
                 WHERE t.concurrency_key = ANY (c_keys)
                   AND t.state IN ('claimed', 'running')
                 GROUP BY t.concurrency_key) l;
        FOR i IN 1..n LOOP
            IF c_keys[i] IS NULL THEN
                chosen := chosen || c_ids[i];
            ELSIF coalesce((taken ->> c_keys[i])::int, 0)
                  + (SELECT count(*) FROM unnest(chosen) AS ch(id) JOIN tasks t ON t.id = ch.id
                      WHERE t.concurrency_key = c_keys[i])::int < c_limits[i] THEN
                chosen := chosen || c_ids[i];
            ELSE
                rejected := rejected || c_ids[i];
            END IF;
        END LOOP;
        EXIT WHEN n < want;
    END LOOP;

    IF cardinality(chosen) = 0 THEN
        RETURN;
    END IF;

    UPDATE tasks t
       SET state = CASE WHEN p_start THEN 'running' ELSE 'claimed' END,
           claims = t.claims + 1,
           attempts = t.attempts + 1,
           lease_holder = p_holder,
           lease_token = t.claims + 1,
           lease_expires_at = p_expires,
           updated_at = p_now
     WHERE t.id = ANY (chosen);

    PERFORM omoi_emit(p_now, (
        SELECT jsonb_agg(x.ev ORDER BY x.band, x.run_at, x.id, x.sub)
          FROM (SELECT t.band, t.run_at, t.id, 0 AS sub,
                       jsonb_build_object('type', 'task.claimed', 'data', jsonb_build_object(
                           'task_id', t.id, 'holder', t.lease_holder, 'token', t.lease_token,
                           'attempt', t.attempts)) AS ev
                  FROM tasks t WHERE t.id = ANY (chosen)
                UNION ALL
                SELECT t.band, t.run_at, t.id, 1,
                       jsonb_build_object('type', 'task.started', 'data', jsonb_build_object(
                           'task_id', t.id, 'holder', t.lease_holder))
                  FROM tasks t WHERE p_start AND t.id = ANY (chosen)) x));

    RETURN QUERY SELECT * FROM tasks t WHERE t.id = ANY (chosen) ORDER BY t.band, t.run_at, t.id;
END
$$ SET plan_cache_mode = force_generic_plan;

