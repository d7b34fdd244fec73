//! `ferry demo`: the newcomer's first command. Builds the steps in
//! `steps/`, runs the `hello` step durably, shows what the sandbox does to
//! a runaway loop and a memory bomb, and prints one run's journal.

use std::process::ExitCode;
use std::time::Instant;

use super::StoreArgs;
use super::build::{build_steps, find_steps_dir};
use super::format::{duration, thousands};
use crate::domain::{Limits, RunStatus};
use crate::engine::{AllowList, Secrets};
use crate::exec::{ExecOptions, Host, Report};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = find_steps_dir()?;
    let (_, components) = build_steps(&dir, None, false, &[]).await?;
    let component = |name: &str| -> anyhow::Result<Vec<u8>> {
        let built = components
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow::anyhow!("the steps workspace has no `{name}` crate"))?;
        Ok(std::fs::read(&built.path)?)
    };
    let store = args.store.open_store().await?;
    let host = Host::new(store.clone(), args.store.engine()?, Secrets::from_env());
    println!("\nstore: {}   (every call below is journaled there)\n", args.store.db());

    println!("1. the `hello` step, three durable runs:");
    let hello = component("hello")?;
    let mut first = None;
    for name in ["Ada", "Grace", "Linus"] {
        let input = serde_json::json!({ "name": name }).to_string();
        let report = host.exec_step(&hello, "hello", &input, ExecOptions::default()).await?;
        line(&report);
        first.get_or_insert(report.run.id);
    }

    println!("\n2. the sandbox stops what misbehaves, and the host carries on:");
    let tight = Limits { fuel: 20_000_000, memory_bytes: 16 << 20, ..Limits::default() };
    let opts = ExecOptions { limits: tight, allow: AllowList::default(), idempotency_key: None };
    line(&host.exec_step(&component("spin")?, "spin", "null", opts.clone()).await?);
    line(&host.exec_step(&component("alloc-bomb")?, "alloc-bomb", "null", opts.clone()).await?);
    let input = r#"{"reason":"a bug in the step"}"#;
    line(&host.exec_step(&component("panic")?, "panic", input, opts).await?);

    if let Some(id) = first {
        let run = store.run(&id).await?.ok_or_else(|| anyhow::anyhow!("run {id} vanished"))?;
        let journal = store.journal(&id).await?;
        println!("\n3. the journal of the first run (`ferry show {id}`):\n");
        print!("{}", super::show::render(&run, &journal, false));
    }
    println!(
        "\ndone in {}. Next: `ferry show RUN --full`, or write your own step (README).",
        duration(started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

fn line(report: &Report) {
    let run = &report.run;
    let mark = if run.status == RunStatus::Completed { "✔" } else { "✘" };
    let what = match (&run.output, &run.error) {
        (Some(output), _) => output.clone(),
        (None, Some(e)) => format!("{}: {}", e.kind, e.message.lines().next().unwrap_or_default()),
        (None, None) => String::new(),
    };
    println!(
        "   {mark} {:<11} {}  {:>8}  fuel {:>11}  {}",
        run.component,
        run.id,
        duration(report.duration),
        thousands(report.fuel),
        super::format::one_line(&what, 110)
    );
}
