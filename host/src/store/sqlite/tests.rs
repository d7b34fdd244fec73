//! SQLite-only behaviour: opening, errors that name the file, WAL, group
//! commit counters, migration names. The shared behaviour is in the
//! contract suite (`store/contract.rs`).

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::store::contract;

fn temp_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("ferry.db").to_str().expect("UTF-8 path").to_owned();
    (dir, path)
}

fn config_message<T>(result: Result<T>) -> String {
    match result {
        Err(Error::Config(msg)) => msg,
        Err(other) => panic!("expected a Config error, got {other:?}"),
        Ok(_) => panic!("expected a Config error, got a store"),
    }
}

#[tokio::test]
async fn opens_paths_and_urls_creates_the_file_and_uses_wal() {
    let (dir, path) = temp_db();
    let store = SqliteStore::open(&path, Durability::Fsync).await.unwrap();
    assert!(Path::new(&path).exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.read).await.unwrap();
    assert_eq!(mode, "wal");
    store.close().await;

    for url in [
        format!("sqlite://{}", dir.path().join("a.db").display()),
        format!("sqlite:{}", dir.path().join("b.db").display()),
    ] {
        let store = SqliteStore::open(&url, Durability::Buffered).await.unwrap();
        assert!(store.list_runs(&RunFilter::default()).await.unwrap().is_empty());
        store.close().await;
    }
    assert!(dir.path().join("a.db").exists() && dir.path().join("b.db").exists());
}

#[tokio::test]
async fn reopening_keeps_the_data_and_migrates_once() {
    let (_dir, path) = temp_db();
    let harness_component = Component {
        hash: crate::domain::ComponentHash::of(b"\0asm"),
        world: crate::domain::World::Step,
        bytes: b"\0asm".to_vec(),
        created_at: Micros(1),
    };
    let store = SqliteStore::open(&path, Durability::Fsync).await.unwrap();
    assert!(store.put_component(&harness_component).await.unwrap());
    store.close().await;

    let store = SqliteStore::open(&path, Durability::Fsync).await.unwrap();
    assert_eq!(store.component(&harness_component.hash).await.unwrap(), Some(harness_component));
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&store.read).await.unwrap();
    let files = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".sql"))
        .count();
    assert_eq!(usize::try_from(applied).unwrap(), files, "every migration applied once");
    assert!(files >= 2);
    store.close().await;
}

#[tokio::test]
async fn open_errors_name_the_file_and_the_reason() {
    let msg = config_message(SqliteStore::open("/nonexistent-folder/ferry.db", Durability::Fsync).await);
    assert!(msg.contains("cannot open the store at /nonexistent-folder/ferry.db"), "{msg}");

    let (dir, path) = temp_db();
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let msg = config_message(SqliteStore::open(&path, Durability::Fsync).await);
    assert!(msg.contains(&path), "{msg}");

    let folder = dir.path().to_str().unwrap();
    let msg = config_message(SqliteStore::open(folder, Durability::Fsync).await);
    assert!(msg.contains(folder), "{msg}");

    for memory in ["sqlite::memory:", ":memory:", "sqlite://?mode=memory"] {
        let msg = config_message(SqliteStore::open(memory, Durability::Fsync).await);
        assert!(msg.contains("in-memory"), "{msg}");
    }
    assert!(config_message(SqliteStore::open(" ", Durability::Fsync).await).contains("empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let (_dir, path) = temp_db();
    let store = Arc::new(SqliteStore::open(&path, Durability::Fsync).await.unwrap());
    let before = (store.writer_stats().batches(), store.writer_stats().ops());
    contract::concurrent_appends_all_land(Arc::clone(&store) as Arc<dyn Store>).await;
    let batches = store.writer_stats().batches() - before.0;
    let ops = store.writer_stats().ops() - before.1;
    eprintln!("group commit: {ops} writes in {batches} transactions");
    assert!(ops >= 200, "{ops} writes");
    assert!(batches < ops, "group commit: {ops} writes took {batches} transactions");
}

#[test]
fn postgres_migrations_mirror_sqlite_by_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let names = |dialect: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join(dialect))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".sql"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let sqlite = names("sqlite");
    assert!(sqlite.contains(&"0001_initial.sql".to_owned()));
    let postgres = names("postgres");
    // The Postgres backend is not written yet; once it has migrations, the
    // two lists must match.
    if !postgres.is_empty() {
        assert_eq!(postgres, sqlite, "migrations/postgres must mirror migrations/sqlite");
    }
}

/// The claim's queries are planned once and then only bound and stepped:
/// a statement SQLite re-prepares on each use (as it did with a bound
/// `LIMIT ?`) costs a parse and a plan per claim on the writer thread.
#[tokio::test]
async fn writer_statements_are_prepared_once() {
    use rusqlite::StatementStatus;
    let (_dir, path) = temp_db();
    SqliteStore::open(&path, Durability::Buffered).await.unwrap().close().await;
    let conn = open_writer(Path::new(&path), Durability::Buffered).unwrap();
    // Sorts in memory: a temp file per compound query cost ~100 µs a claim.
    let temp_store: i64 = conn.pragma_query_value(None, "temp_store", |r| r.get(0)).unwrap();
    assert_eq!(temp_store, 2, "temp_store = MEMORY");
    for (i, limit) in [1, 8, 64, 3].into_iter().enumerate() {
        let claimed = ops::claim_ready(&conn, "w", std::time::Duration::from_secs(30), Micros(i as i64), limit);
        assert!(claimed.unwrap().is_empty());
    }
    for sql in [ops::UNGATED, ops::QUEUED_CANDIDATES] {
        let st = conn.prepare_cached(sql).unwrap();
        assert_eq!(st.get_status(StatementStatus::Run), 4, "{sql}");
        assert_eq!(st.get_status(StatementStatus::RePrepare), 0, "re-prepared on each use: {sql}");
    }
}

/// Under `Fsync` a batch of lease operations commits without its own
/// fsync (the next durable commit covers it); every other write is synced.
#[tokio::test]
async fn only_lease_batches_skip_the_fsync() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path, Durability::Fsync).await.unwrap();
    let stats = || (store.writer_stats().batches(), store.writer_stats().unsynced());
    let run = contract::queued(&store, RunId::new()).await;
    let before = stats();
    let claimed = store.claim_ready("w", std::time::Duration::from_secs(30), Micros::now(), 4).await.unwrap();
    let (_, lease) = claimed.into_iter().find(|(r, _)| r.id == run.id).expect("the run is claimed");
    let after_claim = stats();
    assert_eq!((after_claim.0 - before.0, after_claim.1 - before.1), (1, 1), "the claim commits unsynced");
    store.append(&lease, vec![contract::entry(run.id, 1, 1, 0)]).await.unwrap();
    let after_append = stats();
    assert_eq!((after_append.0 - after_claim.0, after_append.1 - after_claim.1), (1, 0), "the append is synced");
    // A second claim and an append after it: the connection goes back to
    // synced commits each time.
    assert!(store.claim_ready("w", std::time::Duration::from_secs(30), Micros::now(), 4).await.unwrap().is_empty());
    store.append(&lease, vec![contract::entry(run.id, 2, 1, 0)]).await.unwrap();
    assert_eq!(stats().1 - after_append.1, 1);
    assert_eq!(store.journal(&run.id).await.unwrap().len(), 2);
    store.close().await;

    let buffered = SqliteStore::open(&path, Durability::Buffered).await.unwrap();
    assert!(buffered.claim_ready("w", std::time::Duration::from_secs(30), Micros::now(), 4).await.unwrap().is_empty());
    assert_eq!(buffered.writer_stats().unsynced(), 0, "buffered commits are never synced: nothing to count");
    buffered.close().await;
}
