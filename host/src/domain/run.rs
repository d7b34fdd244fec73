//! Runs: one execution of a workflow or of a lone step on an input.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ComponentHash, Micros, RunId};

/// The WIT world a component implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `ferry:runtime/step`: exports `run`, may import `context` and `http`.
    Step,
    /// `ferry:runtime/workflow`: exports `run`, may import `context` and `workflow`.
    Workflow,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::Workflow => "workflow",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for World {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "step" => Ok(Self::Step),
            "workflow" => Ok(Self::Workflow),
            other => Err(format!("unknown world `{other}` (expected step or workflow)")),
        }
    }
}

/// What a run executes: a workflow, or one step on its own.
pub type RunKind = World;

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Created, waiting for a worker to claim it.
    Queued,
    /// Claimed by a worker under a lease; executing.
    Running,
    /// Parked on a timer, an event or a backoff; resumes by replay.
    Waiting,
    /// Finished with an output. Final.
    Completed,
    /// Finished with an error. Final.
    Failed,
    /// Stopped on request. Final.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the run can change no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Queued, Self::Running, Self::Waiting, Self::Completed, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown run status `{s}` (expected queued, running, waiting, completed, failed or cancelled)")
            })
    }
}

/// Why a run or a step attempt failed, sorted by what can be done about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunErrorKind {
    /// The guest returned `step-error::retryable`.
    Retryable,
    /// The guest returned `step-error::fatal`.
    Fatal,
    /// The guest trapped (a panic, an `unreachable`, a bad memory access).
    Trap,
    /// The attempt used up its fuel budget.
    FuelExhausted,
    /// The attempt tried to grow its memory past the cap.
    MemoryLimit,
    /// The attempt ran past its wall-clock deadline.
    Timeout,
    /// The output was larger than the output cap.
    OutputTooLarge,
    /// The output (or input) was not JSON.
    InvalidJson,
    /// A workflow made different calls than its journal records.
    Nondeterministic,
    /// The run was cancelled.
    Cancelled,
    /// The host could not run the attempt (component missing, pool full…).
    Host,
}

impl RunErrorKind {
    const ALL: [Self; 11] = [
        Self::Retryable,
        Self::Fatal,
        Self::Trap,
        Self::FuelExhausted,
        Self::MemoryLimit,
        Self::Timeout,
        Self::OutputTooLarge,
        Self::InvalidJson,
        Self::Nondeterministic,
        Self::Cancelled,
        Self::Host,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Fatal => "fatal",
            Self::Trap => "trap",
            Self::FuelExhausted => "fuel-exhausted",
            Self::MemoryLimit => "memory-limit",
            Self::Timeout => "timeout",
            Self::OutputTooLarge => "output-too-large",
            Self::InvalidJson => "invalid-json",
            Self::Nondeterministic => "nondeterministic",
            Self::Cancelled => "cancelled",
            Self::Host => "host",
        }
    }
}

impl fmt::Display for RunErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunErrorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown error kind `{s}`"))
    }
}

/// A failure with its cause and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    pub kind: RunErrorKind,
    pub message: String,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// A run to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    pub id: RunId,
    pub kind: RunKind,
    /// Deployment or component name.
    pub component: String,
    pub component_hash: ComponentHash,
    /// The input, as JSON text.
    pub input: String,
    /// At most one run per (component, key).
    pub idempotency_key: Option<String>,
    pub created_at: Micros,
    /// Why the run exists when it is not a plain submission (a rerun).
    pub origin: Option<String>,
    /// Flow control from its deployment (none for runs outside deployments).
    pub flow: super::Flow,
    /// Created `waiting` with no wake time instead of `queued`: no worker
    /// claims it until its creator claims it by id and parks it due (a
    /// rerun copies the kept journal first, so no worker may start it from
    /// the beginning in between).
    pub held: bool,
}

impl NewRun {
    /// The status the run is created with: `queued`, or `waiting` when held.
    pub fn initial_status(&self) -> RunStatus {
        if self.held { RunStatus::Waiting } else { RunStatus::Queued }
    }
}

/// A run as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub kind: RunKind,
    pub component: String,
    pub component_hash: ComponentHash,
    pub input: String,
    pub status: RunStatus,
    pub output: Option<String>,
    pub error: Option<RunError>,
    pub idempotency_key: Option<String>,
    pub created_at: Micros,
    pub started_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    /// Who holds the lease while the run executes.
    pub lease_owner: Option<String>,
    /// Bumped on every claim; journal writes carry it (fencing).
    pub lease_epoch: i64,
    pub lease_expires_at: Option<Micros>,
    /// While waiting: when the run wakes by itself (a timer, a backoff, an
    /// event wait's deadline); none waits for an event only.
    pub wake_at: Option<Micros>,
    /// While waiting: the name of the event that wakes it early.
    pub waiting_on: Option<String>,
    /// Why the run exists when it is not a plain submission (a rerun).
    pub origin: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_and_know_finality() {
        for s in ["queued", "running", "waiting", "completed", "failed", "cancelled"] {
            assert_eq!(s.parse::<RunStatus>().unwrap().as_str(), s);
        }
        assert!(RunStatus::Failed.is_final());
        assert!(!RunStatus::Waiting.is_final());
        assert!("done".parse::<RunStatus>().unwrap_err().contains("expected"));
        for kind in RunErrorKind::ALL {
            assert_eq!(kind.as_str().parse::<RunErrorKind>(), Ok(kind));
        }
        assert!("gremlins".parse::<RunErrorKind>().is_err());
    }
}

/// An event sent to the host (`ferry send-event NAME --data JSON`). Events
/// are kept; a run waiting for an event takes the first matching one sent
/// since the run was created that it has not taken before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing in the order events were stored.
    pub id: i64,
    pub name: String,
    /// JSON text.
    pub data: String,
    pub created_at: Micros,
}
