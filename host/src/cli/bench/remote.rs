//! `ferry bench --through-daemon URL`: the seed workload on a running
//! `ferry serve`, through its HTTP API only.
//!
//! 1. **Deploy**: the step `echo` (the workflow calls it by that name) and
//!    the workflow as `bench-wf-seq` (or `bench-wf-fanout-bench`); both are
//!    no-ops when the same components are deployed already. A daemon whose
//!    active `echo` is another component is refused: the bench would
//!    replace it.
//! 2. **Warm-up**: one run, waited for.
//! 3. **Throughput**: W runs submitted at once with `POST /v1/runs`
//!    (`--concurrency` requests in flight, each with an idempotency key of
//!    a fresh random prefix, so a retried request never makes a second run
//!    and no other run is counted), timed from the first submission until
//!    the daemon's run counts of the bench workflow say all W are final
//!    (`GET /v1/deployments?runs=true`, every [`POLL`]): end to end,
//!    submission included. Then the W runs are read back (`GET /v1/runs`)
//!    for their statuses and timestamps: latency under load.
//! 4. **Latency**: runs one at a time on the idle daemon, each timed by its
//!    own timestamps (created → finished), which the wait's polling does
//!    not blur; the client's round trip is reported beside it.
//!
//! What belongs to the daemon (its durability, memory, store size, and the
//! floor a step costs in its engine) is reported as unknown.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;

use super::{Args, Display, micros, shape_text};
use crate::bench::{self, Config, Observer, percentile};
use crate::cli::client::{ApiError, Client, DaemonArgs, DeployRequest, RunQuery, Unreachable, endpoint, parse_base};
use crate::cli::format::thousands;
use crate::domain::{ComponentHash, DeploymentConfig, Run, RunId, RunStatus, World};

/// How often the daemon's run counts are read in the throughput phase.
const POLL: Duration = Duration::from_millis(100);
/// The throughput phase gives up when no run finished for this long.
const STALL: Duration = Duration::from_secs(120);
/// The longest one run of the warm-up or latency phase may take.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Runs read back per `GET /v1/runs` (the API's largest page).
const PAGE: u32 = 1000;
/// Tries of a submission that failed on the way (same idempotency key).
const SUBMIT_TRIES: u32 = 4;

/// The daemon under test: the typed client, and a plain one for the one
/// read it has no method for (`GET /v1/deployments?runs=true`).
pub struct Daemon {
    client: Client,
    http: reqwest::Client,
    base: url::Url,
    token: Option<String>,
    /// Every deployment, as found when connecting.
    deployments: Vec<crate::domain::Deployment>,
}

impl Daemon {
    /// Finds the daemon at `url`: fails with the client's "no daemon
    /// answers" error when nothing listens there.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let args = DaemonArgs { url: url.to_owned() };
        let client = args.client()?;
        let base = parse_base(url)?;
        let token = std::env::var("FERRY_TOKEN").ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        let deployments = client.deployments().await?.body.deployments.into_iter().map(|d| d.deployment).collect();
        Ok(Self { client, http, base, token, deployments })
    }

    fn url(&self) -> &str {
        self.client.url()
    }

    /// Deploys `bytes` as `name` (a no-op when that component is deployed
    /// and active already).
    async fn deploy(&self, name: &str, bytes: &[u8], world: World) -> anyhow::Result<()> {
        let request = DeployRequest {
            name: name.to_owned(),
            component_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            config: DeploymentConfig::default(),
            schedule: None,
        };
        let reply = self.client.deploy(&request).await.with_context(|| format!("cannot deploy `{name}`"))?;
        let d = reply.body.deployment;
        if d.world != world {
            bail!("the daemon deployed `{name}` as a {}, not a {world}", d.world);
        }
        Ok(())
    }

    /// Runs of workflow `name` on component `hash`, final and completed,
    /// as the daemon counts them now.
    async fn counts(&self, name: &str, hash: &ComponentHash) -> anyhow::Result<Counts> {
        let url = endpoint(&self.base, &["v1", "deployments"], &[("runs", "true".to_owned())]);
        let mut request = self.http.get(url).timeout(Duration::from_secs(60));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            return Err(ApiError::from_response(status, &body).into());
        }
        let doc: Value =
            serde_json::from_slice(&body).context("the daemon's answer to GET /v1/deployments is not JSON")?;
        let entry = doc["deployments"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["name"] == name && d["hash"] == hash.as_str()));
        let Some(runs) = entry.and_then(|d| d["runs"].as_object()) else {
            bail!("the daemon lists no deployment `{name}` with run counts (GET /v1/deployments?runs=true)");
        };
        let n = |status: &str| runs.get(status).and_then(Value::as_u64).unwrap_or(0);
        Ok(Counts { finished: n("completed") + n("failed") + n("cancelled"), completed: n("completed") })
    }

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow::Error::new(Unreachable { url: self.url().to_owned() })
        } else {
            anyhow::Error::new(e).context(format!("GET /v1/deployments at {} failed", self.url()))
        }
    }

    /// Starts a run of `workflow` with idempotency key `key`; retried (with
    /// the same key, so at most one run is made) when the request fails on
    /// the way or the daemon is unavailable for a moment.
    async fn submit(&self, workflow: &str, input: &Value, key: &str) -> anyhow::Result<RunId> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.client.start_run(workflow, input, Some(key)).await {
                Ok(reply) => {
                    if reply.body.existing && tries == 1 {
                        bail!("the idempotency key `{key}` is taken on the daemon: another run has it");
                    }
                    return Ok(reply.body.run.run.id);
                }
                Err(e) if tries < SUBMIT_TRIES && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(250) * tries).await;
                }
                Err(e) => return Err(e.context(format!("cannot start a run of `{workflow}`"))),
            }
        }
    }

    /// Waits until run `id` is final (at most [`RUN_LIMIT`]).
    async fn wait_final(&self, id: &RunId) -> anyhow::Result<Run> {
        let deadline = Instant::now() + RUN_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let run = self.client.wait(id, left.min(Duration::from_secs(30))).await?.body.run.run;
            if run.status.is_final() {
                return Ok(run);
            }
            if Instant::now() >= deadline {
                bail!("run {id} is still {} after {} s", run.status, RUN_LIMIT.as_secs());
            }
        }
    }
}

/// Whether a failed submission may be sent again: not when the daemon
/// refused it (4xx), which a retry would not change.
fn retryable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>().is_none_or(|api| api.status >= 500)
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Runs of the bench workflow by status.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    finished: u64,
    completed: u64,
}

impl Counts {
    fn since(self, before: Self) -> Self {
        Self {
            finished: self.finished.saturating_sub(before.finished),
            completed: self.completed.saturating_sub(before.completed),
        }
    }
}

/// What `--through-daemon` measured: the in-process report's fields where
/// they make sense remotely, `null` where the figure is the daemon's.
#[derive(Clone, Debug, Serialize)]
pub struct RemoteReport {
    /// `through-daemon`.
    pub mode: &'static str,
    /// The daemon's address.
    pub daemon: String,
    /// The daemon's store, not known from outside.
    pub store: Option<String>,
    pub shape: &'static str,
    /// The deployment the runs were started on.
    pub workflow: String,
    pub step: &'static str,
    pub workflows: u64,
    pub steps: u32,
    pub parallel_steps: u32,
    pub sequential_steps: u32,
    pub payload_bytes: usize,
    /// Runs in flight: the daemon's `--concurrency` (per host), not known here.
    pub concurrency: Option<usize>,
    /// Submissions (`POST /v1/runs`) in flight.
    pub submit_concurrency: usize,
    /// Always `daemon's`: the daemon's `--durability`, not exposed by its API.
    pub durability: &'static str,
    /// Cores of the machine the bench ran on.
    pub cores: usize,
    pub completed: u64,
    pub failed: u64,
    pub step_runs: u64,
    pub total_wall_s: f64,
    /// From the first submission until all runs were seen final (the daemon
    /// is asked every 100 ms): end to end, submission included.
    pub throughput_wall_s: f64,
    /// From the first submission until the last one was answered.
    pub submit_wall_s: f64,
    /// The daemon's clock: the first run's `created_at` to the last run's
    /// `finished_at`.
    pub server_span_s: f64,
    pub step_runs_per_s: f64,
    pub workflows_per_s: f64,
    /// Throughput phase, by the runs' timestamps: created → finished (queue
    /// time included: all runs were submitted at once) and started →
    /// finished (execution under load).
    pub load_latency_p50_ms: f64,
    pub load_latency_p99_ms: f64,
    pub load_exec_p50_ms: f64,
    pub load_exec_p99_ms: f64,
    /// Latency phase: runs one at a time on the idle daemon, created →
    /// finished by the runs' timestamps.
    pub latency_runs: u32,
    pub latency_failed: u32,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_mean_ms: f64,
    pub latency_max_ms: f64,
    /// Latency phase, started → finished: without the wait for a worker to
    /// claim the run.
    pub latency_exec_p50_ms: f64,
    /// Latency phase, as the client saw it: `POST /v1/runs` sent → the
    /// run's wait answered (the daemon's wait looks every 25 ms).
    pub latency_client_p50_ms: f64,
    /// Unknown here: the floor a step costs in the daemon's engine.
    pub baseline_us: Option<f64>,
    /// Latency p50 divided by the steps of a run.
    pub per_step_us: f64,
    pub per_step_overhead_us: Option<f64>,
    /// The daemon's: unknown here.
    pub peak_rss_bytes: Option<u64>,
    pub rss_checkpoints: Vec<bench::RssCheckpoint>,
    pub store_bytes: Option<u64>,
    pub store_bytes_per_step_run: Option<f64>,
}

/// The bench's deployment name of `workflow`.
fn deployment_name(workflow: &str) -> String {
    format!("bench-{workflow}")
}

/// Runs the benchmark on the daemon and prints the report.
pub async fn run(args: &Args, daemon: &Daemon, guests: &Path) -> anyhow::Result<ExitCode> {
    let config = Config {
        workflows: args.workflows,
        steps: args.steps,
        parallel: args.parallel,
        concurrency: usize::try_from(args.concurrency).unwrap_or(usize::MAX).max(1),
        latency_runs: args.latency_runs,
        rss_checkpoints: 0,
        durability: args.store.durability,
        run_ahead: !args.no_run_ahead,
    };
    if args.no_run_ahead && !args.json {
        eprintln!("note: --no-run-ahead is the daemon's own option with --through-daemon (ferry serve --no-run-ahead)");
    }
    if args.rss_checkpoints > 0 && !args.json {
        eprintln!("note: --rss-checkpoints is not used with --through-daemon: the daemon's memory is its own");
    }
    let name = deployment_name(config.workflow());
    let (parallel, sequential) = config.shape();
    let line = format!(
        "throughput: {} workflows of {name} ({}) submitted to {}, {} submissions in flight…",
        thousands(config.workflows),
        shape_text(parallel, sequential),
        daemon.url(),
        config.concurrency
    );
    let display = Display::new(args.json, config.workflows, config.steps, line);
    let report = measure(daemon, guests, &config, &name, &display).await?;
    let ok = report.failed == 0 && report.latency_failed == 0 && report.completed == report.workflows;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn measure(
    daemon: &Daemon,
    guests: &Path,
    config: &Config,
    name: &str,
    observer: &Display,
) -> anyhow::Result<RemoteReport> {
    let started = Instant::now();
    let (parallel, sequential) = config.shape();
    let read = |component: &str| {
        let path = guests.join(format!("{}.wasm", component.replace('-', "_")));
        std::fs::read(&path).with_context(|| format!("cannot read the component {}", path.display()))
    };
    let echo = read(bench::STEP)?;
    let wf = read(config.workflow())?;
    let (echo_hash, wf_hash) = (ComponentHash::of(&echo), ComponentHash::of(&wf));

    // 1. Deploy, unless that would replace someone's `echo`.
    if let Some(other) = daemon.deployments.iter().find(|d| d.name == bench::STEP && d.active && d.hash != echo_hash) {
        bail!(
            "the daemon at {} has its own step `{}` (version {}, sha256:{}): the bench's workflow calls `{}` by name, \
             so deploying the bench's would replace it; bench a daemon without a step of that name",
            daemon.url(),
            other.name,
            other.version,
            other.hash.short(),
            bench::STEP
        );
    }
    observer.phase("deploy", 2);
    daemon.deploy(bench::STEP, &echo, World::Step).await?;
    daemon.deploy(name, &wf, World::Workflow).await?;
    drop((echo, wf));

    let input: Value = serde_json::from_str(&config.input()).context("the bench's input is JSON")?;
    let prefix = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());

    // 2. Warm-up.
    observer.phase("warm-up", 1);
    let id = daemon.submit(name, &input, &format!("{prefix}-warm-up")).await?;
    let run = daemon.wait_final(&id).await?;
    if run.status != RunStatus::Completed {
        bail!("the warm-up run {id} of {name} ended {}: {:?}", run.status, run.error);
    }

    // 3. Throughput.
    let w = config.workflows;
    let before = daemon.counts(name, &wf_hash).await?;
    observer.phase("throughput", w);
    let submitted = AtomicU64::new(0);
    let t0 = Instant::now();
    let submit = async {
        let ids: Vec<RunId> = futures::stream::iter(0..w)
            .map(|i| {
                let (key, input, submitted) = (format!("{prefix}-{i}"), &input, &submitted);
                async move {
                    let id = daemon.submit(name, input, &key).await?;
                    submitted.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, anyhow::Error>(id)
                }
            })
            .buffer_unordered(config.concurrency)
            .try_collect()
            .await?;
        Ok::<_, anyhow::Error>((ids, t0.elapsed()))
    };
    let watch = async {
        let (mut last, mut last_change) = (0, Instant::now());
        loop {
            tokio::time::sleep(POLL).await;
            let done = daemon.counts(name, &wf_hash).await?.since(before);
            let finished = done.finished.min(w);
            observer.progress(finished, done.finished.saturating_sub(done.completed).min(w), t0.elapsed());
            if done.finished >= w && submitted.load(Ordering::Relaxed) == w {
                return Ok::<_, anyhow::Error>(t0.elapsed());
            }
            if done.finished != last {
                (last, last_change) = (done.finished, Instant::now());
            } else if last_change.elapsed() > STALL {
                bail!(
                    "no run of {name} finished in {} s ({finished} of {w} final): is the daemon executing runs?",
                    STALL.as_secs()
                );
            }
        }
    };
    let measured = tokio::try_join!(submit, watch);
    observer.throughput_done();
    let ((ids, submit_wall), wall) = measured?;

    // The runs as the daemon has them: statuses and timestamps.
    let runs = read_back(daemon, name, &ids).await?;
    let completed = runs.iter().filter(|r| r.status == RunStatus::Completed).count() as u64;
    let failed = runs.len() as u64 - completed;
    let span = |from: Option<crate::domain::Micros>, to: Option<crate::domain::Micros>| {
        from.zip(to).map(|(a, b)| Duration::from_micros(u64::try_from(b.0 - a.0).unwrap_or(0)))
    };
    let mut queued_to_end: Vec<Duration> =
        runs.iter().filter_map(|r| span(Some(r.created_at), r.finished_at)).collect();
    let mut exec: Vec<Duration> = runs.iter().filter_map(|r| span(r.started_at, r.finished_at)).collect();
    queued_to_end.sort();
    exec.sort();
    let first_created = runs.iter().map(|r| r.created_at).min();
    let last_finished = runs.iter().filter_map(|r| r.finished_at).max();
    let server_span = span(first_created, last_finished).unwrap_or_default();

    // 4. Latency: one at a time on the idle daemon.
    let latency_runs = u32::try_from(w.min(u64::from(config.latency_runs))).unwrap_or(u32::MAX);
    observer.phase("latency", u64::from(latency_runs));
    let (mut latencies, mut execs, mut client) = (Vec::new(), Vec::new(), Vec::new());
    let mut latency_failed = 0;
    for i in 0..latency_runs {
        let t = Instant::now();
        let id = daemon.submit(name, &input, &format!("{prefix}-latency-{i}")).await?;
        let run = daemon.wait_final(&id).await?;
        client.push(t.elapsed());
        if run.status != RunStatus::Completed {
            latency_failed += 1;
        }
        latencies.extend(span(Some(run.created_at), run.finished_at));
        execs.extend(span(run.started_at, run.finished_at));
    }
    for v in [&mut latencies, &mut execs, &mut client] {
        v.sort();
    }

    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    let p = |v: &[Duration], q: f64| ms(percentile(v, q));
    let steps = parallel + sequential;
    let step_runs = w * u64::from(steps);
    let secs = wall.as_secs_f64().max(1e-9);
    let p50 = percentile(&latencies, 50.0);
    Ok(RemoteReport {
        mode: "through-daemon",
        daemon: daemon.url().to_owned(),
        store: None,
        shape: if config.parallel { "parallel" } else { "sequential" },
        workflow: name.to_owned(),
        step: bench::STEP,
        workflows: w,
        steps,
        parallel_steps: parallel,
        sequential_steps: sequential,
        payload_bytes: bench::PAYLOAD.len(),
        concurrency: None,
        submit_concurrency: config.concurrency,
        durability: "daemon's",
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        completed,
        failed,
        step_runs,
        total_wall_s: started.elapsed().as_secs_f64(),
        throughput_wall_s: wall.as_secs_f64(),
        submit_wall_s: submit_wall.as_secs_f64(),
        server_span_s: server_span.as_secs_f64(),
        step_runs_per_s: step_runs as f64 / secs,
        workflows_per_s: w as f64 / secs,
        load_latency_p50_ms: p(&queued_to_end, 50.0),
        load_latency_p99_ms: p(&queued_to_end, 99.0),
        load_exec_p50_ms: p(&exec, 50.0),
        load_exec_p99_ms: p(&exec, 99.0),
        latency_runs,
        latency_failed,
        latency_p50_ms: ms(p50),
        latency_p99_ms: p(&latencies, 99.0),
        latency_mean_ms: if latencies.is_empty() {
            0.0
        } else {
            latencies.iter().map(|d| ms(*d)).sum::<f64>() / latencies.len() as f64
        },
        latency_max_ms: latencies.last().map_or(0.0, |d| ms(*d)),
        latency_exec_p50_ms: p(&execs, 50.0),
        latency_client_p50_ms: p(&client, 50.0),
        baseline_us: None,
        per_step_us: p50.as_secs_f64() * 1e6 / f64::from(steps.max(1)),
        per_step_overhead_us: None,
        peak_rss_bytes: None,
        rss_checkpoints: Vec::new(),
        store_bytes: None,
        store_bytes_per_step_run: None,
    })
}

/// Reads the runs `ids` of workflow `name` back from the daemon, newest
/// first a page at a time; any not final yet (the counts also see runs of
/// the same workflow others started) are waited for.
async fn read_back(daemon: &Daemon, name: &str, ids: &[RunId]) -> anyhow::Result<Vec<Run>> {
    let mut missing: HashSet<RunId> = ids.iter().copied().collect();
    let mut runs = Vec::with_capacity(ids.len());
    let mut before = None;
    while !missing.is_empty() {
        let query = RunQuery { status: None, workflow: Some(name.to_owned()), before, limit: Some(PAGE) };
        let page = daemon.client.runs(&query).await?.body;
        for info in page.runs {
            if missing.remove(&info.run.id) {
                runs.push(info.run);
            }
        }
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    if let Some(id) = missing.iter().next() {
        bail!("the daemon does not list run {id} (and {} more) of {name}", missing.len() - 1);
    }
    for run in &mut runs {
        if !run.status.is_final() {
            *run = daemon.wait_final(&run.id).await?;
        }
    }
    Ok(runs)
}

/// The report as a table people read.
fn table(r: &RemoteReport) -> String {
    let mut out = String::new();
    let mut row = |label: &str, value: String, note: String| {
        let line = format!("  {label:<20} {value:>14}  {note}");
        out.push_str(line.trim_end());
        out.push('\n');
    };
    let ms = |v: f64| micros(v * 1_000.0);
    let head = format!(
        "ferry bench --through-daemon {}: {} workflows of {} ({}, step `{}` on a {}-byte JSON input), \
         {} submissions in flight, durability the daemon's\n",
        r.daemon,
        thousands(r.workflows),
        r.workflow,
        shape_text(r.parallel_steps, r.sequential_steps),
        r.step,
        r.payload_bytes,
        r.submit_concurrency,
    );
    row("completed", thousands(r.completed), format!("{} failed", r.failed));
    row(
        "step-runs/s",
        thousands(r.step_runs_per_s.round() as u64),
        format!(
            "{} step-runs in {:.2} s end to end, submission included ({:.0} workflows/s; submitted in {:.2} s)",
            thousands(r.step_runs),
            r.throughput_wall_s,
            r.workflows_per_s,
            r.submit_wall_s
        ),
    );
    row("daemon's span", format!("{:.2} s", r.server_span_s), "first run created → last run finished".into());
    row(
        "load latency p50",
        ms(r.load_latency_p50_ms),
        format!("created → finished, all submitted at once; started → finished {}", ms(r.load_exec_p50_ms)),
    );
    row("load latency p99", ms(r.load_latency_p99_ms), format!("started → finished {}", ms(r.load_exec_p99_ms)));
    let runs = if r.latency_failed > 0 { format!(", {} failed", r.latency_failed) } else { String::new() };
    row(
        "run latency p50",
        ms(r.latency_p50_ms),
        format!(
            "{} steps, one workflow at a time, {} runs{runs}: created → finished (started → finished {}; client round trip {})",
            r.steps,
            r.latency_runs,
            ms(r.latency_exec_p50_ms),
            ms(r.latency_client_p50_ms)
        ),
    );
    row("run latency p99", ms(r.latency_p99_ms), format!("max {}", ms(r.latency_max_ms)));
    row("per step", micros(r.per_step_us), format!("p50 / {}; no baseline: steps run in the daemon", r.steps));
    row("peak RSS", "unknown".into(), "the daemon's: measure it on its host".into());
    row("store per step-run", "unknown".into(), "the daemon's store".into());
    row("durability", r.durability.into(), "its --durability, not shown by its API".into());
    row("cores", r.cores.to_string(), "of this machine".into());
    row(
        "total wall time",
        format!("{:.2} s", r.total_wall_s),
        "deploy, warm-up, throughput, read-back, latency".into(),
    );
    format!("{head}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_are_final() {
        let refused = anyhow::Error::new(ApiError { status: 404, code: "not_found".into(), message: "no".into() });
        assert!(!retryable(&refused));
        let busy = anyhow::Error::new(ApiError { status: 503, code: "unavailable".into(), message: "busy".into() });
        assert!(retryable(&busy));
        assert!(retryable(&anyhow::anyhow!("the daemon did not answer in time")));
        assert_eq!(deployment_name("wf-seq"), "bench-wf-seq");
        let before = Counts { finished: 5, completed: 4 };
        let now = Counts { finished: 12, completed: 10 };
        let d = now.since(before);
        assert_eq!((d.finished, d.completed), (7, 6));
    }
}
