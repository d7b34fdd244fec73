//! `ferry serve`: deploy, trigger, schedule and limit runs behind the API.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Daemon, Sandbox, TestServer, wait_for};

/// Deploys the steps the workflow fixtures call, allowed to reach `server`.
fn deploy_steps(d: &Daemon, server: &TestServer) {
    let allow = json!({ "allow_hosts": [server.addr.to_string()] });
    for step in ["count", "flaky", "slow", "echo", "hello"] {
        d.deploy_api(step, step, allow.clone(), None);
    }
}

#[test]
fn deploy_run_and_wait_through_the_cli() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    deploy_steps(&d, &server);
    let first = d.deploy("wf-chain", "report", &[]);
    assert_eq!(first["deployment"]["version"], 1, "{first}");
    let again = d.deploy("wf-chain", "report", &[]);
    assert_eq!(again["created"], false, "deploying the same bytes twice changes nothing: {again}");

    let input = json!({"url": server.url(""), "steps": 3}).to_string();
    let out = d.ferry(&["run", "report", "--input", &input, "--wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(output["results"].as_array().map(Vec::len), Some(3), "{output}");
    assert_eq!(server.count("step-2"), 1);

    let out = d.ferry(&["deployments", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(listed.to_string().contains("report"), "{listed}");
    let runs = d.get("/v1/runs?workflow=report");
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_run_in_flight_finishes_on_the_version_it_started_with() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    deploy_steps(&d, &server);
    let v1 = d.deploy_api("wf-chain", "report", json!({}), None);
    let id = d.start_run("report", json!({"url": server.url(""), "steps": 4, "sleep_after": 1, "sleep_ms": 1500}));
    wait_for("the run to park", Duration::from_secs(60), || {
        d.get(&format!("/v1/runs/{id}"))["run"]["status"] == "waiting"
    });
    let v2 = d.deploy_api("wf-chain-v2", "report", json!({}), None);
    assert_eq!(v2["deployment"]["version"], 2);
    let run = d.wait(&id);
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["component_hash"], v1["deployment"]["hash"], "the run stayed on version 1");
    assert_eq!(server.count("step-2"), 1, "version 1 calls count-2 (version 2 would call echo)");
    // New runs take the new version; activating version 1 rolls back.
    let (status, _) = d.request("POST", "/v1/deployments/report/activate", Some(br#"{"version": 1}"#.to_vec()), None);
    assert_eq!(status, 200);
    let listed = d.get("/v1/deployments");
    let active: Vec<&Value> = listed["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["name"] == "report" && x["active"] == true)
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["version"], 1);
}

#[test]
fn cron_fires_once_per_tick_across_a_restart() {
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    d.deploy_api(
        "wf-sleep",
        "tick",
        json!({}),
        Some(json!({"cron": "* * * * * *", "timezone": "Europe/Amsterdam", "input": {"ms": 1}})),
    );
    let runs = |d: &Daemon| d.get("/v1/runs?workflow=tick&limit=1000")["runs"].as_array().cloned().unwrap_or_default();
    wait_for("two ticks", Duration::from_secs(30), || runs(&d).len() >= 2);
    assert!(d.terminate().success());
    // Down for a few ticks, then up again.
    std::thread::sleep(Duration::from_millis(4000));
    let d = Daemon::start(&sb, &[], &[]);
    let before = runs(&d).len();
    wait_for("ticks after the restart", Duration::from_secs(30), || runs(&d).len() >= before + 2);
    let all = runs(&d);
    let mut keys: Vec<String> =
        all.iter().map(|r| r["idempotency_key"].as_str().unwrap_or_default().to_owned()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no tick fired twice");
    assert!(
        all.iter().any(|r| r["origin"].as_str().unwrap_or_default().contains("late")),
        "the missed tick ran once, marked late"
    );
    let late = all.iter().filter(|r| r["origin"].as_str().unwrap_or_default().contains("late")).count();
    assert_eq!(late, 1, "missed ticks collapse into one late run");
}

#[test]
fn a_concurrency_limit_per_key_serialises_runs_of_the_same_key_only() {
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    d.deploy_api("wf-sleep", "per-client", json!({"concurrency": {"limit": 1, "key": "/client"}}), None);
    let a1 = d.start_run("per-client", json!({"client": "a", "ms": 1500}));
    let a2 = d.start_run("per-client", json!({"client": "a", "ms": 10}));
    let b1 = d.start_run("per-client", json!({"client": "b", "ms": 10}));
    let run = |id: &str| d.get(&format!("/v1/runs/{id}"))["run"].clone();
    wait_for("b1 to finish while a1 sleeps", Duration::from_secs(30), || run(&b1)["status"] == "completed");
    let listed = d.get("/v1/runs?workflow=per-client&status=queued");
    let queued = listed["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(queued.len(), 1, "a2 waits for a1: {listed}");
    assert_eq!(queued[0]["id"], a2.as_str());
    assert!(queued[0]["queue_reason"].as_str().unwrap_or_default().contains("concurrency"), "{listed}");
    let (a1_done, a2_done) = (d.wait(&a1), d.wait(&a2));
    assert!(a2_done["started_at"].as_i64() >= a1_done["finished_at"].as_i64(), "a2 started after a1 finished");
}

#[test]
fn a_rate_limit_holds() {
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    d.deploy_api("wf-sleep", "limited", json!({"rate": {"limit": 2, "period_ms": 2000}}), None);
    let ids: Vec<String> = (0..3).map(|_| d.start_run("limited", json!({"ms": 1}))).collect();
    let runs: Vec<Value> = ids.iter().map(|id| d.wait(id)).collect();
    let mut starts: Vec<i64> = runs.iter().filter_map(|r| r["started_at"].as_i64()).collect();
    starts.sort();
    assert_eq!(starts.len(), 3);
    assert!(starts[2] - starts[0] >= 2_000_000, "the third start waited for the period: {starts:?}");
}

#[test]
fn sigterm_mid_run_loses_nothing() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    // A short grace period: step 2 is held past it, so the daemon must stop
    // it and hand the run back.
    let d = Daemon::start(&sb, &["--grace", "1s"], &[]);
    deploy_steps(&d, &server);
    d.deploy_api("wf-chain", "report", json!({}), None);
    server.hold("step-2");
    let id = d.start_run("report", json!({"url": server.url(""), "steps": 4}));
    wait_for("step 2 in flight", Duration::from_secs(60), || !server.requests_to("/count/step-2").is_empty());
    assert!(d.terminate().success(), "ferry serve exits cleanly on SIGTERM");
    server.release();
    let d = Daemon::start(&sb, &[], &[]);
    let run = d.wait(&id);
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(server.count("step-0"), 1);
    assert_eq!(server.count("step-1"), 1);
    assert_eq!(server.count("step-3"), 1);
}

#[test]
fn security_and_bad_requests() {
    let sb = Sandbox::new();
    // A non-loopback listen address needs a token.
    let out = sb.ferry(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without an API token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let d = Daemon::start(&sb, &[], &[("FERRY_TOKEN", "t0ken-for-tests")]);
    let (status, body) = d.request("GET", "/v1/runs", None, None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = d.request("GET", "/v1/runs", None, Some("wrong"));
    assert_eq!(status, 401);
    let (status, _) = d.request("GET", "/v1/runs", None, Some("t0ken-for-tests"));
    assert_eq!(status, 200);
    let (status, _) = d.request("GET", "/healthz", None, None);
    assert_eq!(status, 200, "health needs no token");

    let token = Some("t0ken-for-tests");
    let (status, body) = d.request("POST", "/v1/runs", Some(b"{not json".to_vec()), token);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    let (status, body) = d.request("POST", "/v1/runs", Some(br#"{"workflow": "nope"}"#.to_vec()), token);
    assert_eq!(status, 404, "{body}");
    let huge = format!(r#"{{"workflow": "x", "input": "{}"}}"#, "a".repeat(2 << 20));
    let (status, body) = d.request("POST", "/v1/runs", Some(huge.into_bytes()), token);
    assert_eq!(status, 413, "{body}");
    let junk = json!({"name": "junk", "component_base64": "AGFzbQEAAAA="}).to_string();
    let (status, body) = d.request("POST", "/v1/deployments", Some(junk.into_bytes()), token);
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("core WebAssembly module"), "{body}");
    let (status, body) = d.request("POST", "/v1/runs/run_nope/cancel", None, token);
    assert_eq!(status, 400, "{body}");
    let (status, body) = d.request("GET", "/v1/runs?limit=5000", None, token);
    assert_eq!(status, 400, "{body}");
    // Nothing was written by any of them.
    let (_, runs) = d.request("GET", "/v1/runs", None, token);
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0));
    let (_, deployments) = d.request("GET", "/v1/deployments", None, token);
    assert_eq!(deployments["deployments"].as_array().map(Vec::len), Some(0));
    let (status, metrics) = d.request("GET", "/metrics", None, token);
    assert_eq!(status, 200);
    assert!(metrics.as_str().unwrap_or_default().contains("ferry_step_runs_total"), "{metrics}");
}

#[test]
fn an_event_starts_the_workflows_that_listen_for_it() {
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    d.deploy_api("wf-sleep", "on-signup", json!({"on_events": ["client-signed-up"]}), None);
    let body = json!({"name": "client-signed-up", "data": {"ms": 1, "client": "acme"}}).to_string().into_bytes();
    let (status, resp) = d.request("POST", "/v1/events", Some(body), None);
    assert_eq!(status, 200, "{resp}");
    let started = resp["started"].as_array().cloned().unwrap_or_default();
    assert_eq!(started.len(), 1, "{resp}");
    let run = d.wait(started[0].as_str().unwrap_or_default());
    assert_eq!(run["status"], "completed");
    assert!(run["input"].as_str().unwrap_or_default().contains("acme"), "the event's data is the input: {run}");
}

#[test]
fn replay_and_rerun_go_through_the_daemon() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    deploy_steps(&d, &server);
    let allow = json!({ "allow_hosts": [server.addr.to_string()] });
    d.deploy_api("pages", "pages", allow.clone(), None);
    d.deploy_api("wf-report", "report", json!({}), None);
    let id = d.start_run("report", json!({"url": server.url("")}));
    let run = d.wait(&id);
    assert_eq!(run["status"], "failed", "the 504 page fails the run: {run}");

    // The recording comes from the daemon; the fix is tried locally.
    let fixed = format!("pages={}", crate::support::guest("pages-fixed").display());
    let out = d.ferry(&["replay", &id, "--component", &fixed]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(r#""complete":false"#), "{text}");

    // Deploy the fix, then rerun from the failed step: earlier steps are kept.
    d.deploy_api("pages-fixed", "pages", allow, None);
    let hits_a = server.count("a");
    let out = d.ferry(&["rerun", &id, "--from", "pull", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rerun: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(rerun["status"], "completed", "{rerun}");
    assert_eq!(server.count("a"), hits_a, "count-a was not executed again");
    assert_eq!(server.count("c"), 1);
}

#[test]
fn every_route_in_the_api_document_exists() {
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    let doc = std::fs::read_to_string(crate::support::root().join("docs/API.md")).unwrap_or_default();
    let mut routes: Vec<(String, String)> = Vec::new();
    for word in doc.split('`') {
        let mut parts = word.split_whitespace();
        if let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next())
            && ["GET", "POST", "DELETE"].contains(&method)
            && path.starts_with('/')
        {
            let path = path
                .split('?')
                .next()
                .unwrap_or_default()
                .replace("{id}", "run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K")
                .replace("{name}", "x");
            routes.push((method.to_owned(), path));
        }
    }
    routes.sort();
    routes.dedup();
    assert!(routes.len() >= 14, "the document names its routes: {routes:?}");
    for (method, path) in &routes {
        let body = (method != "GET").then(|| b"{}".to_vec());
        let (status, resp) = d.request(method, path, body, None);
        let unrouted = status == 404 && resp["error"]["message"].as_str().unwrap_or_default().contains("no such route");
        assert!(!unrouted && status != 405, "{method} {path} is documented but not served: {status} {resp}");
        if status >= 400 {
            assert!(
                resp["error"]["code"].is_string() && resp["error"]["message"].is_string(),
                "{method} {path}: error shape {resp}"
            );
        }
    }
}
