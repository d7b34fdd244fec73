//! Shared helpers: build the guests once, run `ferry` in a scratch folder,
//! serve HTTP on 127.0.0.1 for steps to call.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

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
        assert!(listed.as_array().is_some_and(|a| a.len() >= 9), "expected every step to be built: {listed}");
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

    /// `ferry ARGS` in the scratch folder, on its store.
    pub fn ferry(&self, args: &[&str]) -> Output {
        Command::new(ferry_bin())
            .args(args)
            .arg("--db")
            .arg(self.db())
            .arg("--cache-dir")
            .arg(root().join("target").join("e2e-cache"))
            .current_dir(self.dir.path())
            .env_remove("FERRY_LOG")
            .output()
            .expect("run ferry")
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

/// An HTTP server on 127.0.0.1 that counts requests and remembers them.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TestServer {
    /// Serves `GET /json` (a small JSON document) and `POST /echo`.
    pub fn start() -> Self {
        use axum::routing::{get, post};
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let hits = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<Vec<(String, Vec<(String, String)>)>>> = Arc::default();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let (h, s) = (hits.clone(), seen.clone());
        let record = move |path: &str, headers: &axum::http::HeaderMap| {
            h.fetch_add(1, Ordering::SeqCst);
            let hs = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
            s.lock().expect("lock").push((path.to_owned(), hs));
        };
        let r1 = record.clone();
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
                    record("/echo", &headers);
                    body
                }),
            );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, hits, seen, _runtime: runtime }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
