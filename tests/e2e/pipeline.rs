//! The reference pipeline (docs/PIPELINE.md) end to end: `ferry upstream`
//! and `ferry serve` as real processes, the pipeline deployed as `ferry
//! demo` deploys it (`ferry::pipeline`), and a week of 60 reports run under
//! the upstream's faults, through kill -9, with shuffled rows, and replayed.
//!
//! The helpers here are shared with the many-hosts test in `hosts.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Daemon, Sandbox, Upstream, guest, poll_until, root};

/// The week every test reports on (its data depends on nothing else).
pub const WEEK: &str = "2026-W49";
/// Clients of the upstream (its default): one report each.
pub const CLIENTS: u32 = 60;
/// The step calls of one report, by the name its journal gives them.
const REPORT_STEPS: [&str; 12] = [
    "refresh-tokens",
    "pull-meta",
    "pull-linkedin",
    "pull-ga4",
    "pull-search-console",
    "pull-mailchimp",
    "pull-warehouse",
    "transform-ads",
    "transform-web",
    "transform-crm",
    "render-pdf",
    "send-email",
];
const FINAL: [&str; 3] = ["completed", "failed", "cancelled"];

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(work)
}

fn client(d: &Daemon) -> ferry::cli::client::Client {
    ferry::cli::client::Client::new(&d.url, None).unwrap_or_else(|e| panic!("a client for {}: {e:#}", d.url))
}

/// Deploys the pipeline to `d` for `upstream` with `ferry::pipeline::deploy`,
/// then deletes the weekly batch's cron schedule: each test starts its
/// week itself, and a Friday 21:00 tick during a test would start another.
pub fn deploy(d: &Daemon, upstream: &Upstream) {
    let components: HashMap<String, PathBuf> = ferry::pipeline::STEPS
        .iter()
        .chain(ferry::pipeline::WORKFLOWS.iter())
        .map(|name| ((*name).to_owned(), guest(name)))
        .collect();
    let created = block_on(ferry::pipeline::deploy(&client(d), &components, &upstream.url))
        .unwrap_or_else(|e| panic!("deploying the pipeline: {e:#}"));
    assert_eq!(created, components.len(), "every component was a new deployment");
    let (status, body) = d.request("DELETE", "/v1/schedules/weekly-batch", None, None);
    assert_eq!(status, 200, "deleting the batch's schedule: {body}");
}

/// Starts the batch of [`WEEK`]; returns its run id.
pub fn start_week(d: &Daemon, upstream: &Upstream) -> String {
    block_on(ferry::pipeline::start_week(&client(d), &upstream.url, WEEK))
        .unwrap_or_else(|e| panic!("starting the week: {e:#}"))
        .to_string()
}

/// The `weekly-report` runs `d` lists.
pub fn reports(d: &Daemon) -> Vec<Value> {
    d.get("/v1/runs?workflow=weekly-report&limit=1000")["runs"].as_array().cloned().unwrap_or_default()
}

/// A run's input or output, parsed.
fn json_field(run: &Value, field: &str) -> Value {
    run[field].as_str().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null)
}

/// The client a report run is for.
pub fn client_of(run: &Value) -> String {
    json_field(run, "input")["client"].as_str().unwrap_or_default().to_owned()
}

fn id_of(run: &Value) -> String {
    run["id"].as_str().unwrap_or_default().to_owned()
}

pub fn status_counts(runs: &[Value]) -> BTreeMap<String, usize> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in runs {
        *by.entry(r["status"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
    }
    by
}

pub fn completed(runs: &[Value]) -> usize {
    runs.iter().filter(|r| r["status"] == "completed").count()
}

/// The last lines of every host's log, for a failure message.
pub fn log_tails(hosts: &[&Daemon], lines: usize) -> String {
    hosts
        .iter()
        .map(|h| {
            let log = h.log();
            let all: Vec<&str> = log.lines().collect();
            format!("--- ferry serve (pid {}):\n{}", h.pid(), all[all.len().saturating_sub(lines)..].join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits (with a deadline, asking `d` every half second) until `enough`
/// holds for the report runs; returns them.
pub fn wait_reports(d: &Daemon, what: &str, limit: Duration, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    poll_until(what, limit, Duration::from_millis(500), || {
        let runs = reports(d);
        if enough(&runs) { Ok(runs) } else { Err(format!("{} report runs: {:?}", runs.len(), status_counts(&runs))) }
    })
}

/// Waits until all 60 reports are final; on time out, says what is still
/// going and what the hosts logged.
pub fn wait_week(d: &Daemon, hosts: &[&Daemon], upstream: &Upstream, limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let runs = reports(d);
        let open = runs.iter().filter(|r| !FINAL.contains(&r["status"].as_str().unwrap_or_default())).count();
        if runs.len() >= CLIENTS as usize && open == 0 {
            return runs;
        }
        if Instant::now() > deadline {
            let going: Vec<String> = runs
                .iter()
                .filter(|r| !FINAL.contains(&r["status"].as_str().unwrap_or_default()))
                .map(|r| format!("{} {} {}", client_of(r), id_of(r), r["status"]))
                .collect();
            panic!(
                "the week did not finish in {limit:?}: {} report runs {:?}; still going: {going:?}\n{}\n\
                 --- ferry upstream:\n{}\nstats: {}",
                runs.len(),
                status_counts(&runs),
                log_tails(hosts, 30),
                upstream.log(),
                upstream.get("/_upstream/stats")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every client c01…c60 has exactly one report run, and it completed.
/// Returns the runs by client.
pub fn check_reports(runs: &[Value]) -> BTreeMap<String, Value> {
    let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in runs {
        by.entry(client_of(r)).or_default().push(r);
    }
    let twice: Vec<String> = by
        .iter()
        .filter(|(_, rs)| rs.len() > 1)
        .map(|(c, rs)| format!("{c}: {:?}", rs.iter().map(|r| id_of(r)).collect::<Vec<_>>()))
        .collect();
    assert!(twice.is_empty(), "clients with more than one report run: {twice:?}");
    let expected: BTreeSet<String> = (1..=CLIENTS).map(ferry::upstream::client_id).collect();
    let got: BTreeSet<String> = by.keys().cloned().collect();
    assert_eq!(got, expected, "one report run per client");
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r["status"] != "completed")
        .map(|r| format!("{} {} {}: {}", client_of(r), id_of(r), r["status"], r["error"]))
        .collect();
    assert!(failed.is_empty(), "report runs that did not complete: {failed:#?}");
    by.into_iter().map(|(c, rs)| (c, rs[0].clone())).collect()
}

/// A run's journal (and the run), as `GET /v1/runs/{id}` gives them.
pub fn journal(d: &Daemon, id: &str) -> (Value, Vec<Value>) {
    let shown = d.get(&format!("/v1/runs/{id}"));
    (shown["run"].clone(), shown["journal"].as_array().cloned().unwrap_or_default())
}

/// The step attempts of a journal (not the calls they made).
fn step_attempts(journal: &[Value]) -> impl Iterator<Item = &Value> {
    journal.iter().filter(|e| e["kind"] == "step" && e["child"] == 0)
}

/// The successful step attempts of a journal, by step name.
fn ok_steps(journal: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in step_attempts(journal).filter(|e| e["status"] == "ok") {
        by.entry(e["name"].as_str().unwrap_or_default().to_owned()).or_default().push(e);
    }
    by
}

/// A report's journal holds exactly one successful attempt of each of its
/// twelve step calls.
pub fn check_steps_once(client: &str, id: &str, journal: &[Value]) {
    let ok = ok_steps(journal);
    let counts: BTreeMap<&str, usize> = ok.iter().map(|(n, es)| (n.as_str(), es.len())).collect();
    let expected: BTreeMap<&str, usize> = REPORT_STEPS.iter().map(|n| (*n, 1)).collect();
    assert_eq!(counts, expected, "report of {client} ({id}): one successful attempt per step call");
}

/// The step attempts after the first of their call: `(step, attempt)`.
fn retries(journal: &[Value]) -> Vec<(String, i64)> {
    step_attempts(journal)
        .filter(|e| e["attempt"].as_i64().unwrap_or_default() >= 2)
        .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), e["attempt"].as_i64().unwrap_or_default()))
        .collect()
}

/// Failed step attempts by cause (`ferry::pipeline::retry_cause`).
fn failure_causes<'a>(journals: impl Iterator<Item = &'a Vec<Value>>) -> BTreeMap<String, usize> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for j in journals {
        for e in step_attempts(j).filter(|e| e["status"] == "error") {
            let cause = ferry::pipeline::retry_cause("", e["error"].as_str().unwrap_or_default());
            *by.entry(format!("{} {cause}", e["name"].as_str().unwrap_or_default())).or_default() += 1;
        }
    }
    by
}

/// The accepted emails by client: exactly one per client c01…c60, all of
/// [`WEEK`] (repeated sends are allowed only in `duplicates`).
pub fn check_emails(upstream: &Upstream) -> BTreeMap<String, Value> {
    let listed = upstream.get("/_upstream/emails");
    let emails = listed["emails"].as_array().cloned().unwrap_or_default();
    let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in &emails {
        let client = e["client"].as_str().map(str::to_owned).unwrap_or_else(|| format!("(none: to {})", e["to"]));
        by.entry(client).or_default().push(e.clone());
    }
    let twice: Vec<String> = by
        .iter()
        .filter(|(_, es)| es.len() > 1)
        .map(|(c, es)| format!("{c}: {:?}", es.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()))
        .collect();
    assert!(twice.is_empty(), "clients sent more than one accepted email: {twice:?}");
    let expected: BTreeSet<String> = (1..=CLIENTS).map(ferry::upstream::client_id).collect();
    let got: BTreeSet<String> = by.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&got).collect();
    let extra: Vec<&String> = got.difference(&expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "emails: missing {missing:?}, unexpected {extra:?}");
    assert_eq!(emails.len(), CLIENTS as usize, "accepted emails");
    let wrong_week: Vec<String> =
        emails.iter().filter(|e| e["week"] != WEEK).map(|e| format!("{} {}", e["client"], e["week"])).collect();
    assert!(wrong_week.is_empty(), "emails not of {WEEK}: {wrong_week:?}");
    by.into_iter().map(|(c, mut es)| (c, es.remove(0))).collect()
}

/// The text of a PDF's pages.
fn pdf_text(bytes: &[u8]) -> Result<String, String> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| format!("not a PDF: {e}"))?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    if pages.is_empty() {
        return Err("a PDF without pages".into());
    }
    doc.extract_text(&pages).map_err(|e| format!("no text: {e}"))
}

/// Every email's attachment is a PDF whose text names its client, and is
/// the one the client's report run rendered and sent.
pub fn check_attachments(upstream: &Upstream, emails: &BTreeMap<String, Value>, runs: &BTreeMap<String, Value>) {
    let mut wrong = Vec::new();
    for (client, email) in emails {
        let id = email["id"].as_str().unwrap_or_default();
        let (status, kind, bytes) = upstream.fetch(&format!("/_upstream/emails/{id}/attachment"));
        if status != 200 || kind != "application/pdf" {
            wrong.push(format!("{client} {id}: HTTP {status} {kind}"));
            continue;
        }
        let n: u32 = client.trim_start_matches('c').parse().unwrap_or_default();
        let name = ferry::upstream::client_name(n);
        match pdf_text(&bytes) {
            Err(e) => wrong.push(format!("{client} {id}: {e}")),
            Ok(text) if !text.contains(&name) => {
                wrong.push(format!("{client} {id}: the PDF does not name {name:?}: {:?}", &text[..text.len().min(300)]))
            }
            Ok(_) => {}
        }
        let output = json_field(&runs[client], "output");
        if output["message_id"] != email["id"] || output["pdf"]["sha256"] != email["attachment_sha256"] {
            wrong.push(format!("{client}: the report's output {output} is not email {email}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} attachments are wrong: {wrong:#?}", wrong.len(), emails.len());
}

/// The warehouse stored each table of each client once (a retried or
/// resumed transform reuses its idempotency key).
pub fn check_snapshots(upstream: &Upstream) {
    let listed = upstream.get("/_upstream/snapshots");
    let snapshots = listed["snapshots"].as_array().cloned().unwrap_or_default();
    let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in &snapshots {
        assert_eq!(s["week"], WEEK, "{s}");
        let key =
            (s["table"].as_str().unwrap_or_default().to_owned(), s["client"].as_str().unwrap_or_default().to_owned());
        *by.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = by.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tables stored more than once: {twice:?}");
    assert_eq!(by.len(), 3 * CLIENTS as usize, "three tables per client: {by:?}");
}

/// The `x-request-id` the upstream gave a journaled HTTP call.
fn request_id(entry: &Value) -> Option<u64> {
    let response: Value = entry["response"].as_str().and_then(|r| serde_json::from_str(r).ok())?;
    response["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case("x-request-id")))
        .and_then(|h| h[1].as_str())
        .and_then(|v| v.trim().parse().ok())
}

/// No completed pull was pulled again: for each report's six journaled
/// successful pull attempts, the upstream logged no page request for that
/// client, source and week after the last request the attempt made.
pub fn check_no_pull_repeated(upstream: &Upstream, journals: &BTreeMap<String, (String, Vec<Value>)>) {
    let log = upstream.requests();
    let mut last_page: HashMap<(String, String, String), u64> = HashMap::new();
    for r in &log {
        if r["page"].is_null() {
            continue;
        }
        let key = (
            r["client"].as_str().unwrap_or_default().to_owned(),
            r["source"].as_str().unwrap_or_default().to_owned(),
            r["week"].as_str().unwrap_or_default().to_owned(),
        );
        let id = r["id"].as_u64().unwrap_or_default();
        let last = last_page.entry(key).or_default();
        *last = (*last).max(id);
    }
    let mut checked = 0;
    let mut repeated = Vec::new();
    for (client, (run, journal)) in journals {
        for (name, attempts) in ok_steps(journal) {
            let Some(source) = name.strip_prefix("pull-") else { continue };
            let attempt = attempts[0];
            let (seq, n) = (&attempt["seq"], &attempt["attempt"]);
            let calls: Vec<&Value> = journal
                .iter()
                .filter(|e| e["kind"] == "http" && &e["seq"] == seq && &e["attempt"] == n && e["child"] != 0)
                .collect();
            let ids: Vec<u64> = calls.iter().filter_map(|e| request_id(e)).collect();
            let Some(&last) = ids.iter().max() else {
                panic!("{client} ({run}): {name} attempt {n} has no HTTP call with an x-request-id: {calls:?}");
            };
            checked += 1;
            let key = (client.clone(), source.to_owned(), WEEK.to_owned());
            match last_page.get(&key) {
                None => panic!("{client} ({run}): the upstream logged no page of {source}, yet {name} completed"),
                Some(&later) if later > last => repeated.push(format!(
                    "{client} ({run}) {name}: journaled attempt {n} (seq {seq}) ended with request {last}, \
                     yet the upstream got page request {later} afterwards"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(repeated.is_empty(), "completed pulls were pulled again: {repeated:#?}");
    assert_eq!(checked, 6 * journals.len(), "every report's six pulls were checked");
}

/// The report runs' journals by client: `(run id, journal)`.
pub fn journals(d: &Daemon, runs: &BTreeMap<String, Value>) -> BTreeMap<String, (String, Vec<Value>)> {
    runs.iter()
        .map(|(client, run)| {
            let id = id_of(run);
            let (_, j) = journal(d, &id);
            (client.clone(), (id, j))
        })
        .collect()
}

/// A counter of the daemon's `/metrics` (of this process only).
fn metric(d: &Daemon, name: &str) -> u64 {
    let (status, body) = d.request("GET", "/metrics", None, None);
    assert_eq!(status, 200, "GET /metrics: {body}");
    let text = body.as_str().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[test]
fn sixty_clients_each_get_one_report_under_default_faults() {
    let began = Instant::now();
    let upstream = Upstream::start(&["--faults", "default", "--seed", "7"]);
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    deploy(&d, &upstream);
    let batch = start_week(&d, &upstream);
    let runs = wait_week(&d, &[&d], &upstream, Duration::from_secs(240));
    let week_took = began.elapsed();

    let (batch_run, _) = journal(&d, &batch);
    assert_eq!(batch_run["status"], "completed", "the batch: {batch_run}");
    let started = json_field(&batch_run, "output")["runs"].as_array().map(Vec::len);
    assert_eq!(started, Some(CLIENTS as usize), "the batch started a report per client: {batch_run}");
    let runs = check_reports(&runs);
    let journals = journals(&d, &runs);
    for (client, (id, j)) in &journals {
        check_steps_once(client, id, j);
    }
    let emails = check_emails(&upstream);
    check_attachments(&upstream, &emails, &runs);
    check_snapshots(&upstream);

    // The faults happened, and the steps absorbed them by retrying.
    let stats = upstream.get("/_upstream/stats");
    let by_fault = stats["by_fault"].as_object().cloned().unwrap_or_default();
    assert!(!by_fault.is_empty(), "the upstream injected faults: {stats}");
    let retried: Vec<(String, String, i64)> =
        journals.iter().flat_map(|(c, (_, j))| retries(j).into_iter().map(move |(s, a)| (c.clone(), s, a))).collect();
    let causes = failure_causes(journals.values().map(|(_, j)| j));
    assert!(!retried.is_empty(), "some report retried a step attempt (faults: {by_fault:?})");
    // With no host dying, a send is repeated only after the mail API lost
    // its answer (mail-504), and then exactly once.
    let listed = upstream.get("/_upstream/emails");
    let repeated: BTreeMap<String, u64> = listed["duplicates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| (d["client"].as_str().unwrap_or_default().to_owned(), d["count"].as_u64().unwrap_or_default()))
        .collect();
    let lost: BTreeMap<String, u64> =
        emails.iter().filter(|(_, e)| e["answer_lost"] == true).map(|(c, _)| (c.clone(), 1)).collect();
    assert_eq!(repeated, lost, "repeated sends (left) are the retries of the sends whose answer was lost (right)");
    let duplicates = repeated.len();
    eprintln!(
        "week of {CLIENTS} reports in {week_took:?} (test {:?}); faults {by_fault:?}; {} retried attempts; \
         failed attempts by cause {causes:?}; {duplicates} keys sent more than once",
        began.elapsed(),
        retried.len()
    );
}

#[test]
fn a_week_survives_kill_9_at_three_points() {
    let began = Instant::now();
    let upstream = Upstream::start(&["--faults", "default", "--seed", "7"]);
    let sb = Sandbox::new();
    let mut d = Daemon::start(&sb, &[], &[]);
    deploy(&d, &upstream);
    start_week(&d, &upstream);
    let mut killed: Vec<Daemon> = Vec::new();
    let mut points: Vec<String> = Vec::new();
    let limit = Duration::from_secs(180);

    // Kills the daemon (SIGKILL), checks the week was not over, and starts
    // a new one on the same store.
    let mut kill_and_restart = |d: &mut Daemon, at: &str| {
        let runs = reports(d);
        d.kill();
        let done = completed(&runs);
        points.push(format!("{at}: {done} reports completed, {} emails", upstream.get("/_upstream/stats")["emails"]));
        assert!(done < CLIENTS as usize, "killed at {at}, the week was over already ({done} reports done)");
        let next = Daemon::start(&sb, &[], &[]);
        killed.push(std::mem::replace(d, next));
    };

    // 1. Mid-pull: 40 step attempts into the week.
    poll_until("40 step attempts", limit, Duration::from_millis(100), || {
        let n = metric(&d, "ferry_step_runs_total");
        if n >= 40 { Ok(()) } else { Err(format!("{n} step attempts")) }
    });
    kill_and_restart(&mut d, "40 step attempts");

    // 2. Mid-mail: 20 reports emailed.
    poll_until("20 emails accepted", limit, Duration::from_millis(100), || {
        let n = upstream.get("/_upstream/stats")["emails"].as_u64().unwrap_or_default();
        if n >= 20 { Ok(()) } else { Err(format!("{n} emails")) }
    });
    kill_and_restart(&mut d, "20 emails");

    // 3. Near the end: 45 reports completed.
    wait_reports(&d, "45 reports completed", limit, |runs| completed(runs) >= 45);
    kill_and_restart(&mut d, "45 reports completed");

    let hosts: Vec<&Daemon> = killed.iter().chain([&d]).collect();
    let runs = wait_week(&d, &hosts, &upstream, limit);
    let runs = check_reports(&runs);
    let journals = journals(&d, &runs);
    for (client, (id, j)) in &journals {
        check_steps_once(client, id, j);
    }
    let emails = check_emails(&upstream);
    check_attachments(&upstream, &emails, &runs);
    check_snapshots(&upstream);
    check_no_pull_repeated(&upstream, &journals);
    // The kills hit reports in flight: they were claimed again.
    let resumed = runs.values().filter(|r| r["lease_epoch"].as_i64().unwrap_or_default() > 1).count();
    assert!(resumed > 0, "no report was claimed twice: the kills hit no report in flight");
    let duplicates = upstream.get("/_upstream/emails")["duplicates"].clone();
    eprintln!(
        "kill -9 at {points:?}; {resumed} reports were claimed more than once; duplicate sends {duplicates}; took {:?}",
        began.elapsed()
    );
}

/// Starts a `weekly-report` run of client `n` directly; returns its id.
fn start_report(d: &Daemon, upstream: &Upstream, n: u32, key: &str) -> String {
    let input = json!({
        "client": ferry::upstream::client_id(n),
        "name": ferry::upstream::client_name(n),
        "email": ferry::upstream::client_email(n),
        "week": WEEK,
        "base_url": upstream.url,
    });
    let body = json!({ "workflow": "weekly-report", "input": input, "idempotency_key": key }).to_string();
    let (status, resp) = d.request("POST", "/v1/runs", Some(body.into_bytes()), None);
    assert_eq!(status, 201, "start the report of c{n:02}: {resp}");
    resp["run"]["id"].as_str().unwrap_or_default().to_owned()
}

/// The output (as journaled, byte for byte) of the successful attempt of
/// step `name`.
fn step_output<'a>(journal: &'a [Value], name: &str) -> &'a str {
    let ok = ok_steps(journal);
    let attempts = ok.get(name).unwrap_or_else(|| panic!("no successful {name} in {journal:?}"));
    attempts[0]["response"].as_str().unwrap_or_default()
}

#[test]
fn transforms_are_deterministic_when_rows_come_shuffled() {
    let upstream = Upstream::start(&["--faults", "none"]);
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    deploy(&d, &upstream);
    let a = start_report(&d, &upstream, 5, "shuffle-a");
    let b = start_report(&d, &upstream, 5, "shuffle-b");
    let (run_a, run_b) = (d.wait(&a), d.wait(&b));
    assert_eq!(run_a["status"], "completed", "{run_a}");
    assert_eq!(run_b["status"], "completed", "{run_b}");
    let (_, ja) = journal(&d, &a);
    let (_, jb) = journal(&d, &b);

    for name in ["transform-ads", "transform-web", "transform-crm"] {
        let (oa, ob) = (step_output(&ja, name), step_output(&jb, name));
        assert_eq!(oa, ob, "{name} gave the two runs different outputs");
        let out: Value = serde_json::from_str(oa).unwrap_or_default();
        assert!(out["digest"].as_str().is_some_and(|d| !d.is_empty()), "{name} has a digest: {out}");
        let hashes = out["row_hashes"].as_array().map(Vec::len).unwrap_or(0);
        assert!(hashes >= 25, "{name} has a hash per row: {hashes} in {out}");
    }
    // The shuffled sources: same rows, in another order.
    let mut reordered = Vec::new();
    for name in ["pull-ga4", "pull-search-console"] {
        let rows = |j: &[Value]| -> Vec<Value> {
            let out: Value = serde_json::from_str(step_output(j, name)).unwrap_or_default();
            out["rows"].as_array().cloned().unwrap_or_default()
        };
        let (ra, rb) = (rows(&ja), rows(&jb));
        let sorted = |rows: &[Value]| -> Vec<String> {
            let mut s: Vec<String> = rows.iter().map(Value::to_string).collect();
            s.sort();
            s
        };
        assert!(!ra.is_empty(), "{name} pulled rows");
        assert_eq!(sorted(&ra), sorted(&rb), "{name} pulled the same rows in both runs");
        if ra != rb {
            reordered.push(name);
        }
    }
    assert!(!reordered.is_empty(), "GA4 or Search Console sent the rows in another order to the second run");
    // One email: the second report's send was a duplicate of the first's.
    let (oa, ob) = (json_field(&run_a, "output"), json_field(&run_b, "output"));
    assert_eq!(oa["duplicate"], false, "{oa}");
    assert_eq!(ob["duplicate"], true, "{ob}");
    assert_eq!(oa["message_id"], ob["message_id"]);
    assert_eq!(oa["pdf"], ob["pdf"], "the same PDF, byte for byte");
    eprintln!("rows came in another order from {reordered:?}; the tables and the PDF were identical");
}

#[test]
fn a_completed_report_replays_identically() {
    let upstream = Upstream::start(&["--faults", "default", "--seed", "7"]);
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    deploy(&d, &upstream);
    // A few reports; the one with the most step attempts (retries under
    // the faults) is replayed.
    let ids: Vec<String> = (1..=6).map(|n| start_report(&d, &upstream, n, &format!("replay-{n}"))).collect();
    let mut best: Option<(usize, String, Vec<Value>)> = None;
    for id in &ids {
        let run = d.wait(id);
        assert_eq!(run["status"], "completed", "{run}");
        let (_, j) = journal(&d, id);
        let attempts = step_attempts(&j).count();
        if best.as_ref().is_none_or(|(n, _, _)| attempts > *n) {
            best = Some((attempts, id.clone(), j));
        }
    }
    let (attempts, id, recorded) = best.expect("a report");
    let requests = upstream.get("/_upstream/stats")["requests"].clone();
    let cache = root().join("target").join("e2e-cache");
    let cache = cache.to_str().unwrap_or_default();

    // Against the daemon: the recording comes over its API.
    let out = d.ferry(&["replay", &id, "--json", "--cache-dir", cache]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_eq!(report["identical"], true, "{stdout}");
    let lines = report["report"]["lines"].as_array().cloned().unwrap_or_default();
    assert_eq!(lines.len(), recorded.len(), "every journal entry is accounted for: {stdout}");
    let not_matched: Vec<&Value> = lines.iter().filter(|l| l["verdict"] != "matched").collect();
    assert!(not_matched.is_empty(), "{not_matched:?}");
    assert_eq!(upstream.get("/_upstream/stats")["requests"], requests, "replay sent no request to the upstream");

    // From a file, with no daemon and no upstream to reach.
    let file = sb.dir.path().join("report.json");
    let file = file.to_str().unwrap_or_default();
    let out = sb.ferry(&["export", &id, "--with-components", "-o", file]);
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    assert!(d.terminate().success(), "the daemon stopped cleanly");
    drop(upstream);
    let elsewhere = Sandbox::new();
    let out = elsewhere.ferry(&["replay", "--from-file", file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("result: identical"), "{stdout}");
    eprintln!("replayed {id} ({attempts} step attempts, {} journal entries) identically", recorded.len());
}

/// The Friday tick after a manual start of the same week (or any second
/// batch) starts no second report: each client-week is one run, found by
/// its idempotency key, and both batches name the same runs.
#[test]
fn a_second_batch_for_the_same_week_starts_no_report_twice() {
    let upstream = Upstream::start(&["--faults", "none", "--clients", "3"]);
    let sb = Sandbox::new();
    let d = Daemon::start(&sb, &[], &[]);
    deploy(&d, &upstream);
    let first = start_week(&d, &upstream);
    // As the cron tick would: no key of its own, the same week.
    let second = d.start_run("weekly-batch", json!({ "base_url": upstream.url, "week": WEEK }));
    assert_ne!(first, second, "two batch runs");
    let (a, b) = (d.wait(&first), d.wait(&second));
    assert_eq!((a["status"].as_str(), b["status"].as_str()), (Some("completed"), Some("completed")), "{a}\n{b}");
    let started = |run: &Value| -> Vec<(String, String)> {
        let out = json_field(run, "output");
        let mut runs: Vec<(String, String)> = out["runs"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|x| {
                        (x["client"].as_str().unwrap_or("").to_owned(), x["run"].as_str().unwrap_or("").to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        runs
    };
    assert_eq!(started(&a).len(), 3, "{a}");
    assert_eq!(started(&a), started(&b), "both batches name the same report runs");
    let all = wait_reports(&d, "the three reports", Duration::from_secs(120), |runs| completed(runs) >= 3);
    assert_eq!(
        all.len(),
        3,
        "one report per client, not one per batch: {:?}",
        all.iter().map(id_of).collect::<Vec<_>>()
    );
    let emails = upstream.get("/_upstream/emails");
    let mut clients: Vec<&str> = emails["emails"]
        .as_array()
        .map(|e| e.iter().filter_map(|m| m["client"].as_str()).collect())
        .unwrap_or_default();
    clients.sort_unstable();
    assert_eq!(clients, ["c01", "c02", "c03"], "one email per client: {emails}");
}
