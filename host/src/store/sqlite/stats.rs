//! The dashboard's reads on SQLite (see [`crate::store::stats`]): run
//! counts per version, queue depths, step counts per run, the idempotency
//! key search and the step attempts of a window.
//!
//! Every statement reads through the read pool and is static text. Index
//! use, on the schema of `migrations/sqlite`:
//! - `run_steps`: the journal's primary key `(run_id, seq, attempt, child)`
//!   answers it alone (a covering range per run);
//! - `runs_with_key`: `runs_idempotency (component, idempotency_key)`, once
//!   per deployment name;
//! - `queue_depths`: the partial index of queued runs;
//! - `step_stats`: the runs' id range (ids sort by creation) and
//!   `runs_by_status` for runs in progress, then the journal's primary key;
//! - `version_run_counts` reads every run (no index holds the hash).

use futures::TryStreamExt;

use super::SqliteStore;
use super::rows::db_err;
use crate::domain::{Run, RunId, RunStatus};
use crate::store::stats::{Attempt, RunSteps, StatsWindow, StepStats, StepStatsBuilder, VersionRuns};
use crate::store::{Error, Result, RunFilter, Store};

/// A step attempt as the stats query returns it.
#[derive(sqlx::FromRow)]
struct AttemptRow {
    run_id: String,
    seq: i64,
    attempt: i64,
    name: String,
    status: String,
    error: Option<String>,
    started_at: i64,
    finished_at: i64,
}

/// Step attempts that finished in a window, of the runs created in an id
/// range or still in progress, in journal order. Only the start of a failed
/// attempt's error is read: its cause is at the front.
const WINDOW_ATTEMPTS: &str = "SELECT j.run_id, j.seq, j.attempt, j.name, j.status, \
       CASE WHEN j.status = 'error' THEN substr(j.error, 1, 300) END AS error, j.started_at, j.finished_at \
     FROM journal AS j \
     WHERE j.run_id IN (SELECT id FROM runs WHERE id >= ? AND id < ? \
                        UNION SELECT id FROM runs WHERE status IN ('running', 'waiting')) \
       AND j.child = 0 AND j.attempt >= 1 AND j.finished_at >= ? AND j.finished_at < ? \
     ORDER BY j.run_id, j.seq, j.attempt \
     LIMIT (? + 0)";

fn count(what: &str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Corrupt(format!("{what}: negative count {n}")))
}

fn status(text: &str) -> Result<RunStatus> {
    text.parse().map_err(|_| Error::Corrupt(format!("runs: bad value `{text}` in column status")))
}

impl SqliteStore {
    pub(super) async fn stats_version_run_counts(&self) -> Result<Vec<VersionRuns>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT component, component_hash, status, COUNT(*) FROM runs \
             GROUP BY component, component_hash, status ORDER BY component, component_hash, status",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(name, hash, st, n)| {
                let hash = hash
                    .parse()
                    .map_err(|_| Error::Corrupt(format!("runs: bad value `{hash}` in column component_hash")))?;
                Ok(VersionRuns { name, hash, status: status(&st)?, runs: count("runs", n)? })
            })
            .collect()
    }

    pub(super) async fn stats_queue_depths(&self) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT component, COUNT(*) FROM runs WHERE status = 'queued' GROUP BY component ORDER BY component",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(|(name, n)| Ok((name, count("runs", n)?))).collect()
    }

    pub(super) async fn stats_run_steps(&self, ids: &[RunId]) -> Result<Vec<RunSteps>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let list = serde_json::to_string(&texts).map_err(|e| Error::Database(e.into()))?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT run_id, SUM(CASE WHEN attempt = 1 THEN 1 ELSE 0 END), SUM(CASE WHEN attempt > 1 THEN 1 ELSE 0 END) \
             FROM journal WHERE run_id IN (SELECT value FROM json_each(?)) AND child = 0 AND attempt >= 1 \
             GROUP BY run_id",
        )
        .bind(list)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        let mut out = Vec::new();
        for id in ids {
            let text = id.to_string();
            if let Some((_, steps, retries)) = rows.iter().find(|(r, _, _)| *r == text) {
                out.push(RunSteps {
                    run_id: *id,
                    steps: count("journal", *steps)?,
                    retries: count("journal", *retries)?,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn stats_runs_with_key(&self, key: &str, filter: &RunFilter) -> Result<Vec<Run>> {
        let limit = match filter.limit {
            0 => super::DEFAULT_LIMIT,
            n => n.min(super::MAX_LIMIT),
        };
        let before = filter.before.map_or_else(|| super::AFTER_ALL_IDS.to_owned(), |id| id.to_string());
        let status = filter.status.map(RunStatus::as_str);
        let query = match filter.component.as_deref() {
            Some(component) => sqlx::query_scalar::<_, String>(
                "SELECT id FROM runs WHERE component = ? AND idempotency_key = ? AND id < ? \
                 AND (?4 IS NULL OR status = ?4) ORDER BY id DESC LIMIT (?5 + 0)",
            )
            .bind(component),
            None => sqlx::query_scalar(
                "SELECT id FROM runs WHERE component IN (SELECT DISTINCT name FROM deployments) \
                 AND idempotency_key = ?1 AND id < ?2 AND (?3 IS NULL OR status = ?3) ORDER BY id DESC LIMIT (?4 + 0)",
            ),
        };
        let ids = query
            .bind(key)
            .bind(before)
            .bind(status)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            let id: RunId = id.parse().map_err(|_| Error::Corrupt(format!("runs: bad value `{id}` in column id")))?;
            if let Some(run) = self.run(&id).await? {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    pub(super) async fn stats_step_stats(&self, window: &StatsWindow) -> Result<StepStats> {
        let (low, high) = window.run_id_range();
        let mut builder = StepStatsBuilder::new(*window);
        let mut rows = sqlx::query_as::<_, AttemptRow>(WINDOW_ATTEMPTS)
            .bind(low)
            .bind(high)
            .bind(window.since.0)
            .bind(window.until.0)
            .bind(i64::from(StatsWindow::MAX_ATTEMPTS) + 1)
            .fetch(&self.read);
        let mut seen: u32 = 0;
        let mut truncated = false;
        while let Some(row) = rows.try_next().await.map_err(db_err)? {
            if seen == StatsWindow::MAX_ATTEMPTS {
                truncated = true;
                break;
            }
            seen += 1;
            builder.push(Attempt {
                run_id: &row.run_id,
                seq: row.seq,
                attempt: row.attempt,
                name: &row.name,
                failed: row.status == "error",
                error: row.error.as_deref(),
                started_at: row.started_at,
                finished_at: row.finished_at,
            });
        }
        Ok(builder.finish(truncated))
    }
}
