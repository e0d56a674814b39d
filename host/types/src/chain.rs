//! The hash chain of a run's journal: events sealed with a sequence number and a hash
//! over the previous event's, as the store keeps them, and read back only if the chain
//! holds (an edited, missing or reordered event is named).

use sha2::{Digest, Sha256};

use crate::event::{Event, EventKind};

/// The hash of the (absent) event before seq 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain hash of an event, given the previous event's hash and this event's JSON
/// payload exactly as stored.
pub fn chain_hash(prev_hash: &str, seq: u64, at_us: u64, payload: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(at_us.to_be_bytes());
    h.update(payload.as_bytes());
    hex::encode(h.finalize())
}

/// Builds the hash chain of one run as events are appended.
#[derive(Clone, Debug)]
pub struct Chain {
    next_seq: u64,
    prev_hash: String,
}

/// An event ready to be stored: payload serialized once, hash computed over exactly it.
#[derive(Clone, Debug)]
pub struct SealedEvent {
    /// Position in the run's journal.
    pub seq: u64,
    /// Time in microseconds since the Unix epoch.
    pub at_us: u64,
    /// `EventKind::name`.
    pub kind: &'static str,
    /// The JSON payload, exactly as hashed. Shared, and exactly as long as it is: it
    /// waits in memory until its commit and is bound to the INSERT without a copy.
    pub payload: std::sync::Arc<str>,
    /// The chain hash.
    pub hash: String,
    /// What the event does to the run index, applied with it.
    pub index: Option<crate::run_index::IndexChange>,
}

impl Chain {
    /// A chain for a new run.
    pub fn new() -> Self {
        Chain { next_seq: 1, prev_hash: GENESIS_HASH.to_string() }
    }

    /// A chain continuing after the last stored event.
    pub fn after(last_seq: u64, last_hash: &str) -> Self {
        Chain { next_seq: last_seq + 1, prev_hash: last_hash.to_string() }
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Serializes and seals `kind` as the next event.
    pub fn seal(&mut self, kind: &EventKind, at_us: u64) -> SealedEvent {
        let payload = serde_json::to_string(kind).expect("events serialize");
        let seq = self.next_seq;
        let hash = chain_hash(&self.prev_hash, seq, at_us, &payload);
        self.next_seq += 1;
        self.prev_hash.clone_from(&hash);
        let payload = std::sync::Arc::from(payload);
        SealedEvent { seq, at_us, kind: kind.name(), payload, hash, index: crate::run_index::IndexChange::of(kind) }
    }
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

/// A stored row, as read back.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// Position.
    pub seq: u64,
    /// Time in microseconds since the Unix epoch.
    pub at_us: u64,
    /// The `kind` column.
    pub kind: String,
    /// The JSON payload.
    pub payload: String,
    /// The stored hash.
    pub hash: String,
}

/// Why a stored journal cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// An event's payload does not parse, or its kind column disagrees with it.
    #[error("run {run}: event {seq} is corrupted: {reason}")]
    Corrupted {
        /// The run.
        run: String,
        /// Its position.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The hash chain does not hold at this event: it or an earlier one was changed.
    #[error("run {run}: the hash chain is broken at event {seq}: the event or one before it was altered")]
    BrokenChain {
        /// The run.
        run: String,
        /// First event whose hash does not match.
        seq: u64,
    },
    /// Sequence numbers are not 1, 2, 3, ...: an event is missing.
    #[error("run {run}: event {expected} is missing (found {found} next)")]
    Gap {
        /// The run.
        run: String,
        /// Expected sequence number.
        expected: u64,
        /// Found instead.
        found: u64,
    },
}

/// Checks the chain and decodes every event. The first problem is reported with its
/// sequence number.
pub fn verify_and_decode(run: &str, rows: &[StoredEvent]) -> Result<Vec<Event>, JournalError> {
    verify_and_decode_after(run, (0, GENESIS_HASH), rows)
}

/// Checks that `rows` continue the chain from the event `after` (its seq and hash; seq 0
/// and the genesis hash for the start of a journal) and decodes them: a page of a long
/// journal, tied to an event already trusted.
pub fn verify_and_decode_after(
    run: &str,
    after: (u64, &str),
    rows: &[StoredEvent],
) -> Result<Vec<Event>, JournalError> {
    let mut prev = after.1.to_string();
    let mut events = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let expected = after.0 + i as u64 + 1;
        if row.seq != expected {
            return Err(JournalError::Gap { run: run.into(), expected, found: row.seq });
        }
        if chain_hash(&prev, row.seq, row.at_us, &row.payload) != row.hash {
            return Err(JournalError::BrokenChain { run: run.into(), seq: row.seq });
        }
        let kind: EventKind = serde_json::from_str(&row.payload).map_err(|e| JournalError::Corrupted {
            run: run.into(),
            seq: row.seq,
            reason: e.to_string(),
        })?;
        if kind.name() != row.kind {
            let reason = format!("kind column says `{}`, payload says `{}`", row.kind, kind.name());
            return Err(JournalError::Corrupted { run: run.into(), seq: row.seq, reason });
        }
        prev.clone_from(&row.hash);
        events.push(Event { seq: row.seq, at_us: row.at_us, kind, hash: row.hash.clone() });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::HostRead;

    fn rows(kinds: &[EventKind]) -> Vec<StoredEvent> {
        let mut chain = Chain::new();
        kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let s = chain.seal(k, 1000 + i as u64);
                StoredEvent {
                    seq: s.seq,
                    at_us: s.at_us,
                    kind: s.kind.into(),
                    payload: s.payload.to_string(),
                    hash: s.hash,
                }
            })
            .collect()
    }

    fn sample() -> Vec<EventKind> {
        vec![
            EventKind::HostRead { step: "a".into(), read: HostRead::WallClock { nanos: 1_795_000_000_123_456_789 } },
            EventKind::UsageReported { step: "a".into(), metric: "tokens".into(), amount: 3.0 },
            EventKind::RunCompleted { output: serde_json::json!({"ok": true}) },
        ]
    }

    #[test]
    fn an_intact_chain_verifies_and_decodes() {
        let events = verify_and_decode("run_x", &rows(&sample())).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].kind, sample()[2]);
    }

    #[test]
    fn an_edited_payload_breaks_the_chain_at_that_event() {
        let mut r = rows(&sample());
        r[1].payload = r[1].payload.replace("3.0", "300.0");
        assert_eq!(verify_and_decode("run_x", &r), Err(JournalError::BrokenChain { run: "run_x".into(), seq: 2 }));
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_next_link() {
        // An attacker who recomputes the edited event's own hash breaks the next one.
        let mut r = rows(&sample());
        r[1].payload = r[1].payload.replace("3.0", "300.0");
        r[1].hash = chain_hash(&r[0].hash, 2, r[1].at_us, &r[1].payload);
        assert_eq!(verify_and_decode("run_x", &r), Err(JournalError::BrokenChain { run: "run_x".into(), seq: 3 }));
    }

    #[test]
    fn gaps_and_garbage_are_named() {
        let mut r = rows(&sample());
        r.remove(1);
        assert_eq!(
            verify_and_decode("run_x", &r),
            Err(JournalError::Gap { run: "run_x".into(), expected: 2, found: 3 })
        );
        let mut r = rows(&sample());
        r[0].payload = "{trunc".into();
        r[0].hash = chain_hash(GENESIS_HASH, 1, r[0].at_us, &r[0].payload);
        let err = verify_and_decode("run_x", &r).unwrap_err().to_string();
        assert!(err.starts_with("run run_x: event 1 is corrupted"), "{err}");
    }
}
