//! `weekly-report`: one client's weekly report (docs/PIPELINE.md), as twelve
//! durable step calls.
//!
//! Input `{"client", "name", "email", "week", "base_url"}`.
//!
//! - call 1, `refresh-tokens`: a token per source;
//! - calls 2 to 7, `pull-meta`, `pull-linkedin`, `pull-ga4`,
//!   `pull-search-console`, `pull-mailchimp`, `pull-warehouse`: in parallel
//!   (one `call_steps`);
//! - calls 8 to 10, `transform-ads`, `transform-web`, `transform-crm`: the
//!   tables, stored as snapshots;
//! - call 11, `render-pdf`: on the three summaries (the transforms' outputs
//!   without `rows` and `row_hashes`); it stores the PDF as a blob and
//!   returns its reference, which is all the journal and `send-email` see;
//! - call 12, `send-email`: keyed by client and week, so a report is never
//!   mailed twice.
//!
//! Output `{"client", "week", "message_id", "duplicate", "pdf": {"blob",
//! "sha256", "bytes"}, "changed": {"ads", "web", "crm"}, "step_runs": 12}`.
//!
//! Retry policies are per call and fit the upstream's faults: see
//! [`policy`].

use std::time::Duration;

use ferry_sdk::workflow::{self, RetryPolicy, StepCall, StepOptions};
use ferry_sdk::{Error, Result};
use pipeline_common::types::{base_url, check_client};
use pipeline_common::{PullInput, Source, Tokens, Week};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Input {
    client: String,
    name: String,
    email: String,
    week: String,
    base_url: String,
}

#[derive(Deserialize)]
struct Rendered {
    /// The PDF's blob reference: the bytes stay in the host's blob store.
    pdf: String,
    bytes: u64,
    sha256: String,
}

#[derive(Deserialize)]
struct Sent {
    message_id: String,
    duplicate: bool,
}

#[derive(Serialize)]
struct PdfInfo {
    /// The blob reference (download it from the dashboard or the API).
    blob: String,
    sha256: String,
    bytes: u64,
}

#[derive(Serialize)]
struct Changed {
    ads: bool,
    web: bool,
    crm: bool,
}

#[derive(Serialize)]
struct Output {
    client: String,
    week: String,
    message_id: String,
    duplicate: bool,
    pdf: PdfInfo,
    changed: Changed,
    step_runs: u32,
}

/// Which kind of step a call is, for its retry policy.
#[derive(Clone, Copy)]
enum Call {
    Tokens,
    Pull(Source),
    Transform,
    Render,
    Mail,
}

/// The retry policy of each call:
///
/// - pulls: 8 attempts, 200 ms doubling to 10 s, jitter 0.3. A page that
///   fails restarts the pull, and each failed attempt uses up one faulty ask
///   (LinkedIn's 504 clusters are mostly absorbed inside the attempt, which
///   asks a 502/503/504 page up to three times), so 8 covers the five pages
///   of the largest client-week;
/// - `pull-meta`: 15 attempts, 500 ms doubling to 8 s. Meta's 429 bursts
///   (1 to 3 asks of a page, `Retry-After: 1`, which the host honours) and
///   its global rate limit each cost an attempt; with the hostile profile's
///   25 % of pages that is up to 15 failures in the worst case;
/// - `refresh-tokens`, transforms: 6 attempts, 200/500 ms doubling;
/// - `render-pdf`: 2 attempts (pure computation: only a crash is worth a
///   second try);
/// - `send-email`: 6 attempts, 1 s doubling to 30 s. A 504 after the mail was
///   accepted is retried with the same idempotency key, which the mail API
///   dedupes.
fn policy(call: Call) -> RetryPolicy {
    let base = RetryPolicy::default().factor(2.0).jitter(0.3);
    match call {
        Call::Tokens => base.max_attempts(6).initial_delay(ms(200)).max_delay(ms(5_000)),
        Call::Pull(Source::Meta) => base.max_attempts(15).initial_delay(ms(500)).max_delay(ms(8_000)),
        Call::Pull(_) => base.max_attempts(8).initial_delay(ms(200)).max_delay(ms(10_000)),
        Call::Transform => base.max_attempts(6).initial_delay(ms(500)).max_delay(ms(10_000)),
        Call::Render => base.max_attempts(2).initial_delay(ms(200)).max_delay(ms(1_000)),
        Call::Mail => base.max_attempts(6).initial_delay(ms(1_000)).max_delay(ms(30_000)),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn options(call: Call) -> StepOptions {
    StepOptions::new().retry(policy(call))
}

/// Calls step `name` (the call is named after the step) under `call`'s
/// policy; a failure names the step.
fn step<O: serde::de::DeserializeOwned>(name: &str, call: Call, input: &Value) -> Result<O> {
    workflow::call_step_with(name, name, input, options(call)).map_err(|e| e.context(name))
}

/// A transform's output without `rows` and `row_hashes`, and its `changed`.
fn summary(mut output: Value, table: &str) -> Result<(Value, bool)> {
    let Some(object) = output.as_object_mut() else {
        return Err(Error::fatal(format!("transform-{table} returned {output}, not an object")));
    };
    object.remove("rows");
    object.remove("row_hashes");
    let changed = object
        .get("changed")
        .and_then(Value::as_bool)
        .ok_or_else(|| Error::fatal(format!("transform-{table} returned no `changed`")))?;
    Ok((output, changed))
}

#[ferry_sdk::workflow]
fn weekly_report(input: Input) -> Result<Output> {
    check_client(&input.client)?;
    let week = Week::parse_input(&input.week)?.to_string();
    let base = base_url(&input.base_url)?;
    let client = input.client.as_str();
    let mut step_runs = 0;

    // 1. Tokens.
    let tokens: Tokens = step("refresh-tokens", Call::Tokens, &json!({"client": client, "base_url": base}))?;
    step_runs += 1;
    if tokens.client != client {
        return Err(Error::fatal(format!("refresh-tokens returned the tokens of {}, not {client}", tokens.client)));
    }

    // 2–7. The six pulls, in parallel.
    let calls = Source::ALL
        .into_iter()
        .map(|source| {
            let name = format!("pull-{source}");
            let pull = PullInput {
                client: client.to_owned(),
                week: week.clone(),
                base_url: base.clone(),
                token: tokens.get(source)?.to_owned(),
            };
            Ok(StepCall::new(&name, &name, &pull)?.options(options(Call::Pull(source))))
        })
        .collect::<Result<Vec<_>>>()?;
    let results = workflow::call_steps(calls);
    step_runs += results.len() as u32;
    let mut pulls = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for (source, result) in Source::ALL.into_iter().zip(results) {
        match result {
            Ok(output) => pulls.push(output),
            Err(e) => failures.push(e.context(format!("pull-{source}"))),
        }
    }
    if let Some(first) = failures.first() {
        for e in &failures {
            ferry_sdk::error!("{e:#}");
        }
        return Err(first.clone());
    }
    let [meta, linkedin, ga4, search_console, mailchimp, warehouse]: [Value; 6] =
        pulls.try_into().map_err(|_| Error::fatal("call_steps returned the wrong number of results"))?;

    // 8–10. Tables.
    let common = |a: (&str, Value), b: (&str, Value)| json!({"client": client, "week": week, "base_url": base, a.0: a.1, b.0: b.1});
    let ads: Value = step("transform-ads", Call::Transform, &common(("meta", meta), ("linkedin", linkedin)))?;
    let web: Value = step("transform-web", Call::Transform, &common(("ga4", ga4), ("search_console", search_console)))?;
    let crm: Value =
        step("transform-crm", Call::Transform, &common(("mailchimp", mailchimp), ("warehouse", warehouse)))?;
    step_runs += 3;
    let (ads, ads_changed) = summary(ads, "ads")?;
    let (web, web_changed) = summary(web, "web")?;
    let (crm, crm_changed) = summary(crm, "crm")?;

    // 11. The PDF.
    let pdf: Rendered = step(
        "render-pdf",
        Call::Render,
        &json!({"client": client, "name": input.name, "week": week, "ads": ads, "web": web, "crm": crm}),
    )?;
    step_runs += 1;

    // 12. The mail.
    let sent: Sent = step(
        "send-email",
        Call::Mail,
        &json!({
            "client": client,
            "to": input.email,
            "name": input.name,
            "week": week,
            "base_url": base,
            "pdf": pdf.pdf,
            "pdf_sha256": pdf.sha256,
        }),
    )?;
    step_runs += 1;

    Ok(Output {
        client: client.to_owned(),
        week,
        message_id: sent.message_id,
        duplicate: sent.duplicate,
        pdf: PdfInfo { blob: pdf.pdf, sha256: pdf.sha256, bytes: pdf.bytes },
        changed: Changed { ads: ads_changed, web: web_changed, crm: crm_changed },
        step_runs,
    })
}
