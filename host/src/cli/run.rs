//! `ferry run NAME --input JSON [--wait]`: a run of a deployment on the
//! daemon.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::client::{DaemonArgs, RunInfo};
use super::exec::{pretty, read_input};
use super::format::{duration, parse_duration};
use crate::domain::RunStatus;

/// How long one `wait` call asks the daemon to hold the request.
const WAIT_SLICE: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deployment to run: a workflow, or a step on its own.
    name: String,
    /// The input as JSON text; `@FILE` reads it from a file, `-` from
    /// standard input.
    #[arg(long, short, default_value = "null")]
    input: String,
    /// At most one run per deployment and key: the same key returns the
    /// existing run instead of starting another.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Wait until the run is final; print its output on stdout and its
    /// status on stderr; exit 1 unless it completed.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (the run goes on) [default: 5m].
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    timeout: Option<Duration>,
    /// Print the daemon's answer as JSON, for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = read_input(&args.input)?;
    let input: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--input is not valid JSON: {e}"))?;
    let client = args.daemon.client()?;
    let started = client.start_run(&args.name, &input, args.idempotency_key.as_deref()).await?;
    let existing = started.body.existing;
    if !args.wait {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&started.json)?);
        } else {
            println!("{}", started.body.run.run.id);
            if existing {
                eprintln!("existing run (same idempotency key): {}", started.body.run.run.status);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }

    let timeout = args.timeout.unwrap_or(Duration::from_secs(300));
    let begun = Instant::now();
    let deadline = begun + timeout;
    let id = started.body.run.run.id;
    let mut json = started.json;
    let mut run = started.body.run;
    while !run.run.status.is_final() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let reply = client.wait(&id, left.min(WAIT_SLICE).max(Duration::from_millis(1))).await?;
        json = reply.json;
        run = reply.body.run;
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        if let Some(output) = &run.run.output {
            println!("{}", pretty(output));
        }
        report(&run, existing, timeout);
    }
    Ok(if run.run.status == RunStatus::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The one-line status (and the error, if any) on stderr.
fn report(info: &RunInfo, existing: bool, timeout: Duration) {
    let run = &info.run;
    let took = match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => format!("  {}", duration(f.since(s))),
        _ => String::new(),
    };
    let existing = if existing { "  (existing run: same idempotency key)" } else { "" };
    if !run.status.is_final() {
        let reason = info.queue_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        eprintln!(
            "… {}{reason} after {}  {}  {} {}{existing}",
            run.status,
            duration(timeout),
            run.id,
            run.kind,
            run.component
        );
        eprintln!("  the run goes on: ferry show {}", run.id);
        return;
    }
    let mark = if run.status == RunStatus::Completed { "✔" } else { "✘" };
    let status = match &run.error {
        Some(e) => format!("{} ({})", run.status, e.kind),
        None => run.status.to_string(),
    };
    eprintln!("{mark} {status}  {}  {} {}{took}{existing}", run.id, run.kind, run.component);
    if let Some(e) = &run.error {
        for line in e.message.lines() {
            eprintln!("  {line}");
        }
    }
    eprintln!("  details: ferry show {}", run.id);
}
