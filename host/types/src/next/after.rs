//! What follows an attempt's end: the event that records it, the retry it gets (if its
//! step's policy takes the failure), and whether the run pauses because the run's budget,
//! not the step's own, ran out. Decided here rather than by the host so that what a run
//! records after an attempt depends only on what the attempt reported and the time the
//! host passes in.

use std::time::Duration;

use serde_json::Value;

use crate::event::EventKind;
use crate::failure::{FailureClass, StepFailure};
use crate::report::StepStats;
use crate::retry::RetryPolicy;
use crate::run_budget::{Capped, Exhausted};
use crate::state::RunState;

/// An attempt that ended, as the host reports it.
#[derive(Clone, Debug)]
pub struct Ended<'a> {
    /// The run (retry jitter is drawn from it, the key and the attempt).
    pub run: &'a str,
    /// The key of the run of the step (`name`, `name#K`, `name[I]`).
    pub key: &'a str,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// What the attempt returned.
    pub outcome: Result<Value, StepFailure>,
    /// What it consumed.
    pub stats: &'a StepStats,
    /// Which of its limits the run's budget clipped: a failure on one of those is the
    /// run's budget running out, not the step's.
    pub capped: Capped,
}

/// What the host does once an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub struct After {
    /// To record, in order: the attempt's end, then its retry if it gets one.
    pub events: Vec<EventKind>,
    /// The outcome as recorded: a failure the run's budget explains has the class
    /// `run_budget_exceeded` (the step did nothing wrong, and runs again on resume).
    pub outcome: Result<Value, StepFailure>,
    /// The wait before the next attempt, if it is retried (for progress displays).
    pub retry_in: Option<Duration>,
    /// Set when the run's budget ran out: the run pauses. This names what ran out but
    /// carries no figures; [`exhausted`] gives them once the events are applied.
    pub pause: Option<Exhausted>,
}

/// What follows the end of an attempt of a step whose retry policy is `retry`; `now_us`
/// (microseconds since the Unix epoch) starts a retry's backoff. `None` when the attempt
/// stopped inside a tool call to wait for a human: nothing is recorded then (the request
/// is journaled already), and the attempt goes on from the journal once it is decided.
///
/// A failure the run's budget explains is recorded as `run_budget_exceeded` and is never
/// retried: another attempt would find the budget just as used up. The run pauses instead.
pub fn after_attempt(retry: &RetryPolicy, ended: Ended<'_>, now_us: u64) -> Option<After> {
    let Ended { run, key, attempt, mut outcome, stats, capped } = ended;
    if matches!(&outcome, Err(f) if f.class == FailureClass::AwaitingApproval) {
        return None;
    }
    let mut pause = None;
    if let Err(failure) = &mut outcome {
        if capped.explains(failure) {
            pause = Some(capped.name(failure));
            failure.class = FailureClass::RunBudgetExceeded;
        }
    }
    let retry_in = match &outcome {
        Err(f) if retry.retries(f, attempt) => Some(retry.backoff_for(run, key, attempt)),
        _ => None,
    };
    let mut events = vec![end_event(key, attempt, &outcome, stats)];
    if let Some(backoff) = retry_in {
        events.push(EventKind::RetryScheduled {
            step: key.to_string(),
            attempt: attempt + 1,
            not_before_us: now_us + backoff.as_micros() as u64,
            backoff_ms: backoff.as_millis() as u64,
        });
    }
    Some(After { events, outcome, retry_in, pause })
}

/// The event that ends an attempt with `outcome`.
pub fn end_event(key: &str, attempt: u32, outcome: &Result<Value, StepFailure>, stats: &StepStats) -> EventKind {
    match outcome {
        Ok(output) => EventKind::StepCompleted {
            step: key.to_string(),
            attempt,
            output: output.clone(),
            fuel: stats.fuel,
            tool_fuel: stats.tool_fuel,
            wall_us: stats.wall_us,
            peak_memory: stats.peak_memory,
        },
        Err(f) => EventKind::StepFailed {
            step: key.to_string(),
            attempt,
            failure: f.clone(),
            fuel: stats.fuel,
            tool_fuel: stats.tool_fuel,
            wall_us: stats.wall_us,
            peak_memory: stats.peak_memory,
        },
    }
}

/// What a run pauses on, with its figures: the first limit of its budget (raises
/// included) that `state` shows used up, or `named` (as [`After::pause`] gives it) if the
/// totals do not show one, for instance when the attempt was stopped just short of it.
/// `state` is the run's state once the attempt's end is applied.
pub fn exhausted(state: &RunState, named: Exhausted) -> Exhausted {
    state.plan.run_budget.raised(&state.raises).remaining(&state.used).err().unwrap_or(named)
}
