//! Group commit: one task owns the write connection. Requests queue on a channel; the
//! task takes everything queued, writes it as one transaction with multi-row INSERTs,
//! commits once, and acknowledges every request in it. If a batch fails, its requests
//! are retried one by one so that one bad request cannot fail its neighbours.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tether_types::event::SealedEvent;
use tether_types::store::{Append, PluginAdded, PluginRecord, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Bound parameters per statement stay under SQLite's 32,766.
const EVENT_ROWS_PER_INSERT: usize = 4000;
/// Requests per transaction: large enough for throughput, small enough for latency.
const MAX_BATCH: usize = 512;

pub(crate) enum Request {
    Append(Append, oneshot::Sender<Result<(), StoreError>>),
    Component(String, Vec<u8>, oneshot::Sender<Result<(), StoreError>>),
    /// Plugin changes are rare and each is its own transaction (see `crate::plugins`).
    AddPlugin(Box<PluginRecord>, Vec<u8>, oneshot::Sender<Result<PluginAdded, StoreError>>),
    RemovePlugin(String, String, oneshot::Sender<Result<PluginRecord, StoreError>>),
}

pub(crate) fn spawn(conn: SqliteConnection) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(conn, rx));
    tx
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // A plugin change met while gathering a batch waits for the batch to be written.
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
            other => batch.push(other),
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r @ (Request::AddPlugin(..) | Request::RemovePlugin(..))) => {
                    held = Some(r);
                    break;
                }
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match write(&mut conn, &batch).await {
            Ok(()) => batch.drain(..).for_each(|r| ack(r, Ok(()))),
            Err(_) if batch.len() > 1 => {
                for r in batch.drain(..) {
                    let result = write(&mut conn, std::slice::from_ref(&r)).await;
                    ack(r, result);
                }
            }
            Err(e) => batch.drain(..).for_each(|r| ack(r, Err(e.clone()))),
        }
    }
}

fn ack(r: Request, result: Result<(), StoreError>) {
    match r {
        Request::Append(_, tx) | Request::Component(_, _, tx) => {
            let _ = tx.send(result);
        }
        // Never batched: `run` answers them one at a time.
        Request::AddPlugin(..) | Request::RemovePlugin(..) => {}
    }
}

async fn write(conn: &mut SqliteConnection, batch: &[Request]) -> Result<(), StoreError> {
    let rows: Vec<_> = batch
        .iter()
        .filter_map(|r| match r {
            Request::Append(a, _) => Some(a),
            _ => None,
        })
        .flat_map(|a| a.events.iter().map(move |e| (a.run_id.as_str(), e)))
        .collect();
    let components = batch.iter().any(|r| matches!(r, Request::Component(..)));
    // The common case, one statement: SQLite's autocommit makes it one transaction, so a
    // flush costs one round trip to the connection's thread and one fsync.
    if !components && rows.len() <= EVENT_ROWS_PER_INSERT {
        return insert_events(&mut *conn, &rows).await;
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db)?;
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
    for chunk in rows.chunks(EVENT_ROWS_PER_INSERT) {
        insert_events(&mut tx, chunk).await?;
    }
    tx.commit().await.map_err(db)
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
    q.build()
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| conflict_or_db(e, rows.first().map(|(r, ev)| (r.to_string(), ev.seq))))
}

fn conflict_or_db(e: sqlx::Error, first: Option<(String, u64)>) -> StoreError {
    let unique = e.as_database_error().is_some_and(|d| d.is_unique_violation());
    match (unique, first) {
        (true, Some((run, seq))) => StoreError::Conflict { run, seq },
        _ => db(e),
    }
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}
