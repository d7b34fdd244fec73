//! `ferry send-event NAME --data JSON` and `ferry cancel RUN`.

use std::process::ExitCode;

use super::StoreArgs;
use crate::domain::{Micros, RunId};

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The event's name.
    name: String,
    /// The event's data, as JSON.
    #[arg(long, default_value = "{}")]
    data: String,
    /// Print JSON for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    serde_json::from_str::<serde_json::Value>(&args.data)
        .map_err(|e| anyhow::anyhow!("--data is not valid JSON: {e}"))?;
    let store = args.store.open_store().await?;
    let (event, woken) = store.send_event(&args.name, &args.data, Micros::now()).await?;
    if args.json {
        println!("{}", serde_json::json!({ "event_id": event.id, "name": event.name, "woken": woken }));
    } else {
        println!("event {} `{}` stored; {woken} waiting run(s) woken", event.id, event.name);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run id (`run_…`).
    run: String,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let id: RunId = args.run.parse()?;
    let store = args.store.open_store().await?;
    let run = store.cancel(&id, "cancelled by request (ferry cancel)", Micros::now()).await?;
    println!("{} {}", run.id, run.status);
    Ok(ExitCode::SUCCESS)
}
