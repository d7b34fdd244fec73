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
