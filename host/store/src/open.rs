//! Where the journal lives, and opening it safely: a file that is not a tether journal,
//! or one written by a newer tether, is refused before anything is written to it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tether_types::store::StoreError;

/// How durable a commit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a committed step survives power loss. The default.
    Full,
    /// `synchronous=NORMAL`: survives a process crash, may lose the last commits on power loss.
    Normal,
}

/// How to open the journal.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `sqlite:PATH` (or a plain path).
    pub url: String,
    /// Commit durability.
    pub durability: Durability,
    /// Largest event payload accepted, in bytes.
    pub max_event_bytes: usize,
    /// Create the journal if it does not exist. Commands that only read (or continue a
    /// run) open without: a mistyped path is an error, not a new empty journal.
    pub create: bool,
    /// Connections to keep open to a database server (PostgreSQL); `None` for the
    /// backend's default. SQLite's connections are its own.
    pub pool: Option<u32>,
}

impl StoreConfig {
    /// Defaults for `url`: full durability, 8 MiB events.
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            durability: Durability::Full,
            max_event_bytes: 8 << 20,
            create: true,
            pool: None,
        }
    }
}

/// `$TETHER_DATABASE_URL`, or `journal.db` in the user's data directory.
pub fn default_database_url() -> String {
    match std::env::var("TETHER_DATABASE_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            let dir = dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("tether");
            format!("sqlite:{}", dir.join("journal.db").display())
        }
    }
}

/// The file behind a journal URL: `sqlite:PATH`, `sqlite://PATH` or a plain path. A URL
/// of another scheme is refused by name rather than taken for a file path (which would
/// create, say, `./postgres:/...`).
pub fn sqlite_file(url: &str) -> Result<PathBuf, StoreError> {
    if url.trim().is_empty() {
        return Err(StoreError::BadUrl(
            "the journal URL is empty: give a SQLite file path or a postgres:// URL".into(),
        ));
    }
    let rest = match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        Some(rest) => rest,
        None => {
            if let Some(scheme) = url_scheme(url) {
                let what = match scheme.as_str() {
                    "postgres" | "postgresql" => {
                        "a PostgreSQL journal names no SQLite file (open it with `tether_store::open`)".to_string()
                    }
                    other => format!("`{other}:` is not a journal backend"),
                };
                return Err(StoreError::BadUrl(format!(
                    "journal URL `{url}`: {what}; give a SQLite file path, `sqlite:PATH` or `postgres://...`"
                )));
            }
            url
        }
    };
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() {
        return Err(StoreError::BadUrl(format!("journal URL `{url}` names no file")));
    }
    Ok(PathBuf::from(path))
}

/// The scheme of `scheme://...` (letters, digits, `+`, `-`, `.`), lowercased.
fn url_scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let valid = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

pub(crate) fn connect_options(config: &StoreConfig) -> Result<SqliteConnectOptions, StoreError> {
    let path = sqlite_file(&config.url)?;
    if !config.create && !path.exists() {
        return Err(StoreError::NoJournal(format!(
            "no journal at {}: nothing has run with it yet; check --db or $TETHER_DATABASE_URL",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && config.create) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Database(format!("cannot create {}: {e}", parent.display())))?;
    }
    let opts = SqliteConnectOptions::from_str(&format!("sqlite:{}", path.display()))
        .map_err(|e| StoreError::Database(format!("bad database URL `{}`: {e}", config.url)))?
        .create_if_missing(config.create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match config.durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // A batch's multi-row statements run inside its transaction and keep statement
        // journals (to undo just one statement): in memory, not in temporary files.
        .pragma("temp_store", "memory");
    Ok(opts)
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Prepared statements the writer's connection keeps.
const WRITER_STATEMENT_CACHE: usize = 8;

/// Checks that the file is ours (or empty) and not newer than us, then migrates it.
///
/// Two processes opening a new journal at once both try to migrate it: one wins, and
/// the other fails on what the winner created (or sees the winner's half-made schema).
/// Each migration is one transaction, so the loser waits briefly and checks again.
pub(crate) async fn open_and_migrate(config: &StoreConfig) -> Result<SqliteConnection, StoreError> {
    let mut tries = 0;
    loop {
        match try_open_and_migrate(config).await {
            Err(Retry::Race(_)) if tries < 40 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            Err(Retry::Race(e) | Retry::Final(e)) => return Err(e),
            Ok(conn) => return Ok(conn),
        }
    }
}

/// How an attempt to open a journal failed.
enum Retry {
    /// Possibly because another process is migrating the same file right now.
    Race(StoreError),
    /// For good.
    Final(StoreError),
}

impl From<StoreError> for Retry {
    fn from(e: StoreError) -> Self {
        Retry::Final(e)
    }
}

async fn try_open_and_migrate(config: &StoreConfig) -> Result<SqliteConnection, Retry> {
    let path = sqlite_file(&config.url)?;
    let shown = path.display().to_string();
    // The writer's batches are texts that differ with their row counts: a large cache of
    // them held megabytes of prepared statements that were rarely run again. A few stay
    // cached (a lone run's append repeats its text).
    let options = connect_options(config)?.statement_cache_capacity(WRITER_STATEMENT_CACHE);
    let mut conn = SqliteConnection::connect_with(&options).await.map_err(|e| locked_or(&shown, e))?;

    let tables: Vec<(String,)> = sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| locked_or(&shown, e))?;
    let has = |t: &str| tables.iter().any(|(n,)| n == t);
    if tables.len() == 1 && has("_sqlx_migrations") && abandoned_first_open(&mut conn).await? {
        return Err(Retry::Race(StoreError::Database(format!("{shown}: finishing a first open that was cut short"))));
    }
    if !tables.is_empty() && !has("tether_meta") {
        let e = StoreError::NotOurs(format!(
            "{shown} is a SQLite database but not a tether journal; pass another file with --db or TETHER_DATABASE_URL"
        ));
        // Only the migrations table: another process may be creating the journal now.
        return Err(if has("_sqlx_migrations") { Retry::Race(e) } else { Retry::Final(e) });
    }
    if has("_sqlx_migrations") {
        let newest: Option<(i64,)> =
            sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations").fetch_optional(&mut conn).await.ok().flatten();
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        if let Some((v,)) = newest {
            if v > known {
                return Err(Retry::Final(StoreError::NewerSchema(format!(
                    "{shown} was written by a newer tether (schema version {v}; this tether knows up to {known}); upgrade tether to use it"
                ))));
            }
        }
    }
    MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| Retry::Race(StoreError::Database(format!("{shown}: migrating the journal: {e}"))))?;
    Ok(conn)
}

/// A first open killed between sqlx creating its (empty) migrations table and migration
/// 1's transaction leaves that table alone in the file. Every migration holds the write
/// lock while it runs, so with the write lock taken and the table still empty, nobody is
/// migrating: the table is dropped and the open starts over (`true`). A process that was
/// in that same gap fails its migration and retries. `false`: someone has since migrated.
async fn abandoned_first_open(conn: &mut SqliteConnection) -> Result<bool, Retry> {
    let race = |e: sqlx::Error| Retry::Race(StoreError::Database(e.to_string()));
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.map_err(race)?;
    let tables: Vec<(String,)> = sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut *tx)
        .await
        .map_err(race)?;
    if tables.len() != 1 || tables[0].0 != "_sqlx_migrations" {
        return Ok(false);
    }
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&mut *tx).await.map_err(race)?;
    if applied != 0 {
        return Ok(false);
    }
    sqlx::query("DROP TABLE _sqlx_migrations").execute(&mut *tx).await.map_err(race)?;
    tx.commit().await.map_err(race)?;
    tracing::debug!("finished a first open of the journal that was cut short");
    Ok(true)
}

/// A journal another process holds locked for a moment (a checkpoint, a migration) is
/// tried again; anything else is final.
fn locked_or(path: &str, e: sqlx::Error) -> Retry {
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
    let code = e.as_database_error().and_then(|d| d.code()).and_then(|c| c.parse::<i32>().ok());
    if code.is_some_and(|c| matches!(c & 0xff, 5 | 6)) {
        Retry::Race(open_error(path, e))
    } else {
        Retry::Final(open_error(path, e))
    }
}

fn open_error(path: &str, e: sqlx::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("file is not a database") || text.contains("not a database") {
        StoreError::NotOurs(format!("{path} is not a SQLite database (and so not a tether journal); pass another file with --db or TETHER_DATABASE_URL"))
    } else {
        StoreError::Database(format!("{path}: {text}"))
    }
}
