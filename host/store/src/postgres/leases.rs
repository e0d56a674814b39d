//! Run leases on PostgreSQL: who may write a run. Times are the server's
//! (`tether_now_us()`), so every host on the journal judges expiry alike. A lease lasts
//! while its own expiry or its holder's heartbeat (`hosts`) has not lapsed
//! (`tether_lease_until`): one heartbeat per host keeps all its runs.
//!
//! A lease change runs in the writer's batch transaction, after the appends queued
//! before it. Taking locks the row: an append in flight holds it `FOR SHARE` (see
//! `journal.rs`), so a take-over never overtakes an append. A run some host is writing at
//! that moment is held by that host, not waited for; only breaking the lease of a holder
//! known to be dead waits for the lock (then released with its connection).

use sqlx::{PgConnection, Row};
use tether_types::chain::GENESIS_HASH;
use tether_types::store::{Append, Heartbeat, Lease, LeaseTake, StoreError};

use crate::error::db;
use crate::leases::{LeaseOp, LeaseReply};

/// A lifetime in microseconds, bounded so that adding it to the clock cannot overflow.
pub(super) fn ttl_us(ttl_ms: u64) -> i64 {
    ttl_ms.saturating_mul(1000).min(i64::MAX as u64 / 4) as i64
}

/// Applies a lease change in the caller's transaction; `Err` fails the transaction.
pub(super) async fn apply(conn: &mut PgConnection, op: &LeaseOp) -> Result<LeaseReply, StoreError> {
    Ok(match op {
        LeaseOp::Take { run_id, owner, ttl_ms, breaking } => {
            LeaseReply::Take(take(conn, run_id, owner, *ttl_ms, *breaking).await?)
        }
        LeaseOp::Release(lease) => {
            // A run that never got its first event (an unknown id resumed, a start that
            // failed before writing) leaves nothing behind.
            let sql = "DELETE FROM run_leases WHERE run_id = $1 AND owner = $2 AND epoch = $3 \
                       AND NOT EXISTS (SELECT 1 FROM events WHERE run_id = $1)";
            on_lease(conn, sql, lease).await?;
            let sql =
                "UPDATE run_leases SET owner = '', expires_us = 0 WHERE run_id = $1 AND owner = $2 AND epoch = $3";
            on_lease(conn, sql, lease).await?;
            LeaseReply::Released
        }
        LeaseOp::Claim { owner, ttl_ms, limit, skip } => {
            LeaseReply::Claimed(claim(conn, owner, *ttl_ms, *limit, skip).await?)
        }
        LeaseOp::Beat { owner, ttl_ms } => LeaseReply::Beat(beat(conn, owner, *ttl_ms).await?),
        LeaseOp::Leave(owner) => {
            sqlx::query("DELETE FROM hosts WHERE owner = $1").bind(owner).execute(&mut *conn).await.map_err(db)?;
            LeaseReply::Left
        }
    })
}

/// Takes up to `limit` interrupted runs for `owner` (see `Leases::claim_interrupted`).
///
/// The free leases are locked `FOR UPDATE SKIP LOCKED`: a lease another host is taking,
/// or an append in flight holds (`FOR SHARE`, see `journal.rs`), is passed over rather
/// than waited for, so hosts claiming at once divide the runs between them. The run's
/// status is read again by the UPDATE, a statement that starts after the locks were
/// taken: a run whose last append committed in between is not claimed.
async fn claim(
    conn: &mut PgConnection,
    owner: &str,
    ttl_ms: u64,
    limit: usize,
    skip: &[String],
) -> Result<Vec<Lease>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT l.run_id FROM runs r JOIN run_leases l ON l.run_id = r.run_id \
         WHERE r.status = 'running' AND l.owner <> $1 \
         AND tether_lease_until(l.owner, l.expires_us) <= tether_now_us() \
         AND NOT (l.run_id = ANY($3)) ORDER BY r.started_us LIMIT $2 FOR UPDATE OF l SKIP LOCKED",
    )
    .bind(owner)
    .bind(limit.min(i64::MAX as usize) as i64)
    .bind(skip)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "UPDATE run_leases l SET owner = $1, epoch = l.epoch + 1, expires_us = tether_now_us() + $2 \
         WHERE l.run_id = ANY($3) AND tether_lease_until(l.owner, l.expires_us) <= tether_now_us() \
         AND EXISTS (SELECT 1 FROM runs r WHERE r.run_id = l.run_id AND r.status = 'running') \
         RETURNING l.run_id, l.epoch, l.expires_us",
    )
    .bind(owner)
    .bind(ttl_us(ttl_ms))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|(run_id, epoch, expires_us)| Lease {
            run_id,
            owner: owner.into(),
            epoch: epoch as u64,
            expires_us: expires_us as u64,
        })
        .collect())
}

/// `owner`'s heartbeat; hosts long silent that hold nothing are forgotten.
async fn beat(conn: &mut PgConnection, owner: &str, ttl_ms: u64) -> Result<Heartbeat, StoreError> {
    let (expires_us, before, now): (i64, Option<i64>, i64) = sqlx::query_as(
        "WITH before AS (SELECT expires_us FROM hosts WHERE owner = $1) \
         INSERT INTO hosts (owner, since_us, beat_us, expires_us) \
         VALUES ($1, tether_now_us(), tether_now_us(), tether_now_us() + $2) \
         ON CONFLICT (owner) DO UPDATE SET beat_us = EXCLUDED.beat_us, expires_us = EXCLUDED.expires_us \
         RETURNING expires_us, (SELECT expires_us FROM before), tether_now_us()",
    )
    .bind(owner)
    .bind(ttl_us(ttl_ms))
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "DELETE FROM hosts WHERE expires_us < tether_now_us() - $1 \
         AND NOT EXISTS (SELECT 1 FROM run_leases l WHERE l.owner = hosts.owner)",
    )
    .bind(crate::leases::FORGET_HOSTS_AFTER_US as i64)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(Heartbeat {
        expires_us: expires_us as u64,
        lapsed_since_us: before.filter(|b| *b <= now).map(|b| b as u64),
        found: before.is_some(),
        now_us: now as u64,
    })
}

/// A run's lease as it stands: run, owner, epoch, and when it lapses.
pub(super) const LEASE_OF_RUN: &str =
    "SELECT l.run_id, l.owner, l.epoch, tether_lease_until(l.owner, l.expires_us) FROM run_leases l WHERE l.run_id = $1";
/// Up to `$2` interrupted runs `$1` could claim now: read first, so that a host looking
/// every second writes nothing when there is nothing to take.
pub(super) const CLAIMABLE: &str = "SELECT l.run_id FROM runs r JOIN run_leases l ON l.run_id = r.run_id \
     WHERE r.status = 'running' AND l.owner <> $1 AND tether_lease_until(l.owner, l.expires_us) <= tether_now_us() \
     LIMIT $2";
/// Every lease held now, by owner then run.
pub(super) const HELD_LEASES: &str = "SELECT l.run_id, l.owner, l.epoch, tether_lease_until(l.owner, l.expires_us) \
     FROM run_leases l WHERE l.owner <> '' ORDER BY l.owner, l.run_id";

/// Runs `sql` with the lease's run, owner and epoch as `$1`..`$3`.
async fn on_lease(conn: &mut PgConnection, sql: &'static str, lease: &Lease) -> Result<(), StoreError> {
    sqlx::query(sql)
        .bind(&lease.run_id)
        .bind(&lease.owner)
        .bind(lease.epoch as i64)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// A lease row for a take, locked, waiting for another transaction's lock.
const TAKE_WAITING: &str = "SELECT owner, epoch, tether_lease_until(owner, expires_us), \
     tether_lease_until(owner, expires_us) <= tether_now_us() FROM run_leases WHERE run_id = $1 FOR UPDATE";
/// The same, passing over a row another transaction holds.
const TAKE_SKIPPING: &str = "SELECT owner, epoch, tether_lease_until(owner, expires_us), \
     tether_lease_until(owner, expires_us) <= tether_now_us() FROM run_leases WHERE run_id = $1 \
     FOR UPDATE SKIP LOCKED";

async fn take(
    conn: &mut PgConnection,
    run_id: &str,
    owner: &str,
    ttl_ms: u64,
    breaking: Option<u64>,
) -> Result<LeaseTake, StoreError> {
    let taken = |epoch: i64, expires_us: i64| {
        LeaseTake::Taken(Lease {
            run_id: run_id.into(),
            owner: owner.into(),
            epoch: epoch as u64,
            expires_us: expires_us as u64,
        })
    };
    // Twice at most: a new run's row that another process inserts between our read and
    // our insert is read (and locked) on the second pass.
    for _ in 0..2 {
        // Breaking a holder known to be dead waits for the lock: a dead process's
        // transaction ends with its connection, and what it had in flight is then seen.
        let sql = if breaking.is_some() { TAKE_WAITING } else { TAKE_SKIPPING };
        let row = sqlx::query(sql).bind(run_id).fetch_optional(&mut *conn).await.map_err(db)?;
        if row.is_none() && breaking.is_none() {
            // No row, or one another transaction holds: a host appending to the run or
            // taking it at this moment. That host is alive (a frozen one's transaction
            // is ended by the server, see `open.rs`): the run is held, not waited for,
            // so that this writer, which commits for every run of this process, never
            // stalls behind another process.
            let locked: Option<(String, i64, i64)> = sqlx::query_as(
                "SELECT owner, epoch, tether_lease_until(owner, expires_us) FROM run_leases WHERE run_id = $1",
            )
            .bind(run_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
            if let Some((holder, epoch, until)) = locked {
                let holder = if holder.is_empty() { "another host, taking it now".to_string() } else { holder };
                let held =
                    Lease { run_id: run_id.into(), owner: holder, epoch: epoch as u64, expires_us: until as u64 };
                return Ok(LeaseTake::Held(held));
            }
        }
        let Some(row) = row else {
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO run_leases (run_id, owner, epoch, expires_us, head_seq, head_hash) \
                 VALUES ($1, $2, 1, tether_now_us() + $3, 0, $4) ON CONFLICT (run_id) DO NOTHING RETURNING expires_us",
            )
            .bind(run_id)
            .bind(owner)
            .bind(ttl_us(ttl_ms))
            .bind(GENESIS_HASH)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
            match inserted {
                Some(expires_us) => return Ok(taken(1, expires_us)),
                None => continue,
            }
        };
        let holder: String = row.try_get(0).map_err(db)?;
        let epoch: i64 = row.try_get(1).map_err(db)?;
        let until: i64 = row.try_get(2).map_err(db)?;
        let lapsed: bool = row.try_get(3).map_err(db)?;
        let free = holder.is_empty() || holder == owner || lapsed || breaking == Some(epoch as u64);
        if !free {
            let held = Lease { run_id: run_id.into(), owner: holder, epoch: epoch as u64, expires_us: until as u64 };
            return Ok(LeaseTake::Held(held));
        }
        let (epoch, expires_us): (i64, i64) = sqlx::query_as(
            "UPDATE run_leases SET owner = $2, epoch = epoch + 1, expires_us = tether_now_us() + $3 \
             WHERE run_id = $1 RETURNING epoch, expires_us",
        )
        .bind(run_id)
        .bind(owner)
        .bind(ttl_us(ttl_ms))
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
        return Ok(taken(epoch, expires_us));
    }
    Err(StoreError::Database(format!("run {run_id}: its lease row changed under two attempts to take it")))
}

/// Why an append was refused: its lease was taken over (or released), or the journal no
/// longer ends where the writer thought.
pub(super) async fn why_refused(conn: &mut PgConnection, append: &Append) -> Result<StoreError, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT owner, epoch FROM run_leases WHERE run_id = $1")
        .bind(append.run_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    if let Some(lost) = crate::leases::lease_lost(append, row.map(|(o, e)| (o, e as u64))) {
        return Ok(lost);
    }
    let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE run_id = $1")
        .bind(append.run_id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok(crate::leases::conflict(append, head.unwrap_or(0) as u64))
}
