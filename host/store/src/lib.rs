//! The journal's storage: the only code in tether that touches SQL.
//!
//! [`SqliteStore`] is the default: one file, WAL mode, `synchronous=FULL` unless told
//! otherwise. One writer task owns the write connection and commits whatever has queued
//! up as one transaction with multi-row INSERTs (group commit); every caller awaits the
//! commit that contains its events. Reads go through a separate pool.

mod error;
mod leases;
mod open;
mod plugins;
mod sqlite;
mod writer;

#[doc(hidden)]
pub mod testing;

pub use open::{default_database_url, Durability, StoreConfig};
pub use sqlite::SqliteStore;
