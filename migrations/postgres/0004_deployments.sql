-- Ferry store, version 4: deployments, schedules, flow control.
--
-- Mirrors migrations/sqlite/0004_deployments.sql (same tables, same
-- columns, same meaning; see 0001 for the portable types). SQLite's
-- INTEGER is 64 bits, so its INTEGER columns are BIGINT here.

-- A version of a named component. At most one version per name is active
-- (the partial unique index below); the writer deactivates the old one
-- before it activates another.
CREATE TABLE deployments (
    name        TEXT COLLATE "C" NOT NULL,
    version     BIGINT   NOT NULL,             -- 1, 2, … per name
    hash        TEXT COLLATE "C" NOT NULL REFERENCES components (hash),
    world       TEXT     NOT NULL,             -- 'step' | 'workflow'
    config      TEXT     NOT NULL,             -- JSON of DeploymentConfig
    active      BOOLEAN  NOT NULL DEFAULT FALSE,
    created_at  BIGINT   NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE UNIQUE INDEX deployments_active ON deployments (name)
    WHERE active;

-- A cron schedule that starts runs of a workflow. fire_schedule moves
-- next_fire_at with a compare-and-set, so each tick fires once.
CREATE TABLE schedules (
    name           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    workflow       TEXT    NOT NULL,           -- deployment name
    cron           TEXT    NOT NULL,
    timezone       TEXT    NOT NULL,           -- IANA name
    input          TEXT    NOT NULL,           -- JSON
    next_fire_at   BIGINT  NOT NULL,
    last_fired_at  BIGINT,
    created_at     BIGINT  NOT NULL
);

-- Flow control a run carries from its deployment (keys already taken from
-- its input). A key and its limit are both set or both NULL (no limit).
-- Concurrency: at most concurrency_limit runs of the same component and key
-- running or waiting. Rate: at most rate_limit runs of the same component
-- and key started within rate_period microseconds.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN concurrency_limit BIGINT;
ALTER TABLE runs ADD COLUMN rate_key TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN rate_limit BIGINT;
ALTER TABLE runs ADD COLUMN rate_period BIGINT;
ALTER TABLE runs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;

-- claim_ready: queued runs by priority, then oldest first. Replaces
-- runs_queued (0002), which only knew the creation order.
DROP INDEX runs_queued;
CREATE INDEX runs_queued_by_priority ON runs (status, priority DESC, created_at, id)
    WHERE status = 'queued';

-- The limit counts: runs of a component and key in progress, and started
-- since an instant. Partial: runs without limits are not indexed.
CREATE INDEX runs_concurrency ON runs (component, concurrency_key, status)
    WHERE concurrency_key IS NOT NULL;
CREATE INDEX runs_rate ON runs (component, rate_key, started_at)
    WHERE rate_key IS NOT NULL;
