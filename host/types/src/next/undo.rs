//! How a failed or cancelled run ends (sagas): which of its completed steps are undone,
//! in what order, and the event that ends it. The host runs each compensation and
//! journals it before the next, so a host stopped while compensating goes on from the
//! journal; deciding the order from the folded state alone means it goes on with exactly
//! what is left, and undoes nothing twice.

use serde_json::Value;

use crate::event::{EventKind, ToolResult};
use crate::report::{RunError, RunStatus};
use crate::state::RunState;

/// How a run that failed (or was cancelled) ends.
#[derive(Clone, Debug, PartialEq)]
pub enum Undo<'a> {
    /// Nothing it completed has a compensation: record this `run_failed`; the run is
    /// over, `failed`.
    Fail(EventKind),
    /// Its completed steps are undone first.
    Compensate(Compensation<'a>),
}

/// The compensations a run still owes.
#[derive(Clone, Debug, PartialEq)]
pub struct Compensation<'a> {
    /// To record before the first compensation runs: `compensation_begun`. `None` when
    /// the journal shows compensation begun already (a resumed host).
    pub begin: Option<EventKind>,
    /// The completed runs of steps to undo, in order, as (key, input, output): the reverse
    /// order of completion, without those compensated already. Each run of a step is
    /// undone under its own key (`search[2]`, `fix#3`).
    pub steps: Vec<&'a (String, Value, Value)>,
    error: RunError,
    /// Keys whose compensation failed before a restart.
    failed: Vec<String>,
}

/// What ending `state` with `error` undoes. `compensates` says whether the step of a
/// name has a compensation; a step without one is left as it is. When the state shows
/// compensation begun, `error` is the error it began with.
pub fn undo<'a>(state: &'a RunState, error: &RunError, compensates: impl Fn(&str) -> bool) -> Undo<'a> {
    let owed: Vec<&(String, Value, Value)> =
        state.completed.iter().rev().filter(|(key, _, _)| compensates(crate::flow::step_of(key))).collect();
    if owed.is_empty() {
        return Undo::Fail(EventKind::RunFailed { error: error.clone() });
    }
    let begun = state.compensating.as_ref();
    let done: &[String] = begun.map_or(&[], |c| &c.done);
    Undo::Compensate(Compensation {
        begin: begun.is_none().then(|| EventKind::CompensationBegun { error: error.clone() }),
        steps: owed.into_iter().filter(|(key, _, _)| !done.contains(key)).collect(),
        error: error.clone(),
        failed: begun.map_or_else(Vec::new, |c| c.failed.clone()),
    })
}

impl Compensation<'_> {
    /// The run's last event and its status, once the compensations were run and
    /// `compensated` (their `step_compensated` events, in order) recorded:
    /// `run_compensated` if none failed, before a restart or since, otherwise
    /// `run_compensation_failed` naming those that failed.
    pub fn end(self, compensated: &[EventKind]) -> (EventKind, RunStatus) {
        let mut failed = self.failed;
        for event in compensated {
            if let EventKind::StepCompensated { step, result: ToolResult::Err { .. }, .. } = event {
                failed.push(step.clone());
            }
        }
        if failed.is_empty() {
            (EventKind::RunCompensated { error: self.error }, RunStatus::Compensated)
        } else {
            (EventKind::RunCompensationFailed { error: self.error, failed }, RunStatus::CompensationFailed)
        }
    }
}
