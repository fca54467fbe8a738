-- Memories that learn: citations (file, lines, content hash) checked for staleness at
-- retrieval, reinforcement by near-duplicates, and use counts. The text never changes, so
-- memories_fts stays in step.
ALTER TABLE memories ADD COLUMN citations TEXT NOT NULL DEFAULT '[]';
ALTER TABLE memories ADD COLUMN reinforcements INTEGER NOT NULL DEFAULT 0 CHECK (reinforcements >= 0);
ALTER TABLE memories ADD COLUMN uses INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0);
ALTER TABLE memories ADD COLUMN refreshed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE memories ADD COLUMN last_used_at INTEGER;
UPDATE memories SET refreshed_at = created_at;
