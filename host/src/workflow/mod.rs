//! Durable execution: workflows that call steps, sleep and wait for events,
//! and lone steps run with retries, all resumable by replay.
//!
//! How a run executes (see `docs/ARCHITECTURE.md`):
//! - A worker claims a ready run under a lease and instantiates the
//!   workflow over the run's journal so far. Each host call takes the next
//!   sequence number; a call the journal already holds is checked (kind,
//!   name, request hash) and answered from the record; a mismatch fails the
//!   run as `nondeterministic`. Calls past the record run live.
//! - A step call runs attempts until one succeeds, a failure is final, or
//!   the retry policy gives up. Each attempt's entries are committed (fenced
//!   by the lease) before the workflow sees the result, so a crash never
//!   repeats a finished step. A failed attempt's entry records when the next
//!   attempt is due; a long backoff parks the run instead of holding a
//!   worker.
//! - `sleep` and `wait-for-event` record their deadline, then park the run
//!   (status `waiting`, wake time, event name); the worker drops the
//!   instance. The run resumes by replay when it is woken.

mod appends;
mod orchestration;
mod rerun;
mod run;
mod scheduler;
mod state;
mod steps;

pub(crate) use orchestration::{start_request, started_result};
pub use rerun::{RerunError, start_rerun};
pub use run::{Executor, RunCtx, RunPolicy};
pub use scheduler::{Until, Worker, WorkerConfig};
pub use steps::{Resolved, StepResolver};
