//! Choosing the backend from the journal URL's scheme: a plain path, `sqlite:` or
//! `sqlite://` is SQLite; PostgreSQL will plug in here; anything else is refused by name
//! (see [`crate::sqlite_file`]), never taken for a file path.

use std::sync::Arc;

use tether_types::store::{JournalStore, StoreError};

use crate::{SqliteStore, StoreConfig};

/// Opens (or creates, when `config.create`) the journal `config.url` names, with the
/// backend its scheme selects.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn JournalStore>, StoreError> {
    // Every URL this build can open is a SQLite file; `sqlite_file` refuses the rest
    // with a message that names the scheme.
    crate::sqlite_file(&config.url)?;
    Ok(Arc::new(SqliteStore::open(config).await?))
}
