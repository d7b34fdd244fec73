//! The HTTP API of `ferry serve` (see `docs/API.md`): axum routes, one
//! error shape, bearer-token auth, body limits.
//!
//! Handlers validate everything before they write anything, so a request
//! that fails leaves the store as it was.

mod deployments;
mod events;
mod runs;
mod stats;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::engine::Engine;
use crate::store::{self, Store};

/// Largest request body, except deployments.
pub const BODY_LIMIT: usize = 1 << 20;
/// Largest deployment request (the component travels base64-encoded).
pub const DEPLOY_BODY_LIMIT: usize = 90 << 20;
/// Largest component accepted.
pub const COMPONENT_LIMIT: usize = 64 << 20;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    /// When set, every route but `/healthz` needs `Authorization: Bearer`.
    pub token: Option<Arc<String>>,
    /// This process's worker: a run started through the API is handed to
    /// it at once when it has a slot free ([`Worker::submit`]), and it is
    /// woken when a request made runs ready, so it does not wait for its
    /// next look (other hosts find them by polling).
    pub worker: Option<Arc<crate::workflow::Worker>>,
    /// The ids of runs whose execution by this process's worker ended, so
    /// a waiting request looks again at once (runs other hosts execute are
    /// found by polling).
    pub ended: Option<tokio::sync::broadcast::Sender<crate::domain::RunId>>,
}

impl AppState {
    /// Tells the local worker that runs may be ready.
    pub fn runs_ready(&self) {
        if let Some(worker) = &self.worker {
            worker.wake();
        }
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let deploy = Router::new()
        .route("/v1/deployments", post(deployments::deploy).get(deployments::list))
        .layer(axum::extract::DefaultBodyLimit::max(DEPLOY_BODY_LIMIT));
    let api = Router::new()
        .route("/v1/deployments/{name}/activate", post(deployments::activate))
        .route("/v1/runs", post(runs::create).get(runs::list))
        .route("/v1/runs/{id}", get(runs::show))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/wait", post(runs::wait))
        .route("/v1/runs/{id}/rerun", post(runs::rerun))
        .route("/v1/runs/{id}/retry", post(runs::retry))
        .route("/v1/runs/{id}/export", get(runs::export))
        .route("/v1/runs/{id}/replay", post(runs::replay))
        .route("/v1/blobs/{hash}", get(runs::blob))
        .route("/v1/queue", get(stats::queue))
        .route("/v1/stats", get(stats::stats))
        .route("/v1/events", post(events::send))
        .route("/v1/schedules", get(events::schedules).post(events::put_schedule))
        .route("/v1/schedules/{name}", axum::routing::delete(events::delete_schedule))
        .route("/metrics", get(metrics))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .merge(deploy)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::dashboard::guard))
        .with_state(state)
}

/// An error response: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self { status: StatusCode::CONFLICT, message: message.into() }
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, message: message.into() }
    }

    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code(), "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        let status = match &e {
            store::Error::NotFound(_) => StatusCode::NOT_FOUND,
            store::Error::Conflict(_) | store::Error::LeaseLost { .. } => StatusCode::CONFLICT,
            store::Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            store::Error::Corrupt(_) | store::Error::Config(_) | store::Error::Database(_) => {
                tracing::error!(error = %e, "store error on a request");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self { status, message: e.to_string() }
    }
}

/// JSON bodies whose rejections (bad JSON, a missing field, a body too
/// large) answer in the API's error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = rejection.status();
                let message = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
                    _ => rejection.body_text(),
                };
                Err(ApiError { status, message })
            }
        }
    }
}

/// Query strings whose rejections (an unknown parameter, a value of the
/// wrong type) answer `400` in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Checks `Authorization: Bearer <token>` in constant time.
async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.token else { return next.run(req).await };
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if tokens_match(given, token) {
        next.run(req).await
    } else {
        ApiError { status: StatusCode::UNAUTHORIZED, message: "missing or wrong bearer token".into() }.into_response()
    }
}

/// Constant-time comparison (the length is not secret).
fn tokens_match(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

async fn healthz(State(state): State<AppState>) -> Response {
    let filter = store::RunFilter { limit: 1, ..Default::default() };
    match state.store.list_runs(&filter).await {
        Ok(_) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message: e.to_string() }.into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state.store.run_counts().await?;
    let mut gauges: Vec<(String, u64)> =
        counts.iter().map(|(status, n)| (format!("ferry_runs{{status=\"{status}\"}}"), *n)).collect();
    let queued = counts.iter().find(|(s, _)| *s == crate::domain::RunStatus::Queued).map_or(0, |(_, n)| *n);
    gauges.push(("ferry_queue_depth".into(), queued));
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&gauges))
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see docs/API.md")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cre", "s3cret"));
        assert!(!tokens_match("s3creT", "s3cret"));
        assert!(!tokens_match("", "s3cret"));
    }
}
