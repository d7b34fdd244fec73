//! The dashboard `ferry serve` serves next to its API: the runs list (`/`),
//! a run's detail (`/runs/{id}`), the deployments with their versions and
//! queue (`/deployments`), the schedules (`/schedules`) and charts of step
//! throughput, latency and retries (`/stats`, drawn as inline SVG by
//! `app.js`).
//!
//! The pages are static shells (the same bytes for everyone, with no run
//! data in them); `assets/app.js` reads the JSON API (`/v1/…`) with the
//! bearer token the user typed (kept in `sessionStorage`) and builds the
//! page with DOM calls and `textContent` only, so every value from a run is
//! shown as text (charts too: SVG elements made with `createElementNS`,
//! labels as text nodes). Every action (rerun, retry, replay, cancel, activate) is
//! a call to the same API the CLI uses, after a confirmation. Nothing is built at compile time but `include_str!`.
//!
//! Security, in one place:
//! - data only ever comes from the API, behind the token when one is set;
//! - [`guard`] (layered over the whole router) refuses state-changing
//!   requests a browser marks as cross-site (`Sec-Fetch-Site`, `Origin`),
//!   and, when the daemon has no token (loopback only), any request whose
//!   `Host` is not a loopback name, which stops DNS rebinding;
//! - the pages send a strict Content-Security-Policy (no inline script,
//!   nothing from other origins), `nosniff` and `X-Frame-Options: DENY`.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::AppState;

const RUNS_HTML: &str = include_str!("assets/runs.html");
const RUN_HTML: &str = include_str!("assets/run.html");
const DEPLOYMENTS_HTML: &str = include_str!("assets/deployments.html");
const SCHEDULES_HTML: &str = include_str!("assets/schedules.html");
const STATS_HTML: &str = include_str!("assets/stats.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The Content-Security-Policy of every dashboard response.
pub const CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The dashboard's routes, to merge into the API router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { page(RUNS_HTML) }))
        .route("/runs/{id}", get(|| async { page(RUN_HTML) }))
        .route("/deployments", get(|| async { page(DEPLOYMENTS_HTML) }))
        .route("/schedules", get(|| async { page(SCHEDULES_HTML) }))
        .route("/stats", get(|| async { page(STATS_HTML) }))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/assets/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .layer(axum::middleware::map_response(security_headers))
}

fn page(html: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Cross-site and DNS-rebinding protection for the whole router (the API
/// and the dashboard): see the module documentation.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let tokenless = state.token.as_deref().is_none_or(|t| t.is_empty());
    if let Err(why) = check(req.method(), req.headers(), req.uri().authority().map(|a| a.as_str()), tokenless) {
        return forbidden(why);
    }
    next.run(req).await
}

/// Why a request is refused, if it is.
fn check(method: &Method, headers: &HeaderMap, authority: Option<&str>, tokenless: bool) -> Result<(), &'static str> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or(authority);
    if tokenless
        && let Some(host) = host
        && !is_loopback_host(host)
    {
        return Err("this daemon has no token, so it answers only requests addressed to a loopback host");
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
    if let Some(site) = text("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return Err("cross-site request refused (Sec-Fetch-Site)");
    }
    if let Some(origin) = text("origin") {
        let same = host.is_some_and(|host| {
            let host = host.to_ascii_lowercase();
            origin == format!("http://{host}") || origin == format!("https://{host}")
        });
        if !same {
            return Err("cross-origin request refused (Origin)");
        }
    }
    Ok(())
}

/// `localhost`, `*.localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn forbidden(message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": "forbidden", "message": message } });
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("?")));
        }
        h
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for ok in ["localhost", "localhost:7070", "127.0.0.1:7070", "127.1.2.3", "[::1]:7070", "[::1]", "app.localhost"]
        {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:7070", "10.0.0.1:7070", "[::2]:1", "localhost.evil.example", ""] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn cross_site_writes_are_refused() {
        let host = ("host", "127.0.0.1:7070");
        let post = Method::POST;
        assert!(check(&post, &headers(&[host]), None, true).is_ok(), "a CLI request has no Origin");
        let same = headers(&[host, ("origin", "http://127.0.0.1:7070"), ("sec-fetch-site", "same-origin")]);
        assert!(check(&post, &same, None, true).is_ok());
        assert!(check(&post, &headers(&[host, ("origin", "http://evil.example")]), None, true).is_err());
        assert!(check(&post, &headers(&[host, ("origin", "null")]), None, true).is_err());
        assert!(check(&post, &headers(&[host, ("origin", "http://127.0.0.1:3000")]), None, true).is_err());
        assert!(check(&post, &headers(&[host, ("sec-fetch-site", "cross-site")]), None, true).is_err());
        assert!(check(&post, &headers(&[host, ("sec-fetch-site", "same-site")]), None, true).is_err());
        assert!(check(&post, &headers(&[host, ("sec-fetch-site", "cross-site")]), None, false).is_err());
        // Reads are left to CORS (no cross-origin reads are allowed)…
        assert!(check(&Method::GET, &headers(&[host, ("sec-fetch-site", "cross-site")]), None, true).is_ok());
        // …but a tokenless daemon answers loopback names only (DNS rebinding).
        assert!(check(&Method::GET, &headers(&[("host", "evil.example:7070")]), None, true).is_err());
        assert!(check(&Method::GET, &headers(&[("host", "ferry.internal:7070")]), None, false).is_ok());
    }
}
