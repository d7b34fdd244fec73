//! The journal of one step attempt: records host calls live, or answers
//! them from a recorded journal on replay.
//!
//! Every host call of a step (HTTP, clocks, randomness, secrets, logs) goes
//! through [`Recorder::begin`] and, when it ran live, [`Recorder::finish`].
//! A step runs single-threaded in its own sandbox, so calls never overlap:
//! `begin` hands out child numbers in the order the guest makes calls.
//!
//! In replay mode `begin` compares the call with the next recorded child
//! (kind, name, request hash) and returns the recorded entry instead of
//! running it. The first mismatch is kept as a [`Divergence`]; the call
//! then traps, so a replay stops exactly where the guest departed from its
//! history.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::{Entry, EntryKey, EntryKind, EntryStatus, Micros, RunId};

/// A call as the guest made it, before it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub kind: EntryKind,
    pub name: String,
    pub request: String,
}

/// Where a replayed guest departed from its recorded history.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// The key the call took.
    pub key: EntryKey,
    /// What the journal holds at that key (none: the journal had ended).
    pub recorded: Option<Entry>,
    /// What the guest asked for instead (none: the guest made fewer calls).
    pub actual: Option<Call>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nondeterministic at {}: ", self.key)?;
        match (&self.recorded, &self.actual) {
            (Some(r), Some(a)) => {
                write!(f, "the journal records {} `{}` but the guest called {} `{}`", r.kind, r.name, a.kind, a.name)
            }
            (None, Some(a)) => write!(f, "the journal has no more calls but the guest called {} `{}`", a.kind, a.name),
            (Some(r), None) => {
                write!(f, "the journal records {} `{}` but the guest made no more calls", r.kind, r.name)
            }
            (None, None) => write!(f, "no call"),
        }
    }
}

/// What `begin` decided.
#[derive(Debug)]
pub enum Begun {
    /// Run the call for real, then report it with [`Recorder::finish`].
    Live { key: EntryKey, started_at: Micros },
    /// Replay: the recorded entry answers the call.
    Recorded(Entry),
    /// Replay: the call does not match the journal. Trap.
    Diverged(Divergence),
}

/// Whose calls a recorder numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// The host calls of one step attempt: keys `(seq, attempt, 1..)`.
    Attempt { seq: u32, attempt: u32 },
    /// The calls of a workflow: keys `(0.., 0, 0)`; step calls take a `seq`
    /// too (see [`Recorder::take_seq`]) and keep their own attempts under it.
    Workflow,
}

struct Inner {
    run_id: RunId,
    scope: Scope,
    /// The next child (attempt scope) or seq (workflow scope) to hand out.
    next: u32,
    /// Recorded entries by child or seq, for calls that already happened.
    recorded: std::collections::BTreeMap<u32, Vec<Entry>>,
    /// Offline replay: a call past the end of the record is a divergence.
    /// Otherwise (resuming a run) calls past the record run live.
    strict: bool,
    /// Replay of a changed component: log lines (output only, never an
    /// answer the guest depends on) are neither matched nor required.
    loose_logs: bool,
    /// Entries recorded live (and, in strict replay, the ones matched).
    entries: Vec<Entry>,
    divergence: Option<Divergence>,
    /// Secret values this attempt read: redacted wherever they show up in
    /// later recorded requests.
    secrets: Vec<String>,
}

/// Shared handle to the journal of one attempt or one workflow execution.
/// Cloned into the WASI clock and random sources, which have no access to
/// the store's data.
#[derive(Clone)]
pub struct Recorder(Arc<Mutex<Inner>>);

impl Recorder {
    /// A recorder for a step attempt that runs calls live and records them.
    pub fn live(run_id: RunId, seq: u32, attempt: u32) -> Self {
        Self::new(run_id, Scope::Attempt { seq, attempt }, Vec::new(), false)
    }

    /// A recorder for a step attempt that answers calls from `recorded`:
    /// the child entries of the attempt `(seq, attempt)`, in journal order.
    /// Every call must match, and every recorded call must be made.
    pub fn replay(run_id: RunId, seq: u32, attempt: u32, recorded: Vec<Entry>) -> Self {
        Self::new(run_id, Scope::Attempt { seq, attempt }, recorded, true)
    }

    /// Like [`Recorder::replay`] for a changed version of the step: the
    /// calls that feed the guest must still match, but log lines may differ.
    pub fn replay_changed(run_id: RunId, seq: u32, attempt: u32, recorded: Vec<Entry>) -> Self {
        let kept: Vec<Entry> = recorded
            .into_iter()
            .filter(|e| e.kind != EntryKind::Log)
            .enumerate()
            .map(|(i, mut e)| {
                e.key.child = u32::try_from(i).unwrap_or(u32::MAX - 1) + 1;
                e
            })
            .collect();
        let rec = Self::new(run_id, Scope::Attempt { seq, attempt }, kept, true);
        rec.lock().loose_logs = true;
        rec
    }

    /// A recorder for a workflow execution over the run's journal so far:
    /// recorded calls are answered from it, later calls run live.
    pub fn workflow(run_id: RunId, journal: Vec<Entry>) -> Self {
        Self::new(run_id, Scope::Workflow, journal, false)
    }

    /// A recorder for the offline replay of a workflow: every call must
    /// match the journal, and every journaled call must be made.
    pub fn replay_workflow(run_id: RunId, journal: Vec<Entry>) -> Self {
        Self::new(run_id, Scope::Workflow, journal, true)
    }

    fn new(run_id: RunId, scope: Scope, recorded: Vec<Entry>, strict: bool) -> Self {
        let mut by_key = std::collections::BTreeMap::<u32, Vec<Entry>>::new();
        for e in recorded {
            let n = match scope {
                Scope::Attempt { .. } => e.key.child,
                Scope::Workflow => e.key.seq,
            };
            by_key.entry(n).or_default().push(e);
        }
        let next = match scope {
            Scope::Attempt { .. } => 1,
            Scope::Workflow => 0,
        };
        Self(Arc::new(Mutex::new(Inner {
            run_id,
            scope,
            next,
            recorded: by_key,
            strict,
            loose_logs: false,
            entries: Vec::new(),
            divergence: None,
            secrets: Vec::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a host call panicked mid-record; the data is
        // still a consistent list of entries, so keep going.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether calls are answered strictly from a recorded journal.
    pub fn is_replay(&self) -> bool {
        self.lock().strict
    }

    pub fn run_id(&self) -> RunId {
        self.lock().run_id
    }

    /// Starts a call: see [`Begun`].
    pub fn begin(&self, call: Call) -> Begun {
        let mut inner = self.lock();
        if inner.loose_logs && call.kind == EntryKind::Log {
            let key = EntryKey { seq: 0, attempt: 0, child: 0 };
            let request_hash = Entry::hash_request(&call.request);
            return Begun::Recorded(Entry {
                run_id: inner.run_id,
                key,
                kind: call.kind,
                name: call.name,
                request: call.request,
                request_hash,
                response: None,
                status: crate::domain::EntryStatus::Ok,
                error: None,
                started_at: Micros::now(),
                finished_at: Micros::now(),
                fuel: None,
                component: None,
            });
        }
        let n = inner.next;
        inner.next += 1;
        let key = match inner.scope {
            Scope::Attempt { seq, attempt } => EntryKey { seq, attempt, child: n },
            Scope::Workflow => EntryKey::call(n, 0),
        };
        if let Some(d) = &inner.divergence {
            return Begun::Diverged(d.clone());
        }
        let recorded = inner.recorded.remove(&n).and_then(|v| v.into_iter().next());
        match recorded {
            None if !inner.strict => Begun::Live { key, started_at: Micros::now() },
            Some(r)
                if r.kind == call.kind
                    && r.name == call.name
                    && r.request_hash == Entry::hash_request(&call.request) =>
            {
                if inner.strict {
                    inner.entries.push(r.clone());
                }
                Begun::Recorded(r)
            }
            recorded => {
                let d = Divergence { key, recorded, actual: Some(call) };
                inner.divergence = Some(d.clone());
                Begun::Diverged(d)
            }
        }
    }

    /// Workflow scope: takes the next sequence number for a call the caller
    /// records itself (a step call), with whatever the journal holds at it.
    pub fn take_seq(&self) -> (u32, Vec<Entry>) {
        let mut inner = self.lock();
        let seq = inner.next;
        inner.next += 1;
        let recorded = inner.recorded.remove(&seq).unwrap_or_default();
        (seq, recorded)
    }

    /// Adds entries the caller recorded itself.
    pub fn push(&self, entries: impl IntoIterator<Item = Entry>) {
        self.lock().entries.extend(entries);
    }

    /// Takes the entries recorded so far (to persist them).
    pub fn drain(&self) -> Vec<Entry> {
        std::mem::take(&mut self.lock().entries)
    }

    /// Records a divergence found by the caller (a step call that does not
    /// match its journal entry); later calls trap.
    pub fn diverge(&self, d: Divergence) {
        let mut inner = self.lock();
        if inner.divergence.is_none() {
            inner.divergence = Some(d);
        }
    }

    /// The first divergence, if any.
    pub fn divergence(&self) -> Option<Divergence> {
        self.lock().divergence.clone()
    }

    /// Records a live call's result.
    pub fn finish(
        &self,
        key: EntryKey,
        call: Call,
        started_at: Micros,
        response: Option<String>,
        status: EntryStatus,
        error: Option<String>,
    ) {
        let mut inner = self.lock();
        let run_id = inner.run_id;
        let request_hash = Entry::hash_request(&call.request);
        inner.entries.push(Entry {
            run_id,
            key,
            kind: call.kind,
            name: call.name,
            request: call.request,
            request_hash,
            response,
            status,
            error,
            started_at,
            finished_at: Micros::now(),
            fuel: None,
            component: None,
        });
    }

    /// Runs a call that cannot fail and whose answer is computed on the
    /// spot (a clock read, a seed): live, `compute` runs and its result is
    /// recorded; on replay the recorded response is returned. `None` means
    /// the call diverged; the divergence is kept for the attempt's report.
    pub fn immediate(&self, call: Call, compute: impl FnOnce() -> String) -> Option<String> {
        match self.begin(call.clone()) {
            Begun::Live { key, started_at } => {
                let response = compute();
                self.finish(key, call, started_at, Some(response.clone()), EntryStatus::Ok, None);
                Some(response)
            }
            Begun::Recorded(entry) => Some(entry.response.unwrap_or_default()),
            Begun::Diverged(_) => None,
        }
    }

    /// Remembers a secret value so later recorded requests redact it.
    pub fn add_secret(&self, value: &str) {
        if value.len() >= 4 {
            self.lock().secrets.push(value.to_owned());
        }
    }

    /// Replaces every secret value this attempt read with the redaction
    /// marker.
    pub fn redact(&self, text: &str) -> String {
        let inner = self.lock();
        let mut out = text.to_owned();
        for secret in &inner.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), crate::domain::REDACTED);
            }
        }
        out
    }

    /// Ends the attempt: the entries recorded (or matched), and the first
    /// divergence if any. In strict replay, recorded calls the guest never
    /// made count as a divergence too.
    pub fn finish_attempt(&self) -> (Vec<Entry>, Option<Divergence>) {
        let mut inner = self.lock();
        let entries = std::mem::take(&mut inner.entries);
        let mut divergence = inner.divergence.take();
        if divergence.is_none()
            && inner.strict
            && let Some(left) = inner.recorded.values().next().and_then(|v| v.first()).cloned()
        {
            divergence = Some(Divergence { key: left.key, recorded: Some(left), actual: None });
        }
        (entries, divergence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(kind: EntryKind, name: &str, request: &str) -> Call {
        Call { kind, name: name.into(), request: request.into() }
    }

    #[test]
    fn live_calls_are_numbered_in_order() {
        let run = RunId::new();
        let rec = Recorder::live(run, 0, 1);
        let a = rec.immediate(call(EntryKind::Now, "now", "null"), || "1".into());
        let b = rec.immediate(call(EntryKind::Now, "now", "null"), || "2".into());
        assert_eq!((a.as_deref(), b.as_deref()), (Some("1"), Some("2")));
        let (entries, divergence) = rec.finish_attempt();
        assert!(divergence.is_none());
        let keys: Vec<String> = entries.iter().map(|e| e.key.to_string()).collect();
        assert_eq!(keys, ["#0.1/1", "#0.1/2"]);
    }

    #[test]
    fn replay_answers_from_the_record_and_catches_divergence() {
        let run = RunId::new();
        let live = Recorder::live(run, 0, 1);
        live.immediate(call(EntryKind::Now, "now", "null"), || "42".into());
        live.immediate(call(EntryKind::Random, "random", "16"), || "\"ab\"".into());
        let (recorded, _) = live.finish_attempt();

        let same = Recorder::replay(run, 0, 1, recorded.clone());
        assert_eq!(same.immediate(call(EntryKind::Now, "now", "null"), || unreachable!()), Some("42".into()));
        assert_eq!(same.immediate(call(EntryKind::Random, "random", "16"), || unreachable!()), Some("\"ab\"".into()));
        assert!(same.finish_attempt().1.is_none());

        let changed = Recorder::replay(run, 0, 1, recorded.clone());
        changed.immediate(call(EntryKind::Now, "now", "null"), || unreachable!());
        assert_eq!(changed.immediate(call(EntryKind::Random, "random", "32"), || unreachable!()), None);
        let d = changed.finish_attempt().1.expect("a divergence");
        assert_eq!(d.key.child, 2);
        assert!(d.to_string().contains("nondeterministic at #0.1/2"));

        let shorter = Recorder::replay(run, 0, 1, recorded);
        shorter.immediate(call(EntryKind::Now, "now", "null"), || unreachable!());
        let d = shorter.finish_attempt().1.expect("missing call is a divergence");
        assert!(d.actual.is_none());
    }

    #[test]
    fn secrets_are_redacted_from_later_requests() {
        let rec = Recorder::live(RunId::new(), 0, 1);
        rec.add_secret("hunter2-token");
        assert_eq!(rec.redact("Bearer hunter2-token and more"), "Bearer <redacted> and more");
    }
}
