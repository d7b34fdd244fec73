//! `ferry bench`: the seed workload in-process on a fresh store, or
//! through a running `ferry serve` (`--through-daemon URL`); a table (or
//! `--json`) of throughput, latency, per-step overhead, memory and store
//! size. The in-process driver is `crate::bench`; the daemon's is
//! `remote`.

mod remote;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::StoreArgs;
use super::format::{bytes, thousands};
use crate::bench::postgres::{self as pg, FreshSchema};
use crate::bench::{self, Config, Observer, Report, StoreSize};
use crate::store::Durability;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Workflows of the throughput phase.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    workflows: u64,
    /// Step calls per workflow (each a run of the `echo` step on a ~200-byte JSON input).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    steps: u32,
    /// The fan-out shape (`wf-fanout-bench`): half the steps in one parallel
    /// `call_steps`, then the rest in sequence (6 + 6 for 12 steps).
    #[arg(long)]
    parallel: bool,
    /// Workflows in flight in the throughput phase. With
    /// `--through-daemon`: submissions in flight (the daemon's own
    /// `--concurrency` says how many runs it executes at once).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Runs of the latency phase, executed one at a time after the
    /// throughput phase (at most `--workflows`).
    #[arg(long, default_value_t = 50)]
    latency_runs: u32,
    /// Record the process's RSS after each 1/K of the throughput phase's
    /// runs finished (to see that memory stays flat; in-process only).
    #[arg(long, value_name = "K", default_value_t = 0)]
    rss_checkpoints: u32,
    /// The folder with `echo.wasm`, `wf_seq.wasm` and `wf_fanout_bench.wasm`
    /// (default: build them from `steps/` as `ferry build` does).
    #[arg(long, value_name = "DIR")]
    steps_dir: Option<PathBuf>,
    /// Measure the daemon at URL instead (`ferry serve`; a token is taken
    /// from FERRY_TOKEN): deploy the step `echo` and the workflow (as
    /// `bench-wf-seq` or `bench-wf-fanout-bench`) through its API, submit
    /// the runs with `POST /v1/runs`, and wait for them. Every `ferry
    /// serve` sharing the daemon's Postgres store executes them.
    #[arg(long, value_name = "URL")]
    through_daemon: Option<String>,
    /// Print one JSON object for programs instead of the table.
    #[arg(long)]
    json: bool,
    /// Call each step only once every entry before it is durable, instead
    /// of running ahead of the commits (in-process only; `ferry serve` has
    /// the same option).
    #[arg(long)]
    no_run_ahead: bool,
    /// `--db`: the store to create (default: a temporary SQLite file,
    /// removed afterwards; a SQLite file must not exist yet; on a
    /// `postgres://` URL the bench works in a fresh schema of its own and
    /// drops it afterwards). `--durability`: the store's commit mode,
    /// reported with the results.
    #[command(flatten)]
    store: StoreArgs,
}

/// The packages of `steps/` the benchmark runs.
const PACKAGES: [&str; 3] = [bench::STEP, bench::SEQUENTIAL, bench::FANOUT];

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.through_daemon {
        // Find the daemon before building anything: a wrong address should
        // not cost a build first.
        let daemon = remote::Daemon::connect(url).await?;
        let guests = guests(&args).await?;
        if args.store.db.is_some() && !args.json {
            eprintln!("note: --db is not used with --through-daemon: the daemon's store is measured");
        }
        return remote::run(&args, &daemon, &guests).await;
    }
    let guests = guests(&args).await?;

    // A fresh store: a temporary file unless --db names one that is not
    // there yet, or a schema of its own in a Postgres database.
    let scratch;
    let mut schema = None;
    let mut store_args = args.store.clone();
    let db_file = match &args.store.db {
        Some(db) if pg::is_postgres(db) => {
            let fresh = FreshSchema::create(db).await?;
            store_args.db = Some(fresh.url());
            schema = Some(fresh);
            None
        }
        Some(db) => {
            let file = bench::sqlite_file(db);
            if let Some(f) = &file
                && std::fs::metadata(f).is_ok_and(|m| m.len() > 0)
            {
                bail!(
                    "{} already exists: ferry bench needs a fresh store (remove it or pick another --db)",
                    f.display()
                );
            }
            file
        }
        None => {
            scratch = Scratch::new()?;
            let file = scratch.0.join("bench.db");
            store_args.db = Some(file.to_string_lossy().into_owned());
            Some(file)
        }
    };
    // Ctrl-C (or SIGINT) stops the bench but still drops its schema. The
    // handler is in place before the schema is named, so an interrupt right
    // after that line is caught too.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for Ctrl-C")?;
    if let Some(schema) = &schema {
        eprintln!("working in schema {} (dropped when the bench ends, also on Ctrl-C)", schema.name);
    }
    let measured = tokio::select! {
        measured = in_process(&args, &store_args, &guests, db_file.as_deref(), schema.as_ref()) => measured,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted: the bench stopped before it finished")),
    };
    let schema_name = schema.as_ref().map(|s| s.name.clone());
    if let Some(schema) = schema {
        let name = schema.name.clone();
        if let Err(e) = schema.drop_now().await {
            eprintln!("warning: could not drop the bench schema {name}: {e}");
        }
    }
    let (report, ok) = measured?;

    if args.json {
        let mut doc = serde_json::to_value(&report)?;
        let db = match &args.store.db {
            Some(db) if pg::is_postgres(db) => Some(pg::redact(db)),
            Some(_) => store_args.db.clone(),
            None => None,
        };
        doc["db"] = serde_json::Value::from(db);
        if let Some(name) = schema_name {
            doc["schema"] = serde_json::Value::from(name);
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The folder with the bench's components: `--steps-dir`, or built from
/// `steps/`.
async fn guests(args: &Args) -> anyhow::Result<PathBuf> {
    let guests = match &args.steps_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = super::build::find_steps_dir()
                .context("ferry bench builds its guests from steps/; or pass --steps-dir")?;
            let packages: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
            super::build::build_steps(&dir, None, false, &packages).await?.0
        }
    };
    for name in PACKAGES {
        let file = guests.join(format!("{}.wasm", name.replace('-', "_")));
        if !file.exists() {
            bail!("{} is missing: build the `{name}` package of steps/ (or leave out --steps-dir)", file.display());
        }
    }
    Ok(guests)
}

/// The in-process bench on the store `store_args` names (fresh).
async fn in_process(
    args: &Args,
    store_args: &StoreArgs,
    guests: &std::path::Path,
    db_file: Option<&std::path::Path>,
    schema: Option<&FreshSchema>,
) -> anyhow::Result<(Report, bool)> {
    let store = store_args.open_store().await?;
    let engine = store_args.engine()?;
    let config = Config {
        workflows: args.workflows,
        steps: args.steps,
        parallel: args.parallel,
        concurrency: usize::try_from(args.concurrency).unwrap_or(usize::MAX),
        latency_runs: args.latency_runs,
        rss_checkpoints: args.rss_checkpoints,
        durability: store_args.durability,
        run_ahead: !args.no_run_ahead,
    };
    let size = match (db_file, schema) {
        (Some(file), _) => StoreSize::Sqlite(file),
        (None, Some(schema)) => StoreSize::Postgres(schema),
        (None, None) => StoreSize::Unknown,
    };
    let display = Display::new(args.json, config.workflows, config.steps, throughput_line(&config));
    let report = bench::run(store, engine, guests, size, &config, &display).await?;
    let ok = report.failed == 0 && report.latency_failed == 0 && report.completed == report.workflows;
    Ok((report, ok))
}

fn throughput_line(config: &Config) -> String {
    let (parallel, sequential) = config.shape();
    format!(
        "throughput: {} workflows of {} ({}), {} in flight…",
        thousands(config.workflows),
        config.workflow(),
        shape_text(parallel, sequential),
        config.concurrency.max(1)
    )
}

/// A temporary folder for the default store, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ferry-bench-{}-{}", std::process::id(), ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Phase lines and a progress bar on stderr; silent with `--json`, and
/// without a bar when stderr is not a terminal.
struct Display {
    quiet: bool,
    bar: Option<ProgressBar>,
    steps: u32,
    line: String,
}

impl Display {
    /// A display for a throughput phase of `workflows` runs of `steps`
    /// steps, announced with `line`.
    fn new(json: bool, workflows: u64, steps: u32, line: String) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (!json && tty).then(|| {
            let bar = ProgressBar::with_draw_target(Some(workflows), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("  [{elapsed_precise}] {wide_bar} {pos}/{len} runs  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self { quiet: json, bar, steps, line }
    }
}

impl Observer for Display {
    fn phase(&self, name: &str, runs: u64) {
        if self.quiet {
            return;
        }
        match name {
            "baseline" => eprintln!("baseline: {} calls of echo on a live instance…", thousands(runs)),
            "warm-up" => eprintln!("warm-up: one run…"),
            "throughput" => eprintln!("{}", self.line),
            "latency" => eprintln!("latency: {runs} runs, one at a time…"),
            "deploy" => eprintln!("deploy: the step `echo` and the workflow…"),
            other => eprintln!("{other}…"),
        }
    }

    fn progress(&self, finished: u64, failed: u64, elapsed: Duration) {
        if let Some(bar) = &self.bar {
            bar.set_position(finished);
            let rate = (finished * u64::from(self.steps)) as f64 / elapsed.as_secs_f64().max(1e-3);
            let failed = if failed > 0 { format!(" · {failed} failed") } else { String::new() };
            bar.set_message(format!("{} step-runs/s{failed}", thousands(rate as u64)));
        }
    }

    fn throughput_done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn shape_text(parallel: u32, sequential: u32) -> String {
    if parallel == 0 {
        format!("{sequential} sequential steps")
    } else {
        format!("{parallel} parallel + {sequential} sequential steps")
    }
}

/// `6.5 µs`, `1.52 ms`, `2.10 s`.
fn micros(us: f64) -> String {
    if us.abs() < 1_000.0 {
        format!("{us:.1} µs")
    } else if us.abs() < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// The report as a table people read.
fn table(r: &Report) -> String {
    let mut out = String::new();
    let mut row = |label: &str, value: String, note: String| {
        let line = format!("  {label:<20} {value:>14}  {note}");
        out.push_str(line.trim_end());
        out.push('\n');
    };
    let durability = format!("{:?}", r.durability).to_lowercase();
    let head = format!(
        "ferry bench: {} workflows of {} ({}, step `{}` on a {}-byte JSON input), {} in flight, {} store, durability {durability}, {} cores\n",
        thousands(r.workflows),
        r.workflow,
        shape_text(r.parallel_steps, r.sequential_steps),
        r.step,
        r.payload_bytes,
        r.concurrency,
        r.store,
        r.cores,
    );
    row("completed", thousands(r.completed), format!("{} failed", r.failed));
    row(
        "step-runs/s",
        thousands(r.step_runs_per_s.round() as u64),
        format!(
            "{} step-runs in {:.2} s ({:.0} workflows/s)",
            thousands(r.step_runs),
            r.throughput_wall_s,
            r.workflows_per_s
        ),
    );
    let runs = if r.latency_failed > 0 { format!(", {} failed", r.latency_failed) } else { String::new() };
    row(
        "run latency p50",
        micros(r.latency_p50_ms * 1_000.0),
        format!("{} steps, one workflow at a time, {} runs{runs}", r.steps, r.latency_runs),
    );
    row("run latency p99", micros(r.latency_p99_ms * 1_000.0), format!("max {}", micros(r.latency_max_ms * 1_000.0)));
    row(
        "per-step overhead",
        micros(r.per_step_overhead_us),
        format!("{} per step (p50 / {}) − {} baseline", micros(r.per_step_us), r.steps, micros(r.baseline_us)),
    );
    row("baseline", micros(r.baseline_us), "the echo export called on a live instance".into());
    if let (Some(engine), Some(fsync), Some(n)) = (r.per_step_engine_us, r.fsync_us, r.fsyncs_per_run) {
        let less = match r.durability {
            Durability::Fsync => {
                format!("per-step overhead − {n:.1} fsyncs per run × {} / {} steps", micros(fsync), r.steps)
            }
            Durability::Buffered => format!("per-step overhead (no fsync waited; this disk's is {})", micros(fsync)),
        };
        row("engine per step", micros(engine), less);
    }
    let rss_note = if r.store == "postgres" { "VmHWM of this process (Postgres's not counted)" } else { "VmHWM" };
    row("peak RSS", r.peak_rss_bytes.map_or_else(|| "n/a".into(), bytes), rss_note.into());
    for c in &r.rss_checkpoints {
        row("RSS", bytes(c.rss_bytes), format!("after {} runs", thousands(c.finished)));
    }
    row(
        "store per step-run",
        r.store_bytes_per_step_run.map_or_else(|| "n/a".into(), |b| format!("{b:.0} B")),
        r.store_bytes.map_or_else(String::new, |b| {
            let place = if r.store == "postgres" {
                "in the bench schema's tables and indexes (WAL not counted)"
            } else {
                "in the store's files (SQLite + WAL)"
            };
            format!("{} {place}", bytes(b))
        }),
    );
    let commit = match (r.store, durability.as_str()) {
        ("postgres", "fsync") => "synchronous_commit = on",
        ("postgres", _) => "synchronous_commit = off",
        (_, "fsync") => "SQLite synchronous = FULL",
        _ => "SQLite synchronous = NORMAL",
    };
    row("durability", durability.clone(), commit.into());
    let ahead = if r.run_ahead {
        "steps run while the entries before them commit; requests and the run's end wait for them"
    } else {
        "each step waits until the entries before it are durable (--no-run-ahead)"
    };
    row("run ahead", if r.run_ahead { "on" } else { "off" }.into(), ahead.into());
    row("cores", r.cores.to_string(), String::new());
    row("total wall time", format!("{:.2} s", r.total_wall_s), "baseline, warm-up, throughput, latency".into());
    format!("{head}{out}")
}
