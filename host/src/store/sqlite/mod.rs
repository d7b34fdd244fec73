//! The SQLite backend of [`Store`]: one file, embedded, the default.
//!
//! What it owns: the SQLite file (WAL mode), its schema (the migrations in
//! `migrations/sqlite`, embedded in the binary and applied on open), one
//! write connection and a small pool of read connections.
//!
//! Invariants:
//! - Exactly one connection writes, owned by the writer task
//!   ([`writer`]). Every mutating method goes through it. SQLite allows one
//!   writer at a time anyway; one owner turns contention into a queue and
//!   lets the writer commit many callers' writes in one transaction (group
//!   commit): one fsync per batch instead of one per step.
//! - Writes made under a lease are fenced inside that transaction: the
//!   run's current epoch is checked before anything is written, under the
//!   write lock, so a stale lease writes nothing ([`Error::LeaseLost`]).
//!   Each operation runs under its own savepoint, so one failing operation
//!   never takes the rest of its batch down.
//! - Claims (`claim`, `claim_ready`) and cancels are writes too: picking
//!   ready runs and claiming them happen in the writer's `BEGIN IMMEDIATE`
//!   transaction, so two callers (tasks or processes) never get one run.
//!   The flow-control counts (concurrency and rate limits) are read in that
//!   same transaction, so two batches never both take a key's last slot.
//! - Deployments keep at most one active version per name (a partial
//!   unique index); deploy and activate deactivate before they activate.
//! - Reads use the read pool and see the last committed state (WAL lets
//!   them run while the writer commits).
//! - All SQL is static text: statements are prepared once per connection
//!   and cached.
//!
//! What it must not do: business rules (retries, scheduling) or anything
//! Postgres-specific. Behaviour shared with other backends is pinned by
//! the contract suite in `store/contract.rs`.

mod ops;
mod rows;
mod stats;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

use self::ops::Candidate;
use self::rows::{
    ComponentRow, DeploymentRow, EntryRow, EventRow, RunRow, ScheduleRow, db_err, deployment_columns, entry_columns,
    event_columns, is_busy, run_columns, schedule_columns, sql_err,
};
pub use self::writer::WriterStats;
use self::writer::{Done, Op, Writer};
use super::{Component, Created, Durability, Error, Lease, Outcome, Park, Pending, Result, RunFilter, Store};
use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, Event, Micros, NewRun, Run, RunId, RunStatus, Schedule, World,
};

/// How long a statement waits for a lock held by another process before it
/// fails with [`Error::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read connections. Reads are short; a few cover the dashboard, the CLI
/// and the workers' replays.
const READERS: u32 = 4;

/// Runs listed when the filter asks for 0.
const DEFAULT_LIMIT: u32 = 50;

/// Most runs listed, claimed by `claim_ready` or events read at once.
const MAX_LIMIT: u32 = 1_000;

/// Greater than every run id (`run_` + 26 Crockford base-32 digits, all
/// below `~`): the keyset bound when the filter has no `before`.
const AFTER_ALL_IDS: &str = "run_~";

/// The store in a SQLite file.
pub struct SqliteStore {
    writer: Writer,
    writer_thread: std::thread::JoinHandle<()>,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the store at `path_or_url`: a file
    /// path (`./ferry.db`) or a SQLite URL (`sqlite://ferry.db`,
    /// `sqlite:ferry.db?mode=rwc`). Applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Config`] when the location cannot hold a store (a missing
    /// folder, no permission, not a SQLite file, an in-memory URL, a schema
    /// from a newer Ferry); [`Error::Unavailable`] when the file is locked
    /// by another process past the busy timeout.
    pub async fn open(path_or_url: &str, durability: Durability) -> Result<Self> {
        let base = connect_options(path_or_url)?;
        let synchronous = match durability {
            Durability::Fsync => SqliteSynchronous::Full,
            Durability::Buffered => SqliteSynchronous::Normal,
        };
        let write_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut conn = SqliteConnection::connect_with(&write_options).await.map_err(|e| open_err(path_or_url, e))?;
        migrate(&mut conn, path_or_url).await?;
        conn.close().await.map_err(|e| open_err(path_or_url, e))?;
        // The writer's own connection, on the file just created and migrated.
        let path = base.get_filename().to_owned();
        let writer_conn = tokio::task::spawn_blocking(move || open_writer(&path, durability))
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open the store at {path_or_url}: {e}")))?
            .map_err(|e| match sql_err(e) {
                Error::Unavailable(m) => Error::Unavailable(format!("cannot open the store at {path_or_url}: {m}")),
                other => Error::Config(format!("cannot open the store at {path_or_url}: {other}")),
            })?;

        // Readers open the file the writer just created and migrated.
        let read_options =
            base.read_only(true).busy_timeout(BUSY_TIMEOUT).foreign_keys(true).pragma("temp_store", "MEMORY");
        // No ping before each use: a connection to a local file does not go
        // stale, and through sqlx a ping is a round trip to the
        // connection's thread, doubling the cost of every read.
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            .test_before_acquire(false)
            .connect_with(read_options)
            .await
            .map_err(|e| open_err(path_or_url, e))?;

        let (writer, writer_thread) = Writer::spawn(writer_conn, durability)
            .map_err(|e| Error::Unavailable(format!("cannot start the store's writer thread: {e}")))?;
        Ok(Self { writer, writer_thread, read })
    }

    /// Counters of the group-commit writer.
    pub fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Stops accepting writes, waits for the queued ones to commit, and
    /// closes every connection.
    pub async fn close(self) {
        let Self { writer, writer_thread, read } = self;
        drop(writer);
        match tokio::task::spawn_blocking(move || writer_thread.join()).await {
            Ok(Ok(())) => {}
            _ => tracing::warn!("the store's writer thread ended abnormally"),
        }
        read.close().await;
    }

    async fn write(&self, op: Op) -> Result<Done> {
        self.writer.submit(op).await
    }
}

/// Opens the writer's connection to the store file `path` (which exists and
/// is migrated, already in WAL mode, which is a property of the file): the
/// durability's `synchronous`, the busy timeout and foreign keys, as the
/// sqlx connections have them.
fn open_writer(path: &std::path::Path, durability: Durability) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let synchronous = match durability {
        Durability::Fsync => "FULL",
        Durability::Buffered => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Sorts and compound queries (the claim's) work in memory: with temp
    // files, every claim opened and removed a few, ~100 µs of a quiet
    // host's run latency. The store's queries are bounded by their LIMITs.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Parses a path or a `sqlite:` URL into connect options.
fn connect_options(path_or_url: &str) -> Result<SqliteConnectOptions> {
    if path_or_url.contains(":memory:") || path_or_url.contains("mode=memory") {
        return Err(Error::Config(format!(
            "cannot open the store at {path_or_url}: an in-memory database is not supported \
             (the writer and the readers need to share one file); give a file path"
        )));
    }
    if path_or_url.trim().is_empty() {
        return Err(Error::Config("cannot open the store: the database path is empty".into()));
    }
    if path_or_url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(path_or_url)
            .map_err(|e| Error::Config(format!("cannot open the store at {path_or_url}: {e}")))
    } else {
        Ok(SqliteConnectOptions::new().filename(path_or_url))
    }
}

fn open_err(path: &str, err: sqlx::Error) -> Error {
    if is_busy(&err) {
        Error::Unavailable(format!("cannot open the store at {path}: {err}"))
    } else {
        Error::Config(format!("cannot open the store at {path}: {err}"))
    }
}

async fn migrate(conn: &mut SqliteConnection, path: &str) -> Result<()> {
    // `sqlx::migrate!` lives behind sqlx's `macros` feature, which this crate
    // does not enable; the proc macro it forwards to is the same one.
    let migrator = sqlx::sqlx_macros::migrate!("../migrations/sqlite");
    migrator.run(&mut *conn).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(inner) if is_busy(&inner) => {
            Error::Unavailable(format!("cannot migrate the store at {path}: {inner}"))
        }
        other => Error::Config(format!("cannot migrate the store at {path}: {other}")),
    })
}

fn unexpected(what: &str) -> Error {
    Error::Database(format!("the store's writer answered a {what} with the wrong kind of result").into())
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_component(&self, component: &Component) -> Result<bool> {
        match self.write(Op::PutComponent(component.clone())).await? {
            Done::Inserted(new) => Ok(new),
            _ => Err(unexpected("put_component")),
        }
    }

    async fn component(&self, hash: &ComponentHash) -> Result<Option<Component>> {
        let row: Option<ComponentRow> =
            sqlx::query_as("SELECT hash, world, bytes, size, created_at FROM components WHERE hash = ?")
                .bind(hash.as_str())
                .fetch_optional(&self.read)
                .await
                .map_err(db_err)?;
        row.map(Component::try_from).transpose()
    }

    async fn put_blob(&self, hash: &str, bytes: &[u8], now: Micros) -> Result<bool> {
        let op = Op::PutBlob { hash: hash.to_owned(), bytes: bytes.to_vec(), now };
        match self.write(op).await? {
            Done::Inserted(new) => Ok(new),
            _ => Err(unexpected("put_blob")),
        }
    }

    async fn blob(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT bytes FROM blobs WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)
    }

    async fn take_rate(&self, key: &str, limit: u32, period: Duration, now: Micros) -> Result<Option<Micros>> {
        let period_us = i64::try_from(period.as_micros()).unwrap_or(i64::MAX).max(1);
        match self.write(Op::TakeRate { key: key.to_owned(), limit, period_us, now }).await? {
            Done::Rate(at) => Ok(at),
            _ => Err(unexpected("take_rate")),
        }
    }

    async fn create_run(&self, run: NewRun) -> Result<Created> {
        match self.write(Op::CreateRun(run)).await? {
            Done::Created(created) => Ok(*created),
            _ => Err(unexpected("create_run")),
        }
    }

    async fn create_and_claim(
        &self,
        run: NewRun,
        owner: &str,
        ttl: Duration,
        now: Micros,
    ) -> Result<(Created, Option<(Run, Lease)>)> {
        match self.write(Op::CreateAndClaim { run: Box::new(run), owner: owner.to_owned(), ttl, now }).await? {
            Done::CreatedClaimed(created, claimed) => Ok((*created, claimed.map(|c| *c))),
            _ => Err(unexpected("create_and_claim")),
        }
    }

    async fn create_and_claim_started(
        &self,
        run: NewRun,
        owner: &str,
        ttl: Duration,
        now: Micros,
    ) -> Result<(Created, Option<(Run, Lease)>, Pending)> {
        let op = Op::CreateAndClaim { run: Box::new(run), owner: owner.to_owned(), ttl, now };
        let (ran, committed) = self.writer.send_early(op).await?;
        match super::answered_before_commit(ran.answer(), committed.answer()).await? {
            (Done::CreatedClaimed(created, claimed), commit) => Ok((*created, claimed.map(|c| *c), commit)),
            _ => Err(unexpected("create_and_claim")),
        }
    }

    async fn run(&self, id: &RunId) -> Result<Option<Run>> {
        let row: Option<RunRow> = sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.map(Run::try_from).transpose()
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let limit = match filter.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let before = filter.before.map_or_else(|| AFTER_ALL_IDS.to_owned(), |id| id.to_string());
        // One static statement per filter shape, so each can use its index.
        let query = match (filter.status, filter.component.as_deref()) {
            (None, None) => sqlx::query_as::<_, RunRow>(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE id < ? ORDER BY id DESC LIMIT (? + 0)"
            )),
            (Some(status), None) => sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE status = ? AND id < ? ORDER BY id DESC LIMIT (? + 0)"
            ))
            .bind(status.as_str()),
            (None, Some(component)) => sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE component = ? AND id < ? ORDER BY id DESC LIMIT (? + 0)"
            ))
            .bind(component),
            (Some(status), Some(component)) => sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE status = ? AND component = ? AND id < ? ORDER BY id DESC LIMIT (? + 0)"
            ))
            .bind(status.as_str())
            .bind(component),
        };
        let rows = query.bind(before).bind(i64::from(limit)).fetch_all(&self.read).await.map_err(db_err)?;
        rows.into_iter().map(Run::try_from).collect()
    }

    async fn claim(&self, id: &RunId, owner: &str, ttl: Duration, now: Micros) -> Result<Lease> {
        match self.write(Op::Claim { id: *id, owner: owner.to_owned(), ttl, now }).await? {
            Done::Lease(lease) => Ok(lease),
            _ => Err(unexpected("claim")),
        }
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration, now: Micros) -> Result<Lease> {
        match self.write(Op::Heartbeat { lease: lease.clone(), ttl, now }).await? {
            Done::Lease(lease) => Ok(lease),
            _ => Err(unexpected("heartbeat")),
        }
    }

    async fn append(&self, lease: &Lease, entries: Vec<Entry>) -> Result<()> {
        match self.write(Op::Append { lease: lease.clone(), entries }).await? {
            Done::Written => Ok(()),
            _ => Err(unexpected("append")),
        }
    }

    async fn append_started(&self, lease: &Lease, entries: Vec<Entry>) -> Result<Pending> {
        let sent = self.writer.send(Op::Append { lease: lease.clone(), entries }).await?;
        Ok(Box::pin(async move {
            match sent.answer().await? {
                Done::Written => Ok(()),
                _ => Err(unexpected("append")),
            }
        }))
    }

    async fn finish(&self, lease: &Lease, entries: Vec<Entry>, outcome: Outcome, now: Micros) -> Result<()> {
        match self.write(Op::Finish { lease: lease.clone(), entries, outcome, now }).await? {
            Done::Written => Ok(()),
            _ => Err(unexpected("finish")),
        }
    }

    fn synced_commits(&self) -> Option<u64> {
        Some(self.writer_stats().synced())
    }

    async fn journal(&self, id: &RunId) -> Result<Vec<Entry>> {
        let rows: Vec<EntryRow> = sqlx::query_as(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM journal WHERE run_id = ? ORDER BY seq, attempt, child"
        ))
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(Entry::try_from).collect()
    }

    async fn claim_ready(&self, owner: &str, ttl: Duration, now: Micros, limit: u32) -> Result<Vec<(Run, Lease)>> {
        // At most `limit`: none asked, nothing to do. The cap bounds how long
        // one claim holds the write lock.
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = limit.min(MAX_LIMIT);
        match self.write(Op::ClaimReady { owner: owner.to_owned(), ttl, now, limit }).await? {
            Done::Claimed(claimed) => Ok(claimed),
            _ => Err(unexpected("claim_ready")),
        }
    }

    async fn park(&self, lease: &Lease, entries: Vec<Entry>, park: Park) -> Result<()> {
        match self.write(Op::Park { lease: lease.clone(), entries, park }).await? {
            Done::Written => Ok(()),
            _ => Err(unexpected("park")),
        }
    }

    async fn cancel(&self, id: &RunId, reason: &str, now: Micros) -> Result<Run> {
        match self.write(Op::Cancel { id: *id, reason: reason.to_owned(), now }).await? {
            Done::Run(run) => Ok(*run),
            _ => Err(unexpected("cancel")),
        }
    }

    async fn send_event(&self, name: &str, data: &str, now: Micros) -> Result<(Event, u64)> {
        match self.write(Op::SendEvent { name: name.to_owned(), data: data.to_owned(), now }).await? {
            Done::Event(event, woken) => Ok((event, woken)),
            _ => Err(unexpected("send_event")),
        }
    }

    async fn events(&self, name: &str, since: Micros, after_id: i64, limit: u32) -> Result<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<EventRow> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE name = ? AND id > ? AND created_at >= ? ORDER BY id LIMIT (? + 0)"
        ))
        .bind(name)
        .bind(after_id)
        .bind(since.0)
        .bind(i64::from(limit.min(MAX_LIMIT)))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Event::from).collect())
    }

    async fn next_wake(&self) -> Result<Option<Micros>> {
        let next: Option<i64> = sqlx::query_scalar("SELECT MIN(wake_at) FROM runs WHERE status = 'waiting'")
            .fetch_one(&self.read)
            .await
            .map_err(db_err)?;
        Ok(next.map(Micros))
    }

    async fn deploy(
        &self,
        name: &str,
        hash: &ComponentHash,
        world: World,
        config: &DeploymentConfig,
        now: Micros,
    ) -> Result<(Deployment, bool)> {
        let op = Op::Deploy { name: name.to_owned(), hash: hash.clone(), world, config: Box::new(config.clone()), now };
        match self.write(op).await? {
            Done::Deployment(deployment, created) => Ok((*deployment, created)),
            _ => Err(unexpected("deploy")),
        }
    }

    async fn deployment(&self, name: &str, version: Option<u32>) -> Result<Option<Deployment>> {
        let query = match version {
            Some(version) => sqlx::query_as::<_, DeploymentRow>(concat!(
                "SELECT ",
                deployment_columns!(),
                " FROM deployments WHERE name = ? AND version = ?"
            ))
            .bind(name)
            .bind(i64::from(version)),
            None => {
                sqlx::query_as(concat!("SELECT ", deployment_columns!(), " FROM deployments WHERE name = ? AND active"))
                    .bind(name)
            }
        };
        let row = query.fetch_optional(&self.read).await.map_err(db_err)?;
        row.map(Deployment::try_from).transpose()
    }

    async fn deployments(&self) -> Result<Vec<Deployment>> {
        let rows: Vec<DeploymentRow> =
            sqlx::query_as(concat!("SELECT ", deployment_columns!(), " FROM deployments ORDER BY name, version DESC"))
                .fetch_all(&self.read)
                .await
                .map_err(db_err)?;
        rows.into_iter().map(Deployment::try_from).collect()
    }

    async fn activate(&self, name: &str, version: u32) -> Result<Deployment> {
        match self.write(Op::Activate { name: name.to_owned(), version }).await? {
            Done::Deployment(deployment, _) => Ok(*deployment),
            _ => Err(unexpected("activate")),
        }
    }

    async fn put_schedule(&self, schedule: &Schedule) -> Result<()> {
        match self.write(Op::PutSchedule(Box::new(schedule.clone()))).await? {
            Done::Written => Ok(()),
            _ => Err(unexpected("put_schedule")),
        }
    }

    async fn schedules(&self) -> Result<Vec<Schedule>> {
        let rows: Vec<ScheduleRow> =
            sqlx::query_as(concat!("SELECT ", schedule_columns!(), " FROM schedules ORDER BY name"))
                .fetch_all(&self.read)
                .await
                .map_err(db_err)?;
        Ok(rows.into_iter().map(Schedule::from).collect())
    }

    async fn delete_schedule(&self, name: &str) -> Result<()> {
        match self.write(Op::DeleteSchedule(name.to_owned())).await? {
            Done::Written => Ok(()),
            _ => Err(unexpected("delete_schedule")),
        }
    }

    async fn fire_schedule(&self, name: &str, tick: Micros, next: Micros, run: NewRun) -> Result<Option<Run>> {
        let op = Op::FireSchedule { name: name.to_owned(), tick, next, run: Box::new(run) };
        match self.write(op).await? {
            Done::Fired(run) => Ok(run.map(|r| *r)),
            _ => Err(unexpected("fire_schedule")),
        }
    }

    async fn unfinished_runs(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running', 'waiting')")
            .fetch_one(&self.read)
            .await
            .map_err(db_err)?;
        u64::try_from(n).map_err(|_| Error::Corrupt(format!("runs: a count of {n} unfinished runs")))
    }

    async fn run_counts(&self) -> Result<Vec<(RunStatus, u64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")
                .fetch_all(&self.read)
                .await
                .map_err(db_err)?;
        rows.into_iter()
            .map(|(status, n)| {
                let bad = || Error::Corrupt(format!("runs: bad value `{status}` in column status"));
                Ok((status.parse().map_err(|_| bad())?, u64::try_from(n).map_err(|_| bad())?))
            })
            .collect()
    }

    async fn queue_reasons(&self, ids: &[RunId], now: Micros) -> Result<Vec<(RunId, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.read.acquire().await.map_err(db_err)?;
        let mut reasons = Vec::new();
        for id in ids {
            let row: Option<Candidate> = sqlx::query_as(concat!(ops::queued_with_counts!(), " AND q.id = ?"))
                .bind(now.0)
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err)?;
            if let Some(reason) = row.as_ref().and_then(queue_reason) {
                reasons.push((*id, reason));
            }
        }
        Ok(reasons)
    }

    async fn version_run_counts(&self) -> Result<Vec<super::stats::VersionRuns>> {
        self.stats_version_run_counts().await
    }

    async fn queue_depths(&self) -> Result<Vec<(String, u64)>> {
        self.stats_queue_depths().await
    }

    async fn run_steps(&self, ids: &[RunId]) -> Result<Vec<super::stats::RunSteps>> {
        self.stats_run_steps(ids).await
    }

    async fn runs_with_key(&self, key: &str, filter: &RunFilter) -> Result<Vec<Run>> {
        self.stats_runs_with_key(key, filter).await
    }

    async fn step_stats(&self, window: &super::stats::StatsWindow) -> Result<super::stats::StepStats> {
        self.stats_step_stats(window).await
    }
}

/// Why a queued run is held back, if it is: every limit it has reached.
fn queue_reason(c: &Candidate) -> Option<String> {
    let for_key = |key: &str| if key.is_empty() { String::new() } else { format!(" for key `{key}`") };
    let mut reasons = Vec::new();
    if let (Some(key), Some(limit)) = (&c.concurrency_key, c.concurrency_limit)
        && c.in_progress >= limit
    {
        reasons.push(format!("concurrency limit {limit} reached{} ({} in progress)", for_key(key), c.in_progress));
    }
    if let (Some(key), Some(limit), Some(period)) = (&c.rate_key, c.rate_limit, c.rate_period)
        && c.started >= limit
    {
        reasons.push(format!(
            "rate limit {limit} per {} reached{} ({} started)",
            show_period(period),
            for_key(key),
            c.started
        ));
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// A rate period for people: `60s`, `1500ms`, `10µs`.
fn show_period(micros: i64) -> String {
    if micros % 1_000_000 == 0 {
        format!("{}s", micros / 1_000_000)
    } else if micros % 1_000 == 0 {
        format!("{}ms", micros / 1_000)
    } else {
        format!("{micros}µs")
    }
}

/// A fresh store in a temporary folder, for the contract suite.
#[cfg(test)]
pub(crate) async fn test_harness() -> Option<super::contract::Harness> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("ferry.db");
    let path = path.to_str().expect("a UTF-8 temporary path").to_owned();
    let store = SqliteStore::open(&path, Durability::Buffered).await.expect("open the store");
    Some(super::contract::Harness::new(std::sync::Arc::new(store), dir))
}

#[cfg(test)]
mod tests;
