//! A run's state is a fold over its journal. This module is that fold: pure, from
//! decoded events to what the driver needs to continue (the next step, the interrupted
//! attempt and its recorded interactions) and to what a report shows.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::{Event, EventKind, ToolResult};
use crate::failure::StepFailure;
use crate::ids::RunId;
use crate::plan::Plan;
use crate::report::{LogLine, RunError, RunReport, RunStatus, StepReport, StepStats, ToolCallReport};

/// An attempt that started and has not ended.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAttempt {
    /// The step.
    pub step: String,
    /// Its attempt number.
    pub attempt: u32,
    /// Its input.
    pub input: Value,
    /// Recorded guest interactions, with their sequence numbers, in order.
    pub interactions: Vec<(u64, EventKind)>,
    /// The limits it ran with, if the run's budget clipped the step's own.
    pub limits: Option<crate::budget::StepBudget>,
    /// Usage it may report, per metric.
    pub usage_limits: BTreeMap<String, f64>,
}

/// A retry waiting for its time.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingRetry {
    /// The step.
    pub step: String,
    /// The attempt that will run.
    pub attempt: u32,
    /// Microseconds since the Unix epoch.
    pub not_before_us: u64,
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub struct RunState {
    /// The plan it is tied to.
    pub plan: Plan,
    /// Its input.
    pub input: Value,
    /// Who started it.
    pub identity: String,
    /// The steps that completed, in order: (step, input, output).
    pub completed: Vec<(String, Value, Value)>,
    /// Set once the run has begun undoing completed steps: why it failed, and the steps
    /// already compensated.
    pub compensating: Option<(RunError, Vec<String>)>,
    /// The attempt that was interrupted, if any.
    pub open: Option<OpenAttempt>,
    /// A retry that was scheduled and has not started.
    pub retry: Option<PendingRetry>,
    /// The highest attempt number seen, per step.
    pub attempts: BTreeMap<String, u32>,
    /// What the run has consumed, for run budgets.
    pub used: crate::run_budget::RunUsage,
    /// Budget raises so far, per metric.
    pub raises: BTreeMap<String, f64>,
    /// Set while the run is paused: (step, what ran out).
    pub paused: Option<(String, String)>,
    /// Set when the run is over: its output or its error.
    pub outcome: Option<Result<Value, RunError>>,
    /// Last event's sequence number and hash, to continue the chain.
    pub last: (u64, String),
}

/// Why a journal cannot be folded into a run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("run {run}: event {seq}: {reason}")]
pub struct FoldError {
    /// The run.
    pub run: String,
    /// The event.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

impl RunState {
    /// Folds a run's verified events.
    pub fn fold(run: &str, events: &[Event]) -> Result<RunState, FoldError> {
        let err = |seq: u64, reason: &str| FoldError { run: run.into(), seq, reason: reason.into() };
        let first = events.first().ok_or_else(|| err(0, "the run has no events"))?;
        let EventKind::RunStarted { plan, input, identity, .. } = &first.kind else {
            return Err(err(first.seq, "the first event is not run_started"));
        };
        let plan: Plan = serde_json::from_value(plan.clone()).map_err(|e| err(first.seq, &format!("bad plan: {e}")))?;
        let mut state = RunState {
            plan,
            input: input.clone(),
            identity: identity.clone(),
            completed: Vec::new(),
            compensating: None,
            open: None,
            retry: None,
            attempts: BTreeMap::new(),
            used: crate::run_budget::RunUsage::default(),
            raises: BTreeMap::new(),
            paused: None,
            outcome: None,
            last: (first.seq, first.hash.clone()),
        };
        for e in &events[1..] {
            state.last = (e.seq, e.hash.clone());
            match &e.kind {
                EventKind::StepAttemptStarted { step, attempt, input, limits, usage_limits, .. } => {
                    state.retry = None;
                    let max = state.attempts.entry(step.clone()).or_default();
                    *max = (*max).max(*attempt);
                    state.open = Some(OpenAttempt {
                        step: step.clone(),
                        attempt: *attempt,
                        input: input.clone(),
                        interactions: Vec::new(),
                        limits: *limits,
                        usage_limits: usage_limits.clone(),
                    });
                }
                k if k.is_interaction() => {
                    match k {
                        EventKind::ToolCallCompleted { usage, .. } => {
                            state.used.tool_calls += 1;
                            for (m, a) in usage {
                                *state.used.usage.entry(m.clone()).or_default() += a;
                            }
                        }
                        EventKind::UsageReported { metric, amount, .. } => {
                            *state.used.usage.entry(metric.clone()).or_default() += amount
                        }
                        _ => {}
                    }
                    match &mut state.open {
                        Some(open) if k.step() == Some(open.step.as_str()) => {
                            open.interactions.push((e.seq, k.clone()))
                        }
                        _ => return Err(err(e.seq, "an interaction outside any open attempt of its step")),
                    }
                }
                EventKind::StepCompleted { step, output, fuel, tool_fuel, wall_us, .. } => {
                    state.used.fuel += fuel + tool_fuel;
                    state.used.wall_us += wall_us;
                    let input = state.open.take().map(|o| o.input).unwrap_or(Value::Null);
                    state.completed.push((step.clone(), input, output.clone()));
                }
                EventKind::CompensationBegun { error } => state.compensating = Some((error.clone(), Vec::new())),
                EventKind::StepCompensated { step, .. } => {
                    if let Some((_, done)) = &mut state.compensating {
                        done.push(step.clone());
                    }
                }
                EventKind::RunCompensated { error } | EventKind::RunCompensationFailed { error, .. } => {
                    state.outcome = Some(Err(error.clone()))
                }
                EventKind::StepFailed { fuel, tool_fuel, wall_us, .. } => {
                    state.used.fuel += fuel + tool_fuel;
                    state.used.wall_us += wall_us;
                    state.open = None;
                }
                EventKind::RunPaused { step, exceeded, .. } => state.paused = Some((step.clone(), exceeded.clone())),
                EventKind::RunResumed { .. } => state.paused = None,
                EventKind::BudgetRaised { metric, by } => *state.raises.entry(metric.clone()).or_default() += by,
                EventKind::RetryScheduled { step, attempt, not_before_us, .. } => {
                    state.retry =
                        Some(PendingRetry { step: step.clone(), attempt: *attempt, not_before_us: *not_before_us })
                }
                EventKind::RunCompleted { output } => state.outcome = Some(Ok(output.clone())),
                EventKind::RunFailed { error } => state.outcome = Some(Err(error.clone())),
                EventKind::RunStarted { .. } => return Err(err(e.seq, "a second run_started")),
                _ => {}
            }
        }
        Ok(state)
    }

    /// The index of the next step to run (after the completed ones).
    pub fn next_step(&self) -> usize {
        self.completed.len()
    }
}

/// The run report, built from the journal alone.
pub fn report_from_events(run_id: RunId, events: &[Event]) -> RunReport {
    let mut workflow = String::new();
    let mut steps: Vec<StepReport> = Vec::new();
    let mut current = StepStats::default();
    let mut status = RunStatus::Failed;
    let mut output = Value::Null;
    let mut error = None;
    for e in events {
        match &e.kind {
            EventKind::RunStarted { workflow: w, .. } => workflow.clone_from(w),
            EventKind::StepAttemptStarted { .. } => current = StepStats::default(),
            EventKind::ToolCallCompleted { tool, result, fuel, wall_us, logs, usage, .. } => {
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
            EventKind::UsageReported { metric, amount, .. } => {
                *current.usage.entry(metric.clone()).or_default() += amount
            }
            EventKind::GuestLog { level, stream, tool, message, .. } => current.logs.push(LogLine {
                level: *level,
                stream: stream.clone(),
                tool: tool.clone(),
                message: message.clone(),
            }),
            EventKind::StepCompleted { step, fuel, tool_fuel, wall_us, peak_memory, .. } => {
                steps.push(finish(step, None, &mut current, (*fuel, *tool_fuel, *wall_us, *peak_memory)));
            }
            EventKind::StepFailed { step, failure, fuel, tool_fuel, wall_us, peak_memory, .. } => {
                steps.push(finish(
                    step,
                    Some(failure.clone()),
                    &mut current,
                    (*fuel, *tool_fuel, *wall_us, *peak_memory),
                ));
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
                    message: format!("the run's `{exceeded}` budget is used up ({used} of {limit}); raise it with `tether resume RUN --budget {exceeded}=+N`"),
                });
            }
            EventKind::RunResumed { .. } => {
                status = RunStatus::Failed;
                error = None;
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

/// Usage per metric, summed over a run's events (for `history` and `stats`).
pub fn usage_totals(events: &[Event]) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::UsageReported { metric, amount, .. } => *totals.entry(metric.clone()).or_default() += amount,
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
