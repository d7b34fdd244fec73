//! Durable workflows: memoized steps, retries, crash resume, parallel steps,
//! sleeps, events, idempotency, cancellation, non-determinism.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Sandbox, TestServer, entries, guests, wait_for};

fn steps_of(shown: &Value) -> Vec<&Value> {
    entries(shown, "step")
}

#[test]
fn a_retried_step_does_not_rerun_the_steps_before_it() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = json!({"url": server.url(""), "steps": 4, "flaky_at": 2, "fail": 2}).to_string();
    let (code, out) = sb.run_workflow("wf-chain", &input, &["--allow-host", &server.addr.to_string()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["status"], "completed");
    // Each earlier step's side effect happened once; the flaky one took three calls.
    assert_eq!(server.count("step-0"), 1);
    assert_eq!(server.count("step-1"), 1);
    assert_eq!(server.count("flaky:k2"), 3);
    assert_eq!(server.count("step-3"), 1);

    let shown = sb.show(out["run_id"].as_str().unwrap_or_default());
    // Workflow log lines take sequence numbers too, so find the call by name.
    let attempts: Vec<&Value> = steps_of(&shown).into_iter().filter(|e| e["name"] == "flaky-2").collect();
    assert_eq!(attempts.len(), 3, "each attempt is its own entry");
    assert_eq!(attempts[0]["status"], "error");
    assert!(attempts[0]["error"].as_str().unwrap_or_default().contains("503"), "{}", attempts[0]);
    assert_eq!(attempts[2]["status"], "ok");

    // Backoff: the recorded retry times grow by the factor (2) within the jitter (±20%).
    let retry_gap = |e: &Value| {
        let failure: Value = serde_json::from_str(e["response"].as_str().unwrap_or("null")).unwrap_or_default();
        failure["retry_at"].as_i64().unwrap_or(0) - e["finished_at"].as_i64().unwrap_or(0)
    };
    let (first, second) = (retry_gap(attempts[0]), retry_gap(attempts[1]));
    assert!((160_000..=260_000).contains(&first), "first backoff {first} µs, expected 200 ms ± 20%");
    assert!((320_000..=500_000).contains(&second), "second backoff {second} µs, expected 400 ms ± 20%");

    // The step's idempotency key is the same for every attempt.
    let keys: Vec<String> = server
        .requests_to("/flaky/k2")
        .iter()
        .filter_map(|h| h.iter().find(|(k, _)| k == "idempotency-key").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    assert_eq!(keys[0], format!("{}-{}", out["run_id"].as_str().unwrap_or_default(), attempts[0]["seq"]));
}

#[test]
fn a_fatal_error_stops_at_once_and_fails_the_run() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = json!({"url": server.url(""), "steps": 3, "fatal_at": 1}).to_string();
    let (code, out) = sb.run_workflow("wf-chain", &input, &["--allow-host", &server.addr.to_string()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["status"], "failed");
    let shown = sb.show(out["run_id"].as_str().unwrap_or_default());
    let attempts: Vec<&Value> = steps_of(&shown).into_iter().filter(|e| e["name"] == "fatal-1").collect();
    assert_eq!(attempts.len(), 1, "a fatal error is not retried");
    assert_eq!(server.count("step-2"), 0, "nothing after the failed step ran");
}

#[test]
fn a_killed_process_resumes_without_repeating_finished_steps() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    server.hold("step-2");
    let input = json!({"url": server.url(""), "steps": 4}).to_string();
    let dir = guests().to_str().unwrap_or_default().to_owned();
    let wasm = crate::support::guest("wf-chain");
    let mut child = sb
        .command(&[
            "exec",
            wasm.to_str().unwrap_or_default(),
            "--input",
            &input,
            "--steps-dir",
            &dir,
            "--allow-host",
            &server.addr.to_string(),
            "--lease-ttl",
            "2s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ferry: {e}"));
    // Kill it while step 2 is in flight (its request has reached the server).
    wait_for("step 2 to be in flight", Duration::from_secs(60), || !server.requests_to("/count/step-2").is_empty());
    child.kill().unwrap_or_default(); // SIGKILL
    let _ = child.wait();
    server.release();

    // A new process takes the run over once the dead one's lease expires.
    let out = sb.ferry(&["work", "--until-idle", "--steps-dir", &dir, "--allow-host", &server.addr.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.count("step-0"), 1, "finished steps are not executed again");
    assert_eq!(server.count("step-1"), 1, "finished steps are not executed again");
    assert_eq!(server.count("step-3"), 1);
    // The step in flight was retried as a new attempt after the crash.
    assert!(server.requests_to("/count/step-2").len() >= 2);
    let shown = sb.show(&latest_run(&sb));
    assert_eq!(shown["run"]["status"], "completed", "{shown}");
}

/// The id of the newest run in the sandbox's store.
fn latest_run(sb: &Sandbox) -> String {
    let out = sb.ferry(&["runs", "--json", "--limit", "1"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    runs[0]["id"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn parallel_steps_overlap_and_take_sequence_numbers_in_list_order() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = json!({"url": server.url(""), "ms": 300}).to_string();
    let (code, out) = sb.run_workflow("wf-fanout", &input, &["--allow-host", &server.addr.to_string()]);
    assert_eq!(code, 0, "{out}");
    let shown = sb.show(out["run_id"].as_str().unwrap_or_default());
    let pulls: Vec<&Value> =
        steps_of(&shown).into_iter().filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with("pull-"))).collect();
    assert_eq!(pulls.len(), 6);
    for (i, p) in pulls.iter().enumerate() {
        assert_eq!(p["seq"], i, "pull-{i} takes sequence number {i}");
        assert_eq!(p["name"], format!("pull-{i}"));
    }
    let latest_start = pulls.iter().filter_map(|p| p["started_at"].as_i64()).max().unwrap_or(0);
    let earliest_end = pulls.iter().filter_map(|p| p["finished_at"].as_i64()).min().unwrap_or(0);
    assert!(latest_start < earliest_end, "the six pulls ran concurrently (their windows overlap)");
    let after: Vec<&Value> = steps_of(&shown).into_iter().filter(|e| e["name"] == "after").collect();
    assert_eq!(after[0]["seq"], 6);
}

#[test]
fn a_sleeping_run_parks_and_resumes_on_time() {
    let sb = Sandbox::new();
    let (code, out) = sb.run_workflow("wf-sleep", r#"{"ms": 1500}"#, &["--detach"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["status"], "waiting", "the run parks instead of holding a worker: {out}");
    let id = out["run_id"].as_str().unwrap_or_default().to_owned();
    let shown = sb.show(&id);
    assert!(shown["run"]["wake_at"].as_i64().is_some(), "{shown}");
    assert!(shown["run"]["lease_owner"].is_null(), "no worker holds a parked run");

    let out = sb.ferry(&["work", "--until-idle"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = sb.show(&id);
    assert_eq!(shown["run"]["status"], "completed");
    let output: Value = serde_json::from_str(shown["run"]["output"].as_str().unwrap_or("null")).unwrap_or_default();
    let slept = output["t1"].as_u64().unwrap_or(0).saturating_sub(output["t0"].as_u64().unwrap_or(0));
    assert!(slept >= 1500, "woke after {slept} ms");
}

#[test]
fn events_wake_waiting_runs_and_are_not_lost_when_early() {
    let sb = Sandbox::new();
    // Parked waiting for the event; the event wakes it.
    let (_, out) = sb.run_workflow("wf-event", r#"{"order": "A1", "timeout_ms": 600000}"#, &["--detach"]);
    assert_eq!(out["status"], "waiting", "{out}");
    let waiting = out["run_id"].as_str().unwrap_or_default().to_owned();
    let sent = sb.ferry(&["send-event", "approved", "--data", r#"{"order": "B2"}"#]);
    assert!(sent.status.success());
    let sent = sb.ferry(&["send-event", "approved", "--data", r#"{"order": "A1", "by": "ops"}"#]);
    assert!(String::from_utf8_lossy(&sent.stdout).contains("1 waiting run(s) woken"));
    assert!(sb.ferry(&["work", "--until-idle"]).status.success());
    let shown = sb.show(&waiting);
    assert_eq!(shown["run"]["status"], "completed", "{shown}");
    let output: Value = serde_json::from_str(shown["run"]["output"].as_str().unwrap_or("null")).unwrap_or_default();
    assert_eq!(output["event"]["order"], "A1", "only the matching event is taken: {output}");

    // An event sent before the wait begins is delivered when it does.
    let (_, out) =
        sb.run_workflow("wf-event", r#"{"order": "C3", "timeout_ms": 600000, "sleep_first_ms": 1000}"#, &["--detach"]);
    let early = out["run_id"].as_str().unwrap_or_default().to_owned();
    assert!(sb.ferry(&["send-event", "approved", "--data", r#"{"order": "C3"}"#]).status.success());
    assert!(sb.ferry(&["work", "--until-idle"]).status.success());
    assert_eq!(sb.show(&early)["run"]["status"], "completed");

    // A timed-out wait returns none.
    let (code, out) = sb.run_workflow("wf-event", r#"{"order": "D4", "timeout_ms": 200}"#, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["output"]["event"], Value::Null);
}

#[test]
fn the_same_idempotency_key_yields_one_workflow_run() {
    let sb = Sandbox::new();
    let (_, a) = sb.run_workflow("wf-sleep", r#"{"ms": 1}"#, &["--idempotency-key", "weekly-2026-49"]);
    let (_, b) = sb.run_workflow("wf-sleep", r#"{"ms": 1}"#, &["--idempotency-key", "weekly-2026-49"]);
    assert_eq!(a["run_id"], b["run_id"]);
    assert_eq!(b["executed"], false);
}

#[test]
fn cancel_stops_a_waiting_run() {
    let sb = Sandbox::new();
    let (_, out) = sb.run_workflow("wf-sleep", r#"{"ms": 600000}"#, &["--detach"]);
    let id = out["run_id"].as_str().unwrap_or_default().to_owned();
    let cancelled = sb.ferry(&["cancel", &id]);
    assert!(cancelled.status.success(), "{}", String::from_utf8_lossy(&cancelled.stderr));
    let shown = sb.show(&id);
    assert_eq!(shown["run"]["status"], "cancelled");
    assert_eq!(shown["run"]["error"]["kind"], "cancelled");
    let again = sb.ferry(&["cancel", &id]);
    assert_eq!(again.status.code(), Some(2), "a final run cannot be cancelled again");
}

#[test]
fn a_changed_workflow_resumed_on_an_old_journal_fails_as_nondeterministic() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let allow = server.addr.to_string();
    // v1 runs steps 0..2 and parks in a long sleep after step 2.
    let input = json!({"url": server.url(""), "steps": 4, "sleep_after": 2, "sleep_ms": 600000}).to_string();
    let (_, out) = sb.run_workflow("wf-chain", &input, &["--detach", "--allow-host", &allow]);
    assert_eq!(out["status"], "waiting", "{out}");
    let id = out["run_id"].as_str().unwrap_or_default().to_owned();
    // v2 calls a different step at position 2. Store it, then point the
    // parked run at it and make it due, as a redeploy under a live run would.
    let (_, v2) = sb.run_workflow("wf-chain-v2", r#"{"url": "http://127.0.0.1:9", "steps": 0}"#, &[]);
    let v2_hash = v2["component"].as_str().unwrap_or_default().to_owned();
    tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}")).block_on(async {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", sb.db().display()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("UPDATE runs SET component_hash = ?, wake_at = 0 WHERE id = ?")
            .bind(&v2_hash)
            .bind(&id)
            .execute(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
    assert!(sb.ferry(&["work", "--until-idle", "--allow-host", &allow]).status.success());
    let shown = sb.show(&id);
    assert_eq!(shown["run"]["status"], "failed", "{shown}");
    assert_eq!(shown["run"]["error"]["kind"], "nondeterministic");
    let message = shown["run"]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("#4.1"),
        "names the sequence number (steps 0, 1 and their log lines come first): {message}"
    );
    assert!(message.contains("count-2") && message.contains("echo-2"), "shows both sides: {message}");
    assert_eq!(server.count("step-3"), 0);
    let timeline = String::from_utf8_lossy(&sb.ferry(&["show", &id]).stdout).into_owned();
    assert!(timeline.contains("nondeterministic"), "ferry show tells: {timeline}");
}

#[test]
fn a_child_workflow_runs_and_its_output_returns_to_the_parent() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = json!({"url": server.url(""), "steps": 2}).to_string();
    let (code, out) = sb.run_workflow("wf-parent", &input, &["--allow-host", &server.addr.to_string()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["output"]["child"]["results"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(server.count("step-0"), 1);
    let shown = sb.show(out["run_id"].as_str().unwrap_or_default());
    let child = entries(&shown, "child-run");
    assert_eq!(child.len(), 2, "started and finished: {shown}");
}

#[test]
fn cancel_stops_the_steps_in_flight() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = json!({"url": server.url(""), "ms": 20_000}).to_string();
    let dir = guests().to_str().unwrap_or_default().to_owned();
    let wasm = crate::support::guest("wf-fanout");
    let mut child = sb
        .command(&[
            "exec",
            wasm.to_str().unwrap_or_default(),
            "--input",
            &input,
            "--steps-dir",
            &dir,
            "--allow-host",
            &server.addr.to_string(),
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn ferry: {e}"));
    wait_for("six pulls in flight", Duration::from_secs(60), || server.requests_to("/slow").len() == 6);
    let id = latest_run(&sb);
    let out = sb.ferry(&["cancel", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The process running it notices and stops without waiting for the 20 s pulls.
    let mut exited = None;
    wait_for("the worker to stop the run", Duration::from_secs(15), || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    });
    let shown = sb.show(&id);
    assert_eq!(shown["run"]["status"], "cancelled");
    assert!(steps_of(&shown).is_empty(), "no pull finished: {shown}");
    assert_eq!(server.count("after"), 0);
}
