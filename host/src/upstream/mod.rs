//! `ferry upstream`: a fake of every API the reference pipeline talks to
//! (docs/PIPELINE.md, "The upstream's API"), with seeded fault injection.
//!
//! One axum server on 127.0.0.1 serves the agency's client list, an OAuth
//! token endpoint, six paginated sources (each with its own pagination
//! style), table snapshots, a mail API that dedupes on `Idempotency-Key`,
//! and inspection endpoints under `/_upstream/` that tests and the demo read.
//!
//! - [`data`]: the rows, a pure function of (client, source, week).
//! - [`faults`]: which request fails, a pure function of the seed and the
//!   request (plus a real clock for the meta rate limit).
//! - `state`: the server's memory (request log, tokens, emails, snapshots).
//! - `server`: the routes.
//!
//! [`Upstream::start`] runs it in-process (the demo and the tests do);
//! `ferry upstream` runs it as a command.

pub mod data;
pub mod faults;
mod server;
mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use data::{Source, Week, client_email, client_id, client_name};
pub use faults::Fault;

/// How an upstream behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Seeds the fault decisions (never the data).
    pub seed: u64,
    /// How many faults to inject.
    pub faults: Profile,
    /// Clients `c01`…`cN` (1 to 999).
    pub clients: u32,
    /// When set, every accepted email's attachment is also written to
    /// `<outbox>/<client>-<week>.pdf` (the folder is created).
    pub outbox: Option<PathBuf>,
    /// Meta's global rate limit in requests per second, over the profile's
    /// (`Some(0)` turns it off).
    pub meta_rate_per_sec: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self { seed: 1, faults: Profile::Default, clients: 60, outbox: None, meta_rate_per_sec: None }
    }
}

/// A fault profile: how often each fault happens (docs/PIPELINE.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// No faults (GA4 and Search Console still order rows per token).
    None,
    /// The rates of a bad but ordinary week.
    #[default]
    Default,
    /// Several times the default rates, and a lower meta rate limit.
    Hostile,
}

impl Profile {
    /// `none`, `default` or `hostile`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::Default => "default",
            Profile::Hostile => "hostile",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault profile name that is not `none`, `default` or `hostile`.
#[derive(Debug, thiserror::Error)]
#[error("unknown fault profile `{0}`: use none, default or hostile")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Profile::None),
            "default" => Ok(Profile::Default),
            "hostile" => Ok(Profile::Hostile),
            other => Err(UnknownProfile(other.to_owned())),
        }
    }
}

/// One of the agency's clients, as `GET /agency/v1/clients` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// `c01`…
    pub id: String,
    /// "Aurora Bakery", from [`client_name`].
    pub name: String,
    /// `reports+c01@example.test`.
    pub email: String,
}

impl Client {
    /// Client number `n` (from 1).
    pub fn new(n: u32) -> Self {
        Self { id: client_id(n), name: client_name(n), email: client_email(n) }
    }
}

/// An email the mail API accepted (a duplicate send never makes another).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// `msg_00001`, in order of acceptance.
    pub id: String,
    /// The client whose report address `to` is, if it is one.
    pub client: Option<String>,
    /// The first `YYYY-Www` in the subject, else in the attachment's name.
    pub week: Option<String>,
    pub to: String,
    pub subject: String,
    pub idempotency_key: String,
    /// The first attachment's name.
    pub attachment_filename: String,
    /// The first attachment's size, decoded.
    pub attachment_bytes: u64,
    /// The first attachment's SHA-256, hex.
    pub attachment_sha256: String,
    /// RFC 3339.
    pub received_at: String,
    /// Whether the send was answered 504 although it was accepted
    /// (the `mail-504` fault).
    pub answer_lost: bool,
}

/// The repeated sends of one idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    pub idempotency_key: String,
    /// The client of the email the key first sent.
    pub client: Option<String>,
    /// How many sends came after the first.
    pub count: u64,
}

/// One request in the log (`GET /_upstream/requests`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEntry {
    /// 1, 2, 3… in arrival order; the response's `X-Request-Id`.
    pub id: u64,
    pub method: String,
    /// Without the query.
    pub path: String,
    pub client: Option<String>,
    pub source: Option<Source>,
    pub week: Option<String>,
    /// The page index, from 0.
    pub page: Option<u32>,
    /// None while the request is in flight; 499 when the caller went away.
    pub status: Option<u16>,
    pub fault: Option<Fault>,
    /// How long the answer took.
    pub ms: Option<u64>,
}

/// A table snapshot the warehouse stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub table: String,
    pub client: String,
    pub week: String,
    pub digest: String,
    /// How many row hashes came with it.
    pub rows: usize,
    pub idempotency_key: String,
    pub changed: bool,
    pub previous_digest: Option<String>,
    /// RFC 3339.
    pub stored_at: String,
}

/// Counts over the request log and the mail API (`GET /_upstream/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests logged (everything but `/_upstream/`).
    pub requests: u64,
    /// Requests not answered yet.
    pub in_flight: u64,
    /// Requests that name a source: its pages and its token requests.
    pub by_source: BTreeMap<String, u64>,
    /// Requests that got each fault.
    pub by_fault: BTreeMap<String, u64>,
    /// Requests by response status.
    pub by_status: BTreeMap<String, u64>,
    pub tokens_issued: u64,
    /// Emails accepted.
    pub emails: u64,
    /// Sends that repeated an idempotency key (never sent twice).
    pub duplicates: u64,
    /// Table snapshots stored.
    pub snapshots: u64,
}

/// A running fake upstream.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<state::Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Upstream {
    /// Starts an upstream on a free port of 127.0.0.1.
    pub async fn start(config: Config) -> anyhow::Result<Upstream> {
        Self::start_on(config, 0).await
    }

    /// Starts an upstream on `port` of 127.0.0.1 (0 picks a free one).
    pub async fn start_on(config: Config, port: u16) -> anyhow::Result<Upstream> {
        anyhow::ensure!(
            (1..=data::MAX_CLIENTS).contains(&config.clients),
            "clients must be 1 to {}, not {}",
            data::MAX_CLIENTS,
            config.clients
        );
        if let Some(dir) = &config.outbox {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create the outbox {}", dir.display()))?;
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(state::Shared::new(config, addr));
        let app = server::router(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the upstream's HTTP server failed");
            }
        });
        Ok(Upstream { addr, shared, stop: Some(stop), task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted emails, in order (as `GET /_upstream/emails`).
    pub fn emails(&self) -> Vec<Email> {
        self.shared.lock().emails().to_vec()
    }

    /// The decoded first attachment of email `id`.
    pub fn attachment(&self, id: &str) -> Option<Vec<u8>> {
        self.shared.lock().attachment(id).map(<[u8]>::to_vec)
    }

    /// The keys that were sent more than once.
    pub fn duplicates(&self) -> Vec<Duplicate> {
        self.shared.lock().duplicates().to_vec()
    }

    /// The stored table snapshots, in order.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.shared.lock().snapshots().to_vec()
    }

    /// The answered requests after id `after`, oldest first, up to the
    /// first one still in flight (as `GET /_upstream/requests`).
    pub fn requests(&self, after: u64) -> Vec<RequestEntry> {
        self.shared.lock().requests(after, usize::MAX)
    }

    /// Counts (as `GET /_upstream/stats`).
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// Stops taking connections and waits (up to 5 s) for the requests in
    /// flight.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Upstream {
    /// An upstream dropped without [`Upstream::shutdown`] stops in the
    /// background.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream").field("addr", &self.addr).finish_non_exhaustive()
    }
}
