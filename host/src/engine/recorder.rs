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

use std::collections::VecDeque;
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

enum Mode {
    Live,
    Replay(VecDeque<Entry>),
}

struct Inner {
    run_id: RunId,
    seq: u32,
    attempt: u32,
    next_child: u32,
    mode: Mode,
    entries: Vec<Entry>,
    divergence: Option<Divergence>,
    /// Secret values this attempt read: redacted wherever they show up in
    /// later recorded requests.
    secrets: Vec<String>,
}

/// Shared handle to the journal of one attempt. Cloned into the WASI clock
/// and random sources, which have no access to the store's data.
#[derive(Clone)]
pub struct Recorder(Arc<Mutex<Inner>>);

impl Recorder {
    /// A recorder that runs calls live and records them.
    pub fn live(run_id: RunId, seq: u32, attempt: u32) -> Self {
        Self::with_mode(run_id, seq, attempt, Mode::Live)
    }

    /// A recorder that answers calls from `recorded`: the child entries of
    /// the attempt `(seq, attempt)`, in journal order.
    pub fn replay(run_id: RunId, seq: u32, attempt: u32, recorded: Vec<Entry>) -> Self {
        Self::with_mode(run_id, seq, attempt, Mode::Replay(recorded.into()))
    }

    fn with_mode(run_id: RunId, seq: u32, attempt: u32, mode: Mode) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            run_id,
            seq,
            attempt,
            next_child: 1,
            mode,
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

    /// Whether calls are answered from a recorded journal.
    pub fn is_replay(&self) -> bool {
        matches!(self.lock().mode, Mode::Replay(_))
    }

    /// Starts a call: see [`Begun`].
    pub fn begin(&self, call: Call) -> Begun {
        let mut inner = self.lock();
        let key = EntryKey { seq: inner.seq, attempt: inner.attempt, child: inner.next_child };
        inner.next_child += 1;
        if let Some(d) = &inner.divergence {
            return Begun::Diverged(d.clone());
        }
        match &mut inner.mode {
            Mode::Live => Begun::Live { key, started_at: Micros::now() },
            Mode::Replay(queue) => {
                let recorded = queue.pop_front();
                let matches = recorded.as_ref().is_some_and(|r| {
                    r.kind == call.kind && r.name == call.name && r.request_hash == Entry::hash_request(&call.request)
                });
                match recorded {
                    Some(r) if matches => {
                        inner.entries.push(r.clone());
                        Begun::Recorded(r)
                    }
                    recorded => {
                        let d = Divergence { key, recorded, actual: Some(call) };
                        inner.divergence = Some(d.clone());
                        Begun::Diverged(d)
                    }
                }
            }
        }
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
    /// divergence if any. On replay, recorded calls the guest never made
    /// count as a divergence too.
    pub fn finish_attempt(&self) -> (Vec<Entry>, Option<Divergence>) {
        let mut inner = self.lock();
        let entries = std::mem::take(&mut inner.entries);
        let mut divergence = inner.divergence.take();
        if divergence.is_none()
            && let Mode::Replay(queue) = &mut inner.mode
            && let Some(left) = queue.pop_front()
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
