//! `ferry replay`, `ferry export` and `ferry rerun`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::format::one_line;
use super::{StoreArgs, WorkerArgs};
use crate::domain::{Micros, RunId};
use crate::engine::Secrets;
use crate::exec::Host;
use crate::replay::{Export, Recording, Replayer, Report, Side, Verdict};
use crate::workflow::{StepResolver, Until};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The run id (`run_…`); with --from-file, the run in the file.
    run: Option<String>,
    /// Replay a file written by `ferry export` instead of a run in the store.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Swap in another version of a step or of the workflow (repeatable):
    /// `--component pull-source=fixed.wasm`.
    #[arg(long = "component", value_name = "NAME=FILE", value_parser = StepResolver::parse_binding)]
    components: Vec<(String, PathBuf)>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: super::client::DaemonArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// Exit codes: 0 identical, 1 diverged, 2 error (from `main`).
pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let recording = match &args.from_file {
        Some(path) => {
            let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let export = Export::parse(&text).with_context(|| format!("cannot replay {}", path.display()))?;
            if let Some(id) = &args.run
                && id != &export.run.id.to_string()
            {
                bail!("{} holds run {}, not {id}", path.display(), export.run.id);
            }
            let mut rec = export.recording()?;
            // Components the file does not carry may be in a local store.
            if rec.components.len() < export.components.len() && std::path::Path::new(args.store.db()).exists() {
                let store = args.store.open_store().await?;
                for c in &export.components {
                    if !rec.components.contains_key(&c.hash)
                        && let Some(found) = store.component(&c.hash).await?
                    {
                        rec.components.insert(c.hash.clone(), found.bytes);
                    }
                }
            }
            rec
        }
        None => {
            let id: RunId = args.run.as_deref().context("name the run to replay, or use --from-file")?.parse()?;
            let mut from_daemon = None;
            if let Some(client) = args.store.target(&args.daemon)? {
                // The recording comes over the API; the replay runs here.
                match client.export(&id, true).await {
                    Ok(reply) => {
                        let text = serde_json::to_vec(&reply.json)?;
                        from_daemon = Some(Export::parse(&text)?.recording()?);
                    }
                    Err(e) if args.store.fall_back(&e, &client) => {}
                    Err(e) => return Err(e),
                }
            }
            match from_daemon {
                Some(rec) => rec,
                None => {
                    let store = args.store.open_store().await?;
                    crate::replay::load_recording(store.as_ref(), &id).await?.0
                }
            }
        }
    };
    let mut overrides = HashMap::new();
    for (name, file) in &args.components {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        overrides.insert(name.clone(), bytes);
    }
    let replayer = Replayer::new(args.store.engine()?, Secrets::from_env(), overrides);
    let report = replayer.replay(&recording).await?;
    if args.json {
        let doc = serde_json::json!({
            "run_id": recording.run.id,
            "identical": report.identical(),
            "report": report,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&recording, &report, !args.components.is_empty()));
    }
    Ok(if report.identical() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn render(rec: &Recording, report: &Report, swapped: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replaying {} ({} {}) against its journal; nothing leaves this process",
        rec.run.id, rec.run.kind, rec.run.component
    );
    for line in &report.lines {
        let (mark, text) = match &line.verdict {
            Verdict::Matched => ("✔", "matched".to_owned()),
            Verdict::Changed { recorded, now } => {
                ("~", format!("new version: recorded {} → now {}", one_line(recorded, 70), one_line(now, 70)))
            }
            Verdict::Diverged { reason } => ("✘", format!("diverged: {}", one_line(reason, 120))),
        };
        let _ = writeln!(
            out,
            "  {mark} {:<12} {:<15} {:<24} {text}",
            line.key.to_string(),
            line.kind.as_str(),
            one_line(&line.name, 24)
        );
    }
    if let Some(d) = &report.divergence {
        let _ = writeln!(out, "\nfirst divergence at {}:\n  {}", d.key, d.reason.replace('\n', "\n  "));
        if let Some(side) = &d.recorded {
            let _ = write!(out, "{}", side_text("recorded", side));
        }
        if let Some(side) = &d.replayed {
            let _ = write!(out, "{}", side_text("replayed", side));
        }
        if let (Some(a), Some(b)) = (&d.recorded, &d.replayed) {
            let _ = write!(out, "{}", diff("request", &a.request, &b.request));
            if let (Some(ra), Some(rb)) = (&a.response, &b.response) {
                let _ = write!(out, "{}", diff("response", ra, rb));
            }
        }
    }
    if let Some(why) = &report.ended_early {
        let _ = writeln!(out, "\nnote: {why}");
    }
    if swapped && let Some(output) = &report.output {
        let _ = writeln!(out, "\nwith the swapped component the run returns: {}", one_line(output, 200));
    }
    let verdict = if report.identical() { "identical (exit 0)" } else { "diverged (exit 1)" };
    let _ = writeln!(out, "\nresult: {verdict}");
    out
}

fn side_text(label: &str, side: &Side) -> String {
    let mut s = format!("  {label}: {} `{}`\n    request:  {}\n", side.kind, side.name, one_line(&side.request, 200));
    if let Some(r) = &side.response {
        s.push_str(&format!("    response: {}\n", one_line(r, 200)));
    }
    s
}

/// A line diff of two JSON texts, pretty-printed; empty when equal.
fn diff(what: &str, a: &str, b: &str) -> String {
    if a == b {
        return String::new();
    }
    let (pa, pb) = (super::exec::pretty(a), super::exec::pretty(b));
    let mut out = format!("  diff of the {what} (- recorded, + replayed):\n");
    for change in similar::TextDiff::from_lines(&pa, &pb).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "-",
            similar::ChangeTag::Insert => "+",
            similar::ChangeTag::Equal => " ",
        };
        out.push_str(&format!("    {sign} {}", change));
        if !change.to_string().ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The run id (`run_…`).
    run: String,
    /// Include the component bytes, so the file replays where the store is
    /// not available.
    #[arg(long)]
    with_components: bool,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let id: RunId = args.run.parse()?;
    let store = args.store.open_store().await?;
    let (rec, worlds) = crate::replay::load_recording(store.as_ref(), &id).await?;
    let doc = Export::new(&rec, &worlds, args.with_components);
    let text = serde_json::to_string_pretty(&doc)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {} ({} journal entries, {} components)",
                path.display(),
                doc.journal.len(),
                doc.components.len()
            );
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct RerunArgs {
    /// The run to rerun.
    run: String,
    /// The step call to rerun from (its name in the workflow, e.g.
    /// `pull-meta`): it and everything after it execute again for real;
    /// everything before it is kept from the original journal.
    #[arg(long)]
    from: String,
    /// Run another version of a step or of the workflow (repeatable).
    #[arg(long = "component", value_name = "NAME=FILE", value_parser = StepResolver::parse_binding)]
    components: Vec<(String, PathBuf)>,
    /// Print JSON for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: super::client::DaemonArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn rerun(args: RerunArgs) -> anyhow::Result<ExitCode> {
    let id: RunId = args.run.parse()?;
    if let Some(client) = args.store.target(&args.daemon)? {
        match rerun_on_daemon(&args, &client, &id).await {
            Err(e) if args.store.fall_back(&e, &client) => {}
            done => return done,
        }
    }
    let store = args.store.open_store().await?;
    let run = store.run(&id).await?.with_context(|| format!("no run {id} in the store"))?;
    let host = Host::new(store.clone(), args.store.engine()?, Secrets::from_env());
    let mut worker_args = args.worker.clone();
    let mut component_hash = None;
    for (name, file) in &args.components {
        if name == &run.component {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let loaded = host.engine.load(&bytes).await?;
            let component = crate::store::Component {
                hash: loaded.hash.clone(),
                world: loaded.world,
                bytes,
                created_at: Micros::now(),
            };
            host.store.put_component(&component).await?;
            component_hash = Some(loaded.hash.clone());
        } else {
            worker_args.bind_step(name, file);
        }
    }
    let (new_run, kept) =
        crate::workflow::start_rerun(store.as_ref(), &host.owner, &id, &args.from, component_hash).await?;
    let worker = worker_args.worker(&host, crate::domain::Limits::default())?;
    worker.run(Until::Final(new_run.id)).await?;
    let done = store.run(&new_run.id).await?.context("the rerun vanished")?;
    if args.json {
        let doc = serde_json::json!({
            "run_id": done.id, "rerun_of": id, "from": args.from, "kept_entries": kept,
            "status": done.status, "output": done.output, "error": done.error,
        });
        println!("{doc}");
    } else {
        println!("{} {}  (rerun of {id} from `{}`; {kept} journal entries kept)", done.id, done.status, args.from);
        if let Some(e) = &done.error {
            println!("  {}: {}", e.kind, e.message);
        }
    }
    Ok(if done.status == crate::domain::RunStatus::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `ferry rerun` against the daemon: its workers run the new run on the
/// active deployments (deploy a fixed step first to rerun on it).
async fn rerun_on_daemon(args: &RerunArgs, client: &super::client::Client, id: &RunId) -> anyhow::Result<ExitCode> {
    if !args.components.is_empty() {
        bail!(
            "with a daemon, deploy the fixed component first (`ferry deploy FILE --name NAME`), then rerun: \
             steps resolve to their active deployment; use --db to rerun locally with --component"
        );
    }
    let started = client.rerun(id, &args.from).await?;
    let new_id: RunId = started.json["run"]["id"].as_str().unwrap_or_default().parse()?;
    let kept = started.json["kept_entries"].as_u64().unwrap_or(0);
    let run = loop {
        let reply = client.wait(&new_id, std::time::Duration::from_secs(30)).await?;
        if reply.json["run"]["status"]
            .as_str()
            .and_then(|s| s.parse::<crate::domain::RunStatus>().ok())
            .is_some_and(|s| s.is_final())
        {
            break reply.json["run"].clone();
        }
    };
    if args.json {
        let doc = serde_json::json!({
            "run_id": new_id, "rerun_of": id, "from": args.from, "kept_entries": kept,
            "status": run["status"], "output": run["output"], "error": run["error"],
        });
        println!("{doc}");
    } else {
        println!(
            "{new_id} {}  (rerun of {id} from `{}`; {kept} journal entries kept)",
            run["status"].as_str().unwrap_or("?"),
            args.from
        );
        if let Some(m) = run["error"]["message"].as_str() {
            println!("  {}: {m}", run["error"]["kind"].as_str().unwrap_or("error"));
        }
    }
    Ok(if run["status"] == "completed" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
