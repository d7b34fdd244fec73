-- Ferry store, version 2: durable workflows park and wake, events.
--
-- Mirrored by migrations/postgres/0002_workflows.sql (same tables, same
-- columns, same meaning; see 0001 for the portable types). The only
-- SQLite-specific text is events.id: `INTEGER PRIMARY KEY AUTOINCREMENT`
-- here, `BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY` in Postgres.

-- While a run is waiting: when it wakes by itself (a timer, a backoff, an
-- event wait's deadline; NULL waits for an event only) and the name of the
-- event that wakes it early. Both are cleared when the run is claimed.
ALTER TABLE runs ADD COLUMN wake_at BIGINT;
ALTER TABLE runs ADD COLUMN waiting_on TEXT;
-- The newest event id when the run was last claimed. A park on an event
-- named like one stored since (which the worker may have missed between
-- its last read of events and the park) makes the run due at once, so no
-- wakeup is lost. Internal to the store; not part of the Run type.
ALTER TABLE runs ADD COLUMN event_mark BIGINT NOT NULL DEFAULT 0;

-- claim_ready: queued runs oldest first; waiting runs by wake time (also
-- next_wake's MIN). Partial, so they hold only the runs that may become
-- ready; status leads so that SQLite's planner, which prefers an equality
-- match, picks them over runs_by_status and reads them in order (no sort).
-- Running runs with an expired lease are few (one per busy worker at
-- most) and come from runs_by_status.
CREATE INDEX runs_queued ON runs (status, created_at, id)
    WHERE status = 'queued';
CREATE INDEX runs_wake ON runs (status, wake_at, id)
    WHERE status = 'waiting';

-- send_event: the runs waiting on an event name.
CREATE INDEX runs_waiting_on ON runs (waiting_on)
    WHERE status = 'waiting';

-- Events sent to the host, kept. AUTOINCREMENT so that an id is never
-- reused, even after the newest event is deleted: readers page through
-- events with `id > after_id`.
CREATE TABLE events (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    data        TEXT    NOT NULL,  -- JSON
    created_at  BIGINT  NOT NULL
);

-- events(name, since, after_id): one name, in id order.
CREATE INDEX events_by_name ON events (name, id);
