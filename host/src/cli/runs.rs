//! `ferry runs`: the runs in the store, newest first.

use std::process::ExitCode;

use super::StoreArgs;
use super::format::{duration, one_line};
use crate::domain::{RunId, RunStatus};
use crate::store::RunFilter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only runs with this status.
    #[arg(long)]
    status: Option<RunStatus>,
    /// Only runs of this workflow or step.
    #[arg(long)]
    workflow: Option<String>,
    /// At most this many (up to 1,000).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Only runs older than this one (the next page).
    #[arg(long)]
    before: Option<RunId>,
    /// Print JSON for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open_store().await?;
    let filter =
        RunFilter { status: args.status, component: args.workflow, before: args.before, limit: args.limit.max(1) };
    let runs = store.list_runs(&filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<30} {:<10} {:<9} {:<22} {:>9}  error", "run", "status", "kind", "name", "took");
    for r in &runs {
        let took = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => duration(f.since(s)),
            _ => "-".into(),
        };
        let error = r.error.as_ref().map(|e| one_line(&format!("{}: {}", e.kind, e.message), 60)).unwrap_or_default();
        println!(
            "{:<30} {:<10} {:<9} {:<22} {took:>9}  {error}",
            r.id.to_string(),
            r.status.as_str(),
            r.kind.as_str(),
            one_line(&r.component, 22)
        );
    }
    if let Some(last) = runs.last().filter(|_| runs.len() as u32 == filter.limit) {
        println!("more: ferry runs --before {}", last.id);
    }
    Ok(ExitCode::SUCCESS)
}
