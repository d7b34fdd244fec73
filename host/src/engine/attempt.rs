//! One attempt of a step: instantiate, call `run`, classify what happened.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Trap, UpdateDeadline, WasmBacktrace};

use super::bindings::types::StepError;
use super::recorder::{Begun, Call, Divergence, Recorder};
use super::state::{RunInfo, Settle, StepState};
use super::{AllowList, Engine, Loaded, Secrets};
use crate::domain::{Entry, EntryKey, EntryKind, EntryStatus, Limits, Micros, RunError, RunErrorKind, RunId};

/// Everything needed to run one attempt of a step.
#[derive(Clone, Debug)]
pub struct StepCall {
    pub run_id: RunId,
    /// Name of the component or deployment.
    pub component: String,
    /// Name of the step call (the component name for a lone step).
    pub step: String,
    pub seq: u32,
    pub attempt: u32,
    /// The input, as JSON text.
    pub input: String,
    pub limits: Limits,
    pub allow: AllowList,
    pub secrets: Arc<Secrets>,
    /// Where the step's `put-blob` and `get-blob` go.
    pub blobs: super::Blobs,
    /// Replay: the recorded child entries of this attempt. None runs live.
    pub replay: Option<Vec<Entry>>,
    /// Replay of a changed component: log lines need not match.
    pub changed: bool,
    /// Awaited before the step acts on the world (see [`Settle`]).
    pub settle: Option<Arc<dyn Settle>>,
}

/// What one attempt did.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The attempt's own entry: input, output or error, fuel, timing.
    pub entry: Entry,
    /// The host calls it made, in order.
    pub children: Vec<Entry>,
    /// Its output (JSON text) or why it failed.
    pub outcome: Result<String, RunError>,
    /// Fuel consumed, instantiation included.
    pub fuel: u64,
    /// Replay only: where the guest departed from the journal.
    pub divergence: Option<Divergence>,
    /// A retryable failure's own word on when to try again (`retry-later`,
    /// from a server's `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Engine {
    /// Runs one attempt of `loaded` in a fresh sandbox. Never fails: every
    /// problem, the host's included, is an outcome of the attempt.
    pub async fn run_step(&self, loaded: &Loaded, call: StepCall) -> Attempt {
        // Never closed, so the permit always comes; `ok()` keeps the
        // attempt going even if that ever changed.
        let _slot = self.step_slots.clone().acquire_owned().await.ok();
        let started_at = Micros::now();
        let recorder = match call.replay.clone() {
            Some(recorded) if call.changed => Recorder::replay_changed(call.run_id, call.seq, call.attempt, recorded),
            Some(recorded) => Recorder::replay(call.run_id, call.seq, call.attempt, recorded),
            None => Recorder::live(call.run_id, call.seq, call.attempt),
        };
        let limits = call.limits;
        let memory_cap = usize::try_from(limits.memory_bytes.min(self.config.max_memory_bytes)).unwrap_or(usize::MAX);
        let info = RunInfo {
            run_id: call.run_id,
            component: call.component.clone(),
            step: call.step.clone(),
            seq: call.seq,
            attempt: call.attempt,
        };
        let http = Arc::new(self.http_policy(call.allow.clone()));
        let mut state = StepState::new(
            info,
            recorder.clone(),
            memory_cap,
            http,
            call.secrets.clone(),
            call.blobs.clone(),
            self.origin,
        );
        state.settle = call.settle.clone();
        let mut store = wasmtime::Store::new(&self.wasmtime, state);
        store.limiter(|s| &mut s.limiter);
        // Yield to the executor on every epoch tick, so the deadline below can
        // fire even while the guest spins without calling the host.
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store.set_epoch_deadline(1);

        let result = match store.set_fuel(limits.fuel) {
            Err(e) => Ok(Err(e)),
            Ok(()) => {
                let run = async {
                    let Some(pre) = loaded.step_pre() else {
                        wasmtime::bail!("`{}` is a workflow, not a step", call.step);
                    };
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance.call_run(&mut store, &call.input).await
                };
                tokio::time::timeout(limits.timeout, run).await
            }
        };
        let fuel = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let memory_hit = store.data().limiter.memory_hit;
        let stdout = store.data().stdout.contents();
        let stderr = store.data().stderr.contents();
        drop(store);

        record_output(&recorder, "stdout", &stdout);
        record_output(&recorder, "stderr", &stderr);
        let (children, divergence) = recorder.finish_attempt();

        let step = &call.step;
        let mut retry_after = None;
        let outcome = match result {
            Err(_elapsed) => Err(RunError {
                kind: RunErrorKind::Timeout,
                message: format!(
                    "step `{step}` ran past its deadline of {:?} and was stopped (raise it with --timeout)",
                    limits.timeout
                ),
            }),
            Ok(Ok(Ok(output))) => check_output(step, output, limits.output_bytes),
            Ok(Ok(Err(StepError::Retryable(message)))) => Err(RunError { kind: RunErrorKind::Retryable, message }),
            Ok(Ok(Err(StepError::RetryLater(d)))) => {
                retry_after = Some(Duration::from_millis(d.after_ms));
                Err(RunError { kind: RunErrorKind::Retryable, message: d.message })
            }
            Ok(Ok(Err(StepError::Fatal(message)))) => Err(RunError { kind: RunErrorKind::Fatal, message }),
            Ok(Err(e)) => Err(classify_failure(step, &e, &limits, memory_hit, &stderr)),
        };
        let outcome = match (&divergence, outcome) {
            (Some(d), _) => Err(RunError { kind: RunErrorKind::Nondeterministic, message: d.to_string() }),
            (None, outcome) => outcome,
        };
        let finished_at = Micros::now();
        let (response, status, error) = match &outcome {
            Ok(output) => (Some(output.clone()), EntryStatus::Ok, None),
            Err(e) => (serde_json::to_string(e).ok(), EntryStatus::Error, Some(e.to_string())),
        };
        let entry = Entry {
            run_id: call.run_id,
            key: EntryKey::call(call.seq, call.attempt),
            kind: EntryKind::Step,
            name: call.step.clone(),
            request_hash: Entry::hash_request(&call.input),
            request: call.input,
            response,
            status,
            error,
            started_at,
            finished_at,
            fuel: Some(fuel),
            component: Some(format!("{}@{}", call.component, loaded.hash)),
        };
        Attempt { entry, children, outcome, fuel, divergence, retry_after }
    }
}

/// Journals what the guest wrote to stdout or stderr as a log entry.
fn record_output(recorder: &Recorder, stream: &str, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let text = recorder.redact(&String::from_utf8_lossy(bytes));
    let call =
        Call { kind: EntryKind::Log, name: stream.to_owned(), request: serde_json::Value::String(text).to_string() };
    if let Begun::Live { key, started_at } = recorder.begin(call.clone()) {
        recorder.finish(key, call, started_at, None, EntryStatus::Ok, None);
    }
}

fn check_output(step: &str, output: String, cap: u64) -> Result<String, RunError> {
    if output.len() as u64 > cap {
        return Err(RunError {
            kind: RunErrorKind::OutputTooLarge,
            message: format!("step `{step}` returned {} bytes, more than the output cap of {cap} bytes", output.len()),
        });
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(&output) {
        Ok(_) => Ok(output),
        Err(e) => Err(RunError {
            kind: RunErrorKind::InvalidJson,
            message: format!("step `{step}` returned output that is not JSON ({e}); outputs must be JSON text"),
        }),
    }
}

/// The message of a Rust panic in the guest's stderr: the text after the
/// `panicked at FILE:LINE:COL:` line.
fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    lines.find(|l| l.contains("panicked at "))?;
    let message: Vec<&str> = lines.take_while(|l| !l.starts_with("note: ")).collect();
    let message = message.join("\n");
    (!message.trim().is_empty()).then(|| message.trim().to_owned())
}

/// Turns a wasmtime error into a failure people can act on.
fn classify_failure(
    step: &str,
    e: &wasmtime::Error,
    limits: &Limits,
    memory_hit: Option<usize>,
    stderr: &[u8],
) -> RunError {
    if let Some(desired) = memory_hit {
        return RunError {
            kind: RunErrorKind::MemoryLimit,
            message: format!(
                "step `{step}` hit its memory cap: it tried to grow its memory to {desired} bytes, past the cap of {} bytes \
                 (raise it with --memory if the step really needs more)",
                limits.memory_bytes
            ),
        };
    }
    let backtrace = e.downcast_ref::<WasmBacktrace>().map(|bt| bt.to_string());
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => RunError {
            kind: RunErrorKind::FuelExhausted,
            message: format!(
                "step `{step}` ran out of fuel: it used its whole budget of {} (look for an endless loop, or raise it with --fuel)",
                limits.fuel
            ),
        },
        Some(trap) => {
            let said = String::from_utf8_lossy(stderr);
            let said = said.trim();
            let mut message = match panic_message(said) {
                Some(panic) => format!("step `{step}` panicked: {panic} ({trap})"),
                None => format!("step `{step}` trapped: {trap}"),
            };
            if !said.is_empty() {
                message.push_str("\nguest stderr:\n");
                message.push_str(said);
            }
            if let Some(bt) = backtrace {
                message.push('\n');
                message.push_str(bt.trim_end());
            }
            RunError { kind: RunErrorKind::Trap, message }
        }
        None if e.to_string().starts_with("nondeterministic") || format!("{e:#}").contains("nondeterministic") => {
            RunError { kind: RunErrorKind::Nondeterministic, message: format!("{e:#}") }
        }
        None => RunError { kind: RunErrorKind::Host, message: format!("step `{step}` could not run: {e:#}") },
    }
}

/// A step instantiated once and called many times: the baseline that
/// per-step overhead is measured against (benchmarks only; real attempts
/// always get a fresh instance).
#[doc(hidden)]
pub struct LiveInstance {
    store: wasmtime::Store<StepState>,
    step: super::bindings::step::Step,
}

impl LiveInstance {
    /// Calls `run` on the live instance.
    pub async fn call(&mut self, input: &str) -> Result<Result<String, StepError>, wasmtime::Error> {
        self.store.set_fuel(u64::MAX / 2)?;
        self.step.call_run(&mut self.store, input).await
    }
}

impl Engine {
    /// Instantiates `loaded` once for [`LiveInstance`] calls.
    #[doc(hidden)]
    pub async fn live_instance(&self, loaded: &Loaded) -> Result<LiveInstance, wasmtime::Error> {
        let recorder = Recorder::live(RunId::new(), 0, 1);
        let info =
            RunInfo { run_id: RunId::new(), component: "bench".into(), step: "bench".into(), seq: 0, attempt: 1 };
        let http = Arc::new(self.http_policy(AllowList::default()));
        let state = StepState::new(
            info,
            recorder,
            64 << 20,
            http,
            Arc::new(Secrets::default()),
            super::Blobs::None,
            self.origin,
        );
        let mut store = wasmtime::Store::new(&self.wasmtime, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store.set_epoch_deadline(1);
        store.set_fuel(u64::MAX / 2)?;
        let pre = loaded.step_pre().ok_or_else(|| wasmtime::format_err!("not a step"))?;
        let step = pre.instantiate_async(&mut store).await?;
        Ok(LiveInstance { store, step })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_lifted_from_stderr() {
        let stderr = "thread '<unnamed>' (1) panicked at src/lib.rs:11:5:\nboom: x\nnote: run with `RUST_BACKTRACE=1`";
        assert_eq!(panic_message(stderr).as_deref(), Some("boom: x"));
        assert_eq!(panic_message("just noise"), None);
    }

    #[test]
    fn outputs_must_be_small_json() {
        assert!(check_output("s", "{\"a\":1}".into(), 100).is_ok());
        assert_eq!(check_output("s", "not json".into(), 100).unwrap_err().kind, RunErrorKind::InvalidJson);
        assert_eq!(check_output("s", "[1,2,3]".into(), 3).unwrap_err().kind, RunErrorKind::OutputTooLarge);
    }
}
