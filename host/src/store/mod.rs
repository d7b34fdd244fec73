//! Durable state: components, runs, leases and journals.
//!
//! [`Store`] is the one contract every backend implements with the same
//! behaviour: SQLite (embedded, the default) now, Postgres (many hosts)
//! later. The engine and the scheduler see only this trait and the domain
//! types; SQL never leaves a backend module.
//!
//! Invariants every backend keeps:
//! - Journal entries are append-only; an entry, once written, never changes.
//! - Every journal write and every run transition made by a worker carries
//!   the [`Lease`] it holds. A write whose lease epoch is no longer the run's
//!   current epoch writes nothing and fails with [`Error::LeaseLost`]
//!   (fencing), so a stalled worker cannot write after its run moved on.
//! - Journal writes of one process go through one writer that batches
//!   concurrent commits into one transaction (group commit).
//! - A run's idempotency key is unique per component: creating a second run
//!   with the same key returns the first.

pub mod postgres;
pub mod sqlite;
pub mod stats;

#[cfg(test)]
pub(crate) mod contract;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, Event, Micros, NewRun, Run, RunError, RunId, RunStatus,
    Schedule, World,
};

/// Opens the store at `url`: a Postgres URL (`postgres://…` or
/// `postgresql://…`) opens [`postgres::PgStore`], anything else (a file
/// path, a `sqlite:` URL) opens [`sqlite::SqliteStore`].
///
/// # Errors
/// Those of the backend's `open`.
pub async fn open(url: &str, durability: Durability) -> Result<Arc<dyn Store>> {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url.trim_start(), durability).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::open(url, durability).await?))
    }
}

/// What went wrong in the store, sorted by what the caller can do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The caller's lease on the run is gone: another worker claimed it, or
    /// it expired. Nothing was written; stop working on the run.
    #[error("lease on {run_id} lost: it is at epoch {current}, this worker holds epoch {held}")]
    LeaseLost { run_id: RunId, held: i64, current: i64 },
    /// The write contradicts what is stored (a journal entry that already
    /// exists, a transition from a final state).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or is busy; retrying may help.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (a bad value in a column).
    #[error("corrupt data in the store: {0}")]
    Corrupt(String),
    /// The database URL or configuration is wrong; fix it and start again.
    #[error("{0}")]
    Config(String),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A write handed to the store and not yet answered: resolves to its result
/// once it is committed (durable, under the store's durability). See
/// [`Store::append_started`].
pub type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'static>>;

/// For a backend whose writer answers an operation once it ran, before its
/// batch commits (`ran`), and again once it committed (`committed`): the
/// first answer, with the commit as a [`Pending`]. An operation that failed
/// gives no first answer; its error is the commit's.
pub(crate) async fn answered_before_commit<D: Send + 'static>(
    ran: impl std::future::Future<Output = Result<D>>,
    committed: impl std::future::Future<Output = Result<D>> + Send + 'static,
) -> Result<(D, Pending)> {
    let commit: Pending = Box::pin(async move { committed.await.map(drop) });
    match ran.await {
        Ok(done) => Ok((done, commit)),
        Err(_) => {
            Err(commit.await.err().unwrap_or_else(|| Error::Unavailable("the store's writer gave no answer".into())))
        }
    }
}

/// How hard the store works to keep a commit through a power cut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Every commit group is fsynced before it is acknowledged (default).
    #[default]
    Fsync,
    /// Commits reach the OS; a crash of the process loses nothing, a power
    /// cut may lose the last moments.
    Buffered,
}

/// A stored component: its bytes and the world it implements.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub hash: ComponentHash,
    pub world: World,
    pub bytes: Vec<u8>,
    pub created_at: Micros,
}

/// A worker's claim on a run. Every write the worker makes for the run
/// carries it; see the module docs on fencing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub run_id: RunId,
    pub owner: String,
    pub epoch: i64,
    pub expires_at: Micros,
}

/// The result of [`Store::create_run`].
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    /// A new run was created.
    New(Run),
    /// A run with the same idempotency key already existed; it is returned
    /// unchanged and nothing was created.
    Existing(Run),
}

impl Created {
    pub fn run(&self) -> &Run {
        match self {
            Self::New(r) | Self::Existing(r) => r,
        }
    }
}

/// How a run ended, as a worker reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Completed { output: String },
    Failed { error: RunError },
    Cancelled,
}

/// How a run is parked by [`Store::park`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Park {
    /// When it wakes by itself; none: only an event wakes it.
    pub wake_at: Option<Micros>,
    /// The event name that wakes it early.
    pub event: Option<String>,
}

/// Which runs to list. Runs come newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub component: Option<String>,
    /// Only runs created before this one (keyset pagination).
    pub before: Option<RunId>,
    /// At most this many (the backend caps it at 1,000).
    pub limit: u32,
}

/// The store contract. See the module docs for the invariants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a component by hash. Returns false if it was already there
    /// (same bytes, same hash: nothing changes).
    async fn put_component(&self, component: &Component) -> Result<bool>;

    /// The component with this hash, bytes included.
    async fn component(&self, hash: &ComponentHash) -> Result<Option<Component>>;

    /// Stores `bytes` as a blob under `hash`, the sha256 of the bytes in
    /// lower-case hex (the caller computes it; the store trusts it). Returns
    /// false if it was already there. Not fenced by any lease: a blob is
    /// immutable and means the same to every run.
    async fn put_blob(&self, hash: &str, bytes: &[u8], now: Micros) -> Result<bool>;

    /// The bytes of the blob stored under `hash`.
    async fn blob(&self, hash: &str) -> Result<Option<Vec<u8>>>;

    /// Takes one start from the rate limit `key`, which allows `limit`
    /// starts per `period` (a sliding window): records the start and
    /// returns `None` when the window has room; otherwise records nothing
    /// and returns when a start leaves the window. Holds across hosts.
    async fn take_rate(&self, key: &str, limit: u32, period: Duration, now: Micros) -> Result<Option<Micros>>;

    /// Creates a queued run, or returns the existing run with the same
    /// component and idempotency key.
    async fn create_run(&self, run: NewRun) -> Result<Created>;

    /// Creates a run as [`Store::create_run`] does and, in the same
    /// transaction, claims it (as [`Store::claim`] would) if it is the run
    /// [`Store::claim_ready`] would take next: nothing older or more urgent
    /// is ready and its flow control admits it. Otherwise, and when the key
    /// found an existing run, nothing is claimed. For a process that creates
    /// a run and has a slot free to execute it: one commit instead of two,
    /// and no one has to look for the new run before it starts.
    async fn create_and_claim(
        &self,
        run: NewRun,
        owner: &str,
        ttl: Duration,
        now: Micros,
    ) -> Result<(Created, Option<(Run, Lease)>)>;

    /// [`Store::create_and_claim`], answered as soon as the run is created
    /// and claimed inside the store's write transaction, with a future for
    /// that transaction's commit. The caller may start executing the run
    /// meanwhile (its later writes commit after this one, and fail if this
    /// one did), but must await the commit before anyone outside learns the
    /// run exists. A store without a write queue answers after the commit.
    async fn create_and_claim_started(
        &self,
        run: NewRun,
        owner: &str,
        ttl: Duration,
        now: Micros,
    ) -> Result<(Created, Option<(Run, Lease)>, Pending)> {
        let (created, claimed) = self.create_and_claim(run, owner, ttl, now).await?;
        Ok((created, claimed, Box::pin(std::future::ready(Ok(())))))
    }

    /// The run with this id.
    async fn run(&self, id: &RunId) -> Result<Option<Run>>;

    /// Runs matching the filter, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;

    /// Claims a run that is queued, waiting, or running under an expired
    /// lease: bumps its epoch, sets owner and expiry, marks it running.
    /// Fails with `Conflict` if the run is final or leased by someone else.
    async fn claim(&self, id: &RunId, owner: &str, ttl: Duration, now: Micros) -> Result<Lease>;

    /// Extends a lease. Fails with `LeaseLost` if the epoch moved.
    async fn heartbeat(&self, lease: &Lease, ttl: Duration, now: Micros) -> Result<Lease>;

    /// Appends entries to the run's journal, fenced by the lease, through
    /// the group-commit writer: returns once they are durable.
    async fn append(&self, lease: &Lease, entries: Vec<Entry>) -> Result<()>;

    /// [`Store::append`], started: the entries are on their way to the
    /// writer (in order with every later write of this store) when this
    /// returns, and the returned future says when they are durable and
    /// whether the append succeeded. The caller may compute meanwhile; it
    /// must await the future before anything that depends on the entries
    /// being durable. A store without a write queue appends here and
    /// returns a finished future.
    async fn append_started(&self, lease: &Lease, entries: Vec<Entry>) -> Result<Pending> {
        self.append(lease, entries).await?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    /// Appends the last entries and records the outcome in one fenced
    /// transaction; the lease is released.
    async fn finish(&self, lease: &Lease, entries: Vec<Entry>, outcome: Outcome, now: Micros) -> Result<()>;

    /// The run's journal in journal order.
    async fn journal(&self, id: &RunId) -> Result<Vec<Entry>>;

    /// Commits this store has made with an fsync of their own since it was
    /// opened, where it knows (SQLite's writer); for the benchmark's
    /// accounting of what a step waits for.
    fn synced_commits(&self) -> Option<u64> {
        None
    }

    /// Claims up to `limit` runs that are ready, oldest first: queued runs,
    /// waiting runs whose `wake_at` has come, and running runs whose lease
    /// expired (a dead worker's). Each is claimed as by [`Store::claim`]. Two
    /// callers never get the same run. Queued runs respect their flow
    /// control: a run whose concurrency key already has `limit` runs in
    /// progress (running or waiting), or whose rate key has had `limit`
    /// runs started within the period, stays queued; among queued runs,
    /// higher priority goes first.
    async fn claim_ready(&self, owner: &str, ttl: Duration, now: Micros, limit: u32) -> Result<Vec<(Run, Lease)>>;

    /// Appends `entries` and parks the run in one fenced transaction: status
    /// `waiting`, `wake_at` and `waiting_on` from `park`, lease released
    /// (epoch kept). If an event named `park.event` was stored after the
    /// run was claimed, the run is due at once (`wake_at` = that event's
    /// time), so an event sent while the worker was deciding to park is
    /// never missed.
    async fn park(&self, lease: &Lease, entries: Vec<Entry>, park: Park) -> Result<()>;

    /// Cancels a run that is not final: status `cancelled`, error
    /// `cancelled` with `reason`, `finished_at` now, lease cleared and epoch
    /// bumped so a worker still running it writes nothing more. Returns the
    /// run as it is now; cancelling a final run is a `Conflict`.
    async fn cancel(&self, id: &RunId, reason: &str, now: Micros) -> Result<Run>;

    /// Stores an event and wakes every waiting run whose `waiting_on` is its
    /// name (their `wake_at` becomes `now`). Returns the event and how many
    /// runs were woken.
    async fn send_event(&self, name: &str, data: &str, now: Micros) -> Result<(Event, u64)>;

    /// Events named `name` created at or after `since` with an id above
    /// `after_id`, oldest first, at most `limit`.
    async fn events(&self, name: &str, since: Micros, after_id: i64, limit: u32) -> Result<Vec<Event>>;

    /// The earliest `wake_at` of a waiting run, so a scheduler knows how
    /// long it may sleep.
    async fn next_wake(&self) -> Result<Option<Micros>>;

    /// Makes a new version of deployment `name`, active at once. If the
    /// active version has the same component and config, nothing changes
    /// and it is returned with `false`. The component must be stored.
    async fn deploy(
        &self,
        name: &str,
        hash: &ComponentHash,
        world: World,
        config: &DeploymentConfig,
        now: Micros,
    ) -> Result<(Deployment, bool)>;

    /// Version `version` of `name`, or the active version when none.
    async fn deployment(&self, name: &str, version: Option<u32>) -> Result<Option<Deployment>>;

    /// Every version of every deployment, by name then newest version first.
    async fn deployments(&self) -> Result<Vec<Deployment>>;

    /// Makes `version` the active version of `name` (a rollback).
    async fn activate(&self, name: &str, version: u32) -> Result<Deployment>;

    /// Creates or replaces a schedule.
    async fn put_schedule(&self, schedule: &Schedule) -> Result<()>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<Schedule>>;

    /// Deletes a schedule; `NotFound` if there is none of that name.
    async fn delete_schedule(&self, name: &str) -> Result<()>;

    /// Fires the tick `tick` of schedule `name` at most once, across hosts
    /// and restarts: in one transaction, if the schedule's `next_fire_at` is
    /// still `tick`, sets it to `next`, sets `last_fired_at` to `tick` and
    /// creates `run`; returns the run. Returns none if the tick was already
    /// fired (by another host) or the schedule is gone.
    async fn fire_schedule(&self, name: &str, tick: Micros, next: Micros, run: NewRun) -> Result<Option<Run>>;

    /// How many runs there are in each status (statuses with none may be
    /// left out).
    async fn run_counts(&self) -> Result<Vec<(RunStatus, u64)>>;

    /// How many runs are not final (queued, running or waiting): a range of
    /// the status index, cheap however many finished runs the store holds.
    async fn unfinished_runs(&self) -> Result<u64>;

    /// Why each of these queued runs is still queued: a concurrency or rate
    /// limit holding it back, by run id (runs not held back are absent).
    async fn queue_reasons(&self, ids: &[RunId], now: Micros) -> Result<Vec<(RunId, String)>>;

    // ------------------------------------------------ dashboard reads (see [`stats`])

    /// How many runs each deployed version has, by status: one row per
    /// (name, component hash, status) that has runs, in that order. Versions
    /// of a name that share a component share its runs.
    async fn version_run_counts(&self) -> Result<Vec<stats::VersionRuns>>;

    /// How many runs of each component (deployment name) are queued, by
    /// name; names with none are left out.
    async fn queue_depths(&self) -> Result<Vec<(String, u64)>>;

    /// Step calls and retries recorded in the journals of these runs, in the
    /// order asked; runs with no step attempt are left out.
    async fn run_steps(&self, ids: &[RunId]) -> Result<Vec<stats::RunSteps>>;

    /// Runs whose idempotency key is exactly `key`, newest first, filtered
    /// and paged as [`Store::list_runs`] filters: of `filter.component`, or
    /// of every deployment name when it is none.
    async fn runs_with_key(&self, key: &str, filter: &RunFilter) -> Result<Vec<Run>>;

    /// The step attempts that finished in the window, aggregated: counts per
    /// bucket, latency per step call name, failures and retries by cause.
    /// Attempts are found through the runs that may hold them (see
    /// [`stats::StatsWindow::RUN_LOOKBACK_US`]).
    async fn step_stats(&self, window: &stats::StatsWindow) -> Result<stats::StepStats>;
}
