//! A host's presence on a journal: one heartbeat keeps every run lease it holds there.
//!
//! A run's lease is written once, when it is taken, to last one lifetime; after that it
//! lasts as long as its holder's heartbeat (see [`tether_types::store::Leases`]). This
//! process beats every third of the lease lifetime while it holds a run on the journal,
//! or for as long as a worker keeps its presence. The first beat comes a third of a
//! lifetime after the first lease (which its own expiry covers), so a command whose run
//! is shorter than that writes nothing for its presence. A host that stops beating (killed, frozen, cut off) loses
//! its runs to the others one lifetime after its last beat, by the store's clock.
//!
//! A beat that finds the previous one had lapsed means others may have taken this
//! host's runs meanwhile: each run held here is read, and one taken over is marked lost,
//! so it stops at once rather than at its next refused append.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tether_types::store::{JournalStore, StoreError};

use crate::durable::held::LeaseState;
use crate::durable::owner::owner_id;

/// This process's heartbeat on one journal, and the runs it holds there.
pub struct Presence {
    store: Arc<dyn JournalStore>,
    /// Runs held here: their lease's epoch and what their journal shares with it.
    runs: Mutex<HashMap<String, (u64, Weak<LeaseState>)>>,
    /// Set by the first heartbeat written: there is a row to leave.
    beaten: AtomicBool,
    /// Set once the host left the journal: no more beats until a run is held again.
    left: AtomicBool,
    beating: tokio::task::JoinHandle<()>,
}

/// One presence per journal (per store handle) in this process.
static PRESENCES: Mutex<Vec<(usize, Weak<Presence>)>> = Mutex::new(Vec::new());

/// This process's presence on `store`'s journal, beating every third of `ttl` from now
/// on while any holder keeps it. A worker keeps one for its whole life, so it is listed
/// as live while idle; a one-off command's goes with its last run.
pub fn presence(store: &Arc<dyn JournalStore>, ttl: Duration) -> Arc<Presence> {
    let key = Arc::as_ptr(store) as *const () as usize;
    let mut all = lock(&PRESENCES);
    all.retain(|(_, p)| p.strong_count() > 0);
    if let Some(p) = all.iter().find(|(k, _)| *k == key).and_then(|(_, p)| p.upgrade()) {
        return p;
    }
    let presence = Arc::new_cyclic(|me: &Weak<Presence>| Presence {
        store: Arc::clone(store),
        runs: Mutex::default(),
        beaten: AtomicBool::new(false),
        left: AtomicBool::new(false),
        beating: tokio::spawn(beat(me.clone(), ttl)),
    });
    all.push((key, Arc::downgrade(&presence)));
    presence
}

impl Presence {
    /// Notes a run held here under `epoch`.
    pub(crate) fn hold(&self, run_id: &str, epoch: u64, state: &Arc<LeaseState>) {
        lock(&self.runs).insert(run_id.to_string(), (epoch, Arc::downgrade(state)));
        self.left.store(false, Ordering::Release);
    }

    /// Forgets a run given up here under `epoch` (not a later hold of it).
    pub(crate) fn forget(&self, run_id: &str, epoch: u64) {
        let mut runs = lock(&self.runs);
        if runs.get(run_id).is_some_and(|(held, _)| *held == epoch) {
            runs.remove(run_id);
        }
    }

    /// Whether no run is held here and the caller's is the last hold on this presence:
    /// the host may leave the journal.
    pub(crate) fn idle(self: &Arc<Self>) -> bool {
        lock(&self.runs).is_empty() && Arc::strong_count(self) <= 1
    }

    /// Beats now (a worker joining the journal, listed at once), and every third of
    /// the lifetime from then on.
    pub async fn beat_now(&self, ttl: Duration) {
        self.beat(ttl.as_millis().max(1) as u64).await;
    }

    /// Leaves the journal: the heartbeat row goes, so that `tether workers` no longer
    /// lists this process. Runs still held (none, after a clean stop) keep their lease's
    /// own expiry.
    pub async fn leave(&self) {
        self.left.store(true, Ordering::Release);
        if !self.beaten.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.store.leave(owner_id()).await {
            tracing::debug!("leaving the journal: {e}");
        }
    }

    async fn beat(&self, ttl_ms: u64) {
        match self.store.heartbeat(owner_id(), ttl_ms).await {
            Ok(beat) => {
                let beaten_before = self.beaten.swap(true, Ordering::AcqRel);
                if let Some(since) = beat.lapsed_since_us {
                    let late_ms = beat.now_us.saturating_sub(since) / 1000;
                    tracing::warn!(
                        "this host's heartbeat had lapsed {late_ms} ms before this beat (by the journal's clock): \
                         runs taken over meanwhile stop here"
                    );
                    self.check_runs().await;
                } else if beaten_before && !beat.found {
                    tracing::warn!(
                        "this host's heartbeat was gone from the journal (forgotten after a long silence): runs \
                         taken over meanwhile stop here"
                    );
                    self.check_runs().await;
                }
            }
            // A busy or unreachable database: beat again soon; appends stay fenced.
            Err(e) => tracing::warn!("heartbeat: {e}"),
        }
    }

    /// After a lapse: marks every run held here that another host took over as lost.
    async fn check_runs(&self) {
        let held: Vec<(String, u64, Weak<LeaseState>)> =
            lock(&self.runs).iter().map(|(run, (epoch, state))| (run.clone(), *epoch, state.clone())).collect();
        for (run, epoch, state) in held {
            let Some(state) = state.upgrade() else { continue };
            let settled = state.released.load(Ordering::Acquire) || state.releasing.load(Ordering::Acquire);
            if settled || lock(&state.take_with_first_append).is_some() {
                continue;
            }
            let now = match self.store.lease(&run).await {
                Ok(now) => now,
                Err(e) => {
                    tracing::warn!("run {run}: reading its lease after this host's heartbeat lapsed: {e}");
                    continue;
                }
            };
            let (holder, holder_epoch) = now.map_or((String::new(), 0), |l| (l.owner, l.epoch));
            // Given up here while the lease was read: not lost, ended.
            if state.released.load(Ordering::Acquire) || state.releasing.load(Ordering::Acquire) {
                continue;
            }
            if holder != owner_id() || holder_epoch != epoch {
                let lost = StoreError::LeaseLost {
                    run: run.clone(),
                    epoch,
                    holder: if holder.is_empty() { "nobody (released)".into() } else { holder },
                    holder_epoch,
                };
                tracing::warn!("{lost}");
                let _ = state.lost.set(lost);
            }
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.beating.abort();
    }
}

/// Beats every third of `ttl` while the presence lives.
async fn beat(me: Weak<Presence>, ttl: Duration) {
    let ttl_ms = ttl.as_millis().max(1) as u64;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let Some(presence) = me.upgrade() else { return };
        if !presence.left.load(Ordering::Acquire) {
            presence.beat(ttl_ms).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
