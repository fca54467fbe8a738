-- Access: API keys (SHA-256 hashes only) scoped to a project, and which project owns an entity.
CREATE TABLE api_keys (
    pos         bigserial,                 -- creation order (keys are written rarely)
    id          uuid PRIMARY KEY,
    project     text NOT NULL,
    role        text NOT NULL,
    key_hash    text NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    CONSTRAINT api_keys_hash_key UNIQUE (key_hash)
);
CREATE INDEX api_keys_project ON api_keys (project, pos);

CREATE TABLE entity_owners (
    pos      bigserial,                    -- assignment order
    kind     text NOT NULL,
    id       uuid NOT NULL,
    project  text NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX entity_owners_project ON entity_owners (project, pos);
