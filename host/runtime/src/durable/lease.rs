//! One host per run: the run lease as a host holds it.
//!
//! Taking a run (start, resume, a decision, a sweep) takes its lease in the journal's
//! database: owner, an epoch that increases on every take, and an expiry. While the run
//! executes, the host's heartbeat keeps the lease (one write per host, not per run: see
//! `presence`). Every append carries the lease's fence, so a host whose lease was taken
//! over writes nothing more. A holder on this machine whose process is gone (or
//! is another process with a reused pid) is known dead, and its lease is broken at once;
//! any other holder is waited for until its lease lapses or the caller's patience ends.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_types::store::{Fence, JournalStore, Lease, LeaseTake, StoreError};

use crate::durable::held::LeaseState;
use crate::durable::owner::{known_dead, owner_id};
use crate::durable::presence::{presence, Presence};
use crate::durable::time::now_us;

/// How a host takes runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a lease lasts past its host's last heartbeat (the host beats every third
    /// of it): how long a host that vanished without trace (another machine, a frozen
    /// process) keeps its runs from others.
    pub ttl: Duration,
    /// How long to wait for a run another live host holds before refusing.
    pub wait: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig { ttl: Duration::from_secs(30), wait: Duration::ZERO }
    }
}

/// Whether a run could be taken now without waiting: nobody holds its lease, it has
/// lapsed (by the store's clock, as the store judges a take), or its holder is a process
/// on this machine that is gone. Read only.
pub async fn free_to_take(store: &dyn JournalStore, run_id: &str) -> Result<bool, StoreError> {
    Ok(match store.lease(run_id).await? {
        None => true,
        Some(lease) if lease.owner.is_empty() || known_dead(&lease.owner) => true,
        Some(lease) => lease.expires_us <= store.clock_us().await?,
    })
}

/// Why a run could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// Another live host holds it.
    #[error(
        "run {run} is being executed by another host ({holder}, lease epoch {epoch}; its lease lapses in \
         {lapses_in_s}s unless its host beats again)"
    )]
    Busy {
        /// The run.
        run: String,
        /// Who holds it.
        holder: String,
        /// Their epoch.
        epoch: u64,
        /// Seconds until their lease lapses unless their host beats again.
        lapses_in_s: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A lease this process holds, kept by its heartbeat on the journal until released.
pub(crate) struct RunLease {
    store: Arc<dyn JournalStore>,
    current: Lease,
    state: Arc<LeaseState>,
    presence: Arc<Presence>,
}

impl RunLease {
    /// The lease of a run that does not exist yet, taken by the run's first append (in
    /// the same transaction, saving a commit). If that append finds a lease on the run id
    /// it is refused with `LeaseLost`: then take it with [`RunLease::take`].
    pub(crate) fn for_new_run(store: &Arc<dyn JournalStore>, run_id: &str, config: LeaseConfig) -> RunLease {
        let ttl_ms = config.ttl.as_millis().max(1) as u64;
        let lease =
            Lease { run_id: run_id.into(), owner: owner_id().into(), epoch: 1, expires_us: now_us() + ttl_ms * 1000 };
        let state = LeaseState { take_with_first_append: Mutex::new(Some(ttl_ms)), ..LeaseState::default() };
        RunLease::hold(store, lease, config.ttl, state)
    }

    /// Takes `run_id`'s lease, waiting up to `config.wait` for a live holder.
    pub(crate) async fn take(
        store: &Arc<dyn JournalStore>,
        run_id: &str,
        config: LeaseConfig,
    ) -> Result<RunLease, TakeError> {
        let started = Instant::now();
        let ttl_ms = config.ttl.as_millis().max(1) as u64;
        let mut breaking = None;
        loop {
            match store.take_lease(run_id, owner_id(), ttl_ms, breaking).await? {
                LeaseTake::Taken(lease) => return Ok(RunLease::hold(store, lease, config.ttl, LeaseState::default())),
                LeaseTake::Held(holder) if known_dead(&holder.owner) => {
                    tracing::debug!("run {run_id}: {} is gone; taking its lease over", holder.owner);
                    breaking = Some(holder.epoch);
                }
                LeaseTake::Held(_) if started.elapsed() < config.wait => {
                    breaking = None;
                    let left = config.wait.saturating_sub(started.elapsed());
                    tokio::time::sleep(left.min(Duration::from_millis(50))).await;
                }
                LeaseTake::Held(holder) => {
                    return Err(TakeError::Busy {
                        run: run_id.into(),
                        holder: holder.owner,
                        epoch: holder.epoch,
                        lapses_in_s: holder.expires_us.saturating_sub(now_us()).div_ceil(1_000_000),
                    })
                }
            }
        }
    }

    fn hold(store: &Arc<dyn JournalStore>, lease: Lease, ttl: Duration, state: LeaseState) -> RunLease {
        let state = Arc::new(state);
        let presence = presence(store, ttl);
        presence.hold(&lease.run_id, lease.epoch, &state);
        RunLease { store: Arc::clone(store), current: lease, state, presence }
    }

    /// What appends under this lease carry.
    pub(crate) fn fence(&self) -> Fence {
        self.current.fence()
    }

    /// What the journal written under this lease shares with it.
    pub(crate) fn state(&self) -> Arc<LeaseState> {
        Arc::clone(&self.state)
    }

    /// Whether the lease was ever taken in the store.
    pub(crate) fn taken(&self) -> bool {
        lock(&self.state.take_with_first_append).is_none()
    }

    /// Gives the lease up, unless the run's last append already did (or it was never
    /// taken); the host leaves the journal if this was its last run and nothing else
    /// keeps its presence.
    pub(crate) async fn release(self) {
        self.presence.forget(&self.current.run_id, self.current.epoch);
        if !self.state.released.load(Ordering::Acquire) && self.taken() {
            if let Err(e) = self.store.release_lease(&self.current).await {
                tracing::debug!("run {}: releasing the lease: {e}", self.current.run_id);
            }
        }
        if self.presence.idle() {
            self.presence.leave().await;
        }
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        // A lease dropped without `release` (an error path) lapses on its own once no
        // heartbeat keeps it.
        self.presence.forget(&self.current.run_id, self.current.epoch);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
