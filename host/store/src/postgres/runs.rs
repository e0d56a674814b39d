//! Reading the run index: pages of runs, the gates' events, a run's record for `verify`.

use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use tether_types::chain::StoredEvent;
use tether_types::store::{RunHead, RunIndexStatus, RunQuery, RunRecord, RunSummary, StoreError};

use crate::error::db;

use super::journal::stored_event;

/// A page of the run index, newest first, after the query's cursor.
pub(super) async fn page(pool: &PgPool, q: &RunQuery) -> Result<Vec<RunSummary>, StoreError> {
    // Only the filters given are in the statement, so each is answered from its index
    // (status or workflow with the start time, the key for an id prefix) rather than by
    // walking every run.
    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT run_id, workflow, status, identity, started_us, finished_us FROM runs WHERE TRUE",
    );
    if let Some(status) = q.status {
        sql.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(workflow) = &q.workflow {
        sql.push(" AND workflow = ").push_bind(workflow.as_str());
    }
    if let Some((us, id)) = &q.before {
        // A row value: one range on the index, where an OR of two conditions is not.
        sql.push(" AND (started_us, run_id) < (").push_bind(*us as i64).push(", ").push_bind(id.as_str()).push(")");
    }
    if let Some(prefix) = q.id_prefix.as_deref().filter(|p| !p.is_empty()) {
        // A range on the key: every id starting with `prefix` sorts at or after it and
        // before the prefix with its last character raised (bytewise: the column is
        // `COLLATE "C"`). Matched literally (`%` and `_` are not wildcards).
        sql.push(" AND run_id >= ").push_bind(prefix);
        if let Some(end) = crate::index::prefix_end(prefix) {
            sql.push(" AND run_id < ").push_bind(end);
        }
    }
    sql.push(" ORDER BY started_us DESC, run_id DESC LIMIT ").push_bind(q.limit as i64);
    let rows = sql.build().fetch_all(pool).await.map_err(db)?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get(2).map_err(db)?;
            let run_id: String = r.try_get(0).map_err(db)?;
            Ok(RunSummary {
                status: RunIndexStatus::parse(&status).unwrap_or_else(|| {
                    // One damaged row must not hide every other run: it is listed as
                    // damaged, and `verify` names what is wrong.
                    tracing::warn!(
                        "run {run_id}: the run index holds status {status:?}, which tether never writes; \
                         the index was edited or damaged (`tether verify {run_id}`)"
                    );
                    RunIndexStatus::Damaged
                }),
                run_id,
                workflow: r.try_get(1).map_err(db)?,
                identity: r.try_get(3).map_err(db)?,
                started_us: r.try_get::<i64, _>(4).map_err(db)? as u64,
                finished_us: r.try_get::<Option<i64>, _>(5).map_err(db)?.map(|v| v as u64),
            })
        })
        .collect()
}

/// The approval events of every run of `workflow`, each run's in order.
pub(super) async fn gate_events(pool: &PgPool, workflow: &str) -> Result<Vec<(String, StoredEvent)>, StoreError> {
    let sql = "SELECT e.run_id, e.seq, e.at_us, e.kind, e.payload, e.hash FROM events e \
               JOIN runs r ON r.run_id = e.run_id \
               WHERE r.workflow = $1 AND e.kind IN ('approval_requested', 'approval_decided', 'approval_overridden') \
               ORDER BY e.run_id, e.seq";
    let rows = sqlx::query(sql).bind(workflow).fetch_all(pool).await.map_err(db)?;
    rows.iter().map(|r| Ok((r.try_get(0).map_err(db)?, stored_event(r, 1)?))).collect()
}

/// A run's index row and head anchor, for `verify`.
pub(super) async fn record(pool: &PgPool, run_id: &str) -> Result<RunRecord, StoreError> {
    let index_status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE run_id = $1")
        .bind(run_id)
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    let lease: Option<(i64, String, String)> =
        sqlx::query_as("SELECT head_seq, head_hash, owner FROM run_leases WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(pool)
            .await
            .map_err(db)?;
    let held = lease.as_ref().is_some_and(|(_, _, owner)| !owner.is_empty());
    let head = lease.filter(|(seq, _, _)| *seq > 0).map(|(seq, hash, _)| RunHead { seq: seq as u64, hash });
    Ok(RunRecord { index_status, head, held })
}

#[cfg(test)]
mod tests {
    use crate::index::prefix_end;

    #[test]
    fn a_prefix_ends_where_its_last_character_is_raised() {
        assert_eq!(prefix_end("run_a-").as_deref(), Some("run_a."));
        assert_eq!(prefix_end("ab\u{10FFFF}").as_deref(), Some("ac"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }
}
