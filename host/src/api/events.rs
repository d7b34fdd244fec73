//! `/v1/events` and `/v1/schedules`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::deployments::check_name;
use super::runs::start_run;
use super::{ApiError, ApiJson, AppState};
use crate::daemon::cron::next_tick;
use crate::domain::{Micros, Schedule, World};
use crate::store::Created;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEvent {
    name: String,
    #[serde(default)]
    data: Value,
}

/// Stores the event, wakes the runs waiting for it, and starts a run of
/// every active workflow whose `on_events` names it.
pub async fn send(State(state): State<AppState>, ApiJson(req): ApiJson<SendEvent>) -> Result<Json<Value>, ApiError> {
    if req.name.is_empty() || req.name.len() > 256 {
        return Err(ApiError::bad_request("the event name must be 1 to 256 characters"));
    }
    let data = serde_json::to_string(&req.data).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (event, woken) = state.store.send_event(&req.name, &data, Micros::now()).await?;
    let mut started = Vec::new();
    for d in state.store.deployments().await? {
        if d.active && d.world == World::Workflow && d.config.on_events.contains(&req.name) {
            let key = format!("event:{}", event.id);
            let origin = Some(format!("event `{}` #{}", req.name, event.id));
            if let Created::New(run) = start_run(&state, &d.name, &req.data, Some(key), origin).await? {
                started.push(run.id);
            }
        }
    }
    state.runs_ready();
    Ok(Json(json!({ "event_id": event.id, "woken": woken, "started": started })))
}

/// A schedule as a request gives it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    cron: String,
    #[serde(default = "utc")]
    timezone: String,
    #[serde(default)]
    input: Value,
}

fn utc() -> String {
    "UTC".into()
}

impl ScheduleSpec {
    /// The schedule `name` of `workflow`, its first tick computed now.
    pub fn to_schedule(&self, name: &str, workflow: &str) -> Result<Schedule, ApiError> {
        let now = Micros::now();
        let next = next_tick(&self.cron, &self.timezone, now).map_err(ApiError::bad_request)?;
        Ok(Schedule {
            name: name.to_owned(),
            workflow: workflow.to_owned(),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            input: serde_json::to_string(&self.input).map_err(|e| ApiError::bad_request(e.to_string()))?,
            next_fire_at: next,
            last_fired_at: None,
            created_at: now,
        })
    }
}

pub async fn schedules(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "schedules": state.store.schedules().await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSchedule {
    name: String,
    workflow: String,
    cron: String,
    #[serde(default = "utc")]
    timezone: String,
    #[serde(default)]
    input: Value,
}

pub async fn put_schedule(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PutSchedule>,
) -> Result<Response, ApiError> {
    check_name("schedule name", &req.name)?;
    let d = state
        .store
        .deployment(&req.workflow, None)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deployment named `{}`", req.workflow)))?;
    if d.world != World::Workflow {
        return Err(ApiError::bad_request(format!("`{}` is a step; schedules start workflows", req.workflow)));
    }
    let spec = ScheduleSpec { cron: req.cron, timezone: req.timezone, input: req.input };
    let schedule = spec.to_schedule(&req.name, &req.workflow)?;
    state.store.put_schedule(&schedule).await?;
    Ok((StatusCode::CREATED, Json(json!({ "schedule": schedule }))).into_response())
}

pub async fn delete_schedule(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    state.store.delete_schedule(&name).await?;
    Ok(Json(json!({ "deleted": name })))
}
