//! What the dashboard's deployments, runs and stats pages read besides runs
//! and journals: run counts per deployed version, queue depths, step and
//! retry counts per run, and the step attempts of a time window aggregated
//! for charts.
//!
//! The types are the same for every backend. [`StepStatsBuilder`] turns the
//! step attempts a backend reads, in journal order, into [`StepStats`], so
//! the backends share the arithmetic (buckets, percentiles, retry causes)
//! and answer alike; only the SQL that finds the attempts is theirs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::{ComponentHash, Micros, RunErrorKind, RunId, RunStatus};

/// Runs of one deployed version in one status (see [`super::Store::version_run_counts`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionRuns {
    /// The deployment name (the runs' component).
    pub name: String,
    /// The component the runs are pinned to: it identifies the version.
    pub hash: ComponentHash,
    pub status: RunStatus,
    pub runs: u64,
}

/// Step calls and retries recorded in one run's journal (see
/// [`super::Store::run_steps`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunSteps {
    pub run_id: RunId,
    /// Step calls with a finished first attempt.
    pub steps: u64,
    /// Attempts after the first.
    pub retries: u64,
}

/// The window [`super::Store::step_stats`] aggregates: step attempts that
/// finished at or after `since` and before `until`, counted in buckets of
/// `bucket` microseconds starting at `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsWindow {
    pub since: Micros,
    pub until: Micros,
    /// Bucket width in microseconds (at least 1).
    pub bucket: i64,
}

impl StatsWindow {
    /// Most buckets a window is split into; a narrower bucket is widened.
    pub const MAX_BUCKETS: i64 = 1_000;

    /// Most step attempts aggregated; past it the answer says `truncated`.
    pub const MAX_ATTEMPTS: u32 = 200_000;

    /// How long before `since` a run may have been created and still have
    /// attempts in the window once it is no longer in progress. Backends
    /// look at the runs created from `since` minus this up to `until`, and
    /// at every run still running or waiting; an attempt of an older run
    /// that has finished since is not counted.
    pub const RUN_LOOKBACK_US: i64 = 3_600_000_000;

    /// The bucket width actually used: at least 1 µs and wide enough for at
    /// most [`Self::MAX_BUCKETS`] buckets.
    pub fn bucket_width(&self) -> i64 {
        let span = self.span();
        self.bucket.max(1).max((span + Self::MAX_BUCKETS - 1) / Self::MAX_BUCKETS)
    }

    /// `until - since`, at least 1 µs.
    pub fn span(&self) -> i64 {
        self.until.0.saturating_sub(self.since.0).max(1)
    }

    /// The run id range `[low, high)` whose runs may hold attempts of the
    /// window (creation order; see [`Self::RUN_LOOKBACK_US`]), as stored
    /// text.
    pub fn run_id_range(&self) -> (String, String) {
        let id_at = |micros: i64| {
            let ms = u64::try_from(micros / 1000).unwrap_or(0).min((1 << 48) - 1);
            format!("run_{}", ulid::Ulid::from_parts(ms, 0))
        };
        (id_at(self.since.0.saturating_sub(Self::RUN_LOOKBACK_US)), id_at(self.until.0.saturating_add(1000)))
    }
}

/// Step attempts of a window, aggregated (see [`super::Store::step_stats`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepStats {
    pub since: Micros,
    pub until: Micros,
    /// Bucket width in microseconds.
    pub bucket_us: i64,
    /// Attempts aggregated.
    pub attempts: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Whether there were more than [`StatsWindow::MAX_ATTEMPTS`] attempts
    /// (the rest were left out).
    pub truncated: bool,
    /// When the earliest aggregated attempt finished (none without any).
    pub first_at: Option<Micros>,
    /// Every bucket of the window in time order, empty ones included.
    pub buckets: Vec<StatsBucket>,
    /// Latency by step call name, by name.
    pub steps: Vec<StepLatency>,
    /// Failed attempts by cause, most retried first.
    pub causes: Vec<RetryCause>,
}

/// Attempts that finished in one bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatsBucket {
    pub start: Micros,
    pub ok: u64,
    pub failed: u64,
}

/// How long the attempts of one step call name took (nearest-rank
/// percentiles, microseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepLatency {
    pub name: String,
    pub attempts: u64,
    pub failed: u64,
    pub p50_us: i64,
    pub p95_us: i64,
    pub p99_us: i64,
    pub max_us: i64,
}

/// Failed attempts with one cause: the error kind, and the HTTP status
/// when the error message names one (`HTTP 503 from …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetryCause {
    /// A [`RunErrorKind`] (`retryable`, `timeout`, …), or `other`.
    pub kind: String,
    pub http_status: Option<u16>,
    /// Failed attempts with this cause.
    pub failures: u64,
    /// Of those, how many were followed by another attempt (a retry).
    pub retried: u64,
}

/// One step attempt as a backend reads it (a journal entry with `child` 0
/// and `attempt` ≥ 1).
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    pub run_id: &'a str,
    pub seq: i64,
    pub attempt: i64,
    pub name: &'a str,
    pub failed: bool,
    /// The start of the error text of a failed attempt (`kind: message`).
    pub error: Option<&'a str>,
    pub started_at: i64,
    pub finished_at: i64,
}

/// A failure's cause: the error kind and the HTTP status.
type Cause = (String, Option<u16>);

/// Aggregates attempts fed in journal order (run, seq, attempt) into
/// [`StepStats`].
pub struct StepStatsBuilder {
    window: StatsWindow,
    bucket: i64,
    buckets: Vec<StatsBucket>,
    steps: BTreeMap<String, (Vec<i64>, u64)>,
    /// Failures and retries by cause.
    causes: BTreeMap<Cause, (u64, u64)>,
    /// The previous attempt: run, seq, attempt and its cause if it failed.
    last: Option<(String, i64, i64, Option<Cause>)>,
    attempts: u64,
    failed: u64,
    first_at: Option<i64>,
}

impl StepStatsBuilder {
    pub fn new(window: StatsWindow) -> Self {
        let bucket = window.bucket_width();
        let count = (window.span() + bucket - 1) / bucket;
        let buckets =
            (0..count).map(|i| StatsBucket { start: Micros(window.since.0 + i * bucket), ok: 0, failed: 0 }).collect();
        Self {
            window,
            bucket,
            buckets,
            steps: BTreeMap::new(),
            causes: BTreeMap::new(),
            last: None,
            attempts: 0,
            failed: 0,
            first_at: None,
        }
    }

    /// Adds one attempt. Attempts outside the window are ignored.
    pub fn push(&mut self, a: Attempt<'_>) {
        if a.finished_at < self.window.since.0 || a.finished_at >= self.window.until.0 {
            return;
        }
        self.attempts += 1;
        self.first_at = Some(self.first_at.map_or(a.finished_at, |t| t.min(a.finished_at)));
        let index = usize::try_from((a.finished_at - self.window.since.0) / self.bucket).unwrap_or(usize::MAX);
        if let Some(b) = self.buckets.get_mut(index) {
            if a.failed {
                b.failed += 1;
            } else {
                b.ok += 1;
            }
        }
        let step = self.steps.entry(a.name.to_owned()).or_default();
        step.0.push(a.finished_at.saturating_sub(a.started_at).max(0));
        // A retry: the previous attempt of the same call failed.
        if let Some((run, seq, attempt, Some(cause))) = &self.last
            && run == a.run_id
            && *seq == a.seq
            && *attempt + 1 == a.attempt
            && let Some(c) = self.causes.get_mut(cause)
        {
            c.1 += 1;
        }
        let cause = a.failed.then(|| cause_of(a.error.unwrap_or("")));
        if let Some(cause) = &cause {
            self.failed += 1;
            step.1 += 1;
            self.causes.entry(cause.clone()).or_default().0 += 1;
        }
        match &mut self.last {
            Some(last) if last.0 == a.run_id => {
                last.1 = a.seq;
                last.2 = a.attempt;
                last.3 = cause;
            }
            _ => self.last = Some((a.run_id.to_owned(), a.seq, a.attempt, cause)),
        }
    }

    /// The aggregate; `truncated` says attempts were left out.
    pub fn finish(self, truncated: bool) -> StepStats {
        let steps = self
            .steps
            .into_iter()
            .map(|(name, (mut durations, failed))| {
                durations.sort_unstable();
                let rank = |p: usize| {
                    let n = durations.len();
                    let i = (p * n).div_ceil(100).clamp(1, n.max(1)) - 1;
                    durations.get(i).copied().unwrap_or(0)
                };
                StepLatency {
                    name,
                    attempts: durations.len() as u64,
                    failed,
                    p50_us: rank(50),
                    p95_us: rank(95),
                    p99_us: rank(99),
                    max_us: durations.last().copied().unwrap_or(0),
                }
            })
            .collect();
        let mut causes: Vec<RetryCause> = self
            .causes
            .into_iter()
            .map(|((kind, http_status), (failures, retried))| RetryCause { kind, http_status, failures, retried })
            .collect();
        causes.sort_by(|a, b| b.retried.cmp(&a.retried).then(b.failures.cmp(&a.failures)));
        StepStats {
            since: self.window.since,
            until: self.window.until,
            bucket_us: self.bucket,
            attempts: self.attempts,
            failed: self.failed,
            truncated,
            first_at: self.first_at.map(Micros),
            buckets: self.buckets,
            steps,
            causes,
        }
    }
}

/// The cause of a failed attempt from its error text (`kind: message`):
/// the kind, and the first `HTTP nnn` in the message.
pub fn cause_of(error: &str) -> Cause {
    let kind = error
        .split_once(':')
        .map(|(k, _)| k.trim())
        .filter(|k| k.parse::<RunErrorKind>().is_ok())
        .unwrap_or("other")
        .to_owned();
    (kind, http_status(error))
}

/// The status of the first `HTTP nnn` (100 to 599, not followed by another
/// digit) in `text`.
fn http_status(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text.get(from..).and_then(|rest| rest.find("HTTP ")) {
        let start = from + i + 5;
        let digits = bytes.get(start..start + 3);
        let next_is_digit = bytes.get(start + 3).is_some_and(u8::is_ascii_digit);
        if let Some(d) = digits
            && d.iter().all(u8::is_ascii_digit)
            && !next_is_digit
        {
            let n = d.iter().fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
            if (100..600).contains(&n) {
                return Some(n);
            }
        }
        from = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_name_the_kind_and_the_http_status() {
        assert_eq!(cause_of("retryable: HTTP 504 from http://x/pages/2"), ("retryable".into(), Some(504)));
        assert_eq!(cause_of("timeout: the attempt ran past 30s"), ("timeout".into(), None));
        assert_eq!(cause_of("fatal: got HTTP 4044 then HTTP 429"), ("fatal".into(), Some(429)));
        assert_eq!(cause_of("gremlins: HTTP 999"), ("other".into(), None));
        assert_eq!(cause_of(""), ("other".into(), None));
        assert_eq!(cause_of("retryable: HTTP 50"), ("retryable".into(), None));
        assert_eq!(cause_of("retryable: é HTTP 503é"), ("retryable".into(), Some(503)));
    }

    fn attempt<'a>(run: &'a str, seq: i64, attempt: i64, failed: bool, secs: i64) -> Attempt<'a> {
        Attempt {
            run_id: run,
            seq,
            attempt,
            name: if seq == 1 { "pull" } else { "push" },
            failed,
            error: failed.then_some("retryable: HTTP 503 from x"),
            started_at: secs * 1_000_000 - 1000 * (seq + attempt),
            finished_at: secs * 1_000_000,
        }
    }

    #[test]
    fn the_builder_buckets_ranks_and_counts_retries() {
        let window = StatsWindow { since: Micros(0), until: Micros(60_000_000), bucket: 10_000_000 };
        let mut b = StepStatsBuilder::new(window);
        b.push(attempt("run_a", 1, 1, true, 1));
        b.push(attempt("run_a", 1, 2, true, 2));
        b.push(attempt("run_a", 1, 3, false, 15));
        b.push(attempt("run_a", 2, 1, true, 16)); // failed, never retried
        b.push(attempt("run_b", 1, 2, false, 59)); // its first attempt is not in the window
        b.push(attempt("run_b", 1, 3, false, 60)); // at `until`: outside
        let s = b.finish(false);
        assert_eq!(s.buckets.len(), 6);
        assert_eq!((s.buckets[0].ok, s.buckets[0].failed), (0, 2));
        assert_eq!((s.buckets[1].ok, s.buckets[1].failed), (1, 1));
        assert_eq!((s.buckets[5].ok, s.buckets[5].failed), (1, 0));
        assert_eq!((s.attempts, s.failed, s.first_at), (5, 3, Some(Micros(1_000_000))));
        let pull = &s.steps[0];
        assert_eq!((pull.name.as_str(), pull.attempts, pull.failed), ("pull", 4, 2));
        assert_eq!((pull.p50_us, pull.p95_us, pull.max_us), (3000, 4000, 4000));
        assert_eq!(
            s.causes,
            [RetryCause { kind: "retryable".into(), http_status: Some(503), failures: 3, retried: 2 }]
        );
    }

    #[test]
    fn narrow_buckets_are_widened_and_ids_bound_the_window() {
        let window = StatsWindow { since: Micros(0), until: Micros(3_600_000_000), bucket: 1 };
        assert_eq!(window.bucket_width(), 3_600_000);
        assert_eq!(StepStatsBuilder::new(window).finish(false).buckets.len(), 1000);
        let (low, high) =
            StatsWindow { since: Micros(7_200_000_000), until: Micros(7_300_000_000), bucket: 1 }.run_id_range();
        assert!(low.starts_with("run_") && low < high, "{low} {high}");
        let id_then = format!("run_{}", ulid::Ulid::from_parts(3_600_000, 5));
        assert!(low <= id_then && id_then < high);
    }
}
