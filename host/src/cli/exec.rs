//! `ferry exec FILE.wasm --input JSON`: run one step in-process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::format::{duration, parse_bytes, parse_duration, thousands};
use super::{StoreArgs, WorkerArgs};
use crate::domain::{Limits, RunStatus, World};
use crate::engine::{AllowList, Secrets};
use crate::exec::{ExecOptions, Host};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The step component (a `.wasm` file built for wasm32-wasip2).
    file: PathBuf,
    /// The step's input as JSON text; `@FILE` reads it from a file, `-`
    /// from standard input.
    #[arg(long, short, default_value = "null")]
    input: String,
    /// The name the run is recorded under (default: the file's name).
    #[arg(long)]
    name: Option<String>,
    /// Fuel budget of the attempt (about one unit per wasm instruction).
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory cap, e.g. `64MiB`.
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// Wall-clock deadline, e.g. `30s`.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Largest output accepted, e.g. `1MiB`.
    #[arg(long, value_parser = parse_bytes)]
    max_output: Option<u64>,
    /// Returns the earlier run with this key instead of running again.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print one JSON object for programs instead of text.
    #[arg(long)]
    json: bool,
    /// Workflows: return as soon as the run is parked (sleeping or waiting
    /// for an event) instead of waiting for it to finish.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("cannot read the component {}", args.file.display()))?;
    let input = read_input(&args.input)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.file.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_else(|| "step".to_owned())
    });
    let defaults = Limits::default();
    let limits = Limits {
        fuel: args.fuel.unwrap_or(defaults.fuel),
        memory_bytes: args.memory.unwrap_or(defaults.memory_bytes),
        timeout: args.timeout.unwrap_or(defaults.timeout),
        output_bytes: args.max_output.unwrap_or(defaults.output_bytes),
    };
    let store = args.store.open_store().await?;
    let engine = args.store.engine()?;
    let host = Host::new(store, engine, Secrets::from_env());
    let allow = AllowList::new(args.worker.allow_hosts.iter().cloned());
    let opts = ExecOptions { limits, allow, idempotency_key: args.idempotency_key };
    let world = host.engine.load(&bytes).await.map_err(crate::exec::ExecError::from)?.world;
    let report = match world {
        World::Step => host.exec_step(&bytes, &name, &input, opts).await?,
        World::Workflow => {
            let worker = args.worker.worker(&host, opts.limits)?;
            host.exec_workflow(&bytes, &name, &input, opts, &worker, args.detach).await?
        }
    };
    let run = &report.run;
    let ok = run.status == RunStatus::Completed;

    if args.json {
        let output = run.output.as_deref().and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok());
        let summary = serde_json::json!({
            "run_id": run.id,
            "step": run.component,
            "status": run.status,
            "executed": report.executed,
            "kind": run.kind,
            "output": output,
            "error": run.error,
            "duration_us": u64::try_from(report.duration.as_micros()).unwrap_or(u64::MAX),
            "fuel": report.fuel,
            "entries": report.entries,
            "component": run.component_hash,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        if let Some(output) = &run.output {
            println!("{}", pretty(output));
        }
        let mark = if ok { "✔" } else { "✘" };
        let status = match &run.error {
            Some(e) => format!("{} ({})", run.status, e.kind),
            None => run.status.to_string(),
        };
        eprintln!("{mark} {status}  {}  {} {}", run.id, run.kind, run.component);
        if !report.executed {
            eprintln!("  an earlier run has this idempotency key: it was returned, not run again");
        }
        if let Some(e) = &run.error {
            for line in e.message.lines() {
                eprintln!("  {line}");
            }
        }
        eprintln!(
            "  {} · fuel {} · {} journal entries · details: ferry show {}",
            duration(report.duration),
            thousands(report.fuel),
            report.entries,
            run.id
        );
    }
    let parked = run.status == RunStatus::Waiting;
    Ok(if ok || parked { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The input text: literal JSON, `@FILE`, or `-` for standard input.
pub(super) fn read_input(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the input from standard input")?;
        return Ok(text);
    }
    if let Some(path) = arg.strip_prefix('@') {
        return std::fs::read_to_string(path).with_context(|| format!("cannot read the input file {path}"));
    }
    Ok(arg.to_owned())
}

/// Pretty-prints JSON text; text that does not parse is shown as it is.
pub fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_owned())
}
