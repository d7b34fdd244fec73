//! The worker: claims ready runs under leases, executes them concurrently,
//! keeps their leases alive, and sleeps until the next timer when idle.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::run::{Ending, Executor, RunCtx, RunPolicy};
use super::steps::StepResolver;
use crate::domain::Run;
use crate::domain::{Micros, NewRun, RunId, RunStatus};
use crate::engine::{Engine, Secrets};
use crate::store::{self, Created, Lease, Store};

/// Run ends a slow listener may fall behind by before it is told it lagged
/// (and then looks at its run again).
const ENDED_BACKLOG: usize = 1024;

/// How long a worker near its run limit waits for more slots to free up
/// before it claims for the few it has (see [`Worker::run`]).
const CLAIM_DEFER: Duration = Duration::from_millis(2);

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Lease owner name of this worker.
    pub owner: String,
    /// How long a claim holds without a heartbeat.
    pub lease_ttl: Duration,
    /// How often leases are renewed (and cancellation noticed).
    pub heartbeat: Duration,
    /// Runs executing at once.
    pub max_runs: usize,
    /// Longest sleep between looks for ready runs.
    pub poll: Duration,
    pub policy: RunPolicy,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            owner: format!("worker-{}", std::process::id()),
            lease_ttl: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            max_runs: 64,
            poll: Duration::from_millis(100),
            policy: RunPolicy::default(),
        }
    }
}

/// When [`Worker::run`] returns.
#[derive(Clone, Debug)]
pub enum Until {
    /// When this run is final.
    Final(RunId),
    /// When this run is final or parked.
    Settled(RunId),
    /// When nothing is running and nothing is ready or due.
    Idle,
    /// Never (until the future is dropped).
    Forever,
    /// When the flag turns true: stop claiming, let runs in flight finish
    /// within the grace period, then stop the rest and hand their runs back
    /// (waiting, due at once) so the next start resumes them.
    Shutdown(tokio::sync::watch::Receiver<bool>, Duration),
}

/// A claimed run's task, made by [`Worker::submit`] and not yet spawned by
/// [`Worker::run`].
type Handoff = std::pin::Pin<Box<dyn std::future::Future<Output = (RunId, Settled)> + Send>>;

/// Runs [`Worker::submit`] claimed, waiting for [`Worker::run`] to start
/// them.
#[derive(Default)]
struct Handoffs {
    jobs: Vec<Handoff>,
    /// The last loop ended in a shutdown and none has started since: then
    /// `submit` claims nothing.
    shut: bool,
}

/// Claims and executes runs.
pub struct Worker {
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    executor: Arc<Executor>,
    steps: Arc<StepResolver>,
    secrets: Arc<Secrets>,
    config: WorkerConfig,
    /// Leases of the runs in flight.
    held: Arc<Mutex<std::collections::HashMap<RunId, Lease>>>,
    /// One permit per run this worker may execute at once; each run's task
    /// holds one, so [`Worker::run`]'s claims and [`Worker::submit`]'s never
    /// take more runs than `max_runs` between them.
    slots: Arc<Semaphore>,
    /// Runs claimed by [`Worker::submit`] for [`Worker::run`] to start.
    handoff: Mutex<Handoffs>,
    /// Cuts an idle nap short: runs were just made ready.
    wake: tokio::sync::Notify,
    /// Cuts an idle nap short: `submit` handed over a run it claimed.
    handed: tokio::sync::Notify,
    /// The id of each run whose execution by this worker ended (finished,
    /// parked or abandoned), for whoever waits on one.
    ended: tokio::sync::broadcast::Sender<RunId>,
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        steps: Arc<StepResolver>,
        secrets: Arc<Secrets>,
        config: WorkerConfig,
    ) -> Result<Self, String> {
        let executor = Arc::new(Executor::new(engine.clone()).map_err(|e| format!("{e:#}"))?);
        let slots = Arc::new(Semaphore::new(config.max_runs.min(Semaphore::MAX_PERMITS)));
        Ok(Self {
            store,
            engine,
            executor,
            steps,
            secrets,
            config,
            held: Arc::default(),
            slots,
            handoff: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            handed: tokio::sync::Notify::new(),
            ended: tokio::sync::broadcast::channel(ENDED_BACKLOG).0,
        })
    }

    /// Wakes this worker from its idle nap (runs were made ready here); a
    /// wake while it is busy is kept for its next nap.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Announces the id of each run whose execution by this worker ends,
    /// so a waiter can look at its run again at once rather than at its
    /// next poll (subscribe before looking the first time).
    pub fn ended_runs(&self) -> tokio::sync::broadcast::Sender<RunId> {
        self.ended.clone()
    }

    /// Creates `run` and, when this worker has a slot free and the run is
    /// the next ready one, claims it in the same transaction
    /// ([`Store::create_and_claim`]) and hands it to [`Worker::run`] to
    /// start at once. Otherwise (no free slot, older runs ready, flow
    /// control, an existing idempotency key, or the worker has shut down)
    /// the run is only created, and the worker is woken to look for it.
    /// Either way the run is executed as if the worker had claimed it; this
    /// saves the separate claim transaction and the look that finds it.
    ///
    /// A run handed over waits for [`Worker::run`] to start it: call this
    /// where the worker's loop is running or about to run (the daemon, or
    /// just before `run`). If no loop ever starts it, its lease expires and
    /// it is claimed again, here or elsewhere, like a crashed worker's.
    pub async fn submit(&self, run: NewRun) -> Result<Created, store::Error> {
        let (created, committed) = self.submit_started(run).await?;
        committed.await?;
        Ok(created)
    }

    /// [`Worker::submit`], answered once the run is created and handed
    /// over, before the transaction that created it has committed, with a
    /// future for that commit: await it before telling anyone the run
    /// exists. The handed-over run starts executing meanwhile (its own
    /// writes go after that commit, and fail if it did). For a caller that
    /// runs the worker's loop itself meanwhile (the bench's latency runs);
    /// in `ferry serve` the loop is always running, and `submit` suffices.
    pub async fn submit_started(
        &self,
        run: NewRun,
    ) -> Result<(Created, futures::future::BoxFuture<'static, Result<(), store::Error>>), store::Error> {
        let shut = self.handoff.lock().unwrap_or_else(|e| e.into_inner()).shut;
        let slot = if shut { None } else { self.slots.clone().try_acquire_owned().ok() };
        let Some(slot) = slot else {
            let created = self.store.create_run(run).await?;
            self.wake.notify_one();
            return Ok((created, Box::pin(std::future::ready(Ok(())))));
        };
        let owner = &self.config.owner;
        let (created, claimed, commit) =
            self.store.create_and_claim_started(run, owner, self.config.lease_ttl, Micros::now()).await?;
        let Some((run, lease)) = claimed else {
            commit.await?;
            self.wake.notify_one();
            return Ok((created, Box::pin(std::future::ready(Ok(())))));
        };
        // The run starts while the transaction that created it commits.
        let commit = commit.map(|landed| landed.map_err(Arc::new)).shared();
        let first: store::Pending = Box::pin(commit.clone().map(|landed| {
            landed.map_err(|e| store::Error::Unavailable(format!("the run's creation did not commit: {e}")))
        }));
        let job = Box::pin(self.job(run, lease, slot, Some(first)));
        let handed = {
            let mut handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
            let open = !handoff.shut;
            if open {
                handoff.jobs.push(job);
            }
            open
        };
        if handed {
            self.handed.notify_one();
        } else {
            // Shut down while claiming: nothing will start it here.
            self.hand_back().await;
        }
        let committed = commit.map(|landed| {
            landed.map_err(|e| Arc::try_unwrap(e).unwrap_or_else(|e| store::Error::Unavailable(e.to_string())))
        });
        Ok((created, Box::pin(committed)))
    }

    /// Claims and executes runs until `until` holds.
    pub async fn run(&self, until: Until) -> Result<(), store::Error> {
        let mut in_flight: JoinSet<(RunId, Settled)> = JoinSet::new();
        // How this worker's execution of `until`'s run last ended, if it
        // did: `done` need not read the run then.
        let mut target_ended: Option<Settled> = None;
        // Near the run limit, slots are claimed for in groups: a claim is a
        // write transaction with a few queries, and one per finished run
        // was a large share of the store writer's work under load. A slot
        // waits at most CLAIM_DEFER for others to free up.
        let group = (self.config.max_runs / 8).max(1);
        let mut short_since: Option<Instant> = None;
        // What ended the last nap, and when the next timer is due as last
        // read (None: not read yet).
        let mut woke = Woke::Start;
        let mut timer: Option<Instant> = None;
        // Open for `submit` again if an earlier loop shut down.
        self.handoff.lock().unwrap_or_else(|e| e.into_inner()).shut = false;
        loop {
            let handed = std::mem::take(&mut self.handoff.lock().unwrap_or_else(|e| e.into_inner()).jobs);
            // A run `submit` hands over was the head of the queue when it was
            // created and claimed: when that is all that woke the loop,
            // nothing else is known to be ready, so it does not claim (an
            // empty write transaction) until something else wakes it.
            let look = match woke {
                Woke::Start => handed.is_empty(),
                Woke::Handoff => false,
                Woke::Other => true,
            };
            woke = Woke::Other;
            for job in handed {
                in_flight.spawn(job);
            }
            if self.done(&until, in_flight.is_empty(), target_ended.take()).await? {
                if let Until::Shutdown(_, grace) = &until {
                    let drained =
                        tokio::time::timeout(*grace, async { while in_flight.join_next().await.is_some() {} });
                    if drained.await.is_err() {
                        tracing::warn!(runs = in_flight.len(), "grace period over: stopping the runs still in flight");
                    }
                }
                in_flight.shutdown().await;
                if matches!(until, Until::Shutdown(..)) {
                    // Runs `submit` claimed since the last look are handed
                    // back with the rest, and it claims no more.
                    let mut handoff = self.handoff.lock().unwrap_or_else(|e| e.into_inner());
                    handoff.jobs.clear();
                    handoff.shut = true;
                }
                self.hand_back().await;
                return Ok(());
            }
            // Slots free now; a `submit` may take some while this claims, so
            // the claim holds permits for all it asks for.
            let available = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
            let mut permits = self.slots.clone().try_acquire_many_owned(available).ok();
            let free = permits.as_ref().map_or(0, |p| p.num_permits());
            if free == 0 {
                short_since = None;
            }
            let deferred = free > 0
                && free < group
                && !in_flight.is_empty()
                && short_since.get_or_insert_with(Instant::now).elapsed() < CLAIM_DEFER;
            // A store that cannot be reached (a lost connection, a restarting
            // server) must not stop the worker: it looks again after a nap.
            let claimed = if look && free > 0 && !deferred {
                short_since = None;
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match self.store.claim_ready(&self.config.owner, self.config.lease_ttl, Micros::now(), limit).await {
                    Ok(claimed) => claimed,
                    Err(e @ store::Error::Unavailable(_)) => {
                        tracing::warn!(error = %e, "claiming ready runs failed; trying again");
                        Vec::new()
                    }
                    Err(e) => return Err(e),
                }
            } else {
                Vec::new()
            };
            // Fewer runs than asked for: no more are ready now, so the next
            // look waits for a run to end, a wake-up or the next timer rather
            // than claiming again at once (an empty write transaction).
            let idle = !look || claimed.is_empty() || claimed.len() < free;
            for (run, lease) in claimed {
                // The claim asked for at most `free` runs, one permit each.
                let Some(slot) = permits.as_mut().and_then(|p| p.split(1)) else { break };
                let job = self.job(run, lease, slot, None);
                in_flight.spawn(job);
            }
            drop(permits);
            if idle {
                let nap = if deferred {
                    short_since.map_or(CLAIM_DEFER, |t| CLAIM_DEFER.saturating_sub(t.elapsed()))
                } else if free == 0 {
                    // Full: only a finished run (or the poll) changes that.
                    self.config.poll
                } else if !look {
                    // A handover changes no timer: the one last read, or
                    // the poll if none was read yet (no store read here).
                    timer.map_or(self.config.poll, |at| at.saturating_duration_since(Instant::now()))
                } else {
                    let nap = match self.store.next_wake().await {
                        Ok(Some(at)) => at.since(Micros::now()).min(self.config.poll),
                        Ok(None) | Err(store::Error::Unavailable(_)) => self.config.poll,
                        Err(e) => return Err(e),
                    };
                    timer = Some(Instant::now() + nap);
                    nap
                };
                tokio::select! {
                    Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                        target_ended = joined(&until, done).or(target_ended);
                    }
                    () = tokio::time::sleep(nap) => {}
                    () = self.wake.notified() => {}
                    () = self.handed.notified() => woke = Woke::Handoff,
                }
            }
            while let Some(done) = in_flight.try_join_next() {
                target_ended = joined(&until, done).or(target_ended);
            }
        }
    }

    /// Parks the runs whose tasks were stopped, due at once, so whoever
    /// starts next resumes them without waiting for their leases to expire.
    async fn hand_back(&self) {
        let held: Vec<Lease> = self.held.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, l)| l).collect();
        for lease in held {
            let park = store::Park { wake_at: Some(Micros::now()), event: None };
            match self.store.park(&lease, Vec::new(), park).await {
                Ok(()) => {}
                // It finished (or was cancelled) just as it was stopped.
                Err(store::Error::Conflict(_) | store::Error::LeaseLost { .. }) => {}
                Err(e) => {
                    tracing::warn!(run = %lease.run_id, error = %e, "could not hand the run back; it resumes when its lease expires");
                }
            }
        }
    }

    /// Whether `until` holds. `ended` is how this worker's execution of
    /// the awaited run just ended, if it did.
    async fn done(&self, until: &Until, nothing_running: bool, ended: Option<Settled>) -> Result<bool, store::Error> {
        Ok(match until {
            Until::Shutdown(flag, _) => *flag.borrow(),
            Until::Final(_) if ended == Some(Settled::Final) => true,
            Until::Settled(_) if matches!(ended, Some(Settled::Final | Settled::Waiting)) => true,
            // Executing here: it ends (or is cancelled) only through its task.
            Until::Final(id) | Until::Settled(id)
                if ended.is_none() && self.held.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id) =>
            {
                false
            }
            Until::Final(id) | Until::Settled(id) => {
                let run = self.store.run(id).await?.ok_or_else(|| store::Error::NotFound(format!("run {id}")))?;
                run.status.is_final() || (matches!(until, Until::Settled(_)) && run.status == RunStatus::Waiting)
            }
            Until::Forever => false,
            Until::Idle => {
                // Runs held by another (possibly dead) process count: once
                // their lease expires they are ready here.
                let any = |status| async move {
                    let filter = store::RunFilter { status: Some(status), limit: 1, ..Default::default() };
                    self.store.list_runs(&filter).await.map(|r| !r.is_empty())
                };
                nothing_running
                    && self.store.next_wake().await?.is_none()
                    && !any(RunStatus::Queued).await?
                    && !any(RunStatus::Running).await?
            }
        })
    }

    /// The task executing one claimed run, with its heartbeat.
    fn job(
        &self,
        run: Run,
        lease: Lease,
        slot: OwnedSemaphorePermit,
        created: Option<store::Pending>,
    ) -> impl std::future::Future<Output = (RunId, Settled)> + Send + 'static {
        let (store, engine, executor, steps, secrets, config, held, ended) = (
            self.store.clone(),
            self.engine.clone(),
            self.executor.clone(),
            self.steps.clone(),
            self.secrets.clone(),
            self.config.clone(),
            self.held.clone(),
            self.ended.clone(),
        );
        held.lock().unwrap_or_else(|e| e.into_inner()).insert(run.id, lease.clone());
        async move {
            let id = run.id;
            let ending = execute(store, engine, executor, steps, secrets, config, run, lease, created).await;
            held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            drop(slot);
            // Nobody listening is fine.
            let _ = ended.send(id);
            let settled = match &ending {
                Ok(Ending::Finished(_)) => Settled::Final,
                Ok(Ending::Parked(_)) => Settled::Waiting,
                Ok(Ending::Abandoned(_)) | Err(_) => Settled::Unknown,
            };
            match ending {
                Ok(e) => tracing::debug!(run = %id, ending = ?e, "run executed"),
                Err(e) => tracing::error!(run = %id, error = %e, "executing the run failed"),
            }
            (id, settled)
        }
    }
}

/// What started an iteration of the worker loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Woke {
    /// The loop just started.
    Start,
    /// `submit` handed over a run.
    Handoff,
    /// A run ended, a timer or the poll came due, or runs were made ready.
    Other,
}

/// Where a run's execution by this worker left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    /// Its outcome was written: it is final.
    Final,
    /// It was parked: waiting for a timer or an event.
    Waiting,
    /// Abandoned or failed to write: only the store knows.
    Unknown,
}

/// A joined run task: how it left the run `until` awaits, if it was that
/// run; a task that failed is logged.
fn joined(until: &Until, done: Result<(RunId, Settled), tokio::task::JoinError>) -> Option<Settled> {
    match done {
        Ok((id, settled)) => match until {
            Until::Final(target) | Until::Settled(target) if *target == id => Some(settled),
            _ => None,
        },
        Err(e) => {
            tracing::error!(error = %e, "a run's task failed");
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    executor: Arc<Executor>,
    steps: Arc<StepResolver>,
    secrets: Arc<Secrets>,
    config: WorkerConfig,
    run: Run,
    lease: Lease,
    created: Option<store::Pending>,
) -> Result<Ending, store::Error> {
    // Loaded components are kept by hash: only a component this process has
    // not seen yet is read from the store (and hashed, compiled or loaded
    // from the artifact cache).
    let load = async {
        if let Some(l) = engine.loaded(&run.component_hash) {
            return Ok(Ok(l));
        }
        let component = store
            .component(&run.component_hash)
            .await?
            .ok_or_else(|| store::Error::NotFound(format!("component {} of run {}", run.component_hash, run.id)))?;
        Ok::<_, store::Error>(engine.load(&component.bytes).await)
    };
    let loaded = match load.await? {
        Ok(l) => l,
        Err(e) => {
            let error = crate::domain::RunError { kind: crate::domain::RunErrorKind::Host, message: e.to_string() };
            store.finish(&lease, Vec::new(), store::Outcome::Failed { error }, Micros::now()).await?;
            return Ok(Ending::Finished(store::Outcome::Failed {
                error: crate::domain::RunError { kind: crate::domain::RunErrorKind::Host, message: e.to_string() },
            }));
        }
    };
    let ctx = Arc::new(RunCtx {
        store: store.clone(),
        engine,
        steps,
        secrets,
        policy: config.policy.clone(),
        pinned_step: (loaded.world == crate::domain::World::Step).then(|| loaded.clone()),
        pinned_config: match loaded.world {
            crate::domain::World::Step => store
                .deployments()
                .await?
                .into_iter()
                .find(|d| d.name == run.component && d.hash == run.component_hash)
                .map(|d| d.config),
            crate::domain::World::Workflow => None,
        },
        run,
        lease: lease.clone(),
        last_event: Mutex::new(0),
        in_flight: Arc::new(match created {
            Some(commit) => super::appends::InFlight::new(store.clone(), lease.clone()).after(commit),
            None => super::appends::InFlight::new(store.clone(), lease.clone()),
        }),
        resolved: Default::default(),
    });
    let beat = async {
        loop {
            tokio::time::sleep(config.heartbeat).await;
            if let Err(e) = store.heartbeat(&lease, config.lease_ttl, Micros::now()).await {
                match e {
                    store::Error::LeaseLost { .. } | store::Error::Conflict(_) | store::Error::NotFound(_) => return e,
                    other => tracing::warn!(run = %lease.run_id, error = %other, "heartbeat failed; retrying"),
                }
            }
        }
    };
    tokio::select! {
        ending = executor.execute(ctx, &loaded) => ending,
        lost = beat => {
            if matches!(lost, store::Error::LeaseLost { .. }) {
                // Another worker (another host) claimed the run: whatever
                // this execution did since its last write is thrown away.
                tracing::warn!(run = %lease.run_id, reason = %lost, "stopped the run and discarded its attempt in flight: another worker took it over");
            } else {
                tracing::info!(run = %lease.run_id, reason = %lost, "stopped the run: its lease is gone");
            }
            Ok(Ending::Abandoned(lost.to_string()))
        }
    }
}
