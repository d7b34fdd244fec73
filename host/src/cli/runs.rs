//! `ferry runs`: the runs, newest first, from the daemon or a store.

use std::process::ExitCode;

use super::StoreArgs;
use super::client::{Client, DaemonArgs, RunQuery};
use super::format::{duration, one_line};
use crate::domain::{Run, RunId, RunStatus};
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
    /// Print JSON for programs (from the daemon: its answer, with the next
    /// page's `before`; from a store: the list of runs).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(client) = args.store.target(&args.daemon)? {
        match from_daemon(&args, &client).await {
            Err(e) if args.store.fall_back(&e, &client) => {}
            done => return done,
        }
    }
    let store = args.store.open_store().await?;
    let filter = RunFilter {
        status: args.status,
        component: args.workflow.clone(),
        before: args.before,
        limit: args.limit.clamp(1, 1000),
    };
    let runs = store.list_runs(&filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let next = runs.last().filter(|_| runs.len() as u32 == filter.limit).map(|r| r.id);
    print!("{}", render(runs.iter().map(|r| (r, None)), next.as_ref()));
    Ok(ExitCode::SUCCESS)
}

async fn from_daemon(args: &Args, client: &Client) -> anyhow::Result<ExitCode> {
    let query = RunQuery {
        status: args.status,
        workflow: args.workflow.clone(),
        before: args.before,
        limit: Some(args.limit.clamp(1, 1000)),
    };
    let reply = client.runs(&query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply.json)?);
        return Ok(ExitCode::SUCCESS);
    }
    let runs = &reply.body.runs;
    print!("{}", render(runs.iter().map(|r| (&r.run, r.queue_reason.as_deref())), reply.body.next.as_ref()));
    Ok(ExitCode::SUCCESS)
}

/// The human table: each run with why it waits in the queue, if known;
/// `next` is the `--before` of the next page.
fn render<'a>(runs: impl Iterator<Item = (&'a Run, Option<&'a str>)>, next: Option<&RunId>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut any = false;
    for (r, queue_reason) in runs {
        if !any {
            let _ = writeln!(out, "{:<30} {:<10} {:<9} {:<22} {:>9}  detail", "run", "status", "kind", "name", "took");
            any = true;
        }
        let took = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => duration(f.since(s)),
            _ => "-".into(),
        };
        let detail = match (&r.error, queue_reason) {
            (Some(e), _) => one_line(&format!("{}: {}", e.kind, e.message), 60),
            (None, Some(reason)) if r.status == RunStatus::Queued => one_line(reason, 60),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<30} {:<10} {:<9} {:<22} {took:>9}  {detail}",
            r.id.to_string(),
            r.status.as_str(),
            r.kind.as_str(),
            one_line(&r.component, 22)
        );
    }
    if !any {
        return "no runs\n".to_owned();
    }
    if let Some(next) = next {
        let _ = writeln!(out, "more: ferry runs --before {next}");
    }
    out
}
