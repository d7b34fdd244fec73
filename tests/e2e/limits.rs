//! Bad guests fail their attempt with a clear reason; the host lives on.

use crate::support::{Sandbox, entries, guest};

#[test]
fn an_endless_loop_is_stopped_by_fuel_and_names_the_budget() {
    let sb = Sandbox::new();
    let (code, out) = sb.exec("spin", "null", &["--fuel", "5000000"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["status"], "failed");
    assert_eq!(out["error"]["kind"], "fuel-exhausted", "{out}");
    let msg = out["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("spin") && msg.contains("5000000"), "{msg}");
    assert_eq!(out["fuel"], 5_000_000);
    // The host is alive and the store still works: the next run succeeds.
    let (code, out) = sb.exec("echo", r#"{"after":"spin"}"#, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_wall_clock_deadline_stops_a_busy_guest() {
    let sb = Sandbox::new();
    let (code, out) = sb.exec("spin", "null", &["--fuel", "1000000000000", "--timeout", "300ms"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["error"]["kind"], "timeout", "{out}");
    assert!(out["error"]["message"].as_str().unwrap_or_default().contains("deadline"), "{out}");
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let sb = Sandbox::new();
    let (code, out) = sb.exec("alloc-bomb", "null", &["--memory", "32MiB"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["error"]["kind"], "memory-limit", "{out}");
    let msg = out["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("memory cap") && msg.contains(&(32u64 << 20).to_string()), "{msg}");
}

#[test]
fn a_panic_shows_the_guest_message_and_a_wasm_backtrace() {
    let sb = Sandbox::new();
    let (code, out) = sb.exec("panic", r#"{"reason":"the sky fell"}"#, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["error"]["kind"], "trap", "{out}");
    let msg = out["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("boom: the sky fell"), "guest message missing: {msg}");
    assert!(msg.contains("wasm backtrace"), "backtrace missing: {msg}");
    // The panic message is journaled as the guest's stderr too.
    let shown = sb.show(out["run_id"].as_str().unwrap_or_default());
    let logs = entries(&shown, "log");
    assert!(logs.iter().any(|e| e["name"] == "stderr" && e["request"].as_str().unwrap_or("").contains("the sky fell")));
}

#[test]
fn a_component_of_the_wrong_world_is_refused_with_the_reason() {
    let sb = Sandbox::new();
    let path = guest("wrong-world");
    let out = sb.ferry(&["exec", path.to_str().unwrap_or_default(), "--input", "{}"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong world"), "{err}");
    assert!(err.contains("does not export `run`"), "{err}");
    assert!(err.contains("greet"), "the message should name what it exports: {err}");
}

#[test]
fn broken_components_and_inputs_get_clear_errors() {
    let sb = Sandbox::new();
    let junk = sb.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not wasm").unwrap_or_default();
    let out = sb.ferry(&["exec", junk.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly file"));

    let core = sb.dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap_or_default();
    let out = sb.ferry(&["exec", core.to_str().unwrap_or_default()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("core WebAssembly module, not a component"));

    let truncated = sb.dir.path().join("truncated.wasm");
    let bytes = std::fs::read(guest("echo")).unwrap_or_default();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap_or_default();
    let out = sb.ferry(&["exec", truncated.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed"), "{}", String::from_utf8_lossy(&out.stderr));

    let echo = guest("echo");
    let out = sb.ferry(&["exec", echo.to_str().unwrap_or_default(), "--input", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
}
