//! A fresh schema for `ferry bench --db postgres://…`: the bench needs an
//! empty store, and a Postgres database usually holds other things, so it
//! works in a schema of its own (named `ferry_bench_<time>_<random>`),
//! reached through the connections' `search_path`, and dropped afterwards.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::Error;

/// Name prefix of the schemas the bench makes.
pub const PREFIX: &str = "ferry_bench_";

/// A schema made for one bench; [`FreshSchema::drop_now`] removes it.
#[derive(Debug)]
pub struct FreshSchema {
    /// The database URL as given.
    base: String,
    /// The schema's name.
    pub name: String,
}

/// Whether `db` names a Postgres store.
pub fn is_postgres(db: &str) -> bool {
    let lower = db.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl FreshSchema {
    /// Creates an empty schema in the database at `base`.
    pub async fn create(base: &str) -> Result<Self, Error> {
        let base = base.trim().to_owned();
        let secs =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let name = format!("{PREFIX}{secs}_{:08x}", rand::random::<u32>());
        let schema = Self { base, name };
        schema.execute(&format!("CREATE SCHEMA {}", schema.name)).await?;
        Ok(schema)
    }

    /// The store URL whose every connection works in this schema: the
    /// base URL with `options=-c search_path=<schema>` added (a later
    /// `-c` wins over one the base URL may already carry).
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }

    /// Bytes of the schema's tables with their indexes and TOAST
    /// (`pg_total_relation_size`); the WAL is the cluster's and not counted.
    pub async fn bytes(&self) -> Option<u64> {
        let mut conn = self.connect().await.ok()?;
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await
        .ok();
        let _ = conn.close().await;
        size.and_then(|s| u64::try_from(s).ok())
    }

    /// Drops the schema with everything in it (the store must be closed,
    /// or at least idle: waits at most 10 s for locks).
    pub async fn drop_now(self) -> Result<(), Error> {
        self.execute(&format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE", self.name)).await
    }

    async fn connect(&self) -> Result<PgConnection, Error> {
        let options = PgConnectOptions::from_str(&self.base)
            .map_err(|e| Error::Failed(format!("the Postgres URL is not valid: {e}")))?
            .application_name("ferry-bench");
        PgConnection::connect_with(&options)
            .await
            .map_err(|e| Error::Failed(format!("cannot connect to Postgres at {}: {e}", redact(&self.base))))
    }

    async fn execute(&self, sql: &str) -> Result<(), Error> {
        let mut conn = self.connect().await?;
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await;
        let _ = conn.close().await;
        done.map(drop).map_err(|e| Error::Failed(format!("{sql}: {e}")))
    }
}

/// `url` without its password, for messages and reports.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_urls_add_the_search_path() {
        let s = FreshSchema { base: "postgres://u@h:5432/db".into(), name: "ferry_bench_1_ab".into() };
        assert_eq!(s.url(), "postgres://u@h:5432/db?options=-c%20search_path%3Dferry_bench_1_ab");
        let s = FreshSchema { base: "postgres://u@h/db?sslmode=disable".into(), name: "x".into() };
        assert_eq!(s.url(), "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Dx");
        assert!(PgConnectOptions::from_str(&s.url()).is_ok());
        assert!(is_postgres("postgresql://h/db") && is_postgres("  POSTGRES://h/db") && !is_postgres("x.db"));
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
