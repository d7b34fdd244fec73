//! The single writer of one host: one task, one connection, group commit.
//!
//! As in the SQLite backend, every write becomes an [`Op`] sent to the
//! writer task with a oneshot for its answer. The task takes everything
//! pending (up to [`MAX_BATCH`] operations), runs it in one transaction
//! with a savepoint per operation, commits once, and only then answers each
//! operation: one commit (one WAL flush) serves every writer that arrived
//! while the previous commit was in flight.
//!
//! Per operation: an error rolls back to the operation's savepoint, so a
//! fenced-out append (`LeaseLost`) or a duplicate entry (`Conflict`) writes
//! nothing while the other operations of the batch still commit. If the
//! batch itself fails (begin, a savepoint, the commit), every operation of
//! the batch gets the error and nothing of the batch is kept.
//!
//! The connection can die under the writer (the server restarts, an admin
//! terminates the backend, the network drops). The writer then drops it,
//! fails the batch in flight with [`Error::Unavailable`] (callers retry),
//! and connects again for the next batch. A batch whose `BEGIN` failed on a
//! dead connection wrote nothing, so it is retried once on a new one. A
//! batch that hangs past [`BATCH_TIMEOUT`] is abandoned the same way.
//!
//! An operation whose caller stopped waiting is still applied: the caller
//! cannot know whether it was, exactly as with a lost network reply.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{mpsc, oneshot};

use super::ops;
use super::rows::{db_err, is_connection_lost, replicate};
use super::{connect, describe};
use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, Event, Micros, NewRun, Run, RunId, Schedule, World,
};
use crate::store::{Component, Created, Error, Lease, Outcome, Park, Result};

/// Most operations committed in one transaction. Bounds how long a commit
/// holds its locks and how long the first writer of a batch waits.
pub(super) const MAX_BATCH: usize = 512;

/// Operations that may wait for the writer before senders are slowed down.
const QUEUE: usize = 4096;

/// How long one batch may take before the writer gives up on its
/// connection (a server that stopped answering).
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

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
    reconnects: AtomicU64,
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

    /// Times the writer opened a new connection after losing one.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

/// The handle through which the store sends writes.
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer task, which owns `conn` (and opens new ones with
    /// `options` when it is lost) until every handle is dropped; it then
    /// finishes what is queued and closes the connection.
    pub(super) fn spawn(conn: PgConnection, options: PgConnectOptions) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let link = Link { conn: Some(conn), options, stats: Arc::clone(&stats) };
        let task = tokio::spawn(run(link, rx, Arc::clone(&stats)));
        (Self { jobs, stats }, task)
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
        Ok((Sent(ran), committed))
    }

    async fn send_job(&self, op: Op, early: Early) -> Result<Sent> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply, early })
            .await
            .map_err(|_| Error::Unavailable("the store's writer has stopped".into()))?;
        Ok(Sent(answer))
    }
}

/// A write in the writer's queue or batch, not answered yet.
pub(super) struct Sent(oneshot::Receiver<Result<Done>>);

impl Sent {
    /// Waits until the write's batch is committed: its result.
    pub(super) async fn answer(self) -> Result<Done> {
        self.0.await.map_err(|_| Error::Unavailable("the store's writer stopped before answering".into()))?
    }
}

/// The writer's connection, opened again when lost.
struct Link {
    conn: Option<PgConnection>,
    options: PgConnectOptions,
    stats: Arc<WriterStats>,
}

impl Link {
    async fn connection(&mut self) -> Result<&mut PgConnection> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let conn = connect(&self.options).await?;
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(server = %describe(&self.options), "the store's writer reconnected");
                conn
            }
        };
        Ok(self.conn.insert(conn))
    }

    fn drop_connection(&mut self) {
        // Dropping closes the socket; the server rolls back whatever was open.
        self.conn = None;
    }
}

async fn run(mut link: Link, mut rx: mpsc::Receiver<Job>, stats: Arc<WriterStats>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.ops.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let (ops, replies): (Vec<(Op, Early)>, Vec<_>) = jobs.drain(..).map(|j| ((j.op, j.early), j.reply)).unzip();
        match run_batch(&mut link, ops).await {
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
    if let Some(conn) = link.conn.take()
        && let Err(err) = conn.close().await
    {
        tracing::warn!(error = %err, "closing the store's write connection failed");
    }
}

/// Why a batch failed.
enum BatchError {
    /// `BEGIN` failed because the connection is gone: nothing was written.
    NotStarted(Error),
    /// The transaction failed; nothing of the batch is kept.
    Failed { err: Error, connection_lost: bool },
}

/// Runs one batch, on a new connection when the current one is lost.
async fn run_batch(link: &mut Link, ops: Vec<(Op, Early)>) -> Result<Vec<Result<Done>>> {
    let mut ops = Some(ops);
    for attempt in 0..2 {
        let conn = link.connection().await?;
        let Some(batch) = ops.take() else { break };
        let outcome = tokio::time::timeout(BATCH_TIMEOUT, commit_batch(conn, batch)).await;
        match outcome {
            Ok(Ok(results)) => return Ok(results),
            Ok(Err((BatchError::NotStarted(err), batch))) => {
                link.drop_connection();
                if attempt == 0 {
                    tracing::info!(error = %err, "the store's write connection was lost; reconnecting");
                    ops = Some(batch);
                    continue;
                }
                return Err(err);
            }
            Ok(Err((BatchError::Failed { err, connection_lost }, _))) => {
                if connection_lost {
                    link.drop_connection();
                }
                return Err(err);
            }
            Err(_) => {
                link.drop_connection();
                return Err(Error::Unavailable(format!(
                    "a write batch took longer than {}s; the connection to {} was dropped",
                    BATCH_TIMEOUT.as_secs(),
                    describe(&link.options)
                )));
            }
        }
    }
    Err(Error::Unavailable("the store's writer could not start a transaction".into()))
}

/// Runs the operations in one transaction, each under its own savepoint.
/// On `Err`, nothing of the batch is kept; the operations come back when
/// none of them ran.
async fn commit_batch(
    conn: &mut PgConnection,
    ops: Vec<(Op, Early)>,
) -> std::result::Result<Vec<Result<Done>>, (BatchError, Vec<(Op, Early)>)> {
    let failed = |e: sqlx::Error| BatchError::Failed { connection_lost: is_connection_lost(&e), err: db_err(e) };
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) if is_connection_lost(&e) => return Err((BatchError::NotStarted(db_err(e)), ops)),
        Err(e) => return Err((failed(e), Vec::new())),
    };
    let mut results = Vec::with_capacity(ops.len());
    for (op, early) in ops {
        if let Err(e) = sqlx::raw_sql("SAVEPOINT op").execute(&mut *tx).await {
            return Err((failed(e), Vec::new()));
        }
        match apply(&mut tx, op).await {
            Ok(done) => {
                if let Err(e) = sqlx::raw_sql("RELEASE SAVEPOINT op").execute(&mut *tx).await {
                    return Err((failed(e), Vec::new()));
                }
                results.push(Ok(ran(done, early)));
            }
            Err(err) => {
                // Back to before the operation, and forget the savepoint so
                // savepoints do not nest deeper with each failed operation.
                if let Err(e) = sqlx::raw_sql("ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op").execute(&mut *tx).await
                {
                    let lost = is_connection_lost(&e);
                    // The operation's own error says more when it is the
                    // connection that failed under it.
                    let err = match err {
                        Error::Unavailable(_) => err,
                        _ => db_err(e),
                    };
                    return Err((BatchError::Failed { err, connection_lost: lost }, Vec::new()));
                }
                results.push(Err(err));
            }
        }
    }
    if let Err(e) = tx.commit().await {
        return Err((failed(e), Vec::new()));
    }
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

async fn apply(conn: &mut PgConnection, op: Op) -> Result<Done> {
    Ok(match op {
        Op::PutComponent(c) => Done::Inserted(ops::put_component(conn, &c).await?),
        Op::PutBlob { hash, bytes, now } => Done::Inserted(ops::put_blob(conn, &hash, &bytes, now).await?),
        Op::TakeRate { key, limit, period_us, now } => {
            Done::Rate(ops::take_rate(conn, &key, limit, period_us, now).await?)
        }
        Op::CreateRun(run) => Done::Created(Box::new(ops::create_run(conn, run).await?)),
        Op::CreateAndClaim { run, owner, ttl, now } => {
            let (created, claimed) = ops::create_and_claim(conn, *run, &owner, ttl, now).await?;
            Done::CreatedClaimed(Box::new(created), claimed.map(Box::new))
        }
        Op::Claim { id, owner, ttl, now } => Done::Lease(ops::claim(conn, &id, &owner, ttl, now).await?),
        Op::Heartbeat { lease, ttl, now } => Done::Lease(ops::heartbeat(conn, &lease, ttl, now).await?),
        Op::Append { lease, entries } => {
            ops::append(conn, &lease, &entries).await?;
            Done::Written
        }
        Op::Finish { lease, entries, outcome, now } => {
            ops::finish(conn, &lease, &entries, &outcome, now).await?;
            Done::Written
        }
        Op::ClaimReady { owner, ttl, now, limit } => {
            Done::Claimed(ops::claim_ready(conn, &owner, ttl, now, limit).await?)
        }
        Op::Park { lease, entries, park } => {
            ops::park(conn, &lease, &entries, &park).await?;
            Done::Written
        }
        Op::Cancel { id, reason, now } => Done::Run(Box::new(ops::cancel(conn, &id, &reason, now).await?)),
        Op::SendEvent { name, data, now } => {
            let (event, woken) = ops::send_event(conn, &name, &data, now).await?;
            Done::Event(event, woken)
        }
        Op::Deploy { name, hash, world, config, now } => {
            let (deployment, created) = ops::deploy(conn, &name, &hash, world, &config, now).await?;
            Done::Deployment(Box::new(deployment), created)
        }
        Op::Activate { name, version } => Done::Deployment(Box::new(ops::activate(conn, &name, version).await?), true),
        Op::PutSchedule(schedule) => {
            ops::put_schedule(conn, &schedule).await?;
            Done::Written
        }
        Op::DeleteSchedule(name) => {
            ops::delete_schedule(conn, &name).await?;
            Done::Written
        }
        Op::FireSchedule { name, tick, next, run } => {
            Done::Fired(ops::fire_schedule(conn, &name, tick, next, *run).await?.map(Box::new))
        }
    })
}
