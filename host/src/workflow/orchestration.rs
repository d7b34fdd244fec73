//! `ferry:runtime/orchestration`: step calls, sleeps and event waits, each
//! taking the next sequence number of the run's journal.

use futures::future::join_all;
use serde_json::{Value, json};

use super::run::StepOutcome;
use super::state::{Interrupt, Suspension, WorkflowState};
use crate::domain::{Entry, EntryKey, EntryKind, EntryStatus, Micros, RunError, RunErrorKind, RunId};
use crate::engine::bindings::orchestration::{Host, StepCall};
use crate::engine::bindings::types::StepError;
use crate::engine::recorder::{Call, Divergence};

/// The workflow's view of a failed step call.
fn to_step_error(e: RunError) -> StepError {
    match e.kind {
        RunErrorKind::Retryable => StepError::Retryable(e.message),
        kind => StepError::Fatal(format!("{kind}: {}", e.message)),
    }
}

impl WorkflowState {
    /// Checks the journal's first entry at a sequence number against the
    /// call the workflow makes now.
    fn check(&self, recorded: &[Entry], call: &Call) -> Result<(), wasmtime::Error> {
        let Some(first) = recorded.first() else { return Ok(()) };
        if first.kind == call.kind
            && first.name == call.name
            && first.request_hash == Entry::hash_request(&call.request)
        {
            return Ok(());
        }
        self.ctx.recorder.diverge(Divergence {
            key: first.key,
            recorded: Some(first.clone()),
            actual: Some(call.clone()),
        });
        Err(self.interrupt(Interrupt::Nondeterministic))
    }

    /// A workflow-level entry at `(seq, attempt, 0)`, recorded now.
    fn entry(&self, seq: u32, attempt: u32, call: &Call, response: String) -> Entry {
        let now = Micros::now();
        Entry {
            run_id: self.ctx.info.run_id,
            key: EntryKey::call(seq, attempt),
            kind: call.kind,
            name: call.name.clone(),
            request: call.request.clone(),
            request_hash: Entry::hash_request(&call.request),
            response: Some(response),
            status: EntryStatus::Ok,
            error: None,
            started_at: now,
            finished_at: now,
            fuel: None,
            component: None,
        }
    }
}

impl Host for WorkflowState {
    async fn call_step(&mut self, call: StepCall) -> wasmtime::Result<Result<String, StepError>> {
        let (seq, recorded) = self.ctx.recorder.take_seq();
        match self.run.step_call(&self.ctx.recorder, seq, recorded, &call).await {
            Ok(StepOutcome::Done(result)) => Ok(result.map_err(to_step_error)),
            Ok(StepOutcome::Park(at)) => {
                Err(self.interrupt(Interrupt::Suspend(Suspension { wake_at: Some(at), event: None })))
            }
            Err(why) => Err(self.interrupt(why)),
        }
    }

    async fn call_steps(&mut self, calls: Vec<StepCall>) -> wasmtime::Result<Vec<Result<String, StepError>>> {
        let seqs: Vec<_> = calls.iter().map(|_| self.ctx.recorder.take_seq()).collect();
        let run = self.run.clone();
        let recorder = self.ctx.recorder.clone();
        let outcomes = join_all(
            calls.iter().zip(seqs).map(|(call, (seq, recorded))| run.step_call(&recorder, seq, recorded, call)),
        )
        .await;
        let mut results = Vec::with_capacity(outcomes.len());
        let mut park: Option<Suspension> = None;
        for outcome in outcomes {
            match outcome {
                Ok(StepOutcome::Done(r)) => results.push(r.map_err(to_step_error)),
                Ok(StepOutcome::Park(at)) => {
                    let s = Suspension { wake_at: Some(at), event: None };
                    park = Some(park.map_or(s.clone(), |p| p.merge(s)));
                }
                Err(why) => return Err(self.interrupt(why)),
            }
        }
        match park {
            Some(s) => Err(self.interrupt(Interrupt::Suspend(s))),
            None => Ok(results),
        }
    }

    async fn sleep(&mut self, name: String, duration_ms: u64) -> wasmtime::Result<()> {
        let (seq, recorded) = self.ctx.recorder.take_seq();
        let call = Call { kind: EntryKind::Sleep, name, request: json!({ "duration_ms": duration_ms }).to_string() };
        self.check(&recorded, &call)?;
        let wake_at = match recorded.first() {
            Some(e) => read_micros(e.response.as_deref(), "wake_at")?,
            None => {
                let wake_at = Micros::now().plus(std::time::Duration::from_millis(duration_ms));
                let entry = self.entry(seq, 0, &call, json!({ "wake_at": wake_at }).to_string());
                self.ctx.recorder.push([entry]);
                wake_at
            }
        };
        if Micros::now() >= wake_at {
            return Ok(());
        }
        Err(self.interrupt(Interrupt::Suspend(Suspension { wake_at: Some(wake_at), event: None })))
    }

    async fn wait_for_event(
        &mut self,
        name: String,
        event: String,
        filter: Option<String>,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<String>> {
        let (seq, recorded) = self.ctx.recorder.take_seq();
        let request = json!({ "event": event, "match": filter, "timeout_ms": timeout_ms }).to_string();
        let call = Call { kind: EntryKind::Event, name, request };
        self.check(&recorded, &call)?;
        // (seq, 0): the wait began, with its deadline; (seq, 1): what it got.
        let begun = recorded.iter().find(|e| e.key.attempt == 0);
        let deadline = match begun {
            Some(e) => read_optional_micros(e.response.as_deref(), "deadline")?,
            None => {
                let deadline = timeout_ms.map(|ms| Micros::now().plus(std::time::Duration::from_millis(ms)));
                self.ctx.recorder.push([self.entry(seq, 0, &call, json!({ "deadline": deadline }).to_string())]);
                deadline
            }
        };
        if let Some(got) = recorded.iter().find(|e| e.key.attempt == 1) {
            let value: Value = serde_json::from_str(got.response.as_deref().unwrap_or("null"))?;
            if let Some(id) = value["id"].as_i64() {
                let mut last = self.run.last_event.lock().unwrap_or_else(|e| e.into_inner());
                *last = (*last).max(id);
            }
            return Ok(value.get("data").and_then(Value::as_str).map(str::to_owned));
        }
        let wanted: Option<Value> = filter.as_deref().map(serde_json::from_str).transpose().unwrap_or(None);
        let after = *self.run.last_event.lock().unwrap_or_else(|e| e.into_inner());
        let events = self
            .run
            .store
            .events(&event, self.run.run.created_at, after, 1000)
            .await
            .map_err(|e| self.interrupt(Interrupt::LeaseLost(e.to_string())))?;
        let found = events.into_iter().find(|ev| {
            wanted.as_ref().is_none_or(|w| serde_json::from_str::<Value>(&ev.data).is_ok_and(|d| contains(&d, w)))
        });
        if let Some(ev) = found {
            *self.run.last_event.lock().unwrap_or_else(|e| e.into_inner()) = ev.id;
            let got = json!({ "id": ev.id, "data": ev.data });
            self.ctx.recorder.push([self.entry(seq, 1, &call, got.to_string())]);
            return Ok(Some(ev.data));
        }
        if deadline.is_some_and(|d| Micros::now() >= d) {
            self.ctx.recorder.push([self.entry(seq, 1, &call, json!({ "id": null, "data": null }).to_string())]);
            return Ok(None);
        }
        Err(self.interrupt(Interrupt::Suspend(Suspension { wake_at: deadline, event: Some(event) })))
    }

    async fn call_workflow(
        &mut self,
        name: String,
        workflow: String,
        input: String,
    ) -> wasmtime::Result<Result<String, StepError>> {
        let (seq, recorded) = self.ctx.recorder.take_seq();
        let request = json!({ "workflow": workflow, "input": input }).to_string();
        let call = Call { kind: EntryKind::ChildRun, name, request };
        self.check(&recorded, &call)?;
        // (seq, 0): the child run was started; (seq, 1): how it ended.
        if let Some(done) = recorded.iter().find(|e| e.key.attempt == 1) {
            return Ok(child_result(done.response.as_deref()));
        }
        let child = match recorded.iter().find(|e| e.key.attempt == 0) {
            Some(e) => {
                let value: Value = serde_json::from_str(e.response.as_deref().unwrap_or("null"))?;
                value["child"].as_str().unwrap_or_default().parse::<RunId>().map_err(wasmtime::Error::msg)?
            }
            None => match start_child(self.run.clone(), seq, &workflow, &input, None).await {
                Ok(id) => {
                    self.ctx.recorder.push([self.entry(seq, 0, &call, json!({ "child": id }).to_string())]);
                    id
                }
                Err(Ok(message)) => {
                    let ended = json!({ "error": { "kind": "fatal", "message": message } }).to_string();
                    self.ctx.recorder.push([self.entry(seq, 1, &call, ended.clone())]);
                    return Ok(child_result(Some(&ended)));
                }
                Err(Err(why)) => return Err(self.interrupt(why)),
            },
        };
        let run = self.run.store.run(&child).await.map_err(|e| self.interrupt(Interrupt::LeaseLost(e.to_string())))?;
        match run {
            Some(r) if r.status.is_final() => {
                let ended = json!({ "child": r.id, "output": r.output, "error": r.error }).to_string();
                self.ctx.recorder.push([self.entry(seq, 1, &call, ended.clone())]);
                Ok(child_result(Some(&ended)))
            }
            _ => {
                Err(self
                    .interrupt(Interrupt::Suspend(Suspension { wake_at: None, event: Some(finished_event(&child)) })))
            }
        }
    }

    async fn start_workflow(
        &mut self,
        name: String,
        workflow: String,
        input: String,
        idempotency_key: Option<String>,
    ) -> wasmtime::Result<Result<String, StepError>> {
        let (seq, recorded) = self.ctx.recorder.take_seq();
        let call =
            Call { kind: EntryKind::StartRun, name, request: start_request(&workflow, &input, &idempotency_key) };
        self.check(&recorded, &call)?;
        // One entry, (seq, 0): the run started, or why it could not be.
        if let Some(started) = recorded.iter().find(|e| e.key.attempt == 0) {
            return Ok(started_result(started.response.as_deref()));
        }
        let response = match start_child(self.run.clone(), seq, &workflow, &input, idempotency_key.as_deref()).await {
            Ok(id) => json!({ "child": id }).to_string(),
            Err(Ok(message)) => json!({ "error": { "kind": "fatal", "message": message } }).to_string(),
            Err(Err(why)) => return Err(self.interrupt(why)),
        };
        self.ctx.recorder.push([self.entry(seq, 0, &call, response.clone())]);
        Ok(started_result(Some(&response)))
    }
}

/// The journaled request of a `start-workflow` call.
pub(crate) fn start_request(workflow: &str, input: &str, key: &Option<String>) -> String {
    match key {
        None => json!({ "workflow": workflow, "input": input }).to_string(),
        Some(key) => json!({ "workflow": workflow, "input": input, "idempotency_key": key }).to_string(),
    }
}

/// The workflow's view of a `start-workflow` call from its entry's
/// response: the new run's id, or why none was started.
pub(crate) fn started_result(response: Option<&str>) -> Result<String, StepError> {
    let value: Value = response.and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
    match value.get("child").and_then(Value::as_str) {
        Some(id) => Ok(id.to_owned()),
        None => Err(StepError::Fatal(
            value["error"]["message"].as_str().unwrap_or("the run could not be started").to_owned(),
        )),
    }
}

/// Creates the child run of the call at `seq` (once: its idempotency key is
/// derived from the parent and `seq`, so a parent resumed after a crash
/// finds the child it already started).
async fn start_child(
    run: std::sync::Arc<super::run::RunCtx>,
    seq: u32,
    workflow: &str,
    input: &str,
    key: Option<&str>,
) -> Result<RunId, Result<String, Interrupt>> {
    if serde_json::from_str::<serde::de::IgnoredAny>(input).is_err() {
        return Err(Ok(format!("the input of child workflow `{workflow}` is not JSON")));
    }
    let resolved = run.steps.resolve_workflow(workflow).await.map_err(|e| match e {
        // The store could not be read: stop, write nothing; the run resumes.
        super::steps::Unresolved::Store(why) => Err(Interrupt::LeaseLost(why)),
        super::steps::Unresolved::Invalid(message) => Ok(message),
    })?;
    let new = crate::domain::NewRun {
        id: RunId::new(),
        kind: crate::domain::World::Workflow,
        component: workflow.to_owned(),
        component_hash: resolved.loaded.hash.clone(),
        input: input.to_owned(),
        idempotency_key: Some(key.map_or_else(|| child_key(&run.run.id, seq), str::to_owned)),
        created_at: Micros::now(),
        origin: None,
        // A started run lives under its deployment's flow control; a child
        // the parent waits for too (its concurrency slot is the parent's
        // business, but a rate or priority still applies).
        flow: match &resolved.config {
            Some(c) => c.flow_for(&serde_json::from_str(input).unwrap_or(Value::Null)),
            None => Default::default(),
        },
        held: false,
    };
    // A child run acts on its own: what the parent wrote first must be durable.
    run.durable().await.map_err(|why| Err(Interrupt::LeaseLost(why)))?;
    let created = run.store.create_run(new).await.map_err(|e| Err(Interrupt::LeaseLost(e.to_string())))?;
    Ok(created.run().id)
}

/// The idempotency key of the child run started at `seq` of `parent`.
fn child_key(parent: &RunId, seq: u32) -> String {
    format!("{CHILD_KEY_PREFIX}{parent}/{seq}")
}

/// Idempotency keys of child runs start with this.
pub const CHILD_KEY_PREFIX: &str = "ferry:child:";

/// The event a parent waits for while its child runs.
pub fn finished_event(child: &RunId) -> String {
    format!("ferry:run-finished:{child}")
}

/// The workflow's view of a child run's end.
fn child_result(ended: Option<&str>) -> Result<String, StepError> {
    let value: Value = ended.and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
    match value.get("output").and_then(Value::as_str) {
        Some(output) => Ok(output.to_owned()),
        None => {
            let error: Option<RunError> = value.get("error").and_then(|e| serde_json::from_value(e.clone()).ok());
            Err(to_step_error(
                error.unwrap_or(RunError { kind: RunErrorKind::Fatal, message: "the child run failed".into() }),
            ))
        }
    }
}

/// Whether `data` has every field of `wanted` with an equal value.
fn contains(data: &Value, wanted: &Value) -> bool {
    match (data, wanted) {
        (Value::Object(d), Value::Object(w)) => w.iter().all(|(k, v)| d.get(k).is_some_and(|dv| contains(dv, v))),
        (d, w) => d == w,
    }
}

fn read_micros(response: Option<&str>, field: &str) -> wasmtime::Result<Micros> {
    read_optional_micros(response, field)?.ok_or_else(|| wasmtime::format_err!("corrupt journal: no `{field}`"))
}

fn read_optional_micros(response: Option<&str>, field: &str) -> wasmtime::Result<Option<Micros>> {
    let value: Value = serde_json::from_str(response.unwrap_or("null"))?;
    Ok(value.get(field).and_then(Value::as_i64).map(Micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_match_is_a_subset_check() {
        let data = json!({"order": "A1", "by": "ops", "n": {"x": 1, "y": 2}});
        assert!(contains(&data, &json!({"order": "A1"})));
        assert!(contains(&data, &json!({"n": {"x": 1}})));
        assert!(!contains(&data, &json!({"order": "B2"})));
        assert!(!contains(&data, &json!({"missing": 1})));
        assert!(contains(&data, &json!({})));
    }
}
