//! `refresh-tokens`: one fresh token per source for a client.
//!
//! Input `{"client", "base_url"}` → one `POST /oauth/token` per source
//! (meta, linkedin, ga4, search-console, mailchimp, warehouse) → output
//! `{"client", "tokens": {"meta": "tok_…", …}}`. A 400 (unknown client or
//! source) is fatal; 429/5xx and broken answers are retryable, and a retried
//! attempt simply asks for new tokens (earlier ones stay valid).

use std::collections::BTreeMap;

use ferry_sdk::Result;
use pipeline_common::types::{base_url, check_client};
use pipeline_common::{Source, Tokens, net};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    client: String,
    base_url: String,
}

#[ferry_sdk::step]
fn refresh_tokens(input: Input) -> Result<Tokens> {
    check_client(&input.client)?;
    let base = base_url(&input.base_url)?;
    let mut tokens = BTreeMap::new();
    for source in Source::ALL {
        let token = net::refresh_token(&base, &input.client, source)?;
        tokens.insert(source.as_str().to_owned(), token);
    }
    ferry_sdk::info!("{} tokens for {}", tokens.len(), input.client);
    Ok(Tokens { client: input.client, tokens })
}
