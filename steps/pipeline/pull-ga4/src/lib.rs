//! `pull-ga4`: a client-week of GA4 page reports.
//!
//! `POST /ga4/v1beta/runReport` with `{"client", "week", "offset", "limit"}`,
//! from offset 0 while `offset + limit < rowCount`. GA4 orders rows per
//! token, so a pull that has to refresh its token starts over. A page that
//! comes back truncated is a retryable error ("page N of ga4 … is
//! malformed"). Input `{"client", "week", "base_url", "token"}`; output the
//! raw rows in the order received (see [`PullOutput`]).

use ferry_sdk::{Result, http};
use pipeline_common::net::{self, Target};
use pipeline_common::paging::{PageError, offset_next, parse_page};
use pipeline_common::{PAGE_SIZE, PullInput, PullOutput, Source};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    rows: Vec<Value>,
    row_count: u64,
}

fn request(target: &Target, offset: &u32) -> http::RequestBuilder {
    http::post(target.url("/ga4/v1beta/runReport")).json(&json!({
        "client": target.client,
        "week": target.week.to_string(),
        "offset": offset,
        "limit": PAGE_SIZE,
    }))
}

fn parse(offset: &u32, body: &[u8]) -> Result<(Vec<Value>, Option<u32>), PageError> {
    let page: Page = parse_page(body)?;
    let next = offset_next(*offset, PAGE_SIZE, page.row_count)?;
    if next.is_some() && page.rows.is_empty() {
        return Err(PageError::Malformed(format!("no rows at offset {offset} of rowCount {}", page.row_count)));
    }
    Ok((page.rows, next))
}

#[ferry_sdk::step]
fn pull_ga4(input: PullInput) -> Result<PullOutput> {
    net::pull(&input, Source::Ga4, 0, request, parse)
}
