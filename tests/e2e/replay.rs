//! Offline replay, testing a fix against a recorded failure, rerun from a
//! step, export and import.

use serde_json::{Value, json};

use crate::support::{Sandbox, TestServer, entries, guest, guests};

fn replay(sb: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    let out = sb.ferry(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_completed_run_replays_identically_without_touching_the_network() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = json!({"url": server.url(""), "steps": 4, "flaky_at": 1, "fail": 1}).to_string();
    let (code, out) = sb.run_workflow("wf-chain", &input, &["--allow-host", &server.addr.to_string()]);
    assert_eq!(code, 0, "{out}");
    let id = out["run_id"].as_str().unwrap_or_default().to_owned();
    let before = server.hits();

    let (code, stdout, stderr) = replay(&sb, &[&id, "--json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(server.hits(), before, "replay sent no request");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_eq!(report["identical"], true);
    let lines = report["report"]["lines"].as_array().cloned().unwrap_or_default();
    let shown = sb.show(&id);
    let journal = shown["journal"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(lines.len(), journal, "every journal entry is accounted for: {stdout}");
    assert!(lines.iter().all(|l| l["verdict"] == "matched"), "{stdout}");
    // Fuel is part of the match: every step attempt was compared.
    assert_eq!(lines.iter().filter(|l| l["kind"] == "step").count(), entries(&shown, "step").len());

    let (code, text, _) = replay(&sb, &[&id]);
    assert_eq!(code, 0);
    assert!(text.contains("result: identical"), "{text}");
}

#[test]
fn a_fix_is_tested_against_the_recorded_504_and_the_run_is_rerun_from_that_step() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let allow = server.addr.to_string();
    let pages = guest("pages");
    let fixed = guest("pages-fixed");
    let bind = format!("pages={}", pages.display());
    let input = json!({"url": server.url("")}).to_string();
    let (code, out) =
        sb.run_workflow("wf-report", &input, &["--allow-host", &allow, "--step", &bind, "--max-attempts", "1"]);
    assert_eq!(code, 1, "the 504 page fails the recorded run: {out}");
    let id = out["run_id"].as_str().unwrap_or_default().to_owned();
    let hits = server.hits();

    // Replay the fixed step against the very responses that broke it.
    let swap = format!("pages={}", fixed.display());
    let (code, stdout, stderr) = replay(&sb, &[&id, "--component", &swap]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("new version"), "{stdout}");
    assert!(
        stdout.contains(r#""complete":false"#) && stdout.contains("[1,2]"),
        "the fixed step handles the 504 page: {stdout}"
    );
    assert!(stdout.contains("504"), "the recorded failure is shown: {stdout}");
    assert_eq!(server.hits(), hits, "replay sent no request");

    // Rerun from the failed step with the fix: the earlier steps are kept.
    let dir = guests().to_str().unwrap_or_default().to_owned();
    let out = sb.ferry(&[
        "rerun",
        &id,
        "--from",
        "pull",
        "--component",
        &swap,
        "--steps-dir",
        &dir,
        "--allow-host",
        &allow,
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rerun: Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_eq!(rerun["status"], "completed", "{rerun}");
    assert_eq!(server.count("a"), 1, "count-a was not executed again");
    assert_eq!(server.count("b"), 1, "count-b was not executed again");
    assert_eq!(server.count("c"), 1);
    let new_id = rerun["run_id"].as_str().unwrap_or_default();
    let shown = sb.show(new_id);
    assert!(shown["run"]["origin"].as_str().unwrap_or_default().contains(&id), "the rerun is linked to the original");
}

#[test]
fn a_workflow_that_calls_a_different_step_diverges_at_that_entry() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = json!({"url": server.url(""), "steps": 4}).to_string();
    let (code, out) = sb.run_workflow("wf-chain", &input, &["--allow-host", &server.addr.to_string()]);
    assert_eq!(code, 0, "{out}");
    let id = out["run_id"].as_str().unwrap_or_default().to_owned();
    let v2 = format!("wf-chain={}", guest("wf-chain-v2").display());
    let (code, stdout, _) = replay(&sb, &[&id, "--component", &v2]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("first divergence at #4.1"), "{stdout}");
    assert!(stdout.contains("recorded: step `count-2`") && stdout.contains("replayed: step `echo-2`"), "{stdout}");
    assert!(stdout.contains("result: diverged"), "{stdout}");
}

#[test]
fn an_export_replays_on_a_fresh_store_and_a_broken_one_is_refused() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = json!({"url": server.url(""), "steps": 2}).to_string();
    let (_, out) = sb.run_workflow("wf-chain", &input, &["--allow-host", &server.addr.to_string()]);
    let id = out["run_id"].as_str().unwrap_or_default().to_owned();
    let file = sb.dir.path().join("run.json");
    let file_arg = file.to_str().unwrap_or_default().to_owned();
    let out = sb.ferry(&["export", &id, "--with-components", "-o", &file_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let elsewhere = Sandbox::new();
    let (code, stdout, stderr) = replay(&elsewhere, &["--from-file", &file_arg]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("result: identical"));

    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let truncated = elsewhere.dir.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap_or_default();
    let (code, _, stderr) = replay(&elsewhere, &["--from-file", truncated.to_str().unwrap_or_default()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not a Ferry export") || stderr.contains("truncated"), "{stderr}");

    let tampered = elsewhere.dir.path().join("tampered.json");
    let mut doc: Value = serde_json::from_str(&text).unwrap_or_default();
    doc["journal"][0]["request"] = Value::String(r#"{"tag":"forged"}"#.into());
    std::fs::write(&tampered, doc.to_string()).unwrap_or_default();
    let (code, _, stderr) = replay(&elsewhere, &["--from-file", tampered.to_str().unwrap_or_default()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not match its request hash"), "{stderr}");

    let not_export = elsewhere.dir.path().join("other.json");
    std::fs::write(&not_export, r#"{"hello": "world"}"#).unwrap_or_default();
    let (code, _, stderr) = replay(&elsewhere, &["--from-file", not_export.to_str().unwrap_or_default()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a Ferry export"), "{stderr}");
}
