//! `ferry show RUN`: a run and its journal as a timeline.

use std::process::ExitCode;

use anyhow::Context;

use super::StoreArgs;
use super::client::{Client, DaemonArgs};
use super::exec::pretty;
use super::format::{duration, one_line, thousands};
use crate::domain::{Entry, EntryKind, EntryStatus, Run, RunId, RunStatus};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run id (`run_…`).
    run: String,
    /// Print the run and every journal entry as JSON, for programs.
    #[arg(long)]
    json: bool,
    /// Show whole requests and responses instead of one line each.
    #[arg(long, short)]
    full: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let id: RunId = args.run.parse()?;
    if let Some(client) = args.store.target(&args.daemon)? {
        match from_daemon(&args, &id, &client).await {
            Err(e) if args.store.fall_back(&e, &client) => {}
            done => return done,
        }
    }
    let store = args.store.open_store().await?;
    let run = store
        .run(&id)
        .await?
        .with_context(|| format!("no run {id} in the store {} (is --db right?)", args.store.db()))?;
    let journal = store.journal(&id).await?;
    if args.json {
        let doc = serde_json::json!({ "run": run, "journal": journal });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&run, &journal, args.full));
    }
    Ok(ExitCode::SUCCESS)
}

async fn from_daemon(args: &Args, id: &RunId, client: &Client) -> anyhow::Result<ExitCode> {
    let reply = client.run(id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply.json)?);
    } else {
        let detail = reply.body;
        let mut text = render(&detail.run.run, &detail.journal, args.full);
        if let Some(reason) = detail.run.queue_reason.filter(|_| detail.run.run.status == RunStatus::Queued) {
            // After the `status` line.
            let at = text.find("\ncreated ").map_or(text.len(), |i| i + 1);
            text.insert_str(at, &format!("queued  {reason}\n"));
        }
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The human timeline.
pub fn render(run: &Run, journal: &[Entry], full: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let took = match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => duration(f.since(s)),
        _ => "-".to_owned(),
    };
    let _ = writeln!(out, "run     {}", run.id);
    let _ = writeln!(out, "{:<7} {}  (sha256:{})", run.kind.as_str(), run.component, run.component_hash.short());
    let _ = writeln!(out, "status  {}  ({took})", run.status);
    let _ = writeln!(out, "created {}", run.created_at);
    if let Some(key) = &run.idempotency_key {
        let _ = writeln!(out, "key     {key}");
    }
    let _ = writeln!(out, "input   {}", block(&run.input, full, 8));
    if let Some(output) = &run.output {
        let _ = writeln!(out, "output  {}", block(output, full, 8));
    }
    if let Some(e) = &run.error {
        let _ = writeln!(out, "error   {}: {}", e.kind, indent(&e.message, 8));
    }
    let _ = writeln!(out, "\njournal ({} entries)", journal.len());
    let origin = run.started_at.or_else(|| journal.first().map(|e| e.started_at)).unwrap_or(run.created_at);
    for e in journal {
        let depth = if e.key.is_child() { "    " } else { "" };
        let status = match e.status {
            EntryStatus::Ok => "ok",
            EntryStatus::Error => "ERR",
        };
        let at = format!("+{}", duration(e.started_at.since(origin)));
        let took = duration(e.finished_at.since(e.started_at));
        let _ = write!(
            out,
            "  {depth}{:<10} {:<15} {:<24} {status:<3} {at:>10} {took:>9}",
            e.key.to_string(),
            e.kind.as_str(),
            one_line(&e.name, 24)
        );
        if let Some(fuel) = e.fuel {
            let _ = write!(out, "  fuel {}", thousands(fuel));
        }
        let _ = writeln!(out);
        let pad = format!("  {depth}    ");
        match e.kind {
            EntryKind::Log => {
                let text: String = serde_json::from_str(&e.request).unwrap_or_else(|_| e.request.clone());
                let _ = writeln!(out, "{pad}{}", if full { indent(&text, pad.len()) } else { one_line(&text, 100) });
            }
            EntryKind::Step => {
                let _ = writeln!(out, "{pad}input  {}", block(&e.request, full, pad.len() + 7));
                if let Some(err) = &e.error {
                    let _ = writeln!(out, "{pad}error  {}", indent(err, pad.len() + 7));
                } else if let Some(resp) = &e.response {
                    let _ = writeln!(out, "{pad}output {}", block(resp, full, pad.len() + 7));
                }
            }
            _ => {
                let _ = writeln!(out, "{pad}→ {}", block(&e.request, full, pad.len() + 2));
                if let Some(resp) = &e.response {
                    let _ = writeln!(out, "{pad}← {}", block(resp, full, pad.len() + 2));
                }
            }
        }
    }
    out
}

fn block(json: &str, full: bool, indent_by: usize) -> String {
    if full { indent(&pretty(json), indent_by) } else { one_line(json, 100) }
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().enumerate().map(|(i, l)| if i == 0 { l.to_owned() } else { format!("\n{pad}{l}") }).collect()
}
