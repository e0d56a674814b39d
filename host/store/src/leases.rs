//! Run leases and heads: who may write a run, and where its journal ends.
//!
//! A lease is taken atomically (in a `BEGIN IMMEDIATE` transaction on the writer
//! connection, batched with other writes), renewed while its owner works, and released
//! when the run stops. Every
//! append advances the run's head with one conditional `UPDATE` that checks the owner,
//! the epoch and the previous head together; zero rows changed means the append is
//! refused, and a second query says why. Times are the store's clock (here: this
//! machine's), so all hosts on one journal judge expiry alike.

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tether_types::chain::SealedEvent;
use tether_types::chain::GENESIS_HASH;
use tether_types::store::{Append, Lease, LeaseTake, StoreError};

use crate::error::db;

/// A lease change, written by the writer task in its own transaction.
pub(crate) enum LeaseOp {
    Take { run_id: String, owner: String, ttl_ms: u64, breaking: Option<u64> },
    Renew(Lease, u64),
    Release(Lease),
}

/// What a lease change did.
pub(crate) enum LeaseReply {
    Take(LeaseTake),
    Renewed(Lease),
    Released,
}

/// Microseconds since the Unix epoch: the store's clock.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Applies a lease change in the caller's transaction. The inner `Err` refuses it (a
/// renewal of a lease that was taken over); the outer one fails the transaction.
pub(crate) async fn apply(
    conn: &mut SqliteConnection,
    op: &LeaseOp,
) -> Result<Result<LeaseReply, StoreError>, StoreError> {
    Ok(Ok(match op {
        LeaseOp::Take { run_id, owner, ttl_ms, breaking } => {
            LeaseReply::Take(take(conn, run_id, owner, *ttl_ms, *breaking).await?)
        }
        LeaseOp::Renew(lease, ttl_ms) => {
            let expires_us = now_us() + ttl_ms * 1000;
            let sql =
                "UPDATE run_leases SET expires_us = ?4 WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3 AND owner <> ''";
            if on_lease(conn, sql, lease, Some(expires_us)).await? == 0 {
                return Ok(Err(lost(conn, &lease.run_id, lease.epoch).await));
            }
            LeaseReply::Renewed(Lease { expires_us, ..lease.clone() })
        }
        LeaseOp::Release(lease) => {
            // A run that never got its first event (an unknown id resumed, a start that
            // failed before writing) leaves nothing behind.
            let sql = "DELETE FROM run_leases WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3 \
                       AND NOT EXISTS (SELECT 1 FROM events WHERE run_id = ?1)";
            on_lease(conn, sql, lease, None).await?;
            let sql =
                "UPDATE run_leases SET owner = '', expires_us = 0 WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3";
            on_lease(conn, sql, lease, None).await?;
            LeaseReply::Released
        }
    }))
}

/// Runs `sql` with the lease's run, owner and epoch as `?1`..`?3` (and `?4` if given);
/// returns the rows it changed.
async fn on_lease(
    conn: &mut SqliteConnection,
    sql: &'static str,
    lease: &Lease,
    fourth: Option<u64>,
) -> Result<u64, StoreError> {
    let mut q = sqlx::query(sql).bind(&lease.run_id).bind(&lease.owner).bind(lease.epoch as i64);
    if let Some(v) = fourth {
        q = q.bind(v as i64);
    }
    Ok(q.execute(&mut *conn).await.map_err(db)?.rows_affected())
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
    let row = sqlx::query("SELECT owner, epoch, expires_us FROM run_leases WHERE run_id = ?")
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

/// Why an append was refused: its lease was taken over (or released), or the journal no
/// longer ends where the writer thought.
pub(crate) async fn why_refused(conn: &mut SqliteConnection, append: &Append) -> Result<StoreError, StoreError> {
    let first = append.events.first().map_or((0, ""), |e| (e.seq, e.kind));
    let row: Option<(String, i64)> = sqlx::query_as("SELECT owner, epoch FROM run_leases WHERE run_id = ?")
        .bind(append.run_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let run = append.run_id.to_string();
    let Some((holder, epoch)) = row else {
        return Ok(StoreError::LeaseLost { run, epoch: append.fence.epoch, holder: "nobody".into(), holder_epoch: 0 });
    };
    let epoch = epoch as u64;
    if holder != append.fence.owner || epoch != append.fence.epoch {
        return Ok(StoreError::LeaseLost {
            run,
            epoch: append.fence.epoch,
            holder: if holder.is_empty() { "nobody (released)".into() } else { holder },
            holder_epoch: epoch,
        });
    }
    let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE run_id = ?")
        .bind(append.run_id.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok(StoreError::Conflict { run, seq: first.0, kind: first.1.to_string(), head: head.unwrap_or(0) as u64 })
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

async fn lost(conn: &mut SqliteConnection, run_id: &str, epoch: u64) -> StoreError {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT owner, epoch FROM run_leases WHERE run_id = ?")
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten();
    let (holder, holder_epoch) = row.map_or(("nobody".to_string(), 0), |(o, e)| (o, e as u64));
    StoreError::LeaseLost {
        run: run_id.into(),
        epoch,
        holder: if holder.is_empty() { "nobody (released)".into() } else { holder },
        holder_epoch,
    }
}
