//! The Postgres backend of [`Store`]: one database shared by many hosts.
//!
//! What it owns: the schema in the connection's `search_path` (the
//! migrations in `migrations/postgres`, embedded in the binary and applied
//! on open under sqlx's migration lock, so hosts starting together migrate
//! once), one write connection per host and a small pool of read
//! connections.
//!
//! Invariants (those of the SQLite backend, across hosts):
//! - Exactly one connection of this host writes, owned by the writer task
//!   ([`writer`]); every mutating method goes through it, and it commits
//!   many callers' writes in one transaction (group commit) with a
//!   savepoint per operation. It survives a lost connection: the batch in
//!   flight fails with [`Error::Unavailable`] and the next batch connects
//!   again.
//! - Other hosts write at the same time, so the checks a write depends on
//!   hold row locks or advisory locks until the batch commits (see
//!   [`ops`]): fencing locks the run row before comparing epochs;
//!   `claim_ready` claims rows `SKIP LOCKED`, so two hosts never get one
//!   run, and counts flow-control limits under a per-(component, key)
//!   advisory lock; event inserts are serialised so ids are in commit order;
//!   `fire_schedule` is a compare-and-set one host wins.
//! - `Durability::Buffered` turns `synchronous_commit` off for the writer:
//!   a crash of the server may lose the last commits, never corrupt.
//! - Reads use the pool and see the last committed state. Lost pooled
//!   connections are replaced by the pool (tested before use).
//! - All SQL is static text: statements are prepared once per connection
//!   and cached.
//!
//! What it must not do: business rules, or anything that behaves
//! differently from the SQLite backend; the contract suite in
//! `store/contract.rs` runs on both.

mod ops;
mod rows;
mod stats;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use self::ops::Candidate;
use self::rows::{
    ComponentRow, DeploymentRow, EntryRow, EventRow, RunRow, ScheduleRow, db_err, deployment_columns, entry_columns,
    event_columns, run_columns, schedule_columns, sqlstate,
};
pub use self::writer::WriterStats;
use self::writer::{Done, Op, Writer};
use super::{Component, Created, Durability, Error, Lease, Outcome, Park, Pending, Result, RunFilter, Store};
use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, Event, Micros, NewRun, Run, RunId, RunStatus, Schedule, World,
};

/// Read connections per host.
const READERS: u32 = 4;

/// Runs listed when the filter asks for 0.
const DEFAULT_LIMIT: u32 = 50;

/// Most runs listed, claimed by `claim_ready` or events read at once.
const MAX_LIMIT: u32 = 1_000;

/// Greater than every run id (`run_` + 26 Crockford base-32 digits, all
/// below `~`; the id column sorts bytewise): the keyset bound when the
/// filter has no `before`.
const AFTER_ALL_IDS: &str = "run_~";

/// How long opening a connection may take (an unreachable host).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the writer waits for a lock another host holds before the
/// operation fails with [`Error::Unavailable`] (SQLite's busy timeout).
const LOCK_TIMEOUT: &str = "5s";
/// How long the writer's session may sit idle inside a transaction.
const IDLE_IN_TRANSACTION: &str = "30s";

/// The store in a Postgres database.
pub struct PgStore {
    writer: Writer,
    writer_task: tokio::task::JoinHandle<()>,
    read: PgPool,
}

impl PgStore {
    /// Opens the store at `url` (`postgres://user:password@host:port/db`,
    /// any libpq-style parameter sqlx accepts, e.g. `?options=-c
    /// search_path=ferry`). Applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL is malformed, the login or database is
    /// refused, or the schema is from a newer Ferry;
    /// [`Error::Unavailable`] when the server cannot be reached (the message
    /// names the host and port).
    pub async fn open(url: &str, durability: Durability) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("cannot open the store at {}: {e}", redact(url))))?;
        Self::open_with(options, durability).await
    }

    /// Opens the store with connect options already made.
    pub async fn open_with(options: PgConnectOptions, durability: Durability) -> Result<Self> {
        let options =
            if options.get_application_name().is_none() { options.application_name("ferry") } else { options };
        // A writer frozen mid-transaction (a host paused or cut off) must not
        // hold its row locks for ever: the server ends such a session.
        let mut write_options = options
            .clone()
            .options([("lock_timeout", LOCK_TIMEOUT), ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)]);
        if durability == Durability::Buffered {
            write_options = write_options.options([("synchronous_commit", "off")]);
        }
        let mut conn = connect(&write_options).await?;
        migrate(&mut conn, &options).await?;

        let read = PgPoolOptions::new()
            .max_connections(READERS)
            .min_connections(0)
            .acquire_timeout(CONNECT_TIMEOUT)
            .test_before_acquire(true)
            .connect_lazy_with(options);
        let (writer, writer_task) = Writer::spawn(conn, write_options);
        Ok(Self { writer, writer_task, read })
    }

    /// Counters of the group-commit writer.
    pub fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Stops accepting writes, waits for the queued ones to commit, and
    /// closes every connection.
    pub async fn close(self) {
        let Self { writer, writer_task, read } = self;
        drop(writer);
        if let Err(err) = writer_task.await {
            tracing::warn!(error = %err, "the store's writer task ended abnormally");
        }
        read.close().await;
    }

    async fn write(&self, op: Op) -> Result<Done> {
        self.writer.submit(op).await
    }
}

/// `host:port` (or the socket) and the database, for messages.
pub(super) fn describe(options: &PgConnectOptions) -> String {
    let place = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    match options.get_database() {
        Some(db) => format!("{place} (database `{db}`)"),
        None => place,
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "the given URL".to_owned(),
    }
}

/// Opens one connection, with a timeout, and says what went wrong in terms
/// of the server: `cannot connect to the Postgres server at host:port: …`.
pub(super) async fn connect(options: &PgConnectOptions) -> Result<PgConnection> {
    let server = format!("{}:{}", options.get_host(), options.get_port());
    let server = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => server,
    };
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await;
    let err = match attempt {
        Ok(Ok(conn)) => return Ok(conn),
        Ok(Err(err)) => err,
        Err(_) => {
            return Err(Error::Unavailable(format!(
                "cannot connect to the Postgres server at {server}: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    let reason = match &err {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
            std::io::ErrorKind::TimedOut => "timed out".to_owned(),
            _ => io.to_string(),
        },
        other => other.to_string(),
    };
    let message = format!("cannot connect to the Postgres server at {server}: {reason}");
    let transient = match &err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => sqlstate(&err).is_some_and(|c| c == "53300" || c.starts_with("57P")),
        _ => false,
    };
    Err(if transient { Error::Unavailable(message) } else { Error::Config(message) })
}

async fn migrate(conn: &mut PgConnection, options: &PgConnectOptions) -> Result<()> {
    // `sqlx::migrate!` lives behind sqlx's `macros` feature, which this crate
    // does not enable; the proc macro it forwards to is the same one.
    let migrator = sqlx::sqlx_macros::migrate!("../migrations/postgres");
    migrator.run(&mut *conn).await.map_err(|e| {
        let place = describe(options);
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => match db_err(inner) {
                Error::Unavailable(msg) => Error::Unavailable(format!("cannot migrate the store at {place}: {msg}")),
                other => Error::Config(format!("cannot migrate the store at {place}: {other}")),
            },
            other => Error::Config(format!("cannot migrate the store at {place}: {other}")),
        }
    })
}

fn unexpected(what: &str) -> Error {
    Error::Database(format!("the store's writer answered a {what} with the wrong kind of result").into())
}

#[async_trait]
impl Store for PgStore {
    async fn put_component(&self, component: &Component) -> Result<bool> {
        match self.write(Op::PutComponent(component.clone())).await? {
            Done::Inserted(new) => Ok(new),
            _ => Err(unexpected("put_component")),
        }
    }

    async fn component(&self, hash: &ComponentHash) -> Result<Option<Component>> {
        let row: Option<ComponentRow> =
            sqlx::query_as("SELECT hash, world, bytes, size, created_at FROM components WHERE hash = $1")
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
        sqlx::query_scalar("SELECT bytes FROM blobs WHERE hash = $1")
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
        let row: Option<RunRow> = sqlx::query_as(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"))
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
                " FROM runs WHERE id < $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(before)
            .bind(i64::from(limit)),
            (Some(status), None) => sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE status = $3 AND id < $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(before)
            .bind(i64::from(limit))
            .bind(status.as_str()),
            (None, Some(component)) => sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE component = $3 AND id < $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(before)
            .bind(i64::from(limit))
            .bind(component),
            (Some(status), Some(component)) => sqlx::query_as(concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE status = $3 AND component = $4 AND id < $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(before)
            .bind(i64::from(limit))
            .bind(status.as_str())
            .bind(component),
        };
        let rows = query.fetch_all(&self.read).await.map_err(db_err)?;
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

    async fn journal(&self, id: &RunId) -> Result<Vec<Entry>> {
        let rows: Vec<EntryRow> = sqlx::query_as(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM journal WHERE run_id = $1 ORDER BY seq, attempt, child"
        ))
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(Entry::try_from).collect()
    }

    async fn claim_ready(&self, owner: &str, ttl: Duration, now: Micros, limit: u32) -> Result<Vec<(Run, Lease)>> {
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
            " FROM events WHERE name = $1 AND id > $2 AND created_at >= $3 ORDER BY id LIMIT $4"
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
                " FROM deployments WHERE name = $1 AND version = $2"
            ))
            .bind(name)
            .bind(i64::from(version)),
            None => sqlx::query_as(concat!(
                "SELECT ",
                deployment_columns!(),
                " FROM deployments WHERE name = $1 AND active"
            ))
            .bind(name),
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
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let rows: Vec<Candidate> = sqlx::query_as(concat!(ops::queued_with_counts!(), " AND q.id = ANY($2)"))
            .bind(now.0)
            .bind(texts.as_slice())
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        // In the order asked, as the SQLite backend answers.
        let mut reasons = Vec::new();
        for id in ids {
            let text = id.to_string();
            if let Some(reason) = rows.iter().find(|c| c.id == text).and_then(queue_reason) {
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
/// The same words as the SQLite backend.
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

/// The schemas the test harness makes are named with this prefix.
#[cfg(test)]
const TEST_SCHEMA_PREFIX: &str = "ferry_test_";

/// A fresh store in a schema of its own in the database named by
/// `FERRY_TEST_POSTGRES`, for the contract suite; `None` (the case is
/// skipped) without the variable, a failure when `CI` is set.
#[cfg(test)]
pub(crate) async fn test_harness() -> Option<super::contract::Harness> {
    let url = test_url()?;
    let (store, schema) = test_store(&url).await;
    Some(super::contract::Harness::new(std::sync::Arc::new(store), schema))
}

/// The test server's URL, or `None` (skip) when it is not configured.
#[cfg(test)]
pub(crate) fn test_url() -> Option<String> {
    match std::env::var("FERRY_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but FERRY_TEST_POSTGRES is not: the Postgres contract tests must run in CI \
                 (set FERRY_TEST_POSTGRES=postgres://user@host:port/db)"
            );
            eprintln!("skipped: set FERRY_TEST_POSTGRES to run the Postgres contract tests");
            None
        }
    }
}

/// A store in a new schema, and the guard that drops the schema.
#[cfg(test)]
pub(crate) async fn test_store(url: &str) -> (PgStore, TestSchema) {
    let schema = TestSchema::create(url).await;
    let store = PgStore::open_with(schema.options(), Durability::Buffered).await.expect("open the Postgres store");
    (store, schema)
}

/// A scratch schema, dropped (with everything in it) when this is dropped,
/// also when the test panics. Schemas left by a killed test run are dropped
/// by a later run once they are an hour old.
#[cfg(test)]
pub(crate) struct TestSchema {
    url: String,
    name: String,
}

#[cfg(test)]
impl TestSchema {
    async fn create(url: &str) -> Self {
        let secs =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let name = format!("{TEST_SCHEMA_PREFIX}{secs}_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(url).await.expect("connect to FERRY_TEST_POSTGRES");
        drop_stale_schemas(&mut admin, secs).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut admin)
            .await
            .expect("create a test schema");
        let _ = admin.close().await;
        Self { url: url.to_owned(), name }
    }

    /// Connect options whose every connection works in this schema.
    pub(crate) fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("a valid FERRY_TEST_POSTGRES")
            .options([("search_path", &self.name)])
    }
}

#[cfg(test)]
async fn drop_stale_schemas(admin: &mut PgConnection, now_secs: u64) {
    let Ok(names) = sqlx::query_scalar::<_, String>("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)")
        .bind(TEST_SCHEMA_PREFIX)
        .fetch_all(&mut *admin)
        .await
    else {
        return;
    };
    for name in names {
        let created = name
            .strip_prefix(TEST_SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|secs| secs + 3600 < now_secs) {
            let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *admin).await;
        }
    }
}

#[cfg(test)]
impl Drop for TestSchema {
    fn drop(&mut self) {
        // On a thread of its own with its own runtime: the test's runtime
        // may be shutting down, and Drop cannot await.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let Ok(mut admin) = PgConnection::connect(&url).await else {
                    return;
                };
                let sql = format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE");
                if let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await {
                    eprintln!("could not drop the test schema {name}: {err}");
                }
                let _ = admin.close().await;
            });
        });
        let _ = dropper.join();
    }
}

#[cfg(test)]
mod tests;
