//! The upstream's memory: the request log, issued tokens, how often each
//! page was asked for, accepted emails and their attachments, table
//! snapshots, and the meta rate limiter.
//!
//! All of it sits behind one std `Mutex`, taken for short, synchronous
//! updates and never held across an `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::data::{self, Source, Week, client_id};
use super::faults::{Fault, Faults, RateLimiter};
use super::{Config, Duplicate, Email, RequestEntry, Snapshot, Stats};

/// What every handler shares.
pub struct Shared {
    pub clients: u32,
    pub seed: u64,
    pub faults: Faults,
    pub outbox: Option<PathBuf>,
    /// Where the server listens (for links when a request has no `Host`).
    pub addr: SocketAddr,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(config: Config, addr: SocketAddr) -> Self {
        let rates = config.faults.rates();
        let limit = config.meta_rate_per_sec.unwrap_or(rates.meta_per_sec);
        let state = State { meta_limiter: (limit > 0).then(|| RateLimiter::new(limit)), ..State::default() };
        Self {
            clients: config.clients,
            seed: config.seed,
            faults: Faults::new(config.seed, rates),
            outbox: config.outbox,
            addr,
            state: Mutex::new(state),
        }
    }

    /// The state; a handler that panicked while holding it leaves it usable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A token the token endpoint issued.
#[derive(Debug, Clone)]
pub struct Token {
    pub client: u32,
    pub source: Source,
    /// The `token-expired` fault: the first token of a chosen
    /// (client, source) is expired by the time it is used.
    pub expired: bool,
}

/// What the log learns of a request once it is answered.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub client: Option<String>,
    pub source: Option<Source>,
    pub week: Option<Week>,
    pub page: Option<u32>,
    pub fault: Option<Fault>,
}

/// The answer to a table snapshot, stored under its idempotency key.
#[derive(Debug, Clone)]
pub struct SnapshotAnswer {
    pub changed: bool,
    pub previous_digest: Option<String>,
}

/// The answer to a mail send.
#[derive(Debug, Clone)]
pub enum Sent {
    /// Accepted now; `lost` when the answer is to be a 504.
    New { email: Email, lost: bool },
    /// The key was sent before.
    Duplicate { id: String, client: Option<String> },
}

#[derive(Default)]
pub struct State {
    /// Entry `i` has id `i + 1`.
    log: Vec<RequestEntry>,
    /// Ids below this are all answered.
    answered_below: u64,
    tokens: HashMap<String, Token>,
    token_calls: HashMap<(u32, Source), u64>,
    asks: HashMap<(u32, Source, Week, u32), u32>,
    emails: Vec<Email>,
    /// The first attachment of each email, by the email's position.
    attachments: Vec<Vec<u8>>,
    email_by_key: HashMap<String, usize>,
    duplicates: Vec<Duplicate>,
    duplicate_by_key: HashMap<String, usize>,
    snapshots: Vec<Snapshot>,
    snapshot_by_key: HashMap<String, SnapshotAnswer>,
    meta_limiter: Option<RateLimiter>,
}

impl State {
    /// Logs the arrival of a request; its id.
    pub fn begin(&mut self, method: &str, path: &str) -> u64 {
        let id = self.log.len() as u64 + 1;
        self.log.push(RequestEntry {
            id,
            method: method.to_owned(),
            path: path.to_owned(),
            client: None,
            source: None,
            week: None,
            page: None,
            status: None,
            fault: None,
            ms: None,
        });
        id
    }

    /// Logs the answer to request `id`.
    pub fn finish(&mut self, id: u64, status: u16, info: Info, ms: u64) {
        let Some(entry) = id.checked_sub(1).and_then(|i| self.log.get_mut(i as usize)) else { return };
        entry.client = info.client;
        entry.source = info.source;
        entry.week = info.week.map(|w| w.to_string());
        entry.page = info.page;
        entry.fault = info.fault;
        entry.status = Some(status);
        entry.ms = Some(ms);
        while self.log.get(self.answered_below as usize).is_some_and(|e| e.status.is_some()) {
            self.answered_below += 1;
        }
    }

    /// Answered requests after `after`, oldest first, at most `limit`, and
    /// none past the first request still in flight (so a reader paging by
    /// id never skips an answer).
    pub fn requests(&self, after: u64, limit: usize) -> Vec<RequestEntry> {
        let from = after.min(self.answered_below) as usize;
        let to = self.answered_below as usize;
        self.log[from..to].iter().take(limit).cloned().collect()
    }

    /// Issues a token for (client, source): `tok_<n>_<hex>`.
    pub fn issue_token(&mut self, seed: u64, faults: &Faults, client: u32, source: Source) -> String {
        let n = self.tokens.len() as u64 + 1;
        let calls = self.token_calls.entry((client, source)).or_default();
        *calls += 1;
        let expired = *calls == 1 && faults.token_expires(client, source);
        let tag = data::sha256(&format!("{seed}/token/{n}/{}/{source}", client_id(client)));
        let token = format!("tok_{n}_{}", hex::encode(&tag[..8]));
        self.tokens.insert(token.clone(), Token { client, source, expired });
        token
    }

    pub fn token(&self, token: &str) -> Option<Token> {
        self.tokens.get(token).cloned()
    }

    /// Counts one more ask for a page; the count, from 1.
    pub fn ask(&mut self, client: u32, source: Source, week: Week, page: u32) -> u32 {
        let n = self.asks.entry((client, source, week, page)).or_default();
        *n = n.saturating_add(1);
        *n
    }

    /// Admits a meta request under the global rate limit, or says in how
    /// many seconds to retry.
    pub fn admit_meta(&mut self, now: Instant) -> Result<(), u64> {
        match &mut self.meta_limiter {
            Some(limiter) => limiter.admit(now),
            None => Ok(()),
        }
    }

    /// Accepts an email, or counts a duplicate of its key.
    pub fn send(&mut self, email: Email, attachment: Vec<u8>, lost: bool) -> Sent {
        if let Some(&i) = self.email_by_key.get(&email.idempotency_key) {
            let first = &self.emails[i];
            let (id, client) = (first.id.clone(), first.client.clone());
            let d = match self.duplicate_by_key.get(&email.idempotency_key) {
                Some(&d) => d,
                None => {
                    self.duplicates.push(Duplicate {
                        idempotency_key: email.idempotency_key.clone(),
                        client: client.clone(),
                        count: 0,
                    });
                    self.duplicate_by_key.insert(email.idempotency_key.clone(), self.duplicates.len() - 1);
                    self.duplicates.len() - 1
                }
            };
            self.duplicates[d].count += 1;
            return Sent::Duplicate { id, client };
        }
        let email = Email { id: format!("msg_{:05}", self.emails.len() + 1), answer_lost: lost, ..email };
        self.email_by_key.insert(email.idempotency_key.clone(), self.emails.len());
        self.emails.push(email.clone());
        self.attachments.push(attachment);
        Sent::New { email, lost }
    }

    pub fn emails(&self) -> &[Email] {
        &self.emails
    }

    pub fn attachment(&self, id: &str) -> Option<&[u8]> {
        let i = self.emails.iter().position(|e| e.id == id)?;
        self.attachments.get(i).map(Vec::as_slice)
    }

    pub fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// Stores a snapshot, or returns the first answer to its key.
    pub fn snapshot(&mut self, snapshot: Snapshot, week: Week) -> SnapshotAnswer {
        if let Some(answer) = self.snapshot_by_key.get(&snapshot.idempotency_key) {
            return answer.clone();
        }
        // The latest snapshot of (client, table) from the latest earlier week.
        let previous = self
            .snapshots
            .iter()
            .filter(|s| s.client == snapshot.client && s.table == snapshot.table)
            .filter_map(|s| Week::parse(&s.week).filter(|w| *w < week).map(|w| (w, s)))
            .fold(None, |best: Option<(Week, &Snapshot)>, (w, s)| match best {
                Some((bw, _)) if bw > w => best,
                _ => Some((w, s)),
            })
            .map(|(_, s)| s.digest.clone());
        let changed = previous.as_deref() != Some(snapshot.digest.as_str());
        let answer = SnapshotAnswer { changed, previous_digest: previous };
        self.snapshot_by_key.insert(snapshot.idempotency_key.clone(), answer.clone());
        self.snapshots.push(Snapshot { changed, previous_digest: answer.previous_digest.clone(), ..snapshot });
        answer
    }

    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            requests: self.log.len() as u64,
            tokens_issued: self.tokens.len() as u64,
            emails: self.emails.len() as u64,
            duplicates: self.duplicates.iter().map(|d| d.count).sum(),
            snapshots: self.snapshots.len() as u64,
            ..Stats::default()
        };
        for e in &self.log {
            if let Some(source) = e.source {
                *stats.by_source.entry(source.to_string()).or_default() += 1;
            }
            if let Some(fault) = e.fault {
                *stats.by_fault.entry(fault.as_str().to_owned()).or_default() += 1;
            }
            match e.status {
                Some(status) => *stats.by_status.entry(status.to_string()).or_default() += 1,
                None => stats.in_flight += 1,
            }
        }
        stats
    }
}

/// Whether `value` is a non-empty hex string (at most 128 digits).
pub fn is_hex(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_hexdigit())
}
