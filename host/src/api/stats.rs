//! `/v1/queue` and `/v1/stats`: what the dashboard's deployments and stats
//! pages chart. Reads only.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiQuery, AppState};
use crate::domain::{Micros, RunId, RunStatus};
use crate::store::RunFilter;
use crate::store::stats::StatsWindow;

/// Queued runs whose flow-control reasons are read (the newest).
const QUEUE_SAMPLE: u32 = 200;

/// The default window of `/v1/stats`.
const DEFAULT_SPAN_US: i64 = 3_600_000_000;

/// The widest window of `/v1/stats`: 31 days.
const MAX_SPAN_US: i64 = 31 * 86_400_000_000;

/// Bucket widths `/v1/stats` picks from when none is asked, in seconds.
const NICE_BUCKETS_S: [i64; 18] =
    [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/// Buckets a window is split into at most when the bucket is picked.
const TARGET_BUCKETS: i64 = 60;

/// The narrowest window `fit` makes: 15 minutes.
const MIN_FIT_SPAN_US: i64 = 900_000_000;

/// Queue depth per workflow, and what holds its queued runs back.
pub async fn queue(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let depths = state.store.queue_depths().await?;
    let filter = RunFilter { status: Some(RunStatus::Queued), limit: QUEUE_SAMPLE, ..RunFilter::default() };
    let sample = state.store.list_runs(&filter).await?;
    let ids: Vec<RunId> = sample.iter().map(|r| r.id).collect();
    let reasons = state.store.queue_reasons(&ids, Micros::now()).await?;
    let queue: Vec<Value> = depths
        .iter()
        .map(|(name, queued)| {
            let of_name: Vec<&RunId> = sample.iter().filter(|r| &r.component == name).map(|r| &r.id).collect();
            let mut held: Vec<(String, u64)> = Vec::new();
            for (_, why) in reasons.iter().filter(|(id, _)| of_name.contains(&id)) {
                match held.iter_mut().find(|(w, _)| w == why) {
                    Some((_, n)) => *n += 1,
                    None => held.push((why.clone(), 1)),
                }
            }
            held.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let held: Vec<Value> =
                held.into_iter().map(|(reason, runs)| json!({ "reason": reason, "runs": runs })).collect();
            json!({ "workflow": name, "queued": queued, "sampled": of_name.len(), "held": held })
        })
        .collect();
    Ok(Json(json!({ "queue": queue, "sample_limit": QUEUE_SAMPLE })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Window start, µs since the epoch (default: an hour before `until`).
    since: Option<i64>,
    /// Window end, µs since the epoch (default: now).
    until: Option<i64>,
    /// Bucket width in seconds (default: picked for about 60 buckets).
    bucket_s: Option<i64>,
    /// Narrow the window to the data: from the first attempt in it (at
    /// least 15 minutes before `until`), with buckets picked for that span.
    #[serde(default)]
    fit: bool,
}

/// Step throughput, failures, latency per step and retries by cause over
/// a window, and the runs by status.
pub async fn stats(State(state): State<AppState>, ApiQuery(q): ApiQuery<StatsQuery>) -> Result<Json<Value>, ApiError> {
    let now = Micros::now();
    let window = window_of(&q, now)?;
    let mut stats = state.store.step_stats(&window).await?;
    if q.fit
        && let Some(narrowed) = fitted(&window, stats.first_at, now)?
    {
        stats = state.store.step_stats(&narrowed).await?;
    }
    let runs: serde_json::Map<String, Value> =
        state.store.run_counts().await?.into_iter().map(|(s, n)| (s.as_str().to_owned(), json!(n))).collect();
    let mut body = serde_json::to_value(&stats).map_err(|e| ApiError::bad_request(e.to_string()))?;
    body["runs"] = Value::Object(runs);
    Ok(Json(body))
}

/// The window a query asks for, checked. When the bucket is picked (no
/// `bucket_s`), `since` moves back to a whole bucket, so buckets start on
/// round times.
fn window_of(q: &StatsQuery, now: Micros) -> Result<StatsWindow, ApiError> {
    let until = q.until.unwrap_or(now.0);
    if until <= 0 {
        return Err(ApiError::bad_request("until must be a positive time in microseconds since the epoch"));
    }
    let since = q.since.unwrap_or(until.saturating_sub(DEFAULT_SPAN_US));
    if since < 0 {
        return Err(ApiError::bad_request("since must be a time in microseconds since the epoch, not negative"));
    }
    if since >= until {
        return Err(ApiError::bad_request("since must be before until"));
    }
    let span = until - since;
    if span > MAX_SPAN_US {
        return Err(ApiError::bad_request("the window is at most 31 days (until - since)"));
    }
    let bucket = match q.bucket_s {
        Some(s) if s < 1 => return Err(ApiError::bad_request("bucket_s must be at least 1")),
        Some(s) => {
            let bucket = s.saturating_mul(1_000_000);
            if buckets(span, bucket) > StatsWindow::MAX_BUCKETS {
                return Err(ApiError::bad_request(format!(
                    "bucket_s is too small for the window: at most {} buckets",
                    StatsWindow::MAX_BUCKETS
                )));
            }
            bucket
        }
        None => {
            let fits = |s: &&i64| buckets(span, **s * 1_000_000) <= TARGET_BUCKETS;
            NICE_BUCKETS_S.iter().find(fits).copied().unwrap_or(86_400) * 1_000_000
        }
    };
    let since = if q.bucket_s.is_none() { since - since.rem_euclid(bucket) } else { since };
    Ok(StatsWindow { since: Micros(since), until: Micros(until), bucket })
}

/// The window `fit` asks for, when it is narrower than `window`: from the
/// first attempt (or 15 minutes before the end, if that is earlier) to the
/// end, with a bucket picked for that span.
fn fitted(window: &StatsWindow, first_at: Option<Micros>, now: Micros) -> Result<Option<StatsWindow>, ApiError> {
    let Some(first) = first_at else { return Ok(None) };
    let since = first.0.min(window.until.0 - MIN_FIT_SPAN_US);
    if since <= window.since.0 {
        return Ok(None);
    }
    let q = StatsQuery { since: Some(since), until: Some(window.until.0), bucket_s: None, fit: false };
    window_of(&q, now).map(Some)
}

/// How many buckets of width `bucket` (> 0) cover `span`.
fn buckets(span: i64, bucket: i64) -> i64 {
    span / bucket + i64::from(span % bucket != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Micros = Micros(1_700_000_000_000_000);

    fn query(since: Option<i64>, until: Option<i64>, bucket_s: Option<i64>) -> StatsQuery {
        StatsQuery { since, until, bucket_s, fit: false }
    }

    #[test]
    fn the_default_window_is_the_last_hour_in_minutes() {
        let w = window_of(&StatsQuery::default(), NOW).unwrap();
        assert_eq!((w.until, w.bucket), (NOW, 60_000_000));
        assert_eq!(w.since.0 % 60_000_000, 0, "starts on a whole minute");
        assert!(NOW.0 - w.since.0 >= DEFAULT_SPAN_US && NOW.0 - w.since.0 < DEFAULT_SPAN_US + 60_000_000);
    }

    #[test]
    fn buckets_adapt_to_the_span() {
        let day = window_of(&query(Some(NOW.0 - 86_400_000_000), Some(NOW.0), None), NOW).unwrap();
        assert_eq!(day.bucket, 1_800_000_000, "half hours over a day");
        assert_eq!(day.since.0 % day.bucket, 0, "since moves back to a whole bucket");
        assert!(day.since.0 <= NOW.0 - 86_400_000_000 && day.since.0 > NOW.0 - 86_400_000_000 - day.bucket);
        let exact = window_of(&query(Some(NOW.0 - 7), Some(NOW.0), Some(1)), NOW).unwrap();
        assert_eq!(exact.since.0, NOW.0 - 7, "with bucket_s, since is kept");
        let minute = window_of(&query(Some(NOW.0 - 60_000_000), None, None), NOW).unwrap();
        assert_eq!(minute.bucket, 1_000_000);
        let asked = window_of(&query(None, None, Some(300)), NOW).unwrap();
        assert_eq!(asked.bucket, 300_000_000);
    }

    #[test]
    fn hostile_windows_are_refused() {
        for (q, says) in [
            (query(Some(NOW.0), Some(NOW.0), None), "before until"),
            (query(Some(NOW.0 + 1), Some(NOW.0), None), "before until"),
            (query(Some(-1), None, None), "negative"),
            (query(None, Some(-5), None), "positive"),
            (query(Some(0), Some(NOW.0), None), "31 days"),
            (query(None, None, Some(0)), "at least 1"),
            (query(None, None, Some(1)), "too small"),
            (query(Some(i64::MIN), Some(i64::MAX), Some(i64::MAX)), "negative"),
            (query(Some(1), Some(i64::MAX), None), "31 days"),
        ] {
            let err = window_of(&q, NOW).expect_err(says);
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(err.message.contains(says), "{q:?}: {}", err.message);
        }
        assert!(window_of(&query(None, None, Some(i64::MAX)), NOW).is_ok(), "one huge bucket is fine");
    }

    #[test]
    fn fit_narrows_the_window_to_the_data() {
        let day = window_of(&query(Some(NOW.0 - 86_400_000_000), Some(NOW.0), None), NOW).unwrap();
        assert_eq!(fitted(&day, None, NOW).unwrap(), None, "no data: the window stays");
        let recent = fitted(&day, Some(Micros(NOW.0 - 60_000_000)), NOW).unwrap().expect("narrower");
        assert!(recent.since.0 <= NOW.0 - MIN_FIT_SPAN_US && recent.since.0 > NOW.0 - MIN_FIT_SPAN_US - recent.bucket);
        assert_eq!(recent.bucket, 15_000_000, "15 s buckets over 15 minutes");
        let older = fitted(&day, Some(Micros(NOW.0 - 7_200_000_000)), NOW).unwrap().expect("narrower");
        assert_eq!(older.bucket, 120_000_000, "2 min buckets over two hours");
        assert_eq!(fitted(&day, Some(day.since), NOW).unwrap(), None, "data from the start: the window stays");
    }
}
