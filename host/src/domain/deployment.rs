//! Deployments, their settings, and schedules.

use serde::{Deserialize, Serialize};

use super::{ComponentHash, Micros, World};

/// A version of a named component. `ferry deploy` makes a new version; the
/// active version is what new runs (and step calls) of the name take; runs
/// already started stay on the component they started with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    /// 1, 2, … per name.
    pub version: u32,
    pub hash: ComponentHash,
    pub world: World,
    pub config: DeploymentConfig,
    /// Whether new runs take this version.
    pub active: bool,
    pub created_at: Micros,
}

/// What a deployment declares besides its component.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Hosts its steps may reach over HTTP (steps only).
    pub allow_hosts: Vec<String>,
    /// Fuel budget per attempt.
    pub fuel: Option<u64>,
    /// Memory cap per attempt, in bytes.
    pub memory_bytes: Option<u64>,
    /// Wall-clock deadline per attempt, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Workflows: event names that start a run (the event's data is the input).
    pub on_events: Vec<String>,
    /// Workflows: at most this many runs in progress (running or waiting)
    /// at once per key.
    pub concurrency: Option<Limit>,
    /// Workflows: at most `limit` runs started per `period_ms` per key.
    pub rate: Option<RateLimit>,
    /// Workflows: higher goes first when runs wait in the queue.
    pub priority: i32,
}

/// A concurrency limit, per key taken from the run's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub limit: u32,
    /// A JSON pointer into the input (`/client`); none: one key for all runs.
    #[serde(default)]
    pub key: Option<String>,
}

/// A rate limit, per key taken from the run's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub limit: u32,
    pub period_ms: u64,
    #[serde(default)]
    pub key: Option<String>,
}

/// Flow-control settings a run carries from its deployment, with the keys
/// already taken from its input.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// `(key, limit)`: runs of the same component and key in progress at once.
    pub concurrency: Option<(String, u32)>,
    /// `(key, limit, period µs)`: runs of the same component and key started
    /// per period.
    pub rate: Option<(String, u32, i64)>,
    pub priority: i32,
}

impl DeploymentConfig {
    /// The flow settings of a run of this deployment on `input`.
    pub fn flow_for(&self, input: &serde_json::Value) -> Flow {
        let key_of = |pointer: &Option<String>| match pointer {
            None => String::new(),
            Some(p) => match input.pointer(p) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            },
        };
        Flow {
            concurrency: self.concurrency.as_ref().map(|c| (key_of(&c.key), c.limit.max(1))),
            rate: self.rate.as_ref().map(|r| {
                (key_of(&r.key), r.limit.max(1), i64::try_from(r.period_ms.saturating_mul(1000)).unwrap_or(i64::MAX))
            }),
            priority: self.priority,
        }
    }
}

/// A cron schedule that starts runs of a workflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// The workflow deployment it starts.
    pub workflow: String,
    /// Five-field cron expression (`0 21 * * FRI`).
    pub cron: String,
    /// IANA time zone the expression is read in (`Europe/Amsterdam`).
    pub timezone: String,
    /// The input of every run it starts (JSON text).
    pub input: String,
    /// The next tick that has not fired yet.
    pub next_fire_at: Micros,
    /// The last tick that fired, if any.
    pub last_fired_at: Option<Micros>,
    pub created_at: Micros,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_keys_come_from_the_input() {
        let config = DeploymentConfig {
            concurrency: Some(Limit { limit: 1, key: Some("/client".into()) }),
            rate: Some(RateLimit { limit: 5, period_ms: 60_000, key: None }),
            ..Default::default()
        };
        let flow = config.flow_for(&serde_json::json!({"client": "acme", "n": 1}));
        assert_eq!(flow.concurrency, Some(("acme".to_owned(), 1)));
        assert_eq!(flow.rate, Some((String::new(), 5, 60_000_000)));
        let flow = config.flow_for(&serde_json::json!({"n": 1}));
        assert_eq!(flow.concurrency, Some((String::new(), 1)));
        assert!(serde_json::from_str::<DeploymentConfig>(r#"{"allow_hosts": [], "bogus": 1}"#).is_err());
    }
}
