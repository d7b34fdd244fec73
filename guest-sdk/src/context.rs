//! Time, randomness, secrets, run information and logging, all answered by
//! the host and journaled (so a replay sees the values the live run saw).
//!
//! Prefer these over `std::time::SystemTime::now()` and WASI randomness,
//! which the host does not journal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bindings::ferry::runtime::context as wit;
use crate::bindings::ferry::runtime::types::LogLevel;

/// Largest number of bytes the host returns from one `random-bytes` call.
const RANDOM_CHUNK: usize = 65_536;

/// The current wall-clock time, as journaled by the host.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now_millis())
}

/// The current wall-clock time in milliseconds since the Unix epoch, as
/// journaled by the host.
pub fn now_millis() -> u64 {
    wit::now()
}

/// `len` cryptographically secure random bytes from the host (journaled).
///
/// Lengths above 65,536 take several host calls.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let chunk = (len - out.len()).min(RANDOM_CHUNK);
        // `chunk` is at most 65,536, so it fits in a u32.
        out.extend(wit::random_bytes(chunk as u32));
    }
    out
}

/// A random `u64` from the host's secure random source (journaled).
pub fn random_u64() -> u64 {
    let bytes = random_bytes(8);
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(buf)
}

/// The value of the host secret `name`, or `None` when no such secret is
/// configured. The journal keeps a hash of the value, never the value.
pub fn secret(name: &str) -> Option<String> {
    wit::secret(name)
}

/// Stores `bytes` once in the host's blob store, under their sha256, and
/// returns the reference (`sha256:<hex>`) to hand on instead of the bytes.
/// Use it for large outputs (a PDF, a CSV export): the journal then records
/// the reference and the size, and the bytes are kept once however many
/// steps pass the reference along. At most 32 MiB.
///
/// ```no_run
/// let pdf: Vec<u8> = b"%PDF-1.7 ...".to_vec();
/// let reference = ferry_sdk::put_blob(&pdf);
/// assert!(reference.starts_with("sha256:"));
/// // … and in a later step:
/// let bytes = ferry_sdk::get_blob(&reference).expect("stored above");
/// # assert_eq!(bytes, pdf);
/// ```
pub fn put_blob(bytes: &[u8]) -> String {
    wit::put_blob(bytes)
}

/// The bytes stored under `reference` by [`put_blob`] (in this run or any
/// other), or `None` when nothing is stored under it.
pub fn get_blob(reference: &str) -> Option<Vec<u8>> {
    wit::get_blob(reference)
}

/// Who is running: the run, the step and the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// Id of the run this code executes in (`run_…`).
    pub run_id: String,
    /// Name of the deployment or component being executed.
    pub component: String,
    /// Name the workflow gave this step call; the component name for a run
    /// of a lone step; empty inside a workflow itself.
    pub step: String,
    /// Attempt number of this step call, starting at 1.
    pub attempt: u32,
    /// The same for every attempt of this step call and different for every
    /// other step call: send it downstream so a retried side effect happens
    /// once (see [`crate::http::RequestBuilder::idempotency_key`]).
    pub idempotency_key: String,
}

/// Which run, step and attempt this is (journaled).
pub fn run_info() -> RunInfo {
    let info = wit::run_info();
    RunInfo {
        run_id: info.run_id,
        component: info.component,
        step: info.step,
        attempt: info.attempt,
        idempotency_key: info.idempotency_key,
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Details useful when debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the code recovered from.
    Warn,
    /// A failure.
    Error,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// Writes a line to the run's log (kept with the journal, shown by
/// `ferry show` and the dashboard). The macros [`info!`](crate::info) and
/// friends format and call this.
pub fn log(level: Level, message: &str) {
    wit::log(level.into(), message);
}

/// Logs at [`Level::Trace`]; takes `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log($crate::Level::Trace, &::std::format!($($arg)+)) };
}

/// Logs at [`Level::Debug`]; takes `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)+)) };
}

/// Logs at [`Level::Info`]; takes `format!` arguments.
///
/// ```no_run
/// ferry_sdk::info!("page with {} rows", 20);
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log($crate::Level::Info, &::std::format!($($arg)+)) };
}

/// Logs at [`Level::Warn`]; takes `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)+)) };
}

/// Logs at [`Level::Error`]; takes `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log($crate::Level::Error, &::std::format!($($arg)+)) };
}
