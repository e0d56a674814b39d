//! Group commit: one task owns the write connection. Requests queue on a channel; the
//! task takes everything queued, writes it as one transaction, commits once, and
//! acknowledges every request in it. Each append is fenced inside that transaction (see
//! [`Append`]): an append whose lease or head no longer holds is answered with its error
//! and left out, without failing its neighbours. If the batch fails anyway, its requests
//! are retried one by one so that one bad request cannot fail the others.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tether_types::event::SealedEvent;
use tether_types::store::{Append, LeaseChange, PluginAdded, PluginRecord, StoreError};

use crate::error::db;
use crate::leases::{LeaseOp, LeaseReply};
use tokio::sync::{mpsc, oneshot};

/// Bound parameters per statement stay under SQLite's 32,766.
pub(crate) const EVENT_ROWS_PER_INSERT: usize = 4000;
/// Requests per transaction: large enough for throughput, small enough for latency.
const MAX_BATCH: usize = 512;
/// Batches up to this many requests go in one SQL text (one round trip, for latency);
/// larger ones, under load, reuse prepared statements one request at a time, which a
/// text made anew for every batch cannot.
const ONE_GO_MAX: usize = 8;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(crate) enum Request {
    Append(Append, Reply<()>),
    Component(String, Vec<u8>, Reply<()>),
    /// Lease changes are small: they join the batch, in order (see `crate::leases`).
    Lease(LeaseOp, Reply<LeaseReply>),
    /// Plugin changes are rare and each is its own transaction (see `crate::plugins`).
    AddPlugin(Box<PluginRecord>, Vec<u8>, Reply<PluginAdded>),
    RemovePlugin(String, String, Reply<PluginRecord>),
    /// Checkpoint the write-ahead log into the database file, then stop.
    Close(Reply<()>),
}

/// How one batched request came out, once its transaction committed.
enum Outcome {
    Done,
    Lease(LeaseReply),
    /// Refused on its own merits (a fence that no longer holds); its neighbours were written.
    Refused(StoreError),
}

pub(crate) fn spawn(conn: SqliteConnection) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(conn, rx));
    tx
}

/// Whether a request is written on its own rather than batched.
fn alone(r: &Request) -> bool {
    matches!(r, Request::AddPlugin(..) | Request::RemovePlugin(..) | Request::Close(..))
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // A request met while gathering a batch that must be written alone waits for the batch.
    let mut held = None;
    loop {
        let Some(first) = held.take().or(rx.recv().await) else { break };
        match first {
            Request::AddPlugin(plugin, wasm, tx) => {
                let _ = tx.send(crate::plugins::add(&mut conn, &plugin, &wasm).await);
                continue;
            }
            Request::RemovePlugin(name, version, tx) => {
                let _ = tx.send(crate::plugins::remove(&mut conn, &name, &version).await);
                continue;
            }
            Request::Close(tx) => {
                let _ = tx.send(checkpoint(&mut conn).await);
                break;
            }
            other => batch.push(other),
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) if alone(&r) => {
                    held = Some(r);
                    break;
                }
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match write(&mut conn, &batch).await {
            Ok(outcomes) => {
                for (r, outcome) in batch.drain(..).zip(outcomes) {
                    ack(r, Ok(outcome));
                }
            }
            Err(_) if batch.len() > 1 => {
                for r in batch.drain(..) {
                    let result = write(&mut conn, std::slice::from_ref(&r)).await;
                    ack(r, result.map(|mut o| o.pop().unwrap_or(Outcome::Done)));
                }
            }
            Err(e) => batch.drain(..).for_each(|r| ack(r, Err(e.clone()))),
        }
    }
}

fn ack(r: Request, result: Result<Outcome, StoreError>) {
    let result = match result {
        Ok(Outcome::Refused(e)) => Err(e),
        other => other,
    };
    match r {
        Request::Append(_, tx) | Request::Component(_, _, tx) => {
            let _ = tx.send(result.map(|_| ()));
        }
        Request::Lease(_, tx) => {
            let _ = tx.send(result.and_then(|o| match o {
                Outcome::Lease(reply) => Ok(reply),
                _ => Err(StoreError::Database("a lease change was not answered".into())),
            }));
        }
        // Never batched: `run` answers them one at a time.
        Request::AddPlugin(..) | Request::RemovePlugin(..) | Request::Close(..) => {}
    }
}

/// Writes a batch as one transaction, in order, and says how each request came out.
/// `Err` means the whole transaction failed.
async fn write(conn: &mut SqliteConnection, batch: &[Request]) -> Result<Vec<Outcome>, StoreError> {
    if batch.len() <= ONE_GO_MAX && batch.iter().all(|r| matches!(r, Request::Append(..) | Request::Component(..))) {
        return write_in_one_go(conn, batch).await;
    }
    write_in_bulk(conn, batch).await
}

/// The hot path: appends (with the lease changes they carry) and components as one SQL
/// text that the connection's thread runs in one go, so a commit costs one round trip
/// to it, as a lone INSERT would. Each append's head is advanced by a conditional UPDATE
/// that returns the run and its new head when the fence held; its events are inserted
/// only if the head is now theirs; a release rides on the same condition. An append
/// whose UPDATE returned nothing was refused.
async fn write_in_one_go(conn: &mut SqliteConnection, batch: &[Request]) -> Result<Vec<Outcome>, StoreError> {
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("BEGIN IMMEDIATE;");
    for r in batch {
        match r {
            Request::Component(digest, wasm, _) => {
                q.push(" INSERT OR IGNORE INTO components (digest, wasm) VALUES (");
                q.push_bind(digest.as_str()).push(", ").push_bind(wasm.as_slice()).push(");");
            }
            Request::Append(a, _) => crate::leases::push_append(&mut q, a),
            _ => {}
        }
    }
    q.push(" COMMIT;");
    let advanced = match q.build().fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) => {
            // The text stops at the failing statement, inside its transaction.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(db(e));
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for r in batch {
        let outcome = match r {
            Request::Append(a, _) => match crate::leases::advanced(&advanced, a) {
                true => Outcome::Done,
                false => Outcome::Refused(crate::leases::why_refused(conn, a).await?),
            },
            _ => Outcome::Done,
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Any batch, as one transaction in a few statements whatever its size: every append's
/// fence and head in one UPDATE, all their events in one INSERT (per 4,000 rows), then
/// the lease changes in order (takes and renewals read before they write).
async fn write_in_bulk(conn: &mut SqliteConnection, batch: &[Request]) -> Result<Vec<Outcome>, StoreError> {
    // IMMEDIATE: the write lock is taken before the fences are read, so no other process
    // can move a lease or a head between the check and the insert.
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await.map_err(db)?;
    for r in batch {
        if let Request::Component(digest, wasm, _) = r {
            sqlx::query("INSERT OR IGNORE INTO components (digest, wasm) VALUES (?, ?)")
                .bind(digest)
                .bind(wasm)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
    }
    let appends: Vec<&Append> = batch
        .iter()
        .filter_map(|r| match r {
            Request::Append(a, _) => Some(a),
            _ => None,
        })
        .collect();
    let advanced = crate::leases::advance_heads(&mut tx, &appends).await?;
    let written = || appends.iter().zip(&advanced).filter(|(_, ok)| **ok).map(|(a, _)| *a);
    let rows: Vec<(&str, &SealedEvent)> =
        written().flat_map(|a| a.events.iter().map(move |e| (a.run_id.as_str(), e))).collect();
    for chunk in rows.chunks(EVENT_ROWS_PER_INSERT) {
        insert_events(&mut tx, chunk).await?;
    }
    crate::leases::release_after(&mut tx, written().filter(|a| a.lease == LeaseChange::Release)).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut advanced = advanced.into_iter();
    for r in batch {
        outcomes.push(match r {
            Request::Append(a, _) => match advanced.next() {
                Some(true) => Outcome::Done,
                _ => Outcome::Refused(crate::leases::why_refused(&mut tx, a).await?),
            },
            Request::Lease(op, _) => match crate::leases::apply(&mut tx, op).await? {
                Ok(reply) => Outcome::Lease(reply),
                Err(refused) => Outcome::Refused(refused),
            },
            _ => Outcome::Done,
        });
    }
    tx.commit().await.map_err(db)?;
    Ok(outcomes)
}

async fn insert_events(conn: &mut SqliteConnection, rows: &[(&str, &SealedEvent)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new("INSERT INTO events (run_id, seq, at_us, kind, payload, hash) ");
    q.push_values(rows, |mut b, (run, e)| {
        b.push_bind(*run)
            .push_bind(e.seq as i64)
            .push_bind(e.at_us as i64)
            .push_bind(e.kind)
            .push_bind(&e.payload)
            .push_bind(&e.hash);
    });
    q.build().execute(&mut *conn).await.map(|_| ()).map_err(db)
}

/// Moves everything in the write-ahead log into the database file and empties the log,
/// so the file alone holds every committed run (a copy of `journal.db` is complete).
async fn checkpoint(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let (busy, _, _): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await.map_err(db)?;
    if busy != 0 {
        // Another process is reading or writing the journal: it will checkpoint later.
        tracing::debug!("the journal's write-ahead log could not be fully checkpointed: another process uses it");
    }
    Ok(())
}
