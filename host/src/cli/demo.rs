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
use crate::metrics::{STEP_RETRIES, STEP_RUNS};
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
    let (_, built) = build_steps(&steps_dir, args.target_dir.as_deref(), false, &[]).await?;
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
        cache_dir: Some(dir.join("cache")),
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
    emails_accepted: usize,
    duplicate_sends_suppressed: u64,
    faults_injected: BTreeMap<String, u64>,
    wall_ms: u64,
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
        for entry in store.journal(&run.id).await? {
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
            "  step-runs   {} in {} ({:.0} step-runs/s, every result fsynced before the next step)",
            thousands(self.step_runs),
            duration(wall),
            self.step_runs as f64 / wall.as_secs_f64().max(1e-9)
        );
        println!("  retries     {}", self.retries);
        for (cause, n) in &self.retries_by_cause {
            println!("    {n:>5}  {cause}");
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
