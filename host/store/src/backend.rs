//! Choosing the backend from the journal URL's scheme: `postgres://` or `postgresql://`
//! is PostgreSQL; a plain path, `sqlite:` or `sqlite://` is SQLite; anything else is
//! refused by name (see [`crate::sqlite_file`]), never taken for a file path.

use std::sync::Arc;

use tether_types::store::{JournalStore, StoreError};

use crate::{PostgresStore, SqliteStore, StoreConfig};

/// Opens (or creates, when `config.create`) the journal `config.url` names, with the
/// backend its scheme selects.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn JournalStore>, StoreError> {
    if is_postgres(&config.url) {
        return Ok(Arc::new(PostgresStore::open(config).await?));
    }
    // Every other URL this build can open is a SQLite file; `sqlite_file` refuses the
    // rest with a message that names the scheme.
    crate::sqlite_file(&config.url)?;
    Ok(Arc::new(SqliteStore::open(config).await?))
}

/// How messages name the journal `url`: a PostgreSQL URL without its password (as
/// `PostgreSQL database `DB` at HOST:PORT`), anything else as given.
pub fn describe_url(url: &str) -> String {
    if !is_postgres(url) {
        return url.to_string();
    }
    match <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url) {
        Ok(o) => format!(
            "PostgreSQL database `{}` at {}:{}",
            o.get_database().unwrap_or(o.get_username()),
            o.get_host(),
            o.get_port()
        ),
        Err(_) => "a PostgreSQL database (its URL does not parse)".into(),
    }
}

/// Whether `url` names a PostgreSQL database (the scheme in any case, as URLs allow).
pub fn is_postgres(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

#[cfg(test)]
mod tests {
    use super::is_postgres;

    #[test]
    fn postgres_urls_are_told_from_sqlite_paths() {
        assert!(is_postgres("postgres://tether@127.0.0.1:5432/journal"));
        assert!(is_postgres("postgresql://h/db?sslmode=require"));
        assert!(is_postgres("PostgreSQL://h/db"));
        assert!(!is_postgres("sqlite:/tmp/postgres://x"));
        assert!(!is_postgres("/var/lib/tether/postgres.db"));
        assert!(!is_postgres("mysql://h/db"));
    }

    #[test]
    fn a_postgres_url_is_described_without_its_password() {
        let shown = super::describe_url("postgres://tether:s3cret@db.internal:5433/journal");
        assert_eq!(shown, "PostgreSQL database `journal` at db.internal:5433");
        assert_eq!(super::describe_url("/var/lib/tether/journal.db"), "/var/lib/tether/journal.db");
    }
}
