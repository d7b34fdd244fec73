//! `pull-linkedin`: a client-week of LinkedIn ad analytics.
//!
//! `GET /linkedin/v2/adAnalytics?client=&week=&start=S&count=10`, from
//! `start=0` while `paging.start + paging.count < paging.total`. Input
//! `{"client", "week", "base_url", "token"}`; output the raw rows in the
//! order received (see [`PullOutput`]). A 504 is asked again at once (up to
//! three asks per page), then left to the host's retry policy.

use ferry_sdk::{Result, http};
use pipeline_common::net::{self, Target};
use pipeline_common::paging::{PageError, offset_next, parse_page};
use pipeline_common::{PAGE_SIZE, PullInput, PullOutput, Source};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Page {
    elements: Vec<Value>,
    paging: Paging,
}

#[derive(Deserialize)]
struct Paging {
    start: u32,
    count: u32,
    total: u64,
}

fn request(target: &Target, start: &u32) -> http::RequestBuilder {
    http::get(target.url("/linkedin/v2/adAnalytics"))
        .query("client", &target.client)
        .query("week", &target.week.to_string())
        .query("start", &start.to_string())
        .query("count", &PAGE_SIZE.to_string())
}

fn parse(start: &u32, body: &[u8]) -> Result<(Vec<Value>, Option<u32>), PageError> {
    let page: Page = parse_page(body)?;
    if page.paging.start != *start {
        return Err(PageError::Malformed(format!("asked for start={start}, got paging.start={}", page.paging.start)));
    }
    let next = offset_next(page.paging.start, page.paging.count, page.paging.total)?;
    Ok((page.elements, next))
}

#[ferry_sdk::step]
fn pull_linkedin(input: PullInput) -> Result<PullOutput> {
    net::pull(&input, Source::Linkedin, 0, request, parse)
}
