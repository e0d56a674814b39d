//! Applying the written events' [`IndexChange`]s to the run index (`runs`) and the
//! components a run pins (`run_components`), in the transaction that writes the events.
//! What an event changes is decided in `tether-types`; here it becomes a few statements
//! per batch. Only written appends are applied: a refused append changes nothing.
//!
//! A run's status is folded in Rust, event by event with [`IndexChange::apply`], from
//! the row as it stands (read `FOR UPDATE`): every change of every append of the batch
//! counts, in order, even when one batch holds several appends of one run, and the row
//! ends as the fold of the run's events says (what `verify` checks).

use std::collections::HashMap;

use sqlx::PgConnection;
use tether_types::run_index::{IndexChange, RunIndexStatus};
use tether_types::store::{Append, StoreError};

use crate::error::db;

/// Applies what the written appends do to the run index.
pub(super) async fn apply(conn: &mut PgConnection, written: &[&Append]) -> Result<(), StoreError> {
    if !crate::index::changes_index(written) {
        return Ok(());
    }
    start(conn, written).await?;
    pin(conn, written).await?;
    change_status(conn, written).await
}

/// The rows of runs that start here: `running`, from the start event's time.
async fn start(conn: &mut PgConnection, written: &[&Append]) -> Result<(), StoreError> {
    let (mut runs, mut workflows, mut identities, mut started) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for a in written {
        for e in &a.events {
            if let Some(IndexChange::Start { workflow, identity, .. }) = &e.index {
                runs.push(a.run_id.as_str());
                workflows.push(workflow.as_str());
                identities.push(identity.as_str());
                started.push(e.at_us as i64);
            }
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO runs (run_id, workflow, status, identity, started_us) \
         SELECT v.run_id, v.workflow, 'running', v.identity, v.started_us \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS v(run_id, workflow, identity, started_us)",
    )
    .bind(runs)
    .bind(workflows)
    .bind(identities)
    .bind(started)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// The components the starting runs' plans pin.
async fn pin(conn: &mut PgConnection, written: &[&Append]) -> Result<(), StoreError> {
    let (mut runs, mut digests) = (Vec::new(), Vec::new());
    for a in written {
        for e in &a.events {
            if let Some(IndexChange::Start { components, .. }) = &e.index {
                for digest in components {
                    runs.push(a.run_id.as_str());
                    digests.push(digest.as_str());
                }
            }
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO run_components (run_id, digest) SELECT v.run_id, v.digest \
         FROM unnest($1::text[], $2::text[]) AS v(run_id, digest) ON CONFLICT DO NOTHING",
    )
    .bind(runs)
    .bind(digests)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// A run's row as far as its status goes: `None` for a status tether never writes.
struct Row {
    status: Option<RunIndexStatus>,
    finished_us: Option<i64>,
    changed: bool,
}

/// Folds each run's status changes, in the order written, into its row.
async fn change_status(conn: &mut PgConnection, written: &[&Append]) -> Result<(), StoreError> {
    let mut changes: Vec<(&str, &IndexChange, u64)> = Vec::new();
    for a in written {
        for e in &a.events {
            if let Some(change @ IndexChange::Status { .. }) = &e.index {
                changes.push((a.run_id.as_str(), change, e.at_us));
            }
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<&str> = changes.iter().map(|(run, _, _)| *run).collect();
    ids.sort_unstable();
    ids.dedup();
    // Locked in key order, so two writers never wait on each other's rows in a cycle.
    let stored: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT run_id, status, finished_us FROM runs WHERE run_id = ANY($1) ORDER BY run_id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    // A run without a row (its start was never indexed) has nothing to change.
    let mut rows: HashMap<String, Row> = stored
        .into_iter()
        .map(|(run, status, finished_us)| {
            (run, Row { status: RunIndexStatus::parse(&status), finished_us, changed: false })
        })
        .collect();
    for (run, change, at_us) in changes {
        let Some(row) = rows.get_mut(run) else { continue };
        let IndexChange::Status { status, finished, only_from } = change else { continue };
        // A damaged status meets no condition; an unconditional change still repairs it.
        let holds = only_from.is_empty() || row.status.is_some_and(|s| only_from.contains(&s));
        if !holds {
            continue;
        }
        row.status = Some(row.status.map_or(*status, |s| change.apply(s)));
        if *finished {
            row.finished_us = Some(at_us as i64);
        }
        row.changed = true;
    }
    let (mut runs, mut statuses, mut finished) = (Vec::new(), Vec::new(), Vec::new());
    for (run, row) in &rows {
        if let (true, Some(status)) = (row.changed, row.status) {
            runs.push(run.as_str());
            statuses.push(status.as_str());
            finished.push(row.finished_us);
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE runs SET status = v.status, finished_us = v.finished_us \
         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(run_id, status, finished_us) \
         WHERE runs.run_id = v.run_id",
    )
    .bind(runs)
    .bind(statuses)
    .bind(finished)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}
