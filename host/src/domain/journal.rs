//! Journal entries: the ordered record of everything that crossed a run's
//! sandbox boundary.
//!
//! An entry is addressed by [`EntryKey`] `(seq, attempt, child)`:
//! - `seq` is the position of a call in the run's own sequence: the k-th
//!   host call a workflow makes, or 0 for the single step call of a run of
//!   a lone step. Parallel step calls take consecutive `seq`s in list order.
//! - `attempt` numbers the attempts of a step call (1, 2, …); calls that
//!   are not attempted (a clock read by the workflow, a sleep) use 0.
//! - `child` is 0 for the call itself and 1, 2, … for the host calls a step
//!   attempt made (HTTP, clock, random, logs), in the order it made them.
//!   The parent of a child entry is the entry `(seq, attempt, 0)`.
//!
//! Because a step attempt runs single-threaded in its own sandbox, its child
//! numbering is deterministic even when several steps run in parallel, and a
//! replay can hand each attempt exactly its own recorded children.
//!
//! Entries are append-only: once written, an entry never changes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Micros, RunId};

/// Marker written in place of a secret value or a credential header.
pub const REDACTED: &str = "<redacted>";

/// Where an entry sits in its run's journal. Ordered as the journal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryKey {
    pub seq: u32,
    pub attempt: u32,
    pub child: u32,
}

impl EntryKey {
    /// The key of a step attempt (or of a workflow-level call when
    /// `attempt` is 0).
    pub fn call(seq: u32, attempt: u32) -> Self {
        Self { seq, attempt, child: 0 }
    }

    /// Whether this entry is a host call made by a step attempt.
    pub fn is_child(&self) -> bool {
        self.child > 0
    }
}

impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.attempt, self.child) {
            (0, 0) => write!(f, "#{}", self.seq),
            (a, 0) => write!(f, "#{}.{a}", self.seq),
            (a, c) => write!(f, "#{}.{a}/{c}", self.seq),
        }
    }
}

/// What kind of call an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// One attempt of a step: request is its input, response its output.
    Step,
    /// `http.fetch`: request and response as JSON (credentials redacted).
    Http,
    /// `context.now`.
    Now,
    /// `context.random-bytes`.
    Random,
    /// `context.log`: a log line; it has no response.
    Log,
    /// `context.secret`: the response is a redaction marker and a hash.
    Secret,
    /// A WASI wall-clock read (`SystemTime::now` in Rust guests).
    WallClock,
    /// A WASI monotonic-clock read (`Instant::now` in Rust guests).
    MonotonicClock,
    /// The seed from which all WASI randomness of an attempt is drawn.
    RandomSeed,
    /// `workflow.sleep`.
    Sleep,
    /// `workflow.wait-for-event`.
    Event,
    /// `workflow.call-workflow`: a child run.
    ChildRun,
    /// `workflow.start-workflow`: a run started without waiting for it.
    StartRun,
    /// `context.put-blob`: the request is the blob's hash and size, never
    /// its bytes (those are in the store's blobs, once).
    PutBlob,
    /// `context.get-blob`: the response is the blob's hash and size.
    GetBlob,
}

impl EntryKind {
    /// The stable text form stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::Http => "http",
            Self::Now => "now",
            Self::Random => "random",
            Self::Log => "log",
            Self::Secret => "secret",
            Self::WallClock => "wall-clock",
            Self::MonotonicClock => "monotonic-clock",
            Self::RandomSeed => "random-seed",
            Self::Sleep => "sleep",
            Self::Event => "event",
            Self::ChildRun => "child-run",
            Self::StartRun => "start-run",
            Self::PutBlob => "put-blob",
            Self::GetBlob => "get-blob",
        }
    }

    const ALL: [Self; 15] = [
        Self::Step,
        Self::Http,
        Self::Now,
        Self::Random,
        Self::Log,
        Self::Secret,
        Self::WallClock,
        Self::MonotonicClock,
        Self::RandomSeed,
        Self::Sleep,
        Self::Event,
        Self::ChildRun,
        Self::StartRun,
        Self::PutBlob,
        Self::GetBlob,
    ];
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown journal entry kind `{s}`"))
    }
}

/// How a recorded call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    /// The call returned normally (for HTTP: any status code).
    Ok,
    /// The call failed; `error` says why.
    Error,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

impl FromStr for EntryStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ok" => Ok(Self::Ok),
            "error" => Ok(Self::Error),
            other => Err(format!("unknown journal entry status `{other}`")),
        }
    }
}

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub run_id: RunId,
    #[serde(flatten)]
    pub key: EntryKey,
    pub kind: EntryKind,
    /// The call's name: the step name, the URL's method and host, the log
    /// level, the secret's name…
    pub name: String,
    /// The call's request as JSON text (a step's input, an HTTP request).
    pub request: String,
    /// sha256 of `request`, checked on replay.
    pub request_hash: String,
    /// The call's response as JSON text, if it returned one.
    pub response: Option<String>,
    pub status: EntryStatus,
    /// For a failed call: what happened, for people.
    pub error: Option<String>,
    pub started_at: Micros,
    pub finished_at: Micros,
    /// Fuel a step attempt consumed (instantiation included).
    pub fuel: Option<u64>,
    /// Step attempts: the component that ran, as `name@sha256`, so a replay
    /// loads exactly that version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

impl Entry {
    /// The hash recorded for a request, so replay can compare calls cheaply.
    pub fn hash_request(request: &str) -> String {
        hex::encode(Sha256::digest(request.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_the_journal() {
        let mut keys = [
            EntryKey::call(2, 0),
            EntryKey { seq: 1, attempt: 2, child: 1 },
            EntryKey::call(1, 2),
            EntryKey::call(1, 1),
            EntryKey { seq: 1, attempt: 1, child: 3 },
        ];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["#1.1", "#1.1/3", "#1.2", "#1.2/1", "#2"]);
    }

    #[test]
    fn kinds_round_trip_through_text() {
        for kind in EntryKind::ALL {
            assert_eq!(kind.as_str().parse::<EntryKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert!("teleport".parse::<EntryKind>().is_err());
    }
}
