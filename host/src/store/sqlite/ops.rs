//! The SQL of each write operation, run by the writer inside the batch
//! transaction (see [`super::writer`]).
//!
//! Each function gets the writer's connection with the batch transaction
//! open (`BEGIN IMMEDIATE`, so the write lock is held and nothing, not even
//! another process, can change a row between a check and a write) and a
//! savepoint around the operation: an `Err` returned here rolls back
//! exactly this operation's writes and leaves the rest of the batch alone.
//!
//! Fencing is check-then-write: [`fence`] reads the run's epoch and status,
//! and the writes follow only if the caller's lease is still the current
//! one. All SQL is `&'static str`, prepared once and cached by the
//! connection.

use std::time::Duration;

use sqlx::SqliteConnection;

use super::rows::{
    EventRow, RunRow, db_err, event_columns, fuel_to_sql, is_foreign_key_violation, is_unique_violation, run_columns,
};
use crate::domain::{Entry, Event, Micros, NewRun, Run, RunErrorKind, RunId, RunStatus};
use crate::store::{Component, Created, Error, Lease, Outcome, Park, Result};

/// Stores a component unless its hash is already there.
pub(super) async fn put_component(conn: &mut SqliteConnection, c: &Component) -> Result<bool> {
    let size = i64::try_from(c.bytes.len()).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "INSERT INTO components (hash, world, bytes, size, created_at) VALUES (?, ?, ?, ?, ?) \
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

/// Creates a queued run, or returns the run that already has its
/// idempotency key.
pub(super) async fn create_run(conn: &mut SqliteConnection, run: NewRun) -> Result<Created> {
    if let Some(key) = &run.idempotency_key {
        let existing: Option<RunRow> = sqlx::query_as(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE component = ? AND idempotency_key = ?"
        ))
        .bind(run.component.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
        if let Some(row) = existing {
            return Ok(Created::Existing(row.try_into()?));
        }
    }
    sqlx::query(
        "INSERT INTO runs (id, kind, component, component_hash, input, status, idempotency_key, \
         created_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(run.id.to_string())
    .bind(run.kind.as_str())
    .bind(run.component.as_str())
    .bind(run.component_hash.as_str())
    .bind(run.input.as_str())
    .bind(RunStatus::Queued.as_str())
    .bind(run.idempotency_key.as_deref())
    .bind(run.created_at.0)
    .bind(run.origin.as_deref())
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
    })?;
    Ok(Created::New(Run {
        id: run.id,
        kind: run.kind,
        component: run.component,
        component_hash: run.component_hash,
        input: run.input,
        status: RunStatus::Queued,
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
/// matches nothing, a read says why.
///
/// A waiting run is claimable whatever its `wake_at`: an explicit claim by
/// id is the caller's decision (`ferry exec`, a manual resume), and a
/// workflow resumed early replays and parks again. Only [`claim_ready`]
/// waits for `wake_at`. The claim clears `wake_at` and `waiting_on`.
pub(super) async fn claim(
    conn: &mut SqliteConnection,
    id: &RunId,
    owner: &str,
    ttl: Duration,
    now: Micros,
) -> Result<Lease> {
    let expires_at = now.plus(ttl);
    let epoch: Option<i64> = sqlx::query_scalar(
        "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1, \
         lease_expires_at = ?, started_at = COALESCE(started_at, ?), wake_at = NULL, waiting_on = NULL, \
         event_mark = COALESCE((SELECT MAX(id) FROM events), 0) \
         WHERE id = ? AND (status IN ('queued', 'waiting') \
            OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < ?))) \
         RETURNING lease_epoch",
    )
    .bind(owner)
    .bind(expires_at.0)
    .bind(now.0)
    .bind(id.to_string())
    .bind(now.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    if let Some(epoch) = epoch {
        return Ok(Lease { run_id: *id, owner: owner.to_owned(), epoch, expires_at });
    }

    let row: Option<(String, Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT status, lease_owner, lease_expires_at FROM runs WHERE id = ?")
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
pub(super) async fn heartbeat(conn: &mut SqliteConnection, lease: &Lease, ttl: Duration, now: Micros) -> Result<Lease> {
    fence(conn, lease).await?;
    let expires_at = now.plus(ttl);
    sqlx::query("UPDATE runs SET lease_expires_at = ? WHERE id = ?")
        .bind(expires_at.0)
        .bind(lease.run_id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(Lease { expires_at, ..lease.clone() })
}

/// Appends journal entries under a lease.
pub(super) async fn append(conn: &mut SqliteConnection, lease: &Lease, entries: &[Entry]) -> Result<()> {
    fence(conn, lease).await?;
    insert_entries(conn, lease, entries).await
}

/// Appends the last entries, records the outcome and releases the lease.
pub(super) async fn finish(
    conn: &mut SqliteConnection,
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
        "UPDATE runs SET status = ?, output = ?, error_kind = ?, error_message = ?, \
         finished_at = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
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

/// Claims up to `limit` ready runs, oldest first by when they became ready
/// (`wake_at` for a waiting run, `created_at` otherwise; id breaks ties).
///
/// Runs in the writer's `BEGIN IMMEDIATE` transaction, so the pick and the
/// claims are atomic: no other claim (of this process or another) can take
/// a picked run in between, and two `claim_ready` calls never share a run.
/// Each branch of the pick stops at `limit` (queued and waiting runs come
/// in order from their partial indexes, see migration 0002), so only those
/// few rows are merged and sorted.
pub(super) async fn claim_ready(
    conn: &mut SqliteConnection,
    owner: &str,
    ttl: Duration,
    now: Micros,
    limit: u32,
) -> Result<Vec<(Run, Lease)>> {
    let limit = i64::from(limit);
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM ( \
           SELECT * FROM (SELECT id, created_at AS ready_at FROM runs \
             WHERE status = 'queued' ORDER BY created_at, id LIMIT ?) AS queued \
           UNION ALL \
           SELECT * FROM (SELECT id, wake_at AS ready_at FROM runs \
             WHERE status = 'waiting' AND wake_at <= ? ORDER BY wake_at, id LIMIT ?) AS due \
           UNION ALL \
           SELECT * FROM (SELECT id, created_at AS ready_at FROM runs \
             WHERE status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < ?) \
             ORDER BY created_at, id LIMIT ?) AS expired \
         ) AS ready ORDER BY ready_at, id LIMIT ?",
    )
    .bind(limit)
    .bind(now.0)
    .bind(limit)
    .bind(now.0)
    .bind(limit)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;

    let expires_at = now.plus(ttl);
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        // Picked under the write lock a moment ago: the update matches.
        let row: RunRow = sqlx::query_as(concat!(
            "UPDATE runs SET status = 'running', lease_owner = ?, lease_epoch = lease_epoch + 1, \
             lease_expires_at = ?, started_at = COALESCE(started_at, ?), wake_at = NULL, waiting_on = NULL, \
         event_mark = COALESCE((SELECT MAX(id) FROM events), 0) \
             WHERE id = ? RETURNING ",
            run_columns!()
        ))
        .bind(owner)
        .bind(expires_at.0)
        .bind(now.0)
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
        let run = Run::try_from(row)?;
        let lease = Lease { run_id: run.id, owner: owner.to_owned(), epoch: run.lease_epoch, expires_at };
        claimed.push((run, lease));
    }
    Ok(claimed)
}

/// Appends the entries and parks the run until `wake_at` or its event;
/// the lease is released, its epoch kept (like [`finish`]). A matching
/// event stored since the claim makes the run due at once (see below).
pub(super) async fn park(conn: &mut SqliteConnection, lease: &Lease, entries: &[Entry], park: &Park) -> Result<()> {
    fence(conn, lease).await?;
    insert_entries(conn, lease, entries).await?;
    // An event of that name stored since the claim may have come after the
    // worker last looked: then the run is due at once (at the event's time)
    // rather than waiting for an event that was already sent. At worst the
    // run replays once for an event it had already taken.
    let mut wake_at = park.wake_at;
    if let Some(event) = &park.event {
        let sent: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at) FROM events WHERE name = ? AND id > (SELECT event_mark FROM runs WHERE id = ?)",
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
        "UPDATE runs SET status = 'waiting', wake_at = ?, waiting_on = ?, lease_owner = NULL, \
         lease_expires_at = NULL WHERE id = ?",
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
pub(super) async fn cancel(conn: &mut SqliteConnection, id: &RunId, reason: &str, now: Micros) -> Result<Run> {
    let row: Option<RunRow> = sqlx::query_as(concat!(
        "UPDATE runs SET status = 'cancelled', error_kind = ?, error_message = ?, finished_at = ?, \
         lease_owner = NULL, lease_expires_at = NULL, lease_epoch = lease_epoch + 1, wake_at = NULL, \
         waiting_on = NULL \
         WHERE id = ? AND status NOT IN ('completed', 'failed', 'cancelled') RETURNING ",
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
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = ?")
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
pub(super) async fn send_event(
    conn: &mut SqliteConnection,
    name: &str,
    data: &str,
    now: Micros,
) -> Result<(Event, u64)> {
    let row: EventRow = sqlx::query_as(concat!(
        "INSERT INTO events (name, data, created_at) VALUES (?, ?, ?) RETURNING ",
        event_columns!()
    ))
    .bind(name)
    .bind(data)
    .bind(now.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    let woken = sqlx::query(
        "UPDATE runs SET wake_at = CASE WHEN wake_at IS NOT NULL AND wake_at < ? THEN wake_at ELSE ? END \
         WHERE status = 'waiting' AND waiting_on = ?",
    )
    .bind(now.0)
    .bind(now.0)
    .bind(name)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok((Event::from(row), woken))
}

/// Checks that `lease` is still the run's current lease: the run exists,
/// its epoch is the lease's, and it is running (not finished and released).
async fn fence(conn: &mut SqliteConnection, lease: &Lease) -> Result<()> {
    let id = &lease.run_id;
    let row: Option<(String, i64)> = sqlx::query_as("SELECT status, lease_epoch FROM runs WHERE id = ?")
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

async fn insert_entries(conn: &mut SqliteConnection, lease: &Lease, entries: &[Entry]) -> Result<()> {
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
