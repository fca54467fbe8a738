-- Discoveries and their branches. A discovery's record as written is JSON (`data`); the columns
-- copy what the branching rules filter and count on, and hold what changes (status, times).
CREATE TABLE discoveries (
    seq         bigserial UNIQUE,         -- recording order
    id          uuid PRIMARY KEY,
    spec_id     uuid,                     -- the source task's spec (NULL: spec-less tasks)
    source_task uuid NOT NULL,
    kind        text NOT NULL,
    status      text NOT NULL,
    fingerprint text NOT NULL,            -- exact-dedup key
    depth       int NOT NULL,
    branched    boolean NOT NULL,         -- it spawned a branch (counts against the caps)
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    data        jsonb NOT NULL
);
CREATE INDEX discoveries_spec ON discoveries (spec_id, fingerprint);
CREATE INDEX discoveries_source ON discoveries (source_task);

-- Branch task → the discovery that spawned it.
CREATE TABLE discovery_tasks (
    task_id      uuid PRIMARY KEY,
    discovery_id uuid NOT NULL
);
CREATE INDEX discovery_tasks_discovery ON discovery_tasks (discovery_id);

-- Resolves a branched discovery when the last of its branch tasks completes, in the completing
-- transaction. Deferred to commit time, so discovery.resolved follows task.completed in the log;
-- the discovery row is locked, so two branch tasks completing at once cannot both miss it.
CREATE FUNCTION omoi_resolve_discoveries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d uuid;
BEGIN
    FOR d IN SELECT x.id FROM discovery_tasks dt JOIN discoveries x ON x.id = dt.discovery_id
              WHERE dt.task_id = NEW.id AND x.status = 'branched'
                FOR UPDATE OF x
    LOOP
        IF NOT EXISTS (SELECT 1 FROM discovery_tasks o JOIN tasks t ON t.id = o.task_id
                        WHERE o.discovery_id = d AND t.state <> 'completed') THEN
            UPDATE discoveries SET status = 'resolved', updated_at = NEW.updated_at WHERE id = d;
            PERFORM omoi_emit(NEW.updated_at, jsonb_build_array(jsonb_build_object(
                'type', 'discovery.resolved', 'data', jsonb_build_object('discovery_id', d))));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER tasks_resolve_discoveries
    AFTER UPDATE OF state ON tasks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.state = 'completed' AND OLD.state <> 'completed')
    EXECUTE FUNCTION omoi_resolve_discoveries();
