//! `transform-crm`: the `crm` table from Mailchimp and the warehouse's orders.
//!
//! Input `{"client", "week", "base_url", "mailchimp": <pull-mailchimp output>,
//! "warehouse": <pull-warehouse output>}`. The rows of both sources become one
//! table with fixed fields, sorted by (date, source, key) so the result never
//! depends on the order the upstream sent them in; `row_hashes` and
//! `digest` are computed over the sorted rows. The snapshot is stored with
//! `POST /warehouse/v1/tables/crm/snapshots` under this call's stable
//! idempotency key. Output `{"table", "client", "week", "rows",
//! "row_hashes", "digest", "changed", "previous_digest", "totals", "daily"}`
//! (see `pipeline_common::tables`).

use ferry_sdk::Result;
use pipeline_common::tables::{self, CrmDay, CrmRow, CrmTotals, TableOutput};
use pipeline_common::types::{base_url, check_client};
use pipeline_common::{PullOutput, Source, Week, net};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    client: String,
    week: String,
    base_url: String,
    mailchimp: PullOutput,
    warehouse: PullOutput,
}

#[ferry_sdk::step]
fn transform_crm(input: Input) -> Result<TableOutput<CrmRow, CrmTotals, CrmDay>> {
    check_client(&input.client)?;
    let week = Week::parse_input(&input.week)?;
    base_url(&input.base_url)?;
    input.mailchimp.check(Source::Mailchimp, &input.client, &week)?;
    input.warehouse.check(Source::Warehouse, &input.client, &week)?;
    let table = tables::crm(week, &input.mailchimp.rows, &input.warehouse.rows)?;
    ferry_sdk::info!(
        "crm table of {} {}: {} rows ({} from mailchimp, {} from warehouse), digest {}",
        input.client,
        week,
        table.rows.len(),
        input.mailchimp.rows.len(),
        input.warehouse.rows.len(),
        table.digest
    );
    let answer =
        net::store_snapshot(&input.base_url, tables::CRM, &input.client, week, &table.digest, &table.row_hashes)?;
    Ok(table.into_output(tables::CRM, &input.client, week, answer))
}
