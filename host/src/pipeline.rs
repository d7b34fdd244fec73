//! The reference pipeline (docs/PIPELINE.md): its components, how each is
//! deployed, and how a week is started. Shared by `ferry demo` and the
//! end-to-end tests, so both run exactly the pipeline the docs describe.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::cli::client::{Client, DeployRequest, ScheduleRequest};
use crate::domain::{DeploymentConfig, Limit, RateLimit, RunId};

/// The step components, in the order a report calls them
/// (`list-clients` belongs to the weekly batch).
pub const STEPS: [&str; 13] = [
    "list-clients",
    "refresh-tokens",
    "pull-meta",
    "pull-linkedin",
    "pull-ga4",
    "pull-search-console",
    "pull-mailchimp",
    "pull-warehouse",
    "transform-ads",
    "transform-web",
    "transform-crm",
    "render-pdf",
    "send-email",
];

/// The workflows: one report per client and week, and the batch that starts
/// them.
pub const WORKFLOWS: [&str; 2] = ["weekly-report", "weekly-batch"];

/// When the batch runs: Fridays at 21:00, Amsterdam time.
pub const CRON: &str = "0 21 * * FRI";
/// The schedule's time zone.
pub const TIMEZONE: &str = "Europe/Amsterdam";

/// Meta pulls started per second, across all clients: the upstream
/// rate-limits the agency's app as a whole.
pub const META_PULLS_PER_SECOND: u32 = 40;

/// How each component is deployed for an upstream at `upstream` (its base
/// URL): what it may reach, its limits, and the flow control of the
/// workflows.
pub fn config(name: &str, upstream: &url::Url) -> DeploymentConfig {
    let host = match (upstream.host_str(), upstream.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    };
    let mut config = DeploymentConfig::default();
    match name {
        "weekly-report" => {
            // One report per client at a time: a re-sent week waits for the
            // one in flight instead of racing it.
            config.concurrency = Some(Limit { limit: 1, key: Some("/client".into()) });
        }
        "weekly-batch" => {}
        step => {
            config.allow_hosts = vec![host];
            config.timeout_ms = Some(30_000);
            if step == "render-pdf" {
                config.fuel = Some(4_000_000_000);
                config.memory_bytes = Some(128 << 20);
            }
            if step == "pull-meta" {
                config.rate = Some(RateLimit { limit: META_PULLS_PER_SECOND, period_ms: 1_000, key: None });
            }
        }
    }
    config
}

/// Deploys every component of the pipeline to the daemon behind `client`,
/// taking the `.wasm` files from `components` (name → path), and schedules
/// the weekly batch. Returns how many deployments were new.
pub async fn deploy(client: &Client, components: &HashMap<String, PathBuf>, upstream: &str) -> anyhow::Result<usize> {
    let upstream_url = url::Url::parse(upstream).with_context(|| format!("`{upstream}` is not a URL"))?;
    let mut created = 0;
    for name in STEPS.iter().chain(WORKFLOWS.iter()) {
        let path = components.get(*name).with_context(|| {
            format!("the steps workspace built no `{name}` component (is steps/pipeline/{name} missing?)")
        })?;
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let schedule = (*name == "weekly-batch").then(|| ScheduleRequest {
            cron: CRON.into(),
            timezone: TIMEZONE.into(),
            input: json!({ "base_url": upstream }),
        });
        let request = DeployRequest {
            name: (*name).to_owned(),
            component_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
            config: config(name, &upstream_url),
            schedule,
        };
        let reply = client.deploy(&request).await.with_context(|| format!("cannot deploy `{name}`"))?;
        created += usize::from(reply.body.created);
    }
    Ok(created)
}

/// Starts the batch of `week` (`2026-W49`) as the schedule would, once per
/// week: a second start of the same week returns the first run.
pub async fn start_week(client: &Client, upstream: &str, week: &str) -> anyhow::Result<RunId> {
    let input = json!({ "base_url": upstream, "week": week });
    let key = format!("weekly-batch:{week}");
    let started =
        client.start_run("weekly-batch", &input, Some(&key)).await.context("cannot start the weekly batch")?;
    Ok(started.body.run.run.id)
}

/// The ISO week (`2026-W49`) of a moment.
pub fn iso_week(at: jiff::Timestamp) -> String {
    let date = at.to_zoned(jiff::tz::TimeZone::UTC).date();
    let week = date.iso_week_date();
    format!("{:04}-W{:02}", week.year(), week.week())
}

/// Why a step attempt failed, in a few words, for "retries by cause":
/// the HTTP status its message carries when it has one, else its kind.
pub fn retry_cause(kind: &str, message: &str) -> String {
    if let Some(rest) = message.split("HTTP ").nth(1) {
        let status: String = rest.chars().take_while(char::is_ascii_digit).collect();
        match status.as_str() {
            "429" => return "rate limited (HTTP 429)".into(),
            s if s.starts_with('5') && s.len() == 3 => return format!("upstream error (HTTP {s})"),
            s if s.len() == 3 => return format!("HTTP {s}"),
            _ => {}
        }
    }
    if message.contains("malformed") {
        return "malformed response".into();
    }
    match kind {
        "timeout" => "deadline passed".into(),
        "trap" => "crash".into(),
        other => other.to_owned(),
    }
}

/// The output of a finished report run, as the workflow returns it.
pub fn report_output(output: Option<&str>) -> Option<Value> {
    output.and_then(|o| serde_json::from_str(o).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_are_iso_weeks() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(iso_week(at("2026-12-04T20:00:00Z")), "2026-W49");
        // 1 January 2027 is a Friday: it belongs to the last week of 2026.
        assert_eq!(iso_week(at("2027-01-01T12:00:00Z")), "2026-W53");
        assert_eq!(iso_week(at("2024-12-30T00:00:00Z")), "2025-W01");
    }

    #[test]
    fn causes_read_the_status() {
        assert_eq!(retry_cause("retryable", "HTTP 429 from http://x (retry-after: 1)"), "rate limited (HTTP 429)");
        assert_eq!(retry_cause("retryable", "page 2: HTTP 504 from http://x"), "upstream error (HTTP 504)");
        assert_eq!(retry_cause("retryable", "page 3 of ga4 is malformed: EOF"), "malformed response");
        assert_eq!(retry_cause("timeout", "ran past its deadline"), "deadline passed");
        assert_eq!(retry_cause("retryable", "connection refused"), "retryable");
    }

    #[test]
    fn steps_may_reach_only_the_upstream_and_reports_are_one_per_client() {
        let up = url::Url::parse("http://127.0.0.1:4567").unwrap();
        assert_eq!(config("pull-ga4", &up).allow_hosts, vec!["127.0.0.1:4567".to_owned()]);
        assert!(config("weekly-report", &up).allow_hosts.is_empty());
        assert_eq!(config("weekly-report", &up).concurrency, Some(Limit { limit: 1, key: Some("/client".into()) }));
        assert!(config("pull-meta", &up).rate.is_some());
    }
}
