-- Discoveries and their branches. A discovery's immutable record is JSON (`data`); the columns
-- copy what the branching rules filter and count on, and hold what changes (status, times).
CREATE TABLE discoveries (
    pos         INTEGER PRIMARY KEY,      -- recording order
    id          TEXT NOT NULL UNIQUE,
    spec_id     TEXT,                     -- the source task's spec (NULL: spec-less tasks)
    source_task TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,            -- exact-dedup key
    depth       INTEGER NOT NULL,
    branched    INTEGER NOT NULL,         -- 1 when it spawned a branch (counts against the caps)
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    data        TEXT NOT NULL             -- the Discovery as JSON, as recorded
) STRICT;
CREATE INDEX discoveries_spec ON discoveries (spec_id, fingerprint);
CREATE INDEX discoveries_source ON discoveries (source_task);

-- Branch task → the discovery that spawned it (looked up when a task completes).
CREATE TABLE discovery_tasks (
    task_id      TEXT PRIMARY KEY NOT NULL,
    discovery_id TEXT NOT NULL
) STRICT;
CREATE INDEX discovery_tasks_discovery ON discovery_tasks (discovery_id);
