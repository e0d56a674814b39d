//! Group commit: one task owns the write connection. Requests queue on a channel; the
//! task takes everything queued, writes it as one transaction, commits once, and
//! acknowledges every request in it. Each append is fenced inside that transaction (see
//! [`Append`]): an append whose lease or head no longer holds is answered with its error
//! and left out, without failing its neighbours. If the batch fails anyway, its requests
//! are retried one by one so that one bad request cannot fail the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tether_types::store::{Append, LeaseChange, PluginAdded, PluginRecord, StoreError};

use crate::error::db;
use crate::leases::{LeaseOp, LeaseReply};
use tokio::sync::{mpsc, oneshot};

/// Requests per transaction: large enough for throughput, small enough for latency.
const MAX_BATCH: usize = 512;

/// A batch text is kept prepared for the next batch of the same shape only if it writes
/// at most this many events: a run's append repeats its shape, while a large batch's
/// prepared statements take megabytes and are seldom run again.
const CACHED_BATCH_ROWS: u64 = 64;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(crate) enum Request {
    Append(Append, Reply<()>),
    Component(String, Vec<u8>, Reply<()>),
    /// Lease changes are small: they join the batch, in order (see `crate::leases`).
    Lease(LeaseOp, Reply<LeaseReply>),
    /// Plugin changes are rare and each is its own transaction (see `crate::plugins`).
    AddPlugin(Box<PluginRecord>, Vec<u8>, Reply<PluginAdded>),
    RemovePlugin(String, String, Reply<PluginRecord>),
    /// API token changes: rare, each alone (see `crate::tokens`).
    Token(crate::tokens::TokenOp, Reply<Option<tether_types::access::TokenRecord>>),
    /// A cancel request for a run another host executes (run, by, reason); alone too.
    AskCancel(String, String, Option<String>, Reply<bool>),
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

pub(crate) fn spawn(conn: SqliteConnection, commits: Arc<AtomicU64>) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(conn, rx, commits));
    tx
}

/// A run's writer, by its fence: once one of its appends is refused, the appends it
/// queued after that one (pipelined, not yet answered) must not be written, or the
/// journal would have a gap.
type Writer = (String, String, u64);

fn writer_of(a: &Append) -> Writer {
    (a.run_id.to_string(), a.fence.owner.clone(), a.fence.epoch)
}

/// Appends of writers already refused are answered with that refusal and left out.
fn refuse_poisoned(batch: &mut Vec<Request>, poisoned: &HashMap<Writer, StoreError>) {
    if poisoned.is_empty() {
        return;
    }
    let mut kept = Vec::with_capacity(batch.len());
    for r in batch.drain(..) {
        match &r {
            Request::Append(a, _) if poisoned.contains_key(&writer_of(a)) => {
                let e = poisoned[&writer_of(a)].clone();
                ack(r, Err(e));
            }
            _ => kept.push(r),
        }
    }
    *batch = kept;
}

/// Whether a request is written on its own rather than batched.
fn alone(r: &Request) -> bool {
    matches!(
        r,
        Request::AddPlugin(..)
            | Request::RemovePlugin(..)
            | Request::Token(..)
            | Request::AskCancel(..)
            | Request::Close(..)
    )
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Request>, commits: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut poisoned: HashMap<Writer, StoreError> = HashMap::new();
    let committed = || {
        commits.fetch_add(1, Ordering::Relaxed);
    };
    // A request met while gathering a batch that must be written alone waits for the batch.
    let mut held = None;
    loop {
        let Some(first) = held.take().or(rx.recv().await) else { break };
        match first {
            Request::AddPlugin(plugin, wasm, tx) => {
                let result = crate::plugins::add(&mut conn, &plugin, &wasm).await;
                if result.is_ok() {
                    committed();
                }
                let _ = tx.send(result);
                continue;
            }
            Request::RemovePlugin(name, version, tx) => {
                let result = crate::plugins::remove(&mut conn, &name, &version).await;
                if result.is_ok() {
                    committed();
                }
                let _ = tx.send(result);
                continue;
            }
            Request::Token(op, tx) => {
                let result = crate::tokens::apply(&mut conn, op).await;
                if result.is_ok() {
                    committed();
                }
                let _ = tx.send(result);
                continue;
            }
            Request::AskCancel(run, by, reason, tx) => {
                let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let _ = tx.send(
                    crate::cancels::request(&mut conn, &run, &by, reason.as_deref(), at.as_micros() as u64).await,
                );
                continue;
            }
            Request::Close(tx) => {
                let result = checkpoint(&mut conn).await;
                // Closing the last connection to the journal lets SQLite finish the
                // checkpoint and remove the log; with others open it leaves both be.
                let closed = sqlx::Connection::close(conn).await.map_err(db);
                let _ = tx.send(result.and(closed));
                return;
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
        refuse_poisoned(&mut batch, &poisoned);
        if batch.is_empty() {
            continue;
        }
        match write(&mut conn, &batch).await {
            Ok(outcomes) => {
                committed();
                for (r, outcome) in batch.drain(..).zip(outcomes) {
                    if let (Request::Append(a, _), Outcome::Refused(e)) = (&r, &outcome) {
                        poisoned.insert(writer_of(a), e.clone());
                    }
                    ack(r, Ok(outcome));
                }
            }
            Err(_) if batch.len() > 1 => {
                for r in batch.drain(..) {
                    let mut one = vec![r];
                    refuse_poisoned(&mut one, &poisoned);
                    let Some(r) = one.pop() else { continue };
                    let result = write(&mut conn, std::slice::from_ref(&r)).await;
                    let result = result.map(|mut o| o.pop().unwrap_or(Outcome::Done));
                    match (&r, &result) {
                        (Request::Append(a, _), Ok(Outcome::Refused(e)) | Err(e)) => {
                            poisoned.insert(writer_of(a), e.clone());
                        }
                        (_, Ok(_)) => committed(),
                        _ => {}
                    }
                    ack(r, result);
                }
            }
            Err(e) => {
                for r in batch.drain(..) {
                    if let Request::Append(a, _) = &r {
                        poisoned.insert(writer_of(a), e.clone());
                    }
                    ack(r, Err(e.clone()));
                }
            }
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
        Request::AddPlugin(..)
        | Request::RemovePlugin(..)
        | Request::Token(..)
        | Request::AskCancel(..)
        | Request::Close(..) => {}
    }
}

/// Writes a batch as one transaction, in order, and says how each request came out.
/// `Err` means the whole transaction failed.
///
/// The batch goes to the database as one SQL text, run by the connection's thread in
/// one go (one round trip): components, the leases new runs take, every append's events
/// in one INSERT whose rows are kept only where their run's fence holds, the releases
/// that ride on appends, then the lease changes (a lone append is that INSERT alone, as
/// cheap as an unfenced one). If the INSERT kept fewer rows than it was given, the
/// journal says which appends were refused; a position already taken fails the batch,
/// whose requests are then written one by one.
async fn write(conn: &mut SqliteConnection, batch: &[Request]) -> Result<Vec<Outcome>, StoreError> {
    let appends: Vec<&Append> = batch
        .iter()
        .filter_map(|r| match r {
            Request::Append(a, _) => Some(a),
            _ => None,
        })
        .collect();
    let lone = batch.len() == 1
        && appends.len() == 1
        && appends[0].lease == LeaseChange::Keep
        && !crate::index::changes_index(&appends);
    let leases = batch.iter().any(|r| matches!(r, Request::Lease(..)));
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(if lone { "" } else { "BEGIN IMMEDIATE;" });
    let mut statements = usize::from(!lone);
    for r in batch {
        if let Request::Component(digest, wasm, _) = r {
            q.push(" INSERT OR IGNORE INTO components (digest, wasm) VALUES (");
            q.push_bind(digest.as_str()).push(", ").push_bind(wasm.as_slice()).push(");");
            statements += 1;
        }
    }
    let layout = crate::leases::push_appends(&mut q, &appends, statements);
    crate::index::push_index(&mut q, &appends);
    // Lease changes read before they write: they follow in their own statements.
    if !lone && !leases {
        q.push(" COMMIT;");
    }
    let kept = match run_text(conn, q, &layout.inserts, layout.rows <= CACHED_BATCH_ROWS).await {
        Ok(kept) => kept,
        Err(e) => {
            if !lone {
                // The text stops at the failing statement, inside its transaction.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            let taken = e.as_database_error().is_some_and(|d| d.is_unique_violation());
            if let ([a], true, 1) = (appends.as_slice(), taken, batch.len()) {
                // A position already taken, under a lease that holds: another writer raced.
                return Ok(vec![Outcome::Refused(crate::leases::why_refused(conn, a).await?)]);
            }
            return Err(db(e));
        }
    };
    let written =
        if kept == layout.rows { vec![true; appends.len()] } else { crate::leases::written(conn, &appends).await? };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut written_each = written.into_iter();
    for r in batch {
        outcomes.push(match r {
            Request::Append(a, _) => match written_each.next() {
                Some(true) => Outcome::Done,
                _ => Outcome::Refused(crate::leases::why_refused(conn, a).await?),
            },
            Request::Lease(op, _) => match crate::leases::apply(conn, op).await {
                Ok(reply) => Outcome::Lease(reply),
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    return Err(e);
                }
            },
            _ => Outcome::Done,
        });
    }
    if leases {
        if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(db(e));
        }
    }
    Ok(outcomes)
}

/// Runs a text of statements; returns the rows kept by the statements in `inserts`
/// (positions in the text, from 0).
async fn run_text(
    conn: &mut SqliteConnection,
    mut q: QueryBuilder<Sqlite>,
    inserts: &std::ops::Range<usize>,
    cached: bool,
) -> Result<u64, sqlx::Error> {
    use futures_util::TryStreamExt;
    // Several statements in one prepared text is SQLite-only in sqlx (and deprecated
    // there for portability); it is what makes a batch one round trip to the database
    // thread. sqlx is pinned; a PostgreSQL store writes its own batches.
    #[allow(deprecated)]
    let mut results = q.build().persistent(cached).fetch_many(&mut *conn);
    let (mut kept, mut statement) = (0, 0);
    while let Some(item) = results.try_next().await? {
        if let sqlx::Either::Left(done) = item {
            if inserts.contains(&statement) {
                kept += done.rows_affected();
            }
            statement += 1;
        }
    }
    Ok(kept)
}

/// Moves everything in the write-ahead log into the database file, so the file alone
/// holds every committed run (a copy of `journal.db` is complete).
async fn checkpoint(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    // PASSIVE: copies what it can without waiting for, or blocking, other processes that
    // use the journal (a TRUNCATE would make them wait, and can refuse their opens).
    let (_, logged, copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await.map_err(db)?;
    if copied < logged {
        tracing::debug!("the journal's write-ahead log is not fully checkpointed: another process is reading it");
    }
    Ok(())
}
