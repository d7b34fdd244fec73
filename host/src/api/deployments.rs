//! `/v1/deployments`: deploy, list (with run counts per version when asked),
//! activate (rollback).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::ScheduleSpec;
use super::{ApiError, ApiJson, ApiQuery, AppState, COMPONENT_LIMIT};
use crate::domain::{DeploymentConfig, Micros};
use crate::store::Component;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    name: String,
    component_base64: String,
    #[serde(default)]
    config: DeploymentConfig,
    #[serde(default)]
    schedule: Option<ScheduleSpec>,
}

/// Deployment and schedule names: 1–64 of `a-z 0-9 - _ .`.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} `{}` is not valid: use 1 to 64 of a-z, 0-9, -, _ and .",
            name.chars().take(70).collect::<String>()
        )))
    }
}

pub async fn deploy(State(state): State<AppState>, ApiJson(req): ApiJson<DeployRequest>) -> Result<Response, ApiError> {
    check_name("deployment name", &req.name)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(req.component_base64.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("component_base64 is not base64: {e}")))?;
    if bytes.len() > COMPONENT_LIMIT {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the component is {} bytes; the limit is {COMPONENT_LIMIT}", bytes.len()),
        });
    }
    // Check everything before writing anything.
    let schedule = match &req.schedule {
        Some(spec) => Some(spec.to_schedule(&req.name, &req.name)?),
        None => None,
    };
    let loaded = state.engine.load(&bytes).await.map_err(|e| ApiError::unprocessable(e.to_string()))?;
    if schedule.is_some() && loaded.world != crate::domain::World::Workflow {
        return Err(ApiError::bad_request("only workflows can have a schedule"));
    }
    let component = Component { hash: loaded.hash.clone(), world: loaded.world, bytes, created_at: Micros::now() };
    state.store.put_component(&component).await?;
    let (deployment, created) =
        state.store.deploy(&req.name, &loaded.hash, loaded.world, &req.config, Micros::now()).await?;
    if let Some(s) = &schedule {
        state.store.put_schedule(s).await?;
    }
    Ok(if created {
        (StatusCode::CREATED, Json(json!({ "deployment": deployment, "created": true }))).into_response()
    } else {
        let message = format!("already deployed as version {}: nothing changed", deployment.version);
        (StatusCode::OK, Json(json!({ "deployment": deployment, "created": false, "message": message })))
            .into_response()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Add `runs`, the runs pinned to each version by status.
    #[serde(default)]
    runs: bool,
}

/// Every version of every deployment; with `?runs=true` each carries
/// `runs: {status: count}` (versions with the same component share them).
pub async fn list(State(state): State<AppState>, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<Value>, ApiError> {
    let deployments = state.store.deployments().await?;
    if !q.runs {
        return Ok(Json(json!({ "deployments": deployments })));
    }
    let counts = state.store.version_run_counts().await?;
    let listed: Vec<Value> = deployments
        .iter()
        .map(|d| {
            let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
            let runs: serde_json::Map<String, Value> = counts
                .iter()
                .filter(|c| c.name == d.name && c.hash == d.hash)
                .map(|c| (c.status.as_str().to_owned(), json!(c.runs)))
                .collect();
            v["runs"] = Value::Object(runs);
            v
        })
        .collect();
    Ok(Json(json!({ "deployments": listed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    version: u32,
}

pub async fn activate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ActivateRequest>,
) -> Result<Json<Value>, ApiError> {
    check_name("deployment name", &name)?;
    Ok(Json(json!({ "deployment": state.store.activate(&name, req.version).await? })))
}
