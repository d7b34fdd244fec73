//! `ferry deploy FILE.wasm --name NAME`: a component to the daemon, as a
//! new version of NAME.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;

use super::client::{DEPLOY_BODY_LIMIT, DaemonArgs, DeployRequest, ScheduleRequest};
use super::exec::read_input;
use super::format::{bytes, parse_bytes, parse_duration};
use crate::domain::{DeploymentConfig, Limit, RateLimit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (a `.wasm` file: a step or a workflow).
    file: PathBuf,
    /// The deployment's name: runs and step calls name it.
    #[arg(long)]
    name: String,
    /// Steps: a host the step may reach over HTTP (repeatable):
    /// `api.example.com`, `127.0.0.1:8080`, `*.example.com`.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Fuel budget per attempt (about one unit per wasm instruction).
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory cap per attempt, e.g. `64MiB`.
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// Wall-clock deadline per attempt, e.g. `30s`.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Workflows: an event whose data starts a run (repeatable).
    #[arg(long = "on-event", value_name = "EVENT")]
    on_events: Vec<String>,
    /// Workflows: at most this many runs in progress at once (per key).
    #[arg(long, value_name = "N")]
    concurrency: Option<u32>,
    /// The JSON pointer into the input that keys `--concurrency` (`/client`).
    #[arg(long, value_name = "POINTER", requires = "concurrency")]
    concurrency_key: Option<String>,
    /// At most N starts per period (per key): `10/1m`, `5/s`. Workflows:
    /// runs started; steps: attempts started by workflows' step calls,
    /// across all runs and hosts (an API's rate limit, say).
    #[arg(long, value_name = "N/PERIOD", value_parser = parse_rate)]
    rate: Option<(u32, u64)>,
    /// The JSON pointer into the input that keys `--rate` (`/client`).
    #[arg(long, value_name = "POINTER", requires = "rate")]
    rate_key: Option<String>,
    /// Workflows: higher goes first when runs wait in the queue.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Workflows: start a run on this five-field cron expression
    /// (`0 21 * * FRI`); creates or replaces the schedule named NAME.
    #[arg(long, value_name = "CRON")]
    schedule: Option<String>,
    /// The IANA time zone the schedule is read in [default: UTC].
    #[arg(long, value_name = "TZ", requires = "schedule")]
    timezone: Option<String>,
    /// The input of the scheduled runs: JSON, `@FILE`, or `-` for standard
    /// input [default: null].
    #[arg(long, value_name = "JSON", requires = "schedule")]
    schedule_input: Option<String>,
    /// Print the daemon's answer as JSON, for programs.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = args.daemon.client()?;
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read the component {}", args.file.display()))?
        .len();
    check_size(size)?;
    let component =
        std::fs::read(&args.file).with_context(|| format!("cannot read the component {}", args.file.display()))?;
    let schedule = match &args.schedule {
        None => None,
        Some(cron) => {
            let input = match &args.schedule_input {
                None => serde_json::Value::Null,
                Some(arg) => serde_json::from_str(&read_input(arg)?)
                    .map_err(|e| anyhow::anyhow!("--schedule-input is not valid JSON: {e}"))?,
            };
            let timezone = args.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
            Some(ScheduleRequest { cron: cron.clone(), timezone, input })
        }
    };
    let config = DeploymentConfig {
        allow_hosts: args.allow_hosts.clone(),
        fuel: args.fuel,
        memory_bytes: args.memory,
        timeout_ms: args.timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
        on_events: args.on_events.clone(),
        concurrency: args.concurrency.map(|limit| Limit { limit, key: args.concurrency_key.clone() }),
        rate: args.rate.map(|(limit, period_ms)| RateLimit { limit, period_ms, key: args.rate_key.clone() }),
        priority: args.priority.unwrap_or(0),
    };
    let request = DeployRequest {
        name: args.name.clone(),
        component_base64: base64::engine::general_purpose::STANDARD.encode(&component),
        config,
        schedule,
    };
    drop(component);
    let reply = client.deploy(&request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply.json)?);
        return Ok(ExitCode::SUCCESS);
    }
    let d = &reply.body.deployment;
    if reply.body.created {
        println!("deployed {} version {} (sha256:{}, {})", d.name, d.version, d.hash.short(), d.world);
    } else {
        println!("{} is already deployed as version {} (nothing changed)", d.name, d.version);
    }
    if let Some(cron) = &args.schedule {
        let tz = args.timezone.as_deref().unwrap_or("UTC");
        println!("schedule {} runs it on `{cron}` ({tz}); see `ferry schedules`", d.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses a component the daemon would refuse for its size: at most
/// [`crate::api::COMPONENT_LIMIT`], carried base64-encoded (4 bytes per 3)
/// in a body of at most [`DEPLOY_BODY_LIMIT`].
fn check_size(size: u64) -> anyhow::Result<()> {
    let component_limit = crate::api::COMPONENT_LIMIT as u64;
    anyhow::ensure!(
        size <= component_limit,
        "the component is {}: the daemon takes components of at most {}",
        bytes(size),
        bytes(component_limit)
    );
    let encoded = size.div_ceil(3) * 4;
    // Room for the name, config and schedule around the component.
    anyhow::ensure!(
        encoded + 64 * 1024 <= DEPLOY_BODY_LIMIT,
        "the component is {}: base64-encoded it makes a request of {}, over the daemon's {} limit \
         (components up to about {} can be deployed)",
        bytes(size),
        bytes(encoded),
        bytes(DEPLOY_BODY_LIMIT),
        bytes((DEPLOY_BODY_LIMIT - 64 * 1024) / 4 * 3)
    );
    Ok(())
}

/// Parses a rate `N/PERIOD`: `10/1m`, `5/s`, `100/30s`, `1/500ms` into
/// `(limit, period in milliseconds)`.
pub fn parse_rate(s: &str) -> Result<(u32, u64), String> {
    let bad = || format!("`{s}` is not a rate (try 10/1m: at most 10 runs a minute)");
    let (n, period) = s.trim().split_once('/').ok_or_else(bad)?;
    let limit: u32 = n.trim().parse().map_err(|_| bad())?;
    if limit == 0 {
        return Err(format!("`{s}`: the rate must allow at least one run per period"));
    }
    let period = period.trim();
    // `10/m` reads as `10/1m`.
    let period =
        if period.starts_with(|c: char| c.is_ascii_alphabetic()) { format!("1{period}") } else { period.to_owned() };
    let period = parse_duration(&period)?;
    let ms = u64::try_from(period.as_millis()).map_err(|_| format!("`{s}`: the period is too long"))?;
    if ms == 0 {
        return Err(format!("`{s}`: the period must be at least 1ms"));
    }
    Ok((limit, ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("10/1m"), Ok((10, 60_000)));
        assert_eq!(parse_rate("10/m"), Ok((10, 60_000)));
        assert_eq!(parse_rate("5/s"), Ok((5, 1_000)));
        assert_eq!(parse_rate("100/30s"), Ok((100, 30_000)));
        assert_eq!(parse_rate("1/500ms"), Ok((1, 500)));
        assert_eq!(parse_rate(" 2 / 1h "), Ok((2, 3_600_000)));
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("0/1m").is_err());
        assert!(parse_rate("ten/1m").is_err());
        assert!(parse_rate("10/0s").is_err());
        assert!(parse_rate("10/1fortnight").is_err());
    }

    #[test]
    fn sizes_are_checked_before_sending() {
        assert!(check_size(1 << 20).is_ok());
        assert!(check_size(40 << 20).is_ok());
        let too_big = check_size(65 << 20).unwrap_err().to_string();
        assert!(too_big.contains("at most 64.0 MiB"), "{too_big}");
        assert!(check_size(64 << 20).is_ok(), "the largest component fits its encoded body");
    }
}
