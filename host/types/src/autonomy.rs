//! Earned autonomy: a gate's track record, and whether it has earned the right to
//! approve by itself.
//!
//! The record of a gate (per workflow, and per class when the gate names one) counts the
//! requests humans decided: approved as proposed, or overridden (approved with an edited
//! payload, or rejected). A gate with `relax_after = { decisions = N, max_override_rate = R }`
//! approves by itself once at least N decisions were made and at most a share R of them
//! were overrides; each automatic approval is journaled with the record it relied on.
//!
//! A reviewer who finds an automatic approval wrong records an override
//! (`tether override`). That re-arms the gate: the record starts again after the
//! override, so humans decide until the gate has earned it again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind};
use crate::policy::{Policy, Relax};
use crate::state::{Approval, ApprovalOutcome};

pub use crate::track::TrackRecord;

impl TrackRecord {
    /// Whether this record meets `relax`.
    pub fn meets(&self, relax: &Relax) -> bool {
        self.decisions >= relax.decisions && self.override_rate <= relax.max_override_rate
    }
}

/// How one request ended, for the record.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The run.
    pub run_id: String,
    /// The request's id.
    pub id: String,
    /// The gate.
    pub gate: String,
    /// The request's class.
    pub class: Option<String>,
    /// When it was decided.
    pub at_us: u64,
    /// How.
    pub kind: OutcomeKind,
}

/// How a request was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Humans approved it as proposed.
    Approved,
    /// Humans approved it with an edit.
    Edited,
    /// Humans rejected it.
    Rejected,
    /// The deadline passed (not counted as a human decision).
    TimedOut,
    /// The gate approved it by itself.
    AutoApproved,
    /// A reviewer overrode an automatic approval after the fact (re-arms the gate).
    AutoOverridden,
}

impl OutcomeKind {
    /// Whether humans decided it (what the record counts).
    pub fn is_human(self) -> bool {
        matches!(self, OutcomeKind::Approved | OutcomeKind::Edited | OutcomeKind::Rejected)
    }

    /// Whether it counts as an override.
    pub fn is_override(self) -> bool {
        matches!(self, OutcomeKind::Edited | OutcomeKind::Rejected)
    }
}

/// The decided requests in a set of runs' events (each run's events in order), in the
/// order they were decided. A request needing two approvers is one decision, made when
/// the second approves (or the first rejects); it is an override if either edited.
pub fn outcomes<'a>(runs: impl IntoIterator<Item = (&'a str, &'a [Event])>) -> Vec<Outcome> {
    let mut out = Vec::new();
    for (run_id, events) in runs {
        let mut open: BTreeMap<&str, Approval> = BTreeMap::new();
        let mut decided: BTreeMap<&str, Option<String>> = BTreeMap::new();
        for e in events {
            let outcome = |id: &str, gate: &str, class: Option<String>, kind| Outcome {
                run_id: run_id.to_string(),
                id: id.to_string(),
                gate: gate.to_string(),
                class,
                at_us: e.at_us,
                kind,
            };
            match &e.kind {
                EventKind::ApprovalRequested { id, .. } => {
                    if let Some(a) = Approval::requested(&e.kind) {
                        open.insert(id, a);
                    }
                }
                EventKind::ApprovalDecided { id, by, evidence, .. } => {
                    let Some(a) = open.get_mut(id.as_str()) else { continue };
                    a.decide(&e.kind);
                    let kind = match &a.outcome {
                        None => continue,
                        _ if by == crate::policy::BY_DEADLINE => OutcomeKind::TimedOut,
                        _ if evidence.is_some() => OutcomeKind::AutoApproved,
                        Some(ApprovalOutcome::Rejected { .. }) => OutcomeKind::Rejected,
                        Some(ApprovalOutcome::Approved(_)) if a.edited.is_some() => OutcomeKind::Edited,
                        Some(ApprovalOutcome::Approved(_)) => OutcomeKind::Approved,
                    };
                    out.push(outcome(id, &a.gate, a.class.clone(), kind));
                    decided.insert(id, a.class.clone());
                    open.remove(id.as_str());
                }
                EventKind::ApprovalOverridden { id, gate, .. } => {
                    let class = decided.get(id.as_str()).cloned().flatten();
                    out.push(outcome(id, gate, class, OutcomeKind::AutoOverridden));
                }
                _ => {}
            }
        }
    }
    out.sort_by_key(|o| o.at_us);
    out
}

/// The record that lets `gate` of `policy` approve a request of `class` by itself, if it
/// has earned that: the gate relaxes (`relax_after`), and its record (per class when the
/// gate counts per class) meets the condition. `None` otherwise, and for a gate the policy
/// does not declare.
pub fn earned(policy: &Policy, outcomes: &[Outcome], gate: &str, class: Option<&str>) -> Option<TrackRecord> {
    let relax = policy.gates.get(gate)?.relax_after.as_ref()?;
    let record = record(outcomes, gate, class.filter(|_| relax.per.is_some()));
    record.meets(relax).then_some(record)
}

/// The record of `gate` (for `class`, if given) from its decided requests.
pub fn record(outcomes: &[Outcome], gate: &str, class: Option<&str>) -> TrackRecord {
    let relevant = outcomes
        .iter()
        .filter(|o| o.gate == gate && (class.is_none() || o.class.as_deref() == class))
        .collect::<Vec<_>>();
    let rearmed = relevant.iter().rposition(|o| o.kind == OutcomeKind::AutoOverridden);
    let window = &relevant[rearmed.map_or(0, |i| i + 1)..];
    let mut r = TrackRecord {
        rearmed_us: rearmed.map(|i| relevant[i].at_us),
        class: class.map(str::to_string),
        ..TrackRecord::default()
    };
    for o in window {
        if o.kind.is_human() {
            r.decisions += 1;
            if o.kind.is_override() {
                r.overrides += 1;
            } else {
                r.approved += 1;
            }
        } else if o.kind == OutcomeKind::AutoApproved {
            r.auto_approved += 1;
        }
    }
    r.override_rate = if r.decisions == 0 { 0.0 } else { f64::from(r.overrides) / f64::from(r.decisions) };
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(at_us: u64, kind: OutcomeKind) -> Outcome {
        Outcome { run_id: "r".into(), id: format!("i{at_us}"), gate: "g".into(), class: None, at_us, kind }
    }

    #[test]
    fn the_record_counts_human_decisions_and_restarts_after_an_overridden_auto_approval() {
        use OutcomeKind::*;
        let relax = Relax { decisions: 3, max_override_rate: 0.34, per: None };
        let mut history = vec![o(1, Approved), o(2, Edited), o(3, TimedOut), o(4, Approved)];
        let r = record(&history, "g", None);
        assert_eq!((r.decisions, r.approved, r.overrides), (3, 2, 1));
        assert!((r.override_rate - 1.0 / 3.0).abs() < 1e-9);
        assert!(r.meets(&relax));
        history.push(o(5, Rejected));
        assert!(!record(&history, "g", None).meets(&relax), "2 of 4 overridden is above 0.34");
        history.extend([o(6, Approved), o(7, Approved), o(8, AutoApproved), o(9, AutoOverridden)]);
        let r = record(&history, "g", None);
        assert_eq!((r.decisions, r.rearmed_us), (0, Some(9)), "the override re-armed the gate");
        assert!(!r.meets(&relax));
        assert_eq!(record(&history, "other", None).decisions, 0);
    }
}
