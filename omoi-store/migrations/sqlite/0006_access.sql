-- Access: API keys (SHA-256 hashes only) scoped to a project, and which project owns an entity.
CREATE TABLE api_keys (
    pos         INTEGER PRIMARY KEY,       -- creation order
    id          TEXT NOT NULL UNIQUE,
    project     TEXT NOT NULL,
    role        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX api_keys_project ON api_keys (project, pos);

CREATE TABLE entity_owners (
    pos      INTEGER PRIMARY KEY,          -- assignment order
    kind     TEXT NOT NULL,
    id       TEXT NOT NULL,
    project  TEXT NOT NULL,
    UNIQUE (kind, id)
) STRICT;
CREATE INDEX entity_owners_project ON entity_owners (project, pos);
