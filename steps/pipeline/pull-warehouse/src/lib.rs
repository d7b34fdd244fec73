//! `pull-warehouse`: a client-week of orders from the warehouse.
//!
//! `GET /warehouse/v1/orders?client=&week=&page=P` from page 1 while
//! `next_page` is not null. Input `{"client", "week", "base_url", "token"}`;
//! output the raw rows in the order received (see [`PullOutput`]).

use ferry_sdk::{Result, http};
use pipeline_common::net::{self, Target};
use pipeline_common::paging::{PageError, next_page_number, parse_page};
use pipeline_common::{PullInput, PullOutput, Source};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Page {
    rows: Vec<Value>,
    next_page: Option<u32>,
}

fn request(target: &Target, page: &u32) -> http::RequestBuilder {
    http::get(target.url("/warehouse/v1/orders"))
        .query("client", &target.client)
        .query("week", &target.week.to_string())
        .query("page", &page.to_string())
}

fn parse(page: &u32, body: &[u8]) -> Result<(Vec<Value>, Option<u32>), PageError> {
    let body: Page = parse_page(body)?;
    let next = next_page_number(*page, body.next_page)?;
    Ok((body.rows, next))
}

#[ferry_sdk::step]
fn pull_warehouse(input: PullInput) -> Result<PullOutput> {
    net::pull(&input, Source::Warehouse, 1, request, parse)
}
