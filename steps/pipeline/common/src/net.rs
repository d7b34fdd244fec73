//! Talking to the upstream through the Ferry host: the pagination driver of
//! the pull steps, tokens, table snapshots and small JSON calls.
//!
//! These functions make host calls, so only a component can run them; the
//! native tests test the pure parts they are made of ([`crate::paging`],
//! [`crate::tables`]).
//!
//! How failures map (every message names the source, the page and what came
//! back):
//!
//! | what happened | error |
//! |---|---|
//! | 429, or 5xx with `Retry-After` | retryable; the host waits at least `Retry-After` |
//! | 502/503/504 without `Retry-After` | the page is asked again at once, up to [`MAX_ASKS_PER_PAGE`] times in all, then retryable |
//! | other 5xx | retryable |
//! | 401 `token_expired` | a new token from `/oauth/token`, once per attempt, and the pagination starts over with it |
//! | any other 401, or another 4xx | fatal |
//! | a 200 whose body is not the page | retryable: `page N of SOURCE … is malformed: …` |
//! | a cursor that does not advance, or more than [`MAX_PAGES`] pages | fatal |
//! | no response (timeout, connection) | retryable; a denied host is fatal |

use ferry_sdk::http::{self, RequestBuilder, Response};
use ferry_sdk::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::paging::PageError;
use crate::tables::SnapshotAnswer;
use crate::types::{PullInput, PullOutput, Source, base_url};
use crate::week::Week;

/// How many times one attempt asks for a page that answers 502, 503 or 504
/// without `Retry-After` before it gives up (retryable) and leaves the wait
/// to the host's retry policy. Gateways fail in short clusters; asking again
/// at once saves restarting the whole pull, and each attempt asks at most
/// this many times.
pub const MAX_ASKS_PER_PAGE: u32 = 3;

/// The most pages one pull follows before it calls the pagination endless.
pub const MAX_PAGES: u32 = 1000;

/// Where a pull's requests go, for the request builders of the pull steps.
#[derive(Debug, Clone)]
pub struct Target {
    /// `base_url` without a trailing slash.
    pub base: String,
    pub client: String,
    pub week: Week,
}

impl Target {
    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

enum Fetched {
    Body(Vec<u8>),
    TokenExpired,
}

/// Pulls every page of `source` for the input's client and week.
///
/// `request` builds the request for a cursor (without credentials: the
/// driver adds the bearer token); `parse` reads a page body into its rows and
/// the next cursor (`None` after the last page), using [`crate::paging`].
/// The pagination starts at `first`. A cursor seen before fails the pull
/// (fatal), as does a pagination longer than [`MAX_PAGES`].
///
/// On `401 token_expired` the driver asks `/oauth/token` for a new token of
/// the source once and starts the pagination over with it (GA4 and Search
/// Console order rows per token, so pages of two tokens must not be mixed).
pub fn pull<C, Req, Parse>(
    input: &PullInput,
    source: Source,
    first: C,
    request: Req,
    parse: Parse,
) -> Result<PullOutput>
where
    C: Clone + PartialEq,
    Req: Fn(&Target, &C) -> RequestBuilder,
    Parse: Fn(&C, &[u8]) -> std::result::Result<(Vec<Value>, Option<C>), PageError>,
{
    let (week, base) = input.check()?;
    let target = Target { base, client: input.client.clone(), week };
    let mut token = input.token.clone();
    let mut refreshed = false;
    'pagination: loop {
        let mut rows = Vec::new();
        let mut visited = vec![first.clone()];
        let mut cursor = first.clone();
        for page in 1..=MAX_PAGES {
            let what = format!("page {page} of {source} for {} {week}", input.client);
            let body = match fetch_page(&what, &token, || request(&target, &cursor))? {
                Fetched::Body(body) => body,
                Fetched::TokenExpired if refreshed => {
                    return Err(Error::retryable(format!(
                        "{what}: the token was refused as expired again, after a refresh"
                    )));
                }
                Fetched::TokenExpired => {
                    ferry_sdk::info!("{what}: the token has expired; asking for a new one and starting over");
                    token = refresh_token(&target.base, &input.client, source)?;
                    refreshed = true;
                    continue 'pagination;
                }
            };
            let (page_rows, next) = parse(&cursor, &body).map_err(|e| match e {
                PageError::Malformed(m) => Error::retryable(format!("{what} is malformed: {m}")),
                PageError::Stuck(m) => Error::fatal(format!("{what} cannot be followed: {m}")),
            })?;
            ferry_sdk::info!(
                "{source} page {page}: {} rows{}",
                page_rows.len(),
                if next.is_some() { "" } else { ", the last page" }
            );
            rows.extend(page_rows);
            match next {
                None => {
                    return Ok(PullOutput {
                        source,
                        client: input.client.clone(),
                        week: week.to_string(),
                        rows,
                        pages: page,
                        token_refreshed: refreshed,
                    });
                }
                Some(next) if visited.contains(&next) => {
                    return Err(Error::fatal(format!("{what} cannot be followed: its next page is one already read")));
                }
                Some(next) => {
                    visited.push(next.clone());
                    cursor = next;
                }
            }
        }
        return Err(Error::fatal(format!(
            "{source} for {} {week}: more than {MAX_PAGES} pages; the pagination does not end",
            input.client
        )));
    }
}

/// One page: the body of a 2xx, or the news that the token expired.
fn fetch_page(what: &str, token: &str, build: impl Fn() -> RequestBuilder) -> Result<Fetched> {
    let mut ask = 1;
    loop {
        let resp = build()
            .bearer(token)
            .header("accept", "application/json")
            .send()
            .map_err(|e| Error::from(e).context(what))?;
        let status = resp.status();
        if status == 401 {
            let code = error_code(&resp);
            if code.as_deref() == Some("token_expired") {
                return Ok(Fetched::TokenExpired);
            }
            return Err(Error::fatal(format!(
                "{what}: the token was refused: HTTP 401 {}",
                code.unwrap_or_else(|| "without an error code".into())
            )));
        }
        if matches!(status, 502..=504) && resp.header("retry-after").is_none() && ask < MAX_ASKS_PER_PAGE {
            ferry_sdk::warn!("{what}: HTTP {status}; asking again ({} of {MAX_ASKS_PER_PAGE})", ask + 1);
            ask += 1;
            continue;
        }
        let resp = resp.error_for_status().map_err(|e| e.context(what))?;
        return Ok(Fetched::Body(resp.into_bytes()));
    }
}

/// The `error` field of a JSON error body.
fn error_code(resp: &Response) -> Option<String> {
    let body: Value = serde_json::from_slice(resp.bytes()).ok()?;
    body.get("error")?.as_str().map(str::to_owned)
}

/// Parses a 2xx answer into `T`; a body that does not fit is a retryable
/// error ("the answer to WHAT is malformed"): the server sent something
/// broken, and the request is safe to repeat.
pub fn parse_answer<T: DeserializeOwned>(resp: &Response, what: &str) -> Result<T> {
    serde_json::from_slice(resp.bytes()).map_err(|e| {
        Error::retryable(format!("the answer to {what} is malformed: {e} (HTTP {} from {})", resp.status(), resp.url()))
    })
}

/// Sends `request` and returns its 2xx answer parsed as `T`; every failure
/// carries `what` as context.
pub fn call<T: DeserializeOwned>(request: RequestBuilder, what: &str) -> Result<T> {
    let resp = request
        .header("accept", "application/json")
        .send()
        .map_err(|e| Error::from(e).context(what))?
        .error_for_status()
        .map_err(|e| e.context(what))?;
    parse_answer(&resp, what)
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

/// A new token for (`client`, `source`) from `POST {base}/oauth/token`.
/// `base` is a checked base URL ([`base_url`]).
pub fn refresh_token(base: &str, client: &str, source: Source) -> Result<String> {
    let what = format!("the {source} token request for {client}");
    let answer: TokenAnswer =
        call(http::post(format!("{base}/oauth/token")).json(&json!({"client": client, "source": source})), &what)?;
    if answer.access_token.trim().is_empty() {
        return Err(Error::retryable(format!("the answer to {what} is malformed: an empty access_token")));
    }
    Ok(answer.access_token)
}

#[derive(Serialize)]
struct SnapshotBody<'a> {
    client: &'a str,
    week: String,
    digest: &'a str,
    row_hashes: &'a [String],
}

/// Stores a table snapshot: `POST {base_url}/warehouse/v1/tables/{table}/snapshots`
/// with this step call's stable idempotency key, so a retried attempt gets
/// the first answer back instead of storing twice.
pub fn store_snapshot(
    base_url_text: &str,
    table: &str,
    client: &str,
    week: Week,
    digest: &str,
    row_hashes: &[String],
) -> Result<SnapshotAnswer> {
    let base = base_url(base_url_text)?;
    let key = ferry_sdk::run_info().idempotency_key;
    if key.is_empty() {
        return Err(Error::fatal("the host gave this step call no idempotency key"));
    }
    let what = format!("the {table} snapshot of {client} {week}");
    let body = SnapshotBody { client, week: week.to_string(), digest, row_hashes };
    let answer: SnapshotAnswer = call(
        http::post(format!("{base}/warehouse/v1/tables/{table}/snapshots")).header("idempotency-key", key).json(&body),
        &what,
    )?;
    ferry_sdk::info!(
        "stored {what}: {} rows, digest {}, {}",
        row_hashes.len(),
        &digest[..digest.len().min(12)],
        match (&answer.changed, &answer.previous_digest) {
            (_, None) => "the first snapshot".to_owned(),
            (true, Some(p)) => format!("changed since {}", &p[..p.len().min(12)]),
            (false, Some(_)) => "unchanged".to_owned(),
        }
    );
    Ok(answer)
}
