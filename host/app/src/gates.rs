//! Gates as their track records stand: for each workflow with runs, each gate of the
//! policy its latest run pinned, with the record of its human decisions (per class, when
//! the gate keeps one per class) and whether it approves by itself now.

use std::collections::BTreeSet;

use serde::Serialize;
use tether_types::autonomy::{record, OutcomeKind, TrackRecord};
use tether_types::policy::{GateSpec, Relax};
use tether_types::RunId;

use crate::{App, AppError};

/// One gate of one workflow.
#[derive(Clone, Debug, Serialize)]
pub struct GateView {
    /// The workflow.
    pub workflow: String,
    /// The gate.
    pub gate: String,
    /// Its settings, from the policy the workflow's latest run pinned.
    pub spec: GateSpec,
    /// Its track records: one, or one per class seen.
    pub records: Vec<GateRecord>,
    /// Its latest automatic approvals (the last 20, newest first): a reviewer may
    /// override one, which re-arms the gate.
    pub automatic: Vec<AutoApproval>,
}

/// A request a relaxed gate approved by itself.
#[derive(Clone, Debug, Serialize)]
pub struct AutoApproval {
    /// The run.
    pub run_id: String,
    /// The request.
    pub request: String,
    /// When (microseconds since the Unix epoch).
    pub at_us: u64,
    /// Whether a reviewer has overridden it.
    pub overridden: bool,
}

/// A gate's track record (for one class), and whether it has earned autonomy.
#[derive(Clone, Debug, Serialize)]
pub struct GateRecord {
    /// The record.
    #[serde(flatten)]
    pub record: TrackRecord,
    /// Whether the gate approves requests (of this class) by itself now.
    pub relaxed: bool,
    /// Human decisions still needed before it may relax (0 once it has enough).
    pub decisions_to_go: u32,
    /// The override rate after each human decision, oldest first (the last 200): how
    /// the gate earned, or lost, its autonomy.
    pub trend: Vec<f64>,
}

impl App {
    /// Every gate of every workflow that has runs, `workflow` only if given.
    pub async fn gates(&self, workflow: Option<&str>) -> Result<Vec<GateView>, AppError> {
        let mut latest: Vec<(String, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        // Newest first: the first run met of each workflow is its latest.
        for summary in self.store.runs(None, 100_000).await? {
            if workflow.is_some_and(|w| w != summary.workflow) || !seen.insert(summary.workflow.clone()) {
                continue;
            }
            latest.push((summary.workflow, summary.run_id));
        }
        let mut views = Vec::new();
        for (name, run) in latest {
            let run = RunId::try_from(run).map_err(AppError::Corrupt)?;
            let (state, _) = self.state(&run).await?;
            let Some(policy) = state.plan.policy.clone() else { continue };
            if policy.gates.is_empty() {
                continue;
            }
            let outcomes = self.driver()?.gate_outcomes(&name).await?;
            for (gate, spec) in &policy.gates {
                let per_class = spec.relax_after.as_ref().is_some_and(|r| r.per.is_some());
                let classes: BTreeSet<Option<String>> = if per_class {
                    outcomes.iter().filter(|o| o.gate == *gate).map(|o| o.class.clone()).collect()
                } else {
                    BTreeSet::from([None])
                };
                let records = classes
                    .into_iter()
                    .map(|class| {
                        let r = record(&outcomes, gate, class.as_deref());
                        let mut view = gate_record(r, spec.relax_after.as_ref());
                        view.trend = trend(&outcomes, gate, class.as_deref());
                        view
                    })
                    .collect();
                let overridden = |o: &tether_types::autonomy::Outcome| {
                    outcomes
                        .iter()
                        .any(|x| x.id == o.id && x.run_id == o.run_id && x.kind == OutcomeKind::AutoOverridden)
                };
                let automatic = outcomes
                    .iter()
                    .rev()
                    .filter(|o| o.gate == *gate && o.kind == OutcomeKind::AutoApproved)
                    .take(20)
                    .map(|o| AutoApproval {
                        run_id: o.run_id.clone(),
                        request: o.id.clone(),
                        at_us: o.at_us,
                        overridden: overridden(o),
                    })
                    .collect();
                views.push(GateView {
                    workflow: name.clone(),
                    gate: gate.clone(),
                    spec: spec.clone(),
                    records,
                    automatic,
                });
            }
        }
        Ok(views)
    }
}

fn gate_record(record: TrackRecord, relax: Option<&Relax>) -> GateRecord {
    let relaxed = relax.is_some_and(|r| record.meets(r));
    let decisions_to_go = relax.map_or(0, |r| r.decisions.saturating_sub(record.decisions));
    GateRecord { record, relaxed, decisions_to_go, trend: Vec::new() }
}

/// The override rate after each human decision at `gate` (for `class`), the last 200.
fn trend(outcomes: &[tether_types::autonomy::Outcome], gate: &str, class: Option<&str>) -> Vec<f64> {
    let (mut decisions, mut overrides) = (0u32, 0u32);
    let mut rates = Vec::new();
    for o in outcomes.iter().filter(|o| o.gate == gate && (class.is_none() || o.class.as_deref() == class)) {
        if o.kind.is_human() {
            decisions += 1;
            overrides += u32::from(o.kind.is_override());
            rates.push(f64::from(overrides) / f64::from(decisions));
        }
    }
    let skip = rates.len().saturating_sub(200);
    rates.split_off(skip)
}
