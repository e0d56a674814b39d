//! One run's side of the journal: events are sealed into the run's hash chain as they
//! happen and buffered; `flush` makes everything buffered durable, in order, through the
//! store's group commit. The driver decides where flushes go (run start, each executed
//! tool call, each step end) so that the durable journal is always a prefix of what
//! happened.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tether_types::event::{Chain, EventKind, SealedEvent};
use tether_types::store::{Append, JournalStore, StoreError};
use tether_types::RunId;

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

pub(crate) struct RunJournal {
    pub(crate) run_id: RunId,
    store: Arc<dyn JournalStore>,
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
    pub(crate) fn new(run_id: RunId, store: Arc<dyn JournalStore>, chain: Chain) -> Self {
        RunJournal {
            run_id,
            store,
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

    /// Seals `kind` as the run's next event and buffers it.
    pub(crate) fn record(&self, kind: &EventKind) {
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
        let append = {
            let mut p = self.lock();
            if p.buffer.is_empty() {
                return Ok(());
            }
            Append { run_id: self.run_id.clone(), events: std::mem::take(&mut p.buffer) }
        };
        self.store.append(append).await
    }
}
