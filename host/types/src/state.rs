//! A run's state is a fold over its journal. This module is that fold: pure, from
//! decoded events to what the driver needs to continue (the next step, the interrupted
//! attempt and its recorded interactions) and to what a report shows.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::{Event, EventKind, ToolResult};
use crate::plan::Plan;
use crate::report::RunError;

pub use crate::timeline::{index_status, report_from_events, usage_totals};

#[cfg(test)]
mod tests;

/// An attempt that started and has not ended.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAttempt {
    /// The step's key.
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
    /// The step's key.
    pub step: String,
    /// The attempt that will run.
    pub attempt: u32,
    /// Microseconds since the Unix epoch.
    pub not_before_us: u64,
}

/// One run of a step (one key: a step, an iteration of it, or a `for_each` item).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Instance {
    /// The highest attempt number so far.
    pub attempts: u32,
    /// The attempt that started and has not ended.
    pub open: Option<OpenAttempt>,
    /// A retry that was scheduled and has not started.
    pub retry: Option<PendingRetry>,
    /// Its failure, once it failed for good (no retry follows).
    pub failed: Option<crate::failure::StepFailure>,
    /// Its output, once it completed (and passed its checks, if it has any).
    pub output: Option<Value>,
    /// Its output while it waits for its check (a verdict or an approval).
    pub pending: Option<Value>,
}

/// An approval request, its votes and its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    /// The request id.
    pub id: String,
    /// The gate.
    pub gate: String,
    /// The step's key.
    pub step: String,
    /// The tool call, if it is one.
    pub call: Option<u32>,
    /// Where.
    pub on: crate::policy::Checkpoint,
    /// What was proposed.
    pub proposal: Value,
    /// Distinct approvers needed.
    pub needed: u32,
    /// The deadline (microseconds since the Unix epoch).
    pub deadline_us: Option<u64>,
    /// The decision taken at the deadline.
    pub on_timeout: crate::policy::Decision,
    /// The request's class.
    pub class: Option<String>,
    /// Who approved so far.
    pub approvers: Vec<String>,
    /// An edited proposal, if an approver gave one (the last one counts).
    pub edited: Option<Value>,
    /// Set once decided.
    pub outcome: Option<ApprovalOutcome>,
}

impl Approval {
    /// The request an `approval_requested` event makes.
    pub fn requested(kind: &EventKind) -> Option<Approval> {
        let EventKind::ApprovalRequested {
            id,
            gate,
            step,
            call,
            on,
            proposal,
            approvals,
            deadline_us,
            on_timeout,
            class,
        } = kind
        else {
            return None;
        };
        Some(Approval {
            id: id.clone(),
            gate: gate.clone(),
            step: step.clone(),
            call: *call,
            on: *on,
            proposal: proposal.clone(),
            needed: *approvals,
            deadline_us: *deadline_us,
            on_timeout: *on_timeout,
            class: class.clone(),
            approvers: Vec::new(),
            edited: None,
            outcome: None,
        })
    }

    /// Counts an `approval_decided` event: a rejection decides; approvals decide once
    /// enough distinct approvers agreed (the same approver twice counts once). The
    /// deadline's default and the gate's own approval stand for everyone.
    pub fn decide(&mut self, kind: &EventKind) {
        let EventKind::ApprovalDecided { by, decision, payload, comment, evidence, .. } = kind else { return };
        if self.outcome.is_some() {
            return;
        }
        match decision {
            crate::policy::Decision::Reject => {
                self.outcome = Some(ApprovalOutcome::Rejected { by: by.clone(), comment: comment.clone() })
            }
            crate::policy::Decision::Approve => {
                if payload.is_some() {
                    self.edited.clone_from(payload);
                }
                if !self.approvers.contains(by) {
                    self.approvers.push(by.clone());
                }
                if self.approvers.len() as u32 >= self.needed || by == crate::policy::BY_DEADLINE || evidence.is_some()
                {
                    let payload = self.edited.clone().unwrap_or_else(|| self.proposal.clone());
                    self.outcome = Some(ApprovalOutcome::Approved(payload));
                }
            }
        }
    }
}

/// How an approval request ended.
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalOutcome {
    /// Approved: go ahead with this payload (the proposal, or the edited one).
    Approved(Value),
    /// Rejected, by whom and why.
    Rejected {
        /// An identity, or `deadline`.
        by: String,
        /// Their comment.
        comment: Option<String>,
    },
}

/// How a step (at a key) came out.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    /// It completed (a route or a gathered `for_each` included) with this output.
    Completed(Value),
    /// It was skipped, for this reason.
    Skipped(String),
}

/// A loop's progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopState {
    /// Iterations ended.
    pub iterations: u32,
    /// Whether the last one's `until` held.
    pub converged: bool,
}

/// A run that failed and is undoing its completed steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Compensating {
    /// Why the run failed.
    pub error: RunError,
    /// Keys already compensated (successfully or not), in order.
    pub done: Vec<String>,
    /// Those of them whose compensation failed.
    pub failed: Vec<String>,
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub struct RunState {
    /// The plan it is tied to.
    pub plan: std::sync::Arc<Plan>,
    /// Its input.
    pub input: Value,
    /// Who started it.
    pub identity: String,
    /// Every run of a step so far, by key.
    pub instances: BTreeMap<String, Instance>,
    /// Steps that completed or were skipped, by key (for a `for_each`, the whole step).
    pub resolved: BTreeMap<String, Resolved>,
    /// `for_each` steps that fanned out, by key: their item counts.
    pub fanouts: BTreeMap<String, u32>,
    /// Loops, by name.
    pub loops: BTreeMap<String, LoopState>,
    /// Attempts that completed, in order: (key, input, output), for compensation.
    pub completed: Vec<(String, Value, Value)>,
    /// Set once the run has begun undoing completed steps: why it failed, and the keys
    /// already compensated.
    pub compensating: Option<Compensating>,
    /// What the run has consumed, for run budgets.
    pub used: crate::run_budget::RunUsage,
    /// Budget raises so far, per metric.
    pub raises: BTreeMap<String, f64>,
    /// Set while the run is paused: (step, what ran out).
    pub paused: Option<(String, String)>,
    /// Set when the run is over: its output or its error.
    pub outcome: Option<Result<Value, RunError>>,
    /// Verdicts at step checkpoints, by (key, checkpoint).
    pub verdicts: BTreeMap<(String, crate::policy::Checkpoint), crate::policy::Ruling>,
    /// Approval requests, by id.
    pub approvals: BTreeMap<String, Approval>,
    /// Whether the run last stopped to wait for approvals (and was not resumed since).
    pub waiting: bool,
    /// Set once a person cancelled the run: by whom, and why.
    pub cancelled: Option<(String, Option<String>)>,
    /// Non-secret environment values granted to the run.
    pub env: BTreeMap<String, String>,
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
    /// The run's error once cancelled: what it ends with, after its completed steps are
    /// undone.
    pub fn cancel_error(&self) -> Option<RunError> {
        self.cancelled.as_ref().map(|(by, reason)| RunError {
            class: crate::FailureClass::Cancelled,
            step: "-".into(),
            message: match reason {
                Some(r) => format!("cancelled by {by}: {r}"),
                None => format!("cancelled by {by}"),
            },
        })
    }

    /// The run's error while it is paused: which step could not start, and which of the
    /// run's budgets is used up, with how to raise it.
    pub fn paused_error(&self) -> Option<RunError> {
        let (step, exceeded) = self.paused.clone()?;
        Some(RunError {
            class: crate::FailureClass::RunBudgetExceeded,
            step,
            message: format!("the run's `{exceeded}` budget is used up"),
        })
    }

    /// Folds a run's verified events.
    pub fn fold(run: &str, events: &[Event]) -> Result<RunState, FoldError> {
        let err = |seq: u64, reason: &str| FoldError { run: run.into(), seq, reason: reason.into() };
        let first = events.first().ok_or_else(|| err(0, "the run has no events"))?;
        let EventKind::RunStarted { plan, input, identity, .. } = &first.kind else {
            return Err(err(first.seq, "the first event is not run_started"));
        };
        let mut plan: Plan =
            serde_json::from_value(plan.clone()).map_err(|e| err(first.seq, &format!("bad plan: {e}")))?;
        plan.normalize();
        let mut state = RunState::new(plan, input.clone(), identity.clone());
        state.last = (first.seq, first.hash.clone());
        for e in &events[1..] {
            state.last = (e.seq, e.hash.clone());
            state.apply(e.seq, &e.kind).map_err(|reason| err(e.seq, &reason))?;
        }
        Ok(state)
    }

    /// The state of a run that has just started.
    pub fn new(plan: impl Into<std::sync::Arc<Plan>>, input: Value, identity: String) -> RunState {
        RunState {
            plan: plan.into(),
            input,
            identity,
            instances: BTreeMap::new(),
            resolved: BTreeMap::new(),
            fanouts: BTreeMap::new(),
            loops: BTreeMap::new(),
            completed: Vec::new(),
            compensating: None,
            used: crate::run_budget::RunUsage::default(),
            raises: BTreeMap::new(),
            paused: None,
            outcome: None,
            verdicts: BTreeMap::new(),
            approvals: BTreeMap::new(),
            waiting: false,
            cancelled: None,
            env: BTreeMap::new(),
            last: (0, String::new()),
        }
    }

    /// Applies one event (`seq` is kept with interactions, for resume).
    pub fn apply(&mut self, seq: u64, kind: &EventKind) -> Result<(), String> {
        // An attempt or a skip is of a step of the plan (or of a run of one: `name[I]`,
        // `name#K`); anything else is a journal that is not this run's.
        if let EventKind::StepAttemptStarted { step, .. } | EventKind::StepSkipped { step, .. } = kind {
            let name = crate::flow::step_of(step);
            if !self.plan.steps.iter().any(|s| s.name == name) {
                return Err(format!("{} names step `{step}`, which the run's plan does not have", kind.name()));
            }
        }
        self.note_governance(kind);
        match kind {
            EventKind::StepAttemptStarted { step, attempt, input, limits, usage_limits, .. } => {
                let inst = self.instances.entry(step.clone()).or_default();
                inst.retry = None;
                inst.failed = None;
                inst.attempts = inst.attempts.max(*attempt);
                inst.open = Some(OpenAttempt {
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
                        self.used.tool_calls += 1;
                        for (m, a) in usage {
                            *self.used.usage.entry(m.clone()).or_default() += a;
                        }
                    }
                    EventKind::UsageReported { metric, amount, .. } => {
                        *self.used.usage.entry(metric.clone()).or_default() += amount
                    }
                    EventKind::HttpExchanged { outcome, .. } => {
                        self.used.http_requests += 1;
                        if let crate::exchange::HttpOutcome::Answer { body, .. } = outcome {
                            self.used.http_bytes = self.used.http_bytes.saturating_add(body.bytes);
                        }
                    }
                    EventKind::ModelCalled { usage, .. } => {
                        for (m, a) in usage {
                            *self.used.usage.entry(m.clone()).or_default() += a;
                        }
                    }
                    _ => {}
                }
                let open = k.step().and_then(|s| self.instances.get_mut(s)).and_then(|i| i.open.as_mut());
                match open {
                    Some(open) => open.interactions.push((seq, k.clone())),
                    None => return Err("an interaction outside any open attempt of its step".into()),
                }
            }
            EventKind::StepCompleted { step, output, fuel, tool_fuel, wall_us, .. } => {
                self.used.fuel += fuel + tool_fuel;
                self.used.wall_us += wall_us;
                let checked = self.plan.checks_output(crate::flow::step_of(step));
                let inst = self.instances.entry(step.clone()).or_default();
                let input = inst.open.take().map(|o| o.input).unwrap_or(Value::Null);
                self.completed.push((step.clone(), input, output.clone()));
                if checked {
                    inst.pending = Some(output.clone());
                } else {
                    self.accept(step, output.clone());
                }
            }
            EventKind::StepFailed { step, attempt, failure, fuel, tool_fuel, wall_us, .. } => {
                self.used.fuel += fuel + tool_fuel;
                self.used.wall_us += wall_us;
                let inst = self.instances.entry(step.clone()).or_default();
                inst.open = None;
                inst.attempts = inst.attempts.max(*attempt);
                // A run budget running out pauses the run; the step runs again on resume.
                if failure.class != crate::FailureClass::RunBudgetExceeded {
                    inst.failed = Some(failure.clone());
                }
            }
            EventKind::RetryScheduled { step, attempt, not_before_us, .. } => {
                let inst = self.instances.entry(step.clone()).or_default();
                inst.failed = None;
                inst.retry =
                    Some(PendingRetry { step: step.clone(), attempt: *attempt, not_before_us: *not_before_us });
            }
            EventKind::StepSkipped { step, reason } => {
                self.resolved.insert(step.clone(), Resolved::Skipped(reason.clone()));
            }
            EventKind::Routed { step, output, .. } | EventKind::ForEachGathered { step, output } => {
                self.resolved.insert(step.clone(), Resolved::Completed(output.clone()));
            }
            EventKind::ForEachStarted { step, items } => {
                self.fanouts.insert(step.clone(), *items);
            }
            EventKind::LoopIterationEnded { name, iteration, until } => {
                self.loops.insert(name.clone(), LoopState { iterations: *iteration, converged: *until });
            }
            EventKind::CompensationBegun { error } => {
                self.compensating = Some(Compensating { error: error.clone(), done: Vec::new(), failed: Vec::new() })
            }
            EventKind::StepCompensated { step, result, .. } => {
                if let Some(c) = &mut self.compensating {
                    c.done.push(step.clone());
                    if matches!(result, ToolResult::Err { .. }) {
                        c.failed.push(step.clone());
                    }
                }
            }
            EventKind::RunCompensated { error } | EventKind::RunCompensationFailed { error, .. } => {
                self.outcome = Some(Err(error.clone()))
            }
            EventKind::RunPaused { step, exceeded, .. } => self.paused = Some((step.clone(), exceeded.clone())),
            EventKind::RunResumed { .. } => {
                self.paused = None;
                self.waiting = false;
            }
            EventKind::RunWaiting { .. } => self.waiting = true,
            EventKind::RunCancelled { by, reason } => self.cancelled = Some((by.clone(), reason.clone())),
            EventKind::GrantsApplied { env, .. } => self.env.clone_from(env),
            EventKind::BudgetRaised { metric, by, .. } => *self.raises.entry(metric.clone()).or_default() += by,
            EventKind::RunCompleted { output } => self.outcome = Some(Ok(output.clone())),
            EventKind::RunFailed { error } => self.outcome = Some(Err(error.clone())),
            EventKind::RunStarted { .. } => return Err("a second run_started".into()),
            _ => {}
        }
        Ok(())
    }
}

impl RunState {
    /// A completed step's output passed its checks: steps that need it may use it.
    fn accept(&mut self, key: &str, output: Value) {
        let inst = self.instances.entry(key.to_string()).or_default();
        inst.pending = None;
        inst.output = Some(output.clone());
        if crate::flow::Key::parse(key).item.is_none() {
            self.resolved.insert(key.to_string(), Resolved::Completed(output));
        }
    }

    /// Verdicts and approvals: bookkeeping shared by step checkpoints and tool calls.
    fn note_governance(&mut self, kind: &EventKind) {
        use crate::policy::{Checkpoint, Ruling, Verdict};
        match kind {
            EventKind::PolicyVerdict { step, call: None, on, verdict, rule, gate, .. } => {
                let ruling = Ruling { verdict: *verdict, rule: rule.clone(), gate: gate.clone() };
                self.verdicts.insert((step.clone(), *on), ruling);
                if *on == Checkpoint::StepResult && *verdict == Verdict::Allow {
                    if let Some(output) = self.instances.get(step).and_then(|i| i.pending.clone()) {
                        self.accept(step, output);
                    }
                }
            }
            EventKind::ApprovalRequested { id, .. } => {
                if let Some(approval) = Approval::requested(kind) {
                    self.approvals.insert(id.clone(), approval);
                }
            }
            EventKind::ApprovalDecided { id, .. } => {
                let Some(a) = self.approvals.get_mut(id) else { return };
                a.decide(kind);
                if let (Some(ApprovalOutcome::Approved(payload)), Checkpoint::StepResult) = (&a.outcome, a.on) {
                    let (key, payload) = (a.step.clone(), payload.clone());
                    self.accept(&key, payload);
                }
            }
            _ => {}
        }
    }

    /// Requests not yet decided.
    pub fn pending_approvals(&self) -> impl Iterator<Item = &Approval> {
        self.approvals.values().filter(|a| a.outcome.is_none())
    }
}
