//! Offline replay: re-execute a recorded run against its journal, with no
//! side effects, and say whether it did exactly the same.
//!
//! Every host call is answered from the journal: HTTP, clocks, randomness,
//! secrets, logs, sleeps, events, child runs and the results of step calls.
//! Each step attempt is re-executed against its own recorded host calls and
//! its output and fuel compared with the record. Nothing is sent over the
//! network and nothing is written to any store: the replayer has no handle
//! to either.
//!
//! A component can be swapped (`--component NAME=FILE`): a swapped step
//! replays against the recorded responses of each of its attempts and the
//! report shows what it returns now; a swapped workflow shows where it
//! departs from the recorded history.

mod export;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

pub use export::{Export, ExportComponent, ExportError};

use crate::domain::{ComponentHash, Entry, EntryKey, EntryKind, EntryStatus, Limits, Run, RunErrorKind, World};
use crate::engine::recorder::{Call, Divergence};
use crate::engine::{AllowList, Engine, Loaded, Secrets, StepCall};

/// Why a replay could not be done at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "the recording has no bytes for component {0} ({1}); export with --with-components, or replay from the store with --db"
    )]
    MissingComponent(String, ComponentHash),
    #[error("component `{0}` cannot be loaded: {1}")]
    Load(String, String),
    #[error("the journal is corrupt: {0}")]
    Corrupt(String),
}

/// What replay found for one journal entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Replayed call, same request and (for steps) same output and fuel.
    Matched,
    /// A swapped component ran here against the recorded responses.
    Changed { recorded: String, now: String },
    /// The replay departed from the record here.
    Diverged { reason: String },
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    #[serde(flatten)]
    pub key: EntryKey,
    pub kind: EntryKind,
    pub name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The first divergence with both sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FirstDivergence {
    pub key: EntryKey,
    pub reason: String,
    pub recorded: Option<Side>,
    pub replayed: Option<Side>,
}

/// One side of a divergence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Side {
    pub kind: EntryKind,
    pub name: String,
    pub request: String,
    pub response: Option<String>,
}

/// What a replay found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub lines: Vec<Line>,
    pub divergence: Option<FirstDivergence>,
    /// Where the recording ended before the run did (a run still waiting).
    pub ended_early: Option<String>,
    /// The workflow's (or step's) result now, when replay got that far.
    pub output: Option<String>,
}

impl Report {
    /// Whether the replay did exactly what the record says.
    pub fn identical(&self) -> bool {
        self.divergence.is_none()
    }

    fn line(&mut self, key: EntryKey, kind: EntryKind, name: &str, verdict: Verdict) {
        self.lines.push(Line { key, kind, name: name.to_owned(), verdict });
    }

    fn diverge(&mut self, d: FirstDivergence) {
        if self.divergence.is_none() {
            self.divergence = Some(d);
        }
    }

    fn diverge_from(&mut self, d: &Divergence) {
        self.diverge(FirstDivergence {
            key: d.key,
            reason: d.to_string(),
            recorded: d.recorded.as_ref().map(side_of),
            replayed: d.actual.as_ref().map(|c: &Call| Side {
                kind: c.kind,
                name: c.name.clone(),
                request: c.request.clone(),
                response: None,
            }),
        });
    }
}

fn side_of(e: &Entry) -> Side {
    Side { kind: e.kind, name: e.name.clone(), request: e.request.clone(), response: e.response.clone() }
}

/// A recorded run and what is needed to re-execute it.
#[derive(Clone, Debug)]
pub struct Recording {
    pub run: Run,
    pub journal: Vec<Entry>,
    /// Component bytes by hash (the workflow's and every step's).
    pub components: HashMap<ComponentHash, Vec<u8>>,
    /// The blobs the journal mentions, by sha256 hex.
    pub blobs: HashMap<String, Vec<u8>>,
}

/// Loads a run, its journal and the bytes of every component it used (the
/// workflow's and each step attempt's) from a store, with their worlds.
pub async fn load_recording(
    store: &dyn crate::store::Store,
    id: &crate::domain::RunId,
) -> Result<(Recording, HashMap<ComponentHash, World>), crate::store::Error> {
    use crate::store::Error;
    let run = store.run(id).await?.ok_or_else(|| Error::NotFound(format!("run {id}")))?;
    let journal = store.journal(id).await?;
    let mut hashes = vec![run.component_hash.clone()];
    for e in journal.iter().filter(|e| e.kind == EntryKind::Step) {
        if let Some(hash) = e.component.as_deref().and_then(|c| c.rsplit_once('@')).and_then(|(_, h)| h.parse().ok()) {
            hashes.push(hash);
        }
    }
    hashes.sort();
    hashes.dedup();
    let mut components = HashMap::new();
    let mut worlds = HashMap::new();
    for hash in hashes {
        let c =
            store.component(&hash).await?.ok_or_else(|| Error::NotFound(format!("component {hash} of run {id}")))?;
        worlds.insert(hash.clone(), c.world);
        components.insert(hash, c.bytes);
    }
    let mut blobs = HashMap::new();
    for hash in crate::engine::blobs::referenced(&journal) {
        // A blob the journal mentions but the store lacks was never written
        // (the attempt failed before): the replay reports it if it is read.
        if let Some(bytes) = store.blob(&hash).await? {
            blobs.insert(hash, bytes);
        }
    }
    Ok((Recording { run, journal, components, blobs }, worlds))
}

/// Re-executes recordings. Cheap to clone.
#[derive(Clone)]
pub struct Replayer {
    engine: Arc<Engine>,
    secrets: Arc<Secrets>,
    /// Swapped components by deployment name.
    overrides: Arc<HashMap<String, Vec<u8>>>,
}

impl Replayer {
    pub fn new(engine: Arc<Engine>, secrets: Secrets, overrides: HashMap<String, Vec<u8>>) -> Self {
        Self { engine, secrets: Arc::new(secrets), overrides: Arc::new(overrides) }
    }

    /// Replays `rec` and reports entry by entry.
    pub async fn replay(&self, rec: &Recording) -> Result<Report, ReplayError> {
        let name = rec.run.component.clone();
        let swapped_run = self.overrides.contains_key(&name);
        let bytes = match self.overrides.get(&name) {
            Some(b) => b.clone(),
            None => rec
                .components
                .get(&rec.run.component_hash)
                .cloned()
                .ok_or_else(|| ReplayError::MissingComponent(name.clone(), rec.run.component_hash.clone()))?,
        };
        let loaded = self.engine.load(&bytes).await.map_err(|e| ReplayError::Load(name.clone(), e.to_string()))?;
        let mut report = Report::default();
        match loaded.world {
            World::Workflow => state::replay_workflow(self.clone(), rec, &loaded, &mut report).await?,
            World::Step => {
                let by_seq = group_by_seq(&rec.journal);
                let recorded = by_seq.get(&0).cloned().unwrap_or_default();
                let call = RecordedCall { name: name.clone(), step: name.clone(), input: rec.run.input.clone() };
                let result = self
                    .replay_step_call(rec, &call, 0, &recorded, &mut report, swapped_run.then_some(&loaded))
                    .await?;
                report.output = result.and_then(|r| r.ok());
                // A lone step still queued or between attempts: what is
                // recorded replayed, but the run has not ended.
                if !rec.run.status.is_final() && report.ended_early.is_none() {
                    report.ended_early =
                        Some(format!("the run is {}: the recording ends before it does", rec.run.status.as_str()));
                }
                if by_seq.keys().any(|&s| s > 0) {
                    let extra = by_seq.range(1..).next().and_then(|(_, v)| v.first()).cloned();
                    if let Some(e) = extra {
                        report.diverge(FirstDivergence {
                            key: e.key,
                            reason: format!(
                                "nondeterministic at {}: the journal has more calls than a step run makes",
                                e.key
                            ),
                            recorded: Some(side_of(&e)),
                            replayed: None,
                        });
                    }
                }
            }
        }
        if report.divergence.is_none()
            && report.ended_early.is_none()
            && let (Some(recorded), Some(now)) = (&rec.run.output, &report.output)
            && !json_equal(recorded, now)
            && !swapped_run
        {
            report.diverge(FirstDivergence {
                key: EntryKey::call(u32::MAX, 0),
                reason: "the run's output differs from the recorded output".into(),
                recorded: Some(Side {
                    kind: EntryKind::Step,
                    name: name.clone(),
                    request: rec.run.input.clone(),
                    response: Some(recorded.clone()),
                }),
                replayed: Some(Side {
                    kind: EntryKind::Step,
                    name,
                    request: rec.run.input.clone(),
                    response: Some(now.clone()),
                }),
            });
        }
        report.lines.sort_by_key(|l| l.key);
        Ok(report)
    }

    /// Replays every recorded attempt of the step call at `seq` and returns
    /// the call's recorded final result (none when the recording ends
    /// before the call did).
    async fn replay_step_call(
        &self,
        rec: &Recording,
        call: &RecordedCall,
        seq: u32,
        recorded: &[Entry],
        report: &mut Report,
        swapped_override: Option<&Arc<Loaded>>,
    ) -> Result<Option<Result<String, (RunErrorKind, String)>>, ReplayError> {
        let mut attempts: Vec<&Entry> =
            recorded.iter().filter(|e| e.key.child == 0 && e.kind == EntryKind::Step).collect();
        attempts.sort_by_key(|e| e.key.attempt);
        for attempt in &attempts {
            let children: Vec<Entry> =
                recorded.iter().filter(|e| e.key.attempt == attempt.key.attempt && e.key.child > 0).cloned().collect();
            let (step_name, hash) = component_of(attempt, &call.step)?;
            let (loaded, swapped) = match (swapped_override, self.overrides.get(&step_name)) {
                (Some(l), _) => (l.clone(), true),
                (None, Some(bytes)) => (
                    self.engine.load(bytes).await.map_err(|e| ReplayError::Load(step_name.clone(), e.to_string()))?,
                    true,
                ),
                (None, None) => {
                    let bytes = match hash.as_ref().and_then(|h| rec.components.get(h)) {
                        Some(b) => b,
                        None => {
                            return Err(ReplayError::MissingComponent(
                                step_name.clone(),
                                hash.unwrap_or_else(|| ComponentHash::of(b"")),
                            ));
                        }
                    };
                    (
                        self.engine
                            .load(bytes)
                            .await
                            .map_err(|e| ReplayError::Load(step_name.clone(), e.to_string()))?,
                        false,
                    )
                }
            };
            let recorded_failure =
                attempt.response.as_deref().and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok());
            let exhausted = attempt.status == EntryStatus::Error
                && recorded_failure.as_ref().is_some_and(|f| f["kind"] == "fuel-exhausted");
            let defaults = Limits::default();
            let limits = Limits {
                fuel: if exhausted {
                    attempt.fuel.unwrap_or(defaults.fuel)
                } else {
                    defaults.fuel.max(attempt.fuel.unwrap_or(0))
                },
                timeout: defaults.timeout * 4,
                ..defaults
            };
            let a = self
                .engine
                .run_step(
                    &loaded,
                    StepCall {
                        run_id: rec.run.id,
                        component: step_name.clone(),
                        step: call.name.clone(),
                        seq,
                        attempt: attempt.key.attempt,
                        input: call.input.clone(),
                        limits,
                        allow: AllowList::default(),
                        secrets: self.secrets.clone(),
                        blobs: crate::engine::Blobs::Memory(Arc::new(rec.blobs.clone())),
                        replay: Some(children),
                        changed: swapped,
                        settle: None,
                    },
                )
                .await;
            for child in &a.children {
                report.line(child.key, child.kind, &child.name, Verdict::Matched);
            }
            let now_text = match &a.outcome {
                Ok(o) => o.clone(),
                Err(e) => format!("error {}: {}", e.kind, e.message),
            };
            let recorded_text = match attempt.status {
                EntryStatus::Ok => attempt.response.clone().unwrap_or_default(),
                EntryStatus::Error => format!("error {}", attempt.error.clone().unwrap_or_default()),
            };
            if let Some(d) = &a.divergence {
                report.line(
                    d.key,
                    d.recorded.as_ref().map_or(EntryKind::Step, |r| r.kind),
                    &call.name,
                    Verdict::Diverged { reason: d.to_string() },
                );
                report.diverge_from(d);
            } else if swapped {
                report.line(
                    attempt.key,
                    EntryKind::Step,
                    &call.name,
                    Verdict::Changed { recorded: recorded_text, now: now_text },
                );
            } else {
                let same_result = match (&a.outcome, attempt.status) {
                    (Ok(out), EntryStatus::Ok) => attempt.response.as_deref().is_some_and(|r| json_equal(r, out)),
                    (Err(e), EntryStatus::Error) => {
                        recorded_failure.as_ref().is_some_and(|f| f["kind"] == e.kind.as_str())
                    }
                    _ => false,
                };
                let same_fuel = attempt.fuel.is_none() || attempt.fuel == Some(a.fuel);
                if same_result && same_fuel {
                    report.line(attempt.key, EntryKind::Step, &call.name, Verdict::Matched);
                } else {
                    let reason = if same_result {
                        format!("fuel differs: recorded {}, replayed {}", attempt.fuel.unwrap_or(0), a.fuel)
                    } else {
                        "the step's result differs from the record".to_owned()
                    };
                    report.line(attempt.key, EntryKind::Step, &call.name, Verdict::Diverged { reason: reason.clone() });
                    report.diverge(FirstDivergence {
                        key: attempt.key,
                        reason,
                        recorded: Some(Side {
                            kind: EntryKind::Step,
                            name: call.name.clone(),
                            request: call.input.clone(),
                            response: Some(format!("{recorded_text} (fuel {})", attempt.fuel.unwrap_or(0))),
                        }),
                        replayed: Some(Side {
                            kind: EntryKind::Step,
                            name: call.name.clone(),
                            request: call.input.clone(),
                            response: Some(format!("{now_text} (fuel {})", a.fuel)),
                        }),
                    });
                }
            }
            if swapped && attempts.len() == 1 {
                report.output = a.outcome.as_ref().ok().cloned();
            }
        }
        // The call's recorded end: a success, or a failure with no retry due.
        let last = attempts.last();
        Ok(match last {
            Some(e) if e.status == EntryStatus::Ok => Some(Ok(e.response.clone().unwrap_or_else(|| "null".into()))),
            Some(e) => {
                let failure: serde_json::Value =
                    e.response.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
                if failure["retry_at"].is_null() {
                    let kind = failure["kind"].as_str().and_then(|k| k.parse().ok()).unwrap_or(RunErrorKind::Fatal);
                    Some(Err((kind, failure["message"].as_str().unwrap_or_default().to_owned())))
                } else {
                    None
                }
            }
            None => None,
        })
    }
}

/// A step call as replay knows it.
#[derive(Clone, Debug)]
struct RecordedCall {
    name: String,
    step: String,
    input: String,
}

/// The entries of a journal grouped by sequence number.
fn group_by_seq(journal: &[Entry]) -> BTreeMap<u32, Vec<Entry>> {
    let mut by: BTreeMap<u32, Vec<Entry>> = BTreeMap::new();
    for e in journal {
        by.entry(e.key.seq).or_default().push(e.clone());
    }
    by
}

/// The step name and component hash an attempt ran (`name@hash`).
fn component_of(attempt: &Entry, fallback: &str) -> Result<(String, Option<ComponentHash>), ReplayError> {
    match attempt.component.as_deref().and_then(|c| c.rsplit_once('@')) {
        Some((name, hash)) => {
            let hash = hash.parse().map_err(|e| ReplayError::Corrupt(format!("entry {}: {e}", attempt.key)))?;
            Ok((name.to_owned(), Some(hash)))
        }
        None => Ok((fallback.to_owned(), None)),
    }
}

/// Whether two JSON texts hold the same value.
fn json_equal(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
