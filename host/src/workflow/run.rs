//! Executing one claimed run: a workflow by replay over its journal, or a
//! lone step with retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::appends::InFlight;
use super::state::{Interrupt, Suspension, WorkflowState};
use super::steps::StepResolver;
use crate::domain::{
    ComponentHash, Entry, EntryKind, EntryStatus, Limits, Micros, RetryPolicy, Run, RunError, RunErrorKind, World,
};
use crate::engine::bindings::{self, workflow::WorkflowPre};
use crate::engine::recorder::{Divergence, Recorder};
use crate::engine::state::{Context, Limiter, PIPE_CAPACITY, RunInfo, sandbox_wasi};
use crate::engine::{AllowList, Engine, Loaded, Secrets, StepCall};
use crate::store::{self, Lease, Outcome, Park, Store};

/// Fuel a workflow may burn in one execution (its own code only; steps have
/// their own budgets). Orchestration code is small: this stops a runaway
/// loop, not honest work.
const WORKFLOW_FUEL: u64 = 10_000_000_000;

/// Defaults a run executes under.
#[derive(Clone, Debug)]
pub struct RunPolicy {
    pub retry: RetryPolicy,
    pub limits: Limits,
    pub allow: AllowList,
    /// Backoffs up to this long are waited out in place; longer ones park
    /// the run.
    pub inline_backoff: Duration,
    /// The run computes ahead of its commits: a step is called while the
    /// entries before it may still be committing (its requests wait for
    /// them). Off, each step waits until they are durable.
    pub run_ahead: bool,
}

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            limits: Limits::default(),
            allow: AllowList::default(),
            inline_backoff: Duration::from_secs(2),
            run_ahead: true,
        }
    }
}

/// What a failed attempt's entry records besides the error: when the next
/// attempt is due, or none when the failure is final.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    #[serde(flatten)]
    pub error: RunError,
    pub retry_at: Option<Micros>,
}

/// How a step call ended for the caller.
pub enum StepOutcome {
    /// The final result.
    Done(Result<String, RunError>),
    /// The next attempt is far off: park the run until then.
    Park(Micros),
}

/// Everything the execution of one claimed run needs.
pub struct RunCtx {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub steps: Arc<StepResolver>,
    pub secrets: Arc<Secrets>,
    pub policy: RunPolicy,
    /// For a lone-step run: the run's own (pinned) component, and the
    /// settings of its deployment if it has one.
    pub pinned_step: Option<Arc<Loaded>>,
    pub pinned_config: Option<crate::domain::DeploymentConfig>,
    pub run: Run,
    pub lease: Lease,
    /// The highest event id this run has taken, so a later wait does not
    /// take the same event again.
    pub last_event: Mutex<i64>,
    /// The run's journal writes on their way: see [`InFlight`].
    pub in_flight: Arc<InFlight>,
    /// The steps this execution has resolved, by name: a step is looked up
    /// (its active deployment read) once per execution, not per call.
    pub resolved: Mutex<HashMap<String, super::steps::Resolved>>,
}

impl RunCtx {
    /// Hands `entries` to the store under the run's lease and returns
    /// without waiting for the commit: the workflow goes on computing, and
    /// its next step runs, while the commit and its fsync are in flight.
    /// Nothing seen outside the run happens before they are durable (see
    /// [`InFlight`]).
    async fn append_soon(&self, entries: Vec<Entry>) -> Result<(), Interrupt> {
        self.in_flight.append(entries).await.map_err(Interrupt::LeaseLost)
    }

    /// The step `name` as this execution first resolved it: the version
    /// active when the run first called it here. A version activated later
    /// applies from the run's next execution (after it parks or resumes),
    /// so one execution never mixes two versions of a step, and a 12-step
    /// run reads a deployment once per step name, not once per call. A
    /// step that could not be resolved is looked up again on the next call.
    async fn resolve(&self, name: &str) -> Result<super::steps::Resolved, super::steps::Unresolved> {
        if let Some(r) = self.resolved.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(r.clone());
        }
        let r = self.steps.resolve(name).await?;
        self.resolved.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), r.clone());
        Ok(r)
    }

    /// Waits until every append this run started is durable; `Err` says
    /// why one failed (the lease moved, the store stayed unavailable), and
    /// then the run must stop: what it computed since is discarded.
    pub async fn durable(&self) -> Result<(), String> {
        self.in_flight.durable().await
    }

    /// Runs the step call at `seq` to its end (or to a park), answering
    /// from `recorded` (the journal's entries at `seq`) what already
    /// happened. Attempts are committed, fenced, as they finish; workflow
    /// entries pending in `recorder` are committed with them.
    pub async fn step_call(
        &self,
        recorder: &Recorder,
        seq: u32,
        recorded: Vec<Entry>,
        call: &crate::engine::bindings::orchestration::StepCall,
    ) -> Result<StepOutcome, Interrupt> {
        let mut attempts: Vec<Entry> = recorded
            .into_iter()
            .filter(|e| e.key.child == 0 && e.key.attempt >= 1 && e.kind == EntryKind::Step)
            .collect();
        attempts.sort_by_key(|e| e.key.attempt);
        if let Some(first) = attempts.first()
            && (first.name != call.name || first.request_hash != Entry::hash_request(&call.input))
        {
            let d = Divergence {
                key: first.key,
                recorded: Some(first.clone()),
                actual: Some(crate::engine::recorder::Call {
                    kind: EntryKind::Step,
                    name: call.name.clone(),
                    request: call.input.clone(),
                }),
            };
            recorder.diverge(d);
            return Err(Interrupt::Nondeterministic);
        }
        let retry = call.options.as_ref().and_then(|o| o.retry.as_ref()).map_or(self.policy.retry, retry_from_wit);
        let limits = limits_for(&self.policy.limits, call.options.as_ref());
        loop {
            let next = match attempts.last() {
                None => 1,
                Some(last) if last.status == EntryStatus::Ok => {
                    return Ok(StepOutcome::Done(Ok(last.response.clone().unwrap_or_else(|| "null".into()))));
                }
                Some(last) => {
                    let failure = last.response.as_deref().and_then(|r| serde_json::from_str::<Failure>(r).ok());
                    let Some(failure) = failure else {
                        let message = last.error.clone().unwrap_or_else(|| "the step failed".into());
                        return Ok(StepOutcome::Done(Err(RunError { kind: RunErrorKind::Host, message })));
                    };
                    let Some(retry_at) = failure.retry_at else {
                        return Ok(StepOutcome::Done(Err(failure.error)));
                    };
                    let now = Micros::now();
                    if retry_at > now {
                        let wait = retry_at.since(now);
                        if wait > self.policy.inline_backoff {
                            return Ok(StepOutcome::Park(retry_at));
                        }
                        tokio::time::sleep(wait).await;
                    }
                    last.key.attempt + 1
                }
            };
            let resolved = match &self.pinned_step {
                Some(pinned) => {
                    Ok(super::steps::Resolved { loaded: pinned.clone(), config: self.pinned_config.clone() })
                }
                None => match self.resolve(&call.step).await {
                    Ok(r) => Ok(r),
                    Err(super::steps::Unresolved::Store(why)) => return Err(Interrupt::LeaseLost(why)),
                    Err(super::steps::Unresolved::Invalid(message)) => Err(message),
                },
            };
            if let Ok(r) = &resolved
                && let Some(at) = self.take_rate(r, call).await?
            {
                let wait = at.since(Micros::now());
                crate::metrics::rate_wait(wait);
                if wait > self.policy.inline_backoff {
                    return Ok(StepOutcome::Park(at));
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            let entries = self.attempt(call, seq, next, &retry, limits, resolved).await?;
            let mut batch = recorder.drain();
            batch.extend(entries.iter().cloned());
            self.append_soon(batch).await?;
            attempts.push(entries.into_iter().next().ok_or_else(|| Interrupt::LeaseLost("no attempt entry".into()))?);
        }
    }

    /// Runs attempt `attempt` of a step call and returns its entries: the
    /// attempt's own first (its response says whether and when to retry),
    /// then its children. A store that cannot be read to find the step
    /// interrupts the run instead (it resumes from its journal): an outage
    /// must not fail the call.
    async fn attempt(
        &self,
        call: &crate::engine::bindings::orchestration::StepCall,
        seq: u32,
        attempt: u32,
        retry: &RetryPolicy,
        limits: Limits,
        resolved: Result<super::steps::Resolved, String>,
    ) -> Result<Vec<Entry>, Interrupt> {
        let started_at = Micros::now();
        let (loaded, config) = match resolved {
            Ok(r) => (r.loaded, r.config),
            Err(message) => {
                let error = RunError { kind: RunErrorKind::Fatal, message };
                let failure = Failure { error: error.clone(), retry_at: None };
                return Ok(vec![Entry {
                    run_id: self.run.id,
                    key: crate::domain::EntryKey::call(seq, attempt),
                    kind: EntryKind::Step,
                    name: call.name.clone(),
                    request: call.input.clone(),
                    request_hash: Entry::hash_request(&call.input),
                    response: serde_json::to_string(&failure).ok(),
                    status: EntryStatus::Error,
                    error: Some(error.to_string()),
                    started_at,
                    finished_at: Micros::now(),
                    fuel: None,
                    component: None,
                }]);
            }
        };
        // The step runs while what the run wrote before it may still be
        // committing: it awaits that before it acts on the world (or
        // before it starts, without run-ahead).
        if !self.policy.run_ahead {
            self.durable().await.map_err(Interrupt::LeaseLost)?;
        }
        let a = self
            .engine
            .run_step(
                &loaded,
                StepCall {
                    run_id: self.run.id,
                    component: call.step.clone(),
                    step: call.name.clone(),
                    seq,
                    attempt,
                    input: call.input.clone(),
                    limits: match &config {
                        Some(c) => Limits {
                            fuel: c.fuel.unwrap_or(limits.fuel),
                            memory_bytes: c.memory_bytes.unwrap_or(limits.memory_bytes),
                            timeout: c.timeout_ms.map_or(limits.timeout, Duration::from_millis),
                            output_bytes: limits.output_bytes,
                        },
                        None => limits,
                    },
                    allow: match &config {
                        Some(c) => AllowList::new(c.allow_hosts.iter().cloned()),
                        None => self.policy.allow.clone(),
                    },
                    secrets: self.secrets.clone(),
                    blobs: crate::engine::Blobs::Store(self.store.clone()),
                    replay: None,
                    changed: false,
                    settle: Some(self.in_flight.clone()),
                },
            )
            .await;
        crate::metrics::step_attempt(attempt, a.fuel, a.entry.finished_at.since(a.entry.started_at));
        let mut entry = a.entry;
        if let Err(error) = &a.outcome {
            let retry_at = (retryable(error.kind, retry) && attempt < retry.max_attempts).then(|| {
                let unit: f64 = rand::rng().random();
                let backoff = retry.delay_before(attempt + 1, unit);
                // The server's word wins when it asks for longer.
                Micros::now().plus(a.retry_after.map_or(backoff, |after| backoff.max(after)))
            });
            entry.response = serde_json::to_string(&Failure { error: error.clone(), retry_at }).ok();
        }
        let mut out = vec![entry];
        out.extend(a.children);
        Ok(out)
    }
}

impl RunCtx {
    /// For a step whose deployment sets a `rate`: takes a start from it, or
    /// says when the next start is allowed. The wait is not an attempt and
    /// is not journaled: it changes when the step runs, not what it sees.
    async fn take_rate(
        &self,
        resolved: &super::steps::Resolved,
        call: &crate::engine::bindings::orchestration::StepCall,
    ) -> Result<Option<Micros>, Interrupt> {
        let Some(rate) = resolved.config.as_ref().and_then(|c| c.rate.as_ref()) else { return Ok(None) };
        let mut key = format!("step:{}", call.step);
        if let Some(pointer) = &rate.key {
            let input: serde_json::Value = serde_json::from_str(&call.input).unwrap_or_default();
            match input.pointer(pointer) {
                Some(serde_json::Value::String(s)) => key = format!("{key}/{s}"),
                Some(v) => key = format!("{key}/{v}"),
                None => {}
            }
        }
        let period = Duration::from_millis(rate.period_ms.max(1));
        self.store.take_rate(&key, rate.limit.max(1), period, Micros::now()).await.map_err(|e| lost(&e))
    }
}

/// Appends entries, trying again for a few seconds while the database is
/// unavailable (a dropped connection, a restarting server) before the run is
/// abandoned to be resumed later. Only `Unavailable` is retried: if the first
/// try did commit after all, the retry meets its own entries as a
/// `Conflict`, and the run is abandoned and resumed from what is stored.
pub async fn append_retrying(store: &dyn Store, lease: &store::Lease, entries: Vec<Entry>) -> store::Result<()> {
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match store.append(lease, entries.clone()).await {
            Err(store::Error::Unavailable(why)) if tries < 5 => {
                tries += 1;
                tracing::warn!(run = %lease.run_id, error = %why, "journal write failed; trying again in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

fn lost(e: &store::Error) -> Interrupt {
    Interrupt::LeaseLost(e.to_string())
}

/// Whether another attempt may help.
pub fn retryable(kind: RunErrorKind, policy: &RetryPolicy) -> bool {
    match kind {
        RunErrorKind::Retryable | RunErrorKind::Trap | RunErrorKind::Timeout | RunErrorKind::Host => true,
        RunErrorKind::FuelExhausted => policy.retry_fuel_exhausted,
        RunErrorKind::Fatal
        | RunErrorKind::MemoryLimit
        | RunErrorKind::OutputTooLarge
        | RunErrorKind::InvalidJson
        | RunErrorKind::Nondeterministic
        | RunErrorKind::Cancelled => false,
    }
}

fn retry_from_wit(p: &bindings::types::RetryPolicy) -> RetryPolicy {
    RetryPolicy {
        max_attempts: p.max_attempts.max(1),
        initial_delay: Duration::from_millis(p.initial_delay_ms),
        factor: if p.factor.is_finite() { p.factor } else { 2.0 },
        max_delay: Duration::from_millis(p.max_delay_ms),
        jitter: if p.jitter.is_finite() { p.jitter } else { 0.0 },
        retry_fuel_exhausted: p.retry_fuel_exhausted,
    }
}

fn limits_for(defaults: &Limits, options: Option<&bindings::types::StepOptions>) -> Limits {
    let Some(o) = options else { return *defaults };
    Limits {
        fuel: o.fuel.unwrap_or(defaults.fuel),
        memory_bytes: o.memory_bytes.unwrap_or(defaults.memory_bytes),
        timeout: o.timeout_ms.map_or(defaults.timeout, Duration::from_millis),
        output_bytes: defaults.output_bytes,
    }
}

/// How an execution of a run ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    Finished(Outcome),
    Parked(Suspension),
    /// The lease moved; nothing more was written.
    Abandoned(String),
}

/// Runs workflows: links the orchestration interface once and keeps one
/// `InstancePre` per workflow component.
pub struct Executor {
    engine: Arc<Engine>,
    linker: Linker<WorkflowState>,
    pres: Mutex<HashMap<ComponentHash, WorkflowPre<WorkflowState>>>,
}

impl Executor {
    pub fn new(engine: Arc<Engine>) -> wasmtime::Result<Self> {
        let mut linker = Linker::<WorkflowState>::new(engine.wasmtime());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::types::add_to_linker::<WorkflowState, HasSelf<Context>>(&mut linker, |s| &mut s.ctx)?;
        bindings::context::add_to_linker::<WorkflowState, HasSelf<Context>>(&mut linker, |s| &mut s.ctx)?;
        bindings::orchestration::add_to_linker::<WorkflowState, HasSelf<WorkflowState>>(&mut linker, |s| s)?;
        Ok(Self { engine, linker, pres: Mutex::new(HashMap::new()) })
    }

    fn pre(&self, loaded: &Loaded) -> Result<WorkflowPre<WorkflowState>, String> {
        if let Some(p) = self.pres.lock().unwrap_or_else(|e| e.into_inner()).get(&loaded.hash) {
            return Ok(p.clone());
        }
        let component = loaded.workflow_component().ok_or("not a workflow component")?;
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| format!("{e:#}"))?;
        let pre = WorkflowPre::new(instance_pre).map_err(|e| format!("{e:#}"))?;
        self.pres.lock().unwrap_or_else(|e| e.into_inner()).insert(loaded.hash.clone(), pre.clone());
        Ok(pre)
    }

    /// Executes a claimed run until it finishes, parks or loses its lease,
    /// and records that in the store.
    pub async fn execute(&self, ctx: Arc<RunCtx>, loaded: &Loaded) -> Result<Ending, store::Error> {
        let ending = match loaded.world {
            World::Workflow => self.execute_workflow(ctx.clone(), loaded).await?,
            World::Step => execute_lone_step(&ctx).await,
        };
        // The run's end is seen outside it: what was sent before lands
        // first, and what was not is written with the end, in one commit.
        let (ending, rest) = match (ending, ctx.in_flight.rest().await) {
            (Ending::Finished(_) | Ending::Parked(_), Err(why)) => (Ending::Abandoned(why), Vec::new()),
            (ending, rest) => (ending, rest.unwrap_or_default()),
        };
        let now = Micros::now();
        match &ending {
            Ending::Finished(outcome) => {
                ctx.store.finish(&ctx.lease, rest, outcome.clone(), now).await?;
                // A child run wakes its parent.
                if ctx
                    .run
                    .idempotency_key
                    .as_deref()
                    .is_some_and(|k| k.starts_with(super::orchestration::CHILD_KEY_PREFIX))
                {
                    ctx.store.send_event(&super::orchestration::finished_event(&ctx.run.id), "{}", now).await?;
                }
            }
            Ending::Parked(s) => {
                let park = Park { wake_at: s.wake_at, event: s.event.clone() };
                ctx.store.park(&ctx.lease, rest, park).await?;
            }
            // `why` tells a moved lease (another worker owns the run now)
            // from a write the store failed (the run resumes from its
            // journal once its lease expires).
            Ending::Abandoned(why) => {
                tracing::warn!(run = %ctx.run.id, why, "abandoned the run, discarding its work since the last write")
            }
        }
        Ok(ending)
    }

    async fn execute_workflow(&self, ctx: Arc<RunCtx>, loaded: &Loaded) -> Result<Ending, store::Error> {
        let pre = match self.pre(loaded) {
            Ok(p) => p,
            Err(message) => {
                return Ok(Ending::Finished(Outcome::Failed { error: RunError { kind: RunErrorKind::Host, message } }));
            }
        };
        let journal = journal_of(&ctx).await?;
        let recorder = Recorder::workflow(ctx.run.id, journal);
        let info = RunInfo {
            run_id: ctx.run.id,
            component: ctx.run.component.clone(),
            step: String::new(),
            seq: 0,
            attempt: 1,
        };
        let stdout = MemoryOutputPipe::new(PIPE_CAPACITY);
        let stderr = MemoryOutputPipe::new(PIPE_CAPACITY);
        let wasi = sandbox_wasi(&recorder, &info, self.engine.origin(), &stdout, &stderr);
        let interrupt = Arc::new(Mutex::new(None));
        let state = WorkflowState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_cap: usize::try_from(ctx.policy.limits.memory_bytes).unwrap_or(usize::MAX),
                memory_hit: None,
            },
            ctx: Context {
                recorder: recorder.clone(),
                info,
                secrets: ctx.secrets.clone(),
                blobs: crate::engine::Blobs::Store(ctx.store.clone()),
            },
            run: ctx.clone(),
            interrupt: interrupt.clone(),
        };
        let mut store = wasmtime::Store::new(self.engine.wasmtime(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store.set_epoch_deadline(1);
        let result = match store.set_fuel(WORKFLOW_FUEL) {
            Err(e) => Err(e),
            Ok(()) => match pre.instantiate_async(&mut store).await {
                Ok(instance) => instance.call_run(&mut store, &ctx.run.input).await,
                Err(e) => Err(e),
            },
        };
        let memory_hit = store.data().limiter.memory_hit;
        drop(store);
        let interrupted = interrupt.lock().unwrap_or_else(|e| e.into_inner()).take();
        // What the workflow recorded after its last step goes with the
        // run's end (see `execute`).
        let pending = recorder.drain();
        if let Some(d) = recorder.divergence() {
            let error = RunError { kind: RunErrorKind::Nondeterministic, message: describe(&d) };
            return Ok(match ctx.in_flight.append(pending).await {
                Ok(()) => Ending::Finished(Outcome::Failed { error }),
                Err(why) => Ending::Abandoned(why),
            });
        }
        if let Some(Interrupt::LeaseLost(why)) = interrupted {
            return Ok(Ending::Abandoned(why));
        }
        if let Err(why) = ctx.in_flight.append(pending).await {
            return Ok(Ending::Abandoned(why));
        }
        if let Some(Interrupt::Suspend(s)) = interrupted {
            return Ok(Ending::Parked(s));
        }
        let outcome = match result {
            Ok(Ok(output)) => match serde_json::from_str::<serde::de::IgnoredAny>(&output) {
                Ok(_) => Outcome::Completed { output },
                Err(e) => Outcome::Failed {
                    error: RunError {
                        kind: RunErrorKind::InvalidJson,
                        message: format!("the workflow returned output that is not JSON: {e}"),
                    },
                },
            },
            Ok(Err(
                bindings::types::StepError::Retryable(message)
                | bindings::types::StepError::RetryLater(bindings::types::DelayedRetry { message, .. }),
            )) => Outcome::Failed { error: RunError { kind: RunErrorKind::Retryable, message } },
            Ok(Err(bindings::types::StepError::Fatal(message))) => {
                Outcome::Failed { error: RunError { kind: RunErrorKind::Fatal, message } }
            }
            Err(e) => Outcome::Failed { error: classify(&e, memory_hit, &String::from_utf8_lossy(&stderr.contents())) },
        };
        Ok(Ending::Finished(outcome))
    }
}

/// The run's journal so far. On the run's first lease (epoch 1) it is
/// empty without a read: every entry is written under a lease, and no lease
/// came before this one (a rerun's kept entries are written under its
/// creator's lease, so the worker's is the second).
async fn journal_of(ctx: &RunCtx) -> Result<Vec<Entry>, store::Error> {
    if ctx.lease.epoch == 1 {
        return Ok(Vec::new());
    }
    ctx.store.journal(&ctx.run.id).await
}

/// A lone-step run: one step call at seq 0, retried under the policy.
async fn execute_lone_step(ctx: &Arc<RunCtx>) -> Ending {
    let journal = match journal_of(ctx).await {
        Ok(j) => j,
        Err(e) => return Ending::Abandoned(e.to_string()),
    };
    let recorder = Recorder::workflow(ctx.run.id, journal);
    let (seq, recorded) = recorder.take_seq();
    let call = crate::engine::bindings::orchestration::StepCall {
        name: ctx.run.component.clone(),
        step: ctx.run.component.clone(),
        input: ctx.run.input.clone(),
        options: None,
    };
    match ctx.step_call(&recorder, seq, recorded, &call).await {
        Ok(StepOutcome::Done(Ok(output))) => Ending::Finished(Outcome::Completed { output }),
        Ok(StepOutcome::Done(Err(error))) => Ending::Finished(Outcome::Failed { error }),
        Ok(StepOutcome::Park(at)) => Ending::Parked(Suspension { wake_at: Some(at), event: None }),
        Err(Interrupt::LeaseLost(why)) => Ending::Abandoned(why),
        Err(Interrupt::Suspend(s)) => Ending::Parked(s),
        Err(Interrupt::Nondeterministic) => {
            let message = recorder.divergence().map_or_else(|| "nondeterministic".to_owned(), |d| describe(&d));
            Ending::Finished(Outcome::Failed { error: RunError { kind: RunErrorKind::Nondeterministic, message } })
        }
    }
}

/// The message of a nondeterminism failure: where, and both sides.
pub fn describe(d: &Divergence) -> String {
    let mut out = d.to_string();
    if let Some(r) = &d.recorded {
        out.push_str(&format!("\n  journal: {} `{}` request {}", r.kind, r.name, cut(&r.request, 300)));
    }
    if let Some(a) = &d.actual {
        out.push_str(&format!("\n  now:     {} `{}` request {}", a.kind, a.name, cut(&a.request, 300)));
    }
    out
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_owned() } else { text.chars().take(max).chain(['…']).collect() }
}

fn classify(e: &wasmtime::Error, memory_hit: Option<usize>, stderr: &str) -> RunError {
    if memory_hit.is_some() {
        return RunError { kind: RunErrorKind::MemoryLimit, message: "the workflow hit its memory cap".into() };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => RunError {
            kind: RunErrorKind::FuelExhausted,
            message: format!("the workflow used more than {WORKFLOW_FUEL} fuel in one execution (an endless loop?)"),
        },
        Some(trap) => {
            let said = stderr.trim();
            let message = if said.is_empty() {
                format!("the workflow trapped: {trap}")
            } else {
                format!("the workflow trapped: {trap}\n{said}")
            };
            RunError { kind: RunErrorKind::Trap, message }
        }
        None => RunError { kind: RunErrorKind::Host, message: format!("the workflow could not run: {e:#}") },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{EntryKey, RunId};
    use crate::engine::EngineConfig;
    use crate::store::contract::{entry, queued};

    /// A claimed run's context on a fresh SQLite store.
    async fn ctx() -> (Arc<RunCtx>, crate::store::contract::Harness) {
        let harness = crate::store::sqlite::test_harness().await.expect("the SQLite harness");
        let store = harness.store.clone();
        let engine = Arc::new(
            Engine::new(EngineConfig { max_instances: 1, max_memory_bytes: 1 << 24, ..Default::default() })
                .expect("an engine"),
        );
        let run = queued(&*store, RunId::new()).await;
        let lease = store.claim(&run.id, "w1", Duration::from_secs(30), Micros::now()).await.expect("claim");
        let ctx = RunCtx {
            store: store.clone(),
            engine: engine.clone(),
            steps: Arc::new(StepResolver::new(engine, store.clone(), Default::default(), Vec::new())),
            secrets: Arc::default(),
            policy: RunPolicy::default(),
            pinned_step: None,
            pinned_config: None,
            run,
            lease: lease.clone(),
            last_event: Mutex::new(0),
            in_flight: Arc::new(InFlight::new(store, lease)),
            resolved: Mutex::default(),
        };
        (Arc::new(ctx), harness)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_started_are_durable_once_awaited_and_a_failure_sticks() {
        let (ctx, _dir) = ctx().await;
        let id = ctx.run.id;
        ctx.append_soon(vec![entry(id, 1, 1, 0)]).await.expect("started");
        ctx.append_soon(vec![entry(id, 2, 1, 0)]).await.expect("started");
        ctx.durable().await.expect("both landed");
        let keys: Vec<EntryKey> = ctx.store.journal(&id).await.unwrap().iter().map(|e| e.key).collect();
        assert_eq!(keys, [EntryKey::call(1, 1), EntryKey::call(2, 1)]);

        // Another worker takes the run over: the next append fails, and so
        // does every later wait, so no step is called on a lost lease.
        let later = Micros::now().plus(Duration::from_secs(60));
        ctx.store.claim(&id, "w2", Duration::from_secs(30), later).await.expect("taken over");
        ctx.append_soon(vec![entry(id, 3, 1, 0)]).await.expect("started");
        let why = ctx.durable().await.expect_err("the lease moved");
        assert!(why.contains("lease"), "{why}");
        assert_eq!(ctx.durable().await, Err(why), "the failure sticks");
        assert_eq!(ctx.store.journal(&id).await.unwrap().len(), 2, "the stale append wrote nothing");
    }
}
