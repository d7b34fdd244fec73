//! The upstream's routes (docs/PIPELINE.md, "The upstream's API").
//!
//! Every handler parses its input by hand (raw query, raw body) so that
//! every rejection answers in one JSON shape, `{"error": CODE, "message":
//! TEXT}`, and tells the request log which client, source, week and page
//! it was about (an [`Info`] in the response's extensions, which the `log`
//! middleware takes out). Nothing here panics on what a caller sends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::data::{self, PAGE_SIZE, Source, Week, client_id};
use super::faults::{Fault, PageFault};
use super::state::{Info, Sent, Shared, Token, is_hex};
use super::{Client, Email, Snapshot};

/// Largest request body (a mail with its PDF, base64-encoded).
const BODY_LIMIT: usize = 16 << 20;
/// Most requests `GET /_upstream/requests` returns at once.
const REQUESTS_PAGE: usize = 10_000;
/// Longest idempotency key.
const KEY_LIMIT: usize = 256;
/// Most attachments on one mail.
const ATTACHMENT_LIMIT: usize = 10;
/// Tables the warehouse stores snapshots of.
const TABLES: [&str; 3] = ["ads", "web", "crm"];

type Shr = State<Arc<Shared>>;

/// The upstream's routes over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/agency/v1/clients", get(clients))
        .route("/oauth/token", post(token))
        .route("/meta/v1/insights", get(meta))
        .route("/linkedin/v2/adAnalytics", get(linkedin))
        .route("/ga4/v1beta/runReport", post(ga4))
        .route("/searchconsole/v1/query", post(search_console))
        .route("/mailchimp/3.0/reports", get(mailchimp))
        .route("/warehouse/v1/orders", get(warehouse))
        .route("/warehouse/v1/tables/{table}/snapshots", post(snapshot))
        .route("/mail/v1/send", post(send_mail))
        .route("/_upstream/emails", get(inspect_emails))
        .route("/_upstream/emails/{id}/attachment", get(inspect_attachment))
        .route("/_upstream/requests", get(inspect_requests))
        .route("/_upstream/snapshots", get(inspect_snapshots))
        .route("/_upstream/stats", get(inspect_stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(shared.clone(), log))
        .with_state(shared)
}

/// A rejection: `{"error": CODE, "message": TEXT}`, and `Retry-After` for 429s.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    error: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Failure {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self { status, error, message: message.into(), retry_after: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn unauthorized(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, error, message)
    }

    fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message) }
    }

    fn gateway_timeout() -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "gateway_timeout", "the upstream did not answer in time")
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({"error": self.error, "message": self.message}))).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A handler's answer, with what the log should record of it.
fn reply(info: Info, result: Result<Response, Failure>) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(info);
    response
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Logs every request but `/_upstream/*` and stamps `X-Request-Id`.
async fn log(State(shared): Shr, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/_upstream" || path.starts_with("/_upstream/") {
        return next.run(request).await;
    }
    let mut logged = path.to_owned();
    if logged.len() > 1024 {
        let mut end = 1024;
        while !logged.is_char_boundary(end) {
            end -= 1;
        }
        logged.truncate(end);
    }
    let id = shared.lock().begin(request.method().as_str(), &logged);
    let mut pending = Pending { shared: shared.clone(), id, started: Instant::now(), answered: false };
    let mut response = next.run(request).await;
    let info = response.extensions_mut().remove::<Info>().unwrap_or_default();
    pending.finish(response.status().as_u16(), info);
    response.headers_mut().insert("x-request-id", HeaderValue::from(id));
    response
}

/// A logged request not answered yet; dropped unanswered (the caller went
/// away mid-request), it is logged as 499 so the log does not stall.
struct Pending {
    shared: Arc<Shared>,
    id: u64,
    started: Instant,
    answered: bool,
}

impl Pending {
    fn finish(&mut self, status: u16, info: Info) {
        self.answered = true;
        let ms = self.started.elapsed().as_millis() as u64;
        self.shared.lock().finish(self.id, status, info, ms);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            self.finish(499, Info::default());
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let message = format!("no such route: {method} {}; see docs/PIPELINE.md", uri.path());
    Failure::new(StatusCode::NOT_FOUND, "not_found", message).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let message = format!("{} does not take {method}", uri.path());
    Failure::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message).into_response()
}

// ---- input helpers ----

/// The query's parameters; the first of a repeated name counts.
fn query(raw: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

/// Parses a JSON body into `T`, or says why not.
fn body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Failure> {
    let bytes = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {BODY_LIMIT} bytes"),
        ),
        _ => Failure::bad_request(format!("cannot read the body: {}", e.body_text())),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Failure::bad_request(format!("the body is not the expected JSON: {e}")))
}

/// The bearer token of a source request, and what it was issued for.
fn bearer(shared: &Shared, headers: &HeaderMap) -> Result<(String, Token), Failure> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(Failure::unauthorized("missing_token", "send Authorization: Bearer <token> from /oauth/token"));
    };
    let invalid = || Failure::unauthorized("invalid_token", "the bearer token is not one /oauth/token issued");
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).ok_or_else(invalid)?;
    let issued = shared.lock().token(token).ok_or_else(invalid)?;
    Ok((token.to_owned(), issued))
}

/// Client number of `value`: 400 when absent, 404 when not a client.
fn client(shared: &Shared, value: Option<&str>) -> Result<u32, Failure> {
    let id = value.ok_or_else(|| Failure::bad_request("`client` is required"))?;
    data::parse_client(id, shared.clients).ok_or_else(|| {
        let message = format!("no client `{id}`: clients are c01 to {}", client_id(shared.clients));
        Failure::new(StatusCode::NOT_FOUND, "unknown_client", message)
    })
}

fn week(value: Option<&str>) -> Result<Week, Failure> {
    let text = value.ok_or_else(|| Failure::bad_request("`week` is required"))?;
    Week::parse(text).ok_or_else(|| {
        Failure::new(StatusCode::BAD_REQUEST, "bad_week", format!("`{text}` is not an ISO week such as 2026-W49"))
    })
}

/// A non-negative integer parameter, `default` when absent.
fn number(q: &HashMap<String, String>, name: &str, default: u32) -> Result<u32, Failure> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| Failure::bad_request(format!("`{name}` must be a non-negative integer"))),
    }
}

/// A page size: 1 to 10.
fn page_size(name: &str, value: u32) -> Result<u32, Failure> {
    if (1..=PAGE_SIZE).contains(&value) {
        Ok(value)
    } else {
        Err(Failure::bad_request(format!("`{name}` must be 1 to {PAGE_SIZE}")))
    }
}

/// The idempotency key of a write: 1 to 256 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<String, Failure> {
    let value =
        headers.get("idempotency-key").ok_or_else(|| Failure::bad_request("the Idempotency-Key header is required"))?;
    let key = value.to_str().ok().map(str::trim).unwrap_or("");
    if key.is_empty() || key.len() > KEY_LIMIT || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(Failure::bad_request(format!("Idempotency-Key must be 1 to {KEY_LIMIT} visible ASCII characters")));
    }
    Ok(key.to_owned())
}

/// Where links in answers point: the `Host` the request came to.
fn base_url(shared: &Shared, headers: &HeaderMap) -> String {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).filter(|h| {
        !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    match host {
        Some(host) => format!("http://{host}"),
        None => format!("http://{}", shared.addr),
    }
}

// ---- sources ----

/// Checks the token against the page asked for, then counts the ask and
/// applies its fault. `Ok(true)` means: answer with a malformed body.
async fn admit(
    shared: &Shared,
    token: &Token,
    source: Source,
    client: u32,
    week: Week,
    page: u32,
    info: &mut Info,
) -> Result<bool, Failure> {
    if token.client != client || token.source != source {
        let message = format!(
            "the token was issued for {}/{}, not {}/{source}",
            client_id(token.client),
            token.source,
            client_id(client)
        );
        return Err(Failure::unauthorized("invalid_token", message));
    }
    if token.expired {
        info.fault = Some(Fault::TokenExpired);
        return Err(Failure::unauthorized("token_expired", "the token has expired: ask /oauth/token for a new one"));
    }
    let fault = {
        let mut state = shared.lock();
        if source == Source::Meta
            && let Err(secs) = state.admit_meta(Instant::now())
        {
            info.fault = Some(Fault::RateLimit);
            return Err(Failure::too_many("meta's global rate limit: too many requests this second", secs));
        }
        let ask = state.ask(client, source, week, page);
        shared.faults.page(client, source, week, page, ask)
    };
    info.fault = fault.map(PageFault::fault);
    match fault {
        None => Ok(false),
        Some(PageFault::Burst429) => Err(Failure::too_many("too many requests for this page", 1)),
        Some(PageFault::Cluster504) => Err(Failure::gateway_timeout()),
        Some(PageFault::Malformed) => Ok(true),
        Some(PageFault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            Ok(false)
        }
    }
}

/// The rows of (client, source, week) in the order `token` sees them.
fn rows_for(client: u32, source: Source, week: Week, token: &str) -> Vec<Value> {
    let mut rows = data::rows(client, source, week);
    if source.shuffled() {
        data::shuffle_for_token(&mut rows, token, client, source, week);
    }
    rows
}

/// `count` rows from row `start` (fewer at the end, none past it).
fn slice(rows: &[Value], start: u64, count: u32) -> Vec<Value> {
    let start = usize::try_from(start).unwrap_or(usize::MAX).min(rows.len());
    rows[start..].iter().take(count as usize).cloned().collect()
}

/// A page's answer; a malformed one is the first half of its JSON.
fn page_response(body: Value, malformed: bool) -> Response {
    if !malformed {
        return json_response(StatusCode::OK, body);
    }
    let mut text = serde_json::to_vec(&body).unwrap_or_default();
    text.truncate(text.len() / 2);
    ([(CONTENT_TYPE, "application/json")], text).into_response()
}

/// Meta's opaque cursor for page `page` of (client, week).
fn meta_cursor(client: u32, week: Week, page: u32) -> String {
    let plain = format!("{}:{week}:{page}", client_id(client));
    let check = hex::encode(&data::sha256(&format!("cursor/{plain}"))[..4]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{plain}:{check}"))
}

/// The page a meta cursor points at, if it is one of (client, week)'s.
fn parse_meta_cursor(cursor: &str, client: u32, week: Week) -> Option<u32> {
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(text).ok()?;
    let mut parts = text.rsplitn(3, ':');
    let (_check, page) = (parts.next()?, parts.next()?);
    let page: u32 = page.parse().ok()?;
    (meta_cursor(client, week, page) == cursor).then_some(page)
}

/// What every GET source page starts with: the bearer token, the query,
/// and the client and week it names (noted in the request log as they are
/// read, so a refused request still says whose it was).
struct GetPage {
    token: String,
    issued: Token,
    q: HashMap<String, String>,
    client: u32,
    week: Week,
}

fn get_page(shared: &Shared, headers: &HeaderMap, raw: Option<&str>, info: &mut Info) -> Result<GetPage, Failure> {
    let (token, issued) = bearer(shared, headers)?;
    let q = query(raw);
    let client = client(shared, q.get("client").map(String::as_str))?;
    info.client = Some(client_id(client));
    let week = week(q.get("week").map(String::as_str))?;
    info.week = Some(week);
    Ok(GetPage { token, issued, q, client, week })
}

async fn meta(State(shared): Shr, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let mut info = Info { source: Some(Source::Meta), ..Info::default() };
    let result = meta_page(&shared, &headers, raw.as_deref(), &mut info).await;
    reply(info, result)
}

async fn meta_page(
    shared: &Shared,
    headers: &HeaderMap,
    raw: Option<&str>,
    info: &mut Info,
) -> Result<Response, Failure> {
    let GetPage { token, issued, q, client, week } = get_page(shared, headers, raw, info)?;
    let page = match q.get("after") {
        None => 0,
        Some(cursor) => parse_meta_cursor(cursor, client, week)
            .ok_or_else(|| Failure::bad_request("`after` is not a cursor this client and week's pages gave"))?,
    };
    info.page = Some(page);
    let malformed = admit(shared, &issued, Source::Meta, client, week, page, info).await?;
    let rows = rows_for(client, Source::Meta, week, &token);
    let start = u64::from(page) * u64::from(PAGE_SIZE);
    let mut paging = json!({});
    if start + u64::from(PAGE_SIZE) < rows.len() as u64 {
        let cursor = meta_cursor(client, week, page + 1);
        let next = format!(
            "{}/meta/v1/insights?client={}&week={week}&after={cursor}",
            base_url(shared, headers),
            client_id(client)
        );
        paging = json!({"cursors": {"after": cursor}, "next": next});
    }
    let body = json!({"data": slice(&rows, start, PAGE_SIZE), "paging": paging});
    Ok(page_response(body, malformed))
}

/// The common shape of the offset-paged GET sources: LinkedIn, Mailchimp.
struct OffsetPage {
    token: String,
    client: u32,
    week: Week,
    start: u32,
    count: u32,
    malformed: bool,
}

/// Reads `client`, `week`, the offset parameter and the count parameter,
/// and admits the page.
async fn offset_page(
    shared: &Shared,
    headers: &HeaderMap,
    raw: Option<&str>,
    source: Source,
    (start_name, count_name): (&str, &str),
    info: &mut Info,
) -> Result<OffsetPage, Failure> {
    let GetPage { token, issued, q, client, week } = get_page(shared, headers, raw, info)?;
    let start = number(&q, start_name, 0)?;
    let count = page_size(count_name, number(&q, count_name, PAGE_SIZE)?)?;
    let page = start / PAGE_SIZE;
    info.page = Some(page);
    let malformed = admit(shared, &issued, source, client, week, page, info).await?;
    Ok(OffsetPage { token, client, week, start, count, malformed })
}

async fn linkedin(State(shared): Shr, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let mut info = Info { source: Some(Source::Linkedin), ..Info::default() };
    let result = offset_page(&shared, &headers, raw.as_deref(), Source::Linkedin, ("start", "count"), &mut info)
        .await
        .map(|p| {
            let rows = rows_for(p.client, Source::Linkedin, p.week, &p.token);
            let body = json!({
                "elements": slice(&rows, p.start.into(), p.count),
                "paging": {"start": p.start, "count": p.count, "total": rows.len()},
            });
            page_response(body, p.malformed)
        });
    reply(info, result)
}

async fn mailchimp(State(shared): Shr, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let mut info = Info { source: Some(Source::Mailchimp), ..Info::default() };
    let result = offset_page(&shared, &headers, raw.as_deref(), Source::Mailchimp, ("offset", "count"), &mut info)
        .await
        .map(|p| {
            let rows = rows_for(p.client, Source::Mailchimp, p.week, &p.token);
            let body = json!({"reports": slice(&rows, p.start.into(), p.count), "total_items": rows.len()});
            page_response(body, p.malformed)
        });
    reply(info, result)
}

async fn warehouse(State(shared): Shr, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let mut info = Info { source: Some(Source::Warehouse), ..Info::default() };
    let result = warehouse_page(&shared, &headers, raw.as_deref(), &mut info).await;
    reply(info, result)
}

async fn warehouse_page(
    shared: &Shared,
    headers: &HeaderMap,
    raw: Option<&str>,
    info: &mut Info,
) -> Result<Response, Failure> {
    let GetPage { token, issued, q, client, week } = get_page(shared, headers, raw, info)?;
    let page = number(&q, "page", 1)?;
    if page == 0 {
        return Err(Failure::bad_request("`page` counts from 1"));
    }
    info.page = Some(page - 1);
    let malformed = admit(shared, &issued, Source::Warehouse, client, week, page - 1, info).await?;
    let rows = rows_for(client, Source::Warehouse, week, &token);
    let start = u64::from(page - 1) * u64::from(PAGE_SIZE);
    let next = (start + u64::from(PAGE_SIZE) < rows.len() as u64).then(|| page + 1);
    let body = json!({"rows": slice(&rows, start, PAGE_SIZE), "next_page": next});
    Ok(page_response(body, malformed))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ga4Request {
    client: String,
    week: String,
    #[serde(default)]
    offset: u32,
    #[serde(default = "page_default")]
    limit: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchConsoleRequest {
    client: String,
    week: String,
    #[serde(default)]
    start_row: u32,
    #[serde(default = "page_default")]
    row_limit: u32,
}

fn page_default() -> u32 {
    PAGE_SIZE
}

/// Admits a page of a POST source whose body names (client, week, offset, size).
async fn post_page(
    shared: &Shared,
    issued: &Token,
    source: Source,
    (client_field, week_field): (&str, &str),
    (start, size_name, size): (u32, &str, u32),
    info: &mut Info,
) -> Result<(u32, Week, u32, bool), Failure> {
    let client = client(shared, Some(client_field))?;
    info.client = Some(client_id(client));
    let week = week(Some(week_field))?;
    info.week = Some(week);
    let size = page_size(size_name, size)?;
    info.page = Some(start / PAGE_SIZE);
    let malformed = admit(shared, issued, source, client, week, start / PAGE_SIZE, info).await?;
    Ok((client, week, size, malformed))
}

async fn ga4(State(shared): Shr, headers: HeaderMap, raw: Result<Bytes, BytesRejection>) -> Response {
    let mut info = Info { source: Some(Source::Ga4), ..Info::default() };
    let result = async {
        let (token, issued) = bearer(&shared, &headers)?;
        let req: Ga4Request = body(raw)?;
        let (client, week, limit, malformed) = post_page(
            &shared,
            &issued,
            Source::Ga4,
            (&req.client, &req.week),
            (req.offset, "limit", req.limit),
            &mut info,
        )
        .await?;
        let rows = rows_for(client, Source::Ga4, week, &token);
        let body = json!({"rows": slice(&rows, req.offset.into(), limit), "rowCount": rows.len()});
        Ok(page_response(body, malformed))
    }
    .await;
    reply(info, result)
}

async fn search_console(State(shared): Shr, headers: HeaderMap, raw: Result<Bytes, BytesRejection>) -> Response {
    let mut info = Info { source: Some(Source::SearchConsole), ..Info::default() };
    let result = async {
        let (token, issued) = bearer(&shared, &headers)?;
        let req: SearchConsoleRequest = body(raw)?;
        let (client, week, limit, malformed) = post_page(
            &shared,
            &issued,
            Source::SearchConsole,
            (&req.client, &req.week),
            (req.start_row, "rowLimit", req.row_limit),
            &mut info,
        )
        .await?;
        let rows = rows_for(client, Source::SearchConsole, week, &token);
        let body = json!({"rows": slice(&rows, req.start_row.into(), limit)});
        Ok(page_response(body, malformed))
    }
    .await;
    reply(info, result)
}

// ---- agency, tokens ----

async fn clients(State(shared): Shr) -> Response {
    let clients: Vec<Client> = (1..=shared.clients).map(Client::new).collect();
    json_response(StatusCode::OK, json!({ "clients": clients }))
}

#[derive(Deserialize)]
struct TokenRequest {
    client: String,
    source: String,
}

async fn token(State(shared): Shr, raw: Result<Bytes, BytesRejection>) -> Response {
    let mut info = Info::default();
    let result = (|| {
        let req: TokenRequest = body(raw)?;
        let source = Source::parse(&req.source);
        info.source = source;
        let client = data::parse_client(&req.client, shared.clients).ok_or_else(|| {
            Failure::new(StatusCode::BAD_REQUEST, "unknown_client", format!("no client `{}`", req.client))
        })?;
        info.client = Some(client_id(client));
        let source = source.ok_or_else(|| {
            let known: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
            let message = format!("no source `{}`: use one of {}", req.source, known.join(", "));
            Failure::new(StatusCode::BAD_REQUEST, "unknown_source", message)
        })?;
        let token = shared.lock().issue_token(shared.seed, &shared.faults, client, source);
        Ok(json_response(StatusCode::OK, json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})))
    })();
    reply(info, result)
}

// ---- warehouse tables ----

#[derive(Deserialize)]
struct SnapshotRequest {
    client: String,
    week: String,
    digest: String,
    row_hashes: Vec<String>,
}

async fn snapshot(
    State(shared): Shr,
    table: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let mut info = Info::default();
    let result = (|| {
        let Path(table) = table.map_err(|e| Failure::bad_request(e.body_text()))?;
        if !TABLES.contains(&table.as_str()) {
            let message = format!("no table `{table}`: tables are {}", TABLES.join(", "));
            return Err(Failure::new(StatusCode::NOT_FOUND, "unknown_table", message));
        }
        let key = idempotency_key(&headers)?;
        let req: SnapshotRequest = body(raw)?;
        let client = client(&shared, Some(&req.client))?;
        info.client = Some(client_id(client));
        let week = week(Some(&req.week))?;
        info.week = Some(week);
        if !is_hex(&req.digest) {
            return Err(Failure::bad_request("`digest` must be a hex string"));
        }
        if let Some(i) = req.row_hashes.iter().position(|h| !is_hex(h)) {
            return Err(Failure::bad_request(format!("row_hashes[{i}] is not a hex string")));
        }
        let snapshot = Snapshot {
            table,
            client: client_id(client),
            week: week.to_string(),
            digest: req.digest.to_ascii_lowercase(),
            rows: req.row_hashes.len(),
            idempotency_key: key,
            changed: false,
            previous_digest: None,
            stored_at: jiff::Timestamp::now().to_string(),
        };
        let answer = shared.lock().snapshot(snapshot, week);
        Ok(json_response(
            StatusCode::OK,
            json!({"stored": true, "changed": answer.changed, "previous_digest": answer.previous_digest}),
        ))
    })();
    reply(info, result)
}

// ---- mail ----

#[derive(Deserialize)]
struct MailRequest {
    to: String,
    subject: String,
    /// Required by the shape; the upstream keeps only the attachment.
    #[allow(dead_code)]
    text: String,
    attachments: Vec<Attachment>,
}

#[derive(Deserialize)]
struct Attachment {
    filename: String,
    content_type: String,
    content_base64: String,
}

/// Base64 with or without padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

async fn send_mail(State(shared): Shr, headers: HeaderMap, raw: Result<Bytes, BytesRejection>) -> Response {
    let mut info = Info::default();
    let result = send(&shared, &headers, raw, &mut info).await;
    reply(info, result)
}

async fn send(
    shared: &Shared,
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    info: &mut Info,
) -> Result<Response, Failure> {
    let key = idempotency_key(headers)?;
    let req: MailRequest = body(raw)?;
    let to = req.to.trim();
    if to.is_empty() || to.len() > 320 || !to.contains('@') || to.chars().any(char::is_whitespace) {
        return Err(Failure::bad_request(format!("`to` is not an email address: `{}`", req.to)));
    }
    if req.attachments.is_empty() || req.attachments.len() > ATTACHMENT_LIMIT {
        return Err(Failure::bad_request(format!("a mail takes 1 to {ATTACHMENT_LIMIT} attachments (the report)")));
    }
    let mut first = None;
    for (i, a) in req.attachments.iter().enumerate() {
        if a.filename.trim().is_empty() || a.content_type.trim().is_empty() {
            return Err(Failure::bad_request(format!("attachments[{i}] needs a filename and a content_type")));
        }
        let bytes = BASE64
            .decode(a.content_base64.trim())
            .map_err(|e| Failure::bad_request(format!("attachments[{i}].content_base64 is not base64: {e}")))?;
        first.get_or_insert(bytes);
    }
    let attachment = first.unwrap_or_default();
    let client = (1..=shared.clients).find(|&n| data::client_email(n).eq_ignore_ascii_case(to)).map(client_id);
    let filename = req.attachments[0].filename.clone();
    let week = data::find_week(&req.subject).or_else(|| data::find_week(&filename));
    info.client = client.clone();
    info.week = week;
    let email = Email {
        id: String::new(),
        client,
        week: week.map(|w| w.to_string()),
        to: to.to_owned(),
        subject: req.subject,
        idempotency_key: key.clone(),
        attachment_filename: filename,
        attachment_bytes: attachment.len() as u64,
        attachment_sha256: hex::encode(Sha256::digest(&attachment)),
        received_at: jiff::Timestamp::now().to_string(),
        answer_lost: false,
    };
    let lost = shared.faults.mail_504(&key);
    let sent = shared.lock().send(email, attachment.clone(), lost);
    match sent {
        Sent::Duplicate { id, client } => {
            info.client = client;
            Ok(json_response(StatusCode::OK, json!({"id": id, "duplicate": true})))
        }
        Sent::New { email, lost } => {
            if let Some(dir) = &shared.outbox {
                let name = match (&email.client, &email.week) {
                    (Some(client), Some(week)) => format!("{client}-{week}.pdf"),
                    _ => format!("{}.pdf", email.id),
                };
                if let Err(e) = tokio::fs::write(dir.join(&name), &attachment).await {
                    tracing::warn!(error = %e, file = %dir.join(&name).display(), "cannot write to the outbox");
                }
            }
            if lost {
                info.fault = Some(Fault::Mail504);
                return Err(Failure::gateway_timeout());
            }
            Ok(json_response(StatusCode::ACCEPTED, json!({"id": email.id, "duplicate": false})))
        }
    }
}

// ---- inspection ----

async fn inspect_emails(State(shared): Shr) -> Response {
    let state = shared.lock();
    json_response(StatusCode::OK, json!({"emails": state.emails(), "duplicates": state.duplicates()}))
}

async fn inspect_attachment(State(shared): Shr, id: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(id)) = id else {
        return Failure::bad_request("bad email id").into_response();
    };
    let bytes = shared.lock().attachment(&id).map(<[u8]>::to_vec);
    match bytes {
        Some(bytes) => ([(CONTENT_TYPE, "application/pdf")], bytes).into_response(),
        None => Failure::new(StatusCode::NOT_FOUND, "not_found", format!("no email `{id}`")).into_response(),
    }
}

async fn inspect_requests(State(shared): Shr, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let after = match q.get("after").map(|v| v.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Failure::bad_request("`after` must be a request id").into_response(),
    };
    let limit = match q.get("limit").map(|v| v.parse::<usize>()) {
        None => REQUESTS_PAGE,
        Some(Ok(n)) => n.min(REQUESTS_PAGE),
        Some(Err(_)) => return Failure::bad_request("`limit` must be a number").into_response(),
    };
    let requests = shared.lock().requests(after, limit);
    json_response(StatusCode::OK, json!({ "requests": requests }))
}

async fn inspect_snapshots(State(shared): Shr) -> Response {
    json_response(StatusCode::OK, json!({"snapshots": shared.lock().snapshots()}))
}

async fn inspect_stats(State(shared): Shr) -> Response {
    let stats = shared.lock().stats();
    json_response(StatusCode::OK, json!(stats))
}
