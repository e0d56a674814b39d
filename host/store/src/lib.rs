//! The journal's storage: the only code in tether that touches SQL.
//!
//! [`SqliteStore`] is the default: one file, WAL mode, `synchronous=FULL` unless told
//! otherwise. One writer task owns the write connection and commits whatever has queued
//! up as one transaction, sent as one SQL text (group commit); every caller awaits the
//! commit that contains its events. Appends are fenced by the run's lease in the same
//! statement (`leases.rs`). Reads go through a separate pool.

mod backend;
mod cancels;
mod error;
mod index;
mod leases;
mod open;
mod plugins;
mod sqlite;
mod tokens;
mod writer;

#[doc(hidden)]
pub mod testing;

pub use backend::open;
pub use open::{default_database_url, sqlite_file, Durability, StoreConfig};
pub use sqlite::SqliteStore;
