//! The deny-all sandbox and the journal of what crosses it.

use crate::support::{Sandbox, TestServer, entries};

#[test]
fn http_fetch_is_journaled_and_the_allow_list_is_enforced() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let allow = server.addr.to_string();
    let input = serde_json::json!({"url": server.url("/json"), "method": "GET"}).to_string();
    let (code, out) = sb.exec("fetch", &input, &["--allow-host", &allow]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["output"]["status"], 200);
    assert_eq!(server.hits(), 1);

    let shown = sb.show(out["run_id"].as_str().unwrap_or_default());
    let http = entries(&shown, "http");
    assert_eq!(http.len(), 1, "{shown}");
    let request: serde_json::Value =
        serde_json::from_str(http[0]["request"].as_str().unwrap_or("null")).unwrap_or_default();
    assert_eq!(request["url"], server.url("/json"));
    let response: serde_json::Value =
        serde_json::from_str(http[0]["response"].as_str().unwrap_or("null")).unwrap_or_default();
    assert_eq!(response["status"], 200);
    assert!(response["body"].as_str().unwrap_or_default().contains("rows"), "{response}");
    assert!(http[0]["child"].as_u64() > Some(0), "http entries are children of the step attempt");

    // A host that is not on the allow-list is refused before any request.
    let (code, out) = sb.exec("fetch", &input, &["--allow-host", "api.example.com"]);
    assert_eq!(code, 1, "{out}");
    assert!(out["error"]["message"].as_str().unwrap_or_default().contains("denied"), "{out}");
    assert_eq!(server.hits(), 1, "a denied request must not reach the server");
    let shown = sb.show(out["run_id"].as_str().unwrap_or_default());
    let http = entries(&shown, "http");
    assert_eq!(http[0]["status"], "error");
}

#[test]
fn idempotency_key_header_is_stable_and_credentials_are_redacted() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input =
        serde_json::json!({"url": server.url("/echo"), "method": "POST", "body": {"a": 1}, "idempotency_key": true});
    let (code, out) = sb.exec("fetch", &input.to_string(), &["--allow-host", &server.addr.to_string()]);
    assert_eq!(code, 0, "{out}");
    let run_id = out["run_id"].as_str().unwrap_or_default();
    let key = out["output"]["idempotency_key"].as_str().unwrap_or_default();
    assert_eq!(key, format!("{run_id}-0"));
    let seen = server.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let header = seen[0].1.iter().find(|(k, _)| k == "idempotency-key").map(|(_, v)| v.clone());
    assert_eq!(header.as_deref(), Some(key));
}

#[test]
fn clocks_and_randomness_come_from_the_host_and_are_journaled() {
    let sb = Sandbox::new();
    let (code, out) = sb.exec("clock-random", "null", &[]);
    assert_eq!(code, 0, "{out}");
    let shown = sb.show(out["run_id"].as_str().unwrap_or_default());
    let now = entries(&shown, "now");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["response"].as_str().and_then(|r| r.parse::<u64>().ok()), out["output"]["now_ms"].as_u64());
    let random = entries(&shown, "random");
    assert_eq!(random.len(), 1);
    assert_eq!(
        random[0]["response"].as_str().map(|r| r.trim_matches('"').to_owned()),
        out["output"]["random"].as_str().map(str::to_owned)
    );
    assert!(!entries(&shown, "wall-clock").is_empty(), "std SystemTime::now goes through the journal");
    assert!(entries(&shown, "monotonic-clock").len() >= 2, "std Instant::now goes through the journal");
    let std_ms = out["output"]["std_system_time_ms"].as_u64().unwrap_or(0);
    let ferry_ms = out["output"]["now_ms"].as_u64().unwrap_or(0);
    assert!(std_ms.abs_diff(ferry_ms) < 60_000, "both clocks read the host's time: {std_ms} vs {ferry_ms}");
}

#[test]
fn secrets_reach_the_guest_but_never_the_journal() {
    let server = TestServer::start();
    let sb = Sandbox::new();
    let input = serde_json::json!({"url": server.url("/json"), "method": "GET", "bearer_secret": "api-token"});
    let out = std::process::Command::new(crate::support::ferry_bin())
        .args(["exec"])
        .arg(crate::support::guest("fetch"))
        .args(["--input", &input.to_string(), "--json", "--allow-host", &server.addr.to_string(), "--db"])
        .arg(sb.db())
        .arg("--cache-dir")
        .arg(crate::support::root().join("target").join("e2e-cache"))
        .env("FERRY_SECRET_API_TOKEN", "s3cr3t-value-42")
        .output()
        .unwrap_or_else(|e| panic!("run ferry: {e}"));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(out.status.success(), "{summary} {}", String::from_utf8_lossy(&out.stderr));
    let seen = server.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let auth = seen[0].1.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some("Bearer s3cr3t-value-42"), "the guest got the secret");
    let shown = sb.show(summary["run_id"].as_str().unwrap_or_default());
    let text = shown.to_string();
    assert!(!text.contains("s3cr3t-value-42"), "the secret leaked into the journal: {text}");
    assert_eq!(entries(&shown, "secret").len(), 1);
    let db = std::fs::read(sb.db()).unwrap_or_default();
    assert!(!db.windows(15).any(|w| w == b"s3cr3t-value-42"), "the secret leaked into the store file");
}

#[test]
fn the_sandbox_denies_files_environment_and_sockets() {
    let sb = Sandbox::new();
    let (code, out) = sb.exec("sandbox-probe", "null", &[]);
    assert_eq!(code, 0, "{out}");
    let report = &out["output"];
    for probe in ["read_root", "read_etc_passwd", "write_file", "tcp_connect"] {
        assert!(report[probe].as_str().unwrap_or_default().starts_with("denied"), "{probe} was not denied: {report}");
    }
    assert_eq!(report["env_vars"], 0, "no environment is inherited: {report}");
    assert_eq!(report["args"], 0, "no arguments are passed: {report}");
}
