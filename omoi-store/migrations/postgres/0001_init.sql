-- omoi's Postgres schema. Runs inside the store's schema (search_path = <schema>, public); the
-- pgvector type lives in public. Every timestamp is written by the application's Clock, never now().

-- The event log (outbox). Cursors are handed out by a single-row counter inside the writing
-- transaction, so cursor order is commit order (see omoi_emit below).
CREATE TABLE events (
    cursor  bigint PRIMARY KEY,
    at      timestamptz NOT NULL,
    data    jsonb NOT NULL
);

CREATE TABLE event_counter (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_cursor bigint NOT NULL
);
INSERT INTO event_counter (last_cursor) VALUES (0);

-- Appends `p_events` (a JSON array of serialized events) at time `p_at`, returns the cursor of
-- the last one, and notifies listeners of this schema's channel. The counter row stays locked
-- until the calling transaction ends: event-writing transactions commit in cursor order, so a
-- reader that has seen cursor n has seen every cursor below n.
CREATE FUNCTION omoi_emit(p_at timestamptz, p_events jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n    int := jsonb_array_length(p_events);
    last bigint;
BEGIN
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE event_counter SET last_cursor = last_cursor + n RETURNING last_cursor INTO last;
    INSERT INTO events (cursor, at, data)
    SELECT last - n + e.ord, p_at, e.value
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(value, ord);
    PERFORM pg_notify('omoi_events_' || current_schema(), last::text);
    RETURN last;
END
$$;

CREATE TABLE tasks (
    id                uuid PRIMARY KEY,
    def               jsonb NOT NULL,
    -- copies of definition fields the queue filters and orders on
    band              smallint NOT NULL,          -- 0 = critical … 3 = low
    capabilities      text[] NOT NULL,
    concurrency_key   text,
    concurrency_limit int,
    dedup_key         text,
    max_attempts      int NOT NULL,
    spec_id           uuid,
    ticket_id         uuid,
    parent_id         uuid,
    local_id          text,
    dependencies      uuid[] NOT NULL,
    state             text NOT NULL,
    unmet             int NOT NULL,               -- dependencies not yet completed
    attempts          int NOT NULL DEFAULT 0,
    claims            bigint NOT NULL DEFAULT 0,  -- source of fencing tokens
    run_at            timestamptz NOT NULL,
    lease_holder      uuid,
    lease_token       bigint,
    lease_expires_at  timestamptz,
    result            jsonb,
    last_error        text,
    usage_input       bigint NOT NULL DEFAULT 0,
    usage_output      bigint NOT NULL DEFAULT 0,
    usage_cost        double precision NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
) WITH (fillfactor = 80);

-- The queue: only ready rows, in claim order.
CREATE INDEX tasks_ready ON tasks (band, run_at, id) WHERE state = 'ready';
-- Leases, for reclaiming expired ones and a failed holder's.
CREATE INDEX tasks_leased ON tasks (lease_expires_at, id) WHERE state IN ('claimed', 'running');
-- Leased tasks per concurrency key.
CREATE INDEX tasks_leased_keys ON tasks (concurrency_key)
    WHERE concurrency_key IS NOT NULL AND state IN ('claimed', 'running');
-- A dedup key is held by at most one non-terminal task.
CREATE UNIQUE INDEX tasks_dedup ON tasks (dedup_key)
    WHERE dedup_key IS NOT NULL AND state NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX tasks_spec ON tasks (spec_id, id) WHERE spec_id IS NOT NULL;
CREATE INDEX tasks_ticket ON tasks (ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;

-- Dependency edges, looked up from the dependency's side when it completes or ends badly.
CREATE TABLE task_edges (
    depends_on uuid NOT NULL,
    task_id    uuid NOT NULL,
    PRIMARY KEY (depends_on, task_id)
);

-- Leases up to p_limit ready tasks in queue order (band, run_at, id) whose required capabilities
-- are a subset of p_caps, honouring concurrency keys, and records one task.claimed event each.
-- Rows are picked with FOR UPDATE SKIP LOCKED, so concurrent claimers never wait on each other
-- and never get the same task. For keyed candidates a transaction-scoped advisory lock per key
-- serializes the "count leased, then lease" step: each statement of this (volatile) function
-- takes a fresh snapshot, so the count made after the lock sees every lease committed by the
-- previous holder of that lock.
CREATE FUNCTION omoi_claim(p_holder uuid, p_caps text[], p_limit int, p_now timestamptz, p_expires timestamptz)
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
BEGIN
    LOOP
        want := p_limit - cardinality(chosen);
        EXIT WHEN want <= 0 OR rounds >= 8;
        rounds := rounds + 1;
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
       SET state = 'claimed',
           claims = t.claims + 1,
           attempts = t.attempts + 1,
           lease_holder = p_holder,
           lease_token = t.claims + 1,
           lease_expires_at = p_expires,
           updated_at = p_now
     WHERE t.id = ANY (chosen);

    PERFORM omoi_emit(p_now, (
        SELECT jsonb_agg(jsonb_build_object('type', 'task.claimed', 'data', jsonb_build_object(
                   'task_id', t.id, 'holder', t.lease_holder, 'token', t.lease_token, 'attempt', t.attempts))
                 ORDER BY t.band, t.run_at, t.id)
          FROM tasks t WHERE t.id = ANY (chosen)));

    RETURN QUERY SELECT * FROM tasks t WHERE t.id = ANY (chosen) ORDER BY t.band, t.run_at, t.id;
END
$$ SET plan_cache_mode = force_generic_plan;

-- Completes leased tasks (fenced by token) and releases dependents whose last unmet dependency
-- this was, all in the calling transaction. Item i is (p_ids[i], p_tokens[i], p_results[i],
-- usage). Ids must be distinct. Returns one row per item: whether it completed, whether the
-- task exists, and the dependents it released. Events: task.completed for each completed item,
-- followed by task.ready for each dependent it released, in item order.
CREATE FUNCTION omoi_complete(p_ids uuid[], p_tokens bigint[], p_results jsonb[], p_input bigint[],
                              p_output bigint[], p_cost double precision[], p_now timestamptz)
RETURNS TABLE (ord int, completed boolean, found boolean, released uuid[])
LANGUAGE plpgsql AS $$
DECLARE
    done_ids     uuid[];
    done_ords    int[];
    done_holders uuid[];
    rel_ids      uuid[];
    rel_ords     int[];
    dep_ids      uuid[];
    dep_ns       int[];
    dep_ords     int[];
BEGIN
    WITH upd AS (
        UPDATE tasks t
           SET state = 'completed',
               result = i.result,
               usage_input = t.usage_input + i.input,
               usage_output = t.usage_output + i.output,
               usage_cost = t.usage_cost + i.cost,
               updated_at = p_now
          FROM unnest(p_ids, p_tokens, p_results, p_input, p_output, p_cost)
               WITH ORDINALITY AS i(id, token, result, input, output, cost, ord)
         -- The CASE keeps the planner on the primary key: matched against the partial index
         -- tasks_leased, the state test would make it scan every leased row's entry instead.
         WHERE t.id = i.id AND t.lease_token = i.token
           AND CASE WHEN t.state IN ('claimed', 'running') THEN true ELSE false END
        RETURNING t.id, t.lease_holder, i.ord::int AS ord)
    SELECT coalesce(array_agg(u.id ORDER BY u.ord), '{}'),
           coalesce(array_agg(u.ord ORDER BY u.ord), '{}'),
           coalesce(array_agg(u.lease_holder ORDER BY u.ord), '{}')
      INTO done_ids, done_ords, done_holders
      FROM upd u;

    IF cardinality(done_ids) > 0 THEN
        -- Separate statements: a fresh snapshot sees edges committed by concurrent inserts that
        -- waited on the completed rows' locks.
        SELECT coalesce(array_agg(x.task_id ORDER BY x.task_id), '{}'),
               coalesce(array_agg(x.n ORDER BY x.task_id), '{}'),
               coalesce(array_agg(x.last_ord ORDER BY x.task_id), '{}')
          INTO dep_ids, dep_ns, dep_ords
          FROM (SELECT e.task_id, count(*)::int AS n,
                       max(array_position(done_ids, e.depends_on)) AS i
                  FROM task_edges e
                 WHERE e.depends_on = ANY (done_ids)
                 GROUP BY e.task_id) x0
          CROSS JOIN LATERAL (SELECT x0.task_id, x0.n, done_ords[x0.i] AS last_ord) x;
        IF cardinality(dep_ids) > 0 THEN
            WITH upd AS (
                UPDATE tasks t
                   SET unmet = greatest(t.unmet - d.n, 0),
                       state = CASE WHEN t.state = 'waiting' AND t.unmet - d.n <= 0 THEN 'ready' ELSE t.state END,
                       updated_at = CASE WHEN t.state = 'waiting' AND t.unmet - d.n <= 0 THEN p_now
                                         ELSE t.updated_at END
                  FROM unnest(dep_ids, dep_ns, dep_ords) AS d(id, n, last_ord)
                 WHERE t.id = d.id
                RETURNING t.id, t.state, d.last_ord)
            SELECT coalesce(array_agg(u.id ORDER BY u.last_ord, u.id), '{}'),
                   coalesce(array_agg(u.last_ord ORDER BY u.last_ord, u.id), '{}')
              INTO rel_ids, rel_ords
              FROM upd u WHERE u.state = 'ready';
        ELSE
            rel_ids := '{}';
            rel_ords := '{}';
        END IF;

        PERFORM omoi_emit(p_now, (
            SELECT jsonb_agg(x.ev ORDER BY x.o, x.sub, x.seq)
              FROM (SELECT d.ord AS o, 0 AS sub, 0 AS seq,
                           jsonb_build_object('type', 'task.completed', 'data',
                               jsonb_build_object('task_id', d.id, 'holder', d.holder)) AS ev
                      FROM unnest(done_ids, done_ords, done_holders) AS d(id, ord, holder)
                    UNION ALL
                    SELECT r.ord, 1, r.seq,
                           jsonb_build_object('type', 'task.ready', 'data', jsonb_build_object('task_id', r.id))
                      FROM unnest(rel_ids, rel_ords) WITH ORDINALITY AS r(id, ord, seq)) x));
    END IF;

    RETURN QUERY
    SELECT i.ord::int,
           i.ord::int = ANY (done_ords),
           i.ord::int = ANY (done_ords) OR EXISTS (SELECT 1 FROM tasks t WHERE t.id = i.id),
           coalesce((SELECT array_agg(r.id) FROM unnest(rel_ids, rel_ords) AS r(id, o) WHERE r.o = i.ord), '{}')
      FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord)
     ORDER BY i.ord;
END
$$ SET plan_cache_mode = force_generic_plan;

-- Specs, their checkpoints, tickets, and the (spec, local id) → task map of synced plans.
CREATE TABLE specs (
    seq          bigserial UNIQUE,
    id           uuid PRIMARY KEY,
    title        text NOT NULL,
    idea         text NOT NULL,
    metadata     jsonb NOT NULL,
    state        text NOT NULL,
    usage_input  bigint NOT NULL DEFAULT 0,
    usage_output bigint NOT NULL DEFAULT 0,
    usage_cost   double precision NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE spec_checkpoints (
    spec_id    uuid NOT NULL REFERENCES specs (id),
    phase      text NOT NULL,
    checkpoint jsonb NOT NULL,
    PRIMARY KEY (spec_id, phase)
);

CREATE TABLE tickets (
    seq          bigserial UNIQUE,
    id           uuid PRIMARY KEY,
    spec_id      uuid,
    local_id     text,
    title        text NOT NULL,
    description  text NOT NULL,
    priority     text NOT NULL,
    requirements text[] NOT NULL,
    created_at   timestamptz NOT NULL,
    UNIQUE (spec_id, local_id)
);

CREATE TABLE sync_tasks (
    spec_id  uuid NOT NULL,
    local_id text NOT NULL,
    task_id  uuid NOT NULL,
    PRIMARY KEY (spec_id, local_id)
);

CREATE TABLE agents (
    seq               bigserial UNIQUE,
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    kind              text NOT NULL,
    capabilities      text[] NOT NULL,
    capacity          int NOT NULL,
    status            text NOT NULL,
    last_seq          bigint,
    last_heartbeat_at timestamptz NOT NULL,
    registered_at     timestamptz NOT NULL
);

-- Memories: a pgvector embedding (its dimension is fixed by the store on first use, with an
-- HNSW cosine index) and a generated tsvector for keyword search.
CREATE TABLE memories (
    id         uuid PRIMARY KEY,
    kind       text NOT NULL,
    text       text NOT NULL,
    embedding  vector NOT NULL,
    metadata   jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    search     tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX memories_search ON memories USING gin (search);
