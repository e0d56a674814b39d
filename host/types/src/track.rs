//! A gate's track record: the evidence journaled with an automatic approval. Data only,
//! so the journal's events can carry it without depending on how it is computed
//! (`autonomy.rs`).

use serde::{Deserialize, Serialize};

/// A gate's record, as the evidence for (or against) approving by itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackRecord {
    /// Human decisions counted (since the gate was last re-armed).
    pub decisions: u32,
    /// Of those, approvals without change.
    pub approved: u32,
    /// Of those, overrides: approved with an edit, or rejected.
    pub overrides: u32,
    /// `overrides / decisions` (0 with no decisions).
    pub override_rate: f64,
    /// Automatic approvals since the gate was last re-armed.
    #[serde(default)]
    pub auto_approved: u32,
    /// When the gate was last re-armed by an override of an automatic approval
    /// (microseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rearmed_us: Option<u64>,
    /// The class the record is for, when the gate keeps one per class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}
