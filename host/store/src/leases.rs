//! Run leases and heads: who may write a run, and where its journal ends.
//!
//! A lease is taken atomically (in a `BEGIN IMMEDIATE` transaction on the writer
//! connection, batched with other writes), renewed while its owner works, and released
//! when the run stops. Every
//! append advances the run's head with one conditional `UPDATE` that checks the owner,
//! the epoch and the previous head together; zero rows changed means the append is
//! refused, and a second query says why. Times are the store's clock (here: this
//! machine's), so all hosts on one journal judge expiry alike.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tether_types::event::SealedEvent;
use tether_types::event::GENESIS_HASH;
use tether_types::store::{Append, Lease, LeaseChange, LeaseTake, StoreError};

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
            let sql = "DELETE FROM run_leases WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3 AND head_seq = 0";
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

/// Checks every append's fence and moves each run's head to its last event, in the
/// caller's transaction, taking the lease first for appends that carry `TakeNew`: one
/// INSERT and one UPDATE for the whole batch. Says, per append, whether it was.
pub(crate) async fn advance_heads(conn: &mut SqliteConnection, appends: &[&Append]) -> Result<Vec<bool>, StoreError> {
    let taking: Vec<(&Append, u64)> = appends
        .iter()
        .filter_map(|a| match a.lease {
            LeaseChange::TakeNew { ttl_ms } => Some((*a, ttl_ms)),
            _ => None,
        })
        .collect();
    if !taking.is_empty() {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO run_leases (run_id, owner, epoch, expires_us, head_seq, head_hash) ");
        q.push_values(&taking, |mut b, (a, ttl_ms)| {
            b.push_bind(a.run_id.as_str())
                .push_bind(a.fence.owner.as_str())
                .push_bind(1i64)
                .push_bind((now_us() + ttl_ms * 1000) as i64)
                .push_bind(0i64)
                .push_bind(GENESIS_HASH);
        });
        q.push(" ON CONFLICT (run_id) DO NOTHING");
        q.build().execute(&mut *conn).await.map_err(db)?;
    }
    let moving: Vec<(&Append, &SealedEvent, &SealedEvent)> =
        appends.iter().filter_map(|a| Some((*a, a.events.first()?, a.events.last()?))).collect();
    let mut rows = Vec::new();
    if !moving.is_empty() {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE run_leases SET head_seq = v.column5, head_hash = v.column6 FROM (");
        q.push_values(&moving, |mut b, (a, first, last)| {
            b.push_bind(a.run_id.as_str())
                .push_bind(a.fence.owner.as_str())
                .push_bind(a.fence.epoch as i64)
                .push_bind(first.seq as i64 - 1)
                .push_bind(last.seq as i64)
                .push_bind(last.hash.as_str());
        });
        q.push(
            ") AS v WHERE run_leases.run_id = v.column1 AND run_leases.owner = v.column2 \
             AND run_leases.epoch = v.column3 AND run_leases.head_seq = v.column4",
        );
        let changed = q.build().execute(&mut *conn).await.map_err(db)?.rows_affected();
        if changed == moving.len() as u64 {
            // The common case: every fence held. No rows cross back from the database.
            return Ok(vec![true; appends.len()]);
        }
        // Some were refused: the heads now say which appends moved them.
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT run_id, head_seq, owner, epoch, head_hash FROM run_leases WHERE run_id IN (");
        let mut list = q.separated(", ");
        for (a, _, _) in &moving {
            list.push_bind(a.run_id.as_str());
        }
        q.push(")");
        rows = q.build().fetch_all(&mut *conn).await.map_err(db)?;
    }
    Ok(appends.iter().map(|a| advanced(&rows, a)).collect())
}

/// Gives up the leases of runs whose appends were just written under them.
pub(crate) async fn release_after<'a>(
    conn: &mut SqliteConnection,
    appends: impl Iterator<Item = &'a Append>,
) -> Result<(), StoreError> {
    let runs: Vec<&str> = appends.map(|a| a.run_id.as_str()).collect();
    if runs.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new("UPDATE run_leases SET owner = '', expires_us = 0 WHERE run_id IN (");
    let mut list = q.separated(", ");
    for run in runs {
        list.push_bind(run);
    }
    q.push(")");
    q.build().execute(&mut *conn).await.map_err(db)?;
    Ok(())
}

/// Why an append was refused: its lease was taken over (or released), or the journal no
/// longer ends where the writer thought.
pub(crate) async fn why_refused(conn: &mut SqliteConnection, append: &Append) -> Result<StoreError, StoreError> {
    let first = append.events.first().map_or((0, ""), |e| (e.seq, e.kind));
    let row = sqlx::query("SELECT owner, epoch, head_seq FROM run_leases WHERE run_id = ?")
        .bind(append.run_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let run = append.run_id.to_string();
    let Some(row) = row else {
        return Ok(StoreError::LeaseLost { run, epoch: append.fence.epoch, holder: "nobody".into(), holder_epoch: 0 });
    };
    let holder: String = row.try_get(0).map_err(db)?;
    let epoch = row.try_get::<i64, _>(1).map_err(db)? as u64;
    let head = row.try_get::<i64, _>(2).map_err(db)? as u64;
    Ok(if holder != append.fence.owner || epoch != append.fence.epoch {
        StoreError::LeaseLost {
            run,
            epoch: append.fence.epoch,
            holder: if holder.is_empty() { "nobody (released)".into() } else { holder },
            holder_epoch: epoch,
        }
    } else {
        StoreError::Conflict { run, seq: first.0, kind: first.1.to_string(), head }
    })
}

/// Adds an append to a one-go batch (see `writer::write_in_one_go`): the lease it takes,
/// the conditional advance of its head (returning `run_id, head_seq` when the fence
/// held), its events (inserted only if the head is now theirs) and the release it carries.
pub(crate) fn push_append(q: &mut QueryBuilder<Sqlite>, a: &Append) {
    let (Some(first), Some(last)) = (a.events.first(), a.events.last()) else { return };
    let run = a.run_id.as_str();
    if let LeaseChange::TakeNew { ttl_ms } = a.lease {
        q.push(" INSERT INTO run_leases (run_id, owner, epoch, expires_us, head_seq, head_hash) VALUES (");
        q.push_bind(run).push(", ").push_bind(a.fence.owner.as_str()).push(", 1, ");
        q.push_bind((now_us() + ttl_ms * 1000) as i64).push(", 0, ").push_bind(GENESIS_HASH);
        q.push(") ON CONFLICT (run_id) DO NOTHING;");
    }
    q.push(" UPDATE run_leases SET head_seq = ").push_bind(last.seq as i64);
    q.push(", head_hash = ").push_bind(last.hash.as_str());
    q.push(" WHERE run_id = ").push_bind(run);
    q.push(" AND owner = ").push_bind(a.fence.owner.as_str());
    q.push(" AND epoch = ").push_bind(a.fence.epoch as i64);
    q.push(" AND head_seq = ").push_bind(first.seq as i64 - 1);
    q.push(" RETURNING run_id, head_seq;");
    // Only if this append moved the head: the head is now its last event, under its fence.
    let is_ours = |q: &mut QueryBuilder<Sqlite>| {
        q.push(" run_id = ").push_bind(run);
        q.push(" AND owner = ").push_bind(a.fence.owner.as_str());
        q.push(" AND epoch = ").push_bind(a.fence.epoch as i64);
        q.push(" AND head_seq = ").push_bind(last.seq as i64);
        q.push(" AND head_hash = ").push_bind(last.hash.as_str());
    };
    for chunk in a.events.chunks(crate::writer::EVENT_ROWS_PER_INSERT) {
        q.push(" INSERT INTO events (run_id, seq, at_us, kind, payload, hash) SELECT * FROM (");
        q.push_values(chunk, |mut b, e| {
            b.push_bind(run)
                .push_bind(e.seq as i64)
                .push_bind(e.at_us as i64)
                .push_bind(e.kind)
                .push_bind(e.payload.as_str())
                .push_bind(e.hash.as_str());
        });
        q.push(") WHERE EXISTS (SELECT 1 FROM run_leases WHERE");
        is_ours(q);
        q.push(");");
    }
    if a.lease == LeaseChange::Release {
        q.push(" UPDATE run_leases SET owner = '', expires_us = 0 WHERE");
        is_ours(q);
        q.push(";");
    }
}

/// Whether `a` moved its run's head, from rows that start `run_id, head_seq` (what its
/// conditional UPDATE returns in a one-go batch) and may go on `owner, epoch, head_hash`
/// (the heads read back after a bulk UPDATE): the head is now its last event, under its
/// fence.
pub(crate) fn advanced(rows: &[SqliteRow], a: &Append) -> bool {
    let Some(last) = a.events.last() else { return true };
    rows.iter().any(|r| {
        r.try_get::<&str, _>(0).is_ok_and(|run| run == a.run_id.as_str())
            && r.try_get::<i64, _>(1).is_ok_and(|seq| seq == last.seq as i64)
            && (r.len() < 5
                || (r.try_get::<&str, _>(2).is_ok_and(|o| o == a.fence.owner)
                    && r.try_get::<i64, _>(3).is_ok_and(|e| e == a.fence.epoch as i64)
                    && r.try_get::<&str, _>(4).is_ok_and(|h| h == last.hash)))
    })
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
