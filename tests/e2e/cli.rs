//! The newcomer's path: build, exec, show.

use crate::support::{Sandbox, guest};

#[test]
fn exec_prints_the_output_and_a_summary_then_show_reads_the_journal() {
    let sb = Sandbox::new();
    let hello = guest("hello");
    let out = sb.ferry(&["exec", hello.to_str().unwrap_or_default(), "--input", r#"{"name":"Ada"}"#]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let output: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_eq!(output["greeting"], "Hello, Ada!");
    assert!(stderr.contains("completed"), "{stderr}");
    assert!(stderr.contains("fuel"), "{stderr}");
    assert!(stderr.contains("journal entries"), "{stderr}");
    let run_id = stderr.split_whitespace().find(|w| w.starts_with("run_")).unwrap_or_default().to_owned();

    let shown = sb.ferry(&["show", &run_id]);
    let timeline = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(timeline.contains(&run_id));
    assert!(timeline.contains("completed"));
    assert!(timeline.contains("Hello, Ada!"));
    assert!(timeline.contains("#0.1 "), "the step attempt is an entry: {timeline}");
    assert!(timeline.contains("log"), "the step's log line is shown: {timeline}");
}

#[test]
fn a_step_error_is_a_failed_run_with_the_guests_message() {
    let sb = Sandbox::new();
    let (code, out) = sb.exec("hello", "{}", &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["error"]["kind"], "fatal", "{out}");
    assert!(out["error"]["message"].as_str().unwrap_or_default().contains("name"), "{out}");
}

#[test]
fn the_same_idempotency_key_returns_the_first_run() {
    let sb = Sandbox::new();
    let (_, first) = sb.exec("echo", r#"{"n":1}"#, &["--idempotency-key", "k-1"]);
    let (_, second) = sb.exec("echo", r#"{"n":2}"#, &["--idempotency-key", "k-1"]);
    assert_eq!(first["run_id"], second["run_id"]);
    assert_eq!(second["executed"], false);
    assert_eq!(second["output"], serde_json::json!({"n": 1}));
}

#[test]
fn show_of_an_unknown_run_says_so() {
    let sb = Sandbox::new();
    let out = sb.ferry(&["show", "run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run"));
    let out = sb.ferry(&["show", "nonsense"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a run id"));
}

#[test]
fn compiled_components_are_cached_by_content_hash() {
    let sb = Sandbox::new();
    let cache = sb.dir.path().join("cache");
    let echo = guest("echo");
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&echo).unwrap_or_default()))
    };
    let run = |cache: &std::path::Path| {
        std::process::Command::new(crate::support::ferry_bin())
            .arg("exec")
            .arg(&echo)
            .args(["--input", "{}", "--db"])
            .arg(sb.db())
            .arg("--cache-dir")
            .arg(cache)
            .output()
            .unwrap_or_else(|e| panic!("run ferry: {e}"))
    };
    assert!(run(&cache).status.success());
    // One folder per engine configuration, one artifact per component hash.
    let artifacts: Vec<std::path::PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten().map(|e| e.path()))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!(artifacts[0].file_name().and_then(|n| n.to_str()), Some(format!("{hash}.cwasm").as_str()));
    // A corrupted artifact is ignored and rebuilt, never trusted.
    std::fs::write(&artifacts[0], b"garbage").unwrap_or_default();
    assert!(run(&cache).status.success());
    assert!(std::fs::read(&artifacts[0]).map(|b| b.len() > 1000).unwrap_or(false));
}

/// The README's first command, small: a week for six clients on the default
/// faults, everything in one process that exits when it is done.
#[test]
fn demo_runs_a_week_of_the_reference_pipeline_and_sums_it_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Built once for the whole suite; the demo's own build is then a no-op.
    let guests = crate::support::guests();
    let target = guests.ancestors().nth(2).expect("the target dir of the guests");
    let out = std::process::Command::new(crate::support::ferry_bin())
        .args(["demo", "--clients", "6", "--seed", "3", "--json", "--timeout", "5m", "--dir"])
        .arg(dir.path())
        .arg("--target-dir")
        .arg(target)
        .arg("--cache-dir")
        .arg(crate::support::root().join("target").join("e2e-cache"))
        .current_dir(crate::support::root())
        .env_remove("FERRY_DB")
        .output()
        .expect("run ferry demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ferry demo failed:\n{stdout}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("--json prints one JSON document ({e}):\n{stdout}"));
    assert_eq!(summary["completed"], 6, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["emails_accepted"], 6, "one report per client: {summary}");
    assert!(summary["step_runs"].as_u64().unwrap_or(0) >= 6 * 12, "twelve steps per report: {summary}");
    let retried: u64 =
        summary["retries_by_cause"].as_object().map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
    assert_eq!(retried, summary["retries"].as_u64().unwrap_or(u64::MAX), "causes add up: {summary}");
    let pdfs: Vec<_> = std::fs::read_dir(dir.path().join("pdfs"))
        .expect("the PDFs folder")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "pdf"))
        .collect();
    assert_eq!(pdfs.len(), 6, "one PDF per client in {}", dir.path().display());
    for pdf in pdfs {
        let bytes = std::fs::read(pdf.path()).expect("read a PDF");
        assert!(bytes.starts_with(b"%PDF-"), "{} is not a PDF", pdf.path().display());
    }
}

/// The pipeline's shared library (sorting, hashing, paging, ISO weeks) and
/// the PDF layout are plain Rust: their unit tests run natively, here, so
/// the one test command covers them.
#[test]
fn the_pipeline_libraries_pass_their_native_tests() {
    let out = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "-p", "pipeline-common", "-p", "render-pdf"])
        .current_dir(crate::support::root().join("steps"))
        .output()
        .expect("run cargo test in steps/");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the steps' native tests failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("test result: ok"), "no tests ran:\n{stdout}");
}

/// `ferry runs | head -1`: when the reader goes away, ferry ends quietly
/// (as Unix tools do, by SIGPIPE) instead of panicking on the next line.
#[test]
fn a_closed_pipe_ends_the_command_without_a_panic() {
    let sb = Sandbox::new();
    let (code, _) = sb.exec("hello", r#"{"name":"Ada"}"#, &[]);
    assert_eq!(code, 0);
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = sb.command(&["runs"]).stdout(writer).stderr(std::process::Stdio::piped()).output().expect("run ferry");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "ferry panicked on a closed pipe:\n{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {:?}\n{stderr}", out.status);
}
