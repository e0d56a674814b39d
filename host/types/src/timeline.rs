//! What a run's events say as a whole, without folding them into a [`RunState`]: the
//! run's report (`tether run`, `resume`, `show`), usage totals and the run index status.
//!
//! [`RunState`]: crate::state::RunState

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::{Event, EventKind, ToolResult};
use crate::failure::StepFailure;
use crate::ids::RunId;
use crate::report::{LogLine, RunError, RunReport, RunStatus, StepReport, StepStats, ToolCallReport};

/// The run report, built from the journal alone.
pub fn report_from_events(run_id: RunId, events: &[Event]) -> RunReport {
    let mut workflow = String::new();
    let mut steps: Vec<StepReport> = Vec::new();
    let mut current: BTreeMap<String, StepStats> = BTreeMap::new();
    let mut status = RunStatus::Failed;
    let mut output = Value::Null;
    let mut error = None;
    for e in events {
        match &e.kind {
            EventKind::RunStarted { workflow: w, .. } => workflow.clone_from(w),
            EventKind::StepAttemptStarted { step, .. } => {
                current.insert(step.clone(), StepStats::default());
            }
            EventKind::StepSkipped { step, reason } => steps.push(StepReport {
                name: step.clone(),
                outcome: RunStatus::Skipped,
                error: None,
                stats: StepStats { logs: vec![skip_note(reason)], ..StepStats::default() },
            }),
            EventKind::ToolCallCompleted { step, tool, result, fuel, wall_us, logs, usage, .. } => {
                let current = current.entry(step.clone()).or_default();
                let outcome = match result {
                    ToolResult::Ok(_) => "ok".to_string(),
                    ToolResult::Err { class: Some(c), .. } => c.as_str().to_string(),
                    ToolResult::Err { .. } => "guest_error".to_string(),
                };
                current.tool_calls.push(ToolCallReport { tool: tool.clone(), outcome, fuel: *fuel, wall_us: *wall_us });
                current.logs.extend(logs.iter().cloned());
                for (m, a) in usage {
                    *current.usage.entry(m.clone()).or_default() += a;
                }
            }
            EventKind::UsageReported { step, metric, amount } => {
                *current.entry(step.clone()).or_default().usage.entry(metric.clone()).or_default() += amount
            }
            EventKind::ModelCalled { step, usage, .. } => {
                let current = current.entry(step.clone()).or_default();
                for (m, a) in usage {
                    *current.usage.entry(m.clone()).or_default() += a;
                }
            }
            EventKind::GuestLog { step, level, stream, tool, message } => current
                .entry(step.clone())
                .or_default()
                .logs
                .push(LogLine { level: *level, stream: stream.clone(), tool: tool.clone(), message: message.clone() }),
            EventKind::StepCompleted { step, fuel, tool_fuel, wall_us, peak_memory, .. } => {
                let stats = current.entry(step.clone()).or_default();
                steps.push(finish(step, None, stats, (*fuel, *tool_fuel, *wall_us, *peak_memory)));
            }
            EventKind::StepFailed { step, failure, fuel, tool_fuel, wall_us, peak_memory, .. } => {
                let stats = current.entry(step.clone()).or_default();
                steps.push(finish(step, Some(failure.clone()), stats, (*fuel, *tool_fuel, *wall_us, *peak_memory)));
            }
            EventKind::RunCompleted { output: o } => {
                status = RunStatus::Completed;
                output = o.clone();
            }
            EventKind::RunFailed { error: e } => error = Some(e.clone()),
            EventKind::RunPaused { step, exceeded, used, limit } => {
                status = RunStatus::Paused;
                error = Some(RunError {
                    class: crate::FailureClass::RunBudgetExceeded,
                    step: step.clone(),
                    message: format!("the run's `{exceeded}` budget is used up ({used} of {limit})"),
                });
            }
            EventKind::RunResumed { .. } => {
                status = RunStatus::Failed;
                error = None;
            }
            EventKind::RunWaiting { approvals } => {
                status = RunStatus::Waiting;
                error = Some(RunError {
                    class: crate::FailureClass::AwaitingApproval,
                    step: approvals.join(", "),
                    message: format!("waiting for approval of {}", approvals.join(", ")),
                });
            }
            EventKind::RunCompensated { error: e } => {
                status = RunStatus::Compensated;
                error = Some(e.clone());
            }
            EventKind::RunCompensationFailed { error: e, failed } => {
                status = RunStatus::CompensationFailed;
                let mut e = e.clone();
                e.message = format!("{} (and compensating {} failed)", e.message, failed.join(", "));
                error = Some(e);
            }
            _ => {}
        }
    }
    let wall_us = match (events.first(), events.last()) {
        (Some(a), Some(b)) => b.at_us.saturating_sub(a.at_us),
        _ => 0,
    };
    RunReport { run_id, workflow, status, output, error, totals: RunReport::totals_of(&steps, wall_us), steps }
}

fn finish(
    step: &str,
    error: Option<StepFailure>,
    stats: &mut StepStats,
    (fuel, tool_fuel, wall_us, peak): (u64, u64, u64, u64),
) -> StepReport {
    let mut stats = std::mem::take(stats);
    stats.fuel = fuel;
    stats.tool_fuel = tool_fuel;
    stats.wall_us = wall_us;
    stats.peak_memory = peak;
    StepReport {
        name: step.to_string(),
        outcome: if error.is_some() { RunStatus::Failed } else { RunStatus::Completed },
        error,
        stats,
    }
}

fn skip_note(reason: &str) -> LogLine {
    LogLine {
        level: crate::report::LogLevel::Info,
        stream: "host".into(),
        tool: None,
        message: format!("skipped: {reason}"),
    }
}

/// Usage per metric, summed over a run's events (for `history` and `stats`).
pub fn usage_totals(events: &[Event]) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::UsageReported { metric, amount, .. } => *totals.entry(metric.clone()).or_default() += amount,
            EventKind::ModelCalled { usage, .. } => {
                for (m, a) in usage {
                    *totals.entry(m.clone()).or_default() += a;
                }
            }
            EventKind::ToolCallCompleted { usage, .. } => {
                for (m, a) in usage {
                    *totals.entry(m.clone()).or_default() += a;
                }
            }
            _ => {}
        }
    }
    totals
}

pub use crate::run_index::index_status;
