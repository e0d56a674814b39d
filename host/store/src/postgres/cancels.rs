//! Cancel requests on PostgreSQL: how a `cancel` reaches a run another host is
//! executing. Not a journal event (only the lease holder writes the run's journal): the
//! holder polls for it and journals the cancel itself.

use sqlx::PgPool;
use tether_types::store::StoreError;

use crate::error::db;

/// Records a request at the store's clock; `false` if the run has one already (the first
/// is kept).
pub(super) async fn request(pool: &PgPool, run_id: &str, by: &str, reason: Option<&str>) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO cancel_requests (run_id, \"by\", reason, at_us) VALUES ($1, $2, $3, tether_now_us()) \
         ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(run_id)
    .bind(by)
    .bind(reason)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

/// The run's request, if there is one: who asked, and why.
pub(super) async fn requested(pool: &PgPool, run_id: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
    sqlx::query_as("SELECT \"by\", reason FROM cancel_requests WHERE run_id = $1")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(db)
}
