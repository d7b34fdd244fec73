//! `render-pdf`: the weekly report as a PDF, made inside the sandbox.
//!
//! Input `{"client", "name", "week", "ads": {summary}, "web": {summary},
//! "crm": {summary}}`, where a summary is a transform's output without
//! `rows` and `row_hashes` (a whole output is accepted too). Output
//! `{"pdf", "bytes", "sha256", "pages"}`, where `pdf` is the blob reference
//! (`sha256:<hex>`) of the PDF: the bytes are stored once by the host
//! (`ferry_sdk::put_blob`) and only the reference travels through the
//! journal. The same input gives the same bytes: the page layout is in
//! [`pdf`].

mod pdf;

use ferry_sdk::{Error, Result};
use pipeline_common::hash::sha256_hex;
use pipeline_common::tables::{self, AdsSummary, CrmSummary, Summary, WebSummary};
use pipeline_common::types::check_client;
use pipeline_common::week::Week;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    client: String,
    name: String,
    week: String,
    ads: AdsSummary,
    web: WebSummary,
    crm: CrmSummary,
}

#[derive(Serialize)]
struct Output {
    /// The blob reference of the PDF.
    pdf: String,
    bytes: usize,
    sha256: String,
    pages: u32,
}

/// A fatal error unless `summary` is table `table` of (client, week).
fn check<T, D>(summary: &Summary<T, D>, table: &str, client: &str, week: &Week) -> Result<()> {
    if summary.table != table || summary.client != client || summary.week != week.to_string() {
        return Err(Error::fatal(format!(
            "`{table}` must be the {table} table of {client} {week}, not the {} table of {} {}",
            summary.table, summary.client, summary.week
        )));
    }
    if summary.daily.len() != 7 {
        return Err(Error::fatal(format!("`{table}.daily` must have the week's 7 days, not {}", summary.daily.len())));
    }
    Ok(())
}

#[ferry_sdk::step]
fn render_pdf(input: Input) -> Result<Output> {
    check_client(&input.client)?;
    let week = Week::parse_input(&input.week)?;
    let name = input.name.trim();
    if name.is_empty() {
        return Err(Error::fatal("`name` (the client's name for the title) is empty"));
    }
    check(&input.ads, tables::ADS, &input.client, &week)?;
    check(&input.web, tables::WEB, &input.client, &week)?;
    check(&input.crm, tables::CRM, &input.client, &week)?;
    let report = pdf::Report {
        client: input.client,
        name: name.to_owned(),
        week,
        ads: input.ads,
        web: input.web,
        crm: input.crm,
    };
    let bytes = pdf::render(&report);
    let sha256 = sha256_hex(&bytes);
    ferry_sdk::info!("report of {} {}: {} bytes, sha256 {}", report.client, report.week, bytes.len(), sha256);
    Ok(Output { pdf: ferry_sdk::put_blob(&bytes), bytes: bytes.len(), sha256, pages: 1 })
}
