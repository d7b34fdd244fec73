//! `send-email`: mails a client its weekly report, once per client and week.
//!
//! Input `{"client", "to", "name", "week", "base_url", "pdf", "pdf_sha256"}`
//! (`pdf` is the blob reference render-pdf returned; the bytes come from the
//! host's blob store) → `POST /mail/v1/send` with `Idempotency-Key:
//! weekly-report:{client}:{week}`. The key is the same for every attempt and
//! every run of the same client-week, so the mail API sends one report per
//! client and week whatever is retried or re-run. A 504 may come after the
//! mail was accepted: it is retryable, and the retry's repeated key is
//! answered with the first message's id and `duplicate: true`. Output
//! `{"message_id", "duplicate"}`.

use base64::Engine;
use ferry_sdk::{Error, Result, http};
use pipeline_common::hash::sha256_hex;
use pipeline_common::net;
use pipeline_common::types::{base_url, check_client};
use pipeline_common::week::Week;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
struct Input {
    client: String,
    to: String,
    name: String,
    week: String,
    base_url: String,
    /// The PDF's blob reference (`sha256:<hex>`).
    pdf: String,
    pdf_sha256: String,
}

#[derive(Deserialize)]
struct Answer {
    id: String,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Serialize)]
struct Output {
    message_id: String,
    duplicate: bool,
}

/// The idempotency key of a client-week's report.
fn idempotency_key(client: &str, week: &Week) -> String {
    format!("weekly-report:{client}:{week}")
}

#[ferry_sdk::step]
fn send_email(input: Input) -> Result<Output> {
    check_client(&input.client)?;
    let week = Week::parse_input(&input.week)?;
    let base = base_url(&input.base_url)?;
    let to = input.to.trim();
    if !to.contains('@') || to.contains(char::is_whitespace) {
        return Err(Error::fatal(format!("`to` is not an email address: {:?}", input.to)));
    }
    let pdf = ferry_sdk::get_blob(input.pdf.trim())
        .ok_or_else(|| Error::fatal(format!("no blob {} holds the report's PDF", input.pdf)))?;
    let sha256 = sha256_hex(&pdf);
    if !sha256.eq_ignore_ascii_case(input.pdf_sha256.trim()) {
        return Err(Error::fatal(format!(
            "the attachment's sha256 is {sha256}, not the {} that render-pdf reported",
            input.pdf_sha256
        )));
    }
    let name = input.name.trim();
    let key = idempotency_key(&input.client, &week);
    let body = json!({
        "to": to,
        "subject": format!("Weekly report {week} \u{2014} {name}"),
        "text": format!(
            "Hello {name},\n\nAttached is your weekly report for {week} ({} to {}): advertising, website, \
             email and sales figures, with the daily trend of each.\n\nKind regards,\nThe reporting team\n",
            week.monday(),
            week.days()[6],
        ),
        "attachments": [{
            "filename": format!("report-{}-{week}.pdf", input.client),
            "content_type": "application/pdf",
            "content_base64": base64::engine::general_purpose::STANDARD.encode(&pdf),
        }],
    });
    let what = format!("the {week} report mail to {to}");
    let answer: Answer = net::call(
        http::post(format!("{base}/mail/v1/send")).header("idempotency-key", key.as_str()).json(&body),
        &what,
    )?;
    if answer.duplicate {
        ferry_sdk::info!("{what} was already accepted as {} (key {key}); not sent again", answer.id);
    } else {
        ferry_sdk::info!("sent {what} as {} ({} bytes attached)", answer.id, pdf.len());
    }
    Ok(Output { message_id: answer.id, duplicate: answer.duplicate })
}
