//! One run's side of the journal: events are sealed into the run's hash chain as they
//! happen and buffered. `flush` hands everything buffered to the store's group commit
//! and goes on at once (output commit): the writer syncs it in the background, in
//! order. `sync` waits until everything handed over is durable; the host calls it
//! wherever something is about to leave it and depends on what was recorded: a tool
//! call with an effect (before and after it), an approval request shown to people, a
//! decision, the run's end and the lease given up (`flush_final`). A new run's start is
//! not one: it goes with the run's first batch, and its id is given out once that is
//! durable, so a pure run's whole stretch is one commit. Work done between two sync points that a crash loses was seen by
//! nobody outside the host, and is simply done again on resume. The durable journal is
//! always a prefix of what happened.
//!
//! Every append is fenced by the run's lease. An append that fails (a lost lease, a
//! conflict, a database error) is terminal for this host: the journal refuses every
//! later record, flush and sync with that error, the store refuses the appends queued
//! behind it, and the in-memory chain, which ran ahead of what is durable, is never
//! written.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tether_types::chain::{Chain, SealedEvent};
use tether_types::event::EventKind;
use tether_types::store::{Append, AppendAck, Fence, JournalStore, LeaseChange, StoreError};

use crate::durable::held::LeaseState;
use crate::durable::lease::RunLease;
use crate::durable::time::now_us;
use tether_types::RunId;

/// A flush sends the buffer once it holds this many events...
const BATCH_EVENTS: usize = 64;
/// ...or its oldest event is this old (microseconds).
const BATCH_AGE_US: u64 = 2_000;

pub(crate) struct RunJournal {
    pub(crate) run_id: RunId,
    store: Arc<dyn JournalStore>,
    fence: Fence,
    /// The lease's state: its `lost` is set by the first failed flush, or by the heartbeat
    /// when the lease was taken over.
    lease: Arc<LeaseState>,
    pending: Mutex<Pending>,
    /// Held across take-and-append so flushes reach the writer in order.
    flush_lock: tokio::sync::Mutex<()>,
    /// Appends handed to the store and not yet known durable, in order, with what each
    /// does to the lease.
    in_flight: Mutex<Vec<(AppendAck, LeaseChange)>>,
    /// Values of granted secrets: redacted from every event before it is sealed.
    secrets: Mutex<Arc<Vec<String>>>,
}

struct Pending {
    chain: Chain,
    buffer: Vec<SealedEvent>,
    /// Everything recorded since the driver last looked, with sequence numbers, so its
    /// run state stays the fold of the journal (tool calls recorded by a running
    /// attempt included).
    recorded: Vec<(u64, EventKind)>,
}

impl RunJournal {
    /// A cancel someone asked for while this host executes the run, if any.
    pub(crate) async fn cancel_requested(&self) -> Result<Option<(String, Option<String>)>, StoreError> {
        self.store.cancel_request(self.run_id.as_str()).await
    }

    pub(crate) fn new(run_id: RunId, store: Arc<dyn JournalStore>, chain: Chain, lease: &RunLease) -> Self {
        RunJournal {
            run_id,
            store,
            fence: lease.fence(),
            lease: lease.state(),
            pending: Mutex::new(Pending { chain, buffer: Vec::new(), recorded: Vec::new() }),
            flush_lock: tokio::sync::Mutex::new(()),
            in_flight: Mutex::default(),
            secrets: Mutex::default(),
        }
    }

    /// Secrets never enter the journal: from now on their values are redacted.
    pub(crate) fn set_secrets(&self, secrets: Arc<Vec<String>>) {
        *self.secrets.lock().unwrap_or_else(|p| p.into_inner()) = secrets;
    }

    /// `kind` with every secret value replaced, if it contains one.
    fn redacted(&self, kind: &EventKind) -> Option<EventKind> {
        let secrets = Arc::clone(&self.secrets.lock().unwrap_or_else(|p| p.into_inner()));
        if secrets.is_empty() {
            return None;
        }
        // Compare in the payload's own encoding, so escaped characters match too.
        let escaped: Vec<String> = secrets
            .iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let json = serde_json::to_string(kind).ok()?;
        let clean = crate::redact::redact(&json, &escaped)?;
        serde_json::from_str(&clean).ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why this host may no longer write the run, once it may not.
    pub(crate) fn failure(&self) -> Option<StoreError> {
        self.lease.lost.get().cloned()
    }

    /// Seals `kind` as the run's next event and buffers it (nothing, once the journal failed).
    pub(crate) fn record(&self, kind: EventKind) {
        if self.lease.lost.get().is_some() {
            return;
        }
        let kind = self.redacted(&kind).unwrap_or(kind);
        let mut p = self.lock();
        let sealed = p.chain.seal(&kind, now_us());
        p.recorded.push((sealed.seq, kind));
        p.buffer.push(sealed);
    }

    /// Whether the run's first events are known durable (its start, for a new run).
    pub(crate) fn started(&self) -> bool {
        self.settle_answered();
        lock(&self.lease.take_with_first_append).is_none() && self.lease.lost.get().is_none()
    }

    /// The first buffered event larger than the store accepts, as the store would refuse
    /// it: a run's start is checked before any of its work is done.
    pub(crate) fn oversized(&self) -> Option<StoreError> {
        let cap = self.store.max_event_bytes();
        let p = self.lock();
        let e = p.buffer.iter().find(|e| e.payload.len() > cap)?;
        Some(StoreError::PayloadTooLarge {
            run: self.run_id.to_string(),
            seq: e.seq,
            kind: e.kind.to_string(),
            size: e.payload.len(),
            cap,
        })
    }

    /// Takes what was recorded since the last call, in order.
    pub(crate) fn take_recorded(&self) -> Vec<(u64, EventKind)> {
        std::mem::take(&mut self.lock().recorded)
    }

    /// Hands what was recorded to the store, to be made durable in the background, in
    /// order; returns at once (an earlier append's failure is returned). Events wait in
    /// the buffer while an earlier append is still being committed, and while they are
    /// few and young: a run has at most one append in the writer's queue, and a fast run
    /// makes a few large commits rather than one per step, while the work a crash can
    /// make a host do again stays small (at most [`BATCH_EVENTS`] events, or
    /// [`BATCH_AGE_US`] of them).
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.append(false, false).await
    }

    /// Hands everything recorded so far to the store now, without waiting for it: for a
    /// host about to wait (for a long attempt, a retry's backoff), so what it recorded
    /// does not sit in memory meanwhile.
    pub(crate) async fn send(&self) -> Result<(), StoreError> {
        self.append(false, true).await
    }

    /// Whether events are recorded that no append has taken yet.
    pub(crate) fn unsent(&self) -> bool {
        !self.lock().buffer.is_empty()
    }

    /// Makes everything recorded so far durable, and waits for it: call it before
    /// anything that depends on the journal leaves the host.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        self.durable(false).await
    }

    /// Makes everything recorded so far durable and gives the run's lease up in the same
    /// commit, and waits for it: the run stops here (it ended, waits for a human, or is
    /// paused).
    pub(crate) async fn flush_final(&self) -> Result<(), StoreError> {
        self.durable(true).await
    }

    /// Hands everything recorded to the store now (giving the lease up with it if `last`)
    /// and waits until all of it is durable: a sync point, where a test may crash the host.
    async fn durable(&self, last: bool) -> Result<(), StoreError> {
        crash_point::reached(crash_point::Side::Before);
        self.append(last, true).await?;
        self.wait_durable().await?;
        crash_point::reached(crash_point::Side::After);
        Ok(())
    }

    /// Takes in the outcome of every append already answered, in order; `true` if one
    /// is still being committed.
    fn settle_answered(&self) -> bool {
        let mut in_flight = lock(&self.in_flight);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while let Some((ack, change)) = in_flight.first_mut() {
            match ack.as_mut().poll(&mut cx) {
                std::task::Poll::Pending => return true,
                std::task::Poll::Ready(result) => {
                    let change = *change;
                    drop(in_flight.remove(0));
                    self.settle(result, change);
                }
            }
        }
        false
    }

    /// What an answered append means for the journal and the lease.
    fn settle(&self, result: Result<(), StoreError>, change: LeaseChange) {
        match result {
            Ok(()) => {
                // A new run's lease is taken by its first append. An append queued behind
                // that one before it was answered also asks to take it: the store then
                // finds it held by this very fence, and writes.
                if change.takes().is_some() {
                    *lock(&self.lease.take_with_first_append) = None;
                }
                if change.releases() {
                    self.lease.released.store(true, Ordering::Release);
                }
            }
            Err(e) => {
                let _ = self.lease.lost.set(e);
            }
        }
    }

    /// Waits for every append handed over so far.
    async fn wait_durable(&self) -> Result<(), StoreError> {
        let _order = self.flush_lock.lock().await;
        let acks = std::mem::take(&mut *lock(&self.in_flight));
        for (ack, change) in acks {
            self.settle(ack.await, change);
        }
        match self.lease.lost.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Hands the buffer to the store (`now`: even while an earlier append is in flight).
    async fn append(&self, last: bool, now: bool) -> Result<(), StoreError> {
        let _order = self.flush_lock.lock().await;
        let busy = self.settle_answered();
        if let Some(e) = self.lease.lost.get() {
            return Err(e.clone());
        }
        if !now {
            let p = self.lock();
            let young = p.buffer.first().is_none_or(|e| now_us().saturating_sub(e.at_us) < BATCH_AGE_US);
            if busy || (young && p.buffer.len() < BATCH_EVENTS) {
                return Ok(());
            }
        }
        let take = *lock(&self.lease.take_with_first_append);
        let append = {
            let mut p = self.lock();
            if p.buffer.is_empty() {
                return Ok(());
            }
            let lease = match (take, last) {
                (Some(ttl_ms), true) => LeaseChange::TakeAndRelease { ttl_ms },
                (Some(ttl_ms), false) => LeaseChange::TakeNew { ttl_ms },
                (None, true) => LeaseChange::Release,
                (None, false) => LeaseChange::Keep,
            };
            let events = std::mem::take(&mut p.buffer);
            Append { run_id: self.run_id.clone(), fence: self.fence.clone(), events, lease }
        };
        let change = append.lease;
        if change.releases() {
            self.lease.releasing.store(true, Ordering::Release);
        }
        let ack = match self.store.enqueue(append).await {
            Ok(ack) => ack,
            Err(e) => {
                let _ = self.lease.lost.set(e.clone());
                self.lock().buffer.clear();
                return Err(self.lease.lost.get().cloned().unwrap_or(e));
            }
        };
        lock(&self.in_flight).push((ack, change));
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A crash placed exactly at a sync point, for the tests that prove a kill there loses
/// nothing that left the host: `TETHER_CRASH_AT_SYNC=N:before` (or `N:after`) aborts the
/// process, as `kill -9` would, just before (or just after) its N-th sync. Unset, it
/// costs one relaxed load per sync.
mod crash_point {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Side {
        Before,
        After,
    }

    /// Syncs reached in this process (counted on the way in).
    static SYNCS: AtomicU32 = AtomicU32::new(0);

    fn target() -> Option<(u32, Side)> {
        static TARGET: OnceLock<Option<(u32, Side)>> = OnceLock::new();
        *TARGET.get_or_init(|| {
            let spec = std::env::var("TETHER_CRASH_AT_SYNC").ok()?;
            let (n, side) = spec.split_once(':')?;
            let side = match side {
                "before" => Side::Before,
                "after" => Side::After,
                _ => return None,
            };
            Some((n.parse().ok()?, side))
        })
    }

    pub(super) fn reached(side: Side) {
        let Some((n, at)) = target() else { return };
        let count = if side == Side::Before {
            SYNCS.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            SYNCS.load(Ordering::Relaxed)
        };
        if count == n && side == at {
            std::process::abort();
        }
    }
}
