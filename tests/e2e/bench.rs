//! `ferry bench`: the bench itself is correct (every run completes, every
//! figure is reported and sane) and its memory stays flat as completed runs
//! accumulate. No timing is asserted.

use serde_json::Value;

use crate::support::{Sandbox, guests};

/// `ferry bench ARGS --steps-dir GUESTS` on the sandbox's (fresh) store:
/// exit code, stdout, stderr.
fn bench(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let dir = guests().to_str().expect("utf-8 path").to_owned();
    let mut all = vec!["bench", "--steps-dir", dir.as_str()];
    all.extend_from_slice(args);
    let out = sb.ferry(&all);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn json(code: i32, stdout: &str, stderr: &str) -> Value {
    assert_eq!(code, 0, "ferry bench failed\nstdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("ferry bench --json printed no JSON ({e}): {stdout}"))
}

fn num(doc: &Value, field: &str) -> f64 {
    doc[field].as_f64().unwrap_or_else(|| panic!("`{field}` is not a number in {doc:#}"))
}

#[test]
fn bench_runs_the_seed_workload_and_reports_every_figure() {
    let sb = Sandbox::new();
    let (code, stdout, stderr) = bench(&sb, &["--workflows", "20", "--json"]);
    let doc = json(code, &stdout, &stderr);

    assert_eq!(doc["workflows"], 20);
    assert_eq!(doc["completed"], 20, "every run of the throughput phase completes: {doc:#}");
    assert_eq!(doc["failed"], 0);
    assert_eq!(doc["steps"], 12);
    assert_eq!(doc["step_runs"], 240);
    assert_eq!(doc["shape"], "sequential");
    assert_eq!(doc["workflow"], "wf-seq");
    assert_eq!(doc["step"], "echo");
    assert_eq!(doc["durability"], "fsync");
    assert_eq!(doc["latency_failed"], 0);
    assert_eq!(doc["latency_runs"], 20, "the latency phase runs at most --workflows runs");
    assert!(num(&doc, "payload_bytes") >= 150.0, "a ~200-byte input: {doc:#}");
    assert!(num(&doc, "cores") >= 1.0);
    assert!(num(&doc, "concurrency") >= 1.0);

    for field in
        ["total_wall_s", "throughput_wall_s", "step_runs_per_s", "workflows_per_s", "baseline_us", "per_step_us"]
    {
        let v = num(&doc, field);
        assert!(v.is_finite() && v > 0.0, "`{field}` = {v}: {doc:#}");
    }
    assert!(num(&doc, "total_wall_s") >= num(&doc, "throughput_wall_s"));
    let (p50, p99) = (num(&doc, "latency_p50_ms"), num(&doc, "latency_p99_ms"));
    assert!(p50 > 0.0 && p99 >= p50 && num(&doc, "latency_max_ms") >= p99, "latency percentiles: {doc:#}");
    let rate = num(&doc, "step_runs_per_s") * num(&doc, "throughput_wall_s");
    assert!((rate - 240.0).abs() < 1.0, "step-runs/s is step-runs over the throughput phase's wall time: {doc:#}");
    let overhead = num(&doc, "per_step_overhead_us");
    assert!((overhead - (num(&doc, "per_step_us") - num(&doc, "baseline_us"))).abs() < 1e-6);
    assert!((num(&doc, "per_step_us") * 12.0 / 1_000.0 - p50).abs() < 1e-6, "per step = p50 / steps: {doc:#}");

    let peak = num(&doc, "peak_rss_bytes");
    assert!(peak > 1_048_576.0 && peak < 16.0 * 1_073_741_824.0, "peak RSS: {doc:#}");
    let store = num(&doc, "store_bytes");
    assert!(store > 4096.0, "the store's files were measured: {doc:#}");
    let per_step_run = num(&doc, "store_bytes_per_step_run");
    assert!(per_step_run > 0.0 && per_step_run < store, "store bytes per step-run: {doc:#}");
    assert_eq!(doc["rss_checkpoints"], serde_json::json!([]));
    // --json is for programs: no progress, no phase lines.
    assert!(!stderr.contains("throughput:"), "--json keeps stderr quiet: {stderr}");
    // The store given with --db is the one used, and it is not removed.
    assert!(sb.db().exists());
}

#[test]
fn bench_fan_out_prints_a_table_and_wants_a_fresh_store() {
    let sb = Sandbox::new();
    let args = ["--workflows", "6", "--parallel", "--durability", "buffered", "--latency-runs", "3"];
    let (code, stdout, stderr) = bench(&sb, &args);
    assert_eq!(code, 0, "ferry bench --parallel failed\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("wf-fanout-bench (6 parallel + 6 sequential steps"), "the shape: {stdout}");
    for label in [
        "completed",
        "step-runs/s",
        "run latency p50",
        "run latency p99",
        "per-step overhead",
        "baseline",
        "peak RSS",
        "store per step-run",
        "durability",
        "cores",
        "total wall time",
    ] {
        assert!(stdout.contains(label), "the table has `{label}`:\n{stdout}");
    }
    assert!(stdout.lines().any(|l| l.contains("completed") && l.contains(" 6 ") && l.contains("0 failed")), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("durability") && l.contains("buffered")), "{stdout}");
    assert!(stderr.contains("throughput:") && stderr.contains("latency:"), "phases are shown on stderr: {stderr}");

    // The store now holds runs: a second bench on it is refused.
    let (code, stdout, stderr) = bench(&sb, &["--workflows", "1"]);
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("fresh store"), "{stderr}");
}

/// The million-run memory check in miniature: RSS after 2,000 completed
/// one-step runs, then after 2,000 more, must not grow with the second half
/// (within a generous bound for allocator noise).
#[test]
fn bench_memory_stays_flat_as_runs_complete() {
    let sb = Sandbox::new();
    let args = [
        "--workflows",
        "4000",
        "--steps",
        "1",
        "--rss-checkpoints",
        "2",
        "--latency-runs",
        "1",
        "--durability",
        "buffered",
        "--json",
    ];
    let (code, stdout, stderr) = bench(&sb, &args);
    let doc = json(code, &stdout, &stderr);
    assert_eq!(doc["completed"], 4000, "{doc:#}");
    assert_eq!(doc["failed"], 0);
    let points = doc["rss_checkpoints"].as_array().expect("rss_checkpoints");
    assert_eq!(points.len(), 2, "{doc:#}");
    let at = |i: usize, f: &str| points[i][f].as_u64().unwrap_or_else(|| panic!("checkpoint {i}: {doc:#}"));
    assert!(at(0, "finished") >= 2000 && at(0, "finished") < 4000, "{doc:#}");
    assert_eq!(at(1, "finished"), 4000);
    let (first, second) = (at(0, "rss_bytes") as f64, at(1, "rss_bytes") as f64);
    assert!(first > 0.0, "{doc:#}");
    assert!(
        second <= first * 1.5 + 20.0 * 1_048_576.0,
        "RSS grew from {:.1} MiB after {} runs to {:.1} MiB after 4000",
        first / 1_048_576.0,
        at(0, "finished"),
        second / 1_048_576.0
    );
}
