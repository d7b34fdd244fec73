//! The SQL of each write operation, run by the writer inside the batch
//! transaction (see [`super::writer`]).
//!
//! Each function gets the writer's connection with the batch transaction
//! open (READ COMMITTED) and a savepoint around the operation: an `Err`
//! returned here rolls back exactly this operation's writes and leaves the
//! rest of the batch alone.
//!
//! Other hosts write the same tables at the same time, so unlike SQLite's
//! single write lock, every check that a write depends on holds a lock
//! until the batch commits:
//! - Fencing locks the run's row (`FOR NO KEY UPDATE`) before it compares
//!   the epoch, so no claim or cancel of another host can come between the
//!   check and the commit.
//! - Claims by id and cancels are conditional `UPDATE`s: under READ
//!   COMMITTED a concurrent update makes Postgres wait and re-check the
//!   condition on the new row, so exactly one of two claims matches.
//! - `claim_ready` picks without locking, then claims each pick with a
//!   conditional update of a row locked `SKIP LOCKED`: a run another host
//!   is claiming is skipped, never waited for, never claimed twice. Queued
//!   runs under flow control are claimed only while holding a
//!   transaction-level advisory lock on each of their (component, key)
//!   pairs, and the limit is counted again after the lock is taken, so two
//!   hosts never both take a key's last slot. The lock is only tried: a key
//!   another host is claiming for is skipped.
//! - Event inserts are serialised by an advisory lock, so event ids are in
//!   commit order and `events(after_id)` never skips one committed late; a
//!   per-name lock orders `park` on an event against `send_event` of it.
//! - `deploy` and `activate` hold an advisory lock on the deployment name.
//! - `fire_schedule` is a conditional update: one host moves the tick.
//!
//! All SQL is `&'static str`, prepared once and cached by the connection.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::rows::{
    DeploymentRow, EventRow, RunRow, config_to_sql, db_err, deployment_columns, event_columns, fuel_to_sql,
    is_foreign_key_violation, is_unique_violation, run_columns,
};
use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, Event, Micros, NewRun, Run, RunErrorKind, RunId, RunStatus,
    Schedule, World,
};
use crate::store::{Component, Created, Error, Lease, Outcome, Park, Result};

/// Extra candidate queries `claim_ready` may make when runs it picked were
/// taken by another host (or their key was busy) before it could claim them.
const EXTRA_PICKS: usize = 8;

/// An advisory lock key: the first 8 bytes of the sha256 of the parts, so
/// every host computes the same key for the same thing.
pub(super) fn lock_key(parts: &[&str]) -> i64 {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.len().to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The lock that puts event inserts in commit order.
fn events_lock() -> i64 {
    lock_key(&["ferry", "events"])
}

/// The lock that orders a park on event `name` against sends of it.
fn event_name_lock(name: &str) -> i64 {
    lock_key(&["ferry", "event", name])
}

async fn advisory_lock(conn: &mut PgConnection, key: i64) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(key).execute(&mut *conn).await.map_err(db_err)?;
    Ok(())
}

async fn try_advisory_lock(conn: &mut PgConnection, key: i64) -> Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(key).fetch_one(&mut *conn).await.map_err(db_err)
}

/// Stores a component unless its hash is already there.
pub(super) async fn put_component(conn: &mut PgConnection, c: &Component) -> Result<bool> {
    let size = i64::try_from(c.bytes.len()).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "INSERT INTO components (hash, world, bytes, size, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(c.hash.as_str())
    .bind(c.world.as_str())
    .bind(c.bytes.as_slice())
    .bind(size)
    .bind(c.created_at.0)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

/// Takes one start from the sliding-window rate limit `key`; see
/// [`crate::store::Store::take_rate`].
pub(super) async fn take_rate(
    conn: &mut PgConnection,
    key: &str,
    limit: u32,
    period_us: i64,
    now: Micros,
) -> Result<Option<Micros>> {
    // Serialises the takes of one key across hosts until the batch commits.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let since = now.0.saturating_sub(period_us);
    sqlx::query("DELETE FROM rate_takes WHERE key = $1 AND at <= $2")
        .bind(key)
        .bind(since)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let (count, oldest): (i64, Option<i64>) = sqlx::query_as("SELECT COUNT(*), MIN(at) FROM rate_takes WHERE key = $1")
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    if count < i64::from(limit) {
        sqlx::query("INSERT INTO rate_takes (key, at) VALUES ($1, $2)")
            .bind(key)
            .bind(now.0)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        return Ok(None);
    }
    // Full: room again once the oldest start leaves the window.
    Ok(Some(Micros(oldest.unwrap_or(now.0).saturating_add(period_us).max(now.0 + 1))))
}

/// Stores a blob once by hash; true when new.
pub(super) async fn put_blob(conn: &mut PgConnection, hash: &str, bytes: &[u8], now: Micros) -> Result<bool> {
    let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "INSERT INTO blobs (hash, bytes, size, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash)
    .bind(bytes)
    .bind(size)
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

async fn run_by_key(conn: &mut PgConnection, component: &str, key: &str) -> Result<Option<Run>> {
    let row: Option<RunRow> =
        sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs WHERE component = $1 AND idempotency_key = $2"))
            .bind(component)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    row.map(Run::try_from).transpose()
}

/// Creates a queued run, or returns the run that already has its
/// idempotency key (also when another host creates it at the same moment:
/// the insert then waits for that host and inserts nothing).
pub(super) async fn create_run(conn: &mut PgConnection, run: NewRun) -> Result<Created> {
    let status = run.initial_status();
    if let Some(key) = &run.idempotency_key
        && let Some(existing) = run_by_key(conn, &run.component, key).await?
    {
        return Ok(Created::Existing(existing));
    }
    let (concurrency_key, concurrency_limit) = match &run.flow.concurrency {
        Some((key, limit)) => (Some(key.as_str()), Some(i64::from(*limit))),
        None => (None, None),
    };
    let (rate_key, rate_limit, rate_period) = match &run.flow.rate {
        Some((key, limit, period)) => (Some(key.as_str()), Some(i64::from(*limit)), Some(*period)),
        None => (None, None, None),
    };
    let inserted = sqlx::query(
        "INSERT INTO runs (id, kind, component, component_hash, input, status, idempotency_key, \
         created_at, origin, concurrency_key, concurrency_limit, rate_key, rate_limit, rate_period, priority) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (component, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    )
    .bind(run.id.to_string())
    .bind(run.kind.as_str())
    .bind(run.component.as_str())
    .bind(run.component_hash.as_str())
    .bind(run.input.as_str())
    .bind(status.as_str())
    .bind(run.idempotency_key.as_deref())
    .bind(run.created_at.0)
    .bind(run.origin.as_deref())
    .bind(concurrency_key)
    .bind(concurrency_limit)
    .bind(rate_key)
    .bind(rate_limit)
    .bind(rate_period)
    .bind(i64::from(run.flow.priority))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("a run with id {} already exists", run.id))
        } else if is_foreign_key_violation(&e) {
            let hash = &run.component_hash;
            Error::NotFound(format!("component {hash} (store it before creating runs of it)"))
        } else {
            db_err(e)
        }
    })?
    .rows_affected();
    if inserted == 0 {
        // Another host created a run with this key since the check above.
        let key = run.idempotency_key.as_deref().unwrap_or_default();
        return match run_by_key(conn, &run.component, key).await? {
            Some(existing) => Ok(Created::Existing(existing)),
            None => Err(Error::Conflict(format!("run {} could not be created; try again", run.id))),
        };
    }
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

/// Claims a run: one conditional update that bumps the epoch; when it
/// matches nothing, a read says why. As in SQLite, a waiting run is
/// claimable whatever its `wake_at`; the claim clears the wait.
pub(super) async fn claim(
    conn: &mut PgConnection,
    id: &RunId,
    owner: &str,
    ttl: Duration,
    now: Micros,
) -> Result<Lease> {
    let expires_at = now.plus(ttl);
    let epoch: Option<i64> = sqlx::query_scalar(
        "UPDATE runs SET status = 'running', lease_owner = $1, lease_epoch = lease_epoch + 1, \
         lease_expires_at = $2, started_at = COALESCE(started_at, $3), wake_at = NULL, waiting_on = NULL, \
         event_mark = COALESCE((SELECT MAX(id) FROM events), 0) \
         WHERE id = $4 AND (status IN ('queued', 'waiting') \
            OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < $3))) \
         RETURNING lease_epoch",
    )
    .bind(owner)
    .bind(expires_at.0)
    .bind(now.0)
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    if let Some(epoch) = epoch {
        return Ok(Lease { run_id: *id, owner: owner.to_owned(), epoch, expires_at });
    }

    let row: Option<(String, Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT status, lease_owner, lease_expires_at FROM runs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
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
pub(super) async fn heartbeat(conn: &mut PgConnection, lease: &Lease, ttl: Duration, now: Micros) -> Result<Lease> {
    fence(conn, lease).await?;
    let expires_at = now.plus(ttl);
    sqlx::query("UPDATE runs SET lease_expires_at = $1 WHERE id = $2")
        .bind(expires_at.0)
        .bind(lease.run_id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(Lease { expires_at, ..lease.clone() })
}

/// Appends journal entries under a lease.
pub(super) async fn append(conn: &mut PgConnection, lease: &Lease, entries: &[Entry]) -> Result<()> {
    fence(conn, lease).await?;
    insert_entries(conn, lease, entries).await
}

/// Appends the last entries, records the outcome and releases the lease.
pub(super) async fn finish(
    conn: &mut PgConnection,
    lease: &Lease,
    entries: &[Entry],
    outcome: &Outcome,
    now: Micros,
) -> Result<()> {
    fence(conn, lease).await?;
    insert_entries(conn, lease, entries).await?;
    let (status, output, error) = match outcome {
        Outcome::Completed { output } => (RunStatus::Completed, Some(output.as_str()), None),
        Outcome::Failed { error } => (RunStatus::Failed, None, Some(error)),
        Outcome::Cancelled => (RunStatus::Cancelled, None, None),
    };
    sqlx::query(
        "UPDATE runs SET status = $1, output = $2, error_kind = $3, error_message = $4, \
         finished_at = $5, lease_owner = NULL, lease_expires_at = NULL WHERE id = $6",
    )
    .bind(status.as_str())
    .bind(output)
    .bind(error.map(|e| e.kind.as_str()))
    .bind(error.map(|e| e.message.as_str()))
    .bind(now.0)
    .bind(lease.run_id.to_string())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Creates a run and claims it in the same transaction if it is the run
/// [`claim_ready`] would take next (nothing older or more urgent is ready,
/// and its flow control admits it); otherwise it stays queued. The claim is
/// tried under a savepoint and undone when it picked another run.
pub(super) async fn create_and_claim(
    conn: &mut PgConnection,
    run: NewRun,
    owner: &str,
    ttl: Duration,
    now: Micros,
) -> Result<(Created, Option<(Run, Lease)>)> {
    let created = create_run(conn, run).await?;
    let id = match &created {
        Created::New(run) if run.status == RunStatus::Queued => run.id,
        _ => return Ok((created, None)),
    };
    sqlx::query("SAVEPOINT create_claim").execute(&mut *conn).await.map_err(db_err)?;
    let claimed = claim_ready(conn, owner, ttl, now, 1).await.map(|mut c| c.pop().filter(|(run, _)| run.id == id));
    if !matches!(claimed, Ok(Some(_))) {
        sqlx::query("ROLLBACK TO SAVEPOINT create_claim").execute(&mut *conn).await.map_err(db_err)?;
    }
    sqlx::query("RELEASE SAVEPOINT create_claim").execute(&mut *conn).await.map_err(db_err)?;
    Ok((created, claimed?))
}

/// Claims up to `limit` ready runs, in the order of the SQLite backend:
/// higher priority first, then oldest first by when the run became ready
/// (`wake_at` for a waiting run, `created_at` otherwise; id breaks ties).
///
/// Picks are read without locks; each is then claimed by [`CLAIM_IF_READY`],
/// which locks the row `SKIP LOCKED` and checks again that the run is ready
/// (and, for a queued run, that its limits still admit it). A pick another
/// host took or is taking is skipped and the picks are read again, past the
/// skipped ones, at most [`EXTRA_PICKS`] extra times.
///
/// Flow control: before claiming a queued run with a concurrency or rate
/// key, the writer takes the advisory lock of each (component, key), with
/// `pg_try_advisory_xact_lock` so no host ever waits for another. Only a
/// claim under flow control raises a count, and only while holding the
/// key's lock until its commit, so the count made after taking the lock
/// sees every committed claim of the key: limits hold across hosts. A key
/// whose lock another host holds is skipped for this call.
pub(super) async fn claim_ready(
    conn: &mut PgConnection,
    owner: &str,
    ttl: Duration,
    now: Micros,
    limit: u32,
) -> Result<Vec<(Run, Lease)>> {
    let want = usize::try_from(limit).unwrap_or(usize::MAX);
    let expires_at = now.plus(ttl);
    let mut claimed = Vec::with_capacity(want.min(64));

    // Runs tried and not claimed: left out of the next picks.
    let mut skipped: Vec<String> = Vec::new();
    // Flow-control locks held by another host, and those this call holds.
    let mut busy_keys: HashSet<i64> = HashSet::new();
    let mut held_keys: HashSet<i64> = HashSet::new();

    let mut ungated: VecDeque<Ungated> = VecDeque::new();
    let mut more_ungated = true;
    let mut ungated_picks = 0;
    let mut queued: VecDeque<Candidate> = VecDeque::new();
    let mut more_queued = true;
    let mut queued_picks = 0;
    // Claims made since the last candidate query, per (component, key).
    let mut claimed_since = ClaimedSince::default();

    while claimed.len() < want {
        let remaining = want - claimed.len();
        if ungated.is_empty() && more_ungated && ungated_picks <= EXTRA_PICKS {
            ungated_picks += 1;
            let (picked, more) = pick_ungated(conn, now, remaining, &skipped).await?;
            ungated = picked;
            more_ungated = more;
        }
        while queued.front().is_some_and(|c| !c.admissible(&claimed_since)) {
            queued.pop_front();
        }
        if queued.is_empty() && more_queued && queued_picks <= want.saturating_add(EXTRA_PICKS) {
            queued_picks += 1;
            let fresh: Vec<Candidate> = sqlx::query_as(QUEUED_CANDIDATES)
                .bind(now.0)
                .bind(i64::try_from(remaining).unwrap_or(i64::MAX))
                .bind(skipped.as_slice())
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
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
            let keys = c.lock_keys();
            if keys.iter().any(|k| busy_keys.contains(k)) {
                skipped.push(c.id);
                continue;
            }
            let mut locked = true;
            for key in keys {
                if held_keys.contains(&key) {
                    continue;
                }
                if try_advisory_lock(conn, key).await? {
                    held_keys.insert(key);
                } else {
                    busy_keys.insert(key);
                    locked = false;
                    break;
                }
            }
            if !locked {
                skipped.push(c.id);
                continue;
            }
            claimed_since.add(&c);
            c.id
        } else {
            let Some(u) = ungated.pop_front() else { break };
            u.id
        };
        let row: Option<RunRow> = sqlx::query_as(CLAIM_IF_READY)
            .bind(owner)
            .bind(expires_at.0)
            .bind(now.0)
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        let Some(row) = row else {
            skipped.push(id);
            continue;
        };
        let run = Run::try_from(row)?;
        let lease = Lease { run_id: run.id, owner: owner.to_owned(), epoch: run.lease_epoch, expires_at };
        claimed.push((run, lease));
    }
    Ok(claimed)
}

/// Due waiting runs and expired leases, at most `remaining`, in claim order.
/// The second value says whether more may be left.
async fn pick_ungated(
    conn: &mut PgConnection,
    now: Micros,
    remaining: usize,
    skipped: &[String],
) -> Result<(VecDeque<Ungated>, bool)> {
    let n = i64::try_from(remaining).unwrap_or(i64::MAX);
    let mut due: Vec<Ungated> = sqlx::query_as(
        "SELECT id, priority, wake_at AS ready_at FROM runs \
         WHERE status = 'waiting' AND wake_at <= $1 AND NOT (id = ANY($3)) \
         ORDER BY priority DESC, wake_at, id LIMIT $2",
    )
    .bind(now.0)
    .bind(n)
    .bind(skipped)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let expired: Vec<Ungated> = sqlx::query_as(
        "SELECT id, priority, created_at AS ready_at FROM runs \
         WHERE status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < $1) AND NOT (id = ANY($3)) \
         ORDER BY priority DESC, created_at, id LIMIT $2",
    )
    .bind(now.0)
    .bind(n)
    .bind(skipped)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let more = due.len() == remaining || expired.len() == remaining;
    due.extend(expired);
    due.sort_by(|a, b| (Reverse(a.priority), a.ready_at, &a.id).cmp(&(Reverse(b.priority), b.ready_at, &b.id)));
    due.truncate(remaining);
    Ok((due.into(), more))
}

/// Claims run `$4` if it is ready now (`$3`): due and waiting, running
/// under an expired lease, or queued and admitted by its limits (counted
/// now, after the caller took the keys' locks). The row is locked
/// `SKIP LOCKED`: a run another transaction holds is not claimed here.
/// Binds owner, lease expiry, now, id.
const CLAIM_IF_READY: &str = concat!(
    "UPDATE runs SET status = 'running', lease_owner = $1, lease_epoch = lease_epoch + 1, \
     lease_expires_at = $2, started_at = COALESCE(started_at, $3), wake_at = NULL, waiting_on = NULL, \
     event_mark = COALESCE((SELECT MAX(id) FROM events), 0) \
     WHERE id = (SELECT q.id FROM runs AS q WHERE q.id = $4 AND ( \
        (q.status = 'waiting' AND q.wake_at <= $3) \
        OR (q.status = 'running' AND (q.lease_expires_at IS NULL OR q.lease_expires_at < $3)) \
        OR (q.status = 'queued' \
          AND (q.concurrency_key IS NULL OR q.concurrency_limit IS NULL OR \
            (SELECT COUNT(*) FROM runs AS r WHERE r.component = q.component \
              AND r.concurrency_key = q.concurrency_key AND r.status IN ('running', 'waiting')) \
            < q.concurrency_limit) \
          AND (q.rate_key IS NULL OR q.rate_limit IS NULL OR q.rate_period IS NULL OR \
            (SELECT COUNT(*) FROM runs AS r WHERE r.component = q.component \
              AND r.rate_key = q.rate_key AND r.started_at >= $3 - q.rate_period) \
            < q.rate_limit))) \
        FOR NO KEY UPDATE SKIP LOCKED) \
     RETURNING ",
    run_columns!()
);

/// Queued runs with their flow-control counts: `in_progress`, the runs of
/// the same component and concurrency key running or waiting; `started`,
/// the runs of the same component and rate key started since `$1 - period`.
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
               AND r.rate_key = q.rate_key AND r.started_at >= $1 - q.rate_period) \
           END AS started \
         FROM runs AS q WHERE q.status = 'queued'"
    };
}
pub(super) use queued_with_counts;

/// The queued runs `claim_ready` may take now, in claim order, leaving out
/// the ids in `$3`.
const QUEUED_CANDIDATES: &str = concat!(
    "SELECT * FROM (",
    queued_with_counts!(),
    " AND NOT (q.id = ANY($3))) AS c WHERE (concurrency_limit IS NULL OR in_progress < concurrency_limit) \
     AND (rate_limit IS NULL OR started < rate_limit) \
     ORDER BY priority DESC, created_at, id LIMIT $2"
);

/// A due waiting run or an expired lease.
#[derive(sqlx::FromRow)]
struct Ungated {
    id: String,
    priority: i64,
    ready_at: i64,
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

    /// The advisory locks a claim of this run must hold: one per limit.
    fn lock_keys(&self) -> Vec<i64> {
        let mut keys = Vec::new();
        if let (Some(key), Some(_)) = (&self.concurrency_key, self.concurrency_limit) {
            keys.push(lock_key(&["ferry", "concurrency", &self.component, key]));
        }
        if let (Some(key), Some(_), Some(_)) = (&self.rate_key, self.rate_limit, self.rate_period) {
            keys.push(lock_key(&["ferry", "rate", &self.component, key]));
        }
        keys
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
/// the lease is released, its epoch kept. A matching event stored since the
/// claim makes the run due at once.
///
/// With an event, the park holds the event name's advisory lock (shared)
/// while it looks for events and parks; `send_event` takes it exclusively
/// before it inserts and wakes. So either the event committed before the
/// look (and is seen), or its wake-up runs after the park committed (and
/// sees the run waiting): no wakeup is lost between hosts.
pub(super) async fn park(conn: &mut PgConnection, lease: &Lease, entries: &[Entry], park: &Park) -> Result<()> {
    if let Some(event) = &park.event {
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(event_name_lock(event))
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    fence(conn, lease).await?;
    insert_entries(conn, lease, entries).await?;
    let mut wake_at = park.wake_at;
    if let Some(event) = &park.event {
        let sent: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at) FROM events \
             WHERE name = $1 AND id > (SELECT event_mark FROM runs WHERE id = $2)",
        )
        .bind(event.as_str())
        .bind(lease.run_id.to_string())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        if let Some(sent) = sent.map(Micros) {
            wake_at = Some(wake_at.map_or(sent, |w| w.min(sent)));
        }
    }
    sqlx::query(
        "UPDATE runs SET status = 'waiting', wake_at = $1, waiting_on = $2, lease_owner = NULL, \
         lease_expires_at = NULL WHERE id = $3",
    )
    .bind(wake_at.map(|t| t.0))
    .bind(park.event.as_deref())
    .bind(lease.run_id.to_string())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Cancels a run that is not final. Bumps the epoch, so the lease of a
/// worker still executing it is fenced out.
pub(super) async fn cancel(conn: &mut PgConnection, id: &RunId, reason: &str, now: Micros) -> Result<Run> {
    let row: Option<RunRow> = sqlx::query_as(concat!(
        "UPDATE runs SET status = 'cancelled', error_kind = $1, error_message = $2, finished_at = $3, \
         lease_owner = NULL, lease_expires_at = NULL, lease_epoch = lease_epoch + 1, wake_at = NULL, \
         waiting_on = NULL \
         WHERE id = $4 AND status NOT IN ('completed', 'failed', 'cancelled') RETURNING ",
        run_columns!()
    ))
    .bind(RunErrorKind::Cancelled.as_str())
    .bind(reason)
    .bind(now.0)
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    if let Some(row) = row {
        return Run::try_from(row);
    }
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    match status {
        None => Err(Error::NotFound(format!("run {id}"))),
        Some(status) => Err(Error::Conflict(format!("run {id} is {status}; a finished run cannot be cancelled"))),
    }
}

/// Stores an event and wakes the runs waiting on its name: their `wake_at`
/// becomes `now`, or stays if it is already earlier. Returns the event and
/// how many runs wait on the name (all of them are now due).
///
/// Takes the name's lock (see [`park`]), then the events lock, which it
/// holds until the batch commits: the next event id is handed out only
/// after this one is visible, so ids are in commit order.
pub(super) async fn send_event(conn: &mut PgConnection, name: &str, data: &str, now: Micros) -> Result<(Event, u64)> {
    advisory_lock(conn, event_name_lock(name)).await?;
    advisory_lock(conn, events_lock()).await?;
    let row: EventRow = sqlx::query_as(concat!(
        "INSERT INTO events (name, data, created_at) VALUES ($1, $2, $3) RETURNING ",
        event_columns!()
    ))
    .bind(name)
    .bind(data)
    .bind(now.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    let woken = sqlx::query(
        "UPDATE runs SET wake_at = CASE WHEN wake_at IS NOT NULL AND wake_at < $1 THEN wake_at ELSE $1 END \
         WHERE status = 'waiting' AND waiting_on = $2",
    )
    .bind(now.0)
    .bind(name)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok((Event::from(row), woken))
}

/// Makes a new active version of deployment `name`, unless the active
/// version already has this component and config (then it is returned
/// with `false` and nothing is written). Holds the name's lock, so two
/// hosts deploying one name number their versions one after the other.
pub(super) async fn deploy(
    conn: &mut PgConnection,
    name: &str,
    hash: &ComponentHash,
    world: World,
    config: &DeploymentConfig,
    now: Micros,
) -> Result<(Deployment, bool)> {
    advisory_lock(conn, lock_key(&["ferry", "deployment", name])).await?;
    let active: Option<DeploymentRow> =
        sqlx::query_as(concat!("SELECT ", deployment_columns!(), " FROM deployments WHERE name = $1 AND active"))
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    // An active version that cannot be read back (a bad stored config) is
    // replaced rather than blocking every deploy of the name.
    if let Some(Ok(active)) = active.map(Deployment::try_from)
        && active.hash == *hash
        && active.world == world
        && active.config == *config
    {
        return Ok((active, false));
    }
    let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM deployments WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    let version = u32::try_from(version)
        .map_err(|_| Error::Corrupt(format!("deployment {name}: version {version} is out of range")))?;
    sqlx::query("UPDATE deployments SET active = FALSE WHERE name = $1 AND active")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO deployments (name, version, hash, world, config, active, created_at) \
         VALUES ($1, $2, $3, $4, $5, TRUE, $6)",
    )
    .bind(name)
    .bind(i64::from(version))
    .bind(hash.as_str())
    .bind(world.as_str())
    .bind(config_to_sql(config)?)
    .bind(now.0)
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_foreign_key_violation(&e) {
            Error::NotFound(format!("component {hash} (store it before deploying it)"))
        } else {
            db_err(e)
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
pub(super) async fn activate(conn: &mut PgConnection, name: &str, version: u32) -> Result<Deployment> {
    advisory_lock(conn, lock_key(&["ferry", "deployment", name])).await?;
    let row: Option<DeploymentRow> =
        sqlx::query_as(concat!("SELECT ", deployment_columns!(), " FROM deployments WHERE name = $1 AND version = $2"))
            .bind(name)
            .bind(i64::from(version))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    let Some(row) = row else {
        return Err(Error::NotFound(format!("deployment {name} version {version}")));
    };
    let deployment = Deployment::try_from(row)?;
    // Deactivate first: the partial unique index allows one active version
    // per name at every moment (it is not deferrable).
    sqlx::query("UPDATE deployments SET active = FALSE WHERE name = $1 AND active AND version <> $2")
        .bind(name)
        .bind(i64::from(version))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    sqlx::query("UPDATE deployments SET active = TRUE WHERE name = $1 AND version = $2")
        .bind(name)
        .bind(i64::from(version))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(Deployment { active: true, ..deployment })
}

/// Creates or replaces a schedule (every column takes the given value).
pub(super) async fn put_schedule(conn: &mut PgConnection, s: &Schedule) -> Result<()> {
    sqlx::query(
        "INSERT INTO schedules (name, workflow, cron, timezone, input, next_fire_at, last_fired_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (name) DO UPDATE SET workflow = excluded.workflow, cron = excluded.cron, \
           timezone = excluded.timezone, input = excluded.input, next_fire_at = excluded.next_fire_at, \
           last_fired_at = excluded.last_fired_at, created_at = excluded.created_at",
    )
    .bind(s.name.as_str())
    .bind(s.workflow.as_str())
    .bind(s.cron.as_str())
    .bind(s.timezone.as_str())
    .bind(s.input.as_str())
    .bind(s.next_fire_at.0)
    .bind(s.last_fired_at.map(|t| t.0))
    .bind(s.created_at.0)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Deletes a schedule.
pub(super) async fn delete_schedule(conn: &mut PgConnection, name: &str) -> Result<()> {
    let done =
        sqlx::query("DELETE FROM schedules WHERE name = $1").bind(name).execute(&mut *conn).await.map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("schedule {name}")));
    }
    Ok(())
}

/// Fires tick `tick` of a schedule: a compare-and-set on `next_fire_at`,
/// then the run, in this operation's savepoint (a run that cannot be
/// created leaves the tick unfired). Two hosts firing one tick: the second
/// update waits for the first, then finds `next_fire_at` moved and matches
/// nothing. An idempotency key that already has a run gives that run.
pub(super) async fn fire_schedule(
    conn: &mut PgConnection,
    name: &str,
    tick: Micros,
    next: Micros,
    run: NewRun,
) -> Result<Option<Run>> {
    let moved =
        sqlx::query("UPDATE schedules SET next_fire_at = $1, last_fired_at = $2 WHERE name = $3 AND next_fire_at = $2")
            .bind(next.0)
            .bind(tick.0)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?
            .rows_affected();
    if moved == 0 {
        return Ok(None);
    }
    Ok(Some(match create_run(conn, run).await? {
        Created::New(run) | Created::Existing(run) => run,
    }))
}

/// Checks that `lease` is still the run's current lease: the run exists,
/// its epoch is the lease's, and it is running. The row stays locked until
/// the batch commits, so the lease cannot move between check and write.
async fn fence(conn: &mut PgConnection, lease: &Lease) -> Result<()> {
    let id = &lease.run_id;
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT status, lease_epoch FROM runs WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
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

async fn insert_entries(conn: &mut PgConnection, lease: &Lease, entries: &[Entry]) -> Result<()> {
    for e in entries {
        if e.run_id != lease.run_id {
            return Err(Error::Conflict(format!(
                "journal entry {} belongs to run {}, not to {} whose lease was given",
                e.key, e.run_id, lease.run_id
            )));
        }
        sqlx::query(
            "INSERT INTO journal (run_id, seq, attempt, child, kind, name, request, request_hash, \
             response, status, error, started_at, finished_at, fuel, component) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(e.run_id.to_string())
        .bind(i64::from(e.key.seq))
        .bind(i64::from(e.key.attempt))
        .bind(i64::from(e.key.child))
        .bind(e.kind.as_str())
        .bind(e.name.as_str())
        .bind(e.request.as_str())
        .bind(e.request_hash.as_str())
        .bind(e.response.as_deref())
        .bind(e.status.as_str())
        .bind(e.error.as_deref())
        .bind(e.started_at.0)
        .bind(e.finished_at.0)
        .bind(fuel_to_sql(e.fuel))
        .bind(e.component.as_deref())
        .execute(&mut *conn)
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                let (key, run) = (e.key, e.run_id);
                Error::Conflict(format!("journal entry {key} of run {run} already exists"))
            } else {
                db_err(err)
            }
        })?;
    }
    Ok(())
}
