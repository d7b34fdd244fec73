//! The store contract suite: what every [`Store`] backend must do, written
//! once against the trait and run on each backend.
//!
//! Each behaviour is one `async fn` taking a fresh, empty store. The
//! [`contract_tests!`] macro turns the whole list into `#[tokio::test]`s for
//! one backend, given an async factory returning `Option<Harness>` (`None`
//! skips, e.g. Postgres without `FERRY_TEST_POSTGRES`):
//!
//! ```ignore
//! contract_tests!(sqlite, crate::store::sqlite::test_harness);
//! contract_tests!(postgres, crate::store::postgres::test_harness);
//! ```
//!
//! Times are injected (a fixed `T0` plus offsets), never read from the
//! clock, and no case sleeps.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;

use super::{Component, Created, Error, Lease, Outcome, Park, RunFilter, Store};
use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, EntryKey, EntryKind, EntryStatus, Flow, Limit, Micros, NewRun,
    Run, RunError, RunErrorKind, RunId, RunStatus, Schedule, World,
};

/// A fresh store for one case, with whatever keeps it alive (a temporary
/// folder, a scratch database).
pub(crate) struct Harness {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send>,
}

impl Harness {
    pub(crate) fn new(store: Arc<dyn Store>, keep: impl Any + Send) -> Self {
        Self { store, _keep: Box::new(keep) }
    }
}

/// Runs every contract case against one backend.
macro_rules! contract_tests {
    ($backend:ident, $harness:path) => {
        mod $backend {
            contract_tests!(@cases $harness;
                component_put_is_idempotent,
                blob_is_stored_once_by_hash,
                rate_takes_hold_a_sliding_window_per_key,
                run_is_created_queued_and_read_back,
                run_needs_a_stored_component,
                idempotency_key_returns_the_existing_run,
                claim_bumps_the_epoch_and_starts_the_run,
                claim_of_a_live_lease_conflicts,
                claim_of_a_final_or_unknown_run_fails,
                heartbeat_extends_the_lease,
                expired_lease_is_taken_over_and_the_old_one_is_fenced,
                journal_comes_in_key_order,
                started_appends_land_in_order_and_report_their_failure,
                duplicate_entry_conflicts_and_writes_nothing,
                entry_of_another_run_is_refused,
                finish_records_the_outcome_and_releases_the_lease,
                failed_and_cancelled_outcomes_are_recorded,
                list_runs_filters_and_paginates,
                concurrent_appends_all_land,
                stale_write_fails_alone_in_its_batch,
                parked_run_is_ready_only_once_its_wake_at_has_come,
                claim_by_id_resumes_a_waiting_run_early,
                event_wakes_only_the_runs_waiting_on_it,
                event_sent_while_the_run_executes_is_not_lost,
                claim_ready_takes_queued_runs_and_expired_leases_oldest_first,
                claim_ready_respects_its_limit,
                a_held_run_is_claimed_only_by_id,
                create_and_claim_claims_the_new_run_only_when_it_is_next,
                a_run_created_and_claimed_early_writes_after_its_creation,
                concurrent_claim_ready_calls_get_disjoint_runs,
                park_with_a_stale_lease_is_lost_and_writes_nothing,
                cancel_fences_the_worker,
                cancel_of_a_final_or_unknown_run_fails,
                events_are_filtered_and_ordered,
                next_wake_is_the_earliest_wake_at,
                deploy_makes_versions_and_a_redeploy_of_the_same_is_a_no_op,
                activate_changes_the_active_version,
                deployments_lists_every_version,
                schedules_are_put_listed_and_deleted,
                fire_schedule_fires_a_tick_once,
                concurrency_limit_holds_back_runs_of_a_busy_key,
                waiting_runs_count_against_the_concurrency_limit,
                rate_limit_holds_runs_until_the_period_has_passed,
                queued_runs_go_by_priority_then_age,
                queue_reasons_name_the_limit,
                run_counts_count_runs_by_status,
                version_run_counts_count_runs_per_version_and_status,
                queue_depths_count_queued_runs_per_workflow,
                run_steps_count_step_calls_and_retries,
                runs_with_key_find_runs_by_their_idempotency_key,
                step_stats_aggregate_the_attempts_of_a_window,
            );
        }
    };
    (@cases $harness:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $harness().await else {
                    eprintln!("skipped: backend not configured");
                    return;
                };
                $crate::store::contract::$case(::std::sync::Arc::clone(&harness.store)).await;
            }
        )+
    };
}

contract_tests!(sqlite, crate::store::sqlite::test_harness);
contract_tests!(postgres, crate::store::postgres::test_harness);

/// The two migration folders list the same versions by the same names, so
/// a schema change is made for both backends.
#[test]
fn migrations_mirror_each_other_by_name() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let names = |dialect: &str| -> Vec<String> {
        let dir = std::fs::read_dir(root.join(dialect)).expect("a migrations folder");
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    };
    let sqlite = names("sqlite");
    assert!(sqlite.contains(&"0001_initial.sql".to_owned()));
    assert_eq!(names("postgres"), sqlite, "migrations/postgres must mirror migrations/sqlite");
}

// ---------------------------------------------------------------- fixtures

/// An arbitrary fixed instant (2023-11-14T22:13:20Z).
const T0: Micros = Micros(1_700_000_000_000_000);
const TTL: Duration = Duration::from_secs(30);

fn at(secs: i64) -> Micros {
    Micros(T0.0 + secs * 1_000_000)
}

/// A small fake component; `n` varies its bytes and so its hash.
fn component(n: u8) -> Component {
    let bytes = vec![0, b'a', b's', b'm', n];
    Component { hash: ComponentHash::of(&bytes), world: World::Workflow, bytes, created_at: T0 }
}

/// A run id whose text order follows `ms` (ids made by `RunId::new` in the
/// same millisecond are in random order).
fn run_id(ms: u64) -> RunId {
    let ulid = ulid::Ulid::from_parts(1_700_000_000_000 + ms, u128::from(ms) * 7919);
    format!("run_{ulid}").parse().expect("a valid run id")
}

fn new_run(id: RunId, c: &Component, name: &str, key: Option<&str>) -> NewRun {
    NewRun {
        id,
        kind: World::Workflow,
        component: name.to_owned(),
        component_hash: c.hash.clone(),
        input: r#"{"client":42}"#.to_owned(),
        idempotency_key: key.map(str::to_owned),
        created_at: T0,
        origin: None,
        flow: Default::default(),
        held: false,
    }
}

pub(crate) fn entry(run: RunId, seq: u32, attempt: u32, child: u32) -> Entry {
    let request = format!(r#"{{"seq":{seq},"attempt":{attempt},"child":{child}}}"#);
    Entry {
        run_id: run,
        key: EntryKey { seq, attempt, child },
        kind: if child == 0 { EntryKind::Step } else { EntryKind::Http },
        name: format!("call-{seq}"),
        request_hash: Entry::hash_request(&request),
        request,
        response: Some(r#"{"ok":true}"#.to_owned()),
        status: EntryStatus::Ok,
        error: None,
        started_at: at(1),
        finished_at: at(2),
        fuel: (child == 0).then_some(12_345),
        component: None,
    }
}

/// A queued run of a stored component.
pub(crate) async fn queued(store: &dyn Store, id: RunId) -> Run {
    let c = component(1);
    store.put_component(&c).await.expect("put component");
    match store.create_run(new_run(id, &c, "report", None)).await.expect("create run") {
        Created::New(run) => run,
        Created::Existing(run) => panic!("expected a new run, got existing {}", run.id),
    }
}

/// A queued run created at `created_at`.
async fn queued_at(store: &dyn Store, id: RunId, created_at: Micros) -> Run {
    let c = component(1);
    store.put_component(&c).await.expect("put component");
    let run = NewRun { created_at, ..new_run(id, &c, "report", None) };
    store.create_run(run).await.expect("create run").run().clone()
}

/// A run claimed by `w1` at T0 and parked.
async fn parked(store: &dyn Store, id: RunId, wake_at: Option<Micros>, event: Option<&str>) -> (Run, Lease) {
    let (run, lease) = claimed(store, id).await;
    let park = Park { wake_at, event: event.map(str::to_owned) };
    store.park(&lease, vec![entry(id, 1, 1, 0)], park).await.expect("park");
    (run, lease)
}

async fn ready_ids(store: &dyn Store, owner: &str, now: Micros) -> Vec<RunId> {
    let claimed = store.claim_ready(owner, TTL, now, 100).await.expect("claim_ready");
    claimed.into_iter().map(|(run, _)| run.id).collect()
}

/// A queued run of `name` created at `created_at` with flow control.
async fn flowed(store: &dyn Store, id: RunId, name: &str, created_at: Micros, flow: Flow) -> Run {
    let c = component(1);
    store.put_component(&c).await.expect("put component");
    let run = NewRun { created_at, flow, ..new_run(id, &c, name, None) };
    store.create_run(run).await.expect("create run").run().clone()
}

/// At most `limit` runs of a key in progress.
fn concurrency(key: &str, limit: u32) -> Flow {
    Flow { concurrency: Some((key.to_owned(), limit)), ..Flow::default() }
}

/// At most `limit` runs of a key started per `secs` seconds.
fn rate(key: &str, limit: u32, secs: i64) -> Flow {
    Flow { rate: Some((key.to_owned(), limit, secs * 1_000_000)), ..Flow::default() }
}

fn schedule(name: &str, next_fire_at: Micros) -> Schedule {
    Schedule {
        name: name.to_owned(),
        workflow: "report".into(),
        cron: "0 21 * * FRI".into(),
        timezone: "Europe/Amsterdam".into(),
        input: r#"{"week":"current"}"#.into(),
        next_fire_at,
        last_fired_at: None,
        created_at: T0,
    }
}

/// A run claimed by `w1` at T0.
async fn claimed(store: &dyn Store, id: RunId) -> (Run, Lease) {
    let run = queued(store, id).await;
    let lease = store.claim(&run.id, "w1", TTL, T0).await.expect("claim");
    (run, lease)
}

async fn must_run(store: &dyn Store, id: &RunId) -> Run {
    store.run(id).await.expect("read run").expect("run exists")
}

fn assert_lease_lost<T: std::fmt::Debug>(result: super::Result<T>, run: RunId, held: i64, current: i64) {
    match result {
        Err(Error::LeaseLost { run_id, held: h, current: c }) => {
            assert_eq!((run_id, h, c), (run, held, current));
        }
        other => panic!("expected LeaseLost(held {held}, current {current}), got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: super::Result<T>) {
    assert!(matches!(result, Err(Error::Conflict(_))), "expected Conflict, got {result:?}");
}

fn assert_not_found<T: std::fmt::Debug>(result: super::Result<T>) {
    assert!(matches!(result, Err(Error::NotFound(_))), "expected NotFound, got {result:?}");
}

// ------------------------------------------------------------------ cases

pub(crate) async fn component_put_is_idempotent(store: Arc<dyn Store>) {
    let c = component(1);
    assert!(store.put_component(&c).await.unwrap(), "first put stores");
    assert!(!store.put_component(&c).await.unwrap(), "second put is a no-op");
    assert_eq!(store.component(&c.hash).await.unwrap(), Some(c));
    assert_eq!(store.component(&component(2).hash).await.unwrap(), None);
}

pub(crate) async fn blob_is_stored_once_by_hash(store: Arc<dyn Store>) {
    // Bytes that are not UTF-8 and include a NUL: a blob is bytes, not text.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let hash = hex::encode(sha2::Sha256::digest(&bytes));
    assert!(store.put_blob(&hash, &bytes, Micros(1)).await.unwrap(), "first put stores");
    assert!(!store.put_blob(&hash, &bytes, Micros(2)).await.unwrap(), "second put is a no-op");
    assert_eq!(store.blob(&hash).await.unwrap(), Some(bytes));
    assert_eq!(store.blob(&"0".repeat(64)).await.unwrap(), None);
    assert!(store.put_blob(&"1".repeat(64), b"", Micros(3)).await.unwrap(), "an empty blob is a blob");
    assert_eq!(store.blob(&"1".repeat(64)).await.unwrap(), Some(Vec::new()));
}

pub(crate) async fn rate_takes_hold_a_sliding_window_per_key(store: Arc<dyn Store>) {
    let second = Duration::from_secs(1);
    let t = |ms: i64| Micros(1_000_000_000 + ms * 1_000);
    // Two per second: the third start in the window is refused and told when
    // the first one leaves it.
    assert_eq!(store.take_rate("step:pull-meta", 2, second, t(0)).await.unwrap(), None);
    assert_eq!(store.take_rate("step:pull-meta", 2, second, t(300)).await.unwrap(), None);
    assert_eq!(store.take_rate("step:pull-meta", 2, second, t(400)).await.unwrap(), Some(t(1_000)));
    // Another key has its own window.
    assert_eq!(store.take_rate("step:pull-ga4", 2, second, t(400)).await.unwrap(), None);
    // A refused take records nothing: at 1000 the first start has left.
    assert_eq!(store.take_rate("step:pull-meta", 2, second, t(1_000)).await.unwrap(), None);
    assert_eq!(store.take_rate("step:pull-meta", 2, second, t(1_100)).await.unwrap(), Some(t(1_300)));
    // Concurrent takers never get more than the limit between them.
    let takes = (0..10).map(|_| store.take_rate("step:burst", 3, second, t(5_000)));
    let granted = futures::future::join_all(takes).await.into_iter().filter(|r| matches!(r, Ok(None))).count();
    assert_eq!(granted, 3);
}

pub(crate) async fn run_is_created_queued_and_read_back(store: Arc<dyn Store>) {
    let run = queued(&*store, run_id(1)).await;
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.lease_epoch, 0);
    assert_eq!((run.lease_owner.as_deref(), run.started_at, run.finished_at), (None, None, None));
    assert_eq!(must_run(&*store, &run.id).await, run);
    assert_eq!(store.run(&run_id(2)).await.unwrap(), None);
}

pub(crate) async fn run_needs_a_stored_component(store: Arc<dyn Store>) {
    let missing = component(9);
    assert_not_found(store.create_run(new_run(run_id(1), &missing, "report", None)).await);
    assert_eq!(store.run(&run_id(1)).await.unwrap(), None);
}

pub(crate) async fn idempotency_key_returns_the_existing_run(store: Arc<dyn Store>) {
    let c = component(1);
    store.put_component(&c).await.unwrap();
    let first = store.create_run(new_run(run_id(1), &c, "report", Some("week-7"))).await.unwrap();
    let Created::New(first) = first else { panic!("first create must be new") };

    let again = store.create_run(new_run(run_id(2), &c, "report", Some("week-7"))).await.unwrap();
    assert_eq!(again, Created::Existing(first.clone()));
    assert_eq!(store.run(&run_id(2)).await.unwrap(), None, "nothing was created");

    // The key is per component; no key never deduplicates.
    let other = store.create_run(new_run(run_id(3), &c, "invoice", Some("week-7"))).await.unwrap();
    assert!(matches!(other, Created::New(_)));
    for ms in [4, 5] {
        let created = store.create_run(new_run(run_id(ms), &c, "report", None)).await.unwrap();
        assert!(matches!(created, Created::New(_)));
    }
    // The existing run is returned as it is now, not as it was created.
    store.claim(&first.id, "w1", TTL, T0).await.unwrap();
    let again = store.create_run(new_run(run_id(6), &c, "report", Some("week-7"))).await.unwrap();
    assert_eq!(again.run().status, RunStatus::Running);
}

pub(crate) async fn claim_bumps_the_epoch_and_starts_the_run(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    assert_eq!(lease, Lease { run_id: run.id, owner: "w1".into(), epoch: 1, expires_at: T0.plus(TTL) });
    let stored = must_run(&*store, &run.id).await;
    assert_eq!(stored.status, RunStatus::Running);
    assert_eq!(stored.lease_owner.as_deref(), Some("w1"));
    assert_eq!((stored.lease_epoch, stored.lease_expires_at), (1, Some(T0.plus(TTL))));
    assert_eq!(stored.started_at, Some(T0));

    // A takeover after expiry bumps again and keeps the first start time.
    let later = at(60);
    let taken = store.claim(&run.id, "w2", TTL, later).await.unwrap();
    assert_eq!(taken.epoch, 2);
    let stored = must_run(&*store, &run.id).await;
    assert_eq!((stored.lease_owner.as_deref(), stored.started_at), (Some("w2"), Some(T0)));
}

pub(crate) async fn claim_of_a_live_lease_conflicts(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    assert_conflict(store.claim(&run.id, "w2", TTL, at(1)).await);
    assert_conflict(store.claim(&run.id, "w1", TTL, at(1)).await);
    // At the expiry instant the lease is still live.
    assert_conflict(store.claim(&run.id, "w2", TTL, lease.expires_at).await);
    assert_eq!(must_run(&*store, &run.id).await.lease_epoch, 1, "failed claims change nothing");
}

pub(crate) async fn claim_of_a_final_or_unknown_run_fails(store: Arc<dyn Store>) {
    assert_not_found(store.claim(&run_id(7), "w1", TTL, T0).await);
    let (run, lease) = claimed(&*store, run_id(1)).await;
    store.finish(&lease, vec![], Outcome::Completed { output: "1".into() }, at(1)).await.unwrap();
    assert_conflict(store.claim(&run.id, "w2", TTL, at(100)).await);
}

pub(crate) async fn heartbeat_extends_the_lease(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    let renewed = store.heartbeat(&lease, TTL, at(20)).await.unwrap();
    assert_eq!(renewed, Lease { expires_at: at(20).plus(TTL), ..lease.clone() });
    assert_eq!(must_run(&*store, &run.id).await.lease_expires_at, Some(at(20).plus(TTL)));
    // Past the first expiry but within the renewed one: still held.
    assert_conflict(store.claim(&run.id, "w2", TTL, at(40)).await);
    // The old lease value (same epoch) is still valid for writes.
    store.append(&lease, vec![entry(run.id, 1, 1, 0)]).await.unwrap();
}

pub(crate) async fn expired_lease_is_taken_over_and_the_old_one_is_fenced(store: Arc<dyn Store>) {
    let (run, old) = claimed(&*store, run_id(1)).await;
    store.append(&old, vec![entry(run.id, 1, 1, 0)]).await.unwrap();

    let new = store.claim(&run.id, "w2", TTL, at(31)).await.unwrap();
    assert_eq!(new.epoch, 2);

    assert_lease_lost(store.append(&old, vec![entry(run.id, 2, 1, 0)]).await, run.id, 1, 2);
    assert_lease_lost(store.heartbeat(&old, TTL, at(32)).await, run.id, 1, 2);
    let done = Outcome::Completed { output: "\"zombie\"".into() };
    assert_lease_lost(store.finish(&old, vec![entry(run.id, 3, 1, 0)], done, at(33)).await, run.id, 1, 2);

    let keys: Vec<EntryKey> = store.journal(&run.id).await.unwrap().iter().map(|e| e.key).collect();
    assert_eq!(keys, [EntryKey::call(1, 1)], "the stale lease wrote nothing");
    let stored = must_run(&*store, &run.id).await;
    assert_eq!((stored.status, stored.lease_owner.as_deref(), stored.lease_epoch), (RunStatus::Running, Some("w2"), 2));
    assert_eq!(stored.output, None);

    store.append(&new, vec![entry(run.id, 2, 1, 0)]).await.unwrap();
    assert_eq!(store.journal(&run.id).await.unwrap().len(), 2);
}

pub(crate) async fn journal_comes_in_key_order(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    let id = run.id;
    store.append(&lease, vec![entry(id, 2, 0, 0), entry(id, 1, 2, 0)]).await.unwrap();
    store.append(&lease, vec![entry(id, 1, 1, 2), entry(id, 1, 1, 0), entry(id, 10, 1, 0)]).await.unwrap();
    store.append(&lease, vec![entry(id, 1, 1, 1)]).await.unwrap();

    let journal = store.journal(&id).await.unwrap();
    let shown: Vec<String> = journal.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(shown, ["#1.1", "#1.1/1", "#1.1/2", "#1.2", "#2", "#10.1"]);
    assert_eq!(journal[0], entry(id, 1, 1, 0), "entries read back unchanged");
    assert!(store.journal(&run_id(9)).await.unwrap().is_empty());
}

pub(crate) async fn started_appends_land_in_order_and_report_their_failure(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    let id = run.id;
    // Started, not awaited: a later write of the store lands after it.
    let first = store.append_started(&lease, vec![entry(id, 1, 1, 0)]).await.unwrap();
    let second = store.append_started(&lease, vec![entry(id, 2, 1, 0)]).await.unwrap();
    let done = Outcome::Completed { output: "1".into() };
    store.finish(&lease, vec![entry(id, 3, 1, 0)], done, at(5)).await.unwrap();
    first.await.unwrap();
    second.await.unwrap();
    let keys: Vec<String> = store.journal(&id).await.unwrap().iter().map(|e| e.key.to_string()).collect();
    assert_eq!(keys, ["#1.1", "#2.1", "#3.1"]);

    // A started append under a lease that moved fails when awaited, and writes nothing.
    let (other, old) = claimed(&*store, run_id(2)).await;
    store.claim(&other.id, "w2", TTL, at(31)).await.unwrap();
    let stale = store.append_started(&old, vec![entry(other.id, 1, 1, 0)]).await.unwrap();
    assert_lease_lost(stale.await, other.id, 1, 2);
    assert!(store.journal(&other.id).await.unwrap().is_empty());
}

pub(crate) async fn duplicate_entry_conflicts_and_writes_nothing(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    let id = run.id;
    store.append(&lease, vec![entry(id, 1, 1, 0)]).await.unwrap();

    let mut changed = entry(id, 1, 1, 0);
    changed.response = Some("\"different\"".into());
    assert_conflict(store.append(&lease, vec![entry(id, 2, 1, 0), changed]).await);
    // Two entries with one key in one call.
    assert_conflict(store.append(&lease, vec![entry(id, 3, 1, 0), entry(id, 3, 1, 0)]).await);
    // Finish with a duplicate records no outcome either.
    let done = Outcome::Completed { output: "1".into() };
    assert_conflict(store.finish(&lease, vec![entry(id, 1, 1, 0)], done, at(5)).await);

    assert_eq!(store.journal(&id).await.unwrap(), [entry(id, 1, 1, 0)], "the original entry is unchanged");
    assert_eq!(must_run(&*store, &id).await.status, RunStatus::Running);
}

pub(crate) async fn entry_of_another_run_is_refused(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    let other = queued(&*store, run_id(2)).await;
    assert_conflict(store.append(&lease, vec![entry(other.id, 1, 1, 0)]).await);
    assert!(store.journal(&other.id).await.unwrap().is_empty());
    assert!(store.journal(&run.id).await.unwrap().is_empty());
}

pub(crate) async fn finish_records_the_outcome_and_releases_the_lease(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    let id = run.id;
    store.append(&lease, vec![entry(id, 1, 1, 0)]).await.unwrap();
    let output = r#"{"pdf":"s3://reports/42.pdf"}"#.to_owned();
    store.finish(&lease, vec![entry(id, 2, 1, 0)], Outcome::Completed { output: output.clone() }, at(9)).await.unwrap();

    let stored = must_run(&*store, &id).await;
    assert_eq!(stored.status, RunStatus::Completed);
    assert_eq!((stored.output, stored.error), (Some(output), None));
    assert_eq!(stored.finished_at, Some(at(9)));
    assert_eq!((stored.lease_owner, stored.lease_expires_at), (None, None), "lease released");
    assert_eq!(stored.lease_epoch, 1, "epoch kept");
    assert_eq!(store.journal(&id).await.unwrap().len(), 2);

    // The released lease writes nothing more.
    assert_conflict(store.append(&lease, vec![entry(id, 3, 1, 0)]).await);
    assert_conflict(store.heartbeat(&lease, TTL, at(10)).await);
    assert_conflict(store.finish(&lease, vec![], Outcome::Cancelled, at(11)).await);
    assert_eq!(store.journal(&id).await.unwrap().len(), 2);
    assert_eq!(must_run(&*store, &id).await.status, RunStatus::Completed);
}

pub(crate) async fn failed_and_cancelled_outcomes_are_recorded(store: Arc<dyn Store>) {
    let (failed, lease) = claimed(&*store, run_id(1)).await;
    let error = RunError { kind: RunErrorKind::FuelExhausted, message: "step `render` ran out of fuel".into() };
    store.finish(&lease, vec![], Outcome::Failed { error: error.clone() }, at(3)).await.unwrap();
    let stored = must_run(&*store, &failed.id).await;
    assert_eq!((stored.status, stored.output, stored.error), (RunStatus::Failed, None, Some(error)));

    let (cancelled, lease) = claimed(&*store, run_id(2)).await;
    store.finish(&lease, vec![], Outcome::Cancelled, at(4)).await.unwrap();
    let stored = must_run(&*store, &cancelled.id).await;
    assert_eq!((stored.status, stored.finished_at), (RunStatus::Cancelled, Some(at(4))));
}

pub(crate) async fn list_runs_filters_and_paginates(store: Arc<dyn Store>) {
    let c = component(1);
    store.put_component(&c).await.unwrap();
    // Runs 1..=6 of "report", 7..=9 of "invoice"; 2 and 8 completed.
    for ms in 1..=9u64 {
        let name = if ms <= 6 { "report" } else { "invoice" };
        store.create_run(new_run(run_id(ms), &c, name, None)).await.unwrap();
    }
    for ms in [2, 8] {
        let lease = store.claim(&run_id(ms), "w1", TTL, T0).await.unwrap();
        store.finish(&lease, vec![], Outcome::Completed { output: "null".into() }, at(1)).await.unwrap();
    }
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let list = |filter: RunFilter| {
        let store = Arc::clone(&store);
        async move { ids(store.list_runs(&filter).await.unwrap()) }
    };

    let all = list(RunFilter::default()).await;
    assert_eq!(all, (1..=9).rev().map(run_id).collect::<Vec<_>>(), "newest first, limit 0 means the default");

    let completed = list(RunFilter { status: Some(RunStatus::Completed), ..Default::default() }).await;
    assert_eq!(completed, [run_id(8), run_id(2)]);

    let invoices = list(RunFilter { component: Some("invoice".into()), ..Default::default() }).await;
    assert_eq!(invoices, [run_id(9), run_id(8), run_id(7)]);

    let both = RunFilter { status: Some(RunStatus::Queued), component: Some("report".into()), ..Default::default() };
    assert_eq!(list(both).await, [6, 5, 4, 3, 1].map(run_id));

    // Keyset pages of 4: 9 8 7 6 | 5 4 3 2 | 1.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = list(RunFilter { before, limit: 4, ..Default::default() }).await;
        let Some(last) = page.last().copied() else {
            break;
        };
        before = Some(last);
        pages.push(page);
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [4, 4, 1]);
    assert_eq!(pages.concat(), all);

    let page = list(RunFilter { before: Some(run_id(8)), component: Some("invoice".into()), ..Default::default() });
    assert_eq!(page.await, [run_id(7)]);
    assert!(list(RunFilter { status: Some(RunStatus::Failed), ..Default::default() }).await.is_empty());
}

pub(crate) async fn concurrent_appends_all_land(store: Arc<dyn Store>) {
    const RUNS: u64 = 20;
    const PER_RUN: u32 = 10;
    let mut leases = Vec::new();
    for ms in 1..=RUNS {
        leases.push(claimed(&*store, run_id(ms)).await.1);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for lease in &leases {
        for seq in 1..=PER_RUN {
            let (store, lease) = (Arc::clone(&store), lease.clone());
            tasks.spawn(async move { store.append(&lease, vec![entry(lease.run_id, seq, 1, 0)]).await });
        }
    }
    let mut landed = 0;
    while let Some(joined) = tasks.join_next().await {
        joined.expect("append task").expect("append");
        landed += 1;
    }
    assert_eq!(landed, RUNS * u64::from(PER_RUN));
    for lease in &leases {
        let seqs: Vec<u32> = store.journal(&lease.run_id).await.unwrap().iter().map(|e| e.key.seq).collect();
        assert_eq!(seqs, (1..=PER_RUN).collect::<Vec<_>>());
    }
}

pub(crate) async fn stale_write_fails_alone_in_its_batch(store: Arc<dyn Store>) {
    let (a, stale) = claimed(&*store, run_id(1)).await;
    let current = store.claim(&a.id, "w2", TTL, at(31)).await.unwrap();
    let (b, other) = claimed(&*store, run_id(2)).await;
    // Sent together so a group-committing backend is likely to put them in
    // one transaction; the outcome must not depend on it.
    let (lost, ok_a, ok_b, dup) = tokio::join!(
        store.append(&stale, vec![entry(a.id, 1, 1, 0)]),
        store.append(&current, vec![entry(a.id, 2, 1, 0)]),
        store.append(&other, vec![entry(b.id, 1, 1, 0)]),
        store.append(&other, vec![entry(b.id, 9, 1, 0), entry(b.id, 9, 1, 0)]),
    );
    assert_lease_lost(lost, a.id, 1, 2);
    ok_a.unwrap();
    ok_b.unwrap();
    assert_conflict(dup);
    let keys = |journal: Vec<Entry>| journal.iter().map(|e| e.key.seq).collect::<Vec<_>>();
    assert_eq!(keys(store.journal(&a.id).await.unwrap()), [2]);
    assert_eq!(keys(store.journal(&b.id).await.unwrap()), [1]);
}

pub(crate) async fn parked_run_is_ready_only_once_its_wake_at_has_come(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    let park = Park { wake_at: Some(at(100)), event: None };
    store.park(&lease, vec![entry(run.id, 1, 1, 0)], park).await.unwrap();

    let stored = must_run(&*store, &run.id).await;
    assert_eq!(stored.status, RunStatus::Waiting);
    assert_eq!((stored.wake_at, stored.waiting_on.as_deref()), (Some(at(100)), None));
    assert_eq!((stored.lease_owner.as_deref(), stored.lease_expires_at), (None, None), "lease released");
    assert_eq!(stored.lease_epoch, 1, "epoch kept");
    assert_eq!(store.journal(&run.id).await.unwrap(), [entry(run.id, 1, 1, 0)]);
    // The released lease writes nothing more.
    assert_conflict(store.append(&lease, vec![entry(run.id, 2, 1, 0)]).await);
    assert_conflict(store.park(&lease, vec![], Park::default()).await);

    assert!(ready_ids(&*store, "w2", at(99)).await.is_empty(), "not before wake_at");
    let claimed = store.claim_ready("w2", TTL, at(100), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let (woken, new) = &claimed[0];
    assert_eq!(*new, Lease { run_id: run.id, owner: "w2".into(), epoch: 2, expires_at: at(100).plus(TTL) });
    assert_eq!(*woken, must_run(&*store, &run.id).await, "the run as claimed");
    assert_eq!(woken.status, RunStatus::Running);
    assert_eq!((woken.wake_at, woken.waiting_on.as_deref()), (None, None), "the claim clears the wait");
    assert_eq!(woken.started_at, Some(T0), "first start kept");
    assert!(ready_ids(&*store, "w3", at(101)).await.is_empty(), "claimed once");
    assert_lease_lost(store.append(&lease, vec![entry(run.id, 2, 1, 0)]).await, run.id, 1, 2);
    store.append(new, vec![entry(run.id, 2, 1, 0)]).await.unwrap();
}

pub(crate) async fn claim_by_id_resumes_a_waiting_run_early(store: Arc<dyn Store>) {
    // An explicit claim is the caller's decision: it takes a waiting run
    // before its wake_at (a resumed workflow replays and parks again).
    let (run, _) = parked(&*store, run_id(1), Some(at(1000)), Some("approved")).await;
    let lease = store.claim(&run.id, "w2", TTL, at(1)).await.unwrap();
    assert_eq!(lease.epoch, 2);
    let stored = must_run(&*store, &run.id).await;
    assert_eq!((stored.status, stored.wake_at, stored.waiting_on), (RunStatus::Running, None, None));
    assert_conflict(store.claim(&run.id, "w3", TTL, at(2)).await);
}

pub(crate) async fn event_wakes_only_the_runs_waiting_on_it(store: Arc<dyn Store>) {
    let (a, _) = parked(&*store, run_id(1), None, Some("approved")).await;
    let (b, _) = parked(&*store, run_id(2), Some(at(1000)), Some("approved")).await;
    let (c, _) = parked(&*store, run_id(3), None, Some("rejected")).await;
    let (d, _) = parked(&*store, run_id(4), Some(at(10)), Some("approved")).await;
    assert_eq!(must_run(&*store, &a.id).await.waiting_on.as_deref(), Some("approved"));
    assert!(ready_ids(&*store, "w2", at(5)).await.is_empty(), "an event wait without an event is not ready");

    let (event, woken) = store.send_event("approved", r#"{"by":"ann"}"#, at(60)).await.unwrap();
    assert_eq!((event.name.as_str(), event.data.as_str(), event.created_at), ("approved", r#"{"by":"ann"}"#, at(60)));
    assert_eq!(woken, 3);
    assert_eq!(must_run(&*store, &a.id).await.wake_at, Some(at(60)));
    assert_eq!(must_run(&*store, &b.id).await.wake_at, Some(at(60)), "woken early");
    assert_eq!(must_run(&*store, &d.id).await.wake_at, Some(at(10)), "an earlier wake_at stays");
    let other = must_run(&*store, &c.id).await;
    assert_eq!((other.status, other.wake_at), (RunStatus::Waiting, None), "another name wakes nothing here");

    assert_eq!(ready_ids(&*store, "w2", at(60)).await, [d.id, a.id, b.id]);
    assert_eq!(must_run(&*store, &c.id).await.status, RunStatus::Waiting);
    let (_, woken) = store.send_event("approved", "null", at(61)).await.unwrap();
    assert_eq!(woken, 0, "claimed runs wait no more");
    let (_, woken) = store.send_event("rejected", "null", at(62)).await.unwrap();
    assert_eq!(woken, 1);
    assert_eq!(ready_ids(&*store, "w2", at(62)).await, [c.id]);
}

pub(crate) async fn claim_ready_takes_queued_runs_and_expired_leases_oldest_first(store: Arc<dyn Store>) {
    let young = queued_at(&*store, run_id(1), at(2)).await;
    let (live, _) = claimed(&*store, run_id(2)).await; // expires at T0 + 30 s
    let dead = queued_at(&*store, run_id(3), T0).await;
    let dead_lease = store.claim(&dead.id, "w1", Duration::from_secs(5), T0).await.unwrap();
    let (done, lease) = claimed(&*store, run_id(4)).await;
    store.finish(&lease, vec![], Outcome::Completed { output: "1".into() }, at(1)).await.unwrap();
    let (sleeping, _) = parked(&*store, run_id(5), Some(at(500)), None).await;
    let (due, _) = parked(&*store, run_id(6), Some(at(1)), None).await;

    let claimed = store.claim_ready("w9", TTL, at(10), 10).await.unwrap();
    let ids: Vec<RunId> = claimed.iter().map(|(run, _)| run.id).collect();
    // Ready since: dead T0 (created), due at(1) (wake_at), young at(2).
    assert_eq!(ids, [dead.id, due.id, young.id]);
    for (run, lease) in &claimed {
        assert_eq!(*run, must_run(&*store, &run.id).await);
        assert_eq!((run.status, run.lease_owner.as_deref()), (RunStatus::Running, Some("w9")));
        assert_eq!((lease.owner.as_str(), lease.epoch, lease.expires_at), ("w9", run.lease_epoch, at(10).plus(TTL)));
    }
    assert_eq!((claimed[0].1.epoch, claimed[0].0.started_at), (2, Some(T0)), "taken over, first start kept");
    assert_eq!((claimed[2].1.epoch, claimed[2].0.started_at), (1, Some(at(10))), "first claim starts the run");
    assert_lease_lost(store.append(&dead_lease, vec![entry(dead.id, 1, 1, 0)]).await, dead.id, 1, 2);

    for (id, status) in
        [(live.id, RunStatus::Running), (done.id, RunStatus::Completed), (sleeping.id, RunStatus::Waiting)]
    {
        let stored = must_run(&*store, &id).await;
        assert_eq!(stored.status, status);
        assert_ne!(stored.lease_owner.as_deref(), Some("w9"), "{id} was not ready");
    }
    assert!(ready_ids(&*store, "w8", at(10)).await.is_empty(), "every ready run was taken");
    // At the expiry instant a lease is still live; just after it is not.
    assert!(ready_ids(&*store, "w8", T0.plus(TTL)).await.is_empty());
    assert_eq!(ready_ids(&*store, "w8", Micros(T0.plus(TTL).0 + 1)).await, [live.id]);
}

pub(crate) async fn claim_ready_respects_its_limit(store: Arc<dyn Store>) {
    for ms in 1..=5 {
        queued_at(&*store, run_id(ms), at(10 - i64::try_from(ms).unwrap())).await;
    }
    assert!(store.claim_ready("w1", TTL, at(20), 0).await.unwrap().is_empty(), "limit 0 claims nothing");
    let first: Vec<RunId> =
        store.claim_ready("w1", TTL, at(20), 2).await.unwrap().into_iter().map(|(r, _)| r.id).collect();
    assert_eq!(first, [run_id(5), run_id(4)], "the oldest first");
    assert_eq!(ready_ids(&*store, "w2", at(20)).await, [run_id(3), run_id(2), run_id(1)]);
}

pub(crate) async fn a_held_run_is_claimed_only_by_id(store: Arc<dyn Store>) {
    let c = component(1);
    store.put_component(&c).await.unwrap();
    let held = NewRun { held: true, ..new_run(run_id(1), &c, "report", None) };
    let created = store.create_run(held).await.unwrap().run().clone();
    assert_eq!((created.status, created.wake_at), (RunStatus::Waiting, None));
    assert_eq!(must_run(&*store, &created.id).await, created);
    assert!(ready_ids(&*store, "w1", at(10_000)).await.is_empty(), "no worker takes a held run");

    let lease = store.claim(&created.id, "creator", TTL, at(1)).await.expect("its creator claims it by id");
    let park = Park { wake_at: Some(at(2)), event: None };
    store.park(&lease, vec![entry(created.id, 1, 1, 0)], park).await.unwrap();
    assert_eq!(ready_ids(&*store, "w1", at(2)).await, [created.id], "parked due, a worker takes it");
}

pub(crate) async fn create_and_claim_claims_the_new_run_only_when_it_is_next(store: Arc<dyn Store>) {
    let c = component(1);
    store.put_component(&c).await.unwrap();
    // Nothing else ready: the new run is the one claimed, running under the lease.
    let (created, claimed) =
        store.create_and_claim(new_run(run_id(1), &c, "report", None), "w1", TTL, at(5)).await.unwrap();
    let (run, lease) = claimed.expect("the new run is claimed");
    assert!(matches!(&created, Created::New(r) if r.id == run_id(1)));
    assert_eq!((run.id, run.status, lease.epoch, lease.owner.as_str()), (run_id(1), RunStatus::Running, 1, "w1"));
    assert_eq!(must_run(&*store, &run.id).await.lease_epoch, 1);
    store.append(&lease, vec![entry(run.id, 1, 1, 0)]).await.expect("the lease is live");

    // An older ready run goes first: nothing is claimed, both stay queued
    // for the next claims, in their order.
    let older = queued_at(&*store, run_id(2), at(1)).await;
    let newer = NewRun { created_at: at(6), ..new_run(run_id(3), &c, "report", None) };
    let (created, claimed) = store.create_and_claim(newer, "w1", TTL, at(6)).await.unwrap();
    assert!(claimed.is_none(), "the older run is next");
    assert_eq!(must_run(&*store, &created.run().id).await.status, RunStatus::Queued);
    assert_eq!(must_run(&*store, &older.id).await.status, RunStatus::Queued);
    assert_eq!(ready_ids(&*store, "w2", at(7)).await, [older.id, run_id(3)]);

    // Flow control holds: a busy concurrency key is created queued, and nothing is claimed.
    let busy = flowed(&*store, run_id(4), "invoice", at(8), concurrency("acme", 1)).await;
    assert_eq!(ready_ids(&*store, "w2", at(9)).await, [busy.id]);
    let held_back =
        NewRun { created_at: at(10), flow: concurrency("acme", 1), ..new_run(run_id(5), &c, "invoice", None) };
    let (created, claimed) = store.create_and_claim(held_back, "w1", TTL, at(10)).await.unwrap();
    assert!(claimed.is_none(), "the key is busy");
    assert_eq!(must_run(&*store, &created.run().id).await.status, RunStatus::Queued);

    // An existing idempotency key creates nothing and claims what is ready.
    let keyed = new_run(run_id(6), &c, "mail", Some("k"));
    let (first, _) = store.create_and_claim(keyed.clone(), "w1", TTL, at(11)).await.unwrap();
    let again = NewRun { id: run_id(7), ..keyed };
    let (second, claimed) = store.create_and_claim(again, "w1", TTL, at(12)).await.unwrap();
    assert!(matches!(&second, Created::Existing(r) if r.id == first.run().id));
    assert!(claimed.is_none(), "nothing else is ready");
    assert_eq!(store.run(&run_id(7)).await.unwrap(), None);

    // A failed create claims nothing: the transaction is rolled back whole.
    let orphan = new_run(run_id(8), &component(2), "report", None);
    assert!(matches!(store.create_and_claim(orphan, "w1", TTL, at(13)).await, Err(Error::NotFound(_))));
    assert_eq!(store.run(&run_id(8)).await.unwrap(), None);
}

pub(crate) async fn a_run_created_and_claimed_early_writes_after_its_creation(store: Arc<dyn Store>) {
    let c = component(1);
    store.put_component(&c).await.unwrap();
    // Answered before (or, without a write queue, after) the commit: the
    // run's first append may be started at once and lands after it.
    let (created, claimed, commit) =
        store.create_and_claim_started(new_run(run_id(1), &c, "report", None), "w1", TTL, at(5)).await.unwrap();
    let (run, lease) = claimed.expect("the new run is claimed");
    assert!(matches!(&created, Created::New(r) if r.id == run_id(1)));
    let append = store.append_started(&lease, vec![entry(run.id, 1, 1, 0)]).await.expect("handed over");
    commit.await.expect("the creation committed");
    append.await.expect("the append landed after it");
    let stored = must_run(&*store, &run.id).await;
    assert_eq!((stored.status, stored.lease_epoch), (RunStatus::Running, 1));
    assert_eq!(store.journal(&run.id).await.unwrap().len(), 1);

    // An existing key: nothing created or claimed, and the commit is empty.
    let keyed = new_run(run_id(2), &c, "mail", Some("k"));
    store.create_run(keyed.clone()).await.unwrap();
    let again = NewRun { id: run_id(3), ..keyed };
    let (second, claimed, commit) = store.create_and_claim_started(again, "w1", TTL, at(6)).await.unwrap();
    assert!(matches!(&second, Created::Existing(r) if r.id == run_id(2)));
    assert!(claimed.is_none(), "an existing run is not claimed here");
    commit.await.expect("nothing to commit");

    // A failed create answers with its error, not with a claim.
    let orphan = new_run(run_id(4), &component(2), "report", None);
    assert!(matches!(store.create_and_claim_started(orphan, "w1", TTL, at(7)).await, Err(Error::NotFound(_))));
    assert_eq!(store.run(&run_id(4)).await.unwrap(), None);
}

pub(crate) async fn concurrent_claim_ready_calls_get_disjoint_runs(store: Arc<dyn Store>) {
    const RUNS: u64 = 60;
    for ms in 1..=RUNS {
        queued(&*store, run_id(ms)).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let owner = format!("w{worker}");
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_ready(&owner, TTL, at(1), 3).await.expect("claim_ready");
                if batch.is_empty() {
                    break mine;
                }
                for (run, lease) in batch {
                    assert_eq!((run.id, lease.epoch, lease.owner.as_str()), (lease.run_id, 1, owner.as_str()));
                    mine.push(run.id);
                }
                tokio::task::yield_now().await;
            }
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.expect("claim task"));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "no run was handed out twice");
    assert_eq!(all, (1..=RUNS).map(run_id).collect::<Vec<_>>(), "every run was handed out");
    for id in &all {
        assert_eq!(must_run(&*store, id).await.lease_epoch, 1, "{id} was claimed once");
    }
}

pub(crate) async fn park_with_a_stale_lease_is_lost_and_writes_nothing(store: Arc<dyn Store>) {
    let (run, old) = claimed(&*store, run_id(1)).await;
    let new = store.claim(&run.id, "w2", TTL, at(31)).await.unwrap();
    let park = Park { wake_at: Some(at(100)), event: Some("approved".into()) };
    assert_lease_lost(store.park(&old, vec![entry(run.id, 1, 1, 0)], park.clone()).await, run.id, 1, 2);
    assert!(store.journal(&run.id).await.unwrap().is_empty(), "the stale lease wrote nothing");
    let stored = must_run(&*store, &run.id).await;
    assert_eq!((stored.status, stored.lease_owner.as_deref(), stored.lease_epoch), (RunStatus::Running, Some("w2"), 2));
    assert_eq!((stored.wake_at, stored.waiting_on), (None, None));

    // A park with a duplicate entry parks nothing either.
    store.append(&new, vec![entry(run.id, 1, 1, 0)]).await.unwrap();
    assert_conflict(store.park(&new, vec![entry(run.id, 2, 1, 0), entry(run.id, 1, 1, 0)], park.clone()).await);
    let stored = must_run(&*store, &run.id).await;
    assert_eq!((stored.status, stored.wake_at), (RunStatus::Running, None));
    assert_eq!(store.journal(&run.id).await.unwrap().len(), 1);
    store.park(&new, vec![entry(run.id, 2, 1, 0)], park).await.unwrap();
    assert_eq!(must_run(&*store, &run.id).await.status, RunStatus::Waiting);
}

pub(crate) async fn cancel_fences_the_worker(store: Arc<dyn Store>) {
    let (run, lease) = claimed(&*store, run_id(1)).await;
    store.append(&lease, vec![entry(run.id, 1, 1, 0)]).await.unwrap();

    let cancelled = store.cancel(&run.id, "customer asked", at(5)).await.unwrap();
    assert_eq!(cancelled, must_run(&*store, &run.id).await, "the run as it is now");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let error = RunError { kind: RunErrorKind::Cancelled, message: "customer asked".into() };
    assert_eq!((cancelled.error, cancelled.output), (Some(error), None));
    assert_eq!(cancelled.finished_at, Some(at(5)));
    assert_eq!((cancelled.lease_owner, cancelled.lease_expires_at, cancelled.lease_epoch), (None, None, 2));

    assert_lease_lost(store.append(&lease, vec![entry(run.id, 2, 1, 0)]).await, run.id, 1, 2);
    assert_lease_lost(store.heartbeat(&lease, TTL, at(6)).await, run.id, 1, 2);
    let done = Outcome::Completed { output: "1".into() };
    assert_lease_lost(store.finish(&lease, vec![entry(run.id, 2, 1, 0)], done, at(6)).await, run.id, 1, 2);
    let park = Park { wake_at: Some(at(60)), event: None };
    assert_lease_lost(store.park(&lease, vec![entry(run.id, 2, 1, 0)], park).await, run.id, 1, 2);
    assert_eq!(store.journal(&run.id).await.unwrap().len(), 1);
    assert_eq!(must_run(&*store, &run.id).await.status, RunStatus::Cancelled);

    // Queued and waiting runs cancel too, and are ready no more.
    let waiting = parked(&*store, run_id(2), Some(at(10)), Some("approved")).await.0;
    let queued = queued(&*store, run_id(3)).await;
    for id in [waiting.id, queued.id] {
        let run = store.cancel(&id, "shutdown", at(7)).await.unwrap();
        assert_eq!((run.status, run.wake_at, run.waiting_on), (RunStatus::Cancelled, None, None));
    }
    assert_eq!(store.send_event("approved", "null", at(8)).await.unwrap().1, 0);
    assert!(ready_ids(&*store, "w2", at(100)).await.is_empty());
    assert_eq!(store.next_wake().await.unwrap(), None);
}

pub(crate) async fn cancel_of_a_final_or_unknown_run_fails(store: Arc<dyn Store>) {
    assert_not_found(store.cancel(&run_id(9), "why not", T0).await);
    let (run, lease) = claimed(&*store, run_id(1)).await;
    store.finish(&lease, vec![], Outcome::Completed { output: "1".into() }, at(1)).await.unwrap();
    assert_conflict(store.cancel(&run.id, "too late", at(2)).await);
    let stored = must_run(&*store, &run.id).await;
    assert_eq!((stored.status, stored.error, stored.lease_epoch), (RunStatus::Completed, None, 1));

    let other = queued(&*store, run_id(2)).await;
    store.cancel(&other.id, "first", at(3)).await.unwrap();
    assert_conflict(store.cancel(&other.id, "second", at(4)).await);
    assert_conflict(store.claim(&other.id, "w1", TTL, at(5)).await);
    let error = must_run(&*store, &other.id).await.error.expect("an error");
    assert_eq!((error.message.as_str(), must_run(&*store, &other.id).await.finished_at), ("first", Some(at(3))));
}

pub(crate) async fn events_are_filtered_and_ordered(store: Arc<dyn Store>) {
    assert!(store.events("approved", T0, 0, 10).await.unwrap().is_empty());
    let mut sent = Vec::new();
    for (i, name) in ["approved", "rejected", "approved", "approved"].into_iter().enumerate() {
        let secs = i64::try_from(i).unwrap() + 1;
        let (event, woken) = store.send_event(name, &format!(r#"{{"n":{secs}}}"#), at(secs)).await.unwrap();
        assert_eq!(woken, 0);
        sent.push(event);
    }
    assert!(sent.windows(2).all(|w| w[0].id < w[1].id), "ids increase in the order events are stored");
    let approved = [sent[0].clone(), sent[2].clone(), sent[3].clone()];

    assert_eq!(store.events("approved", T0, 0, 10).await.unwrap(), approved);
    assert_eq!(store.events("rejected", T0, 0, 10).await.unwrap(), [sent[1].clone()]);
    assert_eq!(store.events("approved", at(3), 0, 10).await.unwrap(), approved[1..], "since is inclusive");
    assert_eq!(store.events("approved", T0, sent[0].id, 10).await.unwrap(), approved[1..], "after_id is exclusive");
    assert_eq!(store.events("approved", T0, sent[2].id, 10).await.unwrap(), approved[2..]);
    assert_eq!(store.events("approved", T0, 0, 1).await.unwrap(), approved[..1], "at most limit, oldest first");
    assert!(store.events("approved", T0, 0, 0).await.unwrap().is_empty());
    assert!(store.events("approved", at(5), 0, 10).await.unwrap().is_empty());
    assert!(store.events("APPROVED", T0, 0, 10).await.unwrap().is_empty(), "names are exact");
}

pub(crate) async fn next_wake_is_the_earliest_wake_at(store: Arc<dyn Store>) {
    assert_eq!(store.next_wake().await.unwrap(), None);
    queued(&*store, run_id(1)).await;
    parked(&*store, run_id(2), None, Some("approved")).await;
    assert_eq!(store.next_wake().await.unwrap(), None, "queued runs and pure event waits have no wake time");

    parked(&*store, run_id(3), Some(at(50)), None).await;
    parked(&*store, run_id(4), Some(at(20)), Some("approved")).await;
    parked(&*store, run_id(5), Some(at(80)), None).await;
    assert_eq!(store.next_wake().await.unwrap(), Some(at(20)));

    assert_eq!(store.claim_ready("w2", TTL, at(20), 10).await.unwrap().len(), 2, "run 1 and run 4");
    assert_eq!(store.next_wake().await.unwrap(), Some(at(50)));
    store.send_event("approved", "null", at(30)).await.unwrap();
    assert_eq!(store.next_wake().await.unwrap(), Some(at(30)), "an event makes its waiters due");
}

pub(crate) async fn event_sent_while_the_run_executes_is_not_lost(store: Arc<dyn Store>) {
    // Sent before the claim: the worker could read it, so it wakes nothing.
    store.send_event("approved", "1", at(1)).await.unwrap();
    let (early, _) = parked(&*store, run_id(1), None, Some("approved")).await;
    assert_eq!(must_run(&*store, &early.id).await.wake_at, None);

    // Sent after the claim, before the park (the worker may have looked for
    // events just before it came): the run parks already due.
    let (run, lease) = claimed(&*store, run_id(2)).await;
    let (event, woken) = store.send_event("approved", "2", at(5)).await.unwrap();
    assert_eq!(woken, 1, "only the parked run waits on it");
    store.send_event("rejected", "3", at(6)).await.unwrap();
    let park = Park { wake_at: Some(at(1000)), event: Some("approved".into()) };
    store.park(&lease, vec![], park).await.unwrap();
    let stored = must_run(&*store, &run.id).await;
    assert_eq!((stored.status, stored.wake_at), (RunStatus::Waiting, Some(event.created_at)));
    assert_eq!(ready_ids(&*store, "w2", at(7)).await, [early.id, run.id]);

    // Another name sent since the claim does not wake it.
    let (other, lease) = claimed(&*store, run_id(3)).await;
    store.send_event("rejected", "4", at(8)).await.unwrap();
    store.park(&lease, vec![], Park { wake_at: Some(at(1000)), event: Some("approved".into()) }).await.unwrap();
    assert_eq!(must_run(&*store, &other.id).await.wake_at, Some(at(1000)));
}

pub(crate) async fn deploy_makes_versions_and_a_redeploy_of_the_same_is_a_no_op(store: Arc<dyn Store>) {
    let (c1, c2) = (component(1), component(2));
    store.put_component(&c1).await.unwrap();
    store.put_component(&c2).await.unwrap();
    let config =
        DeploymentConfig { concurrency: Some(Limit { limit: 1, key: Some("/client".into()) }), ..Default::default() };

    let (v1, created) = store.deploy("report", &c1.hash, World::Workflow, &config, at(1)).await.unwrap();
    assert!(created);
    let expected = Deployment {
        name: "report".into(),
        version: 1,
        hash: c1.hash.clone(),
        world: World::Workflow,
        config: config.clone(),
        active: true,
        created_at: at(1),
    };
    assert_eq!(v1, expected);
    assert_eq!(store.deployment("report", None).await.unwrap(), Some(v1.clone()), "read back, active");

    let (again, created) = store.deploy("report", &c1.hash, World::Workflow, &config, at(2)).await.unwrap();
    assert_eq!((again, created), (v1.clone(), false), "same component and config: nothing changes");
    assert_eq!(store.deployments().await.unwrap().len(), 1);

    let other = DeploymentConfig { priority: 3, ..config.clone() };
    let (v2, created) = store.deploy("report", &c1.hash, World::Workflow, &other, at(3)).await.unwrap();
    assert_eq!((v2.version, v2.active, created, v2.config.priority), (2, true, true, 3), "a new config is a version");
    let (v3, _) = store.deploy("report", &c2.hash, World::Workflow, &other, at(4)).await.unwrap();
    assert_eq!((v3.version, v3.hash.clone()), (3, c2.hash.clone()), "a new component is a version");
    // The same as an older, inactive version is a new version too.
    let (v4, created) = store.deploy("report", &c1.hash, World::Workflow, &config, at(5)).await.unwrap();
    assert_eq!((v4.version, created), (4, true));

    assert_eq!(store.deployment("report", None).await.unwrap(), Some(v4));
    let old = store.deployment("report", Some(1)).await.unwrap().expect("version 1");
    assert_eq!(old, Deployment { active: false, ..v1 }, "older versions are kept, inactive");
    assert_eq!(store.deployment("report", Some(9)).await.unwrap(), None);
    assert_eq!(store.deployment("invoice", None).await.unwrap(), None);

    let (first, _) = store.deploy("invoice", &c1.hash, World::Workflow, &config, at(6)).await.unwrap();
    assert_eq!(first.version, 1, "versions count per name");
    assert_not_found(store.deploy("report", &component(9).hash, World::Workflow, &config, at(7)).await);
    assert_eq!(
        store.deployment("report", None).await.unwrap().map(|d| d.version),
        Some(4),
        "a failed deploy changes nothing"
    );
}

pub(crate) async fn activate_changes_the_active_version(store: Arc<dyn Store>) {
    let (c1, c2) = (component(1), component(2));
    store.put_component(&c1).await.unwrap();
    store.put_component(&c2).await.unwrap();
    let config = DeploymentConfig::default();
    store.deploy("report", &c1.hash, World::Workflow, &config, at(1)).await.unwrap();
    store.deploy("report", &c2.hash, World::Workflow, &config, at(2)).await.unwrap();

    let back = store.activate("report", 1).await.unwrap();
    assert_eq!((back.version, back.hash.clone(), back.active), (1, c1.hash.clone(), true));
    assert_eq!(store.deployment("report", None).await.unwrap(), Some(back.clone()));
    assert!(!store.deployment("report", Some(2)).await.unwrap().expect("version 2").active);
    assert_eq!(store.activate("report", 1).await.unwrap(), back, "activating the active version is harmless");

    assert_not_found(store.activate("report", 3).await);
    assert_not_found(store.activate("invoice", 1).await);
    assert_eq!(store.deployment("report", None).await.unwrap().map(|d| d.version), Some(1));

    // A deploy compares with the active version and numbers after the newest.
    let (same, created) = store.deploy("report", &c1.hash, World::Workflow, &config, at(3)).await.unwrap();
    assert_eq!((same.version, created), (1, false));
    let (next, created) = store.deploy("report", &c2.hash, World::Workflow, &config, at(4)).await.unwrap();
    assert_eq!((next.version, created), (3, true));
    let active: Vec<u32> =
        store.deployments().await.unwrap().into_iter().filter(|d| d.active).map(|d| d.version).collect();
    assert_eq!(active, [3], "one active version per name");
}

pub(crate) async fn deployments_lists_every_version(store: Arc<dyn Store>) {
    assert!(store.deployments().await.unwrap().is_empty());
    let c = component(1);
    store.put_component(&c).await.unwrap();
    for (name, priority, secs) in [("report", 0, 1), ("invoice", 0, 2), ("report", 1, 3), ("report", 2, 4)] {
        let config = DeploymentConfig { priority, ..Default::default() };
        store.deploy(name, &c.hash, World::Workflow, &config, at(secs)).await.unwrap();
    }
    store.activate("report", 2).await.unwrap();
    let listed: Vec<(String, u32, bool)> =
        store.deployments().await.unwrap().into_iter().map(|d| (d.name, d.version, d.active)).collect();
    let expected = [("invoice", 1, true), ("report", 3, false), ("report", 2, true), ("report", 1, false)];
    assert_eq!(listed, expected.map(|(n, v, a)| (n.to_owned(), v, a)), "by name, newest version first");
}

pub(crate) async fn schedules_are_put_listed_and_deleted(store: Arc<dyn Store>) {
    assert!(store.schedules().await.unwrap().is_empty());
    let weekly = schedule("weekly", at(60));
    let daily = Schedule { last_fired_at: Some(at(1)), ..schedule("daily", at(30)) };
    store.put_schedule(&weekly).await.unwrap();
    store.put_schedule(&daily).await.unwrap();
    assert_eq!(store.schedules().await.unwrap(), [daily.clone(), weekly.clone()], "by name");

    let replaced = Schedule { cron: "0 9 * * MON".into(), input: "null".into(), ..schedule("weekly", at(90)) };
    store.put_schedule(&replaced).await.unwrap();
    assert_eq!(store.schedules().await.unwrap(), [daily.clone(), replaced]);

    store.delete_schedule("weekly").await.unwrap();
    assert_eq!(store.schedules().await.unwrap(), [daily]);
    assert_not_found(store.delete_schedule("weekly").await);
    assert_not_found(store.delete_schedule("never").await);
}

pub(crate) async fn fire_schedule_fires_a_tick_once(store: Arc<dyn Store>) {
    let c = component(1);
    store.put_component(&c).await.unwrap();
    store.put_schedule(&schedule("weekly", at(60))).await.unwrap();
    let tick_run = |ms: u64, key: Option<&str>| NewRun {
        origin: Some("schedule weekly".into()),
        ..new_run(run_id(ms), &c, "report", key)
    };

    let run = store.fire_schedule("weekly", at(60), at(120), tick_run(1, None)).await.unwrap().expect("fired");
    assert_eq!((run.id, run.status, run.origin.as_deref()), (run_id(1), RunStatus::Queued, Some("schedule weekly")));
    assert_eq!(must_run(&*store, &run.id).await, run);
    let stored = &store.schedules().await.unwrap()[0];
    assert_eq!((stored.next_fire_at, stored.last_fired_at), (at(120), Some(at(60))));

    assert_eq!(store.fire_schedule("weekly", at(60), at(120), tick_run(2, None)).await.unwrap(), None, "fired once");
    assert_eq!(store.fire_schedule("weekly", at(90), at(120), tick_run(3, None)).await.unwrap(), None, "not the tick");
    assert_eq!(store.fire_schedule("gone", at(60), at(120), tick_run(4, None)).await.unwrap(), None, "no schedule");
    let runs = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [run_id(1)], "one run for the tick");

    // A run that cannot be created leaves the tick unfired.
    let orphan = NewRun { component_hash: component(9).hash, ..tick_run(5, None) };
    assert_not_found(store.fire_schedule("weekly", at(120), at(180), orphan).await);
    assert_eq!(store.schedules().await.unwrap()[0].next_fire_at, at(120));

    // An idempotency key that has a run already gives that run.
    let keyed = store.create_run(new_run(run_id(6), &c, "report", Some("week-7"))).await.unwrap();
    let fired = store.fire_schedule("weekly", at(120), at(180), tick_run(7, Some("week-7"))).await.unwrap();
    assert_eq!(fired.as_ref(), Some(keyed.run()));
    assert_eq!(store.run(&run_id(7)).await.unwrap(), None);
    let stored = &store.schedules().await.unwrap()[0];
    assert_eq!((stored.next_fire_at, stored.last_fired_at), (at(180), Some(at(120))));
}

pub(crate) async fn concurrency_limit_holds_back_runs_of_a_busy_key(store: Arc<dyn Store>) {
    let a1 = flowed(&*store, run_id(1), "report", at(1), concurrency("acme", 1)).await;
    let a2 = flowed(&*store, run_id(2), "report", at(2), concurrency("acme", 1)).await;
    let b1 = flowed(&*store, run_id(3), "report", at(3), concurrency("beta", 1)).await;
    // The same key of another component is another slot.
    let other = flowed(&*store, run_id(4), "invoice", at(4), concurrency("acme", 1)).await;
    let g: Vec<Run> = {
        let mut g = Vec::new();
        for ms in 5..=7 {
            g.push(
                flowed(&*store, run_id(ms), "report", at(i64::try_from(ms).unwrap()), concurrency("gamma", 2)).await,
            );
        }
        g
    };
    let free = flowed(&*store, run_id(8), "report", at(8), Flow::default()).await;

    let claimed = store.claim_ready("w1", TTL, at(10), 100).await.unwrap();
    let ids: Vec<RunId> = claimed.iter().map(|(run, _)| run.id).collect();
    assert_eq!(ids, [a1.id, b1.id, other.id, g[0].id, g[1].id, free.id], "one batch respects the limits within it");
    assert!(ready_ids(&*store, "w2", at(11)).await.is_empty(), "the keys are busy");
    assert_eq!(must_run(&*store, &a2.id).await.status, RunStatus::Queued);

    let lease = &claimed[0].1;
    store.finish(lease, vec![], Outcome::Completed { output: "1".into() }, at(12)).await.unwrap();
    assert_eq!(ready_ids(&*store, "w2", at(13)).await, [a2.id], "a slot came free");
    store.cancel(&g[0].id, "enough", at(14)).await.unwrap();
    assert_eq!(ready_ids(&*store, "w2", at(15)).await, [g[2].id]);

    // A batch smaller than the queue looks past the runs its own claims hold back.
    let d1 = flowed(&*store, run_id(9), "report", at(16), concurrency("delta", 1)).await;
    flowed(&*store, run_id(10), "report", at(17), concurrency("delta", 1)).await;
    let e1 = flowed(&*store, run_id(11), "report", at(18), concurrency("epsilon", 1)).await;
    let batch = store.claim_ready("w3", TTL, at(20), 2).await.unwrap();
    assert_eq!(batch.iter().map(|(r, _)| r.id).collect::<Vec<_>>(), [d1.id, e1.id]);
}

pub(crate) async fn waiting_runs_count_against_the_concurrency_limit(store: Arc<dyn Store>) {
    let a1 = flowed(&*store, run_id(1), "report", at(1), concurrency("acme", 1)).await;
    let a2 = flowed(&*store, run_id(2), "report", at(2), concurrency("acme", 1)).await;
    let claimed = store.claim_ready("w1", TTL, at(3), 1).await.unwrap();
    assert_eq!(claimed.iter().map(|(r, _)| r.id).collect::<Vec<_>>(), [a1.id]);
    let park = Park { wake_at: Some(at(100)), event: None };
    store.park(&claimed[0].1, vec![], park).await.unwrap();

    assert!(ready_ids(&*store, "w2", at(50)).await.is_empty(), "the waiting run holds the slot");
    // A due waiting run is not gated: it holds its slot already.
    let (resumed, lease) = store.claim_ready("w2", TTL, at(100), 10).await.unwrap().remove(0);
    assert_eq!(resumed.id, a1.id);
    assert_eq!(must_run(&*store, &a2.id).await.status, RunStatus::Queued);
    store.finish(&lease, vec![], Outcome::Completed { output: "1".into() }, at(101)).await.unwrap();
    assert_eq!(ready_ids(&*store, "w2", at(102)).await, [a2.id]);
}

pub(crate) async fn rate_limit_holds_runs_until_the_period_has_passed(store: Arc<dyn Store>) {
    let runs: Vec<Run> = {
        let mut runs = Vec::new();
        for ms in 1..=3 {
            runs.push(flowed(&*store, run_id(ms), "report", T0, rate("acme", 2, 60)).await);
        }
        runs
    };
    let other = flowed(&*store, run_id(4), "report", T0, rate("beta", 2, 60)).await;
    let claimed = store.claim_ready("w1", TTL, T0, 10).await.unwrap();
    let ids: Vec<RunId> = claimed.iter().map(|(r, _)| r.id).collect();
    assert_eq!(ids, [runs[0].id, runs[1].id, other.id], "two per period, within one batch too");
    for (_, lease) in &claimed {
        store.finish(lease, vec![], Outcome::Completed { output: "1".into() }, at(1)).await.unwrap();
    }
    // Finished runs still count: the limit is on starts.
    assert!(ready_ids(&*store, "w2", at(30)).await.is_empty());
    assert!(ready_ids(&*store, "w2", at(60)).await.is_empty(), "started exactly one period ago still counts");
    assert_eq!(ready_ids(&*store, "w2", Micros(at(60).0 + 1)).await, [runs[2].id]);
}

pub(crate) async fn queued_runs_go_by_priority_then_age(store: Arc<dyn Store>) {
    let with = |priority: i32| Flow { priority, ..Flow::default() };
    let low = flowed(&*store, run_id(1), "report", at(1), with(-1)).await;
    let old = flowed(&*store, run_id(2), "report", at(2), with(0)).await;
    let high = flowed(&*store, run_id(3), "report", at(5), with(5)).await;
    let young = flowed(&*store, run_id(4), "report", at(4), with(0)).await;
    let high_early = flowed(&*store, run_id(5), "report", at(3), with(5)).await;

    let first = store.claim_ready("w1", TTL, at(10), 1).await.unwrap();
    assert_eq!(first.iter().map(|(r, _)| r.id).collect::<Vec<_>>(), [high_early.id], "the highest, then the oldest");
    assert_eq!(ready_ids(&*store, "w1", at(10)).await, [high.id, old.id, young.id, low.id]);
}

pub(crate) async fn queue_reasons_name_the_limit(store: Arc<dyn Store>) {
    let busy = flowed(&*store, run_id(1), "report", at(1), concurrency("acme", 1)).await;
    let held = flowed(&*store, run_id(2), "report", at(2), concurrency("acme", 1)).await;
    let rated = flowed(&*store, run_id(3), "report", at(3), rate("acme", 1, 60)).await;
    let rated_held = flowed(&*store, run_id(4), "report", at(4), rate("acme", 1, 60)).await;
    let free = flowed(&*store, run_id(5), "report", at(5), Flow::default()).await;
    assert_eq!(ready_ids(&*store, "w1", at(10)).await, [busy.id, rated.id, free.id]);
    let queued_free = flowed(&*store, run_id(6), "report", at(11), concurrency("beta", 1)).await;

    let ids = [busy.id, held.id, rated.id, rated_held.id, free.id, queued_free.id, run_id(9)];
    let reasons = store.queue_reasons(&ids, at(12)).await.unwrap();
    let held_for: Vec<RunId> = reasons.iter().map(|(id, _)| *id).collect();
    assert_eq!(held_for, [held.id, rated_held.id], "only queued runs held back by a limit");
    let (concurrency_reason, rate_reason) = (&reasons[0].1, &reasons[1].1);
    assert!(concurrency_reason.contains("concurrency limit 1"), "{concurrency_reason}");
    assert!(
        concurrency_reason.contains("`acme`") && concurrency_reason.contains("1 in progress"),
        "{concurrency_reason}"
    );
    assert!(rate_reason.contains("rate limit 1 per 60s") && rate_reason.contains("`acme`"), "{rate_reason}");

    // Past the period the rate limit holds nothing back.
    let later = store.queue_reasons(&ids, at(100)).await.unwrap();
    assert_eq!(later.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [held.id]);
    assert!(store.queue_reasons(&[], at(12)).await.unwrap().is_empty());
}

pub(crate) async fn run_counts_count_runs_by_status(store: Arc<dyn Store>) {
    let count = |counts: Vec<(RunStatus, u64)>, status: RunStatus| {
        counts.iter().filter(|(s, _)| *s == status).map(|(_, n)| *n).sum::<u64>()
    };
    assert_eq!(store.run_counts().await.unwrap().iter().map(|(_, n)| n).sum::<u64>(), 0);
    assert_eq!(store.unfinished_runs().await.unwrap(), 0);
    for ms in 1..=3 {
        queued(&*store, run_id(ms)).await;
    }
    let (_, lease) = claimed(&*store, run_id(4)).await;
    store.finish(&lease, vec![], Outcome::Completed { output: "1".into() }, at(1)).await.unwrap();
    claimed(&*store, run_id(5)).await;
    let counts = store.run_counts().await.unwrap();
    assert_eq!(count(counts.clone(), RunStatus::Queued), 3);
    assert_eq!(count(counts.clone(), RunStatus::Running), 1);
    assert_eq!(count(counts.clone(), RunStatus::Completed), 1);
    assert_eq!(count(counts, RunStatus::Failed), 0);
    parked(&*store, run_id(6), None, Some("approved")).await;
    assert_eq!(store.unfinished_runs().await.unwrap(), 5, "3 queued, 1 running, 1 waiting");
}

// ------------------------------------------------ dashboard reads (store::stats)

/// A run of `name` on component `c`, with an idempotency key.
async fn created(store: &dyn Store, id: RunId, c: &Component, name: &str, key: Option<&str>) -> Run {
    store.put_component(c).await.expect("put component");
    store.create_run(new_run(id, c, name, key)).await.expect("create run").run().clone()
}

/// A step attempt entry `(seq, attempt)` that finished at `at(secs)` after
/// `took_ms`, failed with `error` when given.
fn attempt_entry(run: RunId, seq: u32, attempt: u32, secs: i64, took_ms: i64, error: Option<&str>) -> Entry {
    let finished_at = at(secs);
    Entry {
        status: if error.is_some() { EntryStatus::Error } else { EntryStatus::Ok },
        error: error.map(str::to_owned),
        started_at: Micros(finished_at.0 - took_ms * 1000),
        finished_at,
        ..entry(run, seq, attempt, 0)
    }
}

pub(crate) async fn version_run_counts_count_runs_per_version_and_status(store: Arc<dyn Store>) {
    assert!(store.version_run_counts().await.unwrap().is_empty());
    let (v1, v2) = (component(1), component(2));
    created(&*store, run_id(1), &v1, "report", None).await;
    created(&*store, run_id(2), &v1, "report", None).await;
    created(&*store, run_id(3), &v2, "report", None).await;
    created(&*store, run_id(4), &v1, "invoice", None).await;
    let lease = store.claim(&run_id(2), "w1", TTL, T0).await.unwrap();
    store
        .finish(
            &lease,
            vec![],
            Outcome::Failed { error: RunError { kind: RunErrorKind::Fatal, message: "no".into() } },
            at(1),
        )
        .await
        .unwrap();

    let counts = store.version_run_counts().await.unwrap();
    let got: Vec<(&str, &ComponentHash, RunStatus, u64)> =
        counts.iter().map(|c| (c.name.as_str(), &c.hash, c.status, c.runs)).collect();
    let mut want = vec![
        ("invoice", &v1.hash, RunStatus::Queued, 1),
        ("report", &v1.hash, RunStatus::Failed, 1),
        ("report", &v1.hash, RunStatus::Queued, 1),
        ("report", &v2.hash, RunStatus::Queued, 1),
    ];
    want.sort_by(|a, b| (a.0, a.1.as_str(), a.2.as_str()).cmp(&(b.0, b.1.as_str(), b.2.as_str())));
    assert_eq!(got, want, "by name, hash and status");
}

pub(crate) async fn queue_depths_count_queued_runs_per_workflow(store: Arc<dyn Store>) {
    assert!(store.queue_depths().await.unwrap().is_empty());
    let c = component(1);
    for ms in 1..=3 {
        created(&*store, run_id(ms), &c, "report", None).await;
    }
    created(&*store, run_id(4), &c, "invoice", None).await;
    created(&*store, run_id(5), &c, "archive", None).await;
    store.claim(&run_id(1), "w1", TTL, T0).await.unwrap();
    store.cancel(&run_id(5), "no", at(1)).await.unwrap();
    let depths = store.queue_depths().await.unwrap();
    assert_eq!(depths, [("invoice".to_owned(), 1), ("report".to_owned(), 2)], "queued runs only, by name");
}

pub(crate) async fn run_steps_count_step_calls_and_retries(store: Arc<dyn Store>) {
    let (a, lease) = claimed(&*store, run_id(1)).await;
    let b = queued(&*store, run_id(2)).await;
    let clock = Entry { kind: EntryKind::Now, ..entry(a.id, 3, 0, 0) };
    let entries = vec![
        attempt_entry(a.id, 1, 1, 1, 5, Some("retryable: HTTP 503 from x")),
        entry(a.id, 1, 1, 1),
        attempt_entry(a.id, 1, 2, 2, 5, None),
        entry(a.id, 1, 2, 1),
        attempt_entry(a.id, 2, 1, 3, 5, None),
        clock,
    ];
    store.append(&lease, entries).await.unwrap();
    let counts = store.run_steps(&[b.id, run_id(9), a.id]).await.unwrap();
    assert_eq!(
        counts,
        [super::stats::RunSteps { run_id: a.id, steps: 2, retries: 1 }],
        "two step calls, one retry; host calls and clock reads are not steps; runs without steps are left out"
    );
    assert!(store.run_steps(&[]).await.unwrap().is_empty());
}

pub(crate) async fn runs_with_key_find_runs_by_their_idempotency_key(store: Arc<dyn Store>) {
    let c = component(1);
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = |limit: u32| RunFilter { limit, ..RunFilter::default() };
    created(&*store, run_id(1), &c, "report", Some("week-7")).await;
    created(&*store, run_id(2), &c, "invoice", Some("week-7")).await;
    created(&*store, run_id(3), &c, "report", Some("week-8")).await;
    created(&*store, run_id(4), &c, "report", None).await;
    store.deploy("report", &c.hash, World::Workflow, &DeploymentConfig::default(), T0).await.unwrap();

    assert_eq!(ids(store.runs_with_key("week-7", &all(50)).await.unwrap()), [run_id(1)], "deployed names only");
    let invoice = RunFilter { component: Some("invoice".into()), ..all(50) };
    assert_eq!(ids(store.runs_with_key("week-7", &invoice).await.unwrap()), [run_id(2)]);
    assert!(store.runs_with_key("week", &all(50)).await.unwrap().is_empty(), "the key matches exactly");

    store.deploy("invoice", &c.hash, World::Workflow, &DeploymentConfig::default(), T0).await.unwrap();
    let found = store.runs_with_key("week-7", &all(50)).await.unwrap();
    assert_eq!(found.iter().map(|r| r.component.as_str()).collect::<Vec<_>>(), ["invoice", "report"], "newest first");
    assert_eq!(found[1], must_run(&*store, &run_id(1)).await, "whole runs");
    assert_eq!(ids(store.runs_with_key("week-7", &all(1)).await.unwrap()), [run_id(2)]);
    let older = RunFilter { before: Some(run_id(2)), ..all(50) };
    assert_eq!(ids(store.runs_with_key("week-7", &older).await.unwrap()), [run_id(1)]);
    let failed = RunFilter { status: Some(RunStatus::Failed), ..all(50) };
    assert!(store.runs_with_key("week-7", &failed).await.unwrap().is_empty());
    let queued_only = RunFilter { status: Some(RunStatus::Queued), ..all(50) };
    assert_eq!(store.runs_with_key("week-7", &queued_only).await.unwrap().len(), 2);
}

pub(crate) async fn step_stats_aggregate_the_attempts_of_a_window(store: Arc<dyn Store>) {
    use super::stats::{RetryCause, StatsWindow};
    let window = StatsWindow { since: T0, until: at(60), bucket: 10_000_000 };
    let empty = store.step_stats(&window).await.unwrap();
    assert_eq!((empty.attempts, empty.buckets.len(), empty.truncated, empty.first_at), (0, 6, false, None));

    // A run of the window, and one created two hours before it that is
    // still in progress (waiting on a timer).
    let (a, lease) = claimed(&*store, run_id(1)).await;
    let old: RunId = format!("run_{}", ulid::Ulid::from_parts(1_700_000_000_000 - 7_200_000, 1)).parse().unwrap();
    let (_, old_lease) = claimed(&*store, old).await;
    let entries = vec![
        attempt_entry(a.id, 1, 1, -5, 10, None), // before the window
        attempt_entry(a.id, 2, 1, 1, 100, Some("retryable: HTTP 503 from https://api.example/x")),
        entry(a.id, 2, 1, 1),
        attempt_entry(a.id, 2, 2, 12, 300, None),
        attempt_entry(a.id, 3, 1, 15, 200, Some("timeout: the attempt ran past 1s")),
        Entry { kind: EntryKind::Sleep, ..attempt_entry(a.id, 4, 0, 16, 1, None) },
        attempt_entry(a.id, 5, 1, 60, 10, None), // at `until`: after the window
    ];
    store.append(&lease, entries).await.unwrap();
    let old_entries = vec![attempt_entry(old, 2, 1, 45, 400, Some("retryable: HTTP 429 from x"))];
    store.park(&old_lease, old_entries, Park { wake_at: Some(at(3600)), event: None }).await.unwrap();

    let s = store.step_stats(&window).await.unwrap();
    assert_eq!((s.since, s.until, s.bucket_us), (T0, at(60), 10_000_000));
    assert_eq!((s.attempts, s.failed, s.truncated, s.first_at), (4, 3, false, Some(at(1))));
    let per_bucket: Vec<(u64, u64)> = s.buckets.iter().map(|b| (b.ok, b.failed)).collect();
    assert_eq!(per_bucket, [(0, 1), (1, 1), (0, 0), (0, 0), (0, 1), (0, 0)]);
    assert_eq!(s.buckets[1].start, at(10));
    let names: Vec<(&str, u64, u64, i64)> =
        s.steps.iter().map(|l| (l.name.as_str(), l.attempts, l.failed, l.max_us)).collect();
    assert_eq!(names, [("call-2", 3, 2, 400_000), ("call-3", 1, 1, 200_000)]);
    assert_eq!((s.steps[0].p50_us, s.steps[0].p99_us), (300_000, 400_000));
    let cause = |kind: &str, http_status: Option<u16>, failures: u64, retried: u64| RetryCause {
        kind: kind.into(),
        http_status,
        failures,
        retried,
    };
    assert_eq!(
        s.causes,
        [cause("retryable", Some(503), 1, 1), cause("retryable", Some(429), 1, 0), cause("timeout", None, 1, 0)],
        "the retried cause first"
    );
}
