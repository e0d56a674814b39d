//! Group commit on PostgreSQL: one task writes the journal. Appends and lease changes
//! queue on a channel; the task takes everything queued, writes it as one transaction
//! (a few statements, each for the whole batch), commits once, and acknowledges every
//! request in it. While a commit is on its way to the server the next batch gathers, so
//! batches grow with the load without the writer ever waiting on purpose.
//!
//! Each append is fenced inside that transaction (see [`Append`]): an append whose lease
//! no longer holds is answered with its error and left out, without failing its
//! neighbours. If the batch fails anyway (a position already taken, a deadlock with
//! another host's writer), its requests are retried one by one so that one bad request
//! cannot fail the others. Lease changes share the queue, so a release never overtakes
//! the appends queued before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{Connection, PgConnection, PgPool};
use tether_types::store::{Append, LeaseChange, StoreError, Wakeup};
use tokio::sync::{mpsc, oneshot};

use crate::error::db;
use crate::leases::{LeaseOp, LeaseReply};

use super::{index, journal, leases};

/// Requests per transaction: large enough for throughput, small enough for latency.
const MAX_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Request {
    Append(Append, Reply<()>),
    Lease(LeaseOp, Reply<LeaseReply>),
    /// Answered once everything queued before it is written; the writer then stops.
    Close(Reply<()>),
}

/// How one batched request came out, once its transaction committed.
enum Outcome {
    Done,
    Lease(LeaseReply),
    /// Refused on its own merits (a fence that no longer holds); its neighbours were written.
    Refused(StoreError),
}

/// Why a batch's transaction failed.
struct Failed {
    /// An event's position was already taken (another writer raced).
    taken: bool,
    error: StoreError,
}

impl From<StoreError> for Failed {
    fn from(error: StoreError) -> Self {
        Failed { taken: false, error }
    }
}

fn failed(e: sqlx::Error) -> Failed {
    Failed { taken: e.as_database_error().is_some_and(|d| d.is_unique_violation()), error: db(e) }
}

pub(super) fn spawn(pool: PgPool, commits: Arc<AtomicU64>) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(pool, rx, commits));
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

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Request>, commits: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut poisoned: HashMap<Writer, StoreError> = HashMap::new();
    let committed = || {
        commits.fetch_add(1, Ordering::Relaxed);
    };
    // A close met while gathering a batch waits for the batch.
    let mut held = None;
    loop {
        let Some(first) = held.take().or(rx.recv().await) else { break };
        match first {
            Request::Close(tx) => {
                let _ = tx.send(Ok(()));
                return;
            }
            other => batch.push(other),
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r @ Request::Close(_)) => {
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
        match write(&pool, &batch).await {
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
                    let result = write(&pool, std::slice::from_ref(&r)).await;
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
        Request::Append(_, tx) => {
            let _ = tx.send(result.map(|_| ()));
        }
        Request::Lease(_, tx) => {
            let _ = tx.send(result.and_then(|o| match o {
                Outcome::Lease(reply) => Ok(reply),
                _ => Err(StoreError::Database("a lease change was not answered".into())),
            }));
        }
        // Never batched: `run` answers it.
        Request::Close(_) => {}
    }
}

/// Writes a batch as one transaction, in order, and says how each request came out.
/// `Err` means the whole transaction failed (and was rolled back).
///
/// A lone append that only continues its run (no lease change, nothing for the run
/// index) is its single INSERT, committed by itself: one round trip.
async fn write(pool: &PgPool, batch: &[Request]) -> Result<Vec<Outcome>, StoreError> {
    let appends: Vec<&Append> = batch
        .iter()
        .filter_map(|r| match r {
            Request::Append(a, _) => Some(a),
            Request::Lease(..) | Request::Close(_) => None,
        })
        .collect();
    let lone = batch.len() == 1
        && appends.len() == 1
        && appends[0].lease == LeaseChange::Keep
        && !crate::index::changes_index(&appends);
    let mut conn = pool.acquire().await.map_err(db)?;
    let result = if lone {
        match journal::insert_events(&mut conn, &appends).await {
            Ok(written) if written[0] => Ok(vec![Outcome::Done]),
            Ok(_) => Ok(vec![Outcome::Refused(leases::why_refused(&mut conn, appends[0]).await?)]),
            Err(e) => Err(failed(e)),
        }
    } else {
        let mut tx = conn.begin().await.map_err(db)?;
        match write_in(&mut tx, batch, &appends).await {
            Ok(outcomes) => tx.commit().await.map(|_| outcomes).map_err(failed),
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    };
    if let Ok(outcomes) = &result {
        notify(&mut conn, batch, outcomes).await;
    }
    match result {
        Ok(outcomes) => Ok(outcomes),
        // A position already taken, under a lease that holds: another writer raced.
        Err(Failed { taken: true, .. }) if batch.len() == 1 && appends.len() == 1 => {
            Ok(vec![Outcome::Refused(leases::why_refused(&mut conn, appends[0]).await?)])
        }
        Err(Failed { error, .. }) => Err(error),
    }
}

/// The batch's statements, inside its transaction: the leases new runs take, every
/// append's events (kept only where their fence holds), the releases that ride on
/// written appends, the run index, then the lease changes in the order queued.
async fn write_in(conn: &mut PgConnection, batch: &[Request], appends: &[&Append]) -> Result<Vec<Outcome>, Failed> {
    journal::take_new(conn, appends).await?;
    let written =
        if appends.is_empty() { Vec::new() } else { journal::insert_events(conn, appends).await.map_err(failed)? };
    let kept: Vec<&Append> = appends.iter().zip(&written).filter(|(_, w)| **w).map(|(a, _)| *a).collect();
    journal::release(conn, &kept).await?;
    index::apply(conn, &kept).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut written_each = written.into_iter();
    for r in batch {
        outcomes.push(match r {
            Request::Append(a, _) => match written_each.next() {
                Some(true) => Outcome::Done,
                _ => Outcome::Refused(leases::why_refused(conn, a).await?),
            },
            Request::Lease(op, _) => Outcome::Lease(leases::apply(conn, op).await?),
            Request::Close(_) => Outcome::Done,
        });
    }
    Ok(outcomes)
}

/// Tells every process listening on the journal what this batch made for them to do
/// (`NOTIFY tether_wake`, once committed): decisions taken, runs that stopped to wait,
/// runs given up unfinished. Best effort: a notice lost with a dropped connection is
/// found by the listeners' periodic scans.
async fn notify(conn: &mut PgConnection, batch: &[Request], outcomes: &[Outcome]) {
    let mut notices: Vec<String> = Vec::new();
    for (r, o) in batch.iter().zip(outcomes) {
        match (r, o) {
            (Request::Append(a, _), Outcome::Done) => {
                let run = a.run_id.to_string();
                if a.events.iter().any(|e| e.kind == "approval_decided") {
                    notices.push(Wakeup::Decided(run).to_text());
                } else if a.events.iter().any(|e| e.kind == "run_waiting") {
                    notices.push(Wakeup::Waiting(run).to_text());
                }
            }
            // Given up apart from an append: the run stopped unfinished.
            (Request::Lease(LeaseOp::Release(lease), _), Outcome::Lease(_)) => {
                notices.push(Wakeup::Interrupted(lease.run_id.clone()).to_text());
            }
            _ => {}
        }
    }
    if notices.is_empty() {
        return;
    }
    let notified = sqlx::query("SELECT pg_notify('tether_wake', n) FROM unnest($1::text[]) AS n")
        .bind(notices)
        .execute(&mut *conn)
        .await;
    if let Err(e) = notified {
        tracing::debug!("telling other hosts of new work: {e}");
    }
}
