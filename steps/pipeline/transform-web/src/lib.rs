//! `transform-web`: the `web` table from GA4 and Search Console.
//!
//! Input `{"client", "week", "base_url", "ga4": <pull-ga4 output>,
//! "search_console": <pull-search-console output>}`. The rows of both sources become one
//! table with fixed fields, sorted by (date, source, key) so the result never
//! depends on the order the upstream sent them in; `row_hashes` and
//! `digest` are computed over the sorted rows. The snapshot is stored with
//! `POST /warehouse/v1/tables/web/snapshots` under this call's stable
//! idempotency key. Output `{"table", "client", "week", "rows",
//! "row_hashes", "digest", "changed", "previous_digest", "totals", "daily"}`
//! (see `pipeline_common::tables`).

use ferry_sdk::Result;
use pipeline_common::tables::{self, TableOutput, WebDay, WebRow, WebTotals};
use pipeline_common::types::{base_url, check_client};
use pipeline_common::{PullOutput, Source, Week, net};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    client: String,
    week: String,
    base_url: String,
    ga4: PullOutput,
    search_console: PullOutput,
}

#[ferry_sdk::step]
fn transform_web(input: Input) -> Result<TableOutput<WebRow, WebTotals, WebDay>> {
    check_client(&input.client)?;
    let week = Week::parse_input(&input.week)?;
    base_url(&input.base_url)?;
    input.ga4.check(Source::Ga4, &input.client, &week)?;
    input.search_console.check(Source::SearchConsole, &input.client, &week)?;
    let table = tables::web(week, &input.ga4.rows, &input.search_console.rows)?;
    ferry_sdk::info!(
        "web table of {} {}: {} rows ({} from ga4, {} from search-console), digest {}",
        input.client,
        week,
        table.rows.len(),
        input.ga4.rows.len(),
        input.search_console.rows.len(),
        table.digest
    );
    let answer =
        net::store_snapshot(&input.base_url, tables::WEB, &input.client, week, &table.digest, &table.row_hashes)?;
    Ok(table.into_output(tables::WEB, &input.client, week, answer))
}
