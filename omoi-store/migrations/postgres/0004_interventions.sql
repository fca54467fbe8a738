-- Interventions: steering messages for running agents, pending until the agent applies them.
CREATE TABLE interventions (
    id              uuid PRIMARY KEY,
    agent_id        uuid NOT NULL,
    task_id         uuid,                 -- NULL: for whatever the agent runs
    severity        text NOT NULL,
    source          text NOT NULL,
    message         text NOT NULL,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL,
    acknowledged_at timestamptz
);

CREATE INDEX interventions_pending ON interventions (agent_id, created_at) WHERE acknowledged_at IS NULL;
CREATE INDEX interventions_by_agent ON interventions (agent_id, created_at);
