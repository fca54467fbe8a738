-- omoi SQLite schema. Times are INTEGER microseconds since the Unix epoch, taken from the
-- store's Clock (never SQLite's own `now`). Ids are UUID text (hyphenated, lowercase), which
-- sorts like the UUIDs themselves. States and kinds are their stable string forms.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE tasks (
    id            TEXT PRIMARY KEY NOT NULL,
    state         TEXT NOT NULL,
    band          INTEGER NOT NULL,       -- 0 = critical … 3 = low: queue order
    run_at        INTEGER NOT NULL,
    def           TEXT NOT NULL,          -- TaskDefinition as JSON
    caps          TEXT,                   -- required capabilities (JSON array), NULL when none
    conc_key      TEXT,
    conc_limit    INTEGER,
    dedup_key     TEXT,
    spec_id       TEXT,
    ticket_id     TEXT,
    parent_id     TEXT,
    local_id      TEXT,
    deps          TEXT NOT NULL,          -- dependencies (JSON array) in the order given
    unmet         INTEGER NOT NULL,       -- dependencies not yet completed
    attempts      INTEGER NOT NULL DEFAULT 0,
    claims        INTEGER NOT NULL DEFAULT 0, -- source of fencing tokens
    lease_holder  TEXT,
    lease_token   INTEGER,
    lease_expires INTEGER,
    result        TEXT,
    last_error    TEXT,
    usage_in      INTEGER NOT NULL DEFAULT 0,
    usage_out     INTEGER NOT NULL DEFAULT 0,
    usage_cost    REAL NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- The queue: ready tasks in claim order.
CREATE INDEX tasks_queue ON tasks (band, run_at, id) WHERE state = 'ready';
-- Leases by expiry (reclaim) and by holder (a failed agent's tasks).
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires, id) WHERE lease_expires IS NOT NULL;
CREATE INDEX tasks_lease_holder ON tasks (lease_holder) WHERE lease_holder IS NOT NULL;
-- Leased tasks per concurrency key.
CREATE INDEX tasks_concurrency ON tasks (conc_key) WHERE conc_key IS NOT NULL AND state IN ('claimed', 'running');
-- A dedup key is held by at most one non-terminal task.
CREATE UNIQUE INDEX tasks_dedup ON tasks (dedup_key)
    WHERE dedup_key IS NOT NULL AND state NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX tasks_spec ON tasks (spec_id) WHERE spec_id IS NOT NULL;
CREATE INDEX tasks_ticket ON tasks (ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;

-- Dependency edges, in insertion order (rowid): task_id depends on dep_id.
CREATE TABLE task_deps (
    task_id TEXT NOT NULL REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED,
    dep_id  TEXT NOT NULL REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED
) STRICT;
CREATE INDEX task_deps_dep ON task_deps (dep_id);

-- The event log (outbox): written in the transaction of the change it records.
CREATE TABLE events (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    name   TEXT NOT NULL,
    data   TEXT NOT NULL                  -- the Event as JSON ({"type": …, "data": …})
) STRICT;

CREATE TABLE specs (
    pos        INTEGER PRIMARY KEY,       -- creation order
    id         TEXT NOT NULL UNIQUE,
    title      TEXT NOT NULL,
    idea       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    state      TEXT NOT NULL,
    usage_in   INTEGER NOT NULL DEFAULT 0,
    usage_out  INTEGER NOT NULL DEFAULT 0,
    usage_cost REAL NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE checkpoints (
    spec_id TEXT NOT NULL REFERENCES specs (id),
    phase   TEXT NOT NULL,
    body    TEXT NOT NULL,                -- PhaseCheckpoint as JSON
    PRIMARY KEY (spec_id, phase)
) STRICT;

CREATE TABLE tickets (
    pos          INTEGER PRIMARY KEY,     -- plan order
    id           TEXT NOT NULL UNIQUE,
    spec_id      TEXT REFERENCES specs (id),
    local_id     TEXT,
    title        TEXT NOT NULL,
    description  TEXT NOT NULL,
    priority     TEXT NOT NULL,
    requirements TEXT NOT NULL,           -- JSON array
    created_at   INTEGER NOT NULL,
    UNIQUE (spec_id, local_id)
) STRICT;

-- (spec, local id) → task, for idempotent sync.
CREATE TABLE spec_tasks (
    spec_id  TEXT NOT NULL REFERENCES specs (id),
    local_id TEXT NOT NULL,
    task_id  TEXT NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (spec_id, local_id)
) STRICT;

CREATE TABLE agents (
    pos               INTEGER PRIMARY KEY, -- registration order
    id                TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    capabilities      TEXT NOT NULL,       -- JSON array
    capacity          INTEGER NOT NULL,
    status            TEXT NOT NULL,
    last_seq          INTEGER,
    last_heartbeat_at INTEGER NOT NULL,
    registered_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE memories (
    pos        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    text       TEXT NOT NULL,
    embedding  BLOB NOT NULL,              -- little-endian f32s
    metadata   TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- Keyword index over memories.text (memories are never updated or deleted).
CREATE VIRTUAL TABLE memories_fts USING fts5 (
    text,
    content = 'memories',
    content_rowid = 'pos',
    tokenize = 'unicode61 remove_diacritics 0'
);
