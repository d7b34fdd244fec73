//! `ferry replay`, `ferry export` and `ferry rerun`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::format::one_line;
use super::{StoreArgs, WorkerArgs};
use crate::domain::{ComponentHash, EntryKind, Micros, NewRun, RunId, World};
use crate::engine::Secrets;
use crate::exec::Host;
use crate::replay::{Export, Recording, Replayer, Report, Side, Verdict};
use crate::store::{Created, Park, Store};
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
            let store = args.store.open_store().await?;
            load_recording(store.as_ref(), &id).await?.0
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

/// A run, its journal and the bytes of every component it used.
pub async fn load_recording(
    store: &dyn Store,
    id: &RunId,
) -> anyhow::Result<(Recording, HashMap<ComponentHash, World>)> {
    let run = store.run(id).await?.with_context(|| format!("no run {id} in the store"))?;
    let journal = store.journal(id).await?;
    let mut hashes = vec![run.component_hash.clone()];
    for e in journal.iter().filter(|e| e.kind == EntryKind::Step) {
        if let Some(hash) = e.component.as_deref().and_then(|c| c.rsplit_once('@')).and_then(|(_, h)| h.parse().ok()) {
            hashes.push(hash);
        }
    }
    hashes.sort();
    hashes.dedup();
    let mut components = HashMap::new();
    let mut worlds = HashMap::new();
    for hash in hashes {
        let c = store
            .component(&hash)
            .await?
            .with_context(|| format!("component {hash} of run {id} is not in the store"))?;
        worlds.insert(hash.clone(), c.world);
        components.insert(hash, c.bytes);
    }
    Ok((Recording { run, journal, components }, worlds))
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
    let (rec, worlds) = load_recording(store.as_ref(), &id).await?;
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
    worker: WorkerArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn rerun(args: RerunArgs) -> anyhow::Result<ExitCode> {
    let id: RunId = args.run.parse()?;
    let store = args.store.open_store().await?;
    let run = store.run(&id).await?.with_context(|| format!("no run {id} in the store"))?;
    let journal = store.journal(&id).await?;
    let from = journal
        .iter()
        .filter(|e| e.kind == EntryKind::Step && e.name == args.from)
        .map(|e| e.key.seq)
        .min()
        .with_context(|| {
            let mut names: Vec<&str> =
                journal.iter().filter(|e| e.kind == EntryKind::Step).map(|e| e.name.as_str()).collect();
            names.dedup();
            format!("run {id} has no step call named `{}`; its step calls: {}", args.from, names.join(", "))
        })?;
    let host = Host::new(store.clone(), args.store.engine()?, Secrets::from_env());
    let mut worker_args = args.worker.clone();
    let mut component_hash = run.component_hash.clone();
    for (name, file) in &args.components {
        if name == &run.component {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let loaded = host.engine.load(&bytes).await?;
            host.store
                .put_component(&crate::store::Component {
                    hash: loaded.hash.clone(),
                    world: loaded.world,
                    bytes,
                    created_at: Micros::now(),
                })
                .await?;
            component_hash = loaded.hash.clone();
        } else {
            worker_args.bind_step(name, file);
        }
    }
    let created = store
        .create_run(NewRun {
            id: RunId::new(),
            kind: run.kind,
            component: run.component.clone(),
            component_hash,
            input: run.input.clone(),
            idempotency_key: None,
            created_at: Micros::now(),
            origin: Some(format!("rerun of {id} from `{}`", args.from)),
            flow: Default::default(),
        })
        .await?;
    let Created::New(new_run) = created else { bail!("a run with the new id already exists") };
    // Keep the journal before the step: copied under the new run, fenced by
    // a lease, then the run is released to the worker, due at once.
    let lease = store.claim(&new_run.id, &host.owner, std::time::Duration::from_secs(60), Micros::now()).await?;
    let kept: Vec<_> = journal
        .into_iter()
        .filter(|e| e.key.seq < from)
        .map(|mut e| {
            e.run_id = new_run.id;
            e
        })
        .collect();
    let kept_count = kept.len();
    store.park(&lease, kept, Park { wake_at: Some(Micros::now()), event: None }).await?;
    let worker = worker_args.worker(&host, crate::domain::Limits::default())?;
    worker.run(Until::Final(new_run.id)).await?;
    let done = store.run(&new_run.id).await?.context("the rerun vanished")?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"run_id": done.id, "rerun_of": id, "from": args.from, "kept_entries": kept_count, "status": done.status, "output": done.output, "error": done.error})
        );
    } else {
        println!(
            "{} {}  (rerun of {id} from `{}`; {kept_count} journal entries kept)",
            done.id, done.status, args.from
        );
        if let Some(e) = &done.error {
            println!("  {}: {}", e.kind, e.message);
        }
    }
    Ok(if done.status == crate::domain::RunStatus::Completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
