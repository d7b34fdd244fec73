//! End-to-end tests: the real `ferry` binary running real components built
//! from `steps/` in the test setup.
//!
//! One test binary (this file and its modules) so the guests are built
//! once per run; see `support::guests`.

mod support;

mod bench;
mod cli;
mod daemon;
mod dashboard;
mod hosts;
mod limits;
mod pipeline;
mod replay;
mod sandbox;
mod workflows;
