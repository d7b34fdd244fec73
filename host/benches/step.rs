//! One step invocation, measured three ways in the same run:
//! - `baseline`: `run` called on an instance that stays alive (the floor);
//! - `fresh_instance`: what every attempt costs in the engine: a new store,
//!   instantiation from `InstancePre`, the call, journal entries, drop;
//! - `journaled/<durability>`: the same plus the attempt's entries committed
//!   to a SQLite store through the group-commit writer.
//!
//! Then `workflow/12_sequential_steps`: the seed workflow (`wf-seq`), 12
//! sequential echo steps, created and executed to completion by a worker,
//! every attempt committed with fsync before the workflow goes on.
//!
//! The step is `steps/fixtures/echo` on a ~200-byte JSON input. Per-step
//! overhead = fresh_instance − baseline. Run: `cargo bench -p ferry --bench step`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ferry::domain::{Limits, Micros, NewRun, RunId, World};
use ferry::engine::{AllowList, Engine, EngineConfig, Secrets, StepCall};
use ferry::store::sqlite::SqliteStore;
use ferry::store::{Component, Durability, Store};
use ferry::workflow::{StepResolver, Until, Worker, WorkerConfig};

const INPUT: &str = r#"{"client":"acme-co","week":"2026-W49","source":"meta-ads","rows":[{"date":"2026-12-01","spend":1234.5,"clicks":321},{"date":"2026-12-02","spend":987.25,"clicks":298}],"cursor":null}"#;

/// Builds the echo step and the 12-step workflow; returns the folder.
fn build_guests() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("e2e-steps");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", "echo", "-p", "wf-seq", "--manifest-path"])
        .arg(root.join("steps").join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo to build the echo step");
    assert!(status.success(), "building the bench guests failed");
    target.join("wasm32-wasip2/release")
}

fn call(run_id: RunId, seq: u32) -> StepCall {
    StepCall {
        run_id,
        component: "echo".into(),
        step: "echo".into(),
        seq,
        attempt: 1,
        input: INPUT.into(),
        limits: Limits::default(),
        allow: AllowList::default(),
        secrets: Arc::new(Secrets::default()),
        blobs: ferry::engine::Blobs::None,
        replay: None,
        changed: false,
        settle: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let guests = build_guests();
    let bytes = std::fs::read(guests.join("echo.wasm")).expect("echo.wasm");
    let engine = Arc::new(Engine::new(EngineConfig::default()).expect("engine"));
    let loaded = rt.block_on(engine.load(&bytes)).expect("load echo");

    let mut group = c.benchmark_group("step");
    let mut live = rt.block_on(engine.live_instance(&loaded)).expect("instantiate");
    group.bench_function("baseline", |b| {
        b.iter(|| rt.block_on(live.call(INPUT)).expect("call").expect("ok"));
    });
    group.bench_function("fresh_instance", |b| {
        let run_id = RunId::new();
        b.to_async(&rt).iter(|| {
            let engine = engine.clone();
            let loaded = loaded.clone();
            async move {
                let a = engine.run_step(&loaded, call(run_id, 0)).await;
                assert!(a.outcome.is_ok());
            }
        });
    });
    for durability in [Durability::Fsync, Durability::Buffered] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("bench.db");
        let (store, lease) = rt.block_on(async {
            let store = SqliteStore::open(db.to_str().expect("path"), durability).await.expect("store");
            store
                .put_component(&Component {
                    hash: loaded.hash.clone(),
                    world: World::Step,
                    bytes: bytes.clone(),
                    created_at: Micros::now(),
                })
                .await
                .expect("put");
            let run = NewRun {
                id: RunId::new(),
                kind: World::Step,
                component: "echo".into(),
                component_hash: loaded.hash.clone(),
                input: INPUT.into(),
                idempotency_key: None,
                created_at: Micros::now(),
                origin: None,
                flow: Default::default(),
                held: false,
            };
            let id = run.id;
            store.create_run(run).await.expect("create");
            let lease =
                store.claim(&id, "bench", std::time::Duration::from_secs(3600), Micros::now()).await.expect("claim");
            (Arc::new(store), lease)
        });
        let seq = Arc::new(std::sync::atomic::AtomicU32::new(0));
        group.bench_function(format!("journaled/{durability:?}").to_lowercase(), |b| {
            b.to_async(&rt).iter(|| {
                let (engine, loaded, store, lease, seq) =
                    (engine.clone(), loaded.clone(), store.clone(), lease.clone(), seq.clone());
                async move {
                    let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let a = engine.run_step(&loaded, call(lease.run_id, n)).await;
                    let mut entries = vec![a.entry];
                    entries.extend(a.children);
                    store.append(&lease, entries).await.expect("append");
                }
            });
        });
    }
    group.finish();

    // The seed workflow: 12 sequential echo steps, fully journaled, fsync.
    let mut group = c.benchmark_group("workflow");
    group.sample_size(20);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("wf.db");
    let (store, worker, wf) = rt.block_on(async {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(db.to_str().expect("path"), Durability::Fsync).await.expect("store"));
        let steps =
            Arc::new(StepResolver::new(engine.clone(), store.clone(), Default::default(), vec![guests.clone()]));
        let worker =
            Worker::new(store.clone(), engine.clone(), steps, Arc::new(Secrets::default()), WorkerConfig::default())
                .expect("worker");
        let wf_bytes = std::fs::read(guests.join("wf_seq.wasm")).expect("wf_seq.wasm");
        let wf = engine.load(&wf_bytes).await.expect("load wf-seq");
        store
            .put_component(&Component {
                hash: wf.hash.clone(),
                world: World::Workflow,
                bytes: wf_bytes,
                created_at: Micros::now(),
            })
            .await
            .expect("put");
        (store, worker, wf)
    });
    let input = format!(r#"{{"steps":12,"payload":{INPUT}}}"#);
    group.throughput(criterion::Throughput::Elements(12));
    group.bench_function("12_sequential_steps/fsync", |b| {
        b.to_async(&rt).iter(|| {
            let (store, worker, hash, input) = (store.clone(), &worker, wf.hash.clone(), input.clone());
            async move {
                let run = NewRun {
                    id: RunId::new(),
                    kind: World::Workflow,
                    component: "wf-seq".into(),
                    component_hash: hash,
                    input,
                    idempotency_key: None,
                    created_at: Micros::now(),
                    origin: None,
                    flow: Default::default(),
                    held: false,
                };
                let id = run.id;
                store.create_run(run).await.expect("create");
                worker.run(Until::Final(id)).await.expect("run");
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
