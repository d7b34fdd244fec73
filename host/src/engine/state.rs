//! The data of one attempt's wasmtime `Store`: the deny-all WASI context,
//! resource limits, and what the host imports need (recorder, HTTP policy,
//! secrets, run info).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::http::HttpPolicy;
use super::recorder::Recorder;
use super::secrets::Secrets;
use super::sources::{JournaledRng, MonotonicClock, WallClock, insecure_seed};
use crate::domain::RunId;

/// Largest guest stdout or stderr kept per attempt.
pub const PIPE_CAPACITY: usize = 64 << 10;

/// Who is running, as `context.run-info` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: RunId,
    pub component: String,
    pub step: String,
    pub seq: u32,
    pub attempt: u32,
}

impl RunInfo {
    /// The step call's idempotency key: the same for every attempt of the
    /// call. Inside a workflow itself (no step), the run id.
    pub fn idempotency_key(&self) -> String {
        if self.step.is_empty() { self.run_id.to_string() } else { format!("{}-{}", self.run_id, self.seq) }
    }
}

/// What `ferry:runtime/context` needs, shared by steps and workflows.
pub struct Context {
    pub recorder: Recorder,
    pub info: RunInfo,
    pub secrets: Arc<Secrets>,
    /// Where `put-blob` and `get-blob` go.
    pub blobs: super::Blobs,
}

/// A deny-all WASI context: no files, no environment, no arguments, no
/// sockets; stdout and stderr captured; clocks and randomness answered
/// through `recorder`.
pub fn sandbox_wasi(
    recorder: &Recorder,
    info: &RunInfo,
    origin: std::time::Instant,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
) -> WasiCtx {
    WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(WallClock(recorder.clone()))
        .monotonic_clock(MonotonicClock { recorder: recorder.clone(), origin })
        .secure_random(JournaledRng::new(recorder.clone(), 0))
        .insecure_random(JournaledRng::new(recorder.clone(), 1))
        .insecure_random_seed(insecure_seed(info.run_id, info.seq, info.attempt))
        .max_random_size(1 << 20)
        .build()
}

/// Enforces the memory cap and remembers that it was hit, so the failure
/// is reported as what it is rather than as a generic trap.
pub struct Limiter {
    pub memory_cap: usize,
    pub memory_hit: Option<usize>,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_hit = Some(desired);
            wasmtime::bail!(
                "memory cap hit: the step tried to grow its memory to {desired} bytes, past its cap of {} bytes",
                self.memory_cap
            );
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

/// Store data of one step attempt.
pub struct StepState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub ctx: Context,
    pub http: Arc<HttpPolicy>,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
    /// Awaited before the step acts on the world; none in a replay.
    pub settle: Option<Arc<dyn Settle>>,
}

/// What a live step awaits before it acts on the world (an outbound
/// request): that the run's earlier journal writes are durable, since the
/// step may run while they commit. `Err` says why they will not be; the
/// step must not act then.
pub trait Settle: Send + Sync {
    fn settle(&self) -> futures::future::BoxFuture<'_, Result<(), String>>;
}

impl std::fmt::Debug for dyn Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settle")
    }
}

impl StepState {
    /// A sandbox with nothing in it; see [`sandbox_wasi`].
    pub fn new(
        info: RunInfo,
        recorder: Recorder,
        memory_cap: usize,
        http: Arc<HttpPolicy>,
        secrets: Arc<Secrets>,
        blobs: super::Blobs,
        origin: std::time::Instant,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(PIPE_CAPACITY);
        let stderr = MemoryOutputPipe::new(PIPE_CAPACITY);
        let wasi = sandbox_wasi(&recorder, &info, origin, &stdout, &stderr);
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter { memory_cap, memory_hit: None },
            ctx: Context { recorder, info, secrets, blobs },
            http,
            stdout,
            stderr,
            settle: None,
        }
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
