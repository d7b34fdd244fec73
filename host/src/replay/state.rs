//! Replaying a workflow: its own calls answered by a strict recorder, its
//! step calls re-executed against their recorded attempts.

use std::sync::{Arc, Mutex};

use wasmtime::UpdateDeadline;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{FirstDivergence, RecordedCall, Recording, ReplayError, Replayer, Report, Verdict, group_by_seq};
use crate::domain::{Entry, EntryKind, Limits, RunErrorKind, RunStatus};
use crate::engine::Loaded;
use crate::engine::bindings::orchestration::{Host, StepCall};
use crate::engine::bindings::types::{DelayedRetry, StepError};
use crate::engine::bindings::{self, workflow::WorkflowPre};
use crate::engine::recorder::{Call, Divergence, Recorder};
use crate::engine::state::{Context, Limiter, PIPE_CAPACITY, RunInfo, sandbox_wasi};

/// Why a replayed call stopped the workflow.
const STOPPED: &str = "replay stopped";

struct ReplayState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    ctx: Context,
    replayer: Replayer,
    recording: Arc<Recording>,
    report: Arc<Mutex<Report>>,
}

impl WasiView for ReplayState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl ReplayState {
    fn merge(&self, part: Report) {
        let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        report.lines.extend(part.lines);
        if let Some(d) = part.divergence {
            report.diverge(d);
        }
        if report.ended_early.is_none() {
            report.ended_early = part.ended_early;
        }
    }

    fn end_early(&self, why: String) -> wasmtime::Error {
        let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        if report.ended_early.is_none() {
            report.ended_early = Some(why);
        }
        wasmtime::Error::msg(STOPPED)
    }

    /// Checks the call at a sequence number against its first recorded entry.
    fn check(&self, recorded: &[Entry], call: &Call) -> wasmtime::Result<()> {
        let Some(first) = recorded.first() else {
            let d = Divergence { key: crate::domain::EntryKey::call(0, 0), recorded: None, actual: Some(call.clone()) };
            self.ctx.recorder.diverge(d);
            return Err(wasmtime::Error::msg(STOPPED));
        };
        if first.kind == call.kind
            && first.name == call.name
            && first.request_hash == Entry::hash_request(&call.request)
        {
            let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
            for e in recorded.iter().filter(|e| e.kind != EntryKind::Step) {
                report.line(e.key, e.kind, &e.name, Verdict::Matched);
            }
            return Ok(());
        }
        self.ctx.recorder.diverge(Divergence {
            key: first.key,
            recorded: Some(first.clone()),
            actual: Some(call.clone()),
        });
        Err(wasmtime::Error::msg(STOPPED))
    }

    async fn step(&mut self, call: StepCall) -> wasmtime::Result<Result<String, StepError>> {
        let (seq, recorded) = self.ctx.recorder.take_seq();
        let first = recorded.iter().find(|e| e.kind == EntryKind::Step).cloned();
        let asked = Call { kind: EntryKind::Step, name: call.name.clone(), request: call.input.clone() };
        match &first {
            Some(f) if f.name == call.name && f.request_hash == Entry::hash_request(&call.input) => {}
            _ => {
                let key = first.as_ref().map_or(crate::domain::EntryKey::call(seq, 1), |f| f.key);
                self.ctx.recorder.diverge(Divergence { key, recorded: first, actual: Some(asked) });
                return Err(wasmtime::Error::msg(STOPPED));
            }
        }
        let recorded_call =
            RecordedCall { name: call.name.clone(), step: call.step.clone(), input: call.input.clone() };
        let mut part = Report::default();
        let replayer = self.replayer.clone();
        let recording = self.recording.clone();
        let result = replayer.replay_step_call(&recording, &recorded_call, seq, &recorded, &mut part, None).await;
        self.merge(part);
        match result {
            Err(e) => Err(wasmtime::Error::msg(e.to_string())),
            Ok(None) => {
                Err(self.end_early(format!("the recording ends while step `{}` was still being retried", call.name)))
            }
            Ok(Some(Ok(output))) => Ok(Ok(output)),
            Ok(Some(Err((RunErrorKind::Retryable, message)))) => Ok(Err(StepError::Retryable(message))),
            Ok(Some(Err((kind, message)))) => Ok(Err(StepError::Fatal(format!("{kind}: {message}")))),
        }
    }
}

impl Host for ReplayState {
    async fn call_step(&mut self, call: StepCall) -> wasmtime::Result<Result<String, StepError>> {
        self.step(call).await
    }

    async fn call_steps(&mut self, calls: Vec<StepCall>) -> wasmtime::Result<Vec<Result<String, StepError>>> {
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            results.push(self.step(call).await?);
        }
        Ok(results)
    }

    async fn sleep(&mut self, name: String, duration_ms: u64) -> wasmtime::Result<()> {
        let (_, recorded) = self.ctx.recorder.take_seq();
        let call = Call {
            kind: EntryKind::Sleep,
            name,
            request: serde_json::json!({ "duration_ms": duration_ms }).to_string(),
        };
        self.check(&recorded, &call)
    }

    async fn wait_for_event(
        &mut self,
        name: String,
        event: String,
        filter: Option<String>,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<String>> {
        let (_, recorded) = self.ctx.recorder.take_seq();
        let request = serde_json::json!({ "event": event, "match": filter, "timeout_ms": timeout_ms }).to_string();
        let call = Call { kind: EntryKind::Event, name: name.clone(), request };
        self.check(&recorded, &call)?;
        match recorded.iter().find(|e| e.key.attempt == 1) {
            Some(got) => {
                let value: serde_json::Value = serde_json::from_str(got.response.as_deref().unwrap_or("null"))?;
                Ok(value.get("data").and_then(serde_json::Value::as_str).map(str::to_owned))
            }
            None => {
                Err(self.end_early(format!("the recording ends while the run waits for event `{event}` (`{name}`)")))
            }
        }
    }

    async fn call_workflow(
        &mut self,
        name: String,
        workflow: String,
        input: String,
    ) -> wasmtime::Result<Result<String, StepError>> {
        let (_, recorded) = self.ctx.recorder.take_seq();
        let request = serde_json::json!({ "workflow": workflow, "input": input }).to_string();
        let call = Call { kind: EntryKind::ChildRun, name: name.clone(), request };
        self.check(&recorded, &call)?;
        let Some(done) = recorded.iter().find(|e| e.key.attempt == 1) else {
            return Err(self.end_early(format!("the recording ends while child run `{name}` runs")));
        };
        let value: serde_json::Value = serde_json::from_str(done.response.as_deref().unwrap_or("null"))?;
        Ok(match value.get("output").and_then(serde_json::Value::as_str) {
            Some(o) => Ok(o.to_owned()),
            None => {
                Err(StepError::Fatal(value["error"]["message"].as_str().unwrap_or("the child run failed").to_owned()))
            }
        })
    }

    async fn start_workflow(
        &mut self,
        name: String,
        workflow: String,
        input: String,
        idempotency_key: Option<String>,
    ) -> wasmtime::Result<Result<String, StepError>> {
        let (_, recorded) = self.ctx.recorder.take_seq();
        let request = crate::workflow::start_request(&workflow, &input, &idempotency_key);
        let call = Call { kind: EntryKind::StartRun, name: name.clone(), request };
        self.check(&recorded, &call)?;
        let Some(started) = recorded.iter().find(|e| e.key.attempt == 0) else {
            return Err(self.end_early(format!("the recording ends before run `{name}` was started")));
        };
        Ok(crate::workflow::started_result(started.response.as_deref()))
    }
}

/// Replays a workflow run into `report`.
pub(super) async fn replay_workflow(
    replayer: Replayer,
    rec: &Recording,
    loaded: &Loaded,
    report: &mut Report,
) -> Result<(), ReplayError> {
    let engine = replayer.engine.clone();
    let component = loaded
        .workflow_component()
        .ok_or_else(|| ReplayError::Load(rec.run.component.clone(), "not a workflow".into()))?;
    let mut linker = Linker::<ReplayState>::new(engine.wasmtime());
    let link = |e: wasmtime::Error| ReplayError::Load(rec.run.component.clone(), format!("{e:#}"));
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
    bindings::types::add_to_linker::<ReplayState, HasSelf<Context>>(&mut linker, |s| &mut s.ctx).map_err(link)?;
    bindings::context::add_to_linker::<ReplayState, HasSelf<Context>>(&mut linker, |s| &mut s.ctx).map_err(link)?;
    bindings::orchestration::add_to_linker::<ReplayState, HasSelf<ReplayState>>(&mut linker, |s| s).map_err(link)?;
    let pre = WorkflowPre::new(linker.instantiate_pre(component).map_err(link)?).map_err(link)?;

    // The workflow's own calls (its entries at attempt 0 and child 0, and
    // event/child-run results at attempt 1) go to the strict recorder; step
    // attempts are handed to the step replays by sequence number.
    let recorder = Recorder::replay_workflow(rec.run.id, rec.journal.clone());
    let info =
        RunInfo { run_id: rec.run.id, component: rec.run.component.clone(), step: String::new(), seq: 0, attempt: 1 };
    let stdout = MemoryOutputPipe::new(PIPE_CAPACITY);
    let stderr = MemoryOutputPipe::new(PIPE_CAPACITY);
    let wasi = sandbox_wasi(&recorder, &info, engine.origin(), &stdout, &stderr);
    let shared = Arc::new(Mutex::new(Report::default()));
    let state = ReplayState {
        wasi,
        table: ResourceTable::new(),
        limiter: Limiter {
            memory_cap: usize::try_from(Limits::default().memory_bytes).unwrap_or(usize::MAX),
            memory_hit: None,
        },
        ctx: Context {
            recorder: recorder.clone(),
            info,
            secrets: replayer.secrets.clone(),
            blobs: crate::engine::Blobs::Memory(Arc::new(rec.blobs.clone())),
        },
        replayer: replayer.clone(),
        recording: Arc::new(rec.clone()),
        report: shared.clone(),
    };
    let mut store = wasmtime::Store::new(engine.wasmtime(), state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store.set_epoch_deadline(1);
    let result = match store.set_fuel(10_000_000_000) {
        Err(e) => Err(e),
        Ok(()) => match pre.instantiate_async(&mut store).await {
            Ok(instance) => instance.call_run(&mut store, &rec.run.input).await,
            Err(e) => Err(e),
        },
    };
    drop(store);
    let (matched, divergence) = recorder.finish_attempt();
    let mut part = std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner()));
    for e in matched {
        part.line(e.key, e.kind, &e.name, Verdict::Matched);
    }
    report.lines.extend(part.lines);
    report.ended_early = part.ended_early;
    if let Some(d) = part.divergence {
        report.diverge(d);
    }
    match divergence {
        // The journal simply ends: a run recorded while still in progress.
        Some(d) if d.recorded.is_none() && !rec.run.status.is_final() && report.divergence.is_none() => {
            report.ended_early = Some(format!(
                "the run was recorded while {}: everything up to the end of its journal matched",
                rec.run.status
            ));
        }
        Some(d) => {
            let key = d.key;
            let reason = d.to_string();
            report.diverge_from(&d);
            report.lines.push(super::Line {
                key,
                kind: d.recorded.as_ref().map_or(EntryKind::Step, |r| r.kind),
                name: d.actual.as_ref().or(None).map_or_else(String::new, |a| a.name.clone()),
                verdict: Verdict::Diverged { reason },
            });
        }
        None => {}
    }
    match result {
        Ok(Ok(output)) => report.output = Some(output),
        Ok(Err(e)) => {
            let (kind, message) = match e {
                StepError::Retryable(m) | StepError::RetryLater(DelayedRetry { message: m, .. }) => ("retryable", m),
                StepError::Fatal(m) => ("fatal", m),
            };
            report.output = None;
            if rec.run.status == RunStatus::Completed && report.divergence.is_none() && report.ended_early.is_none() {
                report.diverge(FirstDivergence {
                    key: crate::domain::EntryKey::call(u32::MAX, 0),
                    reason: format!("the workflow now fails ({kind}: {message}) where the recorded run completed"),
                    recorded: None,
                    replayed: None,
                });
            }
        }
        Err(e) if e.to_string() == STOPPED || format!("{e:#}").contains(STOPPED) => {}
        Err(e) => {
            if report.divergence.is_none() && report.ended_early.is_none() {
                report.diverge(FirstDivergence {
                    key: crate::domain::EntryKey::call(u32::MAX, 0),
                    reason: format!("the workflow trapped during replay: {e:#}"),
                    recorded: None,
                    replayed: None,
                });
            }
        }
    }
    let _ = group_by_seq;
    Ok(())
}
