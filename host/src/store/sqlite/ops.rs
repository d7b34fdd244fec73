//! The SQL of each write operation, run by the writer thread inside the
//! batch transaction (see [`super::writer`]).
//!
//! Each function gets the writer's connection with the batch transaction
//! open (`BEGIN IMMEDIATE`, so the write lock is held and nothing, not even
//! another process, can change a row between a check and a write) and a
//! savepoint around the operation when the batch has several: an `Err`
//! returned here rolls back exactly this operation's writes and leaves the
//! rest of the batch alone.
//!
//! The functions are synchronous: the connection belongs to the writer
//! thread, so a statement is a function call, not a round trip to another
//! thread. Fencing is check-then-write: [`fence`] reads the run's epoch and
//! status, and the writes follow only if the caller's lease is still the
//! current one. All SQL is `&'static str`, prepared once and cached by the
//! connection (`prepare_cached`).

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{
    DeploymentRow, EventRow, RunRow, config_to_sql, deployment_columns, event_columns, fuel_to_sql,
    is_foreign_key_violation, is_unique_violation, run_columns, sql_err,
};
use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, Event, Micros, NewRun, Run, RunErrorKind, RunId, RunStatus,
    Schedule, World,
};
use crate::store::{Component, Created, Error, Lease, Outcome, Park, Result};

/// Runs one cached statement that returns no rows; the rows it changed.
pub(super) fn exec(conn: &Connection, sql: &'static str, params: impl rusqlite::Params) -> Result<usize> {
    conn.prepare_cached(sql).and_then(|mut st| st.execute(params)).map_err(sql_err)
}

/// Stores a component unless its hash is already there.
pub(super) fn put_component(conn: &Connection, c: &Component) -> Result<bool> {
    let size = i64::try_from(c.bytes.len()).unwrap_or(i64::MAX);
    let done = exec(
        conn,
        "INSERT INTO components (hash, world, bytes, size, created_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (hash) DO NOTHING",
        params![c.hash.as_str(), c.world.as_str(), c.bytes.as_slice(), size, c.created_at.0],
    )?;
    Ok(done == 1)
}

/// Takes one start from the sliding-window rate limit `key`; see
/// [`crate::store::Store::take_rate`].
pub(super) fn take_rate(
    conn: &Connection,
    key: &str,
    limit: u32,
    period_us: i64,
    now: Micros,
) -> Result<Option<Micros>> {
    // The one writer connection serialises every take.
    let since = now.0.saturating_sub(period_us);
    exec(conn, "DELETE FROM rate_takes WHERE key = ? AND at <= ?", params![key, since])?;
    let (count, oldest): (i64, Option<i64>) = conn
        .prepare_cached("SELECT COUNT(*), MIN(at) FROM rate_takes WHERE key = ?")
        .and_then(|mut st| st.query_row([key], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(sql_err)?;
    if count < i64::from(limit) {
        exec(conn, "INSERT INTO rate_takes (key, at) VALUES (?, ?)", params![key, now.0])?;
        return Ok(None);
    }
    // Full: room again once the oldest start leaves the window.
    Ok(Some(Micros(oldest.unwrap_or(now.0).saturating_add(period_us).max(now.0 + 1))))
}

/// Stores a blob once by hash; true when new.
pub(super) fn put_blob(conn: &Connection, hash: &str, bytes: &[u8], now: Micros) -> Result<bool> {
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let done = exec(
        conn,
        "INSERT INTO blobs (hash, bytes, size, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
        params![hash, bytes, size, now.0],
    )?;
    Ok(done == 1)
}

/// Creates a queued (or held) run, or returns the run that already has its
/// idempotency key.
pub(super) fn create_run(conn: &Connection, run: NewRun) -> Result<Created> {
    let status = run.initial_status();
    if let Some(key) = &run.idempotency_key {
        let existing: Option<RunRow> = conn
            .prepare_cached(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE component = ? AND idempotency_key = ?"
            ))
            .and_then(|mut st| st.query_row(params![run.component.as_str(), key.as_str()], RunRow::read).optional())
            .map_err(sql_err)?;
        if let Some(row) = existing {
            return Ok(Created::Existing(row.try_into()?));
        }
    }
    let (concurrency_key, concurrency_limit) = match &run.flow.concurrency {
        Some((key, limit)) => (Some(key.as_str()), Some(i64::from(*limit))),
        None => (None, None),
    };
    let (rate_key, rate_limit, rate_period) = match &run.flow.rate {
        Some((key, limit, period)) => (Some(key.as_str()), Some(i64::from(*limit)), Some(*period)),
        None => (None, None, None),
    };
    conn.prepare_cached(
        "INSERT INTO runs (id, kind, component, component_hash, input, status, idempotency_key, \
         created_at, origin, concurrency_key, concurrency_limit, rate_key, rate_limit, rate_period, priority) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut st| {
        st.execute(params![
            run.id.to_string(),
            run.kind.as_str(),
            run.component.as_str(),
            run.component_hash.as_str(),
            run.input.as_str(),
            status.as_str(),
            run.idempotency_key.as_deref(),
            run.created_at.0,
            run.origin.as_deref(),
            concurrency_key,
            concurrency_limit,
            rate_key,
            rate_limit,
            rate_period,
            run.flow.priority,
        ])
    })
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("a run with id {} already exists", run.id))
        } else if is_foreign_key_violation(&e) {
            let hash = &run.component_hash;
            Error::NotFound(format!("component {hash} (store it before creating runs of it)"))
        } else {
            sql_err(e)
        }
    })?;
    Ok(Created::New(Run {
        id: run.id,
        kind: run.kind,
        component: run.component,
        component_hash: run.component_hash,
        input: run.input,
        status,
        output: None,
        error: None,
        idempotency_key: run.idempotency_key,
        created_at: run.created_at,
        started_at: None,
        finished_at: None,
        lease_owner: None,
        lease_epoch: 0,
        lease_expires_at: None,
        wake_at: None,
        waiting_on: None,
        origin: run.origin,
    }))
}

/// Creates a run and claims it in the same transaction if it is the run
/// [`claim_ready`] would take next (nothing older or more urgent is ready,
/// and its flow control admits it); otherwise it stays queued. The claim is
/// tried under a savepoint and undone when it picked another run.
pub(super) fn create_and_claim(
    conn: &Connection,
    run: NewRun,
    owner: &str,
    ttl: Duration,
    now: Micros,
) -> Result<(Created, Option<(Run, Lease)>)> {
    let created = create_run(conn, run)?;
    let id = match &created {
        Created::New(run) if run.status == RunStatus::Queued => run.id,
        _ => return Ok((created, None)),
    };
    exec(conn, "SAVEPOINT create_claim", [])?;
    let claimed = claim_ready(conn, owner, ttl, now, 1).map(|mut c| c.pop().filter(|(run, _)| run.id == id));
    if !matches!(claimed, Ok(Some(_))) {
        exec(conn, "ROLLBACK TO create_claim", [])?;
    }
    exec(conn, "RELEASE create_claim", [])?;
    Ok((created, claimed?))
}

/// Claims a run: one conditional update that bumps the epoch; when it
/// matches nothing, a read says why.
///
/// A waiting run is claimable whatever its `wake_at`: an explicit claim by
/// id is the caller's decision (`ferry exec`, a manual resume), and a
/// workflow resumed early replays and parks again. Only [`claim_ready`]
/// waits for `wake_at`.
pub(super) fn claim(conn: &Connection, id: &RunId, owner: &str, ttl: Duration, now: Micros) -> Result<Lease> {
    let expires_at = now.plus(ttl);
    let epoch: Option<i64> = conn
        .prepare_cached(
            "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1, \
             lease_expires_at = ?, started_at = COALESCE(started_at, ?), wake_at = NULL, waiting_on = NULL, \
             event_mark = COALESCE((SELECT MAX(id) FROM events), 0) \
             WHERE id = ? AND (status IN ('queued', 'waiting') \
                OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < ?))) \
             RETURNING lease_epoch",
        )
        .and_then(|mut st| {
            st.query_row(params![owner, expires_at.0, now.0, id.to_string(), now.0], |r| r.get(0)).optional()
        })
        .map_err(sql_err)?;
    if let Some(epoch) = epoch {
        return Ok(Lease { run_id: *id, owner: owner.to_owned(), epoch, expires_at });
    }

    let row: Option<(String, Option<String>, Option<i64>)> = conn
        .prepare_cached("SELECT status, lease_owner, lease_expires_at FROM runs WHERE id = ?")
        .and_then(|mut st| st.query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(sql_err)?;
    let Some((status, holder, expiry)) = row else {
        return Err(Error::NotFound(format!("run {id}")));
    };
    let status: RunStatus =
        status.parse().map_err(|_| Error::Corrupt(format!("run {id}: bad value `{status}` in column status")))?;
    if status.is_final() {
        return Err(Error::Conflict(format!("run {id} is {status}; a finished run cannot be claimed")));
    }
    Err(Error::Conflict(format!(
        "run {id} is leased by {} until {}",
        holder.as_deref().unwrap_or("another worker"),
        expiry.map_or_else(|| "further notice".to_owned(), |t| Micros(t).to_string()),
    )))
}

/// Extends a live lease.
pub(super) fn heartbeat(conn: &Connection, lease: &Lease, ttl: Duration, now: Micros) -> Result<Lease> {
    fence(conn, lease)?;
    let expires_at = now.plus(ttl);
    exec(conn, "UPDATE runs SET lease_expires_at = ? WHERE id = ?", params![expires_at.0, lease.run_id.to_string()])?;
    Ok(Lease { expires_at, ..lease.clone() })
}

/// Appends journal entries under a lease.
pub(super) fn append(conn: &Connection, lease: &Lease, entries: &[Entry]) -> Result<()> {
    fence(conn, lease)?;
    insert_entries(conn, lease, entries)
}

/// Appends the last entries, records the outcome and releases the lease.
pub(super) fn finish(
    conn: &Connection,
    lease: &Lease,
    entries: &[Entry],
    outcome: &Outcome,
    now: Micros,
) -> Result<()> {
    fence(conn, lease)?;
    insert_entries(conn, lease, entries)?;
    let (status, output, error) = match outcome {
        Outcome::Completed { output } => (RunStatus::Completed, Some(output.as_str()), None),
        Outcome::Failed { error } => (RunStatus::Failed, None, Some(error)),
        Outcome::Cancelled => (RunStatus::Cancelled, None, None),
    };
    exec(
        conn,
        "UPDATE runs SET status = ?, output = ?, error_kind = ?, error_message = ?, \
         finished_at = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
        params![
            status.as_str(),
            output,
            error.map(|e| e.kind.as_str()),
            error.map(|e| e.message.as_str()),
            now.0,
            lease.run_id.to_string()
        ],
    )?;
    Ok(())
}

/// Claims up to `limit` ready runs: due waiting runs and expired leases as
/// they come, queued runs as their flow control allows. Order: higher
/// priority first, then oldest first by when the run became ready
/// (`wake_at` for a waiting run, `created_at` otherwise; id breaks ties).
///
/// Runs in the writer's `BEGIN IMMEDIATE` transaction, so the pick and the
/// claims are atomic: no other claim (of this process or another) can take
/// a picked run in between, and two `claim_ready` calls never share a run.
///
/// Due waiting runs and expired leases already hold their concurrency slot
/// and their rate start, so they are not gated and claiming them changes no
/// count. Queued runs come from [`QUEUED_CANDIDATES`], which returns only
/// runs admissible under the counts at query time, with those counts.
/// Claiming one may hold back the next of the same key, so each candidate
/// is checked again against the counts plus the claims made since the
/// query; when the candidates run out while more may be admissible, the
/// query runs again (it sees this batch's claims). Every query's first
/// candidate is admissible, so the loop ends within `limit` queries.
pub(super) fn claim_ready(
    conn: &Connection,
    owner: &str,
    ttl: Duration,
    now: Micros,
    limit: u32,
) -> Result<Vec<(Run, Lease)>> {
    let want = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut ungated: VecDeque<Ungated> = conn
        .prepare_cached(UNGATED)
        .and_then(|mut st| {
            let limit = i64::from(limit);
            st.query_map(params![now.0, limit, now.0, limit, limit], Ungated::read)?.collect()
        })
        .map_err(sql_err)?;

    let mut queued: VecDeque<Candidate> = VecDeque::new();
    // Whether the last candidate query may have left admissible runs out.
    let mut more_queued = true;
    // Claims made since the last candidate query, per (component, key).
    let mut claimed_since = ClaimedSince::default();

    let expires_at = now.plus(ttl);
    let mut claimed = Vec::with_capacity(want.min(64));
    while claimed.len() < want {
        while queued.front().is_some_and(|c| !c.admissible(&claimed_since)) {
            queued.pop_front();
        }
        if queued.is_empty() && more_queued {
            let remaining = want - claimed.len();
            let fresh: Vec<Candidate> = conn
                .prepare_cached(QUEUED_CANDIDATES)
                .and_then(|mut st| {
                    let remaining = i64::try_from(remaining).unwrap_or(i64::MAX);
                    st.query_map(params![now.0, remaining], Candidate::read)?.collect()
                })
                .map_err(sql_err)?;
            more_queued = fresh.len() == remaining;
            queued = fresh.into();
            claimed_since = ClaimedSince::default();
        }
        let take_queued = match (queued.front(), ungated.front()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(q), Some(u)) => {
                (Reverse(q.priority), q.created_at, q.id.as_str()) < (Reverse(u.priority), u.ready_at, u.id.as_str())
            }
        };
        let id = if take_queued {
            let Some(c) = queued.pop_front() else { break };
            claimed_since.add(&c);
            c.id
        } else {
            let Some(u) = ungated.pop_front() else { break };
            u.id
        };
        // Picked under the write lock a moment ago: the update matches.
        let row: RunRow = conn
            .prepare_cached(concat!(
                "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1, \
                 lease_expires_at = ?, started_at = COALESCE(started_at, ?), wake_at = NULL, waiting_on = NULL, \
                 event_mark = COALESCE((SELECT MAX(id) FROM events), 0) \
                 WHERE id = ? RETURNING ",
                run_columns!()
            ))
            .and_then(|mut st| st.query_row(params![owner, expires_at.0, now.0, id.as_str()], RunRow::read))
            .map_err(sql_err)?;
        let run = Run::try_from(row)?;
        let lease = Lease { run_id: run.id, owner: owner.to_owned(), epoch: run.lease_epoch, expires_at };
        claimed.push((run, lease));
    }
    Ok(claimed)
}

/// Due waiting runs and expired leases, `claim_ready`'s ungated kind.
/// Binds `now`, limit, `now`, limit, limit.
///
/// Every `LIMIT` here is `(? + 0)`, not `?`: SQLite (3.46 and later) plans
/// with a bound LIMIT's value, so binding it again expires the statement
/// and the next step parses and plans it anew. This statement and
/// [`QUEUED_CANDIDATES`] were re-prepared on every claim that way (4–5 %
/// of the writer's time on the seed bench); an expression is not read by
/// the planner. The test `writer_statements_are_prepared_once` holds it.
pub(super) const UNGATED: &str = "SELECT id, priority, ready_at FROM ( \
       SELECT * FROM (SELECT id, priority, wake_at AS ready_at FROM runs \
         WHERE status = 'waiting' AND wake_at <= ? ORDER BY priority DESC, wake_at, id LIMIT (? + 0)) AS due \
       UNION ALL \
       SELECT * FROM (SELECT id, priority, created_at AS ready_at FROM runs \
         WHERE status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < ?) \
         ORDER BY priority DESC, created_at, id LIMIT (? + 0)) AS expired \
     ) AS ready ORDER BY priority DESC, ready_at, id LIMIT (? + 0)";

/// Queued runs with their flow-control counts: `in_progress`, the runs of
/// the same component and concurrency key running or waiting; `started`,
/// the runs of the same component and rate key started since `? - period`.
/// A key without its limit (or a rate without its period) limits nothing.
/// Shared by the claim (which keeps only admissible runs) and the queue
/// reasons (which explain the others); binds `now` first.
macro_rules! queued_with_counts {
    () => {
        "SELECT q.id, q.priority, q.created_at, q.component, \
           q.concurrency_key, q.concurrency_limit, \
           CASE WHEN q.concurrency_key IS NULL OR q.concurrency_limit IS NULL THEN 0 ELSE \
             (SELECT COUNT(*) FROM runs AS r WHERE r.component = q.component \
               AND r.concurrency_key = q.concurrency_key AND r.status IN ('running', 'waiting')) \
           END AS in_progress, \
           q.rate_key, q.rate_limit, q.rate_period, \
           CASE WHEN q.rate_key IS NULL OR q.rate_limit IS NULL OR q.rate_period IS NULL THEN 0 ELSE \
             (SELECT COUNT(*) FROM runs AS r WHERE r.component = q.component \
               AND r.rate_key = q.rate_key AND r.started_at >= ? - q.rate_period) \
           END AS started \
         FROM runs AS q WHERE q.status = 'queued'"
    };
}
pub(super) use queued_with_counts;

/// The queued runs `claim_ready` may take now, in claim order (on its
/// LIMIT see [`UNGATED`]).
pub(super) const QUEUED_CANDIDATES: &str = concat!(
    "SELECT * FROM (",
    queued_with_counts!(),
    ") AS c WHERE (concurrency_limit IS NULL OR in_progress < concurrency_limit) \
     AND (rate_limit IS NULL OR started < rate_limit) \
     ORDER BY priority DESC, created_at, id LIMIT (? + 0)"
);

/// A due waiting run or an expired lease.
struct Ungated {
    id: String,
    priority: i64,
    ready_at: i64,
}

impl Ungated {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self { id: r.get("id")?, priority: r.get("priority")?, ready_at: r.get("ready_at")? })
    }
}

/// A queued run with its flow control and the counts it is checked against.
#[derive(sqlx::FromRow)]
pub(super) struct Candidate {
    pub(super) id: String,
    priority: i64,
    created_at: i64,
    component: String,
    pub(super) concurrency_key: Option<String>,
    pub(super) concurrency_limit: Option<i64>,
    pub(super) in_progress: i64,
    pub(super) rate_key: Option<String>,
    pub(super) rate_limit: Option<i64>,
    pub(super) rate_period: Option<i64>,
    pub(super) started: i64,
}

impl Candidate {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get("id")?,
            priority: r.get("priority")?,
            created_at: r.get("created_at")?,
            component: r.get("component")?,
            concurrency_key: r.get("concurrency_key")?,
            concurrency_limit: r.get("concurrency_limit")?,
            in_progress: r.get("in_progress")?,
            rate_key: r.get("rate_key")?,
            rate_limit: r.get("rate_limit")?,
            rate_period: r.get("rate_period")?,
            started: r.get("started")?,
        })
    }

    /// Whether the run may start, given the claims made since its counts
    /// were read.
    fn admissible(&self, since: &ClaimedSince) -> bool {
        let concurrency = match (&self.concurrency_key, self.concurrency_limit) {
            (Some(key), Some(limit)) => self.in_progress + since.in_progress.get(&self.component, key) < limit,
            _ => true,
        };
        let rate = match (&self.rate_key, self.rate_limit, self.rate_period) {
            (Some(key), Some(limit), Some(_)) => self.started + since.started.get(&self.component, key) < limit,
            _ => true,
        };
        concurrency && rate
    }
}

/// Queued runs claimed by this batch since the counts were read: each is
/// now in progress under its concurrency key and started under its rate key.
#[derive(Default)]
struct ClaimedSince {
    in_progress: Counts,
    started: Counts,
}

impl ClaimedSince {
    fn add(&mut self, c: &Candidate) {
        if let (Some(key), Some(_)) = (&c.concurrency_key, c.concurrency_limit) {
            self.in_progress.add(&c.component, key);
        }
        if let (Some(key), Some(_), Some(_)) = (&c.rate_key, c.rate_limit, c.rate_period) {
            self.started.add(&c.component, key);
        }
    }
}

/// Runs per (component, key).
#[derive(Default)]
struct Counts(HashMap<(String, String), i64>);

impl Counts {
    fn get(&self, component: &str, key: &str) -> i64 {
        self.0.get(&(component.to_owned(), key.to_owned())).copied().unwrap_or(0)
    }

    fn add(&mut self, component: &str, key: &str) {
        *self.0.entry((component.to_owned(), key.to_owned())).or_insert(0) += 1;
    }
}

/// Appends the entries and parks the run until `wake_at` or its event;
/// the lease is released, its epoch kept (like [`finish`]). A matching
/// event stored since the claim makes the run due at once (see below).
pub(super) fn park(conn: &Connection, lease: &Lease, entries: &[Entry], park: &Park) -> Result<()> {
    fence(conn, lease)?;
    insert_entries(conn, lease, entries)?;
    // An event of that name stored since the claim may have come after the
    // worker last looked: then the run is due at once (at the event's time)
    // rather than waiting for an event that was already sent. At worst the
    // run replays once for an event it had already taken.
    let mut wake_at = park.wake_at;
    if let Some(event) = &park.event {
        let sent: Option<i64> = conn
            .prepare_cached(
                "SELECT MIN(created_at) FROM events WHERE name = ? AND id > (SELECT event_mark FROM runs WHERE id = ?)",
            )
            .and_then(|mut st| st.query_row(params![event.as_str(), lease.run_id.to_string()], |r| r.get(0)))
            .map_err(sql_err)?;
        if let Some(sent) = sent.map(Micros) {
            wake_at = Some(wake_at.map_or(sent, |w| w.min(sent)));
        }
    }
    exec(
        conn,
        "UPDATE runs SET status = 'waiting', wake_at = ?, waiting_on = ?, lease_owner = NULL, \
         lease_expires_at = NULL WHERE id = ?",
        params![wake_at.map(|t| t.0), park.event.as_deref(), lease.run_id.to_string()],
    )?;
    Ok(())
}

/// Cancels a run that is not final. Bumps the epoch, so the lease of a
/// worker still executing it is fenced out.
pub(super) fn cancel(conn: &Connection, id: &RunId, reason: &str, now: Micros) -> Result<Run> {
    let row: Option<RunRow> = conn
        .prepare_cached(concat!(
            "UPDATE runs SET status = 'cancelled', error_kind = ?, error_message = ?, finished_at = ?, \
             lease_owner = NULL, lease_expires_at = NULL, lease_epoch = lease_epoch + 1, wake_at = NULL, \
             waiting_on = NULL \
             WHERE id = ? AND status NOT IN ('completed', 'failed', 'cancelled') RETURNING ",
            run_columns!()
        ))
        .and_then(|mut st| {
            st.query_row(params![RunErrorKind::Cancelled.as_str(), reason, now.0, id.to_string()], RunRow::read)
                .optional()
        })
        .map_err(sql_err)?;
    if let Some(row) = row {
        return Run::try_from(row);
    }
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM runs WHERE id = ?")
        .and_then(|mut st| st.query_row([id.to_string()], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    match status {
        None => Err(Error::NotFound(format!("run {id}"))),
        Some(status) => Err(Error::Conflict(format!("run {id} is {status}; a finished run cannot be cancelled"))),
    }
}

/// Stores an event and wakes the runs waiting on its name: their `wake_at`
/// becomes `now`, or stays if it is already earlier. Returns the event and
/// how many runs wait on the name (all of them are now due).
pub(super) fn send_event(conn: &Connection, name: &str, data: &str, now: Micros) -> Result<(Event, u64)> {
    let row: EventRow = conn
        .prepare_cached(concat!(
            "INSERT INTO events (name, data, created_at) VALUES (?, ?, ?) RETURNING ",
            event_columns!()
        ))
        .and_then(|mut st| st.query_row(params![name, data, now.0], EventRow::read))
        .map_err(sql_err)?;
    let woken = exec(
        conn,
        "UPDATE runs SET wake_at = CASE WHEN wake_at IS NOT NULL AND wake_at < ? THEN wake_at ELSE ? END \
         WHERE status = 'waiting' AND waiting_on = ?",
        params![now.0, now.0, name],
    )?;
    Ok((Event::from(row), woken as u64))
}

/// Makes a new active version of deployment `name`, unless the active
/// version already has this component and config (then it is returned
/// with `false` and nothing is written).
pub(super) fn deploy(
    conn: &Connection,
    name: &str,
    hash: &ComponentHash,
    world: World,
    config: &DeploymentConfig,
    now: Micros,
) -> Result<(Deployment, bool)> {
    let active: Option<DeploymentRow> = conn
        .prepare_cached(concat!("SELECT ", deployment_columns!(), " FROM deployments WHERE name = ? AND active"))
        .and_then(|mut st| st.query_row([name], DeploymentRow::read).optional())
        .map_err(sql_err)?;
    // An active version that cannot be read back (a bad stored config) is
    // replaced rather than blocking every deploy of the name.
    if let Some(Ok(active)) = active.map(Deployment::try_from)
        && active.hash == *hash
        && active.world == world
        && active.config == *config
    {
        return Ok((active, false));
    }
    let version: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(version), 0) + 1 FROM deployments WHERE name = ?")
        .and_then(|mut st| st.query_row([name], |r| r.get(0)))
        .map_err(sql_err)?;
    let version = u32::try_from(version)
        .map_err(|_| Error::Corrupt(format!("deployment {name}: version {version} is out of range")))?;
    let config_text = config_to_sql(config)?;
    exec(conn, "UPDATE deployments SET active = FALSE WHERE name = ? AND active", [name])?;
    conn.prepare_cached(
        "INSERT INTO deployments (name, version, hash, world, config, active, created_at) \
         VALUES (?, ?, ?, ?, ?, TRUE, ?)",
    )
    .and_then(|mut st| st.execute(params![name, i64::from(version), hash.as_str(), world.as_str(), config_text, now.0]))
    .map_err(|e| {
        if is_foreign_key_violation(&e) {
            Error::NotFound(format!("component {hash} (store it before deploying it)"))
        } else {
            sql_err(e)
        }
    })?;
    let deployment = Deployment {
        name: name.to_owned(),
        version,
        hash: hash.clone(),
        world,
        config: config.clone(),
        active: true,
        created_at: now,
    };
    Ok((deployment, true))
}

/// Makes `version` the active version of `name`.
pub(super) fn activate(conn: &Connection, name: &str, version: u32) -> Result<Deployment> {
    let row: Option<DeploymentRow> = conn
        .prepare_cached(concat!("SELECT ", deployment_columns!(), " FROM deployments WHERE name = ? AND version = ?"))
        .and_then(|mut st| st.query_row(params![name, i64::from(version)], DeploymentRow::read).optional())
        .map_err(sql_err)?;
    let Some(row) = row else {
        return Err(Error::NotFound(format!("deployment {name} version {version}")));
    };
    let deployment = Deployment::try_from(row)?;
    // Deactivate first: the partial unique index allows one active version
    // per name at every moment, not just at the commit.
    exec(
        conn,
        "UPDATE deployments SET active = FALSE WHERE name = ? AND active AND version <> ?",
        params![name, i64::from(version)],
    )?;
    exec(
        conn,
        "UPDATE deployments SET active = TRUE WHERE name = ? AND version = ?",
        params![name, i64::from(version)],
    )?;
    Ok(Deployment { active: true, ..deployment })
}

/// Creates or replaces a schedule (every column takes the given value).
pub(super) fn put_schedule(conn: &Connection, s: &Schedule) -> Result<()> {
    exec(
        conn,
        "INSERT INTO schedules (name, workflow, cron, timezone, input, next_fire_at, last_fired_at, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET workflow = excluded.workflow, cron = excluded.cron, \
           timezone = excluded.timezone, input = excluded.input, next_fire_at = excluded.next_fire_at, \
           last_fired_at = excluded.last_fired_at, created_at = excluded.created_at",
        params![
            s.name.as_str(),
            s.workflow.as_str(),
            s.cron.as_str(),
            s.timezone.as_str(),
            s.input.as_str(),
            s.next_fire_at.0,
            s.last_fired_at.map(|t| t.0),
            s.created_at.0
        ],
    )?;
    Ok(())
}

/// Deletes a schedule.
pub(super) fn delete_schedule(conn: &Connection, name: &str) -> Result<()> {
    if exec(conn, "DELETE FROM schedules WHERE name = ?", [name])? == 0 {
        return Err(Error::NotFound(format!("schedule {name}")));
    }
    Ok(())
}

/// Fires tick `tick` of a schedule: a compare-and-set on `next_fire_at`,
/// then the run, in this operation's savepoint (a run that cannot be
/// created leaves the tick unfired). An idempotency key that already has a
/// run gives that run.
pub(super) fn fire_schedule(
    conn: &Connection,
    name: &str,
    tick: Micros,
    next: Micros,
    run: NewRun,
) -> Result<Option<Run>> {
    let moved = exec(
        conn,
        "UPDATE schedules SET next_fire_at = ?, last_fired_at = ? WHERE name = ? AND next_fire_at = ?",
        params![next.0, tick.0, name, tick.0],
    )?;
    if moved == 0 {
        return Ok(None);
    }
    Ok(Some(match create_run(conn, run)? {
        Created::New(run) | Created::Existing(run) => run,
    }))
}

/// Checks that `lease` is still the run's current lease: the run exists,
/// its epoch is the lease's, and it is running (not finished and released).
fn fence(conn: &Connection, lease: &Lease) -> Result<()> {
    let id = &lease.run_id;
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT status, lease_epoch FROM runs WHERE id = ?")
        .and_then(|mut st| st.query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(sql_err)?;
    let Some((status, current)) = row else {
        return Err(Error::NotFound(format!("run {id}")));
    };
    if current != lease.epoch {
        return Err(Error::LeaseLost { run_id: *id, held: lease.epoch, current });
    }
    if status != RunStatus::Running.as_str() {
        return Err(Error::Conflict(format!("run {id} is {status}: it is no longer leased to {}", lease.owner)));
    }
    Ok(())
}

/// Inserts the entries with one cached single-row statement: on the
/// writer's own connection a statement is a function call, so a statement
/// per row costs less than building a multi-row one per batch shape.
fn insert_entries(conn: &Connection, lease: &Lease, entries: &[Entry]) -> Result<()> {
    if let Some(e) = entries.iter().find(|e| e.run_id != lease.run_id) {
        return Err(Error::Conflict(format!(
            "journal entry {} belongs to run {}, not to {} whose lease was given",
            e.key, e.run_id, lease.run_id
        )));
    }
    if entries.is_empty() {
        return Ok(());
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO journal (run_id, seq, attempt, child, kind, name, request, request_hash, \
             response, status, error, started_at, finished_at, fuel, component) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .map_err(sql_err)?;
    let run = lease.run_id.to_string();
    for e in entries {
        insert
            .execute(params![
                run,
                i64::from(e.key.seq),
                i64::from(e.key.attempt),
                i64::from(e.key.child),
                e.kind.as_str(),
                e.name.as_str(),
                e.request.as_str(),
                e.request_hash.as_str(),
                e.response.as_deref(),
                e.status.as_str(),
                e.error.as_deref(),
                e.started_at.0,
                e.finished_at.0,
                fuel_to_sql(e.fuel),
                e.component.as_deref(),
            ])
            .map_err(|err| {
                if is_unique_violation(&err) {
                    Error::Conflict(format!("journal entry {} of run {} already exists", e.key, lease.run_id))
                } else {
                    sql_err(err)
                }
            })?;
    }
    Ok(())
}
