//! The single writer: one thread, one connection, group commit.
//!
//! Every write of the store becomes an [`Op`] sent to the writer thread with
//! a oneshot for its answer. The thread takes everything pending (up to
//! [`MAX_BATCH`] operations), runs it in one `BEGIN IMMEDIATE` transaction
//! with a savepoint per operation, commits once, and only then answers each
//! operation. One commit (one fsync with `synchronous=FULL`) thus serves
//! every writer that arrived while the previous commit was in flight.
//!
//! The thread owns its connection outright (rusqlite, on the same SQLite
//! library sqlx links): a statement is a function call on this thread, so a
//! write costs two thread hand-offs (the op in, the answer out) however many
//! statements it runs. Through sqlx every statement was a round trip to
//! sqlx's own worker thread; see docs/PERFORMANCE.md for what that cost.
//!
//! Per operation: an error rolls back to the operation's savepoint, so a
//! fenced-out append (`LeaseLost`) or a duplicate entry (`Conflict`) writes
//! nothing while the other operations of the batch still commit. If the
//! batch itself fails (begin, a savepoint, the commit), every operation of
//! the batch gets the error and nothing of the batch is kept.
//!
//! An operation whose caller stopped waiting is still applied: the caller
//! cannot know whether it was, exactly as with a lost network reply.
//!
//! Two things are for latency on a quiet host (docs/PERFORMANCE.md):
//! - A batch of lease operations only (claims, heartbeats) commits without
//!   an fsync even under `Durability::Fsync`: nothing is acknowledged on a
//!   claim, and WAL commits are ordered, so the next durable commit makes
//!   it durable too. An OS crash before that loses the claim together with
//!   everything that followed it, and the run is simply claimed again.
//! - A caller whose write is the only one outstanding polls for its answer
//!   for a moment instead of sleeping on it ([`REPLY_SPIN`]): waking a
//!   parked runtime thread costs more than the commit's own CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::ops;
use super::rows::replicate;
use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, Event, Micros, NewRun, Run, RunId, Schedule, World,
};
use crate::store::{Component, Created, Durability, Error, Lease, Outcome, Park, Result};

/// Most operations committed in one transaction. Bounds how long a commit
/// holds the write lock and how long the first writer of a batch waits.
pub(super) const MAX_BATCH: usize = 512;

/// How long the writer polls for the next write before it sleeps. Idle
/// 12-step p50 −12 % on the seed bench; under load the queue is rarely
/// empty, so it rarely spins (docs/PERFORMANCE.md).
const SPIN: Duration = Duration::from_micros(200);

/// How long a caller whose write is the only one outstanding polls for the
/// answer before it sleeps on it. Above a commit with its fsync on a quiet
/// host (~150 µs here); a slower disk just falls back to sleeping.
const REPLY_SPIN: Duration = Duration::from_micros(500);

/// Operations that may wait for the writer before senders are slowed down.
const QUEUE: usize = 4096;

/// One write.
pub(super) enum Op {
    PutComponent(Component),
    PutBlob { hash: String, bytes: Vec<u8>, now: Micros },
    TakeRate { key: String, limit: u32, period_us: i64, now: Micros },
    CreateRun(NewRun),
    CreateAndClaim { run: Box<NewRun>, owner: String, ttl: Duration, now: Micros },
    Claim { id: RunId, owner: String, ttl: Duration, now: Micros },
    Heartbeat { lease: Lease, ttl: Duration, now: Micros },
    Append { lease: Lease, entries: Vec<Entry> },
    Finish { lease: Lease, entries: Vec<Entry>, outcome: Outcome, now: Micros },
    ClaimReady { owner: String, ttl: Duration, now: Micros, limit: u32 },
    Park { lease: Lease, entries: Vec<Entry>, park: Park },
    Cancel { id: RunId, reason: String, now: Micros },
    SendEvent { name: String, data: String, now: Micros },
    Deploy { name: String, hash: ComponentHash, world: World, config: Box<DeploymentConfig>, now: Micros },
    Activate { name: String, version: u32 },
    PutSchedule(Box<Schedule>),
    DeleteSchedule(String),
    FireSchedule { name: String, tick: Micros, next: Micros, run: Box<NewRun> },
}

impl Op {
    /// Whether the operation only moves a lease: nothing is acknowledged on
    /// it, so its commit need not reach the disk before the next one does.
    fn lease_only(&self) -> bool {
        matches!(self, Op::Claim { .. } | Op::ClaimReady { .. } | Op::Heartbeat { .. })
    }
}

/// What a write answers.
pub(super) enum Done {
    Inserted(bool),
    Rate(Option<Micros>),
    Created(Box<Created>),
    CreatedClaimed(Box<Created>, Option<Box<(Run, Lease)>>),
    Lease(Lease),
    Written,
    Claimed(Vec<(Run, Lease)>),
    Run(Box<Run>),
    Event(Event, u64),
    Deployment(Box<Deployment>, bool),
    Fired(Option<Box<Run>>),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
    /// For [`Writer::send_early`]: takes the operation's result as soon as
    /// it ran, before the commit (`reply` then gets `Done::Written`).
    early: Early,
}

type Early = Option<oneshot::Sender<Result<Done>>>;

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    batches: AtomicU64,
    ops: AtomicU64,
    unsynced: AtomicU64,
    synced: AtomicU64,
}

impl WriterStats {
    /// Transactions committed (or attempted) by the writer.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Operations the writer ran.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Transactions committed without their own fsync under
    /// `Durability::Fsync`: batches of lease operations only.
    pub fn unsynced(&self) -> u64 {
        self.unsynced.load(Ordering::Relaxed)
    }

    /// Transactions committed (or attempted) with an fsync of their own.
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::Relaxed)
    }
}

/// The handle through which the store sends writes.
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
    /// Writes sent and not yet answered.
    outstanding: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the writer thread, which owns `conn` until every handle is
    /// dropped; it then finishes what is queued and closes the connection.
    /// `durability` is the connection's: under `Fsync` a batch of lease
    /// operations only commits without an fsync.
    pub(super) fn spawn(
        conn: Connection,
        durability: Durability,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let outstanding = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stats, outstanding) = (Arc::clone(&stats), Arc::clone(&outstanding));
            let fsync = durability == Durability::Fsync;
            std::thread::Builder::new()
                .name("ferry-sqlite-writer".into())
                .spawn(move || run(conn, rx, &stats, &outstanding, fsync))?
        };
        Ok((Self { jobs, stats, outstanding }, thread))
    }

    pub(super) fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Sends one write and waits until its batch is committed.
    pub(super) async fn submit(&self, op: Op) -> Result<Done> {
        self.send(op).await?.answer().await
    }

    /// Sends one write to the writer's queue (waiting only while the queue
    /// is full); [`Sent::answer`] waits for its commit.
    pub(super) async fn send(&self, op: Op) -> Result<Sent> {
        self.send_job(op, None).await
    }

    /// Sends one write whose result is wanted before its commit: the first
    /// `Sent` answers once the operation ran inside its batch's transaction
    /// (a batch can still fail after that: the second says), the second
    /// once the batch committed, with `Done::Written`. If the operation
    /// itself fails, the first is closed and the second has the error.
    pub(super) async fn send_early(&self, op: Op) -> Result<(Sent, Sent)> {
        let (early, ran) = oneshot::channel();
        let committed = self.send_job(op, Some(early)).await?;
        Ok((Sent { answer: ran, alone: committed.alone }, committed))
    }

    async fn send_job(&self, op: Op, early: Early) -> Result<Sent> {
        let (reply, answer) = oneshot::channel();
        let alone = self.outstanding.fetch_add(1, Ordering::AcqRel) == 0;
        // Counted until the writer has it (it uncounts it when it answers),
        // also if this future is dropped while the queue is full.
        let mut unsent = Unsent(Some(&self.outstanding));
        if self.jobs.send(Job { op, reply, early }).await.is_err() {
            return Err(Error::Unavailable("the store's writer has stopped".into()));
        }
        unsent.sent();
        Ok(Sent { answer, alone })
    }
}

/// A write in the writer's queue or batch, not answered yet.
pub(super) struct Sent {
    answer: oneshot::Receiver<Result<Done>>,
    /// It was the only write outstanding when it was sent.
    alone: bool,
}

impl Sent {
    /// Waits until the write's batch is committed: its result.
    pub(super) async fn answer(self) -> Result<Done> {
        let Self { mut answer, alone } = self;
        let stopped = || Error::Unavailable("the store's writer stopped before answering".into());
        if alone {
            // Polled without a waker, so the writer's answer wakes no thread;
            // `yield_now` lets the runtime run anything else meanwhile.
            let until = Instant::now() + REPLY_SPIN;
            loop {
                match answer.try_recv() {
                    Ok(done) => return done,
                    Err(oneshot::error::TryRecvError::Closed) => return Err(stopped()),
                    Err(oneshot::error::TryRecvError::Empty) if Instant::now() < until => {
                        tokio::task::yield_now().await;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => break,
                }
            }
        }
        answer.await.map_err(|_| stopped())?
    }
}

/// Uncounts a write from [`Writer::outstanding`] unless it reached the
/// writer (which uncounts it when it answers).
struct Unsent<'a>(Option<&'a AtomicUsize>);

impl Unsent<'_> {
    fn sent(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let Some(outstanding) = self.0 {
            outstanding.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, stats: &WriterStats, outstanding: &AtomicUsize, fsync: bool) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    // The connection opens with `synchronous=FULL` under `Fsync`, `NORMAL`
    // under `Buffered` (where no batch asks for a sync, so it stays so).
    let mut synced = fsync;
    while let Some(first) = next_job(&mut rx) {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.ops.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let (ops, replies): (Vec<(Op, Early)>, Vec<_>) = jobs.drain(..).map(|j| ((j.op, j.early), j.reply)).unzip();
        let answered = replies.len();
        let sync = fsync && !ops.iter().all(|(op, _)| op.lease_only());
        if fsync && !sync {
            stats.unsynced.fetch_add(1, Ordering::Relaxed);
        }
        if sync {
            stats.synced.fetch_add(1, Ordering::Relaxed);
        }
        // A batch that needs its fsync is not committed without it.
        let results = set_synchronous(&conn, &mut synced, sync).and_then(|()| commit_batch(&mut conn, ops));
        outstanding.fetch_sub(answered, Ordering::AcqRel);
        match results {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The caller may have stopped waiting; nothing to do then.
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, ops = replies.len(), "store write batch failed");
                for reply in replies {
                    let _ = reply.send(Err(replicate(&err)));
                }
            }
        }
    }
    if let Err((_, err)) = conn.close() {
        tracing::warn!(error = %err, "closing the store's write connection failed");
    }
}

/// The next write, or `None` once every sender is gone. The thread polls
/// for [`SPIN`] (yielding the core) before it sleeps: on a quiet host the
/// next step's write usually comes within that, and a sleeping thread costs
/// a futex wake-up and a context switch to get back.
fn next_job(rx: &mut mpsc::Receiver<Job>) -> Option<Job> {
    let until = Instant::now() + SPIN;
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {
                if Instant::now() >= until {
                    return rx.blocking_recv();
                }
                std::thread::yield_now();
            }
        }
    }
}

/// Runs one cached statement of transaction control.
fn control(conn: &Connection, sql: &'static str) -> Result<()> {
    ops::exec(conn, sql, []).map(drop)
}

/// Sets the connection's `synchronous` for the next commit: under
/// `Durability::Fsync`, `NORMAL` for a batch of lease operations and
/// `FULL` for every other; under `Buffered` it is never changed. In WAL
/// mode a `NORMAL` commit is ordered before every later one but not
/// synced; the next `FULL` commit's fsync of the log covers it. `synced` is
/// the connection's current setting.
fn set_synchronous(conn: &Connection, synced: &mut bool, want: bool) -> Result<()> {
    if *synced != want {
        control(conn, if want { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" })?;
        *synced = want;
    }
    Ok(())
}

/// Runs the operations in one transaction, each under its own savepoint.
/// `Err` means the transaction failed and nothing of the batch is kept.
fn commit_batch(conn: &mut Connection, ops: Vec<(Op, Early)>) -> Result<Vec<Result<Done>>> {
    control(conn, "BEGIN IMMEDIATE")?;
    let result = run_batch(conn, ops);
    // A failed batch (a statement of transaction control failed, or SQLite
    // rolled back by itself) leaves the connection outside a transaction
    // for the next one.
    if result.is_err()
        && !conn.is_autocommit()
        && let Err(err) = control(conn, "ROLLBACK")
    {
        tracing::warn!(error = %err, "rolling back a failed write batch failed");
    }
    result
}

/// The body of [`commit_batch`], from just after `BEGIN` to the commit.
fn run_batch(conn: &Connection, mut ops: Vec<(Op, Early)>) -> Result<Vec<Result<Done>>> {
    // A batch of one (the common case on a quiet host, where latency is
    // measured) needs no savepoint: the transaction is the operation's own.
    if ops.len() == 1
        && let Some((op, early)) = ops.pop()
    {
        return match apply(conn, op) {
            Ok(done) => {
                let done = ran(done, early);
                control(conn, "COMMIT")?;
                Ok(vec![Ok(done)])
            }
            // As below: a transaction SQLite rolled back by itself fails
            // the batch; otherwise the operation's own error is its result.
            Err(err) if conn.is_autocommit() => Err(rolled_back(err)),
            Err(err) => {
                control(conn, "ROLLBACK")?;
                Ok(vec![Err(err)])
            }
        };
    }
    let mut results = Vec::with_capacity(ops.len());
    for (op, early) in ops {
        control(conn, "SAVEPOINT op")?;
        match apply(conn, op) {
            Ok(done) => {
                control(conn, "RELEASE op")?;
                results.push(Ok(ran(done, early)));
            }
            Err(err) => {
                // On some errors (I/O, disk full) SQLite rolls back the whole
                // transaction by itself. The operations before this one are
                // lost with it: the batch must fail, not carry on in
                // autocommit mode and acknowledge them.
                if conn.is_autocommit() {
                    return Err(rolled_back(err));
                }
                control(conn, "ROLLBACK TO op")?;
                control(conn, "RELEASE op")?;
                results.push(Err(err));
            }
        }
    }
    if conn.is_autocommit() {
        return Err(Error::Unavailable("the write transaction was rolled back before its commit".into()));
    }
    control(conn, "COMMIT")?;
    Ok(results)
}

/// An operation's result, ran and not committed yet: to its early
/// receiver if it has one (its commit's answer is then `Done::Written`).
fn ran(done: Done, early: Early) -> Done {
    match early {
        Some(early) => {
            // The caller may have stopped waiting; nothing to do then.
            let _ = early.send(Ok(done));
            Done::Written
        }
        None => done,
    }
}

/// The batch's error when SQLite rolled the transaction back by itself.
fn rolled_back(err: Error) -> Error {
    match err {
        Error::Unavailable(_) | Error::Database(_) | Error::Corrupt(_) => err,
        other => Error::Unavailable(format!("the write transaction was rolled back: {other}")),
    }
}

fn apply(conn: &Connection, op: Op) -> Result<Done> {
    Ok(match op {
        Op::PutComponent(c) => Done::Inserted(ops::put_component(conn, &c)?),
        Op::PutBlob { hash, bytes, now } => Done::Inserted(ops::put_blob(conn, &hash, &bytes, now)?),
        Op::TakeRate { key, limit, period_us, now } => Done::Rate(ops::take_rate(conn, &key, limit, period_us, now)?),
        Op::CreateRun(run) => Done::Created(Box::new(ops::create_run(conn, run)?)),
        Op::CreateAndClaim { run, owner, ttl, now } => {
            let (created, claimed) = ops::create_and_claim(conn, *run, &owner, ttl, now)?;
            Done::CreatedClaimed(Box::new(created), claimed.map(Box::new))
        }
        Op::Claim { id, owner, ttl, now } => Done::Lease(ops::claim(conn, &id, &owner, ttl, now)?),
        Op::Heartbeat { lease, ttl, now } => Done::Lease(ops::heartbeat(conn, &lease, ttl, now)?),
        Op::Append { lease, entries } => {
            ops::append(conn, &lease, &entries)?;
            Done::Written
        }
        Op::Finish { lease, entries, outcome, now } => {
            ops::finish(conn, &lease, &entries, &outcome, now)?;
            Done::Written
        }
        Op::ClaimReady { owner, ttl, now, limit } => Done::Claimed(ops::claim_ready(conn, &owner, ttl, now, limit)?),
        Op::Park { lease, entries, park } => {
            ops::park(conn, &lease, &entries, &park)?;
            Done::Written
        }
        Op::Cancel { id, reason, now } => Done::Run(Box::new(ops::cancel(conn, &id, &reason, now)?)),
        Op::SendEvent { name, data, now } => {
            let (event, woken) = ops::send_event(conn, &name, &data, now)?;
            Done::Event(event, woken)
        }
        Op::Deploy { name, hash, world, config, now } => {
            let (deployment, created) = ops::deploy(conn, &name, &hash, world, &config, now)?;
            Done::Deployment(Box::new(deployment), created)
        }
        Op::Activate { name, version } => Done::Deployment(Box::new(ops::activate(conn, &name, version)?), true),
        Op::PutSchedule(schedule) => {
            ops::put_schedule(conn, &schedule)?;
            Done::Written
        }
        Op::DeleteSchedule(name) => {
            ops::delete_schedule(conn, &name)?;
            Done::Written
        }
        Op::FireSchedule { name, tick, next, run } => {
            Done::Fired(ops::fire_schedule(conn, &name, tick, next, *run)?.map(Box::new))
        }
    })
}
