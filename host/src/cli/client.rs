//! A small typed client for the daemon's HTTP API (docs/API.md).
//!
//! Every call returns `anyhow::Result` with a message people can act on:
//! no daemon at the address, a refused token, or the API's own error
//! message with its HTTP status.

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::domain::{Deployment, DeploymentConfig, Entry, Run, RunId, RunStatus, Schedule};

/// Where `ferry serve` listens unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

/// The largest body `POST /v1/deployments` takes (docs/API.md, Limits).
pub const DEPLOY_BODY_LIMIT: u64 = crate::api::DEPLOY_BODY_LIMIT as u64;

/// Options of every command that talks to the daemon.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's address (`ferry serve`); a bearer token is taken from
    /// FERRY_TOKEN when set.
    #[arg(long, env = "FERRY_URL", default_value = DEFAULT_URL)]
    pub url: String,
}

impl DaemonArgs {
    /// A client for the daemon at `--url`, with the token in FERRY_TOKEN.
    pub fn client(&self) -> anyhow::Result<Client> {
        let token = std::env::var("FERRY_TOKEN").ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        Client::new(&self.url, token)
    }
}

/// No daemon answered at the address: nothing was sent. Commands that can
/// fall back to a local store look for this error.
#[derive(Debug)]
pub struct Unreachable {
    pub url: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no daemon answers at {}: start one with `ferry serve`, or point FERRY_URL at it", self.url)
    }
}

impl std::error::Error for Unreachable {}

/// An error the daemon answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// `not_found`, `conflict`, … (empty when the body had no error object).
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status == 401 {
            return f.write_str("the daemon refused the request: set FERRY_TOKEN to its token");
        }
        write!(f, "{} (HTTP {})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The error an answer with status `status` and body `body` stands for.
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default)]
            code: String,
            message: String,
        }
        if let Ok(Body { error }) = serde_json::from_slice::<Body>(body) {
            return Self { status, code: error.code, message: error.message };
        }
        let text = String::from_utf8_lossy(body);
        let text = super::format::one_line(text.trim(), 200);
        let message = match (status, text.is_empty()) {
            (413, _) => "the request is larger than the daemon accepts".to_owned(),
            (_, true) => format!(
                "the daemon answered {}",
                StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("an error")
            ),
            (_, false) => format!("the daemon answered: {text}"),
        };
        Self { status, code: String::new(), message }
    }
}

/// An answer: the JSON as the daemon sent it (what `--json` prints) and its
/// typed reading.
#[derive(Debug)]
pub struct Reply<T> {
    pub json: Value,
    pub body: T,
}

/// A deployment as `GET /v1/deployments` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentInfo {
    #[serde(flatten)]
    pub deployment: Deployment,
    /// Runs on this version by status (listings with `runs=true`).
    #[serde(default)]
    pub runs: Option<std::collections::BTreeMap<String, u64>>,
}

/// A run as the API shows it: the stored run, and why it waits in the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    #[serde(flatten)]
    pub run: Run,
    #[serde(default)]
    pub queue_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Deployed {
    pub deployment: Deployment,
    #[serde(default)]
    pub created: bool,
}

#[derive(Debug, Deserialize)]
pub struct DeploymentList {
    pub deployments: Vec<DeploymentInfo>,
}

#[derive(Debug, Deserialize)]
pub struct OneDeployment {
    pub deployment: Deployment,
}

#[derive(Debug, Deserialize)]
pub struct Started {
    pub run: RunInfo,
    #[serde(default)]
    pub existing: bool,
}

#[derive(Debug, Deserialize)]
pub struct RunList {
    pub runs: Vec<RunInfo>,
    #[serde(default)]
    pub next: Option<RunId>,
}

#[derive(Debug, Deserialize)]
pub struct RunDetail {
    pub run: RunInfo,
    pub journal: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub struct OneRun {
    pub run: RunInfo,
}

#[derive(Debug, Deserialize)]
pub struct EventSent {
    pub event_id: i64,
    #[serde(default)]
    pub woken: u64,
    #[serde(default)]
    pub started: Vec<RunId>,
}

#[derive(Debug, Deserialize)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

/// The body of `POST /v1/deployments`.
#[derive(Debug, Serialize)]
pub struct DeployRequest {
    pub name: String,
    pub component_base64: String,
    pub config: DeploymentConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleRequest>,
}

/// The `schedule` of a deployment.
#[derive(Debug, Serialize)]
pub struct ScheduleRequest {
    pub cron: String,
    pub timezone: String,
    pub input: Value,
}

/// The filters of `GET /v1/runs`.
#[derive(Debug, Default)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub workflow: Option<String>,
    pub before: Option<RunId>,
    pub limit: Option<u32>,
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

/// How long an ordinary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

impl Client {
    /// A client for the daemon at `base` (`http://127.0.0.1:7070`).
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = parse_base(base)?;
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        // A proxy configured for the internet must not swallow calls to a
        // daemon on this machine.
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        Ok(Self { base, token, http })
    }

    /// The daemon's address, as given.
    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `POST /v1/deployments`.
    pub async fn deploy(&self, request: &DeployRequest) -> anyhow::Result<Reply<Deployed>> {
        let body = serde_json::to_vec(request)?;
        self.call(Method::POST, &["v1", "deployments"], &[], Some(body), Duration::from_secs(600)).await
    }

    /// `GET /v1/deployments`.
    pub async fn deployments(&self) -> anyhow::Result<Reply<DeploymentList>> {
        self.call(Method::GET, &["v1", "deployments"], &[("runs", "true".to_owned())], None, CALL_TIMEOUT).await
    }

    /// `POST /v1/deployments/{name}/activate`.
    pub async fn activate(&self, name: &str, version: u32) -> anyhow::Result<Reply<OneDeployment>> {
        let body = json_body(&serde_json::json!({ "version": version }))?;
        self.call(Method::POST, &["v1", "deployments", name, "activate"], &[], Some(body), CALL_TIMEOUT).await
    }

    /// `POST /v1/runs`.
    pub async fn start_run(
        &self,
        workflow: &str,
        input: &Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Reply<Started>> {
        let mut body = serde_json::json!({ "workflow": workflow, "input": input });
        if let Some(key) = idempotency_key {
            body["idempotency_key"] = Value::from(key);
        }
        self.call(Method::POST, &["v1", "runs"], &[], Some(json_body(&body)?), CALL_TIMEOUT).await
    }

    /// `GET /v1/runs`.
    pub async fn runs(&self, query: &RunQuery) -> anyhow::Result<Reply<RunList>> {
        let mut pairs = Vec::new();
        if let Some(status) = query.status {
            pairs.push(("status", status.as_str().to_owned()));
        }
        if let Some(workflow) = &query.workflow {
            pairs.push(("workflow", workflow.clone()));
        }
        if let Some(before) = &query.before {
            pairs.push(("before", before.to_string()));
        }
        if let Some(limit) = query.limit {
            pairs.push(("limit", limit.to_string()));
        }
        self.call(Method::GET, &["v1", "runs"], &pairs, None, CALL_TIMEOUT).await
    }

    /// `GET /v1/runs/{id}`.
    pub async fn run(&self, id: &RunId) -> anyhow::Result<Reply<RunDetail>> {
        self.call(Method::GET, &["v1", "runs", &id.to_string()], &[], None, CALL_TIMEOUT).await
    }

    /// `POST /v1/runs/{id}/cancel`.
    pub async fn cancel(&self, id: &RunId) -> anyhow::Result<Reply<OneRun>> {
        self.call(Method::POST, &["v1", "runs", &id.to_string(), "cancel"], &[], Some(b"{}".to_vec()), CALL_TIMEOUT)
            .await
    }

    /// `POST /v1/runs/{id}/wait?timeout_ms=…`: the run once final, or as it
    /// is when `timeout` passes.
    pub async fn wait(&self, id: &RunId, timeout: Duration) -> anyhow::Result<Reply<OneRun>> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let path = ["v1", "runs", &id.to_string(), "wait"];
        self.call(Method::POST, &path, &[("timeout_ms", ms.to_string())], Some(b"{}".to_vec()), timeout + CALL_TIMEOUT)
            .await
    }

    /// `GET /v1/runs/{id}/export`: the run's recording.
    pub async fn export(&self, id: &RunId, with_components: bool) -> anyhow::Result<Reply<Value>> {
        let query = [("with_components", with_components.to_string())];
        self.call(Method::GET, &["v1", "runs", &id.to_string(), "export"], &query, None, CALL_TIMEOUT * 4).await
    }

    /// `POST /v1/runs/{id}/rerun`.
    pub async fn rerun(&self, id: &RunId, from: &str) -> anyhow::Result<Reply<Value>> {
        let body = json_body(&serde_json::json!({ "from": from }))?;
        self.call(Method::POST, &["v1", "runs", &id.to_string(), "rerun"], &[], Some(body), CALL_TIMEOUT).await
    }

    /// `POST /v1/events`.
    pub async fn send_event(&self, name: &str, data: &Value) -> anyhow::Result<Reply<EventSent>> {
        let body = json_body(&serde_json::json!({ "name": name, "data": data }))?;
        self.call(Method::POST, &["v1", "events"], &[], Some(body), CALL_TIMEOUT).await
    }

    /// `GET /v1/schedules`.
    pub async fn schedules(&self) -> anyhow::Result<Reply<ScheduleList>> {
        self.call(Method::GET, &["v1", "schedules"], &[], None, CALL_TIMEOUT).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> anyhow::Result<Reply<T>> {
        let url = endpoint(&self.base, segments, query);
        let mut request = self.http.request(method.clone(), url.clone()).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e, &method, &url))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.transport_error(e, &method, &url))?;
        if !(200..300).contains(&status) {
            return Err(ApiError::from_response(status, &bytes).into());
        }
        let json: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("the daemon's answer to {method} {} is not JSON", url.path()))?;
        let body = T::deserialize(&json)
            .with_context(|| format!("the daemon's answer to {method} {} is not what docs/API.md says", url.path()))?;
        Ok(Reply { json, body })
    }

    fn transport_error(&self, e: reqwest::Error, method: &Method, url: &Url) -> anyhow::Error {
        if e.is_connect() {
            anyhow::Error::new(Unreachable { url: self.url().to_owned() })
        } else if e.is_timeout() {
            anyhow::anyhow!("the daemon at {} did not answer {method} {} in time", self.url(), url.path())
        } else {
            anyhow::Error::new(e).context(format!("{method} {} at {} failed", url.path(), self.url()))
        }
    }
}

/// Whether `err` says no daemon answered (nothing was sent).
pub fn is_unreachable(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Unreachable>().is_some()
}

fn json_body(value: &Value) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// Reads a daemon address: `http(s)://host[:port][/prefix]`; a bare
/// `host:port` means `http://host:port`.
pub fn parse_base(text: &str) -> anyhow::Result<Url> {
    let text = text.trim();
    let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
    let url = Url::parse(&with_scheme).map_err(|e| anyhow::anyhow!("`{text}` is not a daemon address ({e})"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "http" | "https") && url.host().is_some(),
        "`{text}` is not a daemon address (expected http://HOST:PORT)"
    );
    anyhow::ensure!(url.query().is_none() && url.fragment().is_none(), "the daemon address `{text}` has a query");
    Ok(url)
}

/// `base` + the path segments (each percent-encoded) + the query.
pub fn endpoint(base: &Url, segments: &[&str], query: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    url
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(base: &str, segments: &[&str], query: &[(&str, String)]) -> String {
        endpoint(&parse_base(base).unwrap(), segments, query).to_string()
    }

    #[test]
    fn urls_join_with_and_without_slashes() {
        assert_eq!(join("http://127.0.0.1:7070", &["v1", "runs"], &[]), "http://127.0.0.1:7070/v1/runs");
        assert_eq!(join("http://127.0.0.1:7070/", &["v1", "runs"], &[]), "http://127.0.0.1:7070/v1/runs");
        assert_eq!(join("https://ops.example/ferry/", &["v1", "runs"], &[]), "https://ops.example/ferry/v1/runs");
        assert_eq!(join("https://ops.example/ferry", &["v1", "runs"], &[]), "https://ops.example/ferry/v1/runs");
        assert_eq!(join("localhost:7070", &["healthz"], &[]), "http://localhost:7070/healthz");
        assert_eq!(
            join("http://h:1", &["v1", "deployments", "a b/c", "activate"], &[]),
            "http://h:1/v1/deployments/a%20b%2Fc/activate"
        );
        assert_eq!(
            join("http://h:1", &["v1", "runs"], &[("status", "failed".into()), ("workflow", "a&b".into())]),
            "http://h:1/v1/runs?status=failed&workflow=a%26b"
        );
        assert!(parse_base("ftp://h").is_err());
        assert!(parse_base("http://h/?x=1").is_err());
        assert!(is_loopback(&parse_base("http://127.0.0.1:7070").unwrap()));
        assert!(is_loopback(&parse_base("http://[::1]:7070").unwrap()));
        assert!(!is_loopback(&parse_base("http://ops.example").unwrap()));
    }

    #[test]
    fn api_errors_read_as_their_message() {
        let body = br#"{"error": {"code": "not_found", "message": "no run run_01J in the store"}}"#;
        let e = ApiError::from_response(404, body);
        assert_eq!(e.code, "not_found");
        assert_eq!(e.to_string(), "no run run_01J in the store (HTTP 404)");
        let e = ApiError::from_response(401, br#"{"error": {"code": "unauthorized", "message": "no token"}}"#);
        assert_eq!(e.to_string(), "the daemon refused the request: set FERRY_TOKEN to its token");
        assert_eq!(ApiError::from_response(401, b"").to_string(), e.to_string());
        assert_eq!(
            ApiError::from_response(502, b"Bad gateway\n").to_string(),
            "the daemon answered: Bad gateway (HTTP 502)"
        );
        assert_eq!(ApiError::from_response(503, b"").to_string(), "the daemon answered Service Unavailable (HTTP 503)");
        assert!(ApiError::from_response(413, b"").to_string().contains("larger than the daemon accepts"));
        let unreachable = anyhow::Error::new(Unreachable { url: DEFAULT_URL.into() });
        assert!(is_unreachable(&unreachable));
        assert_eq!(
            unreachable.to_string(),
            "no daemon answers at http://127.0.0.1:7070: start one with `ferry serve`, or point FERRY_URL at it"
        );
        assert!(!is_unreachable(&anyhow::Error::new(e)));
    }

    #[test]
    fn api_shapes_read_into_domain_types() {
        let run = serde_json::json!({
            "id": "run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K", "kind": "workflow", "component": "weekly-report",
            "component_hash": "ab".repeat(32), "input": "{}", "status": "queued", "output": null, "error": null,
            "idempotency_key": null, "created_at": 1, "started_at": null, "finished_at": null,
            "lease_owner": null, "lease_epoch": 0, "lease_expires_at": null, "wake_at": null,
            "waiting_on": null, "origin": null, "queue_reason": "concurrency limit 1 reached for key acme"
        });
        let list: RunList = serde_json::from_value(serde_json::json!({"runs": [run], "next": null})).unwrap();
        assert_eq!(list.runs[0].run.status, RunStatus::Queued);
        assert_eq!(list.runs[0].queue_reason.as_deref(), Some("concurrency limit 1 reached for key acme"));
        let deployment = serde_json::json!({
            "name": "weekly-report", "version": 3, "hash": "cd".repeat(32), "world": "workflow",
            "config": {"priority": 2}, "active": true, "created_at": 5, "runs": {"completed": 10, "failed": 2}
        });
        let list: DeploymentList = serde_json::from_value(serde_json::json!({"deployments": [deployment]})).unwrap();
        let runs = list.deployments[0].runs.clone().unwrap_or_default();
        assert_eq!((runs["completed"], runs["failed"]), (10, 2));
        assert_eq!(list.deployments[0].deployment.config.priority, 2);
    }
}
