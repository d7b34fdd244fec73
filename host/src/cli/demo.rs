//! `ferry demo`: the newcomer's first command. One week of the reference
//! pipeline (docs/PIPELINE.md) for 60 clients, on this machine: it builds
//! the steps, starts the fake upstream (with its faults) and an embedded
//! daemon on a fresh SQLite store, deploys the pipeline, runs the week with
//! live progress, and sums up what happened. Everything runs in this
//! process, so nothing is left behind when it ends.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::build::{build_steps, find_steps_dir};
use super::client::Client;
use super::format::{duration, thousands};
use crate::domain::{EntryKind, EntryStatus, RunStatus};
use crate::engine::Secrets;
use crate::metrics::{RATE_WAIT_MICROS, RATE_WAITS, STEP_RETRIES, STEP_RUNS};
use crate::pipeline;
use crate::store::{Durability, RunFilter, Store};
use crate::upstream::{Profile, Upstream};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many clients get a report (the upstream knows up to 999).
    #[arg(long, default_value_t = 60)]
    clients: u32,
    /// How hostile the upstream is: rate limits, 504 clusters, expired
    /// tokens, broken pages, lost mail answers.
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    faults: Profile,
    /// Seeds the upstream's faults: the same seed, the same faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the store, the compiled-component cache and the PDFs go
    /// [default: target/ferry-demo in the project]. Emptied first.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the daemon and the upstream running afterwards, to look around
    /// in the dashboard; Ctrl-C stops them.
    #[arg(long)]
    keep: bool,
    /// The daemon's port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Give up when the week has not finished after this long.
    #[arg(long, value_parser = super::format::parse_duration, default_value = "10m")]
    timeout: Duration,
    /// Print the summary as JSON, for programs.
    #[arg(long)]
    json: bool,
    /// Where compiled components are cached [default: DIR/cache].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Cargo's target folder for building the steps [default: steps/target].
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let steps_dir = find_steps_dir()?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => steps_dir.parent().map_or_else(|| PathBuf::from("target"), |p| p.join("target")).join("ferry-demo"),
    };
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };

    say("building the pipeline's components (cargo, wasm32-wasip2)…".into());
    // Only the pipeline's crates: a fresh machine need not build the test
    // fixtures to see the demo.
    let packages: Vec<String> =
        pipeline::STEPS.iter().chain(pipeline::WORKFLOWS.iter()).map(|name| (*name).to_owned()).collect();
    let (_, built) = build_steps(&steps_dir, args.target_dir.as_deref(), false, &packages).await?;
    let components: HashMap<String, PathBuf> = built.into_iter().map(|b| (b.name, b.path)).collect();

    fresh_dir(&dir)?;
    let pdfs = dir.join("pdfs");
    let upstream = Upstream::start(crate::upstream::Config {
        seed: args.seed,
        faults: args.faults,
        clients: args.clients,
        outbox: Some(pdfs.clone()),
        meta_rate_per_sec: None,
    })
    .await?;

    let db = dir.join("ferry.db");
    let store = crate::store::open(&db.to_string_lossy(), Durability::Fsync).await?;
    let engine = Arc::new(crate::engine::Engine::new(crate::engine::EngineConfig {
        cache_dir: Some(args.cache_dir.clone().unwrap_or_else(|| dir.join("cache"))),
        ..Default::default()
    })?);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let daemon_url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = crate::daemon::Config {
        listen: listener.local_addr()?,
        token: None,
        grace: Duration::from_secs(5),
        worker: crate::workflow::WorkerConfig {
            max_runs: 64,
            ..crate::daemon::default_worker(format!("demo-{}", std::process::id()))
        },
    };
    let daemon = tokio::spawn(crate::daemon::serve_on(
        listener,
        config,
        store.clone(),
        engine,
        Secrets::default(),
        async move {
            let _ = stopped.await;
        },
        false,
    ));
    let client = Client::new(&daemon_url, None)?;

    let outcome = week(&args, &client, &store, &upstream, &components, &daemon_url, &say).await;
    let result = match outcome {
        Ok(summary) => {
            summary.print(&args, &pdfs, &daemon_url, started.elapsed());
            if args.keep {
                eprintln!(
                    "the daemon stays up: dashboard at {daemon_url}/ , upstream at {}. Ctrl-C stops both.",
                    upstream.url()
                );
                super::serve::shutdown_signal().await;
            }
            Ok(if summary.failed == 0 && summary.completed == u64::from(args.clients) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => Err(e),
    };
    let _ = stop.send(());
    match daemon.await {
        Ok(Err(e)) => eprintln!("the embedded daemon failed: {e}"),
        Err(e) => eprintln!("the embedded daemon's task failed: {e}"),
        Ok(Ok(())) => {}
    }
    upstream.shutdown().await;
    result
}

/// Empties the demo's folder (it holds only what an earlier demo left).
fn fresh_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    for name in ["ferry.db", "ferry.db-wal", "ferry.db-shm"] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let pdfs = dir.join("pdfs");
    if pdfs.exists() {
        std::fs::remove_dir_all(&pdfs).with_context(|| format!("cannot empty {}", pdfs.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// What the week did.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    week: String,
    clients: u32,
    completed: u64,
    failed: u64,
    step_runs: u64,
    retries: u64,
    retries_by_cause: BTreeMap<String, u64>,
    /// Step calls held back by a step rate limit (the Meta pulls), and for
    /// how long in all.
    rate_limited_calls: u64,
    rate_limited_ms: u64,
    emails_accepted: usize,
    duplicate_sends_suppressed: u64,
    faults_injected: BTreeMap<String, u64>,
    wall_ms: u64,
    /// Where the report runs' time went, summed over runs.
    time: TimeSplit,
    failures: Vec<String>,
}

async fn week(
    args: &Args,
    client: &Client,
    store: &Arc<dyn Store>,
    upstream: &Upstream,
    components: &HashMap<String, PathBuf>,
    daemon_url: &str,
    say: &dyn Fn(String),
) -> anyhow::Result<Summary> {
    let created = pipeline::deploy(client, components, &upstream.url()).await?;
    say(format!(
        "deployed {created} components to the embedded daemon at {daemon_url} (store: SQLite, fsync on every commit)"
    ));
    say(format!(
        "the batch is scheduled `{}` ({}); this demo starts this week's batch now",
        pipeline::CRON,
        pipeline::TIMEZONE
    ));
    let week = pipeline::iso_week(jiff::Timestamp::now());
    let t0 = Instant::now();
    let (runs0, retries0) = (STEP_RUNS.load(Ordering::Relaxed), STEP_RETRIES.load(Ordering::Relaxed));
    let (waits0, waited0) = (RATE_WAITS.load(Ordering::Relaxed), RATE_WAIT_MICROS.load(Ordering::Relaxed));
    let batch = pipeline::start_week(client, &upstream.url(), &week).await?;
    say(format!(
        "week {week}: {} reports, upstream faults `{}` (seed {}); batch run {batch}\n",
        args.clients, args.faults, args.seed
    ));

    let total = u64::from(args.clients);
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} reports  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_line = Instant::now();
    let deadline = Instant::now() + args.timeout;
    let (completed, failed) = loop {
        let (done, failed) = report_counts(store.as_ref()).await?;
        let batch_run = store.run(&batch).await?;
        let batch_failed = batch_run.as_ref().is_some_and(|r| r.status.is_final() && r.status != RunStatus::Completed);
        let step_runs = STEP_RUNS.load(Ordering::Relaxed) - runs0;
        let retries = STEP_RETRIES.load(Ordering::Relaxed) - retries0;
        let msg = format!("step-runs {}  retries {retries}  failed {failed}", thousands(step_runs));
        match &bar {
            Some(bar) => {
                bar.set_position(done + failed);
                bar.set_message(msg);
            }
            None if !args.json && last_line.elapsed() >= Duration::from_secs(2) => {
                println!("  {:>3}/{total} reports  {msg}", done + failed);
                last_line = Instant::now();
            }
            None => {}
        }
        if batch_failed {
            let why = batch_run.and_then(|r| r.error).map(|e| e.to_string()).unwrap_or_default();
            anyhow::bail!("the weekly batch failed: {why}");
        }
        if done + failed >= total {
            break (done, failed);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the week has not finished after {:?} ({done} of {total} reports done): see {daemon_url}/",
            args.timeout
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let wall = t0.elapsed();

    let mut summary = Summary {
        week,
        clients: args.clients,
        completed,
        failed,
        wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        ..Summary::default()
    };
    for run in report_runs(store.as_ref()).await? {
        if run.status == RunStatus::Failed {
            let why = run.error.as_ref().map(ToString::to_string).unwrap_or_default();
            summary.failures.push(format!("{} ({}): {why}", run.id, run.input));
        }
        let journal = store.journal(&run.id).await?;
        if let (Some(started), Some(finished)) = (run.started_at, run.finished_at) {
            summary.time.add(&TimeSplit::of_run(started.0, finished.0, &journal));
        }
        for entry in journal {
            if entry.kind != EntryKind::Step || entry.key.is_child() {
                continue;
            }
            summary.step_runs += 1;
            if entry.status == EntryStatus::Error {
                let failure: serde_json::Value =
                    entry.response.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
                // Only failures that were tried again count as retries.
                if !failure["retry_at"].is_null() {
                    summary.retries += 1;
                    let kind = failure["kind"].as_str().unwrap_or("error");
                    let message = failure["message"].as_str().unwrap_or_default();
                    *summary.retries_by_cause.entry(pipeline::retry_cause(kind, message)).or_default() += 1;
                }
            }
        }
    }
    summary.rate_limited_calls = RATE_WAITS.load(Ordering::Relaxed) - waits0;
    summary.rate_limited_ms = (RATE_WAIT_MICROS.load(Ordering::Relaxed) - waited0) / 1_000;
    summary.emails_accepted = upstream.emails().len();
    summary.duplicate_sends_suppressed = upstream.duplicates().iter().map(|d| d.count).sum();
    summary.faults_injected = upstream.stats().by_fault;
    Ok(summary)
}

/// Every report run (the workflow `weekly-report`).
async fn report_runs(store: &dyn Store) -> anyhow::Result<Vec<crate::domain::Run>> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let filter = RunFilter { status: None, component: Some("weekly-report".into()), before, limit: 1_000 };
        let page = store.list_runs(&filter).await?;
        let full = page.len() == 1_000;
        before = page.last().map(|r| r.id);
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// (completed, failed or cancelled) report runs.
async fn report_counts(store: &dyn Store) -> anyhow::Result<(u64, u64)> {
    let runs = report_runs(store).await?;
    let done = runs.iter().filter(|r| r.status == RunStatus::Completed).count() as u64;
    let failed = runs.iter().filter(|r| r.status.is_final() && r.status != RunStatus::Completed).count() as u64;
    Ok((done, failed))
}

/// Where a run's time went, in milliseconds: inside steps (their own work),
/// waiting on the upstream (HTTP calls), waiting between a failed attempt
/// and its retry (while no other step of the run was running), and the rest:
/// Ferry itself (scheduling, journaling, fsyncs, the workflow's code).
#[derive(Debug, Default, Clone, serde::Serialize)]
struct TimeSplit {
    steps_ms: f64,
    upstream_ms: f64,
    retry_wait_ms: f64,
    ferry_ms: f64,
}

impl TimeSplit {
    fn of_run(started: i64, finished: i64, journal: &[crate::domain::Entry]) -> Self {
        let mut steps = Vec::new();
        let mut http = Vec::new();
        let mut attempts: BTreeMap<u32, Vec<(u32, i64, i64)>> = BTreeMap::new();
        for e in journal {
            let span = (e.started_at.0, e.finished_at.0);
            match (e.kind, e.key.is_child()) {
                (EntryKind::Step, false) if e.key.attempt >= 1 => {
                    steps.push(span);
                    attempts.entry(e.key.seq).or_default().push((e.key.attempt, span.0, span.1));
                }
                (EntryKind::Http, true) => http.push(span),
                _ => {}
            }
        }
        let mut waits = Vec::new();
        for list in attempts.values_mut() {
            list.sort_unstable();
            waits.extend(list.windows(2).map(|w| (w[0].2, w[1].1)));
        }
        let in_steps = union(&steps);
        let upstream = union(&http).min(in_steps);
        // Waits overlapped by other steps of the run cost nothing extra.
        let mut waits_and_steps = waits;
        waits_and_steps.extend(steps.iter().copied());
        let retry_wait = union(&waits_and_steps).saturating_sub(in_steps);
        let wall = finished.saturating_sub(started).max(0);
        let ms = |us: i64| us as f64 / 1_000.0;
        Self {
            steps_ms: ms(in_steps - upstream),
            upstream_ms: ms(upstream),
            retry_wait_ms: ms(retry_wait),
            ferry_ms: ms(wall.saturating_sub(in_steps + retry_wait).max(0)),
        }
    }

    fn add(&mut self, other: &Self) {
        self.steps_ms += other.steps_ms;
        self.upstream_ms += other.upstream_ms;
        self.retry_wait_ms += other.retry_wait_ms;
        self.ferry_ms += other.ferry_ms;
    }

    fn total(&self) -> f64 {
        self.steps_ms + self.upstream_ms + self.retry_wait_ms + self.ferry_ms
    }
}

/// The length of the union of intervals (microseconds).
fn union(spans: &[(i64, i64)]) -> i64 {
    let mut spans: Vec<(i64, i64)> = spans.iter().copied().filter(|(a, b)| b > a).collect();
    spans.sort_unstable();
    let mut total = 0;
    let mut current: Option<(i64, i64)> = None;
    for (a, b) in spans {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + current.map_or(0, |(a, b)| b - a)
}

impl Summary {
    fn print(&self, args: &Args, pdfs: &std::path::Path, daemon_url: &str, total: Duration) {
        if args.json {
            let mut value = serde_json::to_value(self).unwrap_or_default();
            value["pdfs"] = json!(pdfs);
            value["dashboard"] = if args.keep { json!(format!("{daemon_url}/")) } else { json!(null) };
            println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            return;
        }
        let wall = Duration::from_millis(self.wall_ms);
        let mark = if self.failed == 0 { "✔" } else { "✘" };
        println!(
            "{mark} week {}: {} of {} reports completed, {} failed",
            self.week, self.completed, self.clients, self.failed
        );
        println!(
            "  step-runs   {} in {} ({:.0} step-runs/s, every result fsynced before the run acts on it)",
            thousands(self.step_runs),
            duration(wall),
            self.step_runs as f64 / wall.as_secs_f64().max(1e-9)
        );
        let spent = self.time.total().max(1e-9);
        let share = |ms: f64| 100.0 * ms / spent;
        println!(
            "  time        in the steps {:.0}%, waiting on the upstream {:.0}%, waiting to retry {:.0}%, Ferry {:.0}% \
             (of the report runs' {:.1} s, summed)",
            share(self.time.steps_ms),
            share(self.time.upstream_ms),
            share(self.time.retry_wait_ms),
            share(self.time.ferry_ms),
            spent / 1_000.0
        );
        println!("  retries     {}", self.retries);
        for (cause, n) in &self.retries_by_cause {
            println!("    {n:>5}  {cause}");
        }
        if self.rate_limited_calls > 0 {
            println!(
                "  rate limit  Meta pulls held back {} times, {} in all ({} a second across clients)",
                self.rate_limited_calls,
                duration(Duration::from_millis(self.rate_limited_ms)),
                pipeline::META_PULLS_PER_SECOND
            );
        }
        println!(
            "  emails      {} accepted; {} repeated sends suppressed by Idempotency-Key",
            self.emails_accepted, self.duplicate_sends_suppressed
        );
        if !self.faults_injected.is_empty() {
            let faults: Vec<String> = self.faults_injected.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("  faults      injected by the upstream: {}", faults.join(", "));
        }
        println!("  PDFs        {}", pdfs.display());
        for failure in &self.failures {
            println!("  failed      {failure}");
        }
        if args.keep {
            println!("  dashboard   {daemon_url}/");
        } else {
            println!("  dashboard   run `ferry demo --keep` to keep the daemon up and open it");
        }
        println!("done in {}.", duration(total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unions_merge_overlaps() {
        assert_eq!(union(&[]), 0);
        assert_eq!(union(&[(0, 10), (5, 15), (20, 25), (21, 22)]), 20);
        assert_eq!(union(&[(5, 5), (7, 3)]), 0, "empty and backwards spans count nothing");
    }
}
