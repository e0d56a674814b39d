//! The run index (one row per run: workflow, identity, status, start and end, and the
//! components its plan pins) follows from the journal's events. Which events change it,
//! and how, is decided here in Rust, once for every store backend: each sealed event
//! carries its [`IndexChange`], and the store applies it in the transaction that writes
//! the event, only if the event is written.

use serde_json::Value;

use crate::event::{Event, EventKind};
use crate::FailureClass;
use RunIndexStatus as S;

/// Status of a run as recorded in the run index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunIndexStatus {
    /// Started and not finished (possibly interrupted).
    Running,
    /// Completed.
    Completed,
    /// Failed.
    Failed,
    /// Paused because a run budget ran out.
    Paused,
    /// Waiting for a human to decide an approval request.
    Waiting,
    /// Failed, and its completed steps were undone.
    Compensated,
    /// Failed, and undoing a completed step failed too.
    CompensationFailed,
    /// Cancelled by a person (`tether cancel`), its completed steps undone.
    Cancelled,
    /// The index row holds a status tether never writes: the index was edited or
    /// damaged. Listed so that it is seen; `tether verify` says what is wrong.
    Damaged,
}

impl RunIndexStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Paused => "paused",
            Self::Waiting => "waiting",
            Self::Compensated => "compensated",
            Self::CompensationFailed => "compensation_failed",
            Self::Cancelled => "cancelled",
            Self::Damaged => "damaged",
        }
    }

    /// Whether the run is over: nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Compensated | Self::CompensationFailed | Self::Cancelled)
    }

    /// Parses a stored or user-given name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "paused" => Some(Self::Paused),
            "waiting" => Some(Self::Waiting),
            "compensated" => Some(Self::Compensated),
            "compensation_failed" => Some(Self::CompensationFailed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// What an event does to its run's row in the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexChange {
    /// `run_started`: the row is created, `running`, started at the event's time, with
    /// the components the plan pins (for "which unfinished runs pin this plugin").
    Start {
        /// The workflow.
        workflow: String,
        /// Who the run acts as.
        identity: String,
        /// Every component digest the plan names, once each.
        components: Vec<String>,
    },
    /// The status changes (and, when `finished`, the end time is the event's time).
    Status {
        /// The new status.
        status: S,
        /// The run is over.
        finished: bool,
        /// Only if the row has one of these statuses now; any status when empty.
        only_from: &'static [S],
    },
}

impl IndexChange {
    /// The change `kind` makes, if any.
    pub fn of(kind: &EventKind) -> Option<IndexChange> {
        if let EventKind::RunStarted { workflow, plan, identity, .. } = kind {
            return Some(IndexChange::Start {
                workflow: workflow.clone(),
                identity: identity.clone(),
                components: plan_components(plan),
            });
        }
        status_change(kind)
    }

    /// The status a row in `current` has after this change.
    pub fn apply(&self, current: S) -> S {
        match self {
            IndexChange::Start { .. } => S::Running,
            IndexChange::Status { status, only_from, .. } => {
                if only_from.is_empty() || only_from.contains(&current) {
                    *status
                } else {
                    current
                }
            }
        }
    }
}

/// A resumed run is running again only if it was stopped for a person or a budget; one
/// resumed after a crash was `running` all along.
const STOPPED: &[S] = &[S::Paused, S::Waiting];

fn status_change(kind: &EventKind) -> Option<IndexChange> {
    let status = |status, finished, only_from| Some(IndexChange::Status { status, finished, only_from });
    let cancelled = |error: &crate::RunError| error.class == FailureClass::Cancelled;
    match kind {
        EventKind::RunPaused { .. } => status(S::Paused, false, &[]),
        EventKind::RunWaiting { .. } => status(S::Waiting, false, &[]),
        EventKind::RunResumed { .. } => status(S::Running, false, STOPPED),
        EventKind::RunCompleted { .. } => status(S::Completed, true, &[]),
        // A run a person cancelled ends `cancelled`, undone or not.
        EventKind::RunFailed { error }
        | EventKind::RunCompensated { error }
        | EventKind::RunCompensationFailed { error, .. }
            if cancelled(error) =>
        {
            status(S::Cancelled, true, &[])
        }
        EventKind::RunFailed { .. } => status(S::Failed, true, &[]),
        EventKind::RunCompensated { .. } => status(S::Compensated, true, &[]),
        EventKind::RunCompensationFailed { .. } => status(S::CompensationFailed, true, &[]),
        _ => None,
    }
}

/// The status the run index must hold for a run with these events (`verify` compares).
pub fn index_status(events: &[Event]) -> S {
    events.iter().filter_map(|e| status_change(&e.kind)).fold(S::Running, |status, change| change.apply(status))
}

/// Every component digest a recorded plan names (steps, their compensations, tools),
/// once each, in the order first named.
pub fn plan_components(plan: &Value) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut add = |digest: Option<&Value>| {
        if let Some(d) = digest.and_then(Value::as_str).filter(|d| !d.is_empty()) {
            if !found.iter().any(|f| f == d) {
                found.push(d.to_string());
            }
        }
    };
    for step in plan["steps"].as_array().into_iter().flatten() {
        add(step.get("component"));
        add(step.get("compensate").and_then(|c| c.get("component")));
    }
    for tool in plan["tools"].as_object().into_iter().flat_map(|t| t.values()) {
        add(tool.get("component"));
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::RunError;
    use serde_json::Value;

    fn ended(kind: EventKind) -> Event {
        Event { seq: 1, at_us: 1, kind, hash: String::new() }
    }

    fn error(class: FailureClass) -> RunError {
        RunError { class, step: "s".into(), message: "m".into() }
    }

    #[test]
    fn each_status_event_moves_the_row_as_the_fold_says() {
        let paused = EventKind::RunPaused { step: "s".into(), exceeded: "tokens".into(), used: 1.0, limit: 1.0 };
        let resumed = EventKind::RunResumed { pid: 1 };
        let cases: Vec<(Vec<EventKind>, S)> = vec![
            (vec![], S::Running),
            (vec![paused.clone()], S::Paused),
            (vec![paused.clone(), resumed.clone()], S::Running),
            (vec![EventKind::RunWaiting { approvals: vec![] }, resumed.clone()], S::Running),
            (vec![EventKind::RunCompleted { output: Value::Null }, resumed.clone()], S::Completed),
            (vec![EventKind::RunFailed { error: error(FailureClass::Trap) }], S::Failed),
            (vec![EventKind::RunFailed { error: error(FailureClass::Cancelled) }], S::Cancelled),
            (vec![EventKind::RunCompensated { error: error(FailureClass::Cancelled) }], S::Cancelled),
            (vec![EventKind::RunCompensated { error: error(FailureClass::Trap) }], S::Compensated),
            (
                vec![EventKind::RunCompensationFailed { error: error(FailureClass::Trap), failed: vec!["a".into()] }],
                S::CompensationFailed,
            ),
        ];
        for (kinds, want) in cases {
            let events: Vec<Event> = kinds.iter().cloned().map(ended).collect();
            assert_eq!(index_status(&events), want, "{kinds:?}");
            // What the store applies, event by event, agrees with the fold.
            let stored = kinds.iter().filter_map(IndexChange::of).fold(S::Running, |s, c| c.apply(s));
            assert_eq!(stored, want, "{kinds:?}");
        }
        let finished = |k: &EventKind| matches!(IndexChange::of(k), Some(IndexChange::Status { finished: true, .. }));
        assert!(finished(&EventKind::RunCompleted { output: Value::Null }));
        assert!(!finished(&paused));
        assert_eq!(
            IndexChange::of(&EventKind::RunWaiting { approvals: vec![] }).map(|c| c.apply(S::Running)),
            Some(S::Waiting)
        );
    }

    #[test]
    fn a_plan_pins_its_steps_compensations_and_tools_once_each() {
        let plan = json!({
            "steps": [
                {"name": "a", "component": "d1", "compensate": {"component": "d2"}},
                {"name": "route", "component": ""},
                {"name": "b", "component": "d1", "compensate": {"tool": "refund"}},
            ],
            "tools": {"refund": {"component": "d3"}, "echo": {"component": "d2"}},
        });
        assert_eq!(plan_components(&plan), ["d1", "d2", "d3"]);
        assert!(plan_components(&json!({})).is_empty());
    }
}
