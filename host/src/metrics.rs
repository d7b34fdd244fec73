//! Process-wide counters for `/metrics`, updated where the work happens.

use std::sync::atomic::{AtomicU64, Ordering};

/// Step attempts run.
pub static STEP_RUNS: AtomicU64 = AtomicU64::new(0);
/// Step attempts after the first of their call.
pub static STEP_RETRIES: AtomicU64 = AtomicU64::new(0);
/// Fuel consumed by step attempts.
pub static FUEL_USED: AtomicU64 = AtomicU64::new(0);
/// Step calls held back by a step rate limit.
pub static RATE_WAITS: AtomicU64 = AtomicU64::new(0);
/// Microseconds step calls were held back by step rate limits.
pub static RATE_WAIT_MICROS: AtomicU64 = AtomicU64::new(0);

/// Records a step call held back by its rate limit for `wait`.
pub fn rate_wait(wait: std::time::Duration) {
    RATE_WAITS.fetch_add(1, Ordering::Relaxed);
    RATE_WAIT_MICROS.fetch_add(u64::try_from(wait.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Upper bounds (seconds) of the step-duration histogram buckets.
pub const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
static BUCKET_COUNTS: [AtomicU64; 13] = [const { AtomicU64::new(0) }; 13];
static DURATION_MICROS: AtomicU64 = AtomicU64::new(0);

/// Records one step attempt.
pub fn step_attempt(attempt: u32, fuel: u64, duration: std::time::Duration) {
    STEP_RUNS.fetch_add(1, Ordering::Relaxed);
    if attempt > 1 {
        STEP_RETRIES.fetch_add(1, Ordering::Relaxed);
    }
    FUEL_USED.fetch_add(fuel, Ordering::Relaxed);
    let secs = duration.as_secs_f64();
    let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
    BUCKET_COUNTS[bucket].fetch_add(1, Ordering::Relaxed);
    DURATION_MICROS.fetch_add(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// The Prometheus text of the counters, plus the given gauges
/// (`(metric with labels, value)`).
pub fn render(gauges: &[(String, u64)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let _ = writeln!(out, "# HELP ferry_runs Runs in the store by status.\n# TYPE ferry_runs gauge");
    for (name, value) in gauges.iter().filter(|(n, _)| n.starts_with("ferry_runs{")) {
        let _ = writeln!(out, "{name} {value}");
    }
    let _ =
        writeln!(out, "# HELP ferry_queue_depth Runs queued, waiting for a worker.\n# TYPE ferry_queue_depth gauge");
    for (name, value) in gauges.iter().filter(|(n, _)| n == "ferry_queue_depth") {
        let _ = writeln!(out, "{name} {value}");
    }
    let _ = writeln!(out, "# HELP ferry_step_runs_total Step attempts run.\n# TYPE ferry_step_runs_total counter");
    let _ = writeln!(out, "ferry_step_runs_total {}", load(&STEP_RUNS));
    let _ = writeln!(
        out,
        "# HELP ferry_step_retries_total Step attempts that were retries.\n# TYPE ferry_step_retries_total counter"
    );
    let _ = writeln!(out, "ferry_step_retries_total {}", load(&STEP_RETRIES));
    let _ = writeln!(
        out,
        "# HELP ferry_fuel_used_total Fuel consumed by step attempts.\n# TYPE ferry_fuel_used_total counter"
    );
    let _ = writeln!(out, "ferry_fuel_used_total {}", load(&FUEL_USED));
    let _ = writeln!(
        out,
        "# HELP ferry_step_rate_waits_total Step calls held back by a step rate limit.\n\
         # TYPE ferry_step_rate_waits_total counter"
    );
    let _ = writeln!(out, "ferry_step_rate_waits_total {}", load(&RATE_WAITS));
    let _ = writeln!(
        out,
        "# HELP ferry_step_rate_wait_seconds_total Time step calls were held back by step rate limits.\n\
         # TYPE ferry_step_rate_wait_seconds_total counter"
    );
    let _ = writeln!(out, "ferry_step_rate_wait_seconds_total {}", load(&RATE_WAIT_MICROS) as f64 / 1e6);
    let _ = writeln!(
        out,
        "# HELP ferry_step_duration_seconds Step attempt duration.\n# TYPE ferry_step_duration_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += load(&BUCKET_COUNTS[i]);
        let _ = writeln!(out, "ferry_step_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += load(&BUCKET_COUNTS[BUCKETS.len()]);
    let _ = writeln!(out, "ferry_step_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "ferry_step_duration_seconds_sum {}", load(&DURATION_MICROS) as f64 / 1e6);
    let _ = writeln!(out, "ferry_step_duration_seconds_count {cumulative}");
    out
}
