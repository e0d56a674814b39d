//! Writing a batch's appends, and reading the journal back.
//!
//! Each statement takes the whole batch as arrays (`unnest`), so its text is the same
//! whatever the batch holds and stays prepared on the connection. Every event is kept
//! only where its run's lease still has the append's owner and epoch, checked in the
//! INSERT itself; the check locks the lease row (`FOR SHARE`) until the commit, so a
//! take-over waits for the append rather than slipping in between check and commit.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use tether_types::chain::{StoredEvent, GENESIS_HASH};
use tether_types::store::{Append, StoreError};

use crate::error::db;

/// Takes the leases of new runs (`TakeNew`, `TakeAndRelease`): at epoch 1 for the
/// fence's owner, only where the run id has no lease yet. The events' fence check then
/// refuses an append whose run someone else holds.
pub(super) async fn take_new(conn: &mut PgConnection, appends: &[&Append]) -> Result<(), StoreError> {
    let taking: Vec<(&Append, u64)> =
        appends.iter().filter_map(|a| a.lease.takes().map(|ttl_ms| (*a, ttl_ms))).collect();
    if taking.is_empty() {
        return Ok(());
    }
    let runs: Vec<&str> = taking.iter().map(|(a, _)| a.run_id.as_str()).collect();
    let owners: Vec<&str> = taking.iter().map(|(a, _)| a.fence.owner.as_str()).collect();
    let ttls: Vec<i64> = taking.iter().map(|(_, ttl_ms)| super::leases::ttl_us(*ttl_ms)).collect();
    sqlx::query(
        "INSERT INTO run_leases (run_id, owner, epoch, expires_us, head_seq, head_hash) \
         SELECT v.run_id, v.owner, 1, tether_now_us() + v.ttl_us, 0, $4 \
         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v(run_id, owner, ttl_us) \
         ON CONFLICT (run_id) DO NOTHING",
    )
    .bind(runs)
    .bind(owners)
    .bind(ttls)
    .bind(GENESIS_HASH)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Inserts every event of `appends` whose run's lease holds its append's fence, and says
/// which appends were written (all of an append's events share its fence, so an append
/// is written whole or not at all). A position already taken fails the statement: the
/// caller learns it from the error (`is_unique_violation`).
pub(super) async fn insert_events(conn: &mut PgConnection, appends: &[&Append]) -> Result<Vec<bool>, sqlx::Error> {
    let rows = appends.iter().map(|a| a.events.len()).sum();
    let mut runs = Vec::with_capacity(rows);
    let mut seqs = Vec::with_capacity(rows);
    let mut ats = Vec::with_capacity(rows);
    let mut kinds = Vec::with_capacity(rows);
    let mut payloads = Vec::with_capacity(rows);
    let mut hashes = Vec::with_capacity(rows);
    let mut owners = Vec::with_capacity(rows);
    let mut epochs = Vec::with_capacity(rows);
    for a in appends {
        for e in &a.events {
            runs.push(a.run_id.as_str());
            seqs.push(e.seq as i64);
            ats.push(e.at_us as i64);
            kinds.push(e.kind);
            payloads.push(&*e.payload);
            hashes.push(e.hash.as_str());
            owners.push(a.fence.owner.as_str());
            epochs.push(a.fence.epoch as i64);
        }
    }
    let written: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO events (run_id, seq, at_us, kind, payload, hash) \
         SELECT v.run_id, v.seq, v.at_us, v.kind, v.payload, v.hash \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
                     $8::bigint[]) AS v(run_id, seq, at_us, kind, payload, hash, owner, epoch) \
         WHERE EXISTS (SELECT 1 FROM run_leases l WHERE l.run_id = v.run_id AND l.owner = v.owner \
                       AND l.epoch = v.epoch FOR SHARE) \
         RETURNING run_id, seq",
    )
    .bind(runs)
    .bind(seqs)
    .bind(ats)
    .bind(kinds)
    .bind(payloads)
    .bind(hashes)
    .bind(owners)
    .bind(epochs)
    .fetch_all(&mut *conn)
    .await?;
    if written.len() == rows {
        return Ok(vec![true; appends.len()]);
    }
    let written: HashSet<(&str, i64)> = written.iter().map(|(r, s)| (r.as_str(), *s)).collect();
    Ok(appends
        .iter()
        .map(|a| a.events.last().is_none_or(|last| written.contains(&(a.run_id.as_str(), last.seq as i64))))
        .collect())
}

/// Gives up the leases of the written appends that end their run (`Release`,
/// `TakeAndRelease`), anchoring each run's head at its last event.
pub(super) async fn release(conn: &mut PgConnection, written: &[&Append]) -> Result<(), StoreError> {
    // One row per run (the last release queued wins), as an UPDATE changes a row once.
    let mut releasing: Vec<&Append> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for a in written.iter().filter(|a| a.lease.releases() && !a.events.is_empty()) {
        match at.get(a.run_id.as_str()) {
            Some(&i) => releasing[i] = a,
            None => {
                at.insert(a.run_id.as_str(), releasing.len());
                releasing.push(a);
            }
        }
    }
    if releasing.is_empty() {
        return Ok(());
    }

    let (mut runs, mut owners, mut epochs, mut seqs, mut hashes) = (vec![], vec![], vec![], vec![], vec![]);
    for a in &releasing {
        let Some(last) = a.events.last() else { continue };
        runs.push(a.run_id.as_str());
        owners.push(a.fence.owner.as_str());
        epochs.push(a.fence.epoch as i64);
        seqs.push(last.seq as i64);
        hashes.push(last.hash.as_str());
    }
    sqlx::query(
        "UPDATE run_leases l SET owner = '', expires_us = 0, head_seq = v.seq, head_hash = v.hash \
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[]) AS v(run_id, owner, epoch, seq, hash) \
         WHERE l.run_id = v.run_id AND l.owner = v.owner AND l.epoch = v.epoch",
    )
    .bind(runs)
    .bind(owners)
    .bind(epochs)
    .bind(seqs)
    .bind(hashes)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// An event row whose `seq, at_us, kind, payload, hash` start at column `first`.
pub(super) fn stored_event(r: &PgRow, first: usize) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: r.try_get::<i64, _>(first).map_err(db)? as u64,
        at_us: r.try_get::<i64, _>(first + 1).map_err(db)? as u64,
        kind: r.try_get(first + 2).map_err(db)?,
        payload: r.try_get(first + 3).map_err(db)?,
        hash: r.try_get(first + 4).map_err(db)?,
    })
}
