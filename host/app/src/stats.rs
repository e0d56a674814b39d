//! Figures over recorded runs, computed from their journals alone: success, escalation
//! and rollback rates, step latencies, cost per success, and each gate's track record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tether_types::autonomy::{outcomes, OutcomeKind};
use tether_types::policy::RESERVED_IDENTITIES;
use tether_types::{Event, EventKind, RunId};

use crate::{App, AppError};

/// Which runs the figures are over.
#[derive(Clone, Debug, Default)]
pub struct StatsFilter {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs started at or after this time (microseconds since the Unix epoch).
    pub since_us: Option<u64>,
    /// At most this many runs, newest first.
    pub limit: u32,
}

impl App {
    /// Figures over the runs `filter` selects.
    pub async fn stats(&self, filter: &StatsFilter) -> Result<Stats, AppError> {
        let mut runs = Vec::new();
        for r in self.store.runs(None, filter.limit).await? {
            if filter.workflow.as_ref().is_some_and(|w| *w != r.workflow)
                || filter.since_us.is_some_and(|s| r.started_us < s)
            {
                continue;
            }
            let run = RunId::try_from(r.run_id.clone()).map_err(AppError::Corrupt)?;
            runs.push((r.run_id, self.events(&run).await?));
        }
        Ok(compute(&runs))
    }
}

/// Everything `stats` reports.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Runs counted.
    pub runs: u32,
    /// Runs that ended by themselves: completed, failed, compensated or compensation failed.
    pub finished: u32,
    /// Runs a person cancelled (not counted as finished: neither a success nor a failure).
    pub cancelled: u32,
    /// Runs that completed.
    pub completed: u32,
    /// completed / finished.
    pub success_rate: Option<f64>,
    /// Runs that needed a human (a request not approved by the gate itself) / runs.
    pub escalation_rate: Option<f64>,
    /// Runs whose completed steps were undone / finished.
    pub rollback_rate: Option<f64>,
    /// Runs waiting for a human now.
    pub waiting: u32,
    /// Latency of each step's completed attempts.
    pub steps: BTreeMap<String, StepLatency>,
    /// Mean fuel (steps and tools) per completed run.
    pub fuel_per_success: Option<f64>,
    /// Mean reported usage per completed run, per metric.
    pub usage_per_success: BTreeMap<String, f64>,
    /// Each gate's decisions and track record.
    pub gates: BTreeMap<String, GateStats>,
}

/// How long a step's completed attempts took.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StepLatency {
    /// Completed attempts measured.
    pub count: usize,
    /// Median, in microseconds.
    pub median_us: u64,
    /// 95th percentile, in microseconds.
    pub p95_us: u64,
}

/// A gate's decisions.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GateStats {
    /// Human decisions.
    pub decisions: u32,
    /// Approved without change.
    pub approved: u32,
    /// Approved with an edit, or rejected.
    pub overrides: u32,
    /// overrides / decisions.
    pub override_rate: Option<f64>,
    /// Approved by the gate itself (earned autonomy).
    pub auto_approved: u32,
    /// Automatic approvals a reviewer overrode (each re-armed the gate).
    pub auto_overridden: u32,
    /// Decided by a deadline's default.
    pub timed_out: u32,
}

fn compute(runs: &[(String, Vec<Event>)]) -> Stats {
    let mut s = Stats { runs: runs.len() as u32, ..Stats::default() };
    let (mut compensated, mut escalated, mut fuel_total) = (0u32, 0u32, 0u64);
    let mut usage: BTreeMap<String, f64> = BTreeMap::new();
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, events) in runs {
        let mut status = "running";
        let mut fuel = 0u64;
        let mut human = false;
        for e in events {
            match &e.kind {
                EventKind::StepCompleted { step, fuel: f, tool_fuel, wall_us, .. } => {
                    fuel += f + tool_fuel;
                    latencies.entry(tether_types::flow::step_of(step).to_string()).or_default().push(*wall_us);
                }
                EventKind::StepFailed { fuel: f, tool_fuel, .. } => fuel += f + tool_fuel,
                EventKind::ApprovalDecided { by, .. } if !RESERVED_IDENTITIES.contains(&by.as_str()) => human = true,
                EventKind::RunWaiting { .. } => human = true,
                EventKind::RunCompleted { .. } => status = "completed",
                EventKind::RunFailed { .. } => status = "failed",
                EventKind::RunCompensated { .. } | EventKind::RunCompensationFailed { .. } => status = "compensated",
                _ => {}
            }
        }
        // A cancelled run ends as failed or compensated; it is neither.
        if matches!(status, "failed" | "compensated")
            && events.iter().any(|e| matches!(e.kind, EventKind::RunCancelled { .. }))
        {
            status = "cancelled";
        }
        let waiting = events.iter().rev().find_map(|e| match e.kind {
            EventKind::RunWaiting { .. } => Some(true),
            EventKind::RunResumed { .. } => Some(false),
            _ => None,
        });
        if status == "running" && waiting == Some(true) {
            s.waiting += 1;
        }
        escalated += u32::from(human);
        match status {
            "completed" => {
                s.completed += 1;
                s.finished += 1;
                fuel_total += fuel;
                for (m, a) in tether_types::state::usage_totals(events) {
                    *usage.entry(m).or_default() += a;
                }
            }
            "failed" => s.finished += 1,
            "compensated" => {
                s.finished += 1;
                compensated += 1;
            }
            "cancelled" => s.cancelled += 1,
            _ => {}
        }
    }
    let ratio = |a: u32, b: u32| (b > 0).then(|| f64::from(a) / f64::from(b));
    s.success_rate = ratio(s.completed, s.finished);
    s.rollback_rate = ratio(compensated, s.finished);
    s.escalation_rate = ratio(escalated, s.runs);
    if s.completed > 0 {
        s.fuel_per_success = Some(fuel_total as f64 / f64::from(s.completed));
        s.usage_per_success = usage.into_iter().map(|(m, a)| (m, a / f64::from(s.completed))).collect();
    }
    for (step, mut values) in latencies {
        values.sort_unstable();
        let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        s.steps.insert(step, StepLatency { count: values.len(), median_us: rank(0.5), p95_us: rank(0.95) });
    }
    for o in outcomes(runs.iter().map(|(r, e)| (r.as_str(), e.as_slice()))) {
        let g = s.gates.entry(o.gate.clone()).or_default();
        match o.kind {
            OutcomeKind::Approved => g.approved += 1,
            OutcomeKind::Edited | OutcomeKind::Rejected => g.overrides += 1,
            OutcomeKind::AutoApproved => g.auto_approved += 1,
            OutcomeKind::AutoOverridden => g.auto_overridden += 1,
            OutcomeKind::TimedOut => g.timed_out += 1,
        }
        if o.kind.is_human() {
            g.decisions += 1;
        }
    }
    for g in s.gates.values_mut() {
        g.override_rate = ratio(g.overrides, g.decisions);
    }
    s
}
