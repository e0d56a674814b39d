//! One host per run: the run lease as a host holds it.
//!
//! Taking a run (start, resume, a decision, a sweep) takes its lease in the journal's
//! database: owner, an epoch that increases on every take, and an expiry. While the run
//! executes, a task renews the lease every third of its lifetime (one small write, not
//! one per step). Every append carries the lease's fence, so a host whose lease was
//! taken over writes nothing more. A holder on this machine whose process is gone (or
//! is another process with a reused pid) is known dead, and its lease is broken at once;
//! any other holder is waited for until its lease lapses or the caller's patience ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tether_types::store::{Fence, JournalStore, Lease, LeaseTake, StoreError};

use crate::durable::time::now_us;

/// How a host takes runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a lease lasts unless renewed: how long a host that vanished without
    /// trace (another machine, a frozen process) keeps its runs from others.
    pub ttl: Duration,
    /// How long to wait for a run another live host holds before refusing.
    pub wait: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig { ttl: Duration::from_secs(30), wait: Duration::ZERO }
    }
}

/// This process as a lease owner: `HOST/pid:PID/start:TICKS`. `HOST` is
/// `$TETHER_HOST_ID` or the machine's host name; the start time tells a live process
/// from a later one that reused its pid.
pub fn owner_id() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let pid = std::process::id();
        format!("{}/pid:{pid}/start:{}", host_id(), start_ticks(pid).unwrap_or(0))
    })
}

fn host_id() -> String {
    match std::env::var("TETHER_HOST_ID") {
        Ok(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into()),
    }
}

/// A running process's start time in clock ticks since boot (field 22 of
/// `/proc/PID/stat`); `None` if there is no such process or it has exited (a zombie).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last `)`.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether `owner` is a tether process on this machine that no longer runs. `false`
/// when that cannot be known (another machine, no `/proc`).
fn known_dead(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, '/');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let (Some(start), Some(pid)) = (start.strip_prefix("start:"), pid.strip_prefix("pid:")) else { return false };
    let (Ok(start), Ok(pid)) = (start.parse::<u64>(), pid.parse::<u32>()) else { return false };
    if host != host_id() || start == 0 || !std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    start_ticks(pid) != Some(start)
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
         {lapses_in_s}s unless renewed)"
    )]
    Busy {
        /// The run.
        run: String,
        /// Who holds it.
        holder: String,
        /// Their epoch.
        epoch: u64,
        /// Seconds until their lease lapses unless renewed.
        lapses_in_s: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a lease's holder and the journal written under it share.
#[derive(Default)]
pub(crate) struct LeaseState {
    /// Set when the lease was found taken over (by the renewal task, or a refused append).
    pub(crate) lost: OnceLock<StoreError>,
    /// Set (with the lease's lifetime in ms) while the lease of a new run exists only in
    /// this process: the run's first append takes it.
    pub(crate) take_with_first_append: Mutex<Option<u64>>,
    /// Set once an append gave the lease up with the run's last events.
    pub(crate) released: AtomicBool,
    /// Set once an append that gives the lease up is handed to the store: renewing
    /// stops, as the lease is over whether that append is written (released) or
    /// refused (lost). A renewal racing its commit would find the lease released by
    /// this very host and take that for a take-over.
    pub(crate) releasing: AtomicBool,
}

/// A lease this process holds, renewed in the background until released.
pub(crate) struct RunLease {
    store: Arc<dyn JournalStore>,
    current: Arc<Mutex<Lease>>,
    state: Arc<LeaseState>,
    renewal: tokio::task::JoinHandle<()>,
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
        let current = Arc::new(Mutex::new(lease));
        let state = Arc::new(state);
        let renewal = tokio::spawn(renew(Arc::clone(store), Arc::clone(&current), Arc::clone(&state), ttl));
        RunLease { store: Arc::clone(store), current, state, renewal }
    }

    /// What appends under this lease carry.
    pub(crate) fn fence(&self) -> Fence {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).fence()
    }

    /// What the journal written under this lease shares with it.
    pub(crate) fn state(&self) -> Arc<LeaseState> {
        Arc::clone(&self.state)
    }

    /// Whether the lease was ever taken in the store.
    pub(crate) fn taken(&self) -> bool {
        lock(&self.state.take_with_first_append).is_none()
    }

    /// Stops renewing and gives the lease up, unless the run's last append already did
    /// (or it was never taken).
    pub(crate) async fn release(self) {
        self.renewal.abort();
        if self.state.released.load(Ordering::Acquire) || !self.taken() {
            return;
        }
        let lease = self.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Err(e) = self.store.release_lease(&lease).await {
            tracing::debug!("run {}: releasing the lease: {e}", lease.run_id);
        }
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        // A lease dropped without `release` (an error path) lapses on its own.
        self.renewal.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn renew(store: Arc<dyn JournalStore>, current: Arc<Mutex<Lease>>, state: Arc<LeaseState>, ttl: Duration) {
    let ttl_ms = ttl.as_millis().max(1) as u64;
    loop {
        tokio::time::sleep(ttl / 3).await;
        if lock(&state.take_with_first_append).is_some() {
            continue; // Not in the store yet: the run's first append takes it.
        }
        if state.released.load(Ordering::Acquire) || state.releasing.load(Ordering::Acquire) {
            return;
        }
        let lease = lock(&current).clone();
        match store.renew_lease(&lease, ttl_ms).await {
            Ok(renewed) => *lock(&current) = renewed,
            Err(StoreError::LeaseLost { .. }) if state.releasing.load(Ordering::Acquire) => return,
            Err(e @ StoreError::LeaseLost { .. }) => {
                tracing::warn!("{e}");
                let _ = state.lost.set(e);
                return;
            }
            // A busy or failing database: try again; appends stay fenced meanwhile.
            Err(e) => tracing::warn!("run {}: renewing the lease: {e}", lease.run_id),
        }
    }
}
