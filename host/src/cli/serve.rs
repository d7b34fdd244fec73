//! `ferry serve`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::StoreArgs;
use super::format::parse_duration;
use crate::engine::Secrets;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. A non-loopback address needs an API token.
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// A file holding the API token (default: the FERRY_TOKEN variable).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Runs executed at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long a claimed run stays this daemon's without a heartbeat.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    lease_ttl: std::time::Duration,
    /// On shutdown, how long runs in flight may take to finish.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    grace: std::time::Duration,
    /// Call each step only once every entry before it is durable, instead
    /// of running ahead of the commits (slower; the same guarantees as seen
    /// from outside the run: docs/DECISIONS.md).
    #[arg(long)]
    no_run_ahead: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("FERRY_TOKEN").ok().filter(|t| !t.is_empty()),
    };
    let store = args.store.open_store().await?;
    let engine = args.store.engine()?;
    let owner = format!("serve-{}-{}", args.listen, std::process::id());
    let ttl = args.lease_ttl.max(std::time::Duration::from_millis(500));
    let worker = crate::workflow::WorkerConfig {
        max_runs: args.concurrency.max(1),
        lease_ttl: ttl,
        heartbeat: (ttl / 4).min(std::time::Duration::from_secs(2)),
        policy: crate::workflow::RunPolicy { run_ahead: !args.no_run_ahead, ..Default::default() },
        ..crate::daemon::default_worker(owner)
    };
    let config = crate::daemon::Config { listen: args.listen, token, grace: args.grace, worker };
    crate::daemon::serve(config, store, engine, Secrets::from_env(), shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
