//! `transform-ads`: the `ads` table from Meta and LinkedIn.
//!
//! Input `{"client", "week", "base_url", "meta": <pull-meta output>,
//! "linkedin": <pull-linkedin output>}`. The rows of both sources become one
//! table with fixed fields, sorted by (date, source, key) so the result never
//! depends on the order the upstream sent them in; `row_hashes` and
//! `digest` are computed over the sorted rows. The snapshot is stored with
//! `POST /warehouse/v1/tables/ads/snapshots` under this call's stable
//! idempotency key. Output `{"table", "client", "week", "rows",
//! "row_hashes", "digest", "changed", "previous_digest", "totals", "daily"}`
//! (see `pipeline_common::tables`).

use ferry_sdk::Result;
use pipeline_common::tables::{self, AdsDay, AdsRow, AdsTotals, TableOutput};
use pipeline_common::types::{base_url, check_client};
use pipeline_common::{PullOutput, Source, Week, net};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    client: String,
    week: String,
    base_url: String,
    meta: PullOutput,
    linkedin: PullOutput,
}

#[ferry_sdk::step]
fn transform_ads(input: Input) -> Result<TableOutput<AdsRow, AdsTotals, AdsDay>> {
    check_client(&input.client)?;
    let week = Week::parse_input(&input.week)?;
    base_url(&input.base_url)?;
    input.meta.check(Source::Meta, &input.client, &week)?;
    input.linkedin.check(Source::Linkedin, &input.client, &week)?;
    let table = tables::ads(week, &input.meta.rows, &input.linkedin.rows)?;
    ferry_sdk::info!(
        "ads table of {} {}: {} rows ({} from meta, {} from linkedin), digest {}",
        input.client,
        week,
        table.rows.len(),
        input.meta.rows.len(),
        input.linkedin.rows.len(),
        table.digest
    );
    let answer =
        net::store_snapshot(&input.base_url, tables::ADS, &input.client, week, &table.digest, &table.row_hashes)?;
    Ok(table.into_output(tables::ADS, &input.client, week, answer))
}
