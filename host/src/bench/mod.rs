//! The workload driver of `ferry bench`: the seed workload run in-process
//! on a fresh store, measured in three phases.
//!
//! 1. **Baseline**: the `echo` step's export called in a loop on one live
//!    instance (no fresh instance, no journal): the floor a step costs.
//! 2. **Throughput**: `workflows` runs of the workflow (`wf-seq`: `steps`
//!    sequential echo calls; or `wf-fanout-bench`: half of them in one
//!    `call_steps`, the rest sequential) executed by one [`Worker`] with
//!    `concurrency` runs in flight, every step attempt journaled.
//! 3. **Latency**: runs created and executed one at a time on the idle
//!    worker, each timed from creation to its final status.
//!
//! Memory stays flat however many runs complete: runs are created in
//! batches only as earlier ones finish (at most a window of a few times
//! `concurrency` queued ahead), progress is counted in the store
//! (`run_counts`), not by keeping run ids, and nothing about a run is kept
//! here once it is final. The latency phase keeps one duration per run of
//! that phase, for the percentiles.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::domain::{Micros, NewRun, RunId, RunStatus, World};
use crate::engine::{Engine, LoadError, Secrets};
use crate::store::{self, Component, Durability, Store};
use crate::workflow::{StepResolver, Until, Worker, WorkerConfig};

pub mod postgres;

/// The step's input: ~200 bytes of JSON, as in `benches/step.rs`.
pub const PAYLOAD: &str = r#"{"client":"acme-co","week":"2026-W49","source":"meta-ads","rows":[{"date":"2026-12-01","spend":1234.5,"clicks":321},{"date":"2026-12-02","spend":987.25,"clicks":298}],"cursor":null}"#;

/// The step every workflow of the workload calls.
pub const STEP: &str = "echo";
/// The sequential workflow (the seed workload).
pub const SEQUENTIAL: &str = "wf-seq";
/// The fan-out workflow: parallel calls, then sequential ones.
pub const FANOUT: &str = "wf-fanout-bench";

/// How often the throughput phase looks at the store's run counts.
const POLL: Duration = Duration::from_millis(10);

/// How often the throughput phase counts runs by status in full (for the
/// failures shown in its progress).
const FULL_COUNT_EVERY: Duration = Duration::from_secs(1);
/// The throughput phase gives up when no run finished for this long.
const STALL: Duration = Duration::from_secs(120);
/// Most runs created in one go (one commit group of the writer).
const CREATE_BATCH: u64 = 512;
/// Writes of the fsync probe (the median counts).
pub const FSYNC_PROBES: usize = 200;
/// Calls of the baseline: batches × calls per batch (the median batch counts).
const BASELINE_BATCHES: u32 = 10;
const BASELINE_CALLS: u32 = 200;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Workflows of the throughput phase.
    pub workflows: u64,
    /// Step calls per workflow.
    pub steps: u32,
    /// The fan-out shape: `steps / 2` calls in parallel, then the rest in
    /// sequence.
    pub parallel: bool,
    /// Runs in flight in the throughput phase.
    pub concurrency: usize,
    /// Runs of the latency phase (one at a time).
    pub latency_runs: u32,
    /// Record the RSS after each 1/K of the throughput phase's runs (0: never).
    pub rss_checkpoints: u32,
    /// The store's durability mode, for the report.
    pub durability: Durability,
    /// Runs compute ahead of their commits (`RunPolicy::run_ahead`).
    pub run_ahead: bool,
}

impl Config {
    /// The workflow component's name.
    pub fn workflow(&self) -> &'static str {
        if self.parallel { FANOUT } else { SEQUENTIAL }
    }

    /// Step calls made in parallel (one `call_steps`), then in sequence.
    pub fn shape(&self) -> (u32, u32) {
        if self.parallel { (self.steps / 2, self.steps - self.steps / 2) } else { (0, self.steps) }
    }

    /// The input of every workflow run.
    pub fn input(&self) -> String {
        let (parallel, sequential) = self.shape();
        if self.parallel {
            format!(r#"{{"parallel":{parallel},"sequential":{sequential},"payload":{PAYLOAD}}}"#)
        } else {
            format!(r#"{{"steps":{sequential},"payload":{PAYLOAD}}}"#)
        }
    }
}

/// Told what happens while the benchmark runs (for progress displays).
pub trait Observer: Send + Sync {
    /// A phase starts: `baseline`, `warm-up`, `throughput`, `latency`.
    fn phase(&self, _name: &str, _runs: u64) {}
    /// Throughput phase: runs final so far, and how many of them failed.
    fn progress(&self, _finished: u64, _failed: u64, _elapsed: Duration) {}
    /// The throughput phase is over.
    fn throughput_done(&self) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the component {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot load {name}: {source}")]
    Load { name: String, source: LoadError },
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{0}")]
    Failed(String),
}

/// RSS after some runs of the throughput phase were final.
#[derive(Clone, Debug, Serialize)]
pub struct RssCheckpoint {
    pub finished: u64,
    pub rss_bytes: u64,
}

/// Where the store keeps its bytes, to measure them.
#[derive(Clone, Copy, Debug)]
pub enum StoreSize<'a> {
    /// A SQLite file (and its `-wal`).
    Sqlite(&'a Path),
    /// The bench's own schema in a Postgres database.
    Postgres(&'a postgres::FreshSchema),
    /// Not measured.
    Unknown,
}

impl StoreSize<'_> {
    /// The store's bytes now, if they can be measured.
    pub async fn bytes(&self) -> Option<u64> {
        match self {
            Self::Sqlite(path) => store_bytes(path),
            Self::Postgres(schema) => schema.bytes().await,
            Self::Unknown => None,
        }
    }

    /// `sqlite`, `postgres` or `unknown`, for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
            Self::Unknown => "unknown",
        }
    }
}

/// What the benchmark measured. Times are in seconds, milliseconds or
/// microseconds as the field names say.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `in-process` (this report) or `through-daemon`.
    pub mode: &'static str,
    /// The store: `sqlite`, `postgres` (or `unknown`).
    pub store: &'static str,
    /// `sequential` or `parallel`.
    pub shape: &'static str,
    pub workflow: &'static str,
    pub step: &'static str,
    pub workflows: u64,
    pub steps: u32,
    pub parallel_steps: u32,
    pub sequential_steps: u32,
    pub payload_bytes: usize,
    pub concurrency: usize,
    pub durability: Durability,
    /// Runs computed ahead of their commits (off with `--no-run-ahead`).
    pub run_ahead: bool,
    pub cores: usize,
    /// Throughput phase: runs that completed, and that ended otherwise.
    pub completed: u64,
    pub failed: u64,
    /// Step runs of the throughput phase: workflows × steps.
    pub step_runs: u64,
    /// Everything after the guests were found: loading, baseline,
    /// warm-up, throughput and latency phases.
    pub total_wall_s: f64,
    pub throughput_wall_s: f64,
    pub step_runs_per_s: f64,
    pub workflows_per_s: f64,
    /// Latency phase: runs, how many did not complete, percentiles.
    pub latency_runs: u32,
    pub latency_failed: u32,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_mean_ms: f64,
    pub latency_max_ms: f64,
    /// One call of the step's export on a live instance.
    pub baseline_us: f64,
    /// Latency p50 divided by the steps of a run.
    pub per_step_us: f64,
    /// `per_step_us − baseline_us`.
    pub per_step_overhead_us: f64,
    /// One durable commit's floor on this disk, measured in this run: a
    /// 4 KiB write and `fdatasync` of a file beside the SQLite store (the
    /// median of [`FSYNC_PROBES`]). `None` on Postgres (its disk is the
    /// server's).
    pub fsync_us: Option<f64>,
    /// Commits with an fsync of their own during the latency phase, per
    /// run (SQLite; 0 under `buffered`). A run's commits overlap its
    /// steps, so a 12-step run waits for fewer than 12 of them.
    pub fsyncs_per_run: Option<f64>,
    /// What the engine itself adds per step: `per_step_overhead_us` less
    /// the device time of its run's fsyncs (`fsync_us` × `fsyncs_per_run`
    /// / steps). `None` on Postgres.
    pub per_step_engine_us: Option<f64>,
    /// Peak resident set size of the process (VmHWM), if known.
    pub peak_rss_bytes: Option<u64>,
    pub rss_checkpoints: Vec<RssCheckpoint>,
    /// The store's size after the throughput phase (SQLite: the file and
    /// its -wal; Postgres: the bench schema's tables with their indexes),
    /// and its growth over that phase per step run.
    pub store_bytes: Option<u64>,
    pub store_bytes_per_step_run: Option<f64>,
}

/// Runs the benchmark on `store` (fresh; its size measured through
/// `size`), with the components `echo.wasm` and the workflow in `guests`.
pub async fn run(
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    guests: &Path,
    size: StoreSize<'_>,
    config: &Config,
    observer: &dyn Observer,
) -> Result<Report, Error> {
    let started = Instant::now();
    let (parallel_steps, sequential_steps) = config.shape();
    let steps = parallel_steps + sequential_steps;
    if steps == 0 || config.workflows == 0 {
        return Err(Error::Failed("the workload is empty: give at least one workflow and one step".into()));
    }

    // The components: the step (for the baseline; the worker resolves it
    // by name from `guests`) and the workflow (stored for its runs).
    let echo_bytes = read_component(guests, STEP)?;
    let echo = engine.load(&echo_bytes).await.map_err(|source| Error::Load { name: STEP.into(), source })?;
    let wf_bytes = read_component(guests, config.workflow())?;
    let wf = engine.load(&wf_bytes).await.map_err(|source| Error::Load { name: config.workflow().into(), source })?;
    if wf.world != World::Workflow {
        return Err(Error::Failed(format!("{} is a {}, not a workflow", config.workflow(), wf.world)));
    }
    store
        .put_component(&Component {
            hash: wf.hash.clone(),
            world: World::Workflow,
            bytes: wf_bytes,
            created_at: Micros::now(),
        })
        .await?;

    // 1. Baseline: the same export, called again and again on one instance.
    observer.phase("baseline", u64::from(BASELINE_BATCHES * BASELINE_CALLS));
    let baseline_us = baseline(&engine, &echo).await?;

    let steps_resolver =
        Arc::new(StepResolver::new(engine.clone(), store.clone(), Default::default(), vec![guests.to_path_buf()]));
    let worker_config = WorkerConfig {
        owner: format!("bench-{}", std::process::id()),
        max_runs: config.concurrency.max(1),
        poll: POLL,
        policy: crate::workflow::RunPolicy { run_ahead: config.run_ahead, ..Default::default() },
        ..WorkerConfig::default()
    };
    let worker = Arc::new(
        Worker::new(store.clone(), engine.clone(), steps_resolver, Arc::new(Secrets::default()), worker_config)
            .map_err(Error::Failed)?,
    );
    let input = config.input();
    let new_run = || seed_run(config.workflow(), &wf.hash, &input);

    // Warm-up: one run, so the step is loaded and both components are
    // instantiated once before anything is timed.
    observer.phase("warm-up", 1);
    let (status, _) = one_run(&*store, &worker, new_run()).await?;
    if status != RunStatus::Completed {
        return Err(Error::Failed(format!("the warm-up run of {} ended {status}", config.workflow())));
    }

    // 2. Throughput.
    let before = Counts::of(&*store).await?;
    let bytes_before = size.bytes().await;
    observer.phase("throughput", config.workflows);
    let t0 = Instant::now();
    let fed = throughput(&*store, &worker, &new_run, config, before, observer, t0).await;
    observer.throughput_done();
    let (counts, rss_checkpoints) = fed?;
    let throughput_wall = t0.elapsed();
    let store_bytes = size.bytes().await;
    let step_runs = config.workflows * u64::from(steps);
    let done = counts.since(before);

    let fsync_us = match size {
        StoreSize::Sqlite(path) => {
            let dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            tokio::task::spawn_blocking(move || fsync_probe(&dir)).await.ok().flatten()
        }
        StoreSize::Postgres(_) | StoreSize::Unknown => None,
    };

    // 3. Latency: one run at a time on the idle worker.
    let latency_runs = u32::try_from(config.workflows.min(u64::from(config.latency_runs))).unwrap_or(u32::MAX);
    observer.phase("latency", u64::from(latency_runs));
    let synced_before = store.synced_commits();
    // On a runtime thread, as a request to `ferry serve` would be: the
    // run's task then starts on the thread that submitted it.
    let latency = {
        let (store, worker, workflow, hash) = (store.clone(), worker.clone(), config.workflow(), wf.hash.clone());
        let input = input.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(latency_runs as usize);
            let mut failed = 0;
            for _ in 0..latency_runs {
                let (status, took) = one_run(&*store, &worker, seed_run(workflow, &hash, &input)).await?;
                if status != RunStatus::Completed {
                    failed += 1;
                }
                latencies.push(took);
            }
            Ok::<_, Error>((latencies, failed))
        })
    };
    let (mut latencies, latency_failed) =
        latency.await.map_err(|e| Error::Failed(format!("the latency phase failed: {e}")))??;
    let fsyncs_per_run = match (synced_before, store.synced_commits()) {
        (Some(b), Some(a)) if latency_runs > 0 => Some(a.saturating_sub(b) as f64 / f64::from(latency_runs)),
        _ => None,
    };
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let p50 = percentile(&latencies, 50.0);
    let per_step_us = p50.as_secs_f64() * 1e6 / f64::from(steps);
    let secs = throughput_wall.as_secs_f64().max(1e-9);

    Ok(Report {
        mode: "in-process",
        store: size.kind(),
        shape: if config.parallel { "parallel" } else { "sequential" },
        workflow: config.workflow(),
        step: STEP,
        workflows: config.workflows,
        steps,
        parallel_steps,
        sequential_steps,
        payload_bytes: PAYLOAD.len(),
        concurrency: config.concurrency.max(1),
        durability: config.durability,
        run_ahead: config.run_ahead,
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        completed: done.completed,
        failed: done.finished.saturating_sub(done.completed),
        step_runs,
        total_wall_s: started.elapsed().as_secs_f64(),
        throughput_wall_s: throughput_wall.as_secs_f64(),
        step_runs_per_s: step_runs as f64 / secs,
        workflows_per_s: config.workflows as f64 / secs,
        latency_runs,
        latency_failed,
        latency_p50_ms: ms(p50),
        latency_p99_ms: ms(percentile(&latencies, 99.0)),
        latency_mean_ms: if latencies.is_empty() {
            0.0
        } else {
            latencies.iter().map(|d| ms(*d)).sum::<f64>() / latencies.len() as f64
        },
        latency_max_ms: latencies.last().map_or(0.0, |d| ms(*d)),
        baseline_us,
        per_step_us,
        per_step_overhead_us: per_step_us - baseline_us,
        fsync_us,
        fsyncs_per_run,
        per_step_engine_us: fsync_us
            .zip(fsyncs_per_run)
            .map(|(f, n)| per_step_us - baseline_us - f * n / f64::from(steps.max(1))),
        peak_rss_bytes: proc_status("VmHWM"),
        rss_checkpoints,
        store_bytes,
        store_bytes_per_step_run: match (bytes_before, store_bytes) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / step_runs as f64),
            _ => None,
        },
    })
}

/// Microseconds for one 4 KiB overwrite and `fdatasync` of a file in
/// `dir`: the median of [`FSYNC_PROBES`]. The file is removed after;
/// `None` if `dir` cannot be written.
pub fn fsync_probe(dir: &Path) -> Option<f64> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    const SPAN: u64 = 16;
    let path = dir.join(format!(".ferry-bench-fsync-{}", std::process::id()));
    let probe = || -> std::io::Result<Vec<f64>> {
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
        // Written and synced once first: the probes overwrite, as a WAL
        // that is reused does, and never grow the file.
        file.write_all_at(&vec![0u8; PAGE * SPAN as usize], 0)?;
        file.sync_all()?;
        let page = vec![1u8; PAGE];
        let mut took = Vec::with_capacity(FSYNC_PROBES);
        for i in 0..FSYNC_PROBES as u64 {
            let t = Instant::now();
            file.write_all_at(&page, (i % SPAN) * PAGE as u64)?;
            file.sync_data()?;
            took.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(took)
    };
    let took = probe();
    let _ = std::fs::remove_file(&path);
    let mut took = took.ok()?;
    took.sort_by(f64::total_cmp);
    took.get(took.len() / 2).copied()
}

/// `<guests>/<name with - as _>.wasm`.
fn read_component(guests: &Path, name: &str) -> Result<Vec<u8>, Error> {
    let path = guests.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).map_err(|source| Error::Read { path, source })
}

/// Microseconds per call of the step's export on a live instance: the
/// median of several batches' means.
async fn baseline(engine: &Engine, echo: &crate::engine::Loaded) -> Result<f64, Error> {
    let mut live = engine.live_instance(echo).await.map_err(|e| call_failed(format!("{e:#}")))?;
    for _ in 0..BASELINE_CALLS {
        call(&mut live).await?;
    }
    let mut batches = Vec::with_capacity(BASELINE_BATCHES as usize);
    for _ in 0..BASELINE_BATCHES {
        let t = Instant::now();
        for _ in 0..BASELINE_CALLS {
            call(&mut live).await?;
        }
        batches.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(BASELINE_CALLS));
    }
    batches.sort_by(f64::total_cmp);
    Ok(batches[batches.len() / 2])
}

async fn call(live: &mut crate::engine::LiveInstance) -> Result<(), Error> {
    let out = live.call(PAYLOAD).await.map_err(|e| call_failed(format!("{e:#}")))?;
    out.map(drop).map_err(|e| call_failed(format!("{e:?}")))
}

fn call_failed(e: String) -> Error {
    Error::Failed(format!("the baseline call of {STEP} failed: {e}"))
}

/// A run of the seed workflow on `input`.
fn seed_run(workflow: &str, hash: &crate::domain::ComponentHash, input: &str) -> NewRun {
    NewRun {
        id: RunId::new(),
        kind: World::Workflow,
        component: workflow.into(),
        component_hash: hash.clone(),
        input: input.to_owned(),
        idempotency_key: None,
        created_at: Micros::now(),
        origin: None,
        flow: Default::default(),
        held: false,
    }
}

/// Submits `run` to the worker (created and claimed in one transaction,
/// as a daemon does for a run started through its API) and has the worker
/// execute it to its end: its final status and the time from creation to
/// the end.
async fn one_run(store: &dyn Store, worker: &Worker, run: NewRun) -> Result<(RunStatus, Duration), Error> {
    let t = Instant::now();
    let id = run.id;
    // The run starts while its creation commits, as in `ferry serve`.
    let (_, committed) = worker.submit_started(run).await?;
    let (committed, ran) = tokio::join!(committed, worker.run(Until::Final(id)));
    committed?;
    ran?;
    let took = t.elapsed();
    let run = store.run(&id).await?.ok_or_else(|| Error::Failed(format!("run {id} vanished")))?;
    Ok((run.status, took))
}

/// Runs by status: how many are final, and how many completed.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    finished: u64,
    completed: u64,
}

impl Counts {
    async fn of(store: &dyn Store) -> Result<Self, Error> {
        let mut c = Self::default();
        for (status, n) in store.run_counts().await? {
            if status.is_final() {
                c.finished += n;
            }
            if status == RunStatus::Completed {
                c.completed += n;
            }
        }
        Ok(c)
    }

    fn since(self, before: Self) -> Self {
        Self {
            finished: self.finished.saturating_sub(before.finished),
            completed: self.completed.saturating_sub(before.completed),
        }
    }
}

/// The throughput phase: the worker executes while runs are created in
/// batches, keeping a bounded window of runs queued or in flight, until
/// `config.workflows` runs are final. Returns the final counts and the RSS
/// checkpoints.
#[allow(clippy::too_many_arguments)]
async fn throughput(
    store: &dyn Store,
    worker: &Worker,
    new_run: &(dyn Fn() -> NewRun + Sync),
    config: &Config,
    before: Counts,
    observer: &dyn Observer,
    t0: Instant,
) -> Result<(Counts, Vec<RssCheckpoint>), Error> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let work = worker.run(Until::Shutdown(stopped, Duration::from_secs(30)));
    tokio::pin!(work);
    let feed = async {
        let total = config.workflows;
        let window = (config.concurrency.max(1) as u64 * 4).max(256);
        let marks: Vec<u64> = (1..=u64::from(config.rss_checkpoints))
            .map(|k| (k * total).div_ceil(u64::from(config.rss_checkpoints)))
            .collect();
        let mut checkpoints = Vec::with_capacity(marks.len());
        let (mut created, mut last_finished, mut last_change) = (0u64, 0u64, Instant::now());
        // Finished runs are counted as created minus unfinished: a range of
        // the status index, where counting every status would scan all the
        // runs of the store ten times a second (83,334 at a million
        // step-runs). Failures are counted in full once a second.
        let unfinished_before = store.unfinished_runs().await?;
        let (mut failed, mut last_full) = (0u64, Instant::now());
        loop {
            let unfinished = store.unfinished_runs().await?.saturating_sub(unfinished_before);
            let finished = created.saturating_sub(unfinished);
            if last_full.elapsed() >= FULL_COUNT_EVERY {
                let done = Counts::of(store).await?.since(before);
                (failed, last_full) = (done.finished.saturating_sub(done.completed), Instant::now());
            }
            observer.progress(finished, failed, t0.elapsed());
            while checkpoints.len() < marks.len() && finished >= marks[checkpoints.len()] {
                checkpoints.push(RssCheckpoint { finished, rss_bytes: proc_status("VmRSS").unwrap_or(0) });
            }
            if finished >= total {
                return Ok::<_, Error>((Counts::of(store).await?, checkpoints));
            }
            if finished != last_finished {
                (last_finished, last_change) = (finished, Instant::now());
            } else if last_change.elapsed() > STALL {
                return Err(Error::Failed(format!(
                    "no run finished in {} s ({finished} of {total} final): the workload is stuck",
                    STALL.as_secs(),
                )));
            }
            let room = window.saturating_sub(created.saturating_sub(finished)).min(total - created);
            if room == 0 {
                tokio::time::sleep(POLL).await;
                continue;
            }
            // Create the batch concurrently so it lands in few commit groups.
            let mut left = room;
            while left > 0 {
                let n = left.min(CREATE_BATCH);
                futures::future::try_join_all((0..n).map(|_| store.create_run(new_run()))).await?;
                left -= n;
            }
            created += room;
        }
    };
    tokio::pin!(feed);
    let fed = tokio::select! {
        fed = &mut feed => fed,
        worked = &mut work => {
            worked?;
            return Err(Error::Failed("the worker stopped before the workload was done".into()));
        }
    };
    let _ = stop.send(true);
    work.await?;
    fed
}

/// The `p`-th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`) in bytes.
pub fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The bytes of a SQLite store's files: the database and its `-wal`.
pub fn store_bytes(db: &Path) -> Option<u64> {
    let main = std::fs::metadata(db).ok()?.len();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    Some(main + std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len()))
}

/// The file of a SQLite store given as a path or `sqlite:` URL, if it is one.
pub fn sqlite_file(db: &str) -> Option<PathBuf> {
    if db.contains("://") && !db.starts_with("sqlite:") {
        return None;
    }
    let path = db.strip_prefix("sqlite://").or_else(|| db.strip_prefix("sqlite:")).unwrap_or(db);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let ms = |n| Duration::from_millis(n);
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 50.0), ms(50));
        assert_eq!(percentile(&v, 99.0), ms(99));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn shapes_split_the_steps() {
        let c = Config {
            workflows: 1,
            steps: 12,
            parallel: true,
            concurrency: 1,
            latency_runs: 1,
            rss_checkpoints: 0,
            durability: Durability::Fsync,
            run_ahead: true,
        };
        assert_eq!(c.shape(), (6, 6));
        assert!(c.input().starts_with(r#"{"parallel":6,"sequential":6,"payload":{"#));
        assert_eq!(Config { parallel: false, ..c.clone() }.shape(), (0, 12));
        assert_eq!(Config { steps: 1, ..c }.shape(), (0, 1));
    }

    #[test]
    fn store_files_are_found_from_the_db_argument() {
        assert_eq!(sqlite_file("a/b.db"), Some(PathBuf::from("a/b.db")));
        assert_eq!(sqlite_file("sqlite://x.db?mode=rwc"), Some(PathBuf::from("x.db")));
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
        assert!(proc_status("VmHWM").is_some_and(|b| b > 0));
    }
}
