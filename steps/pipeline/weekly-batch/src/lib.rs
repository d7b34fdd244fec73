//! `weekly-batch`: starts one `weekly-report` run per client.
//!
//! Input `{"base_url", "week"?}`: the week defaults to the ISO week of the
//! workflow's (journaled) clock, in UTC. Calls `list-clients`, then
//! `start_workflow_keyed("report-{id}", "weekly-report", …,
//! "weekly-report:{id}:{week}")` for every client, without waiting for the
//! runs; each is queued under the `weekly-report` deployment's own flow
//! control. The key makes each client-week one run: a resumed batch, or a
//! second batch for the same week (the Friday tick after a manual start),
//! gets back the runs already started. Output `{"week", "runs": [{"client",
//! "run"}, …]}`.

use std::time::Duration;

use ferry_sdk::Result;
use ferry_sdk::workflow::{self, RetryPolicy, StepOptions};
use pipeline_common::types::base_url;
use pipeline_common::{ClientList, Week};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
struct Input {
    base_url: String,
    #[serde(default)]
    week: Option<String>,
}

#[derive(Serialize)]
struct Run {
    client: String,
    run: String,
}

#[derive(Serialize)]
struct Output {
    week: String,
    runs: Vec<Run>,
}

#[ferry_sdk::workflow]
fn weekly_batch(input: Input) -> Result<Output> {
    let base = base_url(&input.base_url)?;
    let week = match input.week.as_deref() {
        Some(text) => Week::parse_input(text)?,
        None => Week::of_unix_millis(ferry_sdk::now_millis()),
    }
    .to_string();
    let retry = RetryPolicy::default()
        .max_attempts(6)
        .initial_delay(Duration::from_millis(500))
        .factor(2.0)
        .max_delay(Duration::from_secs(10))
        .jitter(0.3);
    let list: ClientList = workflow::call_step_with(
        "list-clients",
        "list-clients",
        &json!({"base_url": base}),
        StepOptions::new().retry(retry),
    )
    .map_err(|e| e.context("list-clients"))?;
    let mut runs = Vec::with_capacity(list.clients.len());
    for client in list.clients {
        let input = json!({
            "client": client.id,
            "name": client.name,
            "email": client.email,
            "week": week,
            "base_url": base,
        });
        let key = format!("weekly-report:{}:{week}", client.id);
        let run = workflow::start_workflow_keyed(&format!("report-{}", client.id), "weekly-report", &input, &key)
            .map_err(|e| e.context(format!("starting the report of {}", client.id)))?;
        ferry_sdk::info!("{week} report of {} ({}): {run}", client.id, client.name);
        runs.push(Run { client: client.id, run });
    }
    Ok(Output { week, runs })
}
