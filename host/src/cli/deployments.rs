//! `ferry deployments`: every version of every deployment on the daemon.

use std::process::ExitCode;

use super::client::{DaemonArgs, DeploymentInfo};
use super::format::one_line;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the daemon's answer as JSON, for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reply = args.daemon.client()?.deployments().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply.json)?);
    } else {
        print!("{}", render(&reply.body.deployments));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human table; `*` marks the version new runs take.
fn render(deployments: &[DeploymentInfo]) -> String {
    use std::fmt::Write;
    if deployments.is_empty() {
        return "no deployments (ferry deploy FILE.wasm --name NAME)\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>7} {:<6} {:<8} {:<12} {:>6}  created",
        "name", "version", "active", "world", "hash", "runs"
    );
    for info in deployments {
        let d = &info.deployment;
        let runs =
            info.runs.as_ref().map_or_else(|| "-".to_owned(), |by_status| by_status.values().sum::<u64>().to_string());
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:<6} {:<8} {:<12} {runs:>6}  {}",
            one_line(&d.name, 24),
            d.version,
            if d.active { "*" } else { "" },
            d.world.as_str(),
            d.hash.short(),
            d.created_at
        );
    }
    out
}
