//! `pull-search-console`: a client-week of Search Console queries.
//!
//! `POST /searchconsole/v1/query` with `{"client", "week", "startRow",
//! "rowLimit"}`, from row 0; a full page (`rowLimit` rows) means ask again,
//! so a multiple of ten rows ends with an empty page. Search Console orders
//! rows per token, so a pull that has to refresh its token starts over.
//! Input `{"client", "week", "base_url", "token"}`; output the raw rows in
//! the order received (see [`PullOutput`]).

use ferry_sdk::{Result, http};
use pipeline_common::net::{self, Target};
use pipeline_common::paging::{PageError, full_page_next, parse_page};
use pipeline_common::{PAGE_SIZE, PullInput, PullOutput, Source};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Page {
    /// Absent or empty past the last row.
    #[serde(default)]
    rows: Vec<Value>,
}

fn request(target: &Target, start_row: &u32) -> http::RequestBuilder {
    http::post(target.url("/searchconsole/v1/query")).json(&json!({
        "client": target.client,
        "week": target.week.to_string(),
        "startRow": start_row,
        "rowLimit": PAGE_SIZE,
    }))
}

fn parse(start_row: &u32, body: &[u8]) -> Result<(Vec<Value>, Option<u32>), PageError> {
    let page: Page = parse_page(body)?;
    let next = full_page_next(*start_row, PAGE_SIZE, page.rows.len())?;
    Ok((page.rows, next))
}

#[ferry_sdk::step]
fn pull_search_console(input: PullInput) -> Result<PullOutput> {
    net::pull(&input, Source::SearchConsole, 0, request, parse)
}
