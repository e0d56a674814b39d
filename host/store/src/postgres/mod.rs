//! [`PostgresStore`]: the journal in a PostgreSQL database, for hosts on several machines
//! sharing one journal.
//!
//! The same roles as the SQLite store, with the same guarantees: one writer task per
//! store commits whatever has queued up as one transaction (group commit, `writer.rs`);
//! every append is fenced by its run's lease in the INSERT that writes it
//! (`journal.rs`); the run index follows the written events in the same transaction
//! (`index.rs`); leases are judged by the server's clock (`leases.rs`). Reads, plugins,
//! tokens and cancel requests use the connection pool directly.

mod cancels;
mod index;
mod journal;
mod leases;
mod open;
pub use open::MIN_POOL_SIZE;
mod plugins;
mod runs;
mod tokens;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{PgPool, Row};
use tether_types::access::TokenRecord;
use tether_types::chain::StoredEvent;
use tether_types::store::{
    Append, AppendAck, CancelRequests, Components, Heartbeat, HostBeat, Journal, Lease, LeaseTake, Leases, PluginAdded,
    PluginRecord, Plugins, RunIndex, RunIndexStatus, RunQuery, RunRecord, RunSummary, StoreError, Tokens, Upkeep,
    Wakeup,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::db;
use crate::leases::{LeaseOp, LeaseReply};
use crate::StoreConfig;
use journal::stored_event;
use writer::Request;

/// The journal in a PostgreSQL database (`postgres://` or `postgresql://`). Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    writer: mpsc::Sender<Request>,
    pool: PgPool,
    max_event_bytes: usize,
    /// The database, as messages name it (no password).
    shown: String,
    /// Transactions the writer committed.
    commits: Arc<AtomicU64>,
}

impl PostgresStore {
    /// Connects, checks that the database holds a tether journal (or nothing) not newer
    /// than this tether, and migrates it. Must be called inside a tokio runtime: the
    /// writer task is spawned on it.
    pub async fn open(config: &StoreConfig) -> Result<PostgresStore, StoreError> {
        let (pool, shown) = open::open(config).await?;
        let commits = Arc::new(AtomicU64::new(0));
        let writer = writer::spawn(pool.clone(), Arc::clone(&commits));
        Ok(PostgresStore { writer, pool, max_event_bytes: config.max_event_bytes, shown, commits })
    }

    /// How many transactions this store's writer has committed since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn check_sizes(&self, append: &Append) -> Result<(), StoreError> {
        match append.events.iter().find(|e| e.payload.len() > self.max_event_bytes) {
            Some(e) => Err(StoreError::PayloadTooLarge {
                run: append.run_id.to_string(),
                seq: e.seq,
                kind: e.kind.to_string(),
                size: e.payload.len(),
                cap: self.max_event_bytes,
            }),
            None => Ok(()),
        }
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    async fn lease_op(&self, op: LeaseOp) -> Result<LeaseReply, StoreError> {
        self.send(|tx| Request::Lease(op, tx)).await
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the journal writer stopped".into())
}

#[async_trait::async_trait]
impl Journal for PostgresStore {
    async fn append(&self, append: Append) -> Result<(), StoreError> {
        self.enqueue(append).await?.await
    }

    async fn enqueue(&self, append: Append) -> Result<AppendAck, StoreError> {
        self.check_sizes(&append)?;
        let (tx, rx) = oneshot::channel();
        self.writer.send(Request::Append(append, tx)).await.map_err(|_| stopped())?;
        Ok(Box::pin(async move { rx.await.map_err(|_| stopped())? }))
    }

    fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    fn on_wakeup(&self, wake: Box<dyn Fn(Wakeup) + Send + Sync>) -> bool {
        let pool = self.pool.clone();
        let shown = self.shown.clone();
        tokio::spawn(async move {
            // A connection of its own, listening; reconnected after a failure (the
            // work made meanwhile is found by the periodic scans).
            loop {
                match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(mut listener) => match listener.listen("tether_wake").await {
                        Ok(()) => loop {
                            match listener.recv().await {
                                Ok(notice) => match Wakeup::from_text(notice.payload()) {
                                    Some(wakeup) => wake(wakeup),
                                    None => tracing::debug!("{shown}: an unknown notice: {}", notice.payload()),
                                },
                                Err(e) => {
                                    tracing::warn!("{shown}: listening for decisions: {e}");
                                    break;
                                }
                            }
                        },
                        Err(e) => tracing::warn!("{shown}: listening for decisions: {e}"),
                    },
                    Err(e) => tracing::warn!("{shown}: listening for decisions: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        true
    }

    async fn events(&self, run_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query("SELECT seq, at_us, kind, payload, hash FROM events WHERE run_id = $1 ORDER BY seq")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        if rows.is_empty() {
            return Err(StoreError::UnknownRun(run_id.to_string()));
        }
        rows.iter().map(|r| stored_event(r, 0)).collect()
    }

    async fn events_between(&self, run_id: &str, from: u64, to: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at_us, kind, payload, hash FROM events WHERE run_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
        )
        .bind(run_id)
        .bind(from.min(i64::MAX as u64) as i64)
        .bind(to.min(i64::MAX as u64) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| stored_event(r, 0)).collect()
    }

    async fn last_event(&self, run_id: &str) -> Result<(u64, String), StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM events WHERE run_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::UnknownRun(run_id.to_string()))?;
        Ok((row.try_get::<i64, _>(0).map_err(db)? as u64, row.try_get(1).map_err(db)?))
    }

    async fn run_ids(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT run_id FROM events WHERE seq = 1 UNION SELECT run_id FROM runs \
             UNION SELECT run_id FROM run_leases WHERE head_seq > 0 ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }
}

#[async_trait::async_trait]
impl RunIndex for PostgresStore {
    async fn runs(&self, status: Option<RunIndexStatus>, limit: u32) -> Result<Vec<RunSummary>, StoreError> {
        self.runs_page(&RunQuery { status, limit, ..RunQuery::default() }).await
    }

    async fn runs_page(&self, q: &RunQuery) -> Result<Vec<RunSummary>, StoreError> {
        runs::page(&self.pool, q).await
    }

    async fn gate_events(&self, workflow: &str) -> Result<Vec<(String, StoredEvent)>, StoreError> {
        runs::gate_events(&self.pool, workflow).await
    }

    async fn run_record(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        runs::record(&self.pool, run_id).await
    }
}

#[async_trait::async_trait]
impl Components for PostgresStore {
    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<(), StoreError> {
        // Committed by itself: the caller awaits it before any append that names it.
        if self.has_component(digest).await? {
            return Ok(());
        }
        sqlx::query("INSERT INTO components (digest, wasm) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING")
            .bind(digest)
            .bind(wasm)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT wasm FROM components WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn has_component(&self, digest: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM components WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.is_some())
    }
}

#[async_trait::async_trait]
impl Plugins for PostgresStore {
    async fn add_plugin(&self, plugin: &PluginRecord, wasm: &[u8]) -> Result<PluginAdded, StoreError> {
        plugins::add(&self.pool, plugin, wasm).await
    }

    async fn plugins(&self, name: Option<&str>) -> Result<Vec<PluginRecord>, StoreError> {
        plugins::list(&self.pool, name).await
    }

    async fn remove_plugin(&self, name: &str, version: &str) -> Result<PluginRecord, StoreError> {
        plugins::remove(&self.pool, name, version).await
    }
}

#[async_trait::async_trait]
impl Leases for PostgresStore {
    async fn take_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl_ms: u64,
        breaking: Option<u64>,
    ) -> Result<LeaseTake, StoreError> {
        let op = LeaseOp::Take { run_id: run_id.into(), owner: owner.into(), ttl_ms, breaking };
        match self.lease_op(op).await? {
            LeaseReply::Take(t) => Ok(t),
            _ => Err(stopped()),
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.lease_op(LeaseOp::Release(lease.clone())).await.map(|_| ())
    }

    async fn lease(&self, run_id: &str) -> Result<Option<Lease>, StoreError> {
        let row: Option<(String, String, i64, i64)> =
            sqlx::query_as(leases::LEASE_OF_RUN).bind(run_id).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(row.map(lease_of))
    }

    async fn held_leases(&self) -> Result<(u64, Vec<Lease>), StoreError> {
        let now = self.clock_us().await?;
        let rows: Vec<(String, String, i64, i64)> =
            sqlx::query_as(leases::HELD_LEASES).fetch_all(&self.pool).await.map_err(db)?;
        Ok((now, rows.into_iter().map(lease_of).collect()))
    }

    async fn claim_interrupted(
        &self,
        owner: &str,
        ttl_ms: u64,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Lease>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let probe = limit.saturating_add(skip.len()).min(i64::MAX as usize) as i64;
        let claimable: Vec<String> =
            sqlx::query_scalar(leases::CLAIMABLE).bind(owner).bind(probe).fetch_all(&self.pool).await.map_err(db)?;
        if claimable.iter().all(|run| skip.contains(run)) {
            return Ok(Vec::new());
        }
        let op = LeaseOp::Claim { owner: owner.into(), ttl_ms, limit, skip: skip.to_vec() };
        match self.lease_op(op).await? {
            LeaseReply::Claimed(leases) => Ok(leases),
            _ => Err(stopped()),
        }
    }

    async fn heartbeat(&self, owner: &str, ttl_ms: u64) -> Result<Heartbeat, StoreError> {
        match self.lease_op(LeaseOp::Beat { owner: owner.into(), ttl_ms }).await? {
            LeaseReply::Beat(beat) => Ok(beat),
            _ => Err(stopped()),
        }
    }

    async fn leave(&self, owner: &str) -> Result<(), StoreError> {
        self.lease_op(LeaseOp::Leave(owner.into())).await.map(|_| ())
    }

    async fn hosts(&self) -> Result<(u64, Vec<HostBeat>), StoreError> {
        let now = self.clock_us().await?;
        let rows: Vec<(String, i64, i64, i64)> =
            sqlx::query_as("SELECT owner, since_us, beat_us, expires_us FROM hosts ORDER BY owner")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let hosts = rows
            .into_iter()
            .map(|(owner, since_us, beat_us, expires_us)| HostBeat {
                owner,
                since_us: since_us as u64,
                beat_us: beat_us as u64,
                expires_us: expires_us as u64,
            })
            .collect();
        Ok((now, hosts))
    }

    async fn clock_us(&self) -> Result<u64, StoreError> {
        let now: i64 = sqlx::query_scalar("SELECT tether_now_us()").fetch_one(&self.pool).await.map_err(db)?;
        Ok(now as u64)
    }
}

#[async_trait::async_trait]
impl Tokens for PostgresStore {
    async fn add_token(&self, token: &TokenRecord, hash: &str) -> Result<(), StoreError> {
        tokens::add(&self.pool, token, hash).await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        tokens::list(&self.pool).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        tokens::by_hash(&self.pool, hash).await
    }

    async fn token_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        tokens::hash_of(&self.pool, name).await
    }

    async fn revoke_token(&self, name: &str, at_us: u64) -> Result<TokenRecord, StoreError> {
        tokens::revoke(&self.pool, name, at_us).await
    }
}

#[async_trait::async_trait]
impl CancelRequests for PostgresStore {
    async fn request_cancel(&self, run_id: &str, by: &str, reason: Option<&str>) -> Result<bool, StoreError> {
        cancels::request(&self.pool, run_id, by, reason).await
    }

    async fn cancel_request(&self, run_id: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        cancels::requested(&self.pool, run_id).await
    }
}

#[async_trait::async_trait]
impl Upkeep for PostgresStore {
    async fn backup(&self, path: &std::path::Path) -> Result<(), StoreError> {
        // A consistent copy of a live PostgreSQL database is the server's own tools' job
        // (they copy every table in one snapshot, in a format they restore).
        Err(StoreError::BadUrl(format!(
            "tether backup copies SQLite journals; back up the {} with PostgreSQL's own tools, for example \
             `pg_dump --format=custom --file {} DATABASE_URL` (restored with pg_restore)",
            self.shown,
            path.display()
        )))
    }

    async fn close(&self) -> Result<(), StoreError> {
        // Everything queued before the close is written first; a store closed already
        // (its writer gone) has nothing left to write.
        let result = match self.send(Request::Close).await {
            Err(_) if self.writer.is_closed() => Ok(()),
            other => other,
        };
        self.pool.close().await;
        result
    }
}

/// A lease from its row: run, owner, epoch, and when it lapses.
fn lease_of((run_id, owner, epoch, expires_us): (String, String, i64, i64)) -> Lease {
    Lease { run_id, owner, epoch: epoch as u64, expires_us: expires_us as u64 }
}
