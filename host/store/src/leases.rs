//! Run leases and heads: who may write a run, and where its journal ends.
//!
//! A lease is taken atomically (in a `BEGIN IMMEDIATE` transaction on the writer
//! connection, batched with other writes), kept alive by its owner's heartbeat (one row
//! per host in `hosts`, not a write per run), and released when the run stops. Every
//! append advances the run's head with one conditional `UPDATE` that checks the owner,
//! the epoch and the previous head together; zero rows changed means the append is
//! refused, and a second query says why. Times are the store's clock (here: this
//! machine's), so all hosts on one journal judge expiry alike.

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tether_types::chain::SealedEvent;
use tether_types::chain::GENESIS_HASH;
use tether_types::store::{Append, Heartbeat, Lease, LeaseTake, StoreError};

use crate::error::db;

/// A lease change, written by the writer task in its own transaction.
pub(crate) enum LeaseOp {
    Take { run_id: String, owner: String, ttl_ms: u64, breaking: Option<u64> },
    Release(Lease),
    Claim { owner: String, ttl_ms: u64, limit: usize, skip: Vec<String> },
    Beat { owner: String, ttl_ms: u64 },
    Leave(String),
}

/// What a lease change did.
pub(crate) enum LeaseReply {
    Take(LeaseTake),
    Released,
    Claimed(Vec<Lease>),
    Beat(Heartbeat),
    Left,
}

/// Hosts silent this long that hold no lease are forgotten by the next heartbeat.
pub(crate) const FORGET_HOSTS_AFTER_US: u64 = 3_600 * 1_000_000;

/// When a lease lapses: at once for a released one (0), else the later of its own expiry
/// and its holder's heartbeat. `l` is `run_leases`. (A macro, so that the statements
/// using it stay constant text.)
macro_rules! until {
    () => {
        "CASE WHEN l.owner = '' THEN 0 ELSE MAX(l.expires_us, COALESCE((SELECT h.expires_us FROM hosts h \
         WHERE h.owner = l.owner), 0)) END"
    };
}

/// A run's lease as it stands: run, owner, epoch, and when it lapses.
pub(crate) const LEASE_OF_RUN: &str =
    concat!("SELECT l.run_id, l.owner, l.epoch, ", until!(), " FROM run_leases l WHERE l.run_id = ?");
/// Up to `?3` interrupted runs `?1` could claim now (`?2`: the store's clock): read
/// first, so that a host looking every second writes nothing when there is nothing to
/// take.
pub(crate) const CLAIMABLE: &str = concat!(
    "SELECT l.run_id FROM runs r JOIN run_leases l ON l.run_id = r.run_id \
     WHERE r.status = 'running' AND l.owner <> ?1 AND ",
    until!(),
    " <= ?2 LIMIT ?3"
);
/// Every lease held now, by owner then run.
pub(crate) const HELD_LEASES: &str = concat!(
    "SELECT l.run_id, l.owner, l.epoch, ",
    until!(),
    " FROM run_leases l WHERE l.owner <> '' ORDER BY l.owner, l.run_id"
);

/// Microseconds since the Unix epoch: the store's clock.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Applies a lease change in the caller's transaction; `Err` fails the transaction.
pub(crate) async fn apply(conn: &mut SqliteConnection, op: &LeaseOp) -> Result<LeaseReply, StoreError> {
    Ok(match op {
        LeaseOp::Take { run_id, owner, ttl_ms, breaking } => {
            LeaseReply::Take(take(conn, run_id, owner, *ttl_ms, *breaking).await?)
        }
        LeaseOp::Claim { owner, ttl_ms, limit, skip } => {
            LeaseReply::Claimed(claim(conn, owner, *ttl_ms, *limit, skip).await?)
        }
        LeaseOp::Beat { owner, ttl_ms } => LeaseReply::Beat(beat(conn, owner, *ttl_ms).await?),
        LeaseOp::Leave(owner) => {
            sqlx::query("DELETE FROM hosts WHERE owner = ?").bind(owner).execute(&mut *conn).await.map_err(db)?;
            LeaseReply::Left
        }
        LeaseOp::Release(lease) => {
            // A run that never got its first event (an unknown id resumed, a start that
            // failed before writing) leaves nothing behind.
            let sql = "DELETE FROM run_leases WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3 \
                       AND NOT EXISTS (SELECT 1 FROM events WHERE run_id = ?1)";
            on_lease(conn, sql, lease).await?;
            let sql =
                "UPDATE run_leases SET owner = '', expires_us = 0 WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3";
            on_lease(conn, sql, lease).await?;
            LeaseReply::Released
        }
    })
}

/// Runs `sql` with the lease's run, owner and epoch as `?1`..`?3`.
async fn on_lease(conn: &mut SqliteConnection, sql: &'static str, lease: &Lease) -> Result<(), StoreError> {
    let q = sqlx::query(sql).bind(&lease.run_id).bind(&lease.owner).bind(lease.epoch as i64);
    q.execute(&mut *conn).await.map_err(db)?;
    Ok(())
}

async fn take(
    conn: &mut SqliteConnection,
    run_id: &str,
    owner: &str,
    ttl_ms: u64,
    breaking: Option<u64>,
) -> Result<LeaseTake, StoreError> {
    let now = now_us();
    let expires_us = now + ttl_ms * 1000;
    let row = sqlx::query(concat!("SELECT l.owner, l.epoch, ", until!(), " FROM run_leases l WHERE l.run_id = ?"))
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let Some(row) = row else {
        sqlx::query(
            "INSERT INTO run_leases (run_id, owner, epoch, expires_us, head_seq, head_hash) VALUES (?, ?, 1, ?, 0, ?)",
        )
        .bind(run_id)
        .bind(owner)
        .bind(expires_us as i64)
        .bind(GENESIS_HASH)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        return Ok(LeaseTake::Taken(Lease { run_id: run_id.into(), owner: owner.into(), epoch: 1, expires_us }));
    };
    let holder: String = row.try_get(0).map_err(db)?;
    let epoch = row.try_get::<i64, _>(1).map_err(db)? as u64;
    let until = row.try_get::<i64, _>(2).map_err(db)? as u64;
    let free = holder.is_empty() || holder == owner || until <= now || breaking == Some(epoch);
    if !free {
        return Ok(LeaseTake::Held(Lease { run_id: run_id.into(), owner: holder, epoch, expires_us: until }));
    }
    sqlx::query("UPDATE run_leases SET owner = ?, epoch = ?, expires_us = ? WHERE run_id = ?")
        .bind(owner)
        .bind((epoch + 1) as i64)
        .bind(expires_us as i64)
        .bind(run_id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(LeaseTake::Taken(Lease { run_id: run_id.into(), owner: owner.into(), epoch: epoch + 1, expires_us }))
}

/// Takes up to `limit` interrupted runs whose lease is free or lapsed for `owner` (see
/// `Leases::claim_interrupted`). The writer's transaction is the only writer, so nothing
/// can be taking them meanwhile.
async fn claim(
    conn: &mut SqliteConnection,
    owner: &str,
    ttl_ms: u64,
    limit: usize,
    skip: &[String],
) -> Result<Vec<Lease>, StoreError> {
    let now = now_us();
    let ids: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT l.run_id FROM runs r JOIN run_leases l ON l.run_id = r.run_id \
         WHERE r.status = 'running' AND l.owner <> ?1 AND ",
        until!(),
        " <= ?2 ORDER BY r.started_us LIMIT ?3"
    ))
    .bind(owner)
    .bind(now as i64)
    .bind(limit.saturating_add(skip.len()).min(i64::MAX as usize) as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let expires_us = now + ttl_ms * 1000;
    let mut taken = Vec::with_capacity(limit);
    for run_id in ids.into_iter().filter(|id| !skip.contains(id)).take(limit) {
        let epoch: i64 = sqlx::query_scalar(
            "UPDATE run_leases SET owner = ?, epoch = epoch + 1, expires_us = ? WHERE run_id = ? RETURNING epoch",
        )
        .bind(owner)
        .bind(expires_us as i64)
        .bind(&run_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
        taken.push(Lease { run_id, owner: owner.into(), epoch: epoch as u64, expires_us });
    }
    Ok(taken)
}

/// `owner`'s heartbeat; hosts long silent that hold nothing are forgotten.
async fn beat(conn: &mut SqliteConnection, owner: &str, ttl_ms: u64) -> Result<Heartbeat, StoreError> {
    let now = now_us();
    let before: Option<i64> = sqlx::query_scalar("SELECT expires_us FROM hosts WHERE owner = ?")
        .bind(owner)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let expires_us = now + ttl_ms * 1000;
    sqlx::query(
        "INSERT INTO hosts (owner, since_us, beat_us, expires_us) VALUES (?1, ?2, ?2, ?3) \
         ON CONFLICT (owner) DO UPDATE SET beat_us = excluded.beat_us, expires_us = excluded.expires_us",
    )
    .bind(owner)
    .bind(now as i64)
    .bind(expires_us as i64)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "DELETE FROM hosts WHERE expires_us < ? \
         AND NOT EXISTS (SELECT 1 FROM run_leases l WHERE l.owner = hosts.owner)",
    )
    .bind(now.saturating_sub(FORGET_HOSTS_AFTER_US) as i64)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let lapsed_since_us = before.map(|b| b as u64).filter(|b| *b <= now);
    Ok(Heartbeat { expires_us, lapsed_since_us, found: before.is_some(), now_us: now })
}

/// Why an append was refused: its lease was taken over (or released), or the journal no
/// longer ends where the writer thought.
pub(crate) async fn why_refused(conn: &mut SqliteConnection, append: &Append) -> Result<StoreError, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT owner, epoch FROM run_leases WHERE run_id = ?")
        .bind(append.run_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    if let Some(lost) = lease_lost(append, row.map(|(o, e)| (o, e as u64))) {
        return Ok(lost);
    }
    let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE run_id = ?")
        .bind(append.run_id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok(conflict(append, head.unwrap_or(0) as u64))
}

/// The refusal of an append whose run's lease is now `holder` (owner and epoch; `None`
/// if the run has no lease): `None` if the append's fence still holds. Both backends
/// word it alike.
pub(crate) fn lease_lost(append: &Append, holder: Option<(String, u64)>) -> Option<StoreError> {
    let (run, epoch) = (append.run_id.to_string(), append.fence.epoch);
    match holder {
        None => Some(StoreError::LeaseLost { run, epoch, holder: "nobody".into(), holder_epoch: 0 }),
        Some((owner, held)) if owner != append.fence.owner || held != epoch => Some(StoreError::LeaseLost {
            run,
            epoch,
            holder: if owner.is_empty() { "nobody (released)".into() } else { owner },
            holder_epoch: held,
        }),
        Some(_) => None,
    }
}

/// The refusal of an append under a lease that holds: another writer took its position
/// (the journal now ends at `head`).
pub(crate) fn conflict(append: &Append, head: u64) -> StoreError {
    let (seq, kind) = append.events.first().map_or((0, ""), |e| (e.seq, e.kind));
    StoreError::Conflict { run: append.run_id.to_string(), seq, kind: kind.to_string(), head }
}

/// Where the event INSERTs of a batch's text are, and how many rows they were given.
pub(crate) struct Layout {
    /// Their positions among the text's statements.
    pub(crate) inserts: std::ops::Range<usize>,
    /// Rows given to them (every event of every append).
    pub(crate) rows: u64,
}

/// Adds a batch's appends to its text, after `before` statements: the leases new runs
/// take (`TakeNew`); every event in one INSERT (per 4,000 rows) whose rows are kept only
/// where the run's lease still has the append's owner and epoch (the events' primary key
/// refuses a position already taken); then, for appends that give the lease up, the
/// release with the head anchored at their last event.
pub(crate) fn push_appends(q: &mut QueryBuilder<Sqlite>, appends: &[&Append], before: usize) -> Layout {
    let mut statements = before;
    let taking: Vec<(&Append, u64)> =
        appends.iter().filter_map(|a| a.lease.takes().map(|ttl_ms| (*a, ttl_ms))).collect();
    if !taking.is_empty() {
        q.push(" INSERT INTO run_leases (run_id, owner, epoch, expires_us, head_seq, head_hash) ");
        q.push_values(&taking, |mut b, (a, ttl_ms)| {
            b.push_bind(a.run_id.as_str())
                .push_bind(a.fence.owner.as_str())
                .push_bind(1i64)
                .push_bind((now_us() + ttl_ms * 1000) as i64)
                .push_bind(0i64)
                .push_bind(GENESIS_HASH);
        });
        q.push(" ON CONFLICT (run_id) DO NOTHING;");
        statements += 1;
    }
    let rows: Vec<(&Append, &SealedEvent)> =
        appends.iter().flat_map(|a| a.events.iter().map(move |e| (*a, e))).collect();
    let first_insert = statements;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        q.push(
            " INSERT INTO events (run_id, seq, at_us, kind, payload, hash) \
             SELECT column1, column2, column3, column4, column5, column6 FROM (",
        );
        q.push_values(chunk, |mut b, (a, e)| {
            b.push_bind(a.run_id.as_str())
                .push_bind(e.seq as i64)
                .push_bind(e.at_us as i64)
                .push_bind(e.kind)
                .push_bind(std::sync::Arc::clone(&e.payload))
                .push_bind(e.hash.as_str())
                .push_bind(a.fence.owner.as_str())
                .push_bind(a.fence.epoch as i64);
        });
        q.push(
            ") AS v WHERE EXISTS (SELECT 1 FROM run_leases l WHERE l.run_id = v.column1 AND l.owner = v.column7 \
             AND l.epoch = v.column8);",
        );
        statements += 1;
    }
    let inserts = first_insert..statements;
    for a in appends.iter().filter(|a| a.lease.releases()) {
        let Some(last) = a.events.last() else { continue };
        q.push(" UPDATE run_leases SET owner = '', expires_us = 0, head_seq = ").push_bind(last.seq as i64);
        q.push(", head_hash = ").push_bind(last.hash.as_str());
        q.push(" WHERE run_id = ").push_bind(a.run_id.as_str());
        q.push(" AND owner = ").push_bind(a.fence.owner.as_str());
        q.push(" AND epoch = ").push_bind(a.fence.epoch as i64).push(";");
    }
    Layout { inserts, rows: rows.len() as u64 }
}

/// Bound parameters per statement stay under SQLite's 32,766: eight per row.
const ROWS_PER_INSERT: usize = 4000;

/// Which appends are written: the journal holds their last event. Read when an INSERT
/// kept fewer rows than it was given (inside the batch's transaction).
pub(crate) async fn written(conn: &mut SqliteConnection, appends: &[&Append]) -> Result<Vec<bool>, StoreError> {
    let mut out = Vec::with_capacity(appends.len());
    for a in appends {
        let Some(last) = a.events.last() else {
            out.push(true);
            continue;
        };
        let hash: Option<String> = sqlx::query_scalar("SELECT hash FROM events WHERE run_id = ? AND seq = ?")
            .bind(a.run_id.as_str())
            .bind(last.seq as i64)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        out.push(hash.as_deref() == Some(last.hash.as_str()));
    }
    Ok(out)
}
