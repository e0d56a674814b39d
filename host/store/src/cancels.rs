//! Cancel requests: how a `cancel` reaches a run another host is executing. The request
//! is not a journal event (only the lease holder writes the run's journal); the holder
//! polls for it and journals the cancel itself.

use sqlx::{SqliteConnection, SqlitePool};
use tether_types::store::StoreError;

use crate::error::db;

/// Records a request; `false` if the run has one already (the first is kept).
pub(crate) async fn request(
    conn: &mut SqliteConnection,
    run_id: &str,
    by: &str,
    reason: Option<&str>,
    at_us: u64,
) -> Result<bool, StoreError> {
    let done = sqlx::query("INSERT OR IGNORE INTO cancel_requests (run_id, by, reason, at_us) VALUES (?, ?, ?, ?)")
        .bind(run_id)
        .bind(by)
        .bind(reason)
        .bind(at_us as i64)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

/// The run's request, if there is one: who asked, and why.
pub(crate) async fn requested(
    readers: &SqlitePool,
    run_id: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    sqlx::query_as("SELECT by, reason FROM cancel_requests WHERE run_id = ?")
        .bind(run_id)
        .fetch_optional(readers)
        .await
        .map_err(db)
}
