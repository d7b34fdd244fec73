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
        // Relative paths, as a person types them: cargo runs in the steps
        // folder, and ferry must not read them relative to that.
        let out = Command::new(ferry_bin())
            .current_dir(root())
            .args(["build", "--json", "--dir", "steps", "--target-dir", "target/e2e-steps"])
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
/// - `POST /r/{run}/count/{tag}`: counts calls per `{run}/{tag}` (a step
///   given the URL [`TestServer::run_url`] counts per run); held while
///   `{run}/{tag}` is the gate, and past [`TestServer::pause_after`].
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Seen,
    pub counts: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    gate: Arc<Mutex<Option<String>>>,
    /// Per-run counting (`/r/{run}/count/{tag}`): the requests seen, the
    /// ones waiting at the pause, and the pause (see [`TestServer::pause_after`]).
    run_requests: Arc<AtomicUsize>,
    paused: Arc<AtomicUsize>,
    pause: Arc<Mutex<Option<usize>>>,
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
        let run_requests = Arc::new(AtomicUsize::new(0));
        let paused = Arc::new(AtomicUsize::new(0));
        let pause: Arc<Mutex<Option<usize>>> = Arc::default();
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
        let r7 = record.clone();
        let (r1, r2, r3, r4, r5, r6) =
            (record.clone(), record.clone(), record.clone(), record.clone(), record.clone(), record);
        let (c1, c2, g1) = (counts.clone(), counts.clone(), gate.clone());
        let (c3, g2) = (counts.clone(), gate.clone());
        let (n1, w1, p1) = (run_requests.clone(), paused.clone(), pause.clone());
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
        let app = app.route(
            "/r/{run}/count/{tag}",
            post(move |UrlPath((run, tag)): UrlPath<(String, String)>, headers: axum::http::HeaderMap| async move {
                let key = format!("{run}/{tag}");
                r7(&format!("/r/{key}/count"), &headers);
                let nth = n1.fetch_add(1, Ordering::SeqCst) + 1;
                let held = || p1.lock().expect("lock").is_some_and(|after| nth > after);
                if held() {
                    w1.fetch_add(1, Ordering::SeqCst);
                    while held() {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    w1.fetch_sub(1, Ordering::SeqCst);
                }
                while g2.lock().expect("lock").as_deref() == Some(key.as_str()) {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                let n = bump(&c3, key);
                axum::Json(serde_json::json!({"tag": tag, "count": n}))
            }),
        );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, hits, seen, counts, gate, run_requests, paused, pause, _runtime: runtime }
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

    /// The base URL a step counting per run is given: its `/count/{tag}`
    /// requests count as `{run}/{tag}` (see [`TestServer::count`]).
    pub fn run_url(&self, run: &str) -> String {
        self.url(&format!("/r/{run}"))
    }

    /// `/r/{run}/count/{tag}` requests received so far (held ones included).
    pub fn run_requests(&self) -> usize {
        self.run_requests.load(Ordering::SeqCst)
    }

    /// Makes every `/r/{run}/count/{tag}` request after the first `n` wait
    /// until [`TestServer::unpause`].
    pub fn pause_after(&self, n: usize) {
        *self.pause.lock().expect("lock") = Some(n);
    }

    pub fn unpause(&self) {
        *self.pause.lock().expect("lock") = None;
    }

    /// `/r/{run}/count/{tag}` requests waiting at the pause now.
    pub fn paused(&self) -> usize {
        self.paused.load(Ordering::SeqCst)
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
    /// Everything the process wrote to stderr so far.
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `ferry serve --listen 127.0.0.1:0 EXTRA…` and waits until it listens.
    pub fn start(sb: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let args = Self::serve_args(extra);
        Self::spawn(sb.command(&args), env)
    }

    /// Like [`Daemon::start`], on the store at `db` (a URL such as
    /// `postgres://…`) instead of a sandbox's.
    pub fn start_on(db: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(ferry_bin());
        cmd.args(Self::serve_args(extra))
            .arg("--db")
            .arg(db)
            .arg("--cache-dir")
            .arg(root().join("target").join("e2e-cache"))
            .current_dir(std::env::temp_dir())
            .env_remove("FERRY_LOG")
            .env_remove("FERRY_DB");
        Self::spawn(cmd, env)
    }

    fn serve_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        for (flag, default) in [("--lease-ttl", "2s"), ("--grace", "5s")] {
            if !extra.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        args.extend_from_slice(extra);
        args
    }

    fn spawn(mut cmd: Command, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ferry serve: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let log: Arc<Mutex<String>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let Ok(url) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            let said = log.lock().map(|l| l.clone()).unwrap_or_default();
            panic!("ferry serve did not start listening:\n{said}");
        };
        Self { url, child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `signal` (`KILL`, `STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("run kill: {e}"));
        assert!(status.success(), "kill -{signal} {} failed", self.child.id());
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
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

/// A fresh schema in the database named by `FERRY_TEST_POSTGRES`, for tests
/// that run `ferry serve` on Postgres; dropped (with everything in it) when
/// this is dropped, also when the test panics. Schemas an aborted run left
/// behind are dropped by a later run once they are an hour old.
pub struct PgSchema {
    base: String,
    pub name: String,
}

impl PgSchema {
    /// Name prefix of the schemas these tests make.
    const PREFIX: &'static str = "ferry_hosts_";

    /// A new schema, or `None` (after saying the test is skipped) when
    /// `FERRY_TEST_POSTGRES` is not set; a failure when `CI` is set too.
    pub fn create(test: &str) -> Option<Self> {
        let base = match std::env::var("FERRY_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but FERRY_TEST_POSTGRES is not: the many-hosts tests must run in CI \
                     (set FERRY_TEST_POSTGRES=postgres://user@host:port/db)"
                );
                eprintln!("skipped {test}: set FERRY_TEST_POSTGRES=postgres://… to run the many-hosts tests");
                return None;
            }
        };
        let secs =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let name = format!("{}{secs}_{:012x}", Self::PREFIX, rand::random::<u64>() >> 16);
        let schema = Self { base, name };
        let stale: Vec<String> = schema
            .query("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, 'ferry_hosts_')")
            .into_iter()
            .filter(|n| {
                let made = n.strip_prefix(Self::PREFIX).and_then(|r| r.split('_').next()).and_then(|s| s.parse().ok());
                made.is_some_and(|made: u64| made + 3600 < secs)
            })
            .collect();
        for old in stale {
            schema.execute(&format!("DROP SCHEMA IF EXISTS {old} CASCADE"));
        }
        schema.execute(&format!("CREATE SCHEMA {}", schema.name));
        Some(schema)
    }

    /// The store URL for host `host`: every connection works in this schema
    /// and names itself `application_name = {schema}_{host}`.
    pub fn url(&self, host: &str) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}application_name={}&options=-c%20search_path%3D{}", self.base, self.app(host), self.name)
    }

    /// The `application_name` of host `host`'s connections.
    pub fn app(&self, host: &str) -> String {
        format!("{}_{host}", self.name)
    }

    fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(work)
    }

    /// Runs `sql` (statements without results) on a connection of its own.
    pub fn execute(&self, sql: &str) {
        use sqlx::Connection;
        self.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.base).await.expect("connect to FERRY_TEST_POSTGRES");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
        });
    }

    /// The first column (as text) of every row `sql` returns, on a
    /// connection of its own (outside the schema).
    pub fn query(&self, sql: &str) -> Vec<String> {
        use sqlx::{Connection, Row};
        self.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&self.base).await.expect("connect to FERRY_TEST_POSTGRES");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
            rows.iter().map(|r| r.try_get::<Option<String>, _>(0).ok().flatten().unwrap_or_default()).collect()
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // On a thread of its own: this may run while a panic unwinds.
        let (base, name) = (self.base.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            use sqlx::Connection;
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let Ok(mut conn) = sqlx::PgConnection::connect(&base).await else {
                    eprintln!("could not connect to drop the test schema {name}");
                    return;
                };
                let sql = format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE");
                if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await {
                    eprintln!("could not drop the test schema {name}: {e}");
                }
                let _ = conn.close().await;
            });
        });
        let _ = dropper.join();
    }
}

/// Polls `cond` every `every` until it holds, failing the test after
/// `limit` with what `cond` last said. For conditions that cost a request
/// or more each time (unlike [`wait_for`], which polls every 20 ms).
pub fn poll_until<T>(
    what: &str,
    limit: std::time::Duration,
    every: std::time::Duration,
    mut cond: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match cond() {
            Ok(done) => return done,
            Err(last) => {
                assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}: {last}");
            }
        }
        std::thread::sleep(every);
    }
}

/// A `ferry upstream` process (the reference pipeline's fake upstream,
/// docs/PIPELINE.md) on a free loopback port: a process of its own, so it
/// outlives the daemons a test kills. Killed when dropped.
pub struct Upstream {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: std::process::Child,
    /// Everything the process wrote to stderr so far.
    log: Arc<Mutex<String>>,
}

impl Upstream {
    /// Starts `ferry upstream ARGS` and waits for the address it prints on
    /// its first line.
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(ferry_bin())
            .arg("upstream")
            .args(args)
            .current_dir(std::env::temp_dir())
            .env_remove("FERRY_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ferry upstream: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let log: Arc<Mutex<String>> = Arc::default();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(first) = lines.next() {
                let _ = tx.send(first);
            }
            // Drain the rest so the process never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap_or_default();
        let Some(url) = first.strip_prefix("upstream listening on ").map(|u| u.trim().to_owned()) else {
            let _ = child.kill();
            let _ = child.wait();
            let said = log.lock().map(|l| l.clone()).unwrap_or_default();
            panic!("ferry upstream did not say where it listens (first line {first:?}):\n{said}");
        };
        Self { url, child, log }
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `GET {url}{path}`: status, content type and body.
    pub fn fetch(&self, path: &str) -> (u16, String, Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let client = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
            let resp = client
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {}{path}: {e}", self.url));
            let status = resp.status().as_u16();
            let kind = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            (status, kind, body)
        })
    }

    /// `GET {url}{path}`, which must answer 200 with JSON.
    pub fn get(&self, path: &str) -> Value {
        let (status, _, body) = self.fetch(path);
        assert_eq!(status, 200, "GET {path} on the upstream: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("GET {path} on the upstream is not JSON ({e}): {}", String::from_utf8_lossy(&body))
        })
    }

    /// The whole request log (`GET /_upstream/requests`, page after page),
    /// up to the first request still in flight.
    pub fn requests(&self) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let after = all.last().and_then(|r| r["id"].as_u64()).unwrap_or(0);
            let page = self.get(&format!("/_upstream/requests?after={after}"));
            let got = page["requests"].as_array().cloned().unwrap_or_default();
            if got.is_empty() {
                return all;
            }
            all.extend(got);
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
