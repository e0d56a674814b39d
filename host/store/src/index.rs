//! Applying each written event's [`IndexChange`] to the run index (`runs`) and the
//! components a run pins (`run_components`), in the transaction that writes the event.
//! What an event changes is decided in `tether-types`; here it only becomes SQL. Every
//! statement applies only if its event was written (a refused append changes nothing).

use sqlx::{QueryBuilder, Sqlite};
use tether_types::chain::SealedEvent;
use tether_types::run_index::IndexChange;
use tether_types::store::Append;

/// Whether any of these appends changes the index (then they need a transaction).
pub(crate) fn changes_index(appends: &[&Append]) -> bool {
    appends.iter().any(|a| a.events.iter().any(|e| e.index.is_some()))
}

/// Pushes the index statements of every event that has one.
pub(crate) fn push_index(q: &mut QueryBuilder<Sqlite>, appends: &[&Append]) {
    for a in appends {
        for e in &a.events {
            match &e.index {
                None => {}
                Some(IndexChange::Start { workflow, identity, components }) => {
                    q.push(" INSERT INTO runs (run_id, workflow, status, identity, started_us) SELECT ");
                    q.push_bind(a.run_id.as_str()).push(", ").push_bind(workflow.as_str());
                    q.push(", 'running', ").push_bind(identity.as_str()).push(", ").push_bind(e.at_us as i64);
                    written(q, a, e);
                    if !components.is_empty() {
                        q.push(" INSERT OR IGNORE INTO run_components (run_id, digest) SELECT ");
                        q.push_bind(a.run_id.as_str()).push(", column1 FROM (");
                        q.push_values(components, |mut b, digest| {
                            b.push_bind(digest.as_str());
                        });
                        q.push(")");
                        written(q, a, e);
                    }
                }
                Some(IndexChange::Status { status, finished, only_from }) => {
                    q.push(" UPDATE runs SET status = ").push_bind(status.as_str());
                    if *finished {
                        q.push(", finished_us = ").push_bind(e.at_us as i64);
                    }
                    q.push(" WHERE run_id = ").push_bind(a.run_id.as_str());
                    if !only_from.is_empty() {
                        q.push(" AND status IN (");
                        let mut list = q.separated(", ");
                        for from in only_from.iter() {
                            list.push_bind(from.as_str());
                        }
                        q.push(")");
                    }
                    q.push(" AND");
                    exists(q, a, e);
                }
            }
        }
    }
}

/// ` WHERE` the event was written;
fn written(q: &mut QueryBuilder<Sqlite>, a: &Append, e: &SealedEvent) {
    q.push(" WHERE");
    exists(q, a, e);
}

fn exists(q: &mut QueryBuilder<Sqlite>, a: &Append, e: &SealedEvent) {
    q.push(" EXISTS (SELECT 1 FROM events WHERE run_id = ").push_bind(a.run_id.as_str());
    q.push(" AND seq = ").push_bind(e.seq as i64);
    q.push(" AND hash = ").push_bind(e.hash.as_str()).push(");");
}
