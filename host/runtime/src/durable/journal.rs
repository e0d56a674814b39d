//! One run's side of the journal: events are sealed into the run's hash chain as they
//! happen and buffered; `flush` makes everything buffered durable, in order, through the
//! store's group commit. The driver decides where flushes go (run start, each executed
//! tool call, each step end) so that the durable journal is always a prefix of what
//! happened.
//!
//! Every flush is fenced by the run's lease. A flush that fails (a lost lease, a
//! conflict, a database error) is terminal for this host: the journal refuses every
//! later record and flush with that error, and its in-memory chain, which ran ahead of
//! what is durable, is never written.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tether_types::chain::{Chain, SealedEvent};
use tether_types::event::EventKind;
use tether_types::store::{Append, Fence, JournalStore, LeaseChange, StoreError};

use crate::durable::lease::{LeaseState, RunLease};
use crate::durable::time::now_us;
use tether_types::RunId;

pub(crate) struct RunJournal {
    pub(crate) run_id: RunId,
    store: Arc<dyn JournalStore>,
    fence: Fence,
    /// The lease's state: its `lost` is set by the first failed flush, or by the renewal
    /// when the lease was taken over.
    lease: Arc<LeaseState>,
    pending: Mutex<Pending>,
    /// Held across take-and-append so flushes reach the writer in order.
    flush_lock: tokio::sync::Mutex<()>,
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
    pub(crate) fn record(&self, kind: &EventKind) {
        if self.lease.lost.get().is_some() {
            return;
        }
        let redacted = self.redacted(kind);
        let kind = redacted.as_ref().unwrap_or(kind);
        let mut p = self.lock();
        let sealed = p.chain.seal(kind, now_us());
        p.recorded.push((sealed.seq, kind.clone()));
        p.buffer.push(sealed);
    }

    /// Takes what was recorded since the last call, in order.
    pub(crate) fn take_recorded(&self) -> Vec<(u64, EventKind)> {
        std::mem::take(&mut self.lock().recorded)
    }

    /// Makes everything recorded so far durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.append(false).await
    }

    /// Makes everything recorded so far durable and gives the run's lease up in the same
    /// commit: the run stops here (it ended, waits for a human, or is paused).
    pub(crate) async fn flush_final(&self) -> Result<(), StoreError> {
        self.append(true).await
    }

    async fn append(&self, last: bool) -> Result<(), StoreError> {
        let _order = self.flush_lock.lock().await;
        if let Some(e) = self.lease.lost.get() {
            return Err(e.clone());
        }
        let take = *lock(&self.lease.take_with_first_append);
        let append = {
            let mut p = self.lock();
            if p.buffer.is_empty() {
                return Ok(());
            }
            let lease = match (take, last) {
                (Some(ttl_ms), _) => LeaseChange::TakeNew { ttl_ms },
                (None, true) => LeaseChange::Release,
                (None, false) => LeaseChange::Keep,
            };
            let events = std::mem::take(&mut p.buffer);
            Append { run_id: self.run_id.clone(), fence: self.fence.clone(), events, lease }
        };
        let lease = append.lease;
        let result = self.store.append(append).await;
        match &result {
            Ok(()) if take.is_some() => *lock(&self.lease.take_with_first_append) = None,
            Ok(()) if lease == LeaseChange::Release => self.lease.released.store(true, Ordering::Release),
            Ok(()) => {}
            Err(e) => {
                let _ = self.lease.lost.set(e.clone());
                self.lock().buffer.clear();
            }
        }
        result.map_err(|e| self.lease.lost.get().cloned().unwrap_or(e))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
