//! `ferry bench`: the bench itself is correct (every run completes, every
//! figure is reported and sane) and its memory stays flat as completed runs
//! accumulate; through a daemon it reports what it can see from outside,
//! and on Postgres it works in a schema of its own. No timing is asserted.

use serde_json::Value;

use crate::support::{Daemon, PgSchema, Sandbox, guests};

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
    assert_eq!(doc["mode"], "in-process");
    assert_eq!(doc["store"], "sqlite");
    assert_eq!(doc["completed"], 20, "every run of the throughput phase completes: {doc:#}");
    assert_eq!(doc["failed"], 0);
    assert_eq!(doc["steps"], 12);
    assert_eq!(doc["step_runs"], 240);
    assert_eq!(doc["shape"], "sequential");
    assert_eq!(doc["workflow"], "wf-seq");
    assert_eq!(doc["step"], "echo");
    assert_eq!(doc["durability"], "fsync");
    assert_eq!(doc["run_ahead"], true);
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
    // The fsync probe ran beside the store; the engine's share is the
    // overhead less the device time of the fsyncs a run's commits made
    // (fsync durability: at least its finish, at most a few per step).
    let fsync = num(&doc, "fsync_us");
    assert!(fsync > 0.0 && fsync.is_finite(), "fsync probe: {doc:#}");
    let fsyncs = num(&doc, "fsyncs_per_run");
    assert!((1.0..=40.0).contains(&fsyncs), "synced commits per run: {doc:#}");
    let engine = overhead - fsync * fsyncs / 12.0;
    assert!((num(&doc, "per_step_engine_us") - engine).abs() < 1e-6, "engine per step: {doc:#}");
    let leftovers: Vec<_> = std::fs::read_dir(sb.dir.path())
        .expect("the sandbox")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("fsync"))
        .collect();
    assert!(leftovers.is_empty(), "the fsync probe's file is removed: {leftovers:?}");

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
        "engine per step",
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

#[test]
fn without_run_ahead_each_step_waits_for_its_own_commit() {
    let sb = Sandbox::new();
    let (code, stdout, stderr) = bench(&sb, &["--workflows", "10", "--latency-runs", "5", "--no-run-ahead", "--json"]);
    let doc = json(code, &stdout, &stderr);
    assert_eq!(doc["completed"], 10, "{doc:#}");
    assert_eq!(doc["run_ahead"], false);
    // Each of the 12 steps waited for the commit of the one before, so a
    // run's steps took at least 12 synced commits (with the finish and
    // the creation, 14 on an idle store); running ahead makes a few.
    let fsyncs = num(&doc, "fsyncs_per_run");
    assert!(fsyncs >= 12.0, "one synced commit per step at least: {doc:#}");
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

/// `ferry bench --through-daemon URL ARGS --steps-dir GUESTS` (no `--db`):
/// exit code, stdout, stderr.
fn bench_through(daemon: &Daemon, url: &str, args: &[&str]) -> (i32, String, String) {
    let dir = guests().to_str().expect("utf-8 path").to_owned();
    let mut all = vec!["bench", "--through-daemon", url, "--steps-dir", dir.as_str()];
    all.extend_from_slice(args);
    let out = daemon.ferry(&all);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The report of a bench through a daemon: the in-process report's fields,
/// the daemon's figures as null, every run completed.
fn check_remote(doc: &Value, workflows: u64) {
    assert_eq!(doc["mode"], "through-daemon", "{doc:#}");
    assert_eq!(doc["workflow"], "bench-wf-seq");
    assert_eq!(doc["step"], "echo");
    assert_eq!(doc["workflows"], workflows);
    assert_eq!(doc["completed"], workflows, "every run completes: {doc:#}");
    assert_eq!(doc["failed"], 0);
    assert_eq!(doc["steps"], 12);
    assert_eq!(doc["step_runs"], workflows * 12);
    assert_eq!(doc["latency_runs"], 2);
    assert_eq!(doc["latency_failed"], 0);
    assert_eq!(doc["durability"], "daemon's", "the durability is the daemon's: {doc:#}");
    for unknown in [
        "peak_rss_bytes",
        "store_bytes",
        "store_bytes_per_step_run",
        "baseline_us",
        "per_step_overhead_us",
        "concurrency",
    ] {
        assert!(doc[unknown].is_null(), "`{unknown}` is the daemon's and unknown here: {doc:#}");
    }
    assert_eq!(doc["rss_checkpoints"], serde_json::json!([]));
    for field in [
        "total_wall_s",
        "throughput_wall_s",
        "submit_wall_s",
        "server_span_s",
        "step_runs_per_s",
        "workflows_per_s",
        "load_latency_p50_ms",
        "load_exec_p50_ms",
        "latency_p50_ms",
        "latency_exec_p50_ms",
        "latency_client_p50_ms",
        "per_step_us",
    ] {
        let v = num(doc, field);
        assert!(v.is_finite() && v > 0.0, "`{field}` = {v}: {doc:#}");
    }
    assert!(num(doc, "load_latency_p99_ms") >= num(doc, "load_latency_p50_ms"), "{doc:#}");
    assert!(num(doc, "load_latency_p50_ms") >= num(doc, "load_exec_p50_ms"), "created → finished ⊇ started → finished");
    assert!(num(doc, "latency_p99_ms") >= num(doc, "latency_p50_ms"), "{doc:#}");
    assert!(num(doc, "total_wall_s") >= num(doc, "throughput_wall_s"));
    assert!(num(doc, "throughput_wall_s") >= num(doc, "submit_wall_s"));
    let rate = num(doc, "step_runs_per_s") * num(doc, "throughput_wall_s");
    assert!((rate - (workflows * 12) as f64).abs() < 1.0, "step-runs over the end-to-end wall time: {doc:#}");
}

#[test]
fn bench_through_a_daemon_submits_waits_and_reports() {
    let sb = Sandbox::new();
    let daemon = Daemon::start(&sb, &[], &[]);
    let args = ["--workflows", "5", "--latency-runs", "2", "--json"];
    let (code, stdout, stderr) = bench_through(&daemon, &daemon.url, &args);
    let doc = json(code, &stdout, &stderr);
    check_remote(&doc, 5);
    assert_eq!(doc["daemon"], daemon.url.as_str());
    assert!(!stderr.contains("throughput:"), "--json keeps stderr quiet: {stderr}");

    // A second bench on the same daemon counts only its own runs.
    let (code, stdout, stderr) = bench_through(&daemon, &daemon.url, &args);
    check_remote(&json(code, &stdout, &stderr), 5);

    // The runs are the daemon's: 2 × (1 warm-up + 5 + 2 latency), all completed.
    let listed = daemon.get("/v1/runs?workflow=bench-wf-seq&limit=100");
    let runs = listed["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 16, "{listed:#}");
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{listed:#}");
    let keys: std::collections::HashSet<&str> = runs.iter().filter_map(|r| r["idempotency_key"].as_str()).collect();
    assert_eq!(keys.len(), 16, "every run has a key of its own: {listed:#}");
    let deployed = daemon.get("/v1/deployments");
    let names: Vec<&str> =
        deployed["deployments"].as_array().expect("deployments").iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "echo").count(),
        1,
        "deploying the same echo again is a no-op: {names:?}"
    );
    assert_eq!(names.iter().filter(|n| **n == "bench-wf-seq").count(), 1, "{names:?}");

    // The table, with the daemon's figures as unknown.
    let (code, stdout, stderr) = bench_through(&daemon, &daemon.url, &["--workflows", "2", "--latency-runs", "1"]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    for label in ["step-runs/s", "load latency p50", "run latency p50", "peak RSS", "store per step-run"] {
        assert!(stdout.contains(label), "the table has `{label}`:\n{stdout}");
    }
    assert!(stdout.lines().any(|l| l.contains("peak RSS") && l.contains("unknown")), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("durability") && l.contains("daemon's")), "{stdout}");
}

#[test]
fn bench_through_a_daemon_that_is_not_there_says_so() {
    let sb = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = guests().to_str().expect("utf-8 path").to_owned();
    let out = sb
        .command(&["bench", "--through-daemon", url.as_str(), "--workflows", "5", "--steps-dir", dir.as_str()])
        .env_remove("FERRY_TOKEN")
        .output()
        .expect("run ferry");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(&format!("no daemon answers at {url}")), "a clear message: {stderr}");
    assert!(out.stdout.is_empty(), "nothing measured, nothing printed");
}

/// `ferry bench --db postgres://…`: the bench makes a schema of its own in
/// that database, measures it, and drops it.
#[test]
fn bench_on_postgres_works_in_a_fresh_schema_and_drops_it() {
    let Some(pg) = PgSchema::create("bench_on_postgres_works_in_a_fresh_schema_and_drops_it") else {
        return;
    };
    let base = std::env::var("FERRY_TEST_POSTGRES").expect("set when PgSchema::create succeeds").trim().to_owned();
    let dir = guests().to_str().expect("utf-8 path").to_owned();
    let out = std::process::Command::new(crate::support::ferry_bin())
        .args(["bench", "--db", base.as_str(), "--steps-dir", dir.as_str()])
        .args(["--workflows", "10", "--latency-runs", "2", "--durability", "buffered", "--json"])
        .arg("--cache-dir")
        .arg(crate::support::root().join("target").join("e2e-cache"))
        .env_remove("FERRY_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ferry");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let doc = json(out.status.code().unwrap_or(-1), &text(&out.stdout), &text(&out.stderr));
    assert_eq!(doc["store"], "postgres", "{doc:#}");
    assert_eq!(doc["completed"], 10, "{doc:#}");
    assert_eq!(doc["failed"], 0);
    assert_eq!(doc["durability"], "buffered");
    assert!(num(&doc, "store_bytes") > 0.0 && num(&doc, "store_bytes_per_step_run") > 0.0, "{doc:#}");
    let schema = doc["schema"].as_str().expect("the schema the bench used").to_owned();
    assert!(schema.starts_with("ferry_bench_"), "{doc:#}");
    let left = pg.query(&format!("SELECT nspname::text FROM pg_namespace WHERE nspname = '{schema}'"));
    assert!(left.is_empty(), "the bench drops its schema {schema}");
}

/// A bench on Postgres stopped with Ctrl-C (SIGINT) still drops its schema.
#[test]
fn an_interrupted_bench_on_postgres_drops_its_schema() {
    use std::io::BufRead;
    let Some(pg) = PgSchema::create("an_interrupted_bench_on_postgres_drops_its_schema") else {
        return;
    };
    let base = std::env::var("FERRY_TEST_POSTGRES").expect("set when PgSchema::create succeeds").trim().to_owned();
    let dir = guests().to_str().expect("utf-8 path").to_owned();
    let mut child = std::process::Command::new(crate::support::ferry_bin())
        .args(["bench", "--db", base.as_str(), "--steps-dir", dir.as_str()])
        .args(["--workflows", "1000000", "--durability", "buffered", "--json"])
        .arg("--cache-dir")
        .arg(crate::support::root().join("target").join("e2e-cache"))
        .env_remove("FERRY_LOG")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ferry");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let schema = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("the bench names its schema on stderr");
        if let Some(rest) = line.strip_prefix("working in schema ") {
            break rest.split_whitespace().next().expect("a schema name").to_owned();
        }
    };
    assert!(schema.starts_with("ferry_bench_"), "{schema}");
    let exists =
        |name: &str| !pg.query(&format!("SELECT nspname::text FROM pg_namespace WHERE nspname = '{name}'")).is_empty();
    assert!(exists(&schema), "the schema {schema} exists while the bench runs");

    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill").args(["-INT", pid.as_str()]).status().expect("run kill");
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ferry") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the interrupted bench did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let said: Vec<String> = rx.try_iter().collect();
    assert!(!status.success(), "an interrupted bench fails: {said:?}");
    assert!(said.iter().any(|l| l.contains("interrupted")), "it says it was interrupted: {said:?}");
    assert!(!exists(&schema), "the interrupted bench dropped {schema}: {said:?}");
}

/// Two `ferry serve` on one Postgres: the bench through one of them sees
/// every run completed, whichever host executed it.
#[test]
fn bench_through_one_of_two_hosts_on_postgres() {
    let Some(pg) = PgSchema::create("bench_through_one_of_two_hosts_on_postgres") else {
        return;
    };
    let a = Daemon::start_on(&pg.url("a"), &[], &[]);
    let _b = Daemon::start_on(&pg.url("b"), &[], &[]);
    let (code, stdout, stderr) = bench_through(&a, &a.url, &["--workflows", "5", "--latency-runs", "2", "--json"]);
    check_remote(&json(code, &stdout, &stderr), 5);
}
