-- Memories that learn: citations (file, lines, content hash) checked for staleness at
-- retrieval, reinforcement by near-duplicates, and use counts.
ALTER TABLE memories
    ADD COLUMN citations      jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN reinforcements integer NOT NULL DEFAULT 0 CHECK (reinforcements >= 0),
    ADD COLUMN uses           integer NOT NULL DEFAULT 0 CHECK (uses >= 0),
    ADD COLUMN refreshed_at   timestamptz,
    ADD COLUMN last_used_at   timestamptz;
UPDATE memories SET refreshed_at = created_at;
ALTER TABLE memories ALTER COLUMN refreshed_at SET NOT NULL;
