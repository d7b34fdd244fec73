//! Ferry's vocabulary: ids, runs, journal entries and limits.
//!
//! Plain data only: nothing here touches a database, wasmtime, the network
//! or the clock. Every other module speaks in these types.

mod deployment;
mod ids;
mod journal;
mod limits;
mod run;
mod time;

pub use deployment::{Deployment, DeploymentConfig, Flow, Limit, RateLimit, Schedule};
pub use ids::{ComponentHash, ParseIdError, RunId};
pub use journal::{Entry, EntryKey, EntryKind, EntryStatus, REDACTED};
pub use limits::{Limits, RetryPolicy};
pub use run::{Event, NewRun, Run, RunError, RunErrorKind, RunKind, RunStatus, World};
pub use time::Micros;
