//! The journal's storage: the only code in tether that touches SQL.
//!
//! [`SqliteStore`] is the default: one file, WAL mode, `synchronous=FULL` unless told
//! otherwise. One writer task owns the write connection and commits whatever has queued
//! up as one transaction, sent as one SQL text (group commit); every caller awaits the
//! commit that contains its events. Appends are fenced by the run's lease in the same
//! statement (`leases.rs`). Reads go through a separate pool.
//!
//! [`PostgresStore`] keeps the journal in a PostgreSQL database (`postgres://...`), for
//! hosts on several machines sharing one journal: the same roles and guarantees, with
//! the same group commit and fencing, leases judged by the server's clock (`postgres/`).
//! [`open`] picks the backend from the URL's scheme.

mod backend;
mod cancels;
mod error;
mod index;
mod leases;
mod open;
mod plugins;
mod postgres;
mod sqlite;
mod tokens;
mod writer;

#[doc(hidden)]
pub mod testing;

pub use backend::{describe_url, is_postgres, open};
pub use open::{default_database_url, sqlite_file, Durability, StoreConfig};
pub use postgres::{PostgresStore, MIN_POOL_SIZE};
pub use sqlite::SqliteStore;
