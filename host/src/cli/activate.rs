//! `ferry activate NAME VERSION`: new runs take that version (a rollback is
//! activating an older one).

use std::process::ExitCode;

use super::client::DaemonArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deployment's name.
    name: String,
    /// The version new runs should take (`ferry deployments` lists them).
    #[arg(value_name = "VERSION")]
    number: u32,
    /// Print the daemon's answer as JSON, for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reply = args.daemon.client()?.activate(&args.name, args.number).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply.json)?);
    } else {
        let d = &reply.body.deployment;
        println!(
            "{} version {} is active (sha256:{}, {}): new runs take it; runs in flight keep theirs",
            d.name,
            d.version,
            d.hash.short(),
            d.world
        );
    }
    Ok(ExitCode::SUCCESS)
}
