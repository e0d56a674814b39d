//! One run at a glance: its status, output or error, what it waits on (approvals, with
//! who still must decide and by when, or the budget that ran out), its steps and totals,
//! and what continues it. Read from the journal alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_types::event::{Event, EventKind};
use tether_types::state::{index_status, RunState};
use tether_types::store::RunIndexStatus;

use crate::{App, AppError};

/// What continues a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Someone decides this request.
    Decide {
        /// The request.
        request: String,
    },
    /// The run's budget (this one, if known) is raised.
    RaiseBudget {
        /// The budget that ran out.
        metric: Option<String>,
    },
    /// The run, interrupted, is resumed.
    Resume,
}

impl App {
    /// One run at a glance.
    pub async fn show(&self, run: &tether_types::RunId) -> Result<RunView, AppError> {
        let (state, events) = self.state(run).await?;
        Ok(view(run.as_str(), &state, &events))
    }

    /// A run's view and its verified events, from one read of its journal.
    pub async fn show_with_events(
        &self,
        run: &tether_types::RunId,
    ) -> Result<(RunView, Vec<tether_types::Event>), AppError> {
        let (state, events) = self.state(run).await?;
        Ok((view(run.as_str(), &state, &events), events))
    }
}

use tether_types::units::rfc3339;

/// What `show` prints, and its `--json` document.
#[derive(Serialize, Deserialize)]
pub struct RunView {
    /// The run.
    pub run_id: String,
    /// Its workflow.
    pub workflow: String,
    /// Who it acts as.
    pub identity: String,
    /// Its status in the run index.
    pub status: String,
    /// RFC 3339.
    pub started: String,
    /// RFC 3339, once over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Its input.
    pub input: Value,
    /// Its output, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Its error, once failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Approval requests not yet decided.
    pub waiting_on: Vec<WaitingOn>,
    /// The run budget that ran out, while paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// Each run of a step, in the order the journal first names it.
    pub steps: Vec<StepView>,
    /// What it used.
    pub totals: Totals,
    /// What continues the run, if anything does (shells say it their way).
    #[serde(skip)]
    pub next: Option<NextStep>,
}

/// An approval request not yet decided.
#[derive(Serialize, Deserialize)]
pub struct WaitingOn {
    /// The request.
    pub approval: String,
    /// Its gate.
    pub gate: String,
    /// The step (key) it is at.
    pub step: String,
    /// The tool call, if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<u32>,
    /// Distinct approvals it needs.
    pub needed: u32,
    /// Who approved so far.
    pub approved_by: Vec<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// The decision taken at the deadline.
    pub on_timeout: String,
    /// What is proposed.
    pub proposal: Value,
}

/// Where a paused run stopped.
#[derive(Serialize, Deserialize)]
pub struct Paused {
    /// The step (key) it is at.
    pub step: String,
    /// The budget that ran out.
    pub exceeded: String,
}

/// One run of a step.
#[derive(Serialize, Deserialize)]
pub struct StepView {
    /// The step (key) it is at.
    pub step: String,
    /// Its status in the run index.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
}

/// What a run used.
#[derive(Serialize, Deserialize)]
pub struct Totals {
    /// Fuel, steps and tools.
    pub fuel: u64,
    /// Wall time of attempts, in milliseconds.
    pub wall_ms: f64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Reported usage, per metric.
    pub usage: std::collections::BTreeMap<String, f64>,
    /// The run budget these count against, with its raises (absent when the run has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<tether_types::run_budget::RunBudget>,
}

fn view(run: &str, state: &RunState, events: &[Event]) -> RunView {
    let status = index_status(events);
    let workflow = match events.first().map(|e| &e.kind) {
        Some(EventKind::RunStarted { workflow, .. }) => workflow.clone(),
        _ => "-".into(),
    };
    let started_us = events.first().map_or(0, |e| e.at_us);
    let over = !matches!(status, RunIndexStatus::Running | RunIndexStatus::Paused | RunIndexStatus::Waiting);
    let (output, error) = match &state.outcome {
        Some(Ok(v)) => (Some(v.clone()), None),
        Some(Err(e)) => (None, serde_json::to_value(e).ok()),
        None => (None, None),
    };
    let waiting_on: Vec<WaitingOn> = state
        .approvals
        .values()
        .filter(|a| a.outcome.is_none() && !over)
        .map(|a| WaitingOn {
            approval: a.id.clone(),
            gate: a.gate.clone(),
            step: a.step.clone(),
            call: a.call,
            needed: a.needed,
            approved_by: a.approvers.clone(),
            deadline: a.deadline_us.map(rfc3339),
            on_timeout: a.on_timeout.as_str().to_string(),
            proposal: a.proposal.clone(),
        })
        .collect();
    let paused =
        state.paused.as_ref().map(|(step, exceeded)| Paused { step: step.clone(), exceeded: exceeded.clone() });
    // Each run of a step (and each skip), in the order the journal first names it.
    let mut keys: Vec<&str> = Vec::new();
    let mut named = std::collections::HashSet::new();
    for e in events {
        if let EventKind::StepAttemptStarted { step, .. } | EventKind::StepSkipped { step, .. } = &e.kind {
            if named.insert(step.as_str()) {
                keys.push(step);
            }
        }
    }
    let steps = keys
        .into_iter()
        .map(|key| {
            let (status, attempts) = match (state.instances.get(key), state.resolved.get(key)) {
                (_, Some(tether_types::state::Resolved::Skipped(_))) => ("skipped", 0),
                (Some(i), resolved) => {
                    let status = if i.output.is_some() || resolved.is_some() {
                        "completed"
                    } else if i.failed.is_some() {
                        "failed"
                    } else if i.pending.is_some() {
                        "awaiting check"
                    } else if i.retry.is_some() {
                        "retry scheduled"
                    } else {
                        "interrupted"
                    };
                    (status, i.attempts)
                }
                (None, _) => ("skipped", 0),
            };
            StepView { step: key.to_string(), status: status.to_string(), attempts }
        })
        .collect();
    let mut view = RunView {
        run_id: run.to_string(),
        workflow,
        identity: state.identity.clone(),
        status: status.as_str().to_string(),
        started: rfc3339(started_us),
        finished: over.then(|| rfc3339(events.last().map_or(0, |e| e.at_us))),
        input: state.input.clone(),
        output,
        error,
        waiting_on,
        paused,
        steps,
        totals: Totals {
            fuel: state.used.fuel,
            wall_ms: state.used.wall_us as f64 / 1e3,
            tool_calls: state.used.tool_calls,
            usage: state.used.usage.clone(),
            limits: Some(state.plan.run_budget.raised(&state.raises))
                .filter(|b| *b != tether_types::run_budget::RunBudget::default()),
        },
        next: None,
    };
    view.next = view.next_step();
    view
}

impl RunView {
    /// What continues the run, from what the view shows (so a view read over the API
    /// gives the same as one made here).
    pub fn next_step(&self) -> Option<NextStep> {
        match RunIndexStatus::parse(&self.status)? {
            RunIndexStatus::Waiting => {
                self.waiting_on.first().map(|p| NextStep::Decide { request: p.approval.clone() })
            }
            RunIndexStatus::Paused => {
                Some(NextStep::RaiseBudget { metric: self.paused.as_ref().map(|p| p.exceeded.clone()) })
            }
            RunIndexStatus::Running => Some(NextStep::Resume),
            _ => None,
        }
    }
}
