//! `ferry:runtime/http`: outbound requests through the deployment's policy,
//! journaled with credentials redacted.

use std::time::Duration;

use crate::domain::{EntryKind, EntryStatus};
use crate::engine::bindings::http::{Host, HttpError, Request, Response};
use crate::engine::http::{Body, ErrorKind, FetchError, RecordedRequest, RecordedResponse, redact_headers};
use crate::engine::recorder::{Begun, Call};
use crate::engine::state::StepState;

impl Host for StepState {
    async fn fetch(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let mut headers = req.headers;
        if req.idempotency_key && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key")) {
            headers.push(("idempotency-key".to_owned(), self.ctx.info.idempotency_key()));
        }
        let recorded = RecordedRequest {
            method: req.method.to_ascii_uppercase(),
            url: req.url.clone(),
            headers: redact_headers(&headers),
            body: req.body.clone().and_then(Body::from_bytes),
            timeout_ms: req.timeout_ms,
        };
        let request_json = self.ctx.recorder.redact(&serde_json::to_string(&recorded)?);
        let name = format!("{} {}", recorded.method, host_of(&req.url));
        let call = Call { kind: EntryKind::Http, name, request: request_json };

        let answer = match self.ctx.recorder.begin(call.clone()) {
            Begun::Diverged(d) => return Err(wasmtime::format_err!("{d}")),
            Begun::Recorded(entry) => {
                let text = entry.response.unwrap_or_default();
                serde_json::from_str::<RecordedResponse>(&text)
                    .map_err(|e| wasmtime::format_err!("corrupt journal entry {}: {e}", entry.key))?
            }
            Begun::Live { key, started_at } => {
                // The step may run while the run's earlier entries commit;
                // a request is seen outside, so those must be durable first.
                if let Some(settle) = &self.settle {
                    settle.settle().await.map_err(|why| {
                        wasmtime::format_err!(
                            "the request was not sent: the run's journal could not be written ({why})"
                        )
                    })?;
                }
                let timeout = req.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms)));
                let result = self.http.fetch(&req.method, &req.url, &headers, req.body, timeout).await;
                let (answer, status, error) = match result {
                    Ok(f) => (
                        RecordedResponse::Response {
                            status: f.status,
                            headers: f.headers,
                            body: Body::from_bytes(f.body),
                        },
                        EntryStatus::Ok,
                        None,
                    ),
                    Err(FetchError { kind, message, limit }) => {
                        let message =
                            if kind == ErrorKind::TooLarge { format!("{message} ({limit})") } else { message };
                        (
                            RecordedResponse::Error { error: kind, message: message.clone() },
                            EntryStatus::Error,
                            Some(message),
                        )
                    }
                };
                self.ctx.recorder.finish(key, call, started_at, Some(serde_json::to_string(&answer)?), status, error);
                answer
            }
        };
        Ok(match answer {
            RecordedResponse::Response { status, headers, body } => {
                Ok(Response { status, headers, body: body.map(Body::into_bytes).unwrap_or_default() })
            }
            RecordedResponse::Error { error, message } => Err(match error {
                ErrorKind::Denied => HttpError::Denied(message),
                ErrorKind::InvalidRequest => HttpError::InvalidRequest(message),
                ErrorKind::Timeout => HttpError::Timeout,
                ErrorKind::Connection => HttpError::Connection(message),
                ErrorKind::TooLarge => HttpError::TooLarge(self.http.config.max_response_bytes),
            }),
        })
    }
}

/// The host part of a URL, for the entry's name.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| "(invalid url)".to_owned())
}
