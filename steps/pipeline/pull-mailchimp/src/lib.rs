//! `pull-mailchimp`: a client-week of Mailchimp campaign reports.
//!
//! `GET /mailchimp/3.0/reports?client=&week=&offset=O&count=10`, from
//! offset 0 while `offset + count < total_items`. Input `{"client", "week",
//! "base_url", "token"}`; output the raw rows in the order received (see
//! [`PullOutput`]).

use ferry_sdk::{Result, http};
use pipeline_common::net::{self, Target};
use pipeline_common::paging::{PageError, offset_next, parse_page};
use pipeline_common::{PAGE_SIZE, PullInput, PullOutput, Source};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Page {
    reports: Vec<Value>,
    total_items: u64,
}

fn request(target: &Target, offset: &u32) -> http::RequestBuilder {
    http::get(target.url("/mailchimp/3.0/reports"))
        .query("client", &target.client)
        .query("week", &target.week.to_string())
        .query("offset", &offset.to_string())
        .query("count", &PAGE_SIZE.to_string())
}

fn parse(offset: &u32, body: &[u8]) -> Result<(Vec<Value>, Option<u32>), PageError> {
    let page: Page = parse_page(body)?;
    let next = offset_next(*offset, PAGE_SIZE, page.total_items)?;
    if next.is_some() && page.reports.is_empty() {
        return Err(PageError::Malformed(format!("no reports at offset {offset} of total_items {}", page.total_items)));
    }
    Ok((page.reports, next))
}

#[ferry_sdk::step]
fn pull_mailchimp(input: PullInput) -> Result<PullOutput> {
    net::pull(&input, Source::Mailchimp, 0, request, parse)
}
