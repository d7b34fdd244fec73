//! Rerun from a step: a new run, linked to the original, that keeps the
//! original's journal before the step and executes the step and everything
//! after it for real.

use std::time::Duration;

use crate::domain::{ComponentHash, EntryKind, Micros, NewRun, Run, RunId};
use crate::store::{self, Created, Park, Store};

/// Why a rerun cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    #[error("no run {0}")]
    NoRun(RunId),
    #[error("run {run} has no step call named `{from}`; its step calls: {known}")]
    NoStep { run: RunId, from: String, known: String },
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Creates the rerun of `id` from the step call named `from`, on the
/// workflow component `component` (default: the original's), with the
/// journal before that call copied over; the run is left due at once for
/// a worker. Returns the new run and how many entries it kept.
pub async fn start_rerun(
    store: &dyn Store,
    owner: &str,
    id: &RunId,
    from: &str,
    component: Option<ComponentHash>,
) -> Result<(Run, usize), RerunError> {
    let run = store.run(id).await?.ok_or(RerunError::NoRun(*id))?;
    let journal = store.journal(id).await?;
    let Some(first) = journal.iter().filter(|e| e.kind == EntryKind::Step && e.name == from).map(|e| e.key.seq).min()
    else {
        let mut names: Vec<&str> =
            journal.iter().filter(|e| e.kind == EntryKind::Step).map(|e| e.name.as_str()).collect();
        names.dedup();
        return Err(RerunError::NoStep { run: *id, from: from.to_owned(), known: names.join(", ") });
    };
    let created = store
        .create_run(NewRun {
            id: RunId::new(),
            kind: run.kind,
            component: run.component.clone(),
            component_hash: component.unwrap_or_else(|| run.component_hash.clone()),
            input: run.input.clone(),
            idempotency_key: None,
            created_at: Micros::now(),
            origin: Some(format!("rerun of {id} from `{from}`")),
            flow: Default::default(),
            // No worker may take it before the kept journal is copied.
            held: true,
        })
        .await?;
    let Created::New(new_run) = created else {
        return Err(store::Error::Conflict("a run with the new id already exists".into()).into());
    };
    // The run is held (waiting, no wake time): copy the journal before the
    // step under it, fenced by a lease, then hand it to the workers, due at
    // once.
    let lease = store.claim(&new_run.id, owner, Duration::from_secs(60), Micros::now()).await?;
    let kept: Vec<_> = journal
        .into_iter()
        .filter(|e| e.key.seq < first)
        .map(|mut e| {
            e.run_id = new_run.id;
            e
        })
        .collect();
    let count = kept.len();
    store.park(&lease, kept, Park { wake_at: Some(Micros::now()), event: None }).await?;
    let run = store.run(&new_run.id).await?.ok_or(RerunError::NoRun(new_run.id))?;
    Ok((run, count))
}
