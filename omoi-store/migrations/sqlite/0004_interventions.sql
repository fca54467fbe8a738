-- Interventions: steering messages for running agents, pending until the agent applies them.
CREATE TABLE interventions (
    pos             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    agent_id        TEXT NOT NULL,
    task_id         TEXT,                 -- NULL: for whatever the agent runs
    severity        TEXT NOT NULL,
    source          TEXT NOT NULL,
    message         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,     -- microseconds since the epoch
    acknowledged_at INTEGER
) STRICT;

CREATE INDEX interventions_pending ON interventions (agent_id, created_at) WHERE acknowledged_at IS NULL;
CREATE INDEX interventions_by_agent ON interventions (agent_id, created_at);
