//! Opening a PostgreSQL journal safely: a database that holds something other than a
//! tether journal, or one written by a newer tether, is refused before anything is
//! written to it. The checks and the migration run under one advisory lock, so hosts
//! opening a new journal at once wait for each other instead of racing.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tether_types::store::StoreError;

use crate::{Durability, StoreConfig};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections the store keeps by default: the writer uses one at a time, a worker's
/// listener one, reads share the rest.
const POOL_SIZE: u32 = 8;
/// How long a session may sit idle inside a transaction before the server ends it.
const IDLE_IN_TRANSACTION: &str = "5s";
/// The fewest that work: the writer's, the listener's and one for reads.
pub const MIN_POOL_SIZE: u32 = 3;

/// The advisory lock every tether process takes to check and migrate a journal (any
/// constant will do, as long as it is this one: "tether" in ASCII).
const OPEN_LOCK: i64 = 0x7465_7468_6572;

/// The journal's connections, its schema checked and brought up to date, and how to
/// name it in messages (without a password).
pub(super) async fn open(config: &StoreConfig) -> Result<(PgPool, String), StoreError> {
    let options = connect_options(config)?;
    let shown = format!(
        "PostgreSQL database `{}` at {}:{}",
        options.get_database().unwrap_or(options.get_username()),
        options.get_host(),
        options.get_port()
    );
    let mut conn = PgConnection::connect_with(&options).await.map_err(|e| connect_error(&shown, config, e))?;
    let lock = |sql| sqlx::query(sql).bind(OPEN_LOCK);
    lock("SELECT pg_advisory_lock($1)").execute(&mut conn).await.map_err(|e| failed(&shown, e))?;
    let checked = check_and_migrate(&mut conn, config, &shown).await;
    // Closing the session releases the lock too; unlocking first lets a waiter go at once.
    let _ = lock("SELECT pg_advisory_unlock($1)").execute(&mut conn).await;
    let _ = conn.close().await;
    checked?;
    let pool = PgPoolOptions::new()
        .max_connections(config.pool.unwrap_or(POOL_SIZE).max(MIN_POOL_SIZE))
        .connect_with(options)
        .await
        .map_err(|e| connect_error(&shown, config, e))?;
    Ok((pool, shown))
}

pub(super) fn connect_options(config: &StoreConfig) -> Result<PgConnectOptions, StoreError> {
    let options = PgConnectOptions::from_str(&config.url).map_err(|e| {
        StoreError::BadUrl(format!("journal URL: {e}; give postgres://USER@HOST:PORT/DATABASE or a SQLite file path"))
    })?;
    let options = if options.get_application_name().is_none() { options.application_name("tether") } else { options };
    // A process frozen (or cut off) inside a transaction would hold its rows' locks for
    // as long as its connection lasts, and no other host could take those runs. Every
    // transaction here runs its statements back to back, so the server ends a session
    // idle inside one for this long, and the locks go with it.
    let options = options.options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)]);
    Ok(match config.durability {
        Durability::Full => options,
        // Like SQLite's `synchronous=NORMAL`: a commit is acknowledged before the server
        // flushes it, so a crash of the server (never of tether) may lose the last ones.
        Durability::Normal => options.options([("synchronous_commit", "off")]),
    })
}

async fn check_and_migrate(conn: &mut PgConnection, config: &StoreConfig, shown: &str) -> Result<(), StoreError> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| failed(shown, e))?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    let applied: Option<i64> = if has("_sqlx_migrations") {
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| failed(shown, e))?
    } else {
        None
    };
    // A first open that died before its first migration committed leaves sqlx's empty
    // migrations table alone: that is an empty database still.
    let empty = tables.is_empty() || (tables.len() == 1 && has("_sqlx_migrations") && applied.is_none());
    if empty && !config.create {
        return Err(StoreError::NoJournal(format!(
            "no tether journal in {shown}: nothing has run with it yet; check --db or $TETHER_DATABASE_URL"
        )));
    }
    if !empty {
        let format: Option<String> = if has("tether_meta") {
            sqlx::query_scalar("SELECT value FROM tether_meta WHERE key = 'format'")
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| failed(shown, e))?
        } else {
            None
        };
        if format.as_deref() != Some("tether-journal") {
            return Err(StoreError::NotOurs(format!(
                "{shown} holds tables but is not a tether journal; give tether a database (or schema) of its own \
                 with --db or TETHER_DATABASE_URL"
            )));
        }
    }
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(v) = applied.filter(|v| *v > known) {
        return Err(StoreError::NewerSchema(format!(
            "{shown} was written by a newer tether (schema version {v}; this tether knows up to {known}); \
             upgrade tether to use it"
        )));
    }
    MIGRATOR.run(&mut *conn).await.map_err(|e| StoreError::Database(format!("{shown}: migrating the journal: {e}")))
}

fn failed(shown: &str, e: sqlx::Error) -> StoreError {
    StoreError::Database(format!("{shown}: {e}"))
}

/// A database that does not exist is named as such; it is never created here (that
/// takes rights on the server a journal does not need: `createdb` does it once).
fn connect_error(shown: &str, config: &StoreConfig, e: sqlx::Error) -> StoreError {
    // invalid_catalog_name: the database does not exist.
    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("3D000") {
        let what = format!("{shown} does not exist");
        return if config.create {
            StoreError::NoJournal(format!("{what}: create it first (`createdb`), then point tether at it"))
        } else {
            StoreError::NoJournal(format!("{what}: nothing has run with it yet; check --db or $TETHER_DATABASE_URL"))
        };
    }
    StoreError::Database(format!("cannot connect to {shown}: {e}"))
}
