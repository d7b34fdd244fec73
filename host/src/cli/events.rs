//! `ferry send-event NAME --data JSON` and `ferry cancel RUN`.

use std::process::ExitCode;

use super::StoreArgs;
use super::client::{Client, DaemonArgs};
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
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let data = serde_json::from_str::<serde_json::Value>(&args.data)
        .map_err(|e| anyhow::anyhow!("--data is not valid JSON: {e}"))?;
    if let Some(client) = args.store.target(&args.daemon)? {
        match send_to_daemon(&args, &data, &client).await {
            Err(e) if args.store.fall_back(&e, &client) => {}
            done => return done,
        }
    }
    let store = args.store.open_store().await?;
    let (event, woken) = store.send_event(&args.name, &args.data, Micros::now()).await?;
    if args.json {
        println!("{}", serde_json::json!({ "event_id": event.id, "name": event.name, "woken": woken }));
    } else {
        println!("event {} `{}` stored; {woken} waiting run(s) woken", event.id, event.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn send_to_daemon(args: &SendArgs, data: &serde_json::Value, client: &Client) -> anyhow::Result<ExitCode> {
    let reply = client.send_event(&args.name, data).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply.json)?);
        return Ok(ExitCode::SUCCESS);
    }
    let sent = &reply.body;
    println!("event {} `{}` stored; {} waiting run(s) woken", sent.event_id, args.name, sent.woken);
    if !sent.started.is_empty() {
        let ids: Vec<String> = sent.started.iter().map(ToString::to_string).collect();
        println!("started {} run(s): {}", ids.len(), ids.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run id (`run_…`).
    run: String,
    /// Print the cancelled run as JSON, for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let id: RunId = args.run.parse()?;
    if let Some(client) = args.store.target(&args.daemon)? {
        match client.cancel(&id).await {
            Err(e) if args.store.fall_back(&e, &client) => {}
            Err(e) => return Err(e),
            Ok(reply) => {
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&reply.json)?);
                } else {
                    println!("{} {}", reply.body.run.run.id, reply.body.run.run.status);
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let store = args.store.open_store().await?;
    let run = store.cancel(&id, "cancelled by request (ferry cancel)", Micros::now()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "run": run }))?);
    } else {
        println!("{} {}", run.id, run.status);
    }
    Ok(ExitCode::SUCCESS)
}
