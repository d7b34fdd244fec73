//! The data of a workflow instance's wasmtime `Store`.

use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::run::RunCtx;
use crate::domain::Micros;
use crate::engine::state::{Context, Limiter};

/// Why a host call stopped the workflow without failing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suspension {
    /// Wake by itself at this time (a timer, a backoff, a wait's deadline).
    pub wake_at: Option<Micros>,
    /// Wake early when an event of this name arrives.
    pub event: Option<String>,
}

impl Suspension {
    /// Combines two suspensions of parallel calls: the earliest wake time.
    pub fn merge(self, other: Self) -> Self {
        let wake_at = match (self.wake_at, other.wake_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self { wake_at, event: self.event.or(other.event) }
    }
}

/// How a host call of the workflow ended the execution early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// Park the run.
    Suspend(Suspension),
    /// The lease moved (cancelled, or taken over): stop, write nothing.
    LeaseLost(String),
    /// A call does not match the journal (the divergence is in the recorder).
    Nondeterministic,
}

/// Store data of one workflow execution.
pub struct WorkflowState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub ctx: Context,
    pub run: Arc<RunCtx>,
    /// Set by a host call that stops the execution; read after the trap.
    pub interrupt: Arc<Mutex<Option<Interrupt>>>,
}

impl WorkflowState {
    /// Records why the execution stops and returns the error that traps
    /// the guest out of its `run`.
    pub fn interrupt(&self, why: Interrupt) -> wasmtime::Error {
        let message = format!("execution interrupted: {why:?}");
        let mut slot = self.interrupt.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(match slot.take() {
            Some(Interrupt::Suspend(a)) => match why {
                Interrupt::Suspend(b) => Interrupt::Suspend(a.merge(b)),
                lost => lost,
            },
            Some(lost) => lost,
            None => why,
        });
        wasmtime::Error::msg(message)
    }
}

impl WasiView for WorkflowState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
