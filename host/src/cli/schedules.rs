//! `ferry schedules`: the daemon's schedules and when they fire next.

use std::process::ExitCode;

use super::client::DaemonArgs;
use super::format::one_line;
use crate::domain::Schedule;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the daemon's answer as JSON, for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reply = args.daemon.client()?.schedules().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply.json)?);
    } else {
        print!("{}", render(&reply.body.schedules));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human table.
fn render(schedules: &[Schedule]) -> String {
    use std::fmt::Write;
    if schedules.is_empty() {
        return "no schedules (ferry deploy … --schedule \"CRON\")\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<20} {:<16} {:<18} {:<24} last fired",
        "name", "workflow", "cron", "timezone", "next fire"
    );
    for s in schedules {
        let last = s.last_fired_at.map_or_else(|| "never".to_owned(), |t| t.to_string());
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:<16} {:<18} {:<24} {last}",
            one_line(&s.name, 20),
            one_line(&s.workflow, 20),
            s.cron,
            s.timezone,
            s.next_fire_at.to_string()
        );
    }
    out
}
