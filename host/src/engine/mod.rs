//! The wasmtime side of Ferry: one `Engine`, components compiled once,
//! one fresh sandboxed `Store` per step attempt.
//!
//! What an attempt gets:
//! - a fresh instance from the component's `InstancePre`, memory from the
//!   pooling allocator;
//! - a fuel budget (deterministic CPU limit), a memory cap (enforced by a
//!   resource limiter that remembers it was hit), a wall-clock deadline
//!   (the epoch ticker makes a busy guest yield every tick, so the deadline
//!   fires even in a tight loop), and an output size cap;
//! - WASI p2 with no preopened directories, no environment, no sockets,
//!   and clocks and randomness that answer through the journal.
//!
//! This module never writes to the store: an attempt returns its journal
//! entries and outcome, and the caller persists them.

mod attempt;
pub mod bindings;
pub mod blobs;
pub mod component;
mod host;
pub mod http;
pub mod recorder;
pub mod secrets;
pub mod sources;
pub mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

pub use attempt::{Attempt, LiveInstance, StepCall};
pub use blobs::Blobs;
pub use component::LoadError;
pub use http::{AllowList, HttpConfig};
pub use recorder::Divergence;
pub use secrets::Secrets;
pub use state::Settle;

use crate::domain::{ComponentHash, Limits, World};
use bindings::step::StepPre;
use state::StepState;

/// How often the epoch ticks: the granularity of wall-clock deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where compiled artifacts are cached; none keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Most step instances alive at once (pooling allocator slots).
    pub max_instances: u32,
    /// Highest memory cap any step may be given, in bytes.
    pub max_memory_bytes: u64,
    /// Limits of an attempt unless the deployment or call says otherwise.
    pub default_limits: Limits,
    pub http: HttpConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 256,
            max_memory_bytes: 1 << 30,
            default_limits: Limits::default(),
            http: HttpConfig::default(),
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Wasmtime(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// A component ready to run: compiled, checked, and for steps linked.
pub struct Loaded {
    pub hash: ComponentHash,
    pub world: World,
    kind: LoadedKind,
}

enum LoadedKind {
    Step(StepPre<StepState>),
    /// Workflows are linked by the workflow executor, which owns the
    /// orchestration interface.
    Workflow(wasmtime::component::Component),
}

impl Loaded {
    /// The compiled component of a workflow (none for a step).
    pub fn workflow_component(&self) -> Option<&wasmtime::component::Component> {
        match &self.kind {
            LoadedKind::Workflow(c) => Some(c),
            LoadedKind::Step(_) => None,
        }
    }

    fn step_pre(&self) -> Option<&StepPre<StepState>> {
        match &self.kind {
            LoadedKind::Step(p) => Some(p),
            LoadedKind::Workflow(_) => None,
        }
    }
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("hash", &self.hash).field("world", &self.world).finish()
    }
}

/// Bytes of a pooled linear memory kept resident between instances when
/// the kernel can report which pages are dirty (PAGEMAP_SCAN): only those
/// are reset. A Rust guest's stack (1 MiB) and data sit below ~1.2 MiB.
const KEEP_RESIDENT_SCANNED: usize = 2 << 20;

/// The WebAssembly engine, shared by every attempt of this process.
pub struct Engine {
    wasmtime: wasmtime::Engine,
    step_linker: Linker<StepState>,
    cache: Option<component::ArtifactCache>,
    loaded: Mutex<HashMap<ComponentHash, Arc<Loaded>>>,
    http_client: reqwest::Client,
    config: EngineConfig,
    origin: Instant,
    /// Step attempts alive at once: half the pool's instance slots, so the
    /// workflows (which a worker caps by its run limit) keep the other half
    /// and a burst of parallel steps waits for a slot instead of failing to
    /// instantiate.
    step_slots: Arc<tokio::sync::Semaphore>,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Engine {
    /// Configures wasmtime (Cranelift, fuel, epochs, pooling, deterministic
    /// floats), links WASI and the Ferry interfaces, starts the epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, StartError> {
        let wasm_err = |e: wasmtime::Error| StartError::Wasmtime(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::new();
        let pagemap_scan = PoolingAllocationConfig::is_pagemap_scan_available();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances.saturating_mul(4))
            .total_memories(config.max_instances.saturating_mul(2))
            .total_tables(config.max_instances.saturating_mul(4))
            .total_stacks(config.max_instances)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            // A slot's dirty pages (found with Linux's PAGEMAP_SCAN, 6.7+)
            // are reset in place up to this size instead of given back with
            // madvise: the next instance in the slot takes no page faults,
            // and no TLB-flush IPI goes to the other cores. On the seed
            // bench that doubled step-runs/s (docs/PERFORMANCE.md). Without
            // the ioctl the first 64 KiB are kept, as before.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(if pagemap_scan { KEEP_RESIDENT_SCANNED } else { 64 << 10 })
            .table_keep_resident(64 << 10);
        let mut wt = wasmtime::Config::new();
        wt.consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let wasmtime = wasmtime::Engine::new(&wt).map_err(wasm_err)?;

        let mut step_linker = Linker::<StepState>::new(&wasmtime);
        wasmtime_wasi::p2::add_to_linker_async(&mut step_linker).map_err(wasm_err)?;
        bindings::types::add_to_linker::<StepState, HasSelf<state::Context>>(&mut step_linker, |s| &mut s.ctx)
            .map_err(wasm_err)?;
        bindings::context::add_to_linker::<StepState, HasSelf<state::Context>>(&mut step_linker, |s| &mut s.ctx)
            .map_err(wasm_err)?;
        bindings::http::add_to_linker::<StepState, HasSelf<StepState>>(&mut step_linker, |s| s).map_err(wasm_err)?;

        let http_client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        let cache = config.cache_dir.as_deref().map(|dir| component::ArtifactCache::new(dir, &wasmtime));
        let ticker = EpochTicker::start(wasmtime.clone());
        Ok(Self {
            wasmtime,
            step_linker,
            cache,
            loaded: Mutex::new(HashMap::new()),
            http_client,
            config: config.clone(),
            origin: Instant::now(),
            step_slots: Arc::new(tokio::sync::Semaphore::new((config.max_instances / 2).max(1) as usize)),
            _ticker: ticker,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The wasmtime engine, for the workflow executor's own linker.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.wasmtime
    }

    /// The instant host monotonic clocks count from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The component with this hash, if this process has loaded it.
    pub fn loaded(&self, hash: &ComponentHash) -> Option<Arc<Loaded>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(hash).cloned()
    }

    /// Checks, compiles (or loads from the cache) and links a component.
    /// Loading the same bytes twice returns the same `Loaded`.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<Loaded>, LoadError> {
        let hash = ComponentHash::of(bytes);
        if let Some(l) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&hash) {
            return Ok(l.clone());
        }
        component::check_header(bytes)?;
        let cached = self.cache.as_ref().and_then(|c| c.load(&self.wasmtime, &hash));
        let compiled = match cached {
            Some(c) => c,
            None => {
                let engine = self.wasmtime.clone();
                let owned = bytes.to_vec();
                let compiled =
                    tokio::task::spawn_blocking(move || wasmtime::component::Component::new(&engine, &owned))
                        .await
                        .map_err(|e| LoadError::Malformed(format!("the compiler stopped: {e}")))?
                        .map_err(|e| LoadError::Malformed(format!("{e:#}")))?;
                if let Some(cache) = &self.cache {
                    cache.store(&hash, &compiled)?;
                }
                compiled
            }
        };
        let world = component::classify(&self.wasmtime, &compiled)?;
        let kind = match world {
            World::Step => {
                let instance_pre =
                    self.step_linker.instantiate_pre(&compiled).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
                LoadedKind::Step(StepPre::new(instance_pre).map_err(|e| {
                    LoadError::WrongWorld(format!(
                        "the export `run` does not have the step signature `run: func(input: string) -> result<string, step-error>`: {e:#}"
                    ))
                })?)
            }
            World::Workflow => LoadedKind::Workflow(compiled),
        };
        let loaded = Arc::new(Loaded { hash: hash.clone(), world, kind });
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).insert(hash, loaded.clone());
        Ok(loaded)
    }

    /// The policy an attempt's `http.fetch` runs under.
    pub fn http_policy(&self, allow: AllowList) -> http::HttpPolicy {
        http::HttpPolicy { client: self.http_client.clone(), allow, config: self.config.http.clone() }
    }
}

/// Increments the engine's epoch every [`EPOCH_TICK`] on a plain thread,
/// until dropped.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new().name("ferry-epoch".into()).spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the epoch ticker: wall-clock deadlines of CPU-bound steps will not fire");
        }
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
