//! The host's clock as events and leases record it. A module of its own so the journal
//! and the lease (which the journal is written under) both read it without naming each
//! other.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}
