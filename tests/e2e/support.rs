//! Shared helpers: build the guests once, run `ferry` in a scratch folder,
//! serve HTTP on 127.0.0.1 for steps to call.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::response::IntoResponse;

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

/// The `ferry` binary under test.
pub fn ferry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

/// Builds every crate in `steps/` once (with `ferry build`, so the build
/// command is exercised too) and returns the folder with the components.
pub fn guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = root().join("target").join("e2e-steps");
        let out = Command::new(ferry_bin())
            .args(["build", "--json", "--dir"])
            .arg(root().join("steps"))
            .arg("--target-dir")
            .arg(&target)
            .output()
            .expect("run ferry build");
        assert!(
            out.status.success(),
            "ferry build failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Value = serde_json::from_slice(&out.stdout).expect("ferry build --json prints JSON");
        assert!(listed.as_array().is_some_and(|a| a.len() >= 22), "expected every step to be built: {listed}");
        target.join("wasm32-wasip2").join("release")
    })
}

/// The component built from the steps crate `name`.
pub fn guest(name: &str) -> PathBuf {
    let path = guests().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A scratch folder with its own store; the compiled-artifact cache is
/// shared by all tests so each component is compiled once per run.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("ferry.db")
    }

    /// `ferry ARGS` in the scratch folder, on its store, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ferry_bin());
        cmd.args(args)
            .arg("--db")
            .arg(self.db())
            .arg("--cache-dir")
            .arg(root().join("target").join("e2e-cache"))
            .current_dir(self.dir.path())
            .env_remove("FERRY_LOG");
        cmd
    }

    /// `ferry ARGS` in the scratch folder, on its store.
    pub fn ferry(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ferry")
    }

    /// `ferry exec WORKFLOW --input INPUT --json --steps-dir GUESTS EXTRA…`.
    pub fn run_workflow(&self, workflow: &str, input: &str, extra: &[&str]) -> (i32, Value) {
        let dir = guests().to_str().expect("utf-8 path").to_owned();
        let mut args = vec!["--steps-dir", dir.as_str()];
        args.extend_from_slice(extra);
        self.exec(workflow, input, &args)
    }

    /// `ferry exec GUEST --input INPUT --json EXTRA…`: exit code and the
    /// printed summary.
    pub fn exec(&self, guest_name: &str, input: &str, extra: &[&str]) -> (i32, Value) {
        let path = guest(guest_name);
        let mut args = vec!["exec", path.to_str().expect("utf-8 path"), "--input", input, "--json"];
        args.extend_from_slice(extra);
        let out = self.ferry(&args);
        let code = out.status.code().unwrap_or(-1);
        let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ferry exec printed no JSON ({e}); exit {code}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, summary)
    }

    /// `ferry show RUN --json`.
    pub fn show(&self, run_id: &str) -> Value {
        let out = self.ferry(&["show", run_id, "--json"]);
        assert!(out.status.success(), "ferry show failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("ferry show --json prints JSON")
    }
}

/// The journal entries of kind `kind` in a `ferry show --json` document.
pub fn entries<'a>(shown: &'a Value, kind: &str) -> Vec<&'a Value> {
    shown["journal"].as_array().expect("journal array").iter().filter(|e| e["kind"] == kind).collect()
}

/// What the test server saw: every request's path and headers.
pub type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// An HTTP server on 127.0.0.1 that counts requests and remembers them.
///
/// - `GET /json`: a small JSON document; `POST /echo`: returns the body.
/// - `POST /count/{tag}`: counts calls per tag, returns `{"tag", "count"}`;
///   while `tag` is the gate (see [`TestServer::hold`]) the request waits.
/// - `GET /flaky/{key}?fail=N`: 503 for the first N calls per key, then 200.
/// - `GET /slow?ms=M`: answers after M ms.
/// - `GET /pages/{n}`: page 1 has rows and `next: /pages/2`; page 2 is a 504.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Seen,
    pub counts: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    gate: Arc<Mutex<Option<String>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TestServer {
    pub fn start() -> Self {
        use axum::extract::{Path as UrlPath, Query};
        use axum::routing::{get, post};
        use std::collections::HashMap;
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let hits = Arc::new(AtomicUsize::new(0));
        let seen: Seen = Arc::default();
        let counts: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let gate: Arc<Mutex<Option<String>>> = Arc::default();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let (h, s) = (hits.clone(), seen.clone());
        let record = Arc::new(move |path: &str, headers: &axum::http::HeaderMap| {
            h.fetch_add(1, Ordering::SeqCst);
            let hs = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
            s.lock().expect("lock").push((path.to_owned(), hs));
        });
        let bump = |counts: &Mutex<HashMap<String, u64>>, key: String| -> u64 {
            let mut c = counts.lock().expect("lock");
            let n = c.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        let (r1, r2, r3, r4, r5, r6) =
            (record.clone(), record.clone(), record.clone(), record.clone(), record.clone(), record);
        let (c1, c2, g1) = (counts.clone(), counts.clone(), gate.clone());
        let app = axum::Router::new()
            .route(
                "/json",
                get(move |headers: axum::http::HeaderMap| async move {
                    r1("/json", &headers);
                    axum::Json(serde_json::json!({"rows": [1, 2, 3], "next": null}))
                }),
            )
            .route(
                "/echo",
                post(move |headers: axum::http::HeaderMap, body: String| async move {
                    r2("/echo", &headers);
                    body
                }),
            )
            .route(
                "/count/{tag}",
                post(move |UrlPath(tag): UrlPath<String>, headers: axum::http::HeaderMap| async move {
                    r3(&format!("/count/{tag}"), &headers);
                    while g1.lock().expect("lock").as_deref() == Some(tag.as_str()) {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    let n = bump(&c1, tag.clone());
                    axum::Json(serde_json::json!({"tag": tag, "count": n}))
                }),
            )
            .route(
                "/flaky/{key}",
                get(
                    move |UrlPath(key): UrlPath<String>,
                          Query(q): Query<HashMap<String, u64>>,
                          headers: axum::http::HeaderMap| async move {
                        r4(&format!("/flaky/{key}"), &headers);
                        let n = bump(&c2, format!("flaky:{key}"));
                        if n <= q.get("fail").copied().unwrap_or(0) {
                            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
                        }
                        axum::Json(serde_json::json!({"key": key, "calls": n})).into_response()
                    },
                ),
            )
            .route(
                "/pages/{n}",
                get(move |UrlPath(n): UrlPath<u32>, headers: axum::http::HeaderMap| async move {
                    r6(&format!("/pages/{n}"), &headers);
                    match n {
                        1 => axum::Json(serde_json::json!({"rows": [1, 2], "next": "/pages/2"})).into_response(),
                        2 => (axum::http::StatusCode::GATEWAY_TIMEOUT, "upstream timed out").into_response(),
                        _ => axum::Json(serde_json::json!({"rows": [], "next": null})).into_response(),
                    }
                }),
            )
            .route(
                "/slow",
                get(move |Query(q): Query<HashMap<String, u64>>, headers: axum::http::HeaderMap| async move {
                    r5("/slow", &headers);
                    let ms = q.get("ms").copied().unwrap_or(0);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    axum::Json(serde_json::json!({"slept": ms}))
                }),
            );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, hits, seen, counts, gate, _runtime: runtime }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// How many times `/count/{tag}` completed (or `flaky:{key}` was called).
    pub fn count(&self, key: &str) -> u64 {
        self.counts.lock().map(|c| c.get(key).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Makes `/count/{tag}` requests wait until [`TestServer::release`].
    pub fn hold(&self, tag: &str) {
        *self.gate.lock().expect("lock") = Some(tag.to_owned());
    }

    pub fn release(&self) {
        *self.gate.lock().expect("lock") = None;
    }

    /// Requests seen whose path is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Vec<(String, String)>> {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|(p, _)| p == path).map(|(_, h)| h.clone()).collect())
            .unwrap_or_default()
    }
}

/// Waits until `cond` holds, failing the test after `limit`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A `ferry serve` process on a free loopback port, on the sandbox's store.
pub struct Daemon {
    pub url: String,
    child: std::process::Child,
}

impl Daemon {
    /// Starts `ferry serve --listen 127.0.0.1:0 EXTRA…` and waits until it listens.
    pub fn start(sb: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        for (flag, default) in [("--lease-ttl", "2s"), ("--grace", "5s")] {
            if !extra.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        args.extend_from_slice(extra);
        let mut cmd = sb.command(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ferry serve: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("ferry serve did not start listening"));
        Self { url, child }
    }

    /// `ferry ARGS` pointed at this daemon (no `--db`).
    pub fn ferry(&self, args: &[&str]) -> Output {
        Command::new(ferry_bin())
            .args(args)
            .env("FERRY_URL", &self.url)
            .env_remove("FERRY_DB")
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run ferry")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().unwrap_or_else(|e| panic!("wait for ferry serve: {e}"))
    }

    /// An HTTP request to the daemon: status and JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>, token: Option<&str>) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let client = reqwest::Client::new();
            let mut req = client.request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}{path}", self.url),
            );
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap_or_else(|e| panic!("request {path}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Deploys guest `name` as `as_name` through the API, with `config`.
    pub fn deploy_api(&self, name: &str, as_name: &str, config: Value, schedule: Option<Value>) -> Value {
        use base64::Engine as _;
        let bytes = std::fs::read(guest(name)).unwrap_or_default();
        let mut body = serde_json::json!({
            "name": as_name,
            "component_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
            "config": config,
        });
        if let Some(s) = schedule {
            body["schedule"] = s;
        }
        let (status, resp) = self.request("POST", "/v1/deployments", Some(body.to_string().into_bytes()), None);
        assert!(status == 201 || status == 200, "deploy {name}: {status} {resp}");
        resp
    }

    /// Starts a run through the API; returns its id.
    pub fn start_run(&self, workflow: &str, input: Value) -> String {
        let body = serde_json::json!({ "workflow": workflow, "input": input }).to_string().into_bytes();
        let (status, resp) = self.request("POST", "/v1/runs", Some(body), None);
        assert_eq!(status, 201, "start {workflow}: {resp}");
        resp["run"]["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (with a deadline) until the run is final; returns it.
    pub fn wait(&self, id: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let (status, resp) = self.request("POST", &format!("/v1/runs/{id}/wait?timeout_ms=5000"), None, None);
            assert_eq!(status, 200, "wait {id}: {resp}");
            let status = resp["run"]["status"].as_str().unwrap_or_default().to_owned();
            if ["completed", "failed", "cancelled"].contains(&status.as_str()) {
                return resp["run"].clone();
            }
            assert!(std::time::Instant::now() < deadline, "run {id} did not finish: {resp}");
        }
    }

    /// Deploys guest `name` under `as_name` with `extra` flags.
    pub fn deploy(&self, name: &str, as_name: &str, extra: &[&str]) -> Value {
        let path = guest(name);
        let mut args = vec!["deploy", path.to_str().unwrap_or_default(), "--name", as_name, "--json"];
        args.extend_from_slice(extra);
        let out = self.ferry(&args);
        assert!(out.status.success(), "deploy {name}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
