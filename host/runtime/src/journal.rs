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

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tether_types::event::{Chain, EventKind, SealedEvent};
use tether_types::store::{Append, Fence, JournalStore, StoreError};
use tether_types::RunId;

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

pub(crate) struct RunJournal {
    pub(crate) run_id: RunId,
    store: Arc<dyn JournalStore>,
    fence: Fence,
    /// Set by the first failed flush, or by the lease's renewal when it was taken over.
    failed: Arc<OnceLock<StoreError>>,
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
    pub(crate) fn new(
        run_id: RunId,
        store: Arc<dyn JournalStore>,
        chain: Chain,
        lease: &crate::lease::RunLease,
    ) -> Self {
        RunJournal {
            run_id,
            store,
            fence: lease.fence(),
            failed: lease.lost(),
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
        let clean = crate::govern::redact(&json, &escaped)?;
        serde_json::from_str(&clean).ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why this host may no longer write the run, once it may not.
    pub(crate) fn failure(&self) -> Option<StoreError> {
        self.failed.get().cloned()
    }

    /// Seals `kind` as the run's next event and buffers it (nothing, once the journal failed).
    pub(crate) fn record(&self, kind: &EventKind) {
        if self.failed.get().is_some() {
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
        let _order = self.flush_lock.lock().await;
        if let Some(e) = self.failed.get() {
            return Err(e.clone());
        }
        let append = {
            let mut p = self.lock();
            if p.buffer.is_empty() {
                return Ok(());
            }
            Append { run_id: self.run_id.clone(), fence: self.fence.clone(), events: std::mem::take(&mut p.buffer) }
        };
        let result = self.store.append(append).await;
        if let Err(e) = &result {
            let _ = self.failed.set(e.clone());
            self.lock().buffer.clear();
        }
        result.map_err(|e| self.failed.get().cloned().unwrap_or(e))
    }
}
