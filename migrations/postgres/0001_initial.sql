-- Ferry store, version 1: components, runs (with their lease) and journals.
--
-- Mirrors migrations/sqlite/0001_initial.sql: same tables, same columns,
-- same meaning. Instants are BIGINT microseconds since the Unix epoch (UTC),
-- ids and enum values are TEXT, JSON is TEXT, bytes are BYTEA.
-- Text that is compared or sorted is COLLATE "C" (byte order, as SQLite's
-- BINARY), so run ids sort by creation whatever the database's locale.
-- Enum columns carry no CHECK constraint so that later versions can add
-- values without rebuilding tables; the store rejects unknown values when it
-- reads them back (store::Error::Corrupt).

-- A component, stored once by the sha256 of its bytes.
CREATE TABLE components (
    hash        TEXT COLLATE "C" NOT NULL PRIMARY KEY, -- 64 lower-case hex digits
    world       TEXT    NOT NULL,                      -- 'step' | 'workflow'
    bytes       BYTEA   NOT NULL,
    size        BIGINT  NOT NULL,                      -- length of bytes
    created_at  BIGINT  NOT NULL
);

-- A run and the lease of the worker executing it.
CREATE TABLE runs (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY, -- run_<ULID>: text order is creation order
    kind              TEXT    NOT NULL,             -- 'step' | 'workflow'
    component         TEXT COLLATE "C" NOT NULL,    -- deployment or component name
    component_hash    TEXT COLLATE "C" NOT NULL REFERENCES components (hash),
    input             TEXT    NOT NULL,             -- JSON
    status            TEXT COLLATE "C" NOT NULL,    -- queued | running | waiting | completed | failed | cancelled
    output            TEXT,                         -- JSON, once completed
    error_kind        TEXT,                         -- RunErrorKind, once failed
    error_message     TEXT,
    idempotency_key   TEXT COLLATE "C",
    created_at        BIGINT  NOT NULL,
    started_at        BIGINT,                       -- first claim
    finished_at       BIGINT,
    lease_owner       TEXT,                         -- NULL when no worker holds the run
    lease_epoch       BIGINT  NOT NULL DEFAULT 0,   -- bumped by every claim; fences writes
    lease_expires_at  BIGINT
);

-- At most one run per (component, idempotency key).
CREATE UNIQUE INDEX runs_idempotency ON runs (component, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- list_runs: newest first, by status or by component (keyset on id).
CREATE INDEX runs_by_status ON runs (status, id DESC);
CREATE INDEX runs_by_component ON runs (component, id DESC);

-- Claiming: leases to take over are found by expiry.
CREATE INDEX runs_lease_expiry ON runs (lease_expires_at)
    WHERE status = 'running';

-- The journal: append-only, one row per recorded call.
CREATE TABLE journal (
    run_id        TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq           BIGINT  NOT NULL,
    attempt       BIGINT  NOT NULL,
    child         BIGINT  NOT NULL,
    kind          TEXT    NOT NULL,  -- EntryKind
    name          TEXT    NOT NULL,
    request       TEXT    NOT NULL,  -- JSON
    request_hash  TEXT    NOT NULL,  -- sha256 hex of request
    response      TEXT,              -- JSON
    status        TEXT    NOT NULL,  -- 'ok' | 'error'
    error         TEXT,
    started_at    BIGINT  NOT NULL,
    finished_at   BIGINT  NOT NULL,
    fuel          BIGINT,
    PRIMARY KEY (run_id, seq, attempt, child)
);
