-- Ferry store, version 5: blobs and step rate limits.
--
-- Mirrored by migrations/postgres/0005_pipeline.sql.
--
-- A blob is a large value a step hands on by reference (a report's PDF):
-- `context.put-blob` stores the bytes once, under the sha256 of the bytes,
-- and the journal carries only the `sha256:<hex>` reference and the size.
-- Content-addressed, so writing the same bytes twice (a retried attempt, the
-- same PDF next week) stores nothing new, and a reference never changes
-- meaning: replay reads the same bytes the live run read.
CREATE TABLE blobs (
    hash        TEXT    NOT NULL PRIMARY KEY, -- 64 lower-case hex digits
    bytes       BLOB    NOT NULL,
    size        BIGINT  NOT NULL,             -- length of bytes
    created_at  BIGINT  NOT NULL
);

-- Starts of rate-limited steps (a deployment's `rate`, e.g. Meta pulls
-- across all clients): one row per attempt started, kept for one period.
-- Counted and written under the key's lock, so the limit holds across hosts.
CREATE TABLE rate_takes (
    key  TEXT    NOT NULL,  -- `step:<deployment>[/<value of the key pointer>]`
    at   BIGINT  NOT NULL   -- microseconds since the Unix epoch
);

CREATE INDEX rate_takes_by_key ON rate_takes (key, at);

-- The deployments page counts runs per version and status from the index
-- alone.
CREATE INDEX runs_by_version ON runs (component, component_hash, status);
