//! Many hosts: several `ferry serve` processes on one Postgres schema share
//! the work and behave like one host. A killed host's runs are taken over,
//! a paused host's stale writes are fenced off, dropped connections are
//! survived, and cron ticks fire once across hosts.
//!
//! Each test needs `FERRY_TEST_POSTGRES` (`.ci/run` sets it) and works in a
//! schema of its own, dropped at the end (see `support::PgSchema`).
//!
//! What "exactly once" means here. Every write a host makes for a run is
//! fenced by its lease, so a run's journal holds exactly one successful
//! attempt per step call, whoever executed it, and the run's output is
//! built from those. A step's effect outside the journal (its HTTP request)
//! happens once, except for a step that was in flight on a host that died
//! or lost its lease: its attempt was never journaled, so the new owner
//! runs it again (ARCHITECTURE.md: "a step that was in flight when the
//! process died is retried as a new attempt"). Such a step may reach the
//! upstream twice; that is what idempotency keys are for. The tests check
//! precisely that: every step counted once at the server, except the one
//! step per taken-over run that was in flight when its host went away.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::pipeline;
use crate::support::{Daemon, PgSchema, TestServer, Upstream, poll_until, wait_for};

/// Steps per run of `wf-chain`.
const STEPS: usize = 4;

/// `n` daemons on the schema, host `i` labelled `h{i}` (its connections'
/// `application_name` is `pg.app("h{i}")`).
fn start_hosts(pg: &PgSchema, n: usize, extra: &[&str], env: &[(&str, &str)]) -> Vec<Daemon> {
    (0..n).map(|i| Daemon::start_on(&pg.url(&format!("h{i}")), extra, env)).collect()
}

/// Deploys `count` (allowed to reach the server) and `wf-chain` as `chain`.
fn deploy_chain(d: &Daemon, server: &TestServer) {
    d.deploy_api("count", "count", json!({ "allow_hosts": [server.addr.to_string()] }), None);
    d.deploy_api("wf-chain", "chain", json!({}), None);
}

/// The run and its journal.
fn show(d: &Daemon, id: &str) -> (Value, Vec<Value>) {
    let shown = d.get(&format!("/v1/runs/{id}"));
    (shown["run"].clone(), shown["journal"].as_array().cloned().unwrap_or_default())
}

/// The process id in a lease owner (`serve-ADDRESS-PID`).
fn owner_pid(run: &Value) -> Option<u32> {
    run["lease_owner"].as_str()?.rsplit('-').next()?.parse().ok()
}

/// The successful step attempts of a journal: `(name, attempt, response)`.
fn ok_steps(journal: &[Value]) -> Vec<(String, i64, Value)> {
    journal
        .iter()
        .filter(|e| e["kind"] == "step" && e["child"] == 0 && e["status"] == "ok")
        .map(|e| {
            let response = e["response"].as_str().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
            (e["name"].as_str().unwrap_or_default().to_owned(), e["attempt"].as_i64().unwrap_or(-1), response)
        })
        .collect()
}

/// Running runs by the pid of their lease owner.
fn running_by_pid(d: &Daemon) -> HashMap<u32, Vec<String>> {
    let listed = d.get("/v1/runs?status=running&limit=1000");
    let mut by: HashMap<u32, Vec<String>> = HashMap::new();
    for run in listed["runs"].as_array().into_iter().flatten() {
        if let Some(pid) = owner_pid(run) {
            by.entry(pid).or_default().push(run["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    by
}

/// Waits (with a deadline) until every run is final, asking `d`; on time
/// out the failure shows the runs still going and the tail of every host's
/// log.
fn wait_all(d: &Daemon, hosts: &[&Daemon], ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open: Vec<Value> = ids
            .iter()
            .map(|id| show(d, id).0)
            .filter(|r| !["completed", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or_default()))
            .collect();
        if open.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = hosts
                .iter()
                .map(|h| {
                    let log = h.log();
                    let lines: Vec<&str> = log.lines().collect();
                    format!("--- host pid {}:\n{}", h.pid(), lines[lines.len().saturating_sub(40)..].join("\n"))
                })
                .collect();
            panic!("{} runs did not finish: {open:?}\n{}", open.len(), logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks a finished `chain` run against the test server: completed, one
/// successful attempt per step in order, the output built from them, and
/// every step sent to the server once, except those in `may_repeat` (in
/// flight when their host went away), sent once or twice. Returns how many
/// steps were sent twice.
fn check_chain_run(d: &Daemon, server: &TestServer, key: &str, id: &str, may_repeat: &[usize]) -> usize {
    let (run, journal) = show(d, id);
    assert_eq!(run["status"], "completed", "run {key} ({id}): {run}");
    let ok = ok_steps(&journal);
    let names: Vec<&str> = ok.iter().map(|(n, _, _)| n.as_str()).collect();
    let expected: Vec<String> = (0..STEPS).map(|i| format!("count-{i}")).collect();
    assert_eq!(names, expected, "run {key} ({id}): exactly one successful attempt per step, in order");
    let output: Value = run["output"].as_str().and_then(|o| serde_json::from_str(o).ok()).unwrap_or_default();
    let results = output["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), STEPS, "run {key}: {output}");
    let mut repeated = 0;
    for (i, (_, _, response)) in ok.iter().enumerate() {
        assert_eq!(&results[i], response, "run {key}: the output is the journaled answer of step {i}");
        assert_eq!(response["tag"], format!("step-{i}"), "run {key}: {response}");
        // Requests that reached the server, and those it answered (a
        // request of a killed host may have been dropped unanswered).
        let sent = server.requests_to(&format!("/r/{key}/step-{i}/count")).len();
        let answered = server.count(&format!("{key}/step-{i}"));
        if may_repeat.contains(&i) {
            assert!((1..=2).contains(&sent), "run {key}: step {i} (in flight when its host went away) sent {sent}×");
            repeated += usize::from(sent == 2);
        } else {
            assert_eq!(sent, 1, "run {key} ({id}): step {i} reached the server {sent}× (run: {run})");
        }
        assert!((1..=sent as u64).contains(&answered), "run {key}: step {i} answered {answered}× for {sent} requests");
        // The journaled attempt's answer is one the server gave.
        let seen = response["count"].as_u64().unwrap_or_default();
        assert!((1..=answered).contains(&seen), "run {key}: step {i} answered count {seen} of {answered}");
    }
    repeated
}

#[test]
fn three_hosts_share_a_batch_and_finish_the_runs_of_a_killed_one() {
    let Some(pg) = PgSchema::create("three_hosts_share_a_batch_and_finish_the_runs_of_a_killed_one") else {
        return;
    };
    const RUNS: usize = 30;
    let server = TestServer::start();
    // At most 8 runs per host: the 30 runs spread over the three.
    let mut hosts = start_hosts(&pg, 3, &["--concurrency", "8"], &[]);
    deploy_chain(&hosts[0], &server);

    // After 40 of the 120 step requests the server holds every request:
    // the batch freezes mid-way with steps in flight on every busy host.
    server.pause_after(40);
    let runs: Vec<(String, String)> = (0..RUNS)
        .map(|i| {
            let key = format!("r{i}");
            let input = json!({"url": server.run_url(&key), "steps": STEPS});
            let id = hosts[i % hosts.len()].start_run("chain", input);
            (key, id)
        })
        .collect();
    wait_for("the batch to reach the pause with steps in flight", Duration::from_secs(120), || server.paused() >= 3);

    // Kill the host holding the most runs.
    let held = running_by_pid(&hosts[0]);
    let (victim_pid, _) = held.iter().max_by_key(|(_, ids)| ids.len()).expect("some host holds runs");
    let victim = hosts.iter().position(|h| h.pid() == *victim_pid).expect("the lease owner is one of the hosts");
    let mut dead = hosts.remove(victim);
    let killed_at = Instant::now();
    dead.kill();
    let live = &hosts[0];
    // Right after the kill (before its leases can expire): the runs it held.
    let dead_held: Vec<String> = running_by_pid(live).remove(victim_pid).unwrap_or_default();
    assert!(
        killed_at.elapsed() < Duration::from_millis(1500),
        "listing the dead host's runs took {:?}: its leases may have moved already",
        killed_at.elapsed()
    );
    assert!(!dead_held.is_empty(), "the killed host held runs");
    // While the server holds every step request no journal changes: the
    // step each held run was in when the host died is the first one its
    // journal has no successful attempt for.
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    let mut epoch_at_kill: HashMap<String, i64> = HashMap::new();
    for id in &dead_held {
        let (run, journal) = show(live, id);
        in_flight.insert(id.clone(), ok_steps(&journal).len());
        epoch_at_kill.insert(id.clone(), run["lease_epoch"].as_i64().unwrap_or_default());
    }
    let done_at_kill = runs.iter().filter(|(_, id)| show(live, id).0["status"] == "completed").count();
    assert!(done_at_kill < RUNS, "the host died mid-batch");
    server.unpause();

    let ids: Vec<&str> = runs.iter().map(|(_, id)| id.as_str()).collect();
    wait_all(live, &hosts.iter().chain([&dead]).collect::<Vec<_>>(), &ids);
    let mut repeated = 0;
    for (key, id) in &runs {
        let run = show(live, id).0;
        assert_eq!(run["status"], "completed", "run {key}: {run}");
        let epoch = run["lease_epoch"].as_i64().unwrap_or_default();
        let may_repeat: Vec<usize> = match in_flight.get(id) {
            Some(&step) => {
                // Taken over: claimed again after the dead host's claim.
                assert!(
                    epoch > epoch_at_kill[id],
                    "run {key} held by the dead host was finished by another (epoch {epoch}, {} at the kill)",
                    epoch_at_kill[id]
                );
                vec![step]
            }
            None if epoch == 1 => Vec::new(),
            None => {
                // A lease that expired under load on a live host: legal,
                // and then its step in flight may run again too.
                eprintln!("note: run {key} was claimed {epoch} times without its host dying (a slow heartbeat?)");
                (0..STEPS).collect()
            }
        };
        repeated += check_chain_run(live, &server, key, id, &may_repeat);
    }
    assert_eq!(server.run_requests(), RUNS * STEPS + repeated, "no step request beyond one per step and the repeats");
    eprintln!(
        "killed host {victim} holding {} runs; {done_at_kill} runs were done; {repeated} in-flight steps reached the server twice",
        dead_held.len()
    );
}

#[test]
fn a_paused_host_cannot_write_to_a_run_another_host_took_over() {
    let Some(pg) = PgSchema::create("a_paused_host_cannot_write_to_a_run_another_host_took_over") else {
        return;
    };
    let server = TestServer::start();
    let hosts = start_hosts(&pg, 2, &[], &[("FERRY_LOG", "warn")]);
    deploy_chain(&hosts[0], &server);
    server.hold("step-1");
    let id = hosts[0].start_run("chain", json!({"url": server.url(""), "steps": 3}));
    wait_for("step 1 in flight", Duration::from_secs(60), || !server.requests_to("/count/step-1").is_empty());

    // Pause whichever host executes the run, between its writes: a host
    // stopped inside a transaction would hold the run's row lock.
    let (run, _) = show(&hosts[0], &id);
    let stale_pid = owner_pid(&run).expect("the run is leased");
    let epoch = run["lease_epoch"].as_i64().unwrap_or_default();
    let stale = hosts.iter().position(|h| h.pid() == stale_pid).expect("one of the hosts holds the run");
    let (paused, other) = (&hosts[stale], &hosts[1 - stale]);
    let app = pg.app(&format!("h{stale}"));
    let open_transactions = format!(
        "SELECT pid::text FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{app}' \
         AND (state <> 'idle' OR backend_xid IS NOT NULL)"
    );
    let mut stopped = false;
    for _ in 0..20 {
        paused.signal("STOP");
        if pg.query(&open_transactions).is_empty() {
            stopped = true;
            break;
        }
        paused.signal("CONT");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stopped, "could not pause the host outside a transaction");
    // The held request now gets its answer, which the paused host reads
    // only once it runs again.
    server.release();
    wait_for("the paused host's request to be answered", Duration::from_secs(10), || server.count("step-1") == 1);

    // Its lease expires; the other host takes the run over and finishes it.
    let done = other.wait(&id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["lease_epoch"].as_i64(), Some(epoch + 1), "taken over once: {done}");
    let (_, journal) = show(other, &id);
    let ok = ok_steps(&journal);
    assert_eq!(ok.len(), 3, "{journal:?}");
    assert_eq!(ok[1].0, "count-1");
    assert_eq!(ok[1].2["count"], 2, "step 1's journaled attempt is the second host's request");
    assert_eq!(server.count("step-0"), 1, "step 0 was journaled before the pause and not run again");
    assert_eq!(server.count("step-1"), 2);
    assert_eq!(server.count("step-2"), 1);

    // The paused host runs again: its attempt of step 1 finishes, and its
    // write is refused; it logs the discard and writes nothing.
    paused.signal("CONT");
    wait_for("the stale host to log the discarded attempt", Duration::from_secs(30), || {
        paused.log().lines().any(|l| l.contains("WARN") && l.contains(&id) && l.contains("lost"))
    });
    let after = other.get(&format!("/v1/runs/{id}"));
    assert_eq!(after["journal"].as_array(), Some(&journal), "the stale host wrote nothing");
    assert_eq!(after["run"], done, "the run is as the second host finished it");
    assert_eq!(server.count("step-2"), 1, "the stale host went no further");
    let (status, _) = paused.request("GET", "/healthz", None, None);
    assert_eq!(status, 200, "the resumed host carries on");
    eprintln!(
        "the stale host said: {}",
        paused.log().lines().filter(|l| l.contains(&id)).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn hosts_reconnect_after_their_database_connections_are_killed() {
    let Some(pg) = PgSchema::create("hosts_reconnect_after_their_database_connections_are_killed") else {
        return;
    };
    const RUNS: usize = 16;
    let server = TestServer::start();
    let hosts = start_hosts(&pg, 2, &["--concurrency", "10"], &[("FERRY_LOG", "info")]);
    deploy_chain(&hosts[0], &server);
    // Only this test's connections: every host's `application_name`
    // starts with the schema's name, which is unique to this test.
    let terminate = format!(
        "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND starts_with(application_name, '{}_')",
        pg.name
    );
    server.pause_after(16);
    let runs: Vec<(String, String)> = (0..RUNS)
        .map(|i| {
            let key = format!("r{i}");
            let id = hosts[i % 2].start_run("chain", json!({"url": server.run_url(&key), "steps": STEPS}));
            (key, id)
        })
        .collect();
    wait_for("steps in flight at the pause", Duration::from_secs(120), || server.paused() >= 2);
    let killed = pg.query(&terminate);
    assert!(killed.len() >= 2, "every host had a connection: {killed:?}");
    server.unpause();
    // Once more while steps flow, with nothing held.
    wait_for("more steps done", Duration::from_secs(120), || server.run_requests() >= 40);
    let killed_again = pg.query(&terminate);
    assert!(!killed_again.is_empty(), "the hosts were connected again");

    let ids: Vec<&str> = runs.iter().map(|(_, id)| id.as_str()).collect();
    wait_all(&hosts[0], &hosts.iter().collect::<Vec<_>>(), &ids);
    let mut repeated = 0;
    for (key, id) in &runs {
        let run = show(&hosts[0], id).0;
        assert_eq!(run["status"], "completed", "run {key}: {run}");
        // A write whose connection died under it may have been lost: the
        // run is then taken up again and its step in flight runs again.
        let may_repeat: Vec<usize> = if run["lease_epoch"] == 1 { Vec::new() } else { (0..STEPS).collect() };
        repeated += check_chain_run(&hosts[0], &server, key, id, &may_repeat);
    }
    for (i, h) in hosts.iter().enumerate() {
        let (status, body) = h.request("GET", "/healthz", None, None);
        assert_eq!(status, 200, "host {i}: {body}");
        assert!(h.log().contains("reconnected"), "host {i} says it reconnected:\n{}", h.log());
    }
    eprintln!(
        "terminated {} then {} connections; {repeated} steps reached the server twice",
        killed.len(),
        killed_again.len()
    );
}

#[test]
fn a_cron_tick_fires_once_across_hosts() {
    let Some(pg) = PgSchema::create("a_cron_tick_fires_once_across_hosts") else {
        return;
    };
    let hosts = start_hosts(&pg, 2, &[], &[("FERRY_LOG", "info")]);
    hosts[0].deploy_api(
        "wf-sleep",
        "tick",
        json!({}),
        Some(json!({"cron": "* * * * * *", "timezone": "UTC", "input": {"ms": 1}})),
    );
    let runs = || hosts[1].get("/v1/runs?workflow=tick&limit=1000")["runs"].as_array().cloned().unwrap_or_default();
    wait_for("six ticks", Duration::from_secs(60), || runs().len() >= 6);
    let (status, body) = hosts[1].request("DELETE", "/v1/schedules/tick", None, None);
    assert_eq!(status, 200, "{body}");
    let fired = |h: &Daemon| h.log().lines().filter(|l| l.contains("schedule fired")).count();
    // Every run was made by exactly one host's firing (the log line comes
    // right after the fire's commit).
    let all = runs();
    wait_for("each host to log its fires", Duration::from_secs(10), || {
        hosts.iter().map(fired).sum::<usize>() == all.len()
    });
    assert_eq!(runs().len(), all.len(), "no tick fired after the schedule was deleted");

    let mut ticks: BTreeMap<i64, usize> = BTreeMap::new();
    for run in &all {
        let key = run["idempotency_key"].as_str().unwrap_or_default();
        let tick: i64 = key.strip_prefix("schedule:tick:").and_then(|t| t.parse().ok()).unwrap_or_else(|| {
            panic!("a scheduled run has the tick as its idempotency key: {run}");
        });
        *ticks.entry(tick).or_default() += 1;
    }
    let twice: Vec<_> = ticks.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ticks fired more than once: {twice:?}");
    let (first, last) = (ticks.keys().next().copied().unwrap_or_default(), ticks.keys().last().copied().unwrap_or(0));
    assert!(ticks.keys().all(|t| t % 1_000_000 == 0), "ticks on whole seconds: {ticks:?}");
    let elapsed = usize::try_from((last - first) / 1_000_000 + 1).unwrap_or_default();
    // A tick is missed only if both hosts' cron loops stalled for a second.
    assert!(ticks.len() + 1 >= elapsed, "{} runs for {elapsed} ticks: {ticks:?}", ticks.len());
    let late = all.iter().filter(|r| r["origin"].as_str().unwrap_or_default().contains("late")).count();
    assert_eq!(late, 0, "no tick was late: {all:?}");
    eprintln!(
        "{} ticks over {elapsed} s, fired by host 0: {}, host 1: {}",
        ticks.len(),
        fired(&hosts[0]),
        fired(&hosts[1])
    );
}

/// Running report runs by the pid of their lease owner (and their epochs).
fn running_reports_by_pid(d: &Daemon) -> HashMap<u32, Vec<(String, i64)>> {
    let listed = d.get("/v1/runs?workflow=weekly-report&status=running&limit=1000");
    let mut by: HashMap<u32, Vec<(String, i64)>> = HashMap::new();
    for run in listed["runs"].as_array().into_iter().flatten() {
        if let Some(pid) = owner_pid(run) {
            let id = run["id"].as_str().unwrap_or_default().to_owned();
            by.entry(pid).or_default().push((id, run["lease_epoch"].as_i64().unwrap_or_default()));
        }
    }
    by
}

#[test]
fn three_hosts_run_the_week_and_a_killed_host_loses_nothing() {
    let Some(pg) = PgSchema::create("three_hosts_run_the_week_and_a_killed_host_loses_nothing") else {
        return;
    };
    let began = Instant::now();
    let upstream = Upstream::start(&["--faults", "default", "--seed", "7"]);
    // At most 8 reports per host: the 60 spread over the three.
    let mut hosts = start_hosts(&pg, 3, &["--concurrency", "8"], &[]);
    pipeline::deploy(&hosts[0], &upstream);
    let batch = pipeline::start_week(&hosts[0], &upstream);

    // Once 15 reports are done, kill the host holding the most running
    // reports (some host holds some while the week goes on).
    let (victim_pid, done_before) = poll_until(
        "15 reports completed and a host holding running reports",
        Duration::from_secs(180),
        Duration::from_millis(200),
        || {
            let done = pipeline::completed(&pipeline::reports(&hosts[0]));
            let held = running_reports_by_pid(&hosts[0]);
            match held.iter().max_by_key(|(_, runs)| runs.len()) {
                Some((pid, _)) if done >= 15 => Ok((*pid, done)),
                _ => Err(format!("{done} reports completed; running reports by host: {held:?}")),
            }
        },
    );
    let victim = hosts.iter().position(|h| h.pid() == victim_pid).expect("the lease owner is one of the hosts");
    let mut dead = hosts.remove(victim);
    let killed_at = Instant::now();
    dead.kill();
    let live = &hosts[0];
    // Right after the kill (before its leases can expire): the runs it held.
    let dead_held: Vec<(String, i64)> = running_reports_by_pid(live).remove(&victim_pid).unwrap_or_default();
    assert!(
        killed_at.elapsed() < Duration::from_millis(1500),
        "listing the dead host's runs took {:?}: its leases may have moved already",
        killed_at.elapsed()
    );
    assert!(!dead_held.is_empty(), "the killed host held running reports");
    let done_at_kill = pipeline::completed(&pipeline::reports(live));
    assert!(done_at_kill < pipeline::CLIENTS as usize, "the host died mid-week ({done_at_kill} reports done)");

    let all: Vec<&Daemon> = hosts.iter().chain([&dead]).collect();
    let runs = pipeline::wait_week(live, &all, &upstream, Duration::from_secs(240));
    let (batch_run, _) = pipeline::journal(live, &batch);
    assert_eq!(batch_run["status"], "completed", "the batch: {batch_run}");
    let runs = pipeline::check_reports(&runs);
    let journals = pipeline::journals(live, &runs);
    for (client, (id, j)) in &journals {
        pipeline::check_steps_once(client, id, j);
    }
    // The runs the dead host held were claimed again and finished by the
    // others.
    for (id, epoch) in &dead_held {
        let (run, _) = pipeline::journal(live, id);
        let client = pipeline::client_of(&run);
        assert_eq!(run["status"], "completed", "{client} ({id}), held by the dead host: {run}");
        let now = run["lease_epoch"].as_i64().unwrap_or_default();
        assert!(
            now > *epoch,
            "{client} ({id}) held by the dead host was claimed again (epoch {now}, {epoch} at the kill)"
        );
        assert_ne!(owner_pid(&run), Some(victim_pid), "{client} ({id}) was finished by a live host: {run}");
    }
    let emails = pipeline::check_emails(&upstream);
    pipeline::check_attachments(&upstream, &emails, &runs);
    pipeline::check_snapshots(&upstream);
    pipeline::check_no_pull_repeated(&upstream, &journals);
    let claimed_again = runs.values().filter(|r| r["lease_epoch"].as_i64().unwrap_or_default() > 1).count();
    eprintln!(
        "killed host {victim} (pid {victim_pid}) at {done_before} reports done holding {} running reports; \
         the week finished in {:?}; {claimed_again} reports were claimed more than once",
        dead_held.len(),
        began.elapsed()
    );
}
