//! Rows as SQLite returns them, their conversion to domain types, and the
//! mapping of sqlx errors to [`store::Error`](crate::store::Error).
//!
//! Row structs stay private to the backend. Every conversion checks what
//! the schema cannot (known enum values, integers in range) and reports a
//! bad value as [`Error::Corrupt`] naming the row and the column, so a bad
//! row never turns into a panic or a silently wrong value.

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

/// SQLite primary result codes that mean "try again later" or "the disk is
/// in trouble": busy, locked, I/O error, disk full, cannot open.
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

/// The primary SQLite result code of a database error (extended codes carry
/// it in their low byte).
fn primary_code(err: &sqlx::Error) -> Option<i64> {
    let code = err.as_database_error()?.code()?;
    code.parse::<i64>().ok().map(|c| c & 0xff)
}

/// Whether another connection holds the lock the statement needed, past
/// the busy timeout.
pub(super) fn is_busy(err: &sqlx::Error) -> bool {
    matches!(primary_code(err), Some(SQLITE_BUSY | SQLITE_LOCKED))
}

/// Maps a sqlx error to the store error the caller can act on.
pub(super) fn db_err(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::Database(_) => match primary_code(&err) {
            Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN) => {
                Error::Unavailable(err.to_string())
            }
            Some(SQLITE_CORRUPT | SQLITE_NOTADB) => Error::Corrupt(err.to_string()),
            _ => Error::Database(Box::new(err)),
        },
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            Error::Unavailable(err.to_string())
        }
        sqlx::Error::Configuration(_) => Error::Config(err.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            Error::Corrupt(err.to_string())
        }
        _ => Error::Database(Box::new(err)),
    }
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

/// Rows read by the writer thread, which owns its connection through
/// rusqlite (see [`super::writer`]); the readers use sqlx.
pub(super) mod direct {
    use rusqlite::Row;

    use super::{DeploymentRow, EventRow, RunRow};

    impl RunRow {
        pub(in crate::store::sqlite) fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(Self {
                id: r.get("id")?,
                kind: r.get("kind")?,
                component: r.get("component")?,
                component_hash: r.get("component_hash")?,
                input: r.get("input")?,
                status: r.get("status")?,
                output: r.get("output")?,
                error_kind: r.get("error_kind")?,
                error_message: r.get("error_message")?,
                idempotency_key: r.get("idempotency_key")?,
                created_at: r.get("created_at")?,
                started_at: r.get("started_at")?,
                finished_at: r.get("finished_at")?,
                lease_owner: r.get("lease_owner")?,
                lease_epoch: r.get("lease_epoch")?,
                lease_expires_at: r.get("lease_expires_at")?,
                wake_at: r.get("wake_at")?,
                waiting_on: r.get("waiting_on")?,
                origin: r.get("origin")?,
            })
        }
    }

    impl EventRow {
        pub(in crate::store::sqlite) fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(Self { id: r.get("id")?, name: r.get("name")?, data: r.get("data")?, created_at: r.get("created_at")? })
        }
    }

    impl DeploymentRow {
        pub(in crate::store::sqlite) fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
            Ok(Self {
                name: r.get("name")?,
                version: r.get("version")?,
                hash: r.get("hash")?,
                world: r.get("world")?,
                config: r.get("config")?,
                active: r.get("active")?,
                created_at: r.get("created_at")?,
            })
        }
    }
}

/// The primary SQLite result code of a rusqlite error, when it has one.
fn direct_code(err: &rusqlite::Error) -> Option<i64> {
    match err {
        rusqlite::Error::SqliteFailure(e, _) => Some(i64::from(e.extended_code) & 0xff),
        _ => None,
    }
}

/// Maps an error of the writer's connection to the store error the caller
/// can act on (the same classes as [`db_err`]).
pub(super) fn sql_err(err: rusqlite::Error) -> Error {
    match direct_code(&err) {
        Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN) => {
            Error::Unavailable(err.to_string())
        }
        Some(SQLITE_CORRUPT | SQLITE_NOTADB) => Error::Corrupt(err.to_string()),
        Some(_) => Error::Database(Box::new(err)),
        None => match err {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::InvalidColumnName(_)
            | rusqlite::Error::Utf8Error(..) => Error::Corrupt(err.to_string()),
            other => Error::Database(Box::new(other)),
        },
    }
}

/// Whether the writer's statement broke a UNIQUE or PRIMARY KEY constraint.
pub(super) fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _)
        if matches!(e.extended_code, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY))
}

/// Whether the writer's statement broke a FOREIGN KEY constraint.
pub(super) fn is_foreign_key_violation(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _) if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EntryKind, RunErrorKind, RunId, RunStatus};

    fn run_row() -> RunRow {
        RunRow {
            id: RunId::new().to_string(),
            kind: "workflow".into(),
            component: "report".into(),
            component_hash: ComponentHash::of(b"x").to_string(),
            input: "{}".into(),
            status: "failed".into(),
            output: None,
            error_kind: Some("fuel-exhausted".into()),
            error_message: Some("out of fuel".into()),
            idempotency_key: None,
            created_at: 1,
            started_at: Some(2),
            finished_at: Some(3),
            lease_owner: None,
            lease_epoch: 4,
            lease_expires_at: None,
            wake_at: None,
            waiting_on: None,
            origin: None,
        }
    }

    fn entry_row() -> EntryRow {
        EntryRow {
            run_id: RunId::new().to_string(),
            seq: 1,
            attempt: 2,
            child: 3,
            kind: "http".into(),
            name: "GET example.com".into(),
            request: "{}".into(),
            request_hash: Entry::hash_request("{}"),
            response: Some("{}".into()),
            status: "ok".into(),
            error: None,
            started_at: 10,
            finished_at: 11,
            fuel: Some(7),
            component: None,
        }
    }

    fn corrupt_mentions(result: Result<impl std::fmt::Debug, Error>, column: &str) {
        match result {
            Err(Error::Corrupt(msg)) => assert!(msg.contains(column), "{msg}"),
            other => panic!("expected Corrupt naming {column}, got {other:?}"),
        }
    }

    #[test]
    fn run_row_converts_with_its_error() {
        let run = Run::try_from(run_row()).unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.error, Some(RunError { kind: RunErrorKind::FuelExhausted, message: "out of fuel".into() }));
        assert_eq!(run.lease_epoch, 4);
        assert_eq!(run.finished_at, Some(Micros(3)));
        assert_eq!((run.wake_at, run.waiting_on), (None, None));

        let waiting = RunRow {
            status: "waiting".into(),
            error_kind: None,
            error_message: None,
            finished_at: None,
            wake_at: Some(9),
            waiting_on: Some("approved".into()),
            ..run_row()
        };
        let run = Run::try_from(waiting).unwrap();
        assert_eq!(
            (run.status, run.wake_at, run.waiting_on.as_deref()),
            (RunStatus::Waiting, Some(Micros(9)), Some("approved"))
        );
    }

    #[test]
    fn bad_run_values_are_corrupt() {
        corrupt_mentions(Run::try_from(RunRow { status: "done".into(), ..run_row() }), "status");
        corrupt_mentions(Run::try_from(RunRow { id: "42".into(), ..run_row() }), "id");
        corrupt_mentions(Run::try_from(RunRow { kind: "daemon".into(), ..run_row() }), "kind");
        corrupt_mentions(Run::try_from(RunRow { component_hash: "abc".into(), ..run_row() }), "component_hash");
        corrupt_mentions(Run::try_from(RunRow { error_kind: Some("gremlins".into()), ..run_row() }), "error_kind");
        corrupt_mentions(Run::try_from(RunRow { error_kind: None, ..run_row() }), "error_kind");
    }

    #[test]
    fn entry_row_converts_and_rejects_out_of_range_numbers() {
        let entry = Entry::try_from(entry_row()).unwrap();
        assert_eq!(entry.key, EntryKey { seq: 1, attempt: 2, child: 3 });
        assert_eq!(entry.kind, EntryKind::Http);
        assert_eq!(entry.fuel, Some(7));
        corrupt_mentions(Entry::try_from(EntryRow { seq: -1, ..entry_row() }), "seq");
        corrupt_mentions(Entry::try_from(EntryRow { child: 1 << 40, ..entry_row() }), "child");
        corrupt_mentions(Entry::try_from(EntryRow { fuel: Some(-5), ..entry_row() }), "fuel");
        corrupt_mentions(Entry::try_from(EntryRow { kind: "teleport".into(), ..entry_row() }), "kind");
        corrupt_mentions(Entry::try_from(EntryRow { status: "meh".into(), ..entry_row() }), "status");
    }

    #[test]
    fn component_size_must_match_bytes() {
        let row = || ComponentRow {
            hash: ComponentHash::of(b"abc").to_string(),
            world: "step".into(),
            bytes: b"abc".to_vec(),
            size: 3,
            created_at: 0,
        };
        assert_eq!(Component::try_from(row()).unwrap().world, World::Step);
        assert!(matches!(Component::try_from(ComponentRow { size: 4, ..row() }), Err(Error::Corrupt(_))));
        corrupt_mentions(Component::try_from(ComponentRow { world: "job".into(), ..row() }), "world");
    }

    #[test]
    fn deployment_row_converts_and_rejects_bad_config() {
        let row = || DeploymentRow {
            name: "report".into(),
            version: 3,
            hash: ComponentHash::of(b"x").to_string(),
            world: "workflow".into(),
            config: r#"{"priority": 5}"#.into(),
            active: true,
            created_at: 7,
        };
        let d = Deployment::try_from(row()).unwrap();
        assert_eq!((d.version, d.config.priority, d.active, d.world), (3, 5, true, World::Workflow));
        corrupt_mentions(Deployment::try_from(DeploymentRow { config: "{".into(), ..row() }), "config");
        corrupt_mentions(Deployment::try_from(DeploymentRow { config: r#"{"bogus":1}"#.into(), ..row() }), "config");
        corrupt_mentions(Deployment::try_from(DeploymentRow { version: -1, ..row() }), "version");
        corrupt_mentions(Deployment::try_from(DeploymentRow { world: "job".into(), ..row() }), "world");
        let config = DeploymentConfig { priority: 2, ..Default::default() };
        assert_eq!(serde_json::from_str::<DeploymentConfig>(&config_to_sql(&config).unwrap()).unwrap(), config);
    }

    #[test]
    fn fuel_past_i64_saturates() {
        assert_eq!(fuel_to_sql(Some(u64::MAX)), Some(i64::MAX));
        assert_eq!(fuel_to_sql(Some(5)), Some(5));
        assert_eq!(fuel_to_sql(None), None);
    }
}
