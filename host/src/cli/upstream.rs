//! `ferry upstream`: serves the fake of the reference pipeline's upstream
//! APIs (docs/PIPELINE.md) until SIGTERM or SIGINT.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::upstream::{Config, Profile, Upstream};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seeds the fault decisions: a seed replays the same faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many faults to inject.
    #[arg(long, value_enum, default_value_t = Profile::Default)]
    faults: Profile,
    /// Clients c01…cN.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::upstream::data::MAX_CLIENTS)))]
    clients: u32,
    /// Also write every accepted email's attachment to DIR/<client>-<week>.pdf.
    #[arg(long, value_name = "DIR")]
    outbox: Option<PathBuf>,
    /// Meta's global rate limit in requests per second, over the profile's
    /// (0 turns it off).
    #[arg(long, value_name = "PER_SEC")]
    rate: Option<u32>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Listen for signals before saying where we listen: a caller may send
    // SIGTERM as soon as it has read the first line.
    let stop = Stop::install()?;
    let config = Config {
        seed: args.seed,
        faults: args.faults,
        clients: args.clients,
        outbox: args.outbox,
        meta_rate_per_sec: args.rate,
    };
    let upstream = Upstream::start_on(config, args.port).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "upstream listening on {}", upstream.url())?;
        out.flush()?;
    }
    eprintln!(
        "ferry upstream: {} clients, faults {}, seed {} (Ctrl-C or SIGTERM stops it)",
        args.clients, args.faults, args.seed
    );
    stop.wait().await;
    let stats = upstream.stats();
    upstream.shutdown().await;
    eprintln!(
        "ferry upstream: stopped after {} requests, {} emails, {} duplicate sends",
        stats.requests, stats.emails, stats.duplicates
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM, listened for from `install` on.
struct Stop {
    #[cfg(unix)]
    signals: (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
}

impl Stop {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self { signals: (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?) })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
    async fn wait(mut self) {
        #[cfg(unix)]
        {
            let (int, term) = &mut self.signals;
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
