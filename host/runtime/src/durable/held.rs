//! What a held run's lease, its journal and its host's presence share.

use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};

use tether_types::store::StoreError;

/// What a lease's holder and the journal written under it share.
#[derive(Default)]
pub(crate) struct LeaseState {
    /// Set when the lease was found taken over (by the heartbeat, or a refused append).
    pub(crate) lost: OnceLock<StoreError>,
    /// Set (with the lease's lifetime in ms) while the lease of a new run exists only in
    /// this process: the run's first append takes it.
    pub(crate) take_with_first_append: Mutex<Option<u64>>,
    /// Set once an append gave the lease up with the run's last events.
    pub(crate) released: AtomicBool,
    /// Set once an append that gives the lease up is handed to the store: the lease is
    /// over whether that append is written (released) or refused (lost). A heartbeat's
    /// check racing its commit would find the lease released by this very host and take
    /// that for a take-over.
    pub(crate) releasing: AtomicBool,
}
