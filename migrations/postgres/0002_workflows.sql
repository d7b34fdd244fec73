-- Ferry store, version 2: durable workflows park and wake, events.
--
-- Mirrors migrations/sqlite/0002_workflows.sql (same tables, same columns,
-- same meaning; see 0001 for the portable types). The only dialect-specific
-- text is events.id: `BIGINT GENERATED ALWAYS AS IDENTITY` here,
-- `INTEGER PRIMARY KEY AUTOINCREMENT` in SQLite. Identity values are not
-- handed out in commit order; the store serialises event inserts with a
-- transaction-level advisory lock so that they are (readers page through
-- events with `id > after_id`).

-- While a run is waiting: when it wakes by itself (a timer, a backoff, an
-- event wait's deadline; NULL waits for an event only) and the name of the
-- event that wakes it early. Both are cleared when the run is claimed.
ALTER TABLE runs ADD COLUMN wake_at BIGINT;
ALTER TABLE runs ADD COLUMN waiting_on TEXT COLLATE "C";
-- The newest event id when the run was last claimed. A park on an event
-- named like one stored since (which the worker may have missed between
-- its last read of events and the park) makes the run due at once, so no
-- wakeup is lost. Internal to the store; not part of the Run type.
ALTER TABLE runs ADD COLUMN event_mark BIGINT NOT NULL DEFAULT 0;

-- claim_ready: queued runs oldest first; waiting runs by wake time (also
-- next_wake's MIN). Partial, so they hold only the runs that may become
-- ready.
CREATE INDEX runs_queued ON runs (status, created_at, id)
    WHERE status = 'queued';
CREATE INDEX runs_wake ON runs (status, wake_at, id)
    WHERE status = 'waiting';

-- send_event: the runs waiting on an event name.
CREATE INDEX runs_waiting_on ON runs (waiting_on)
    WHERE status = 'waiting';

-- Events sent to the host, kept. Identity values are never reused.
CREATE TABLE events (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    data        TEXT    NOT NULL,  -- JSON
    created_at  BIGINT  NOT NULL
);

-- events(name, since, after_id): one name, in id order.
CREATE INDEX events_by_name ON events (name, id);
