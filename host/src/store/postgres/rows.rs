//! Rows as Postgres returns them, their conversion to domain types, and the
//! mapping of sqlx errors to [`store::Error`](crate::store::Error).
//!
//! The row shapes and conversions are those of the SQLite backend (same
//! columns, same checks): a bad value is [`Error::Corrupt`] naming the row
//! and the column, never a panic.
use std::fmt::Display;
use std::str::FromStr;

use crate::domain::{
    ComponentHash, Deployment, DeploymentConfig, Entry, EntryKey, EntryStatus, Event, Micros, Run, RunError, Schedule,
    World,
};
use crate::store::{Component, Error};

/// The columns of [`RunRow`], in a literal so queries stay `&'static str`
/// (prepared once per connection and cached).
macro_rules! run_columns {
    () => {
        "id, kind, component, component_hash, input, status, output, error_kind, error_message, \
         idempotency_key, created_at, started_at, finished_at, lease_owner, lease_epoch, \
         lease_expires_at, wake_at, waiting_on, origin"
    };
}

/// The columns of [`EventRow`].
macro_rules! event_columns {
    () => {
        "id, name, data, created_at"
    };
}

/// The columns of [`DeploymentRow`].
macro_rules! deployment_columns {
    () => {
        "name, version, hash, world, config, active, created_at"
    };
}

/// The columns of [`ScheduleRow`].
macro_rules! schedule_columns {
    () => {
        "name, workflow, cron, timezone, input, next_fire_at, last_fired_at, created_at"
    };
}

/// The columns of [`EntryRow`].
macro_rules! entry_columns {
    () => {
        "run_id, seq, attempt, child, kind, name, request, request_hash, response, status, error, \
         started_at, finished_at, fuel, component"
    };
}

pub(super) use {deployment_columns, entry_columns, event_columns, run_columns, schedule_columns};

#[derive(sqlx::FromRow)]
pub(super) struct ComponentRow {
    hash: String,
    world: String,
    bytes: Vec<u8>,
    size: i64,
    created_at: i64,
}

impl TryFrom<ComponentRow> for Component {
    type Error = Error;

    fn try_from(row: ComponentRow) -> Result<Self, Error> {
        let what = || format!("component {}", row.hash);
        let hash: ComponentHash = parse(&row.hash, &what, "hash")?;
        let world: World = parse(&row.world, &what, "world")?;
        if usize::try_from(row.size).ok() != Some(row.bytes.len()) {
            return Err(Error::Corrupt(format!(
                "{}: size says {} bytes, {} are stored",
                what(),
                row.size,
                row.bytes.len()
            )));
        }
        Ok(Component { hash, world, bytes: row.bytes, created_at: Micros(row.created_at) })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RunRow {
    id: String,
    kind: String,
    component: String,
    component_hash: String,
    input: String,
    status: String,
    output: Option<String>,
    error_kind: Option<String>,
    error_message: Option<String>,
    idempotency_key: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    lease_owner: Option<String>,
    lease_epoch: i64,
    lease_expires_at: Option<i64>,
    wake_at: Option<i64>,
    waiting_on: Option<String>,
    origin: Option<String>,
}

impl TryFrom<RunRow> for Run {
    type Error = Error;

    fn try_from(row: RunRow) -> Result<Self, Error> {
        let what = || format!("run {}", row.id);
        let error = match (row.error_kind.as_deref(), row.error_message) {
            (None, None) => None,
            (Some(kind), message) => {
                Some(RunError { kind: parse(kind, &what, "error_kind")?, message: message.unwrap_or_default() })
            }
            (None, Some(_)) => {
                return Err(Error::Corrupt(format!("{}: error_message is set but error_kind is not", what())));
            }
        };
        Ok(Run {
            id: parse(&row.id, &what, "id")?,
            kind: parse(&row.kind, &what, "kind")?,
            component: row.component,
            component_hash: parse(&row.component_hash, &what, "component_hash")?,
            input: row.input,
            status: parse(&row.status, &what, "status")?,
            output: row.output,
            error,
            idempotency_key: row.idempotency_key,
            created_at: Micros(row.created_at),
            started_at: row.started_at.map(Micros),
            finished_at: row.finished_at.map(Micros),
            lease_owner: row.lease_owner,
            lease_epoch: row.lease_epoch,
            lease_expires_at: row.lease_expires_at.map(Micros),
            wake_at: row.wake_at.map(Micros),
            waiting_on: row.waiting_on,
            origin: row.origin,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: i64,
    name: String,
    data: String,
    created_at: i64,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        Event { id: row.id, name: row.name, data: row.data, created_at: Micros(row.created_at) }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EntryRow {
    run_id: String,
    seq: i64,
    attempt: i64,
    child: i64,
    kind: String,
    name: String,
    request: String,
    request_hash: String,
    response: Option<String>,
    status: String,
    error: Option<String>,
    started_at: i64,
    finished_at: i64,
    fuel: Option<i64>,
    component: Option<String>,
}

impl TryFrom<EntryRow> for Entry {
    type Error = Error;

    fn try_from(row: EntryRow) -> Result<Self, Error> {
        let what = || format!("journal entry ({}, {}, {}) of {}", row.seq, row.attempt, row.child, row.run_id);
        let index = |value: i64, column: &str| u32::try_from(value).map_err(|_| bad_value(&what(), column, value));
        Ok(Entry {
            run_id: parse(&row.run_id, &what, "run_id")?,
            key: EntryKey {
                seq: index(row.seq, "seq")?,
                attempt: index(row.attempt, "attempt")?,
                child: index(row.child, "child")?,
            },
            kind: parse(&row.kind, &what, "kind")?,
            name: row.name,
            request: row.request,
            request_hash: row.request_hash,
            response: row.response,
            status: parse::<EntryStatus>(&row.status, &what, "status")?,
            error: row.error,
            started_at: Micros(row.started_at),
            finished_at: Micros(row.finished_at),
            fuel: row.fuel.map(|f| u64::try_from(f).map_err(|_| bad_value(&what(), "fuel", f))).transpose()?,
            component: row.component,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeploymentRow {
    name: String,
    version: i64,
    hash: String,
    world: String,
    config: String,
    active: bool,
    created_at: i64,
}

impl TryFrom<DeploymentRow> for Deployment {
    type Error = Error;

    fn try_from(row: DeploymentRow) -> Result<Self, Error> {
        let what = || format!("deployment {} version {}", row.name, row.version);
        let config: DeploymentConfig = serde_json::from_str(&row.config)
            .map_err(|e| Error::Corrupt(format!("{}: bad value in column config: {e}", what())))?;
        Ok(Deployment {
            version: u32::try_from(row.version).map_err(|_| bad_value(&what(), "version", row.version))?,
            hash: parse(&row.hash, &what, "hash")?,
            world: parse(&row.world, &what, "world")?,
            config,
            active: row.active,
            created_at: Micros(row.created_at),
            name: row.name,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ScheduleRow {
    name: String,
    workflow: String,
    cron: String,
    timezone: String,
    input: String,
    next_fire_at: i64,
    last_fired_at: Option<i64>,
    created_at: i64,
}

impl From<ScheduleRow> for Schedule {
    fn from(row: ScheduleRow) -> Self {
        Schedule {
            name: row.name,
            workflow: row.workflow,
            cron: row.cron,
            timezone: row.timezone,
            input: row.input,
            next_fire_at: Micros(row.next_fire_at),
            last_fired_at: row.last_fired_at.map(Micros),
            created_at: Micros(row.created_at),
        }
    }
}

/// A deployment's config as stored: JSON text.
pub(super) fn config_to_sql(config: &DeploymentConfig) -> Result<String, Error> {
    serde_json::to_string(config).map_err(|e| Error::Database(format!("cannot encode a deployment config: {e}").into()))
}

/// Fuel as stored: SQL integers are signed; a count past `i64::MAX` (never
/// reached in practice) is stored as `i64::MAX` rather than refused.
pub(super) fn fuel_to_sql(fuel: Option<u64>) -> Option<i64> {
    fuel.map(|f| i64::try_from(f).unwrap_or(i64::MAX))
}

fn parse<T: FromStr>(text: &str, what: &dyn Fn() -> String, column: &str) -> Result<T, Error> {
    text.parse().map_err(|_| bad_value(&what(), column, text))
}

fn bad_value(what: &str, column: &str, value: impl Display) -> Error {
    let shown: String = value.to_string().chars().take(80).collect();
    Error::Corrupt(format!("{what}: bad value `{shown}` in column {column}"))
}

/// SQLSTATE codes (and classes) that mean "try again later": the server is
/// going away or starting, a connection failed, too many connections, a
/// lock wait timed out, a deadlock or serialisation failure was broken up.
fn is_transient_code(code: &str) -> bool {
    code.starts_with("08") // connection_exception
        || code.starts_with("53") // insufficient_resources (too_many_connections, disk_full)
        || code.starts_with("57P") // admin_shutdown, crash_shutdown, cannot_connect_now
        || code.starts_with("40") // transaction_rollback: serialization_failure, deadlock_detected
        || code == "55P03" // lock_not_available (lock_timeout)
        || code == "57014" // query_canceled (statement_timeout)
        || code == "58030" // io_error
}

/// SQLSTATE codes that mean the stored data is damaged.
fn is_corrupt_code(code: &str) -> bool {
    code == "XX001" || code == "XX002" // data_corrupted, index_corrupted
}

/// The SQLSTATE of a database error.
pub(super) fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned())
}

/// Whether the error says the connection (or the server behind it) is gone
/// or unusable, so the connection should be dropped and opened again.
pub(super) fn is_connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => {
            sqlstate(err).is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "58030")
        }
        _ => false,
    }
}

/// Maps a sqlx error to the store error the caller can act on.
pub(super) fn db_err(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::Database(_) => match sqlstate(&err) {
            Some(code) if is_transient_code(&code) => Error::Unavailable(err.to_string()),
            Some(code) if is_corrupt_code(&code) => Error::Corrupt(err.to_string()),
            _ => Error::Database(Box::new(err)),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => Error::Unavailable(err.to_string()),
        sqlx::Error::Configuration(_) => Error::Config(err.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            Error::Corrupt(err.to_string())
        }
        _ => Error::Database(Box::new(err)),
    }
}

/// Whether the error is a UNIQUE or PRIMARY KEY violation.
pub(super) fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().map(|e| e.kind()) == Some(sqlx::error::ErrorKind::UniqueViolation)
}

/// Whether the error is a FOREIGN KEY violation.
pub(super) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().map(|e| e.kind()) == Some(sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// A copy of an error, for when one failure (a failed commit) must be
/// reported to every writer of a batch. Same variant, same text.
pub(super) fn replicate(err: &Error) -> Error {
    match err {
        Error::NotFound(s) => Error::NotFound(s.clone()),
        Error::LeaseLost { run_id, held, current } => {
            Error::LeaseLost { run_id: *run_id, held: *held, current: *current }
        }
        Error::Conflict(s) => Error::Conflict(s.clone()),
        Error::Unavailable(s) => Error::Unavailable(s.clone()),
        Error::Corrupt(s) => Error::Corrupt(s.clone()),
        Error::Config(s) => Error::Config(s.clone()),
        Error::Database(e) => Error::Database(e.to_string().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_unavailable_and_lost_connections() {
        let err = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_connection_lost(&err));
        assert!(matches!(db_err(err), Error::Unavailable(_)));
        assert!(matches!(db_err(sqlx::Error::PoolTimedOut), Error::Unavailable(_)));
        assert!(!is_connection_lost(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn transient_codes() {
        for code in ["08006", "57P01", "40P01", "40001", "55P03", "53300"] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["23505", "42P01", "XX001"] {
            assert!(!is_transient_code(code), "{code}");
        }
        assert!(is_corrupt_code("XX001"));
    }
}
