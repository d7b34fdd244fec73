//! `ferry serve`: wiring and shutdown order. Store → engine → workers and
//! the cron loop → HTTP API; on SIGINT/SIGTERM the API stops accepting,
//! workers stop claiming and get a grace period, runs still in flight are
//! handed back to the store (due at once) for the next start.

pub mod cron;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, AppState};
use crate::domain::{Micros, NewRun, RunId};
use crate::engine::{Engine, Secrets};
use crate::store::Store;
use crate::workflow::{RunPolicy, StepResolver, Until, Worker, WorkerConfig};

/// Daemon settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// How long runs in flight may take to finish on shutdown.
    pub grace: Duration,
    pub worker: WorkerConfig,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to listen on {0} without an API token: set FERRY_TOKEN (or --token-file), or listen on a loopback address"
    )]
    NoToken(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("{0}")]
    Worker(String),
}

/// Runs the daemon until `shutdown` resolves.
pub async fn serve(
    config: Config,
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    secrets: Secrets,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    if !config.listen.ip().is_loopback() && config.token.as_deref().is_none_or(str::is_empty) {
        return Err(StartError::NoToken(config.listen));
    }
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.map_err(|e| StartError::Bind(config.listen, e))?;
    serve_on(listener, config, store, engine, secrets, shutdown, true).await
}

/// Runs the daemon on a listener already bound (to a free port, say) until
/// `shutdown` resolves; `announce` prints the start and stop lines.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    secrets: Secrets,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    announce: bool,
) -> Result<(), StartError> {
    let bound = listener.local_addr().map_err(|e| StartError::Bind(config.listen, e))?;
    if !bound.ip().is_loopback() && config.token.as_deref().is_none_or(str::is_empty) {
        return Err(StartError::NoToken(bound));
    }
    let steps = Arc::new(StepResolver::from_deployments(engine.clone(), store.clone()));
    let worker = Arc::new(
        Worker::new(store.clone(), engine.clone(), steps, Arc::new(secrets), config.worker.clone())
            .map_err(StartError::Worker)?,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let state = AppState {
        store: store.clone(),
        engine,
        token: config.token.clone().map(Arc::new),
        worker: Some(worker.clone()),
        ended: Some(worker.ended_runs()),
    };
    let app = api::router(state);
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|s| *s).await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the HTTP server failed");
        }
    });
    let cron = tokio::spawn(cron_loop(store.clone(), stop_rx.clone()));
    let grace = config.grace;
    let work = tokio::spawn(async move {
        let worked = worker.run(Until::Shutdown(stop_rx, grace)).await;
        if let Err(e) = &worked {
            // Said when it happens: the API still answers, but no run moves.
            tracing::error!(error = %e, "the worker stopped with an error: this daemon executes no more runs");
        }
        worked
    });
    tracing::info!(address = %bound, "ferry serve is listening");
    if announce {
        eprintln!("ferry serve: listening on http://{bound} (Ctrl-C or SIGTERM stops it cleanly)");
    }

    shutdown.await;
    if announce {
        eprintln!("ferry serve: stopping: no new work; runs in flight get {grace:?} to finish");
    }
    let _ = stop_tx.send(true);
    let _ = http.await;
    let _ = cron.await;
    // The worker's own error was logged when it happened.
    if let Err(e) = work.await {
        tracing::error!(error = %e, "the worker task failed");
    }
    if announce {
        eprintln!("ferry serve: stopped");
    }
    Ok(())
}

/// A tick fired this long after its time counts as late.
const LATE_AFTER: Duration = Duration::from_millis(1500);

/// Fires due schedule ticks, each once across hosts and restarts.
async fn cron_loop(store: Arc<dyn Store>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = fire_due(store.as_ref()).await {
            tracing::warn!(error = %e, "checking schedules failed; trying again");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Fires every schedule whose tick has come. A tick missed while no daemon
/// ran fires once, marked late; the next tick is the first after now.
pub async fn fire_due(store: &dyn Store) -> Result<(), crate::store::Error> {
    let now = Micros::now();
    for s in store.schedules().await? {
        if s.next_fire_at > now {
            continue;
        }
        let next = match cron::next_tick(&s.cron, &s.timezone, now) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(schedule = %s.name, error = %e, "schedule cannot compute its next tick");
                continue;
            }
        };
        let Some(d) = store.deployment(&s.workflow, None).await? else {
            tracing::warn!(schedule = %s.name, workflow = %s.workflow, "the schedule's workflow is not deployed; skipping the tick");
            continue;
        };
        // The loop looks every 250 ms: a tick older than that by far was
        // missed while no daemon ran.
        let late = now.since(s.next_fire_at) > LATE_AFTER;
        let input: serde_json::Value = serde_json::from_str(&s.input).unwrap_or(serde_json::Value::Null);
        let origin =
            format!("schedule {} tick {}{}", s.name, s.next_fire_at, if late { " (late: fired on start)" } else { "" });
        let run = NewRun {
            id: RunId::new(),
            kind: d.world,
            component: d.name.clone(),
            component_hash: d.hash.clone(),
            input: s.input.clone(),
            idempotency_key: Some(format!("schedule:{}:{}", s.name, s.next_fire_at.0)),
            created_at: now,
            origin: Some(origin),
            flow: d.config.flow_for(&input),
            held: false,
        };
        if let Some(run) = store.fire_schedule(&s.name, s.next_fire_at, next, run).await? {
            tracing::info!(schedule = %s.name, run = %run.id, late, "schedule fired");
        }
    }
    Ok(())
}

/// The worker settings a daemon uses unless told otherwise.
pub fn default_worker(owner: String) -> WorkerConfig {
    WorkerConfig { owner, policy: RunPolicy::default(), ..WorkerConfig::default() }
}
