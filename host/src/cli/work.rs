//! `ferry work`: execute the store's ready runs (resume what a crashed
//! process left behind, wake sleepers, deliver events).

use std::process::ExitCode;

use super::{StoreArgs, WorkerArgs};
use crate::domain::Limits;
use crate::engine::Secrets;
use crate::exec::Host;
use crate::workflow::Until;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop once nothing is running, ready or due (runs waiting only for an
    /// event do not count). Without it, run until interrupted.
    #[arg(long)]
    until_idle: bool,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open_store().await?;
    let host = Host::new(store, args.store.engine()?, Secrets::from_env());
    let worker = args.worker.worker(&host, Limits::default())?;
    if args.until_idle {
        worker.run(Until::Idle).await?;
        eprintln!("idle: no run is ready or due");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("working on {} (Ctrl-C to stop; runs in flight resume on the next start)", args.store.db());
    tokio::select! {
        r = worker.run(Until::Forever) => r?,
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
    }
    Ok(ExitCode::SUCCESS)
}
