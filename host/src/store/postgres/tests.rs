//! Postgres-only behaviour: open errors that name the server, a writer that
//! survives its connection, and several hosts (stores) on one database. The
//! shared behaviour is in the contract suite (`store/contract.rs`).
//!
//! Cases that need a server run when `FERRY_TEST_POSTGRES` is set (see
//! [`super::test_url`]) and are skipped otherwise.

use std::sync::Arc;

use super::*;
use crate::domain::{Flow, World};

const TTL: Duration = Duration::from_secs(30);
const T0: Micros = Micros(1_700_000_000_000_000);

fn component() -> Component {
    let bytes = b"\0asm-pg".to_vec();
    Component { hash: ComponentHash::of(&bytes), world: World::Workflow, bytes, created_at: T0 }
}

fn new_run(ms: u64, flow: Flow) -> NewRun {
    let ulid = ulid::Ulid::from_parts(1_700_000_000_000 + ms, u128::from(ms) * 7919);
    NewRun {
        id: format!("run_{ulid}").parse().expect("a run id"),
        kind: World::Workflow,
        component: "report".into(),
        component_hash: component().hash,
        input: "{}".into(),
        idempotency_key: None,
        created_at: Micros(T0.0 + i64::try_from(ms).unwrap()),
        origin: None,
        flow,
        held: false,
    }
}

async fn seed(store: &PgStore, runs: u64, flow: Flow) {
    store.put_component(&component()).await.unwrap();
    for ms in 1..=runs {
        store.create_run(new_run(ms, flow.clone())).await.unwrap();
    }
}

/// Two stores (two hosts) on one fresh schema.
async fn two_hosts() -> Option<(Arc<PgStore>, Arc<PgStore>, TestSchema)> {
    let url = test_url()?;
    let (a, schema) = test_store(&url).await;
    let b = PgStore::open_with(schema.options(), Durability::Fsync).await.unwrap();
    Some((Arc::new(a), Arc::new(b), schema))
}

#[tokio::test]
async fn open_errors_name_the_server() {
    // Nothing listens on port 1.
    match PgStore::open("postgres://root@127.0.0.1:1/test", Durability::Fsync).await {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains("cannot connect to the Postgres server at 127.0.0.1:1"), "{msg}");
            assert!(msg.contains("connection refused"), "{msg}");
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected an error, got a store"),
    }
    // The dispatcher sends Postgres URLs here.
    match crate::store::open("postgresql://root@127.0.0.1:1/test", Durability::Fsync).await {
        Err(Error::Unavailable(msg)) => assert!(msg.contains("127.0.0.1:1"), "{msg}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected an error, got a store"),
    }
    match PgStore::open("postgres://root:secret@127.0.0.1:notaport/test", Durability::Fsync).await {
        Err(Error::Config(msg)) => assert!(!msg.contains("secret"), "the password is not shown: {msg}"),
        Err(other) => panic!("expected Config, got {other:?}"),
        Ok(_) => panic!("expected an error, got a store"),
    }
}

#[tokio::test]
async fn a_missing_database_is_a_config_error() {
    let Some(url) = test_url() else { return };
    let mut options = PgConnectOptions::from_str(&url).unwrap();
    options = options.database("ferry_no_such_database");
    match PgStore::open_with(options, Durability::Fsync).await {
        Err(Error::Config(msg)) => assert!(msg.contains("ferry_no_such_database"), "{msg}"),
        Err(other) => panic!("expected Config, got {other:?}"),
        Ok(_) => panic!("expected an error, got a store"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_survives_a_terminated_connection() {
    let Some(url) = test_url() else { return };
    let (_, schema) = test_store(&url).await;
    let app = format!("ferry-reconnect-{:08x}", rand::random::<u32>());
    let store = PgStore::open_with(schema.options().application_name(&app), Durability::Fsync).await.unwrap();
    store.put_component(&component()).await.unwrap();
    store.create_run(new_run(1, Flow::default())).await.unwrap();

    let mut admin = PgConnection::connect(&url).await.unwrap();
    let killed: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&app)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert!(!killed.is_empty(), "the store's connections were found");

    // The lost connection costs at most a retry; then writes and reads work.
    let mut claimed = None;
    for _ in 0..3 {
        match store.claim_ready("w1", TTL, T0, 10).await {
            Ok(batch) => {
                claimed = Some(batch);
                break;
            }
            Err(Error::Unavailable(_)) => continue,
            Err(other) => panic!("expected success or Unavailable, got {other:?}"),
        }
    }
    assert_eq!(claimed.expect("a claim after reconnecting").len(), 1);
    assert!(store.writer_stats().reconnects() >= 1);
    let mut listed = None;
    for _ in 0..3 {
        if let Ok(runs) = store.list_runs(&RunFilter::default()).await {
            listed = Some(runs);
            break;
        }
    }
    assert_eq!(listed.expect("a read after reconnecting")[0].status, RunStatus::Running);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_never_claim_the_same_run() {
    let Some((a, b, _schema)) = two_hosts().await else { return };
    const RUNS: u64 = 80;
    seed(&a, RUNS, Flow::default()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..6 {
        let store = if worker % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_ready(&format!("w{worker}"), TTL, T0, 3).await.expect("claim_ready");
                if batch.is_empty() {
                    break mine;
                }
                mine.extend(batch.into_iter().map(|(run, _)| run.id));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "no run was handed out twice");
    // A host skips runs the other is claiming, so a worker may stop early;
    // whatever is left is claimed by a last call.
    let rest = a.claim_ready("w9", TTL, T0, 1000).await.unwrap();
    assert_eq!(total + rest.len(), usize::try_from(RUNS).unwrap());
    for run in a.list_runs(&RunFilter { limit: 1000, ..Default::default() }).await.unwrap() {
        assert_eq!(run.lease_epoch, 1, "{} was claimed once", run.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_holds_across_hosts() {
    let Some((a, b, _schema)) = two_hosts().await else { return };
    let flow = Flow { concurrency: Some(("acme".into(), 2)), ..Flow::default() };
    seed(&a, 20, flow).await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let store = if worker % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        tasks.spawn(async move {
            let mut got = 0;
            for _ in 0..5 {
                got += store.claim_ready(&format!("w{worker}"), TTL, T0, 2).await.expect("claim_ready").len();
            }
            got
        });
    }
    let mut claimed = 0;
    while let Some(joined) = tasks.join_next().await {
        claimed += joined.unwrap();
    }
    assert_eq!(claimed, 2, "two runs of the key in progress, whichever host claimed them");
    let running = RunFilter { status: Some(RunStatus::Running), ..Default::default() };
    assert_eq!(a.list_runs(&running).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_fires_a_schedule_tick() {
    let Some((a, b, _schema)) = two_hosts().await else { return };
    a.put_component(&component()).await.unwrap();
    let schedule = Schedule {
        name: "weekly".into(),
        workflow: "report".into(),
        cron: "0 21 * * FRI".into(),
        timezone: "UTC".into(),
        input: "{}".into(),
        next_fire_at: T0,
        last_fired_at: None,
        created_at: T0,
    };
    a.put_schedule(&schedule).await.unwrap();
    let next = Micros(T0.0 + 1);
    let (x, y) = tokio::join!(
        a.fire_schedule("weekly", T0, next, new_run(1, Flow::default())),
        b.fire_schedule("weekly", T0, next, new_run(2, Flow::default())),
    );
    let fired = [x.unwrap(), y.unwrap()].into_iter().flatten().count();
    assert_eq!(fired, 1, "one host fired the tick");
    assert_eq!(a.list_runs(&RunFilter::default()).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_two_hosts_are_read_in_commit_order() {
    let Some((a, b, _schema)) = two_hosts().await else { return };
    let mut tasks = tokio::task::JoinSet::new();
    for host in [Arc::clone(&a), Arc::clone(&b)] {
        tasks.spawn(async move {
            for i in 0..50 {
                host.send_event("tick", &i.to_string(), T0).await.expect("send_event");
            }
        });
    }
    // A reader paging with after_id while events arrive must see every one.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = a.events("tick", T0, after, 7).await.unwrap();
        if let Some(last) = page.last() {
            after = last.id;
        }
        let empty = page.is_empty();
        seen.extend(page.into_iter().map(|e| e.id));
        if tasks.is_empty() && empty {
            break;
        }
        if let Some(joined) = tasks.try_join_next() {
            joined.unwrap();
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(seen.len(), 100, "no event was skipped or read twice");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}
