//! `/v1/runs`: create, list (by filter or idempotency key), show, cancel,
//! wait, rerun from a step, retry, export, replay.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, ApiQuery, AppState};
use crate::domain::{Micros, NewRun, Run, RunId, RunStatus};
use crate::store::{Created, RunFilter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    workflow: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
}

pub async fn create(State(state): State<AppState>, ApiJson(req): ApiJson<CreateRun>) -> Result<Response, ApiError> {
    if let Some(key) = &req.idempotency_key
        && (key.is_empty() || key.len() > 256)
    {
        return Err(ApiError::bad_request("idempotency_key must be 1 to 256 characters"));
    }
    let run = start_run(&state, &req.workflow, &req.input, req.idempotency_key, None).await?;
    Ok(match run {
        Created::New(run) => (StatusCode::CREATED, Json(json!({ "run": run }))).into_response(),
        Created::Existing(run) => (StatusCode::OK, Json(json!({ "run": run, "existing": true }))).into_response(),
    })
}

/// Queues a run of the active version of deployment `name`.
pub async fn start_run(
    state: &AppState,
    name: &str,
    input: &Value,
    idempotency_key: Option<String>,
    origin: Option<String>,
) -> Result<Created, ApiError> {
    let d =
        state.store.deployment(name, None).await?.ok_or_else(|| {
            ApiError::not_found(format!("no deployment named `{name}`: deploy it first (ferry deploy)"))
        })?;
    let text = serde_json::to_string(input).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let run = NewRun {
        id: RunId::new(),
        kind: d.world,
        component: d.name.clone(),
        component_hash: d.hash.clone(),
        input: text,
        idempotency_key,
        created_at: Micros::now(),
        origin,
        flow: d.config.flow_for(input),
        held: false,
    };
    let created = match &state.worker {
        Some(worker) => worker.submit(run).await?,
        None => state.store.create_run(run).await?,
    };
    Ok(created)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    workflow: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
    /// Only the runs with exactly this idempotency key.
    key: Option<String>,
}

/// Lists runs, newest first, by filter or by idempotency key; each run
/// carries its step calls and retries, and a queued run held back by a
/// limit its `queue_reason`.
pub async fn list(State(state): State<AppState>, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<Value>, ApiError> {
    let status = q.status.as_deref().map(str::parse::<RunStatus>).transpose().map_err(ApiError::bad_request)?;
    let before =
        q.before.as_deref().map(str::parse::<RunId>).transpose().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let filter = RunFilter { status, component: q.workflow, before, limit };
    let runs = match &q.key {
        Some(key) if key.is_empty() || key.len() > 256 => {
            return Err(ApiError::bad_request("key must be 1 to 256 characters"));
        }
        Some(key) => state.store.runs_with_key(key, &filter).await?,
        None => state.store.list_runs(&filter).await?,
    };
    let ids: Vec<RunId> = runs.iter().map(|r| r.id).collect();
    let steps = state.store.run_steps(&ids).await?;
    let queued: Vec<RunId> = runs.iter().filter(|r| r.status == RunStatus::Queued).map(|r| r.id).collect();
    let reasons =
        if queued.is_empty() { Vec::new() } else { state.store.queue_reasons(&queued, Micros::now()).await? };
    let next = (runs.len() as u32 == limit).then(|| runs.last().map(|r| r.id)).flatten();
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Some((_, why)) = reasons.iter().find(|(id, _)| *id == r.id) {
                v["queue_reason"] = Value::String(why.clone());
            }
            let counted = steps.iter().find(|s| s.run_id == r.id);
            v["steps"] = json!(counted.map_or(0, |s| s.steps));
            v["retries"] = json!(counted.map_or(0, |s| s.retries));
            v
        })
        .collect();
    Ok(Json(json!({ "runs": runs, "next": next })))
}

fn parse_id(id: &str) -> Result<RunId, ApiError> {
    id.parse().map_err(|e: crate::domain::ParseIdError| ApiError::bad_request(e.to_string()))
}

async fn get_run(state: &AppState, id: &RunId) -> Result<Run, ApiError> {
    state.store.run(id).await?.ok_or_else(|| ApiError::not_found(format!("no run {id}")))
}

pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let run = get_run(&state, &id).await?;
    let journal = state.store.journal(&id).await?;
    Ok(Json(json!({ "run": run, "journal": journal })))
}

pub async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let run = state.store.cancel(&id, "cancelled by request (API)", Micros::now()).await?;
    Ok(Json(json!({ "run": run })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    timeout_ms: Option<u64>,
}

/// Answers once the run is final, or when the timeout (at most 60 s) passes.
pub async fn wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000).min(60_000));
    let deadline = tokio::time::Instant::now() + timeout;
    // Subscribed before the first look, so a run that ends right after it
    // is still announced.
    let mut ended = state.ended.as_ref().map(tokio::sync::broadcast::Sender::subscribe);
    loop {
        let run = get_run(&state, &id).await?;
        if run.status.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(json!({ "run": run })));
        }
        // Look again when this run's execution here ends, or after 25 ms
        // at the latest (another host may be executing it).
        let poll = tokio::time::sleep(Duration::from_millis(25));
        tokio::pin!(poll);
        loop {
            let Some(rx) = ended.as_mut() else {
                poll.as_mut().await;
                break;
            };
            tokio::select! {
                () = poll.as_mut() => break,
                got = rx.recv() => match got {
                    Ok(other) if other != id => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => ended = None,
                    // Ours, or so many ended that ours may be among them.
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                },
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    from: String,
    /// Another version of the workflow to run it on (base64 component).
    #[serde(default)]
    component_base64: Option<String>,
}

/// Starts the rerun of a run from one of its step calls; the daemon's
/// workers execute it. Steps resolve to their active deployments, so to
/// rerun on a fixed step, deploy the fix first.
pub async fn rerun(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RerunRequest>,
) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let id = parse_id(&id)?;
    let original = get_run(&state, &id).await?;
    let component = match &req.component_base64 {
        None => None,
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| ApiError::bad_request(format!("component_base64 is not base64: {e}")))?;
            let loaded = state.engine.load(&bytes).await.map_err(|e| ApiError::unprocessable(e.to_string()))?;
            if loaded.world != original.kind {
                return Err(ApiError::unprocessable(format!(
                    "the component is a {}; the run is a {}",
                    loaded.world, original.kind
                )));
            }
            let c = crate::store::Component {
                hash: loaded.hash.clone(),
                world: loaded.world,
                bytes,
                created_at: Micros::now(),
            };
            state.store.put_component(&c).await?;
            Some(loaded.hash.clone())
        }
    };
    let owner = format!("api-{}", std::process::id());
    match crate::workflow::start_rerun(state.store.as_ref(), &owner, &id, &req.from, component).await {
        Ok((run, kept)) => {
            state.runs_ready();
            Ok((StatusCode::CREATED, Json(json!({ "run": run, "rerun_of": id, "kept_entries": kept }))).into_response())
        }
        Err(crate::workflow::RerunError::Store(e)) => Err(e.into()),
        Err(e @ crate::workflow::RerunError::NoRun(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Run on the active version of the deployment rather than on the
    /// version the run ran on.
    #[serde(default)]
    active: bool,
}

/// Retries a failed or cancelled run: a new run of the same deployment
/// with the same input, on the version the run ran on (or the active one),
/// with the flow control of that version. The original stays as it is; its
/// idempotency key is not reused. The body is optional.
pub async fn retry(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let req: RetryRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RetryRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a retry request: {e}")))?
    };
    let original = get_run(&state, &id).await?;
    if !matches!(original.status, RunStatus::Failed | RunStatus::Cancelled) {
        return Err(ApiError::conflict(format!(
            "run {id} is {}: only a failed or cancelled run can be retried",
            original.status
        )));
    }
    let versions: Vec<_> =
        state.store.deployments().await?.into_iter().filter(|d| d.name == original.component).collect();
    let (hash, config) = if req.active {
        let d = versions.iter().find(|d| d.active).ok_or_else(|| {
            ApiError::not_found(format!("no active deployment named `{}` to retry on", original.component))
        })?;
        if d.world != original.kind {
            return Err(ApiError::unprocessable(format!(
                "the active `{}` is a {}; the run is a {}",
                d.name, d.world, original.kind
            )));
        }
        (d.hash.clone(), d.config.clone())
    } else {
        // The newest version with the run's component, else the active one's settings.
        let config = versions
            .iter()
            .filter(|d| d.hash == original.component_hash)
            .max_by_key(|d| d.version)
            .or_else(|| versions.iter().find(|d| d.active))
            .map(|d| d.config.clone())
            .unwrap_or_default();
        (original.component_hash.clone(), config)
    };
    let input: Value = serde_json::from_str(&original.input).unwrap_or(Value::Null);
    let run = NewRun {
        id: RunId::new(),
        kind: original.kind,
        component: original.component.clone(),
        component_hash: hash,
        input: original.input.clone(),
        idempotency_key: None,
        created_at: Micros::now(),
        origin: Some(format!("retry of {id}")),
        flow: config.flow_for(&input),
        held: false,
    };
    let run = state.store.create_run(run).await?.run().clone();
    state.runs_ready();
    Ok((StatusCode::CREATED, Json(json!({ "run": run, "retry_of": id }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    with_components: bool,
}

/// The run's recording as `ferry export` writes it.
pub async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Json<crate::replay::Export>, ApiError> {
    let id = parse_id(&id)?;
    let (rec, worlds) = crate::replay::load_recording(state.store.as_ref(), &id).await?;
    Ok(Json(crate::replay::Export::new(&rec, &worlds, q.with_components)))
}

/// Most replays (`POST /v1/runs/{id}/replay`) running at once; more are
/// refused with `503` rather than queued.
pub const REPLAY_SLOTS: usize = 2;
/// How long a replay may take before it is stopped.
pub const REPLAY_TIME_LIMIT: Duration = Duration::from_secs(60);

/// The replay slots of this process (one daemon, one API).
static REPLAYS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(REPLAY_SLOTS);

/// `POST /v1/runs/{id}/replay`: re-executes the run's recording on this
/// daemon's engine with the offline [`crate::replay::Replayer`], as `ferry
/// replay` does: every host call is answered from the journal, nothing is
/// sent over the network and nothing is written to the store (the replayer
/// has no handle to either). A run not final yet is replayed as far as it
/// is recorded (the verdict is `ended-early`). Any request body is ignored.
pub async fn replay(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    // Cheap checks first: an unknown run is a 404 even when the slots are taken.
    get_run(&state, &id).await?;
    let Ok(_slot) = REPLAYS.try_acquire() else {
        let mut resp = ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "{REPLAY_SLOTS} replays are running on this daemon already: try again when one has finished, \
                 or replay locally with `ferry replay {id}`"
            ),
        }
        .into_response();
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        return Ok(resp);
    };
    let (rec, _) = crate::replay::load_recording(state.store.as_ref(), &id).await?;
    let replayer = crate::replay::Replayer::new(
        state.engine.clone(),
        // The secrets `ferry serve` gives its workers (FERRY_SECRET_*): a
        // step that read one gets it again only when its hash matches the
        // journal's.
        crate::engine::Secrets::from_env(),
        std::collections::HashMap::new(),
    );
    let started = std::time::Instant::now();
    let report = match tokio::time::timeout(REPLAY_TIME_LIMIT, replayer.replay(&rec)).await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return Err(ApiError::unprocessable(format!("run {id} cannot be replayed: {e}"))),
        Err(_) => {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "the replay of run {id} did not finish within {} s and was stopped; \
                     replay it with `ferry replay {id}`, which has no time limit",
                    REPLAY_TIME_LIMIT.as_secs()
                ),
            });
        }
    };
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    Ok(Json(replay_answer(&rec.run, rec.journal.len(), &report, duration_us)).into_response())
}

/// The answer of `POST /v1/runs/{id}/replay`: `ferry replay --json`'s
/// document (`run_id`, `identical`, `report`) with the verdict, the counts
/// and the time it took.
fn replay_answer(run: &Run, journal_entries: usize, report: &crate::replay::Report, duration_us: u64) -> Value {
    use crate::replay::Verdict;
    // A run still going ends early even when the replayer has no more to
    // say (a step run between attempts).
    let ended_early = report.ended_early.clone().or_else(|| {
        (!run.status.is_final()).then(|| {
            format!("the run was recorded while {}: everything up to the end of its journal matched", run.status)
        })
    });
    let verdict = if report.divergence.is_some() {
        "diverged"
    } else if ended_early.is_some() {
        "ended-early"
    } else {
        "identical"
    };
    let matched = report.lines.iter().filter(|l| l.verdict == Verdict::Matched).count();
    json!({
        "run_id": run.id,
        "status": run.status,
        "verdict": verdict,
        "identical": report.identical(),
        "entries_checked": report.lines.len(),
        "entries_matched": matched,
        "journal_entries": journal_entries,
        "duration_us": duration_us,
        "divergence": report.divergence,
        "ended_early": ended_early,
        "report": report,
    })
}

/// `GET /v1/blobs/{hash}`: the bytes a step stored with `put-blob`
/// (`hash` with or without the `sha256:` prefix), as a download.
pub async fn blob(State(state): State<AppState>, Path(hash): Path<String>) -> Result<Response, ApiError> {
    let reference = if hash.starts_with("sha256:") { hash.clone() } else { format!("sha256:{hash}") };
    let Some(hex) = crate::engine::blobs::parse_reference(&reference) else {
        return Err(ApiError::bad_request(format!(
            "`{}` is not a blob hash (64 lower-case hex digits, optionally after `sha256:`)",
            hash.chars().take(80).collect::<String>()
        )));
    };
    let bytes = state.store.blob(hex).await?.ok_or_else(|| ApiError::not_found(format!("no blob {reference}")))?;
    // Served as a download, never rendered by the browser: a blob is
    // whatever a step made of it.
    let content_type = if bytes.starts_with(b"%PDF-") { "application/pdf" } else { "application/octet-stream" };
    let extension = if bytes.starts_with(b"%PDF-") { "pdf" } else { "bin" };
    let disposition = format!("attachment; filename=\"{}.{extension}\"", &hex[..16]);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::{ComponentHash, DeploymentConfig, Limit, RunError, RunErrorKind, World};
    use crate::engine::{Engine, EngineConfig};
    use crate::store::{Component, Durability, Outcome};

    /// An API state on a fresh SQLite store, with deployment `report` at
    /// versions 1 and 2 (active), and a failed run of version 1.
    async fn state() -> (AppState, tempfile::TempDir, RunId, [ComponentHash; 2]) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ferry.db");
        let store = crate::store::sqlite::SqliteStore::open(path.to_str().expect("utf-8"), Durability::Buffered)
            .await
            .expect("open the store");
        let engine = Engine::new(EngineConfig { max_instances: 1, max_memory_bytes: 1 << 24, ..Default::default() })
            .expect("an engine");
        let state =
            AppState { store: Arc::new(store), engine: Arc::new(engine), token: None, worker: None, ended: None };
        let mut hashes = Vec::new();
        for n in [1u8, 2] {
            let bytes = vec![0, b'a', b's', b'm', n];
            let c = Component { hash: ComponentHash::of(&bytes), world: World::Workflow, bytes, created_at: Micros(1) };
            state.store.put_component(&c).await.expect("put component");
            let config = DeploymentConfig {
                concurrency: Some(Limit { limit: n.into(), key: Some("/client".into()) }),
                ..DeploymentConfig::default()
            };
            state.store.deploy("report", &c.hash, World::Workflow, &config, Micros(2)).await.expect("deploy");
            hashes.push(c.hash);
        }
        let run = NewRun {
            id: RunId::new(),
            kind: World::Workflow,
            component: "report".into(),
            component_hash: hashes[0].clone(),
            input: r#"{"client":"acme"}"#.into(),
            idempotency_key: Some("acme-49".into()),
            created_at: Micros(3),
            origin: None,
            flow: Default::default(),
            held: false,
        };
        let id = state.store.create_run(run).await.expect("create").run().id;
        let lease = state.store.claim(&id, "w", Duration::from_secs(30), Micros(4)).await.expect("claim");
        let error = RunError { kind: RunErrorKind::Fatal, message: "no".into() };
        state.store.finish(&lease, vec![], Outcome::Failed { error }, Micros(5)).await.expect("finish");
        let hashes = [hashes[0].clone(), hashes[1].clone()];
        (state, dir, id, hashes)
    }

    async fn body(resp: Response) -> (StatusCode, Value) {
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn retry_with(state: &AppState, id: &str, text: &str) -> (StatusCode, Value) {
        match retry(State(state.clone()), Path(id.to_owned()), Bytes::from(text.to_owned())).await {
            Ok(resp) => body(resp).await,
            Err(e) => body(e.into_response()).await,
        }
    }

    #[tokio::test]
    async fn retry_starts_a_new_run_of_the_same_version_with_the_same_input() {
        let (state, _dir, id, [v1, v2]) = state().await;
        let (status, resp) = retry_with(&state, &id.to_string(), "").await;
        assert_eq!(status, StatusCode::CREATED, "{resp}");
        assert_eq!(resp["retry_of"], id.to_string());
        let run: Run = serde_json::from_value(resp["run"].clone()).expect("a run");
        assert_ne!(run.id, id);
        assert_eq!((run.component.as_str(), &run.component_hash), ("report", &v1), "the version it ran on");
        assert_eq!((run.input.as_str(), run.status), (r#"{"client":"acme"}"#, RunStatus::Queued));
        assert_eq!(run.idempotency_key, None, "the key stays with the original");
        assert_eq!(run.origin, Some(format!("retry of {id}")));
        // Version 1's flow control (one run per client) came along.
        let (_, again) = retry_with(&state, &id.to_string(), "  ").await;
        let second: RunId = again["run"]["id"].as_str().unwrap_or_default().parse().expect("an id");
        let claimed = state.store.claim_ready("w", Duration::from_secs(30), Micros::now(), 10).await.expect("claim");
        assert_eq!(claimed.len(), 1, "the concurrency limit of version 1 holds the second retry back");
        let reasons = state.store.queue_reasons(&[run.id, second], Micros::now()).await.expect("reasons");
        assert_eq!(reasons.len(), 1, "{reasons:?}");

        let (status, resp) = retry_with(&state, &id.to_string(), r#"{"active": true}"#).await;
        assert_eq!(status, StatusCode::CREATED, "{resp}");
        assert_eq!(resp["run"]["component_hash"], v2.to_string(), "the active version");
    }

    #[tokio::test]
    async fn retry_refuses_what_it_cannot_retry() {
        let (state, _dir, id, _) = state().await;
        let (_, resp) = retry_with(&state, &id.to_string(), "").await;
        let queued = resp["run"]["id"].as_str().unwrap_or_default().to_owned();
        for (id, text, want, says) in [
            (queued.as_str(), "", StatusCode::CONFLICT, "only a failed or cancelled run"),
            (&id.to_string(), r#"{"version": 2}"#, StatusCode::BAD_REQUEST, "unknown field"),
            (&id.to_string(), "[", StatusCode::BAD_REQUEST, "not a retry request"),
            ("run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K", "", StatusCode::NOT_FOUND, "no run"),
            ("../etc/passwd", "", StatusCode::BAD_REQUEST, "not a run id"),
        ] {
            let (status, resp) = retry_with(&state, id, text).await;
            assert_eq!(status, want, "{id} {text}: {resp}");
            assert!(resp["error"]["message"].as_str().unwrap_or_default().contains(says), "{resp}");
        }
    }

    #[tokio::test]
    async fn the_list_finds_runs_by_key_and_counts_their_steps() {
        let (state, _dir, id, _) = state().await;
        let q = |key: Option<&str>| ListQuery {
            status: None,
            workflow: None,
            before: None,
            limit: None,
            key: key.map(str::to_owned),
        };
        let Json(all) = list(State(state.clone()), ApiQuery(q(None))).await.expect("list");
        assert_eq!(all["runs"][0]["id"], id.to_string());
        assert_eq!((&all["runs"][0]["steps"], &all["runs"][0]["retries"]), (&json!(0), &json!(0)));
        let Json(found) = list(State(state.clone()), ApiQuery(q(Some("acme-49")))).await.expect("by key");
        assert_eq!(found["runs"].as_array().map(Vec::len), Some(1));
        assert_eq!(found["runs"][0]["id"], id.to_string());
        let Json(none) = list(State(state.clone()), ApiQuery(q(Some("acme")))).await.expect("by key");
        assert_eq!(none["runs"], json!([]), "keys match exactly");
        let err = list(State(state.clone()), ApiQuery(q(Some("")))).await.expect_err("an empty key");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    async fn replay_of(state: &AppState, id: &str) -> (StatusCode, Value) {
        match replay(State(state.clone()), Path(id.to_owned())).await {
            Ok(resp) => body(resp).await,
            Err(e) => body(e.into_response()).await,
        }
    }

    #[tokio::test]
    async fn replay_refuses_bad_ids_and_unknown_runs() {
        let (state, _dir, _, _) = state().await;
        for (id, want, says) in [
            ("run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K", StatusCode::NOT_FOUND, "no run run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K"),
            ("../etc/passwd", StatusCode::BAD_REQUEST, "not a run id"),
            ("run_", StatusCode::BAD_REQUEST, "not a run id"),
            ("<script>", StatusCode::BAD_REQUEST, "not a run id"),
        ] {
            let (status, resp) = replay_of(&state, id).await;
            assert_eq!(status, want, "{id}: {resp}");
            assert!(resp["error"]["message"].as_str().unwrap_or_default().contains(says), "{id}: {resp}");
        }
    }

    /// The only test that takes replay slots: the slots are per process.
    #[tokio::test]
    async fn replays_are_limited_and_a_recording_that_cannot_run_is_unprocessable() {
        let (state, _dir, id, _) = state().await;
        let held = REPLAYS.acquire_many(REPLAY_SLOTS as u32).await.expect("the slots");
        let (status, resp) = replay_of(&state, &id.to_string()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{resp}");
        assert_eq!(resp["error"]["code"], "unavailable");
        assert!(resp["error"]["message"].as_str().unwrap_or_default().contains("2 replays are running"), "{resp}");
        let (status, _) = replay_of(&state, "run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "an unknown run is a 404 even when the slots are taken");
        drop(held);
        // The run's component is not WebAssembly: the replay cannot start.
        let (status, resp) = replay_of(&state, &id.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
        assert!(resp["error"]["message"].as_str().unwrap_or_default().contains("cannot be replayed"), "{resp}");
        assert_eq!(REPLAYS.available_permits(), REPLAY_SLOTS, "the slot was given back");
        let journal = state.store.journal(&id).await.expect("journal");
        assert!(journal.is_empty(), "nothing was written");
    }

    #[test]
    fn the_replay_verdict_says_identical_diverged_or_ended_early() {
        use crate::domain::{EntryKey, EntryKind, RunKind};
        use crate::replay::{FirstDivergence, Line, Report, Verdict};
        let mut run = Run {
            id: RunId::new(),
            kind: RunKind::Workflow,
            component: "report".into(),
            component_hash: ComponentHash::of(b"x"),
            input: "{}".into(),
            status: RunStatus::Completed,
            output: Some("{}".into()),
            error: None,
            idempotency_key: None,
            created_at: Micros(1),
            started_at: Some(Micros(2)),
            finished_at: Some(Micros(3)),
            lease_owner: None,
            lease_epoch: 1,
            lease_expires_at: None,
            wake_at: None,
            waiting_on: None,
            origin: None,
        };
        let line =
            |seq, verdict| Line { key: EntryKey::call(seq, 1), kind: EntryKind::Step, name: "pull".into(), verdict };
        let mut report =
            Report { lines: vec![line(1, Verdict::Matched), line(2, Verdict::Matched)], ..Report::default() };
        let answer = replay_answer(&run, 5, &report, 1234);
        assert_eq!(answer["verdict"], "identical", "{answer}");
        assert_eq!((&answer["entries_checked"], &answer["entries_matched"]), (&json!(2), &json!(2)));
        assert_eq!((&answer["journal_entries"], &answer["duration_us"]), (&json!(5), &json!(1234)));
        assert_eq!((&answer["identical"], &answer["divergence"]), (&json!(true), &Value::Null));

        run.status = RunStatus::Running;
        let answer = replay_answer(&run, 5, &report, 1);
        assert_eq!(answer["verdict"], "ended-early", "{answer}");
        assert!(answer["ended_early"].as_str().unwrap_or_default().contains("recorded while running"), "{answer}");

        report.lines[1].verdict = Verdict::Diverged { reason: "the step's result differs".into() };
        report.divergence = Some(FirstDivergence {
            key: EntryKey::call(2, 1),
            reason: "the step's result differs from the record".into(),
            recorded: None,
            replayed: None,
        });
        let answer = replay_answer(&run, 5, &report, 1);
        assert_eq!(answer["verdict"], "diverged", "{answer}");
        assert_eq!(answer["identical"], false);
        assert_eq!(answer["entries_matched"], 1);
        assert_eq!(answer["divergence"]["key"], json!({"seq": 2, "attempt": 1, "child": 0}));
    }
}
