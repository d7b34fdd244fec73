//! `pull-meta`: a client-week of Meta ad insights.
//!
//! `GET /meta/v1/insights?client=&week=`, then each page's `paging.next` (an
//! absolute URL carrying `after=CURSOR`) until it is absent. Input
//! `{"client", "week", "base_url", "token"}`; output the raw rows in the
//! order received (see [`PullOutput`]). 429s (bursts and the global rate
//! limit) carry `Retry-After`, which the host honours before the next
//! attempt.

use ferry_sdk::{Result, http};
use pipeline_common::net::{self, Target};
use pipeline_common::paging::{PageError, next_link, parse_page};
use pipeline_common::{PullInput, PullOutput, Source};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Page {
    data: Vec<Value>,
    #[serde(default)]
    paging: Paging,
}

#[derive(Deserialize, Default)]
struct Paging {
    next: Option<String>,
}

/// `None` is the first page; after it, the URL `paging.next` gave.
type Cursor = Option<String>;

fn request(target: &Target, cursor: &Cursor) -> http::RequestBuilder {
    match cursor {
        None => http::get(target.url("/meta/v1/insights"))
            .query("client", &target.client)
            .query("week", &target.week.to_string()),
        Some(url) => http::get(url.as_str()),
    }
}

fn parse(cursor: &Cursor, body: &[u8]) -> Result<(Vec<Value>, Option<Cursor>), PageError> {
    let page: Page = parse_page(body)?;
    let read: Vec<String> = cursor.iter().cloned().collect();
    let next = next_link(&read, page.paging.next.as_deref())?;
    Ok((page.data, next.map(Some)))
}

#[ferry_sdk::step]
fn pull_meta(input: PullInput) -> Result<PullOutput> {
    net::pull(&input, Source::Meta, None, request, parse)
}
