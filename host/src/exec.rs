//! Running a lone step as a durable run: store the component, create the
//! run, claim it, run the attempt, journal everything in one commit.
//!
//! This is what `ferry exec` does in-process; the daemon's workers will run
//! the same sequence through the scheduler.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Entry, Limits, Micros, NewRun, Run, RunId, World};
use crate::engine::{AllowList, Engine, LoadError, Secrets, StepCall};
use crate::store::{self, Component, Created, Outcome, Store};
use crate::workflow::Until;

/// How long a claimed run stays ours without a heartbeat.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// Why a run could not be started. (A step that fails is not an error
/// here: it is a finished run with a failed outcome.)
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the input is not valid JSON: {0}")]
    InvalidInput(String),
    #[error("cannot load the component")]
    Load(#[from] LoadError),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Options of one execution.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub limits: Limits,
    pub allow: AllowList,
    pub idempotency_key: Option<String>,
}

/// What an execution produced.
#[derive(Clone, Debug)]
pub struct Report {
    pub run: Run,
    /// False when an idempotency key matched an earlier run, which is
    /// returned as it is and was not executed again.
    pub executed: bool,
    pub fuel: u64,
    pub entries: usize,
    pub duration: Duration,
}

/// The in-process host: a store, an engine and the secrets steps may read.
pub struct Host {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub secrets: Arc<Secrets>,
    /// Lease owner name of this process.
    pub owner: String,
}

impl Host {
    pub fn new(store: Arc<dyn Store>, engine: Arc<Engine>, secrets: Secrets) -> Self {
        let owner = format!("{}-{}", hostname(), std::process::id());
        Self { store, engine, secrets: Arc::new(secrets), owner }
    }

    /// Runs `bytes` (a step component) once on `input`, journaled under a
    /// new run named `name`.
    pub async fn exec_step(
        &self,
        bytes: &[u8],
        name: &str,
        input: &str,
        opts: ExecOptions,
    ) -> Result<Report, ExecError> {
        let (loaded, created) =
            self.submit(bytes, name, input, opts.idempotency_key.clone(), Some(World::Step), None).await?;
        let run = match created {
            Created::Existing(run) => {
                let entries = self.store.journal(&run.id).await?.len();
                return Ok(Report { run, executed: false, fuel: 0, entries, duration: Duration::ZERO });
            }
            Created::New(run) => run,
        };
        let lease = self.store.claim(&run.id, &self.owner, LEASE_TTL, Micros::now()).await?;
        let started = std::time::Instant::now();
        let attempt = self
            .engine
            .run_step(
                &loaded,
                StepCall {
                    run_id: run.id,
                    component: name.to_owned(),
                    step: name.to_owned(),
                    seq: 0,
                    attempt: 1,
                    input: input.to_owned(),
                    limits: opts.limits,
                    allow: opts.allow,
                    secrets: self.secrets.clone(),
                    blobs: crate::engine::Blobs::Store(self.store.clone()),
                    replay: None,
                    changed: false,
                    settle: None,
                },
            )
            .await;
        let duration = started.elapsed();
        let fuel = attempt.fuel;
        let mut entries: Vec<Entry> = Vec::with_capacity(attempt.children.len() + 1);
        entries.push(attempt.entry);
        entries.extend(attempt.children);
        let count = entries.len();
        let outcome = match attempt.outcome {
            Ok(output) => Outcome::Completed { output },
            Err(error) => Outcome::Failed { error },
        };
        self.store.finish(&lease, entries, outcome, Micros::now()).await?;
        let run = self.store.run(&run.id).await?.ok_or_else(|| store::Error::NotFound(format!("run {}", run.id)))?;
        Ok(Report { run, executed: true, fuel, entries: count, duration })
    }
}

impl Host {
    /// Starts a workflow run of `bytes` on `input` and executes it with
    /// `worker` until it is final, or, with `detach`, until it is parked;
    /// meanwhile the worker also executes other runs it finds ready (those
    /// ahead of the new run at once, others at its next look).
    pub async fn exec_workflow(
        &self,
        bytes: &[u8],
        name: &str,
        input: &str,
        opts: ExecOptions,
        worker: &crate::workflow::Worker,
        detach: bool,
    ) -> Result<Report, ExecError> {
        let (_, created) = self.submit(bytes, name, input, opts.idempotency_key.clone(), None, Some(worker)).await?;
        let executed = matches!(created, Created::New(_));
        let id = created.run().id;
        let started = std::time::Instant::now();
        if executed {
            let until = if detach { Until::Settled(id) } else { Until::Final(id) };
            worker.run(until).await?;
        }
        let duration = started.elapsed();
        let run = self.store.run(&id).await?.ok_or_else(|| store::Error::NotFound(format!("run {id}")))?;
        let journal = self.store.journal(&id).await?;
        let fuel = journal.iter().filter_map(|e| e.fuel).sum();
        Ok(Report { run, executed, fuel, entries: journal.len(), duration })
    }
}

impl Host {
    /// Checks the input and the component (of world `expect`, if given),
    /// stores the component, and creates its run (or finds the one with the
    /// same idempotency key), through `worker` when given (which then starts
    /// it at once if it can). Nothing is written if a check fails.
    async fn submit(
        &self,
        bytes: &[u8],
        name: &str,
        input: &str,
        idempotency_key: Option<String>,
        expect: Option<World>,
        worker: Option<&crate::workflow::Worker>,
    ) -> Result<(Arc<crate::engine::Loaded>, Created), ExecError> {
        serde_json::from_str::<serde::de::IgnoredAny>(input).map_err(|e| ExecError::InvalidInput(e.to_string()))?;
        let loaded = self.engine.load(bytes).await?;
        if let Some(world) = expect.filter(|w| *w != loaded.world) {
            return Err(LoadError::WrongWorld(format!("`{name}` is a {}, not a {world}", loaded.world)).into());
        }
        let component = Component {
            hash: loaded.hash.clone(),
            world: loaded.world,
            bytes: bytes.to_vec(),
            created_at: Micros::now(),
        };
        self.store.put_component(&component).await?;
        let run = NewRun {
            id: RunId::new(),
            kind: loaded.world,
            component: name.to_owned(),
            component_hash: loaded.hash.clone(),
            input: input.to_owned(),
            idempotency_key,
            created_at: Micros::now(),
            origin: None,
            flow: Default::default(),
            held: false,
        };
        let created = match worker {
            // The worker starts it at once if it has a slot free.
            Some(worker) => worker.submit(run).await?,
            None => self.store.create_run(run).await?,
        };
        Ok((loaded, created))
    }
}

/// A short name for this machine, for lease owners.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".to_owned())
}
