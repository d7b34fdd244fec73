//! A run's journal writes on their way to the store.
//!
//! The run does not wait for a step's entry to commit before it goes on: it
//! hands the entry over and computes, and the next step runs while the
//! commit and its fsync are in flight. What leaves the run waits instead:
//! an outbound request, a child run, the run's end. Each of those awaits
//! [`InFlight::durable`] (or [`InFlight::rest`]) first, so nothing outside
//! the run ever sees work whose journal could still be lost; after a crash
//! the run resumes from what is durable and computes the same again.
//! docs/DECISIONS.md gives the argument.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::future::BoxFuture;

use super::run::append_retrying;
use crate::domain::Entry;
use crate::store::{self, Lease, Pending, Store};

/// Entries a run may compute ahead of the append in flight before it waits
/// for that append: bounds the memory a run holds while the store is slow,
/// and the work a crash makes it redo.
const MAX_AHEAD: usize = 256;

/// A run's appends handed to the store and not yet known durable.
pub struct InFlight {
    store: Arc<dyn Store>,
    lease: Lease,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The append the store is committing, with its entries (to try again
    /// if the store was unavailable). One at a time: the next is sent only
    /// once this one landed, so the journal always holds a prefix of what
    /// the run computed, never a later write behind a failed one.
    sent: Option<(Pending, Vec<Entry>)>,
    /// Entries computed while `sent` commits: they go in the next append,
    /// together.
    next: Vec<Entry>,
    /// Why an append failed, once one did: every later call fails too, and
    /// what the run computed since is discarded.
    failed: Option<String>,
}

impl InFlight {
    pub fn new(store: Arc<dyn Store>, lease: Lease) -> Self {
        Self { store, lease, state: tokio::sync::Mutex::default() }
    }

    /// Starts with `first` in flight: the commit that created the run, for
    /// a run that starts executing before it lands (`Worker::submit`).
    /// Everything the run writes goes after it, and fails if it did.
    #[must_use]
    pub fn after(mut self, first: Pending) -> Self {
        self.state.get_mut().sent = Some((first, Vec::new()));
        self
    }

    /// Hands `entries` on to the store without waiting for their commit:
    /// they are sent now if nothing else is committing, else with the next
    /// append. `Err` says an earlier append failed (the lease moved, the
    /// store stayed unavailable): the run must stop.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<(), String> {
        let mut state = self.state.lock().await;
        state.next.extend(entries);
        if let Some((pending, _)) = &mut state.sent {
            // A look, not a wait: has the one in flight landed meanwhile?
            let look = pending.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            match look {
                Poll::Pending if state.next.len() < MAX_AHEAD => return state.failed.clone().map_or(Ok(()), Err),
                Poll::Pending => self.wait_sent(&mut state).await,
                Poll::Ready(landed) => {
                    let entries = state.sent.take().map(|(_, e)| e).unwrap_or_default();
                    self.landed(&mut state, landed, entries).await;
                }
            }
        }
        self.send(&mut state).await;
        state.failed.clone().map_or(Ok(()), Err)
    }

    /// Waits until every entry handed over so far is durable.
    pub async fn durable(&self) -> Result<(), String> {
        let mut state = self.state.lock().await;
        loop {
            self.wait_sent(&mut state).await;
            if state.failed.is_some() || state.next.is_empty() {
                return state.failed.clone().map_or(Ok(()), Err);
            }
            self.send(&mut state).await;
        }
    }

    /// For the run's last write (its finish or park): waits for the append
    /// in flight and takes the entries not yet sent, for the caller to
    /// write in the same transaction as the run's end, which saves a
    /// commit. Nothing may be handed over after.
    pub async fn rest(&self) -> Result<Vec<Entry>, String> {
        let mut state = self.state.lock().await;
        self.wait_sent(&mut state).await;
        match &state.failed {
            Some(why) => Err(why.clone()),
            None => Ok(std::mem::take(&mut state.next)),
        }
    }

    /// Waits for the append in flight, if any.
    async fn wait_sent(&self, state: &mut State) {
        if let Some((pending, entries)) = state.sent.take() {
            let landed = pending.await;
            self.landed(state, landed, entries).await;
        }
    }

    /// Sends the entries waiting, unless an append is in flight or one
    /// failed.
    async fn send(&self, state: &mut State) {
        if state.failed.is_some() || state.sent.is_some() || state.next.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut state.next);
        match self.store.append_started(&self.lease, entries.clone()).await {
            Ok(pending) => state.sent = Some((pending, entries)),
            Err(store::Error::Unavailable(_)) => {
                let landed = append_retrying(self.store.as_ref(), &self.lease, entries).await;
                self.landed(state, landed, Vec::new()).await;
            }
            Err(e) => self.landed(state, Err(e), Vec::new()).await,
        }
    }

    /// Records how an append ended; one the store could not take is tried
    /// again for a few seconds first.
    async fn landed(&self, state: &mut State, landed: store::Result<()>, entries: Vec<Entry>) {
        let landed = match landed {
            Err(store::Error::Unavailable(_)) if !entries.is_empty() => {
                append_retrying(self.store.as_ref(), &self.lease, entries).await
            }
            other => other,
        };
        if let Err(e) = landed {
            state.failed = Some(e.to_string());
            state.next.clear();
        }
    }
}

/// The gate a step's sandbox awaits before it acts on the world.
impl crate::engine::Settle for InFlight {
    fn settle(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.durable())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{EntryKey, Micros, RunId};
    use crate::engine::Settle;
    use crate::store::contract::{Harness, entry, queued};

    /// A claimed run's appends on a fresh SQLite store.
    async fn claimed() -> (Arc<InFlight>, RunId, Harness) {
        let harness = crate::store::sqlite::test_harness().await.expect("the SQLite harness");
        let store = harness.store.clone();
        let run = queued(&*store, RunId::new()).await;
        let lease = store.claim(&run.id, "w1", Duration::from_secs(30), Micros::now()).await.expect("claim");
        (Arc::new(InFlight::new(store, lease)), run.id, harness)
    }

    async fn keys(harness: &Harness, id: &RunId) -> Vec<EntryKey> {
        harness.store.journal(id).await.expect("the journal").iter().map(|e| e.key).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_journal_holds_a_prefix_and_the_rest_goes_with_the_end() {
        let (appends, id, harness) = claimed().await;
        for seq in 1..=5 {
            appends.append(vec![entry(id, seq, 1, 0)]).await.expect("handed over");
        }
        // However the commits fell, what landed is the first entries in
        // order and the rest is every later one, nothing lost or repeated.
        let rest: Vec<EntryKey> = appends.rest().await.expect("no failure").iter().map(|e| e.key).collect();
        let mut all = keys(&harness, &id).await;
        all.extend(rest);
        assert_eq!(all, (1..=5).map(|seq| EntryKey::call(seq, 1)).collect::<Vec<_>>());

        appends.append(vec![entry(id, 6, 1, 0)]).await.expect("handed over");
        appends.settle().await.expect("the gate opens once it landed");
        assert_eq!(keys(&harness, &id).await.last(), Some(&EntryKey::call(6, 1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_waits_once_it_is_max_ahead_of_a_commit_that_does_not_land() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("ferry.db");
        let path = path.to_str().expect("a UTF-8 path").to_owned();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(&path, crate::store::Durability::Buffered).await.expect("a store"),
        );
        let id = queued(&*store, RunId::new()).await.id;
        let lease = store.claim(&id, "w1", Duration::from_secs(30), Micros::now()).await.expect("claim");
        let appends = Arc::new(InFlight::new(store.clone(), lease));

        // Another connection holds the write lock: the first append waits
        // for it, and the run computes ahead until the bound.
        let blocker = rusqlite::Connection::open(&path).expect("a second connection");
        blocker.execute_batch("BEGIN IMMEDIATE").expect("the write lock");
        let total = MAX_AHEAD as u32 + 10;
        let handed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn({
            let (appends, handed) = (appends.clone(), handed.clone());
            async move {
                for seq in 1..=total {
                    appends.append(vec![entry(id, seq, 1, 0)]).await?;
                    handed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok::<_, String>(())
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(4);
        while handed.load(std::sync::atomic::Ordering::SeqCst) < MAX_AHEAD {
            assert!(std::time::Instant::now() < deadline, "the run never got {MAX_AHEAD} entries ahead");
            tokio::task::yield_now().await;
        }
        // The one sent plus MAX_AHEAD - 1 waiting: the next append waits
        // (without the bound, all of them are handed over within this).
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(handed.load(std::sync::atomic::Ordering::SeqCst), MAX_AHEAD, "no further ahead");
        assert!(!task.is_finished());

        blocker.execute_batch("ROLLBACK").expect("the lock released");
        task.await.expect("the task").expect("every append handed over");
        appends.durable().await.expect("all landed");
        let want: Vec<EntryKey> = (1..=total).map(|seq| EntryKey::call(seq, 1)).collect();
        let got: Vec<EntryKey> = store.journal(&id).await.expect("the journal").iter().map(|e| e.key).collect();
        assert_eq!(got, want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_failed_append_nothing_lands_and_the_gate_stays_shut() {
        let (appends, id, harness) = claimed().await;
        appends.append(vec![entry(id, 1, 1, 0)]).await.expect("handed over");
        appends.durable().await.expect("landed");
        // Another worker takes the run over: this run's later appends fail,
        // and so does everything that waits for them.
        let later = Micros::now().plus(Duration::from_secs(60));
        harness.store.claim(&id, "w2", Duration::from_secs(30), later).await.expect("taken over");
        for seq in 2..=4 {
            // A failure may surface here already, or only at the wait.
            let _ = appends.append(vec![entry(id, seq, 1, 0)]).await;
        }
        let why = appends.settle().await.expect_err("the lease moved");
        assert!(why.contains("lease"), "{why}");
        assert_eq!(appends.durable().await, Err(why.clone()), "the failure sticks");
        assert_eq!(appends.rest().await.map(|r| r.len()), Err(why.clone()));
        assert_eq!(appends.append(vec![entry(id, 5, 1, 0)]).await, Err(why));
        assert_eq!(keys(&harness, &id).await, [EntryKey::call(1, 1)], "nothing after the lease moved");
    }
}
