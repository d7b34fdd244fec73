//! Tests of the fake upstream over real HTTP: an in-process [`Upstream`]
//! and a reqwest client. Which request gets which fault is found by asking
//! the same pure decision functions the server uses, so no test depends on
//! timing (the one clock-driven fault, meta's rate limit, is off unless a
//! test turns it on).

use base64::Engine as _;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::data::{self, Source, Week};
use super::faults::{Faults, PageFault};
use super::*;

const WEEK: &str = "2026-W49";

fn week() -> Week {
    Week::parse(WEEK).unwrap()
}

fn config(faults: Profile, seed: u64) -> Config {
    Config { seed, faults, clients: 12, outbox: None, meta_rate_per_sec: Some(0) }
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error code: {:?}", self.body)).to_owned()
    }
}

struct Harness {
    up: Upstream,
    http: reqwest::Client,
}

async fn start(config: Config) -> Harness {
    Harness { up: Upstream::start(config).await.unwrap(), http: reqwest::Client::new() }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.up.url()) }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let r = req.send().await.unwrap();
        Reply { status: r.status().as_u16(), headers: r.headers().clone(), body: r.bytes().await.unwrap() }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> Reply {
        let mut req = self.http.post(self.url(path)).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    async fn post_json(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
        self.post(path, headers, serde_json::to_vec(body).unwrap()).await
    }

    async fn token(&self, client: &str, source: Source) -> String {
        let r = self.post_json("/oauth/token", &[], &json!({"client": client, "source": source.as_str()})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// A token for (client, source) that is not expired.
    async fn working_token(&self, client: &str, source: Source) -> String {
        loop {
            let token = self.token(client, source).await;
            if !self.up.shared.lock().token(&token).unwrap().expired {
                return token;
            }
        }
    }

    /// One page request of `source` at position `pos` (a row offset; for
    /// the warehouse, the page from 0; for meta, `next` overrides it).
    async fn page(&self, client: &str, source: Source, pos: u32, next: Option<&str>, token: &str) -> Reply {
        let q = format!("client={client}&week={WEEK}");
        let bearer = format!("Bearer {token}");
        let auth = [("authorization", bearer.as_str())];
        match source {
            Source::Meta => {
                let url = next.map_or_else(|| format!("/meta/v1/insights?{q}"), str::to_owned);
                self.get(&url, Some(token)).await
            }
            Source::Linkedin => {
                self.get(&format!("/linkedin/v2/adAnalytics?{q}&start={pos}&count=10"), Some(token)).await
            }
            Source::Ga4 => {
                let body = json!({"client": client, "week": WEEK, "offset": pos, "limit": 10});
                self.post_json("/ga4/v1beta/runReport", &auth, &body).await
            }
            Source::SearchConsole => {
                let body = json!({"client": client, "week": WEEK, "startRow": pos, "rowLimit": 10});
                self.post_json("/searchconsole/v1/query", &auth, &body).await
            }
            Source::Mailchimp => {
                self.get(&format!("/mailchimp/3.0/reports?{q}&offset={pos}&count=10"), Some(token)).await
            }
            Source::Warehouse => self.get(&format!("/warehouse/v1/orders?{q}&page={}", pos + 1), Some(token)).await,
        }
    }

    /// Pulls every row of (client, source) the way a pull step should:
    /// retry 429s, 504s and malformed pages, and start over with a fresh
    /// token on `token_expired`. Returns the rows and the token that read
    /// them.
    async fn pull(&self, client: &str, source: Source) -> (Vec<Value>, String) {
        let mut token = self.token(client, source).await;
        let mut rows = Vec::new();
        let (mut pos, mut next): (u32, Option<String>) = (0, None);
        for _ in 0..500 {
            let r = self.page(client, source, pos, next.as_deref(), &token).await;
            match r.status {
                429 | 504 => continue,
                401 => {
                    assert_eq!(r.error(), "token_expired");
                    token = self.token(client, source).await;
                    (rows, pos, next) = (Vec::new(), 0, None);
                    continue;
                }
                200 => {}
                other => panic!("{source} answered {other}: {:?}", r.body),
            }
            let Ok(body) = serde_json::from_slice::<Value>(&r.body) else { continue };
            let more = match source {
                Source::Meta => {
                    rows.extend(body["data"].as_array().unwrap().iter().cloned());
                    next = body["paging"]["next"].as_str().map(str::to_owned);
                    next.is_some()
                }
                Source::Linkedin => {
                    rows.extend(body["elements"].as_array().unwrap().iter().cloned());
                    let p = &body["paging"];
                    p["start"].as_u64().unwrap() + p["count"].as_u64().unwrap() < p["total"].as_u64().unwrap()
                }
                Source::Ga4 => {
                    rows.extend(body["rows"].as_array().unwrap().iter().cloned());
                    u64::from(pos) + 10 < body["rowCount"].as_u64().unwrap()
                }
                Source::SearchConsole => {
                    let page = body["rows"].as_array().unwrap();
                    rows.extend(page.iter().cloned());
                    page.len() == 10
                }
                Source::Mailchimp => {
                    rows.extend(body["reports"].as_array().unwrap().iter().cloned());
                    u64::from(pos) + 10 < body["total_items"].as_u64().unwrap()
                }
                Source::Warehouse => {
                    rows.extend(body["rows"].as_array().unwrap().iter().cloned());
                    match body["next_page"].as_u64() {
                        Some(p) => {
                            pos = p as u32 - 1;
                            true
                        }
                        None => false,
                    }
                }
            };
            if !more {
                return (rows, token);
            }
            if source != Source::Warehouse {
                pos += 10;
            }
        }
        panic!("{source} of {client} never finished");
    }
}

fn sorted(mut rows: Vec<Value>) -> Vec<String> {
    let mut v: Vec<String> = rows.drain(..).map(|r| r.to_string()).collect();
    v.sort();
    v
}

fn expected(client: u32, source: Source) -> Vec<String> {
    sorted(data::rows(client, source, week()))
}

#[tokio::test]
async fn clients_are_listed_with_names_and_addresses() {
    let h = start(config(Profile::None, 1)).await;
    let r = h.get("/agency/v1/clients", None).await;
    assert_eq!(r.status, 200);
    let clients = r.json()["clients"].as_array().unwrap().clone();
    assert_eq!(clients.len(), 12);
    assert_eq!(clients[0], json!({"id": "c01", "name": "Aurora Bakery", "email": "reports+c01@example.test"}));
    assert_eq!(clients[11]["id"], "c12");
    h.up.shutdown().await;
}

#[tokio::test]
async fn every_source_pages_through_every_row_once() {
    let h = start(config(Profile::None, 1)).await;
    for client in 1..=3 {
        for source in Source::ALL {
            let (rows, _) = h.pull(&data::client_id(client), source).await;
            assert_eq!(sorted(rows), expected(client, source), "{source} of c{client:02}");
        }
    }
    assert!(h.up.stats().by_fault.is_empty());
    h.up.shutdown().await;
}

#[tokio::test]
async fn hostile_faults_retried_still_give_every_row_once() {
    let h = start(config(Profile::Hostile, 1)).await;
    let pulls = (1..=8).flat_map(|c| Source::ALL.map(|s| (c, s))).map(|(client, source)| {
        let h = &h;
        async move {
            let (rows, _) = h.pull(&data::client_id(client), source).await;
            assert_eq!(sorted(rows), expected(client, source), "{source} of c{client:02}");
        }
    });
    futures::future::join_all(pulls).await;
    // Which pages fault is a function of the seed, not of the interleaving
    // (every page here has one reader), so these are certain for seed 1.
    let stats = h.up.stats();
    for fault in ["burst-429", "504-cluster", "token-expired", "malformed", "slow"] {
        assert!(stats.by_fault.get(fault).is_some_and(|&n| n > 0), "no {fault}: {stats:?}");
    }
    assert_eq!(stats.in_flight, 0);
    h.up.shutdown().await;
}

#[tokio::test]
async fn data_does_not_depend_on_the_server_seed_or_profile() {
    let a = start(config(Profile::None, 1)).await;
    let b = start(config(Profile::Hostile, 99)).await;
    for source in [Source::Meta, Source::Warehouse, Source::Mailchimp] {
        let (ra, _) = a.pull("c05", source).await;
        let (rb, _) = b.pull("c05", source).await;
        assert_eq!(ra, rb, "{source}: same rows in the same order");
    }
    for source in [Source::Ga4, Source::SearchConsole] {
        let (ra, _) = a.pull("c05", source).await;
        let (rb, _) = b.pull("c05", source).await;
        assert_eq!(sorted(ra), sorted(rb), "{source}: same rows");
    }
    a.up.shutdown().await;
    b.up.shutdown().await;
}

#[tokio::test]
async fn shuffled_sources_order_rows_per_token() {
    let h = start(config(Profile::None, 1)).await;
    for source in [Source::Ga4, Source::SearchConsole] {
        let (a, ta) = h.pull("c02", source).await;
        let (b, tb) = h.pull("c02", source).await;
        assert_ne!(ta, tb);
        assert_ne!(a, b, "{source}: another token, another order");
        assert_eq!(sorted(a.clone()), sorted(b));
        assert_eq!(sorted(a.clone()), expected(2, source));
        // The same token sees the same order again.
        let first = h.page("c02", source, 0, None, &ta).await.json();
        assert_eq!(first["rows"].as_array().unwrap()[..], a[..10]);
    }
    let (meta_a, _) = h.pull("c02", Source::Meta).await;
    let (meta_b, _) = h.pull("c02", Source::Meta).await;
    assert_eq!(meta_a, meta_b, "other sources keep their order");
    h.up.shutdown().await;
}

#[tokio::test]
async fn meta_next_links_are_absolute_urls_on_the_host_asked() {
    let h = start(config(Profile::None, 1)).await;
    let token = h.token("c01", Source::Meta).await;
    let r = h.page("c01", Source::Meta, 0, None, &token).await;
    let next = r.json()["paging"]["next"].as_str().unwrap().to_owned();
    assert!(next.starts_with(&format!("{}/meta/v1/insights?", h.up.url())), "{next}");
    let cursor = r.json()["paging"]["cursors"]["after"].as_str().unwrap().to_owned();
    assert!(next.ends_with(&format!("after={cursor}")));
    assert!(!cursor.contains("c01"), "the cursor is opaque");
    // A cursor of another client is refused.
    let other = h.get(&format!("/meta/v1/insights?client=c02&week={WEEK}&after={cursor}"), Some(&token)).await;
    assert_eq!(other.status, 400);
    h.up.shutdown().await;
}

#[tokio::test]
async fn mail_dedupes_on_the_idempotency_key() {
    let h = start(config(Profile::None, 1)).await;
    let mail = mail_body("c03", b"%PDF-1.4 report");
    let a = h.post_json("/mail/v1/send", &[("idempotency-key", "report/c03/2026-W49")], &mail).await;
    assert_eq!(a.status, 202);
    assert_eq!(a.json()["duplicate"], false);
    let b = h.post_json("/mail/v1/send", &[("idempotency-key", "report/c03/2026-W49")], &mail).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.json()["duplicate"], true);
    assert_eq!(a.json()["id"], b.json()["id"]);
    let emails = h.up.emails();
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].client.as_deref(), Some("c03"));
    assert_eq!(emails[0].week.as_deref(), Some(WEEK));
    assert_eq!(emails[0].attachment_bytes, 15);
    assert_eq!(
        h.up.duplicates(),
        vec![Duplicate { idempotency_key: "report/c03/2026-W49".into(), client: Some("c03".into()), count: 1 }]
    );
    let stats = h.up.stats();
    assert_eq!((stats.emails, stats.duplicates), (1, 1));
    let listed = h.get("/_upstream/emails", None).await.json();
    assert_eq!(listed["emails"].as_array().unwrap().len(), 1);
    assert_eq!(listed["duplicates"][0]["count"], 1);
    h.up.shutdown().await;
}

fn mail_body(client: &str, pdf: &[u8]) -> Value {
    json!({
        "to": format!("reports+{client}@example.test"),
        "subject": format!("Weekly report {WEEK}"),
        "text": "Your report is attached.",
        "attachments": [{
            "filename": format!("{client}-{WEEK}.pdf"),
            "content_type": "application/pdf",
            "content_base64": base64::engine::general_purpose::STANDARD.encode(pdf),
        }],
    })
}

#[tokio::test]
async fn a_mail_answered_504_was_sent_once_and_the_retry_says_duplicate() {
    let seed = 4;
    let faults = Faults::new(seed, Profile::Hostile.rates());
    let key = (0..).map(|i| format!("report/c01/{i}")).find(|k| faults.mail_504(k)).unwrap();
    let h = start(config(Profile::Hostile, seed)).await;
    let mail = mail_body("c01", b"%PDF-1.4 lost answer");
    let first = h.post_json("/mail/v1/send", &[("idempotency-key", &key)], &mail).await;
    assert_eq!(first.status, 504);
    assert_eq!(first.error(), "gateway_timeout");
    let emails = h.up.emails();
    assert_eq!(emails.len(), 1, "the send happened");
    assert!(emails[0].answer_lost);
    let retry = h.post_json("/mail/v1/send", &[("idempotency-key", &key)], &mail).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json(), json!({"id": emails[0].id, "duplicate": true}));
    assert_eq!(h.up.emails().len(), 1);
    assert_eq!(h.up.stats().duplicates, 1);
    let log = h.up.requests(0);
    assert_eq!(log[0].fault, Some(Fault::Mail504));
    assert_eq!(log[1].fault, None);
    h.up.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_is_replaced_by_a_fresh_one() {
    let seed = 1;
    let faults = Faults::new(seed, Profile::Hostile.rates());
    let (client, source) =
        (1..=12).flat_map(|c| Source::ALL.map(|s| (c, s))).find(|&(c, s)| faults.token_expires(c, s)).unwrap();
    let lucky = (1..=12).find(|&c| !faults.token_expires(c, source)).unwrap();
    let h = start(config(Profile::Hostile, seed)).await;
    let id = data::client_id(client);
    let first = h.token(&id, source).await;
    for _ in 0..2 {
        let r = h.page(&id, source, 0, None, &first).await;
        assert_eq!((r.status, r.error()), (401, "token_expired".to_owned()));
    }
    let fresh = h.token(&id, source).await;
    let mut r = h.page(&id, source, 0, None, &fresh).await;
    while r.status != 200 {
        assert!(matches!(r.status, 429 | 504), "{}", r.status);
        r = h.page(&id, source, 0, None, &fresh).await;
    }
    // A pair the fault did not choose: its first token works.
    let token = h.token(&data::client_id(lucky), source).await;
    let r = h.page(&data::client_id(lucky), source, 0, None, &token).await;
    assert_ne!(r.status, 401);
    assert_eq!(h.up.stats().by_fault["token-expired"], 2);
    h.up.shutdown().await;
}

#[tokio::test]
async fn a_malformed_page_is_malformed_only_once() {
    let seed = 1;
    let faults = Faults::new(seed, Profile::Hostile.rates());
    let (client, page) = (1..=12)
        .flat_map(|c| (0..3).map(move |p| (c, p)))
        .find(|&(c, p)| faults.page(c, Source::Ga4, week(), p, 1) == Some(PageFault::Malformed))
        .unwrap();
    let h = start(config(Profile::Hostile, seed)).await;
    let id = data::client_id(client);
    let token = h.working_token(&id, Source::Ga4).await;
    let bad = h.page(&id, Source::Ga4, page * 10, None, &token).await;
    assert_eq!(bad.status, 200);
    assert!(serde_json::from_slice::<Value>(&bad.body).is_err(), "a truncated body");
    assert!(bad.body.starts_with(b"{"));
    let good = h.page(&id, Source::Ga4, page * 10, None, &token).await;
    assert_eq!(good.status, 200);
    assert_eq!(good.json()["rowCount"].as_u64().unwrap() as usize, data::rows(client, Source::Ga4, week()).len());
    h.up.shutdown().await;
}

#[tokio::test]
async fn bursts_and_clusters_end_so_retries_succeed() {
    let seed = 2;
    let faults = Faults::new(seed, Profile::Hostile.rates());
    let h = start(config(Profile::Hostile, seed)).await;
    for (source, fault, status) in
        [(Source::Meta, PageFault::Burst429, 429), (Source::Linkedin, PageFault::Cluster504, 504)]
    {
        let client =
            (1..=12).find(|&c| faults.page(c, source, week(), 0, 1) == Some(fault)).expect("a chosen first page");
        let k = (1..=10).take_while(|&ask| faults.page(client, source, week(), 0, ask) == Some(fault)).count();
        assert!((1..=4).contains(&k));
        let id = data::client_id(client);
        let token = h.working_token(&id, source).await;
        for _ in 0..k {
            let r = h.page(&id, source, 0, None, &token).await;
            assert_eq!(r.status, status);
            if status == 429 {
                assert_eq!(r.headers["retry-after"], "1");
            }
        }
        assert_eq!(h.page(&id, source, 0, None, &token).await.status, 200);
    }
    h.up.shutdown().await;
}

#[tokio::test]
async fn meta_rate_limit_answers_429_with_retry_after() {
    let h = start(Config { meta_rate_per_sec: Some(1), ..config(Profile::None, 1) }).await;
    let token = h.token("c01", Source::Meta).await;
    let mut limited = None;
    for _ in 0..10 {
        let r = h.page("c01", Source::Meta, 0, None, &token).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let r = limited.expect("ten requests at 1/s: one is limited");
    assert_eq!(r.error(), "rate_limited");
    let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(secs >= 1);
    assert!(h.up.requests(0).iter().any(|e| e.fault == Some(Fault::RateLimit) && e.status == Some(429)));
    h.up.shutdown().await;
}

#[tokio::test]
async fn bad_inputs_get_json_errors() {
    let h = start(config(Profile::None, 1)).await;
    let meta = h.token("c01", Source::Meta).await;
    let li = h.token("c01", Source::Linkedin).await;
    let ga4 = h.token("c01", Source::Ga4).await;
    let sc = h.token("c01", Source::SearchConsole).await;
    let wh = h.token("c01", Source::Warehouse).await;
    let (meta, li, wh) = (meta.as_str(), li.as_str(), wh.as_str());
    let q = format!("client=c01&week={WEEK}");
    let gets: Vec<(String, Option<&str>, u16, &str)> = vec![
        ("/nope".into(), None, 404, "not_found"),
        (format!("/meta/v1/insights?{q}"), None, 401, "missing_token"),
        (format!("/meta/v1/insights?{q}"), Some("nope"), 401, "invalid_token"),
        (format!("/meta/v1/insights?{q}"), Some(li), 401, "invalid_token"),
        (format!("/meta/v1/insights?client=c02&week={WEEK}"), Some(meta), 401, "invalid_token"),
        (format!("/meta/v1/insights?client=c99&week={WEEK}"), Some(meta), 404, "unknown_client"),
        (format!("/meta/v1/insights?client=c1&week={WEEK}"), Some(meta), 404, "unknown_client"),
        (format!("/meta/v1/insights?week={WEEK}"), Some(meta), 400, "bad_request"),
        ("/meta/v1/insights?client=c01&week=2026-49".into(), Some(meta), 400, "bad_week"),
        ("/meta/v1/insights?client=c01&week=2025-W53".into(), Some(meta), 400, "bad_week"),
        ("/meta/v1/insights?client=c01".into(), Some(meta), 400, "bad_request"),
        (format!("/meta/v1/insights?{q}&after=%FF%00garbage"), Some(meta), 400, "bad_request"),
        (format!("/linkedin/v2/adAnalytics?{q}&start=-1"), Some(li), 400, "bad_request"),
        (format!("/linkedin/v2/adAnalytics?{q}&count=0"), Some(li), 400, "bad_request"),
        (format!("/linkedin/v2/adAnalytics?{q}&count=11"), Some(li), 400, "bad_request"),
        (format!("/linkedin/v2/adAnalytics?{q}&start=99999999999"), Some(li), 400, "bad_request"),
        (format!("/warehouse/v1/orders?{q}&page=0"), Some(wh), 400, "bad_request"),
        (format!("/warehouse/v1/orders?{q}&page=x"), Some(wh), 400, "bad_request"),
        ("/_upstream/requests?after=x".into(), None, 400, "bad_request"),
        ("/_upstream/emails/msg_404/attachment".into(), None, 404, "not_found"),
    ];
    for (path, token, status, code) in gets {
        let r = h.get(&path, token).await;
        assert_eq!((r.status, r.error()), (status, code.to_owned()), "GET {path}");
        assert_eq!(r.headers["content-type"], "application/json", "GET {path}");
        if !path.starts_with("/_upstream") {
            assert!(r.headers.contains_key("x-request-id"), "GET {path}");
        }
    }
    let ga4_auth = format!("Bearer {ga4}");
    let sc_auth = format!("Bearer {sc}");
    let key = [("idempotency-key", "k1")];
    let no_key: [(&str, &str); 0] = [];
    /// Path, headers, body, expected status and error code.
    type Post<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let posts: Vec<Post> = vec![
        ("/oauth/token", vec![], "not json".into(), 400, "bad_request"),
        ("/oauth/token", vec![], "{}".into(), 400, "bad_request"),
        ("/oauth/token", vec![], r#"{"client":"c99","source":"meta"}"#.into(), 400, "unknown_client"),
        ("/oauth/token", vec![], r#"{"client":"c01","source":"tiktok"}"#.into(), 400, "unknown_source"),
        ("/ga4/v1beta/runReport", vec![], format!(r#"{{"client":"c01","week":"{WEEK}"}}"#), 401, "missing_token"),
        ("/ga4/v1beta/runReport", vec![("authorization", ga4_auth.as_str())], "[".into(), 400, "bad_request"),
        (
            "/ga4/v1beta/runReport",
            vec![("authorization", ga4_auth.as_str())],
            r#"{"client":"c01"}"#.into(),
            400,
            "bad_request",
        ),
        (
            "/ga4/v1beta/runReport",
            vec![("authorization", ga4_auth.as_str())],
            format!(r#"{{"client":"c01","week":"{WEEK}","offset":-1}}"#),
            400,
            "bad_request",
        ),
        (
            "/searchconsole/v1/query",
            vec![("authorization", sc_auth.as_str())],
            format!(r#"{{"client":"c01","week":"{WEEK}","rowLimit":50}}"#),
            400,
            "bad_request",
        ),
        (
            "/searchconsole/v1/query",
            vec![("authorization", sc_auth.as_str())],
            format!(r#"{{"client":"c77","week":"{WEEK}"}}"#),
            404,
            "unknown_client",
        ),
        ("/mail/v1/send", no_key.to_vec(), mail_body("c01", b"x").to_string(), 400, "bad_request"),
        ("/mail/v1/send", key.to_vec(), r#"{"to":"a@b"}"#.into(), 400, "bad_request"),
        (
            "/mail/v1/send",
            key.to_vec(),
            mail_body("c01", b"x").to_string().replace("content_base64\":\"", "content_base64\":\"!!"),
            400,
            "bad_request",
        ),
        (
            "/mail/v1/send",
            key.to_vec(),
            json!({"to": "reports+c01@example.test", "subject": "s", "text": "t", "attachments": []}).to_string(),
            400,
            "bad_request",
        ),
        (
            "/mail/v1/send",
            key.to_vec(),
            mail_body("c01", b"x").to_string().replace("reports+c01@example.test", "nobody"),
            400,
            "bad_request",
        ),
        ("/warehouse/v1/tables/ads/snapshots", no_key.to_vec(), snapshot_body("c01", WEEK, "aa"), 400, "bad_request"),
        ("/warehouse/v1/tables/users/snapshots", key.to_vec(), snapshot_body("c01", WEEK, "aa"), 404, "unknown_table"),
        ("/warehouse/v1/tables/%FF/snapshots", key.to_vec(), snapshot_body("c01", WEEK, "aa"), 400, "bad_request"),
        ("/warehouse/v1/tables/ads/snapshots", key.to_vec(), snapshot_body("c01", WEEK, "xyz"), 400, "bad_request"),
        ("/warehouse/v1/tables/ads/snapshots", key.to_vec(), snapshot_body("c99", WEEK, "aa"), 404, "unknown_client"),
        ("/warehouse/v1/tables/ads/snapshots", key.to_vec(), snapshot_body("c01", "W49", "aa"), 400, "bad_week"),
        ("/agency/v1/clients", vec![], String::new(), 405, "method_not_allowed"),
    ];
    for (path, headers, body, status, code) in posts {
        let r = h.post(path, &headers, body.clone()).await;
        assert_eq!((r.status, r.error()), (status, code.to_owned()), "POST {path} {body}");
        assert!(r.headers.contains_key("x-request-id"), "POST {path}");
    }
    assert!(h.up.emails().is_empty() && h.up.snapshots().is_empty());
    // Still serving.
    assert_eq!(h.get("/agency/v1/clients", None).await.status, 200);
    h.up.shutdown().await;
}

fn snapshot_body(client: &str, week: &str, digest: &str) -> String {
    json!({"client": client, "week": week, "digest": digest, "row_hashes": ["ab12", "cd34"]}).to_string()
}

#[tokio::test]
async fn snapshots_compare_with_the_latest_earlier_week_and_replay_keys() {
    let h = start(config(Profile::None, 1)).await;
    let store = |key: &'static str, week: &'static str, digest: &'static str| {
        let h = &h;
        async move {
            let r = h
                .post(
                    "/warehouse/v1/tables/ads/snapshots",
                    &[("idempotency-key", key)],
                    snapshot_body("c01", week, digest),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.json()
        }
    };
    let answer = |changed: bool, previous: Option<&str>| json!({"stored": true, "changed": changed, "previous_digest": previous});
    assert_eq!(store("k1", "2026-W48", "aa").await, answer(true, None));
    assert_eq!(store("k2", "2026-W49", "aa").await, answer(false, Some("aa")));
    assert_eq!(store("k3", "2026-W49", "bb").await, answer(true, Some("aa")));
    assert_eq!(store("k2", "2026-W49", "ff").await, answer(false, Some("aa")), "a repeated key: the first answer");
    assert_eq!(store("k4", "2026-W47", "cc").await, answer(true, None), "no earlier week");
    assert_eq!(store("k5", "2026-W50", "bb").await, answer(false, Some("bb")), "the latest of the latest week");
    // Another table and another client have their own history.
    let r = h
        .post(
            "/warehouse/v1/tables/web/snapshots",
            &[("idempotency-key", "k6")],
            snapshot_body("c01", "2026-W50", "bb"),
        )
        .await;
    assert_eq!(r.json(), answer(true, None));
    assert_eq!(h.up.snapshots().len(), 6);
    assert_eq!(h.get("/_upstream/snapshots", None).await.json()["snapshots"].as_array().unwrap().len(), 6);
    h.up.shutdown().await;
}

#[tokio::test]
async fn the_outbox_and_the_inspection_endpoint_hold_the_attachment() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let h = start(Config { outbox: Some(outbox.clone()), ..config(Profile::None, 1) }).await;
    let pdf = b"%PDF-1.4\n% a report\n%%EOF\n".to_vec();
    let r = h.post_json("/mail/v1/send", &[("idempotency-key", "out-1")], &mail_body("c02", &pdf)).await;
    assert_eq!(r.status, 202);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read(outbox.join("c02-2026-W49.pdf")).unwrap(), pdf);
    let got = h.get(&format!("/_upstream/emails/{id}/attachment"), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-type"], "application/pdf");
    assert_eq!(got.body.to_vec(), pdf);
    assert_eq!(h.up.attachment(&id), Some(pdf.clone()));
    use sha2::Digest;
    assert_eq!(h.up.emails()[0].attachment_sha256, hex::encode(sha2::Sha256::digest(&pdf)));
    h.up.shutdown().await;
}

#[tokio::test]
async fn the_request_log_numbers_requests_and_pages_by_id() {
    let h = start(config(Profile::None, 1)).await;
    let r1 = h.get("/agency/v1/clients", None).await;
    let token = h.token("c04", Source::Linkedin).await;
    let r3 = h.page("c04", Source::Linkedin, 20, None, &token).await;
    let r4 = h.post_json("/mail/v1/send", &[("idempotency-key", "log-1")], &mail_body("c04", b"pdf")).await;
    let ids: Vec<&str> = [&r1, &r3, &r4].iter().map(|r| r.headers["x-request-id"].to_str().unwrap()).collect();
    assert_eq!(ids, ["1", "3", "4"]);
    // Inspection is not logged.
    assert_eq!(h.get("/_upstream/stats", None).await.json()["requests"], 4);
    assert!(!h.get("/_upstream/stats", None).await.headers.contains_key("x-request-id"));
    let log = h.get("/_upstream/requests", None).await.json()["requests"].as_array().unwrap().clone();
    assert_eq!(log.len(), 4);
    assert_eq!(log[1]["path"], "/oauth/token");
    assert_eq!(
        (&log[1]["client"], &log[1]["source"], &log[1]["page"]),
        (&json!("c04"), &json!("linkedin"), &Value::Null)
    );
    assert_eq!(log[2]["page"], 2);
    assert_eq!(log[2]["week"], WEEK);
    assert_eq!(log[2]["status"], 200);
    assert_eq!(log[2]["fault"], Value::Null);
    assert_eq!(
        (&log[3]["path"], &log[3]["client"], &log[3]["status"]),
        (&json!("/mail/v1/send"), &json!("c04"), &json!(202))
    );
    let after = h.get("/_upstream/requests?after=2", None).await.json()["requests"].as_array().unwrap().clone();
    assert_eq!(after.iter().map(|e| e["id"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 4]);
    let none = h.get("/_upstream/requests?after=99", None).await.json();
    assert_eq!(none["requests"], json!([]));
    let stats = h.up.stats();
    assert_eq!(stats.by_source["linkedin"], 2);
    assert_eq!(stats.by_status["200"], 3);
    assert_eq!(stats.tokens_issued, 1);
    h.up.shutdown().await;
}

#[tokio::test]
async fn a_seed_replays_the_same_faults() {
    async fn script(seed: u64) -> Vec<(String, Option<u32>, Option<u16>, Option<Fault>)> {
        let h = start(config(Profile::Hostile, seed)).await;
        for client in ["c01", "c02", "c03"] {
            for source in Source::ALL {
                h.pull(client, source).await;
            }
        }
        let log = h.up.requests(0).into_iter().map(|e| (e.path, e.page, e.status, e.fault)).collect();
        h.up.shutdown().await;
        log
    }
    let a = script(11).await;
    assert!(a.iter().any(|e| e.3.is_some()), "hostile seed 11 injects faults");
    assert_eq!(a, script(11).await);
}

#[test]
fn profiles_parse_and_print() {
    for p in [Profile::None, Profile::Default, Profile::Hostile] {
        assert_eq!(p.to_string().parse::<Profile>().unwrap(), p);
    }
    assert!("nasty".parse::<Profile>().is_err());
}
