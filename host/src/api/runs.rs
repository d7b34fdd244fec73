//! `/v1/runs`: create, list, show, cancel, wait.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, AppState};
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
    };
    Ok(state.store.create_run(run).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    workflow: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

pub async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let status = q.status.as_deref().map(str::parse::<RunStatus>).transpose().map_err(ApiError::bad_request)?;
    let before =
        q.before.as_deref().map(str::parse::<RunId>).transpose().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let filter = RunFilter { status, component: q.workflow, before, limit };
    let runs = state.store.list_runs(&filter).await?;
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
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000).min(60_000));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let run = get_run(&state, &id).await?;
        if run.status.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(json!({ "run": run })));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
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
            Ok((StatusCode::CREATED, Json(json!({ "run": run, "rerun_of": id, "kept_entries": kept }))).into_response())
        }
        Err(crate::workflow::RerunError::Store(e)) => Err(e.into()),
        Err(e @ crate::workflow::RerunError::NoRun(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
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
    Query(q): Query<ExportQuery>,
) -> Result<Json<crate::replay::Export>, ApiError> {
    let id = parse_id(&id)?;
    let (rec, worlds) = crate::replay::load_recording(state.store.as_ref(), &id).await?;
    Ok(Json(crate::replay::Export::new(&rec, &worlds, q.with_components)))
}
