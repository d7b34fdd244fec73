//! The dashboard in real headless Chromium, driven over WebDriver
//! (chromedriver's HTTP API, spoken with reqwest): the runs list, a failed
//! run's detail, rerun from a step, escaping, the token, cross-site checks;
//! the deployments, schedules and stats pages, key search and retry; a
//! failed run of the reference pipeline read, rerun and replayed.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them). Without them the tests print a note and pass, except under CI
//! (the `CI` variable set), where they fail.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Daemon, Sandbox, TestServer, Upstream, guest, root, wait_for};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(60);

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/lib/chromium")]) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A headless Chromium session behind a chromedriver of its own.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts one, or returns `None` (with a note) when Chromium or
    /// chromedriver is missing and this is not CI.
    fn start() -> Option<Self> {
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let driver = find_program(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but chromium or chromedriver is missing: apt-get install -y chromium chromium-driver"
            );
            eprintln!("note: skipping the dashboard browser test: chromium and chromedriver are not installed");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("free port: {e}"));
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Self {
            driver: child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            rt,
            http: reqwest::Client::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, status)) = browser.raw("GET", "/status", None)
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1400,1100",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let (status, resp) = browser.raw("POST", "/session", Some(caps)).unwrap_or_else(|e| panic!("new session: {e}"));
        assert_eq!(status, 200, "new session: {resp}");
        browser.session = resp["value"]["sessionId"].as_str().unwrap_or_default().to_owned();
        browser.cmd("POST", "/timeouts", json!({"implicit": 0, "pageLoad": 60000, "script": 30000}));
        Some(browser)
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        self.rt.block_on(async {
            let url = format!("{}{path}", self.base);
            let mut req = self.http.request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), url);
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            Ok((status, v))
        })
    }

    /// A session command: its `value`, or the WebDriver error.
    fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let body = (method == "POST").then_some(body);
        let (status, resp) = self
            .raw(method, &format!("/session/{}{path}", self.session), body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        if status == 200 { Ok(resp["value"].clone()) } else { Err(resp["value"].clone()) }
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body).unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", json!({})).as_str().unwrap_or_default().to_owned()
    }

    fn eval(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    fn find_now(&self, css: &str) -> Option<String> {
        let found = self.try_cmd("POST", "/element", json!({"using": "css selector", "value": css})).ok()?;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits until `css` matches an element.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(id) = self.find_now(css) {
                return id;
            }
            assert!(Instant::now() < deadline, "no element `{css}` on {}:\n{}", self.url(), self.body_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The visible text of `css`, once it matches.
    fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let id = self.find(css);
            // The page may redraw between finding and reading: try again.
            if let Ok(v) = self.try_cmd("GET", &format!("/element/{id}/text"), json!({})) {
                return v.as_str().unwrap_or_default().to_owned();
            }
            assert!(Instant::now() < deadline, "cannot read `{css}`");
        }
    }

    /// Waits until the visible text of `css` contains `want`.
    fn wait_text(&self, css: &str, want: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.find_now(css).is_some() {
                let text = self.text(css);
                if text.contains(want) {
                    return text;
                }
                assert!(Instant::now() < deadline, "`{css}` never showed `{want}`; it shows:\n{text}");
            }
            assert!(Instant::now() < deadline, "no `{css}` showing `{want}`:\n{}", self.body_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let id = self.find(css);
            match self.try_cmd("POST", &format!("/element/{id}/click"), json!({})) {
                Ok(_) => return,
                Err(e) => assert!(Instant::now() < deadline, "cannot click `{css}`: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/value"), json!({ "text": text }));
    }

    fn body_text(&self) -> String {
        self.try_cmd("POST", "/execute/sync", json!({"script": "return document.body.innerText", "args": []}))
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("(no text: {e})"))
    }

    /// The text of the open dialog, if one is open.
    fn alert(&self) -> Option<String> {
        self.try_cmd("GET", "/alert/text", json!({})).ok().map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    fn wait_alert(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(text) = self.alert() {
                return text;
            }
            assert!(Instant::now() < deadline, "no dialog opened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let png = self.cmd("GET", "/screenshot", json!({}));
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).expect("png");
        let dir = root().join("target").join("dashboard");
        std::fs::create_dir_all(&dir).expect("target/dashboard");
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A plain HTTP request: status, headers and body text.
fn fetch(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut req =
            reqwest::Client::new().request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_owned());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap_or_default())
    })
}

const XSS: &str = "<script>alert(1)</script>";

#[test]
fn the_dashboard_shows_a_failed_run_and_reruns_it_from_the_failed_step() {
    let Some(b) = Browser::start() else { return };
    let server = TestServer::start();
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    let allow = json!({ "allow_hosts": [server.addr.to_string()] });
    for step in ["count", "echo"] {
        d.deploy_api(step, step, allow.clone(), None);
    }
    d.deploy_api("pages", "pages", allow.clone(), None);
    d.deploy_api("wf-report", "report", json!({}), None);
    let failed = d.start_run("report", json!({"url": server.url("")}));
    assert_eq!(d.wait(&failed)["status"], "failed", "the 504 page fails the run");
    let echoed = d.start_run("echo", json!({"note": XSS, "<img src=x onerror=alert(2)>": [XSS]}));
    assert_eq!(d.wait(&echoed)["status"], "completed");

    // The pages carry the security headers and no data of their own.
    let (status, headers, html) = fetch(&format!("{}/runs/{failed}", d.url), "GET", &[], None);
    assert_eq!(status, 200);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(header("content-security-policy").contains("default-src 'self'"), "{headers:?}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    assert!(!html.contains(&failed) && !html.contains("<script>") && html.contains("/assets/app.js"), "{html}");

    // Pages of one run: `Older` follows the API's `next`, `Newer` goes back.
    b.goto(&format!("{}/?limit=1", d.url));
    b.wait_text("#runs-body", &echoed);
    b.click("#older");
    b.wait_text("#runs-body", &failed);
    assert!(!b.text("#runs-body").contains(&echoed));
    assert_eq!(b.text("#page-no"), "page 2");
    b.click("#newer");
    b.wait_text("#runs-body", &echoed);

    // The runs list, filtered to failed runs.
    b.goto(&format!("{}/", d.url));
    b.wait_text("#runs-body", &echoed);
    b.wait_text("#runs-body", &failed);
    b.click("#status-filter option[value=failed]");
    let deadline = Instant::now() + WAIT;
    while b.text("#runs-body").contains(&echoed) {
        assert!(Instant::now() < deadline, "the failed filter still shows the completed run");
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = b.wait_text("#runs-body", &failed);
    assert!(listed.contains("report") && listed.contains("failed"), "{listed}");
    assert!(b.url().contains("status=failed"), "the filter is kept in the address: {}", b.url());
    b.screenshot("runs-failed.png");

    // The failed run: the failed step's input and error are on the page.
    b.click(&format!("#runs-body a[href=\"/runs/{failed}\"]"));
    b.wait_text("#run-status", "failed");
    let pull = "#entries .entry[data-name=pull][data-status=error]";
    let error = b.text(&format!("{pull} .error"));
    assert!(error.contains("504"), "the error names the 504: {error}");
    let input = b.text(&format!("{pull} details.input pre"));
    assert!(input.contains(&server.url("")), "the input that broke it: {input}");
    let kept = b.text("#entries section.call[data-name=count-a]");
    assert!(kept.contains("ok"), "{kept}");
    assert!(b.text("#waterfall").contains("pull"));
    assert!(b.text("#replay").contains(&format!("ferry replay {failed}")));
    b.cmd("POST", "/window/rect", json!({"width": 1400, "height": 2400}));
    b.screenshot("run-detail.png");
    b.cmd("POST", "/window/rect", json!({"width": 1400, "height": 1100}));

    // Deploy the fix through the API, then rerun from `pull`.
    d.deploy_api("pages-fixed", "pages", allow, None);
    let hits_a = server.count("a");
    b.click("#entries section.call[data-name=pull] button.rerun");
    let question = b.wait_alert();
    assert!(question.contains("\"pull\""), "{question}");
    assert!(question.contains("not run again): count-a, count-b"), "{question}");
    assert!(question.contains("Run again: pull"), "{question}");
    b.cmd("POST", "/alert/accept", json!({}));
    let deadline = Instant::now() + WAIT;
    while b.url().ends_with(&failed) {
        assert!(
            Instant::now() < deadline,
            "the page did not move to the new run; the page says: {:?}; runs: {}\n{}",
            b.text("#notice"),
            d.get("/v1/runs?limit=10"),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    b.wait_text("#run-status", "completed");
    let new_id = b.text("#run-id");
    assert_ne!(new_id, failed);
    assert!(b.url().ends_with(&new_id), "{}", b.url());
    assert!(b.text("#content").contains(&format!("rerun of {failed}")));
    assert_eq!(server.count("a"), hits_a, "count-a kept its recorded result");
    assert_eq!(server.count("c"), 1, "count-c ran in the rerun");
    b.wait_text("#run-output", "rows");
    b.screenshot("run-detail-rerun.png");
    // The API recorded it like the CLI's rerun.
    let shown = d.get(&format!("/v1/runs/{new_id}"));
    assert_eq!(shown["run"]["status"], "completed");
    assert!(shown["run"]["origin"].as_str().unwrap_or_default().contains(&failed), "{shown}");

    // Markup in a run's data is text: no script runs, no element is made.
    b.goto(&format!("{}/runs/{echoed}", d.url));
    let output = b.wait_text("#run-output", XSS);
    assert!(output.contains("<img src=x onerror=alert(2)>"), "{output}");
    assert_eq!(b.alert(), None, "no dialog opened");
    let made = b.eval("return [document.scripts.length, document.querySelectorAll('main img').length]");
    assert_eq!(made, json!([1, 0]), "only app.js is a script; no image element was made");
    assert!(b.body_text().contains(XSS));

    // Cross-site writes are refused (tokenless loopback mode); the CLI's
    // requests, which carry neither header, pass (the deploys above).
    let runs = |d: &Daemon| d.get("/v1/runs?limit=1000")["runs"].as_array().map(Vec::len).unwrap_or(0);
    let before = runs(&d);
    let body = json!({"workflow": "echo", "input": 1}).to_string();
    let url = format!("{}/v1/runs", d.url);
    for hostile in [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site"), ("origin", "http://localhost:1")],
    ] {
        let (status, _, text) = fetch(&url, "POST", &hostile, Some(&body));
        assert_eq!(status, 403, "{hostile:?}: {text}");
        assert!(text.contains("forbidden"), "{text}");
    }
    let (status, _, text) =
        fetch(&format!("{}/v1/runs/{failed}/cancel", d.url), "POST", &[("sec-fetch-site", "cross-site")], None);
    assert_eq!(status, 403, "{text}");
    // DNS rebinding: a page on another name that resolves to 127.0.0.1.
    let (status, _, text) = fetch(&url, "GET", &[("host", "evil.example")], None);
    assert_eq!(status, 403, "{text}");
    let same = d.url.trim_start_matches("http://").to_owned();
    let origin = format!("http://{same}");
    let (status, _, text) = fetch(&url, "POST", &[("origin", &origin), ("sec-fetch-site", "same-origin")], Some(&body));
    assert_eq!(status, 201, "a same-origin write passes: {text}");
    assert_eq!(runs(&d), before + 1, "only the same-origin request made a run");
}

#[test]
fn with_a_token_the_dashboard_shows_nothing_until_it_is_given() {
    let Some(b) = Browser::start() else { return };
    const TOKEN: &str = "dashboard-t0ken";
    const SECRET: &str = "confidential-payload-4711";
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[("FERRY_TOKEN", TOKEN)]);
    let component = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(guest("echo")).expect("echo.wasm"))
    };
    let deploy = json!({"name": "echo", "component_base64": component}).to_string().into_bytes();
    let (status, resp) = d.request("POST", "/v1/deployments", Some(deploy), Some(TOKEN));
    assert_eq!(status, 201, "{resp}");
    let start = json!({"workflow": "echo", "input": {"note": SECRET}}).to_string().into_bytes();
    let (status, resp) = d.request("POST", "/v1/runs", Some(start), Some(TOKEN));
    assert_eq!(status, 201, "{resp}");
    let id = resp["run"]["id"].as_str().unwrap_or_default().to_owned();
    wait_for("the echo run", WAIT, || {
        d.request("GET", &format!("/v1/runs/{id}"), None, Some(TOKEN)).1["run"]["status"] == "completed"
    });

    // Without the token: the shells carry no data, the API answers 401.
    for page in ["/", &format!("/runs/{id}"), "/deployments", "/schedules", "/stats"] {
        let (status, _, html) = fetch(&format!("{}{page}", d.url), "GET", &[], None);
        assert_eq!(status, 200);
        assert!(!html.contains(&id) && !html.contains(SECRET) && !html.contains("echo"), "{page}: {html}");
    }
    let listed = [
        "/v1/runs",
        &format!("/v1/runs/{id}"),
        "/v1/deployments",
        &format!("/v1/runs/{id}/export"),
        "/v1/deployments?runs=true",
        "/v1/queue",
        "/v1/stats",
        "/v1/runs?key=k",
    ];
    for path in listed {
        let (status, body) = d.request("GET", path, None, None);
        assert_eq!(status, 401, "{path}: {body}");
        let (status, _) = d.request("GET", path, None, Some("wrong"));
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, _) = d.request("POST", &format!("/v1/runs/{id}/rerun"), Some(br#"{"from":"echo"}"#.to_vec()), None);
    assert_eq!(status, 401, "actions need the token");
    let (status, _) = d.request("POST", &format!("/v1/runs/{id}/retry"), None, None);
    assert_eq!(status, 401, "retry needs the token");
    let (status, _) = d.request("POST", &format!("/v1/runs/{id}/replay"), None, None);
    assert_eq!(status, 401, "replay needs the token");
    let (status, report) = d.request("POST", &format!("/v1/runs/{id}/replay"), None, Some(TOKEN));
    assert_eq!((status, &report["verdict"]), (200, &json!("identical")), "{report}");

    // In the browser: the login form, and no run data anywhere on the page.
    b.goto(&format!("{}/runs/{id}", d.url));
    b.wait_text("#login", "needs its API token");
    b.wait_text("#notice", "Refused");
    std::thread::sleep(Duration::from_millis(2500)); // a poll or two
    let html = b.eval("return document.documentElement.outerHTML").as_str().unwrap_or_default().to_owned();
    assert!(!html.contains(&id) && !html.contains(SECRET), "nothing leaks: {html}");
    b.goto(&format!("{}/", d.url));
    b.wait_text("#login", "needs its API token");
    let html = b.eval("return document.documentElement.outerHTML").as_str().unwrap_or_default().to_owned();
    assert!(!html.contains(&id) && !html.contains("<option value=\"echo\""), "the list leaks nothing: {html}");

    // A wrong token is refused too; the right one opens the page.
    b.type_into("#token", "not-the-token");
    b.click("#login-form button[type=submit]");
    b.wait_text("#notice", "refused the token");
    assert!(!b.eval("return document.documentElement.outerHTML").as_str().unwrap_or_default().contains(&id));
    b.type_into("#token", TOKEN);
    b.click("#login-form button[type=submit]");
    b.wait_text("#runs-body", &id);
    b.click(&format!("#runs-body a[href=\"/runs/{id}\"]"));
    b.wait_text("#run-output", SECRET);
    b.wait_text("#run-status", "completed");
    // The other pages open with the token kept in the tab.
    b.goto(&format!("{}/deployments", d.url));
    b.wait_text("section.deployment[data-name=echo] td.runs-by-status", "completed 1");
    b.goto(&format!("{}/stats", d.url));
    b.find("#chart-throughput svg g.bucket rect.bar-ok");
}

/// Waits until `script` (a function body returning a value) returns `want`.
fn wait_eval(b: &Browser, script: &str, want: &Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = b.eval(script);
        if &got == want {
            return;
        }
        assert!(Instant::now() < deadline, "`{script}` returned {got}, not {want}:\n{}", b.body_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_deployments_and_schedules_pages_show_versions_runs_the_queue_and_next_fires() {
    let Some(b) = Browser::start() else { return };
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    let limits = json!({"fuel": 5_000_000_000u64, "memory_bytes": 67_108_864, "timeout_ms": 30_000});
    let v1 = d.deploy_api("echo", "echo", limits, None);
    let hash = v1["deployment"]["hash"].as_str().unwrap_or_default().to_owned();
    for n in 0..2 {
        let id = d.start_run("echo", json!({ "n": n }));
        assert_eq!(d.wait(&id)["status"], "completed");
    }
    d.deploy_api("count", "echo", json!({}), None); // v2, another component, active
    let schedule =
        json!({"cron": "0 21 * * FRI", "timezone": "Europe/Amsterdam", "input": {"ms": 1, "client": "cron"}});
    d.deploy_api(
        "wf-sleep",
        "nap",
        json!({"concurrency": {"limit": 1, "key": "/client"}, "priority": 3}),
        Some(schedule),
    );
    // The concurrency key comes from the input: markup in it stays text.
    const CLIENT: &str = "acme<img src=x onerror=alert(3)>";
    let long = d.start_run("nap", json!({"ms": 600_000, "client": CLIENT}));
    wait_for("the long nap to wait", WAIT, || d.get(&format!("/v1/runs/{long}"))["run"]["status"] == "waiting");
    let held = d.start_run("nap", json!({"ms": 1, "client": CLIENT}));

    // The new pages are shells with the same headers, and no data.
    for page in ["/deployments", "/schedules", "/stats"] {
        let (status, headers, html) = fetch(&format!("{}{page}", d.url), "GET", &[], None);
        assert_eq!(status, 200, "{page}");
        let csp = headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{page}: {headers:?}");
        assert!(!html.contains("echo") && !html.contains("nap") && !html.contains("<script>"), "{page}: {html}");
        assert!(html.contains("href=\"/deployments\"") && html.contains("href=\"/stats\""), "{page} links the others");
    }

    b.goto(&format!("{}/deployments", d.url));
    let echo = "section.deployment[data-name=echo]";
    let first = b.wait_text(&format!("{echo} tr.version[data-version=\"1\"] td.runs-by-status"), "completed 2");
    assert!(!first.contains("failed"), "{first}");
    let row = b.text(&format!("{echo} tr.version[data-version=\"1\"]"));
    assert!(row.contains(&format!("sha256:{}", &hash[..12])), "{row}");
    for chip in ["fuel 5,000,000,000", "memory 64 MiB", "timeout 30.0 s"] {
        assert!(row.contains(chip), "{chip} in {row}");
    }
    let second = b.text(&format!("{echo} tr.version[data-version=\"2\"]"));
    assert!(second.contains("active") && second.contains("no runs"), "{second}");
    let nap = b.wait_text("section.deployment[data-name=nap] td.runs-by-status", "queued 1");
    assert!(nap.contains("waiting 1"), "{nap}");
    let settings = b.text("section.deployment[data-name=nap] td.limits");
    assert!(settings.contains("concurrency 1 per /client") && settings.contains("priority 3"), "{settings}");
    let queue = b.wait_text("#queue-table tr[data-workflow=nap]", "concurrency limit 1");
    assert!(queue.contains("1 ×") && queue.contains(&format!("`{CLIENT}`")), "{queue}");
    assert_eq!(b.alert(), None, "no dialog opened");
    assert_eq!(b.eval("return document.querySelectorAll('main img').length"), json!(0), "no image element was made");
    assert_eq!(d.get(&format!("/v1/runs/{held}"))["run"]["status"], "queued");
    b.cmd("POST", "/window/rect", json!({"width": 1400, "height": 1400}));
    b.screenshot("deployments.png");

    // Roll back: activate version 1 from the page.
    b.click(&format!("{echo} tr.version[data-version=\"1\"] button.activate"));
    let question = b.wait_alert();
    assert!(question.contains("Make v1 the active version of echo"), "{question}");
    b.cmd("POST", "/alert/accept", json!({}));
    b.find(&format!("{echo} tr.version[data-version=\"1\"][data-active=true]"));
    let active: Vec<Value> = d.get("/v1/deployments")["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v["name"] == "echo" && v["active"] == true)
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["version"], 1, "the API made v1 active");

    // The schedule: its cron, zone, next fire (absolute and relative).
    let listed = d.get("/v1/schedules");
    let next = listed["schedules"][0]["next_fire_at"].as_i64().unwrap_or_default();
    b.goto(&format!("{}/schedules", d.url));
    let row = b.wait_text("#schedules-body tr[data-name=nap]", "0 21 * * FRI");
    assert!(row.contains("Europe/Amsterdam") && row.contains("never"), "{row}");
    assert!(b.text("#schedules-body tr[data-name=nap] td.next .relative").starts_with("in "), "{row}");
    let zoned = b.text("#schedules-body tr[data-name=nap] td.next .zoned");
    assert!(zoned.contains("21:00:00 Europe/Amsterdam"), "the next fire as Amsterdam reads it: {zoned}");
    let at = b.eval("return document.querySelector('#schedules-body tr[data-name=nap] td.next').dataset.at");
    assert_eq!(at, json!(next.to_string()), "the next fire the API gives");
    b.screenshot("schedules.png");
    d.request("POST", &format!("/v1/runs/{long}/cancel"), None, None);
}

#[test]
fn the_stats_page_charts_steps_and_a_failed_run_is_found_by_key_and_retried() {
    let Some(b) = Browser::start() else { return };
    let server = TestServer::start();
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    let allow = json!({ "allow_hosts": [server.addr.to_string()] });
    for step in ["count", "echo", "pages"] {
        d.deploy_api(step, step, allow.clone(), None);
    }
    d.deploy_api("wf-report", "report", json!({}), None);
    let failed = d.start_run("report", json!({"url": server.url("")}));
    assert_eq!(d.wait(&failed)["status"], "failed", "the 504 page fails the run");
    let keyed = {
        let body = json!({"workflow": "echo", "input": {"k": 1}, "idempotency_key": "acme-2026-49"});
        let (status, resp) = d.request("POST", "/v1/runs", Some(body.to_string().into_bytes()), None);
        assert_eq!(status, 201, "{resp}");
        resp["run"]["id"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(d.wait(&keyed)["status"], "completed");
    let shown = d.get(&format!("/v1/runs/{failed}"));
    let pulls = shown["journal"]
        .as_array()
        .map(|j| j.iter().filter(|e| e["name"] == "pull" && e["child"] == 0).count())
        .unwrap_or_default();
    assert!(pulls >= 2, "pull was retried: {shown}");

    // Hostile query parameters are clear 400s in the API's error shape.
    for path in [
        "/v1/stats?since=yesterday",
        "/v1/stats?bogus=1",
        "/v1/stats?since=5&until=4",
        "/v1/stats?bucket_s=0",
        "/v1/runs?key=",
        "/v1/runs?limit=-1",
        "/v1/deployments?runs=maybe",
    ] {
        let (status, body) = d.request("GET", path, None, None);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
    }

    // The charts: attempts over time, latency per step, retries by cause.
    b.goto(&format!("{}/stats", d.url));
    b.find("#chart-throughput svg g.bucket rect.bar-failed");
    let sum = |attr: &str| {
        format!(
            "return [...document.querySelectorAll('#chart-throughput g.bucket')]\
             .reduce((n, g) => n + Number(g.dataset.{attr}), 0)"
        )
    };
    wait_eval(&b, &sum("ok"), &json!(3));
    wait_eval(&b, &sum("failed"), &json!(pulls));
    assert_eq!(b.eval("return document.querySelectorAll('#content svg').length"), json!(3));
    let pull = b.eval(
        "const g = document.querySelector('#chart-latency g.step[data-name=pull]'); \
         return g && [Number(g.dataset.p50) > 0, g.querySelectorAll('rect').length]",
    );
    assert_eq!(pull, json!([true, 3]), "p50, p95 and p99 bars for `pull`");
    let cause = "#chart-retries g.cause[data-http=\"504\"]";
    b.find(cause);
    let counts = b.eval(&format!(
        "const g = document.querySelector('{cause}'); return [g.dataset.kind, g.dataset.failures, g.dataset.retried]"
    ));
    assert_eq!(counts, json!(["retryable", pulls.to_string(), (pulls - 1).to_string()]));
    assert!(b.text("#chart-retries").contains("retryable · HTTP 504"));
    assert!(b.text("#summary").contains("step attempts"));
    b.cmd("POST", "/window/rect", json!({"width": 1400, "height": 1500}));
    b.screenshot("stats.png");
    b.cmd("POST", "/window/rect", json!({"width": 1400, "height": 1100}));

    // The runs list counts steps and retries, and finds a run by its key.
    b.goto(&format!("{}/", d.url));
    let row = format!("#runs-body tr[data-run={failed}]");
    assert_eq!(b.text(&format!("{row} td.steps")), "3", "count-a, count-b, pull");
    assert_eq!(b.text(&format!("{row} td.retries")), (pulls - 1).to_string());
    b.type_into("#search", "acme-2026-49");
    let deadline = Instant::now() + WAIT;
    while b.text("#runs-body").contains(&failed) {
        assert!(Instant::now() < deadline, "the key search still lists the failed run");
        std::thread::sleep(Duration::from_millis(100));
    }
    b.wait_text("#runs-body", &keyed);
    assert!(b.url().contains("q=acme-2026-49"), "{}", b.url());

    // Retry the failed run (after deploying the fix of its step).
    d.deploy_api("pages-fixed", "pages", allow, None);
    b.goto(&format!("{}/runs/{failed}", d.url));
    b.wait_text("#run-status", "failed");
    assert!(b.find_now("#retry-active").is_none(), "the run is on the active version");
    b.click("#retry");
    let question = b.wait_alert();
    assert!(question.contains("same input") && question.contains("report v1"), "{question}");
    b.cmd("POST", "/alert/accept", json!({}));
    let deadline = Instant::now() + WAIT;
    while b.url().ends_with(&failed) {
        assert!(
            Instant::now() < deadline,
            "the page did not move to the new run; the page says: {:?}; runs: {}\n{}",
            b.text("#notice"),
            d.get("/v1/runs?limit=10"),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    b.wait_text("#run-status", "completed");
    let retried = b.text("#run-id");
    assert_ne!(retried, failed);
    assert!(b.text("#run-origin").contains(&format!("retry of {failed}")));
    let (old, new) = (&shown["run"], &d.get(&format!("/v1/runs/{retried}"))["run"]);
    assert_eq!(
        (&new["input"], &new["component_hash"]),
        (&old["input"], &old["component_hash"]),
        "same input, same version"
    );
    assert_eq!(new["status"], "completed");
    assert_eq!(old["status"], "failed", "the original stays as it was");
}

/// Deploys the reference pipeline (docs/PIPELINE.md) to `d` for the
/// upstream at `upstream`, as `ferry demo` does, without its cron schedule.
fn deploy_pipeline(d: &Daemon, upstream: &str) {
    let components: std::collections::HashMap<String, PathBuf> = ferry::pipeline::STEPS
        .iter()
        .chain(ferry::pipeline::WORKFLOWS.iter())
        .map(|name| ((*name).to_owned(), guest(name)))
        .collect();
    let client = ferry::cli::client::Client::new(&d.url, None).unwrap_or_else(|e| panic!("a client: {e:#}"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(ferry::pipeline::deploy(&client, &components, upstream))
        .unwrap_or_else(|e| panic!("deploying the pipeline: {e:#}"));
    let (status, body) = d.request("DELETE", "/v1/schedules/weekly-batch", None, None);
    assert_eq!(status, 200, "deleting the batch's schedule: {body}");
}

/// The requests the upstream answered so far.
fn upstream_requests(upstream: &Upstream) -> u64 {
    upstream.get("/_upstream/stats")["requests"].as_u64().unwrap_or_default()
}

#[test]
fn a_failed_pipeline_run_is_read_rerun_from_its_step_and_replayed() {
    let Some(b) = Browser::start() else { return };
    // Five clients: c07 is unknown, so `refresh-tokens` fails fatally.
    let first = Upstream::start(&["--clients", "5", "--faults", "none"]);
    let upstream = first.url.clone();
    let port = upstream.rsplit(':').next().unwrap_or_default().trim_end_matches('/').to_owned();
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    deploy_pipeline(&d, &upstream);
    let input = json!({
        "client": "c07", "name": "Aurora Bakery", "email": "reports+c07@example.test",
        "week": "2026-W49", "base_url": upstream,
    });
    let failed = d.start_run("weekly-report", input);
    let run = d.wait(&failed);
    assert_eq!(run["status"], "failed", "c07 is not a client of this upstream: {run}");

    // The runs list, filtered to failed runs, leads to the run.
    b.goto(&format!("{}/", d.url));
    b.wait_text("#runs-body", &failed);
    b.click("#status-filter option[value=failed]");
    wait_for("the failed filter in the address", WAIT, || b.url().contains("status=failed"));
    let listed = b.wait_text(&format!("#runs-body tr[data-run={failed}]"), "failed");
    assert!(listed.contains("weekly-report"), "{listed}");
    b.click(&format!("#runs-body a[href=\"/runs/{failed}\"]"));
    b.wait_text("#run-status", "failed");

    // The failed step: its input (the unknown client) and its error.
    let step = "#entries .entry[data-name=refresh-tokens][data-status=error]";
    let input = b.text(&format!("{step} details.input pre"));
    assert!(input.contains("\"c07\"") && input.contains(&upstream), "the input that broke it: {input}");
    let error = b.text(&format!("{step} .error"));
    assert!(error.contains("c07") && error.contains("400"), "the error names the client and the 400: {error}");
    let run_error = b.text("#run-error");
    assert!(run_error.contains("fatal"), "{run_error}");
    assert!(b.find_now("#entries section.call[data-name=pull-meta]").is_none(), "nothing ran after the failure");

    // The upstream learns about c07: ten clients, on the same address.
    drop(first);
    let second = Upstream::start(&["--clients", "10", "--faults", "none", "--port", &port]);
    assert_eq!(second.url, upstream, "the upstream came back on the same port");

    // Rerun from refresh-tokens, after the confirmation.
    b.click("#entries section.call[data-name=refresh-tokens] button.rerun");
    let question = b.wait_alert();
    assert!(question.contains("\"refresh-tokens\""), "{question}");
    assert!(question.contains("Run again: refresh-tokens"), "{question}");
    b.cmd("POST", "/alert/accept", json!({}));
    wait_for("the page to move to the rerun", WAIT, || !b.url().ends_with(&failed));
    let rerun = b.url().rsplit('/').next().unwrap_or_default().to_owned();
    assert!(rerun.starts_with("run_") && rerun != failed, "{}", b.url());
    let done = d.wait(&rerun);
    assert_eq!(done["status"], "completed", "the rerun completes against the fixed upstream: {done}");
    b.wait_text("#run-status", "completed");
    assert_eq!(b.text("#run-id"), rerun);
    assert!(b.text("#run-origin").contains(&format!("rerun of {failed}")));
    b.wait_text("#run-output", "message_id");
    assert!(b.find_now("#entries section.call[data-name=send-email]").is_some(), "the whole pipeline ran");

    // Replay it on the daemon: "Replaying…", then identical; nothing is
    // sent to the upstream and nothing is written to the store.
    let requests = upstream_requests(&second);
    let journal = d.get(&format!("/v1/runs/{rerun}"))["journal"].as_array().map(Vec::len).unwrap_or_default();
    let runs = d.get("/v1/runs?limit=1000")["runs"].as_array().map(Vec::len).unwrap_or_default();
    b.eval(
        "window.sawReplaying = false; \
         new MutationObserver(() => { \
           const r = document.querySelector('#replay-result[data-verdict=running]'); \
           if (r && r.textContent.includes('Replaying…')) window.sawReplaying = true; \
         }).observe(document.body, { subtree: true, childList: true, attributes: true }); \
         return true",
    );
    b.click("#replay-run");
    let verdict = b.wait_text("#replay-result[data-verdict=identical]", "Identical");
    assert!(verdict.contains(&format!("of {journal} recorded")), "every recorded entry counted: {verdict}");
    assert_eq!(b.eval("return window.sawReplaying"), json!(true), "the page said it was replaying");
    assert_eq!(b.eval("return document.querySelector('#replay-run').disabled"), json!(false));
    assert_eq!(upstream_requests(&second), requests, "the replay sent nothing to the upstream");
    let after = d.get(&format!("/v1/runs/{rerun}"));
    assert_eq!(after["journal"].as_array().map(Vec::len).unwrap_or_default(), journal, "no entry was written");
    assert_eq!(after["run"]["status"], "completed");
    assert_eq!(d.get("/v1/runs?limit=1000")["runs"].as_array().map(Vec::len).unwrap_or_default(), runs);
    b.cmd("POST", "/window/rect", json!({"width": 1400, "height": 2400}));
    b.screenshot("pipeline-run.png");
    b.cmd("POST", "/window/rect", json!({"width": 1400, "height": 1100}));

    // The API says the same; the failed original replays identically too,
    // as far as it went.
    let (status, report) = d.request("POST", &format!("/v1/runs/{rerun}/replay"), None, None);
    assert_eq!(status, 200, "{report}");
    assert_eq!((&report["verdict"], &report["identical"]), (&json!("identical"), &json!(true)), "{report}");
    assert_eq!(report["journal_entries"], journal);
    let (status, report) = d.request("POST", &format!("/v1/runs/{failed}/replay"), None, None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["verdict"], "identical", "{report}");
    for (path, want) in [("/v1/runs/run_01JEXAMPQ7Q3W8ZR5X6Y4V2T9K/replay", 404), ("/v1/runs/nope/replay", 400)] {
        let (status, body) = d.request("POST", path, None, None);
        assert_eq!(status, want, "{path}: {body}");
    }

    // A journal changed behind the daemon's back (send-email's recorded
    // result, with markup in it) diverges there: both sides, as text.
    const FORGED: &str = r#"{"message_id":"<img src=x onerror=alert(9)>","duplicate":false}"#;
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(async {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", sb.db().display()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let changed = sqlx::query(
            "UPDATE journal SET response = ? WHERE run_id = ? AND kind = 'step' AND name = 'send-email' AND child = 0",
        )
        .bind(FORGED)
        .bind(&rerun)
        .execute(&mut db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(changed.rows_affected(), 1);
    });
    b.goto(&format!("{}/runs/{rerun}", d.url));
    b.wait_text("#run-status", "completed");
    b.click("#replay-run");
    let diverged = b.wait_text("#replay-result[data-verdict=diverged]", "Diverged");
    assert!(diverged.contains("#11.1") && diverged.contains("result differs"), "{diverged}");
    let recorded = b.text("#replay-result .side-recorded details.response pre");
    assert!(recorded.contains("<img src=x onerror=alert(9)>"), "the forged record, as text: {recorded}");
    let replayed = b.text("#replay-result .side-replayed details.response pre");
    assert!(replayed.contains("msg_") && !replayed.contains("<img"), "what send-email returns now: {replayed}");
    assert!(b.text("#replay-result .side-replayed h4").contains("send-email"));
    assert_eq!(b.alert(), None, "no dialog opened");
    assert_eq!(b.eval("return document.querySelectorAll('main img').length"), json!(0), "no image element was made");
    b.cmd("POST", "/window/rect", json!({"width": 1400, "height": 1600}));
    b.screenshot("pipeline-run-diverged.png");
}
