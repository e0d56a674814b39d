//! Human decisions: the inbox of pending requests, approving and rejecting them, overriding
//! a relaxed gate's automatic approval, and finding the waiting runs a sweep continues.
//!
//! A decision is checked against the policy the run pinned when it started (who may decide
//! which gate) on the journal as it is under the run's lease, so two deciders cannot both
//! decide a one-approval gate: the second is told who got there first.

use serde_json::Value;
use tether_types::policy::Decision;
use tether_types::state::{Approval, RunState};
use tether_types::store::RunIndexStatus;
use tether_types::{Event, EventKind, RunId};

use crate::{App, AppError};

/// A request waiting for people, with where and since when.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The run.
    pub run_id: String,
    /// Its workflow.
    pub workflow: String,
    /// When the request was made (microseconds since the Unix epoch).
    pub since_us: u64,
    /// The sequence number of the last event that changed the request: a decision made
    /// on what was seen names it, and is refused if the request has changed since.
    pub version: u64,
    /// The request.
    pub approval: Approval,
}

impl Pending {
    /// The request as `tether inbox --json` and the HTTP API show it.
    pub fn to_json(&self) -> serde_json::Value {
        let a = &self.approval;
        serde_json::json!({
            "run_id": self.run_id, "workflow": self.workflow, "request": a.id, "gate": a.gate,
            "step": a.step, "call": a.call, "on": a.on, "proposal": a.proposal,
            "approvals_needed": a.needed, "approved_by": a.approvers, "class": a.class,
            "since_us": self.since_us, "deadline_us": a.deadline_us, "on_timeout": a.on_timeout,
            "version": self.version,
        })
    }
}

/// A decision someone takes on a request.
#[derive(Clone, Debug)]
pub struct DecisionRequest {
    /// The run, whole or by a unique prefix.
    pub run: String,
    /// A gate the run has one open request at, or a request id.
    pub gate: String,
    /// Who decides.
    pub identity: String,
    /// Approve or reject.
    pub decision: Decision,
    /// An edited proposal (approvals only).
    pub payload: Option<Value>,
    /// Why.
    pub comment: Option<String>,
    /// The request's version the decider saw ([`Pending::version`]), if known: the
    /// decision is refused if the request changed since.
    pub version: Option<u64>,
}

/// A decision as recorded.
#[derive(Clone, Debug)]
pub struct Decided {
    /// The run.
    pub run_id: RunId,
    /// The request before the decision.
    pub before: Approval,
    /// The request after it (`outcome` is set once enough people decided).
    pub after: Approval,
    /// The run had ended already (a request decided late changes nothing).
    pub finished: bool,
}

impl Decided {
    /// The run can go on: the request is settled and the run is not over.
    pub fn settles(&self) -> bool {
        self.after.outcome.is_some() && !self.finished
    }
}

/// An override of a relaxed gate's automatic approval.
#[derive(Clone, Debug)]
pub struct OverrideRequest {
    /// The run, whole or by a unique prefix.
    pub run: String,
    /// A gate or request id.
    pub gate: String,
    /// Who overrides.
    pub identity: String,
    /// What should have been approved instead.
    pub payload: Option<Value>,
    /// Why.
    pub comment: Option<String>,
}

impl App {
    /// Every request waiting for people, oldest first.
    pub async fn inbox(&self) -> Result<Vec<Pending>, AppError> {
        let mut all = Vec::new();
        for summary in self.store.runs(Some(RunIndexStatus::Waiting), 10_000).await? {
            let run = RunId::try_from(summary.run_id.clone()).map_err(AppError::Corrupt)?;
            let (state, events) = self.state(&run).await?;
            all.extend(state.pending_approvals().map(|a| Pending {
                run_id: summary.run_id.clone(),
                workflow: state.plan.workflow.clone(),
                since_us: requested_at(&events, &a.id),
                version: version(&events, &a.id),
                approval: a.clone(),
            }));
        }
        all.sort_by_key(|p| p.since_us);
        Ok(all)
    }

    /// Records a decision under the run's lease. The run is not continued here: see
    /// [`App::continue_run`], which the caller runs when [`Decided::settles`].
    pub async fn decide(&self, request: DecisionRequest) -> Result<Decided, AppError> {
        let run_id = self.resolve_run(&request.run).await?;
        let mut seen = None;
        self.append_with(&run_id, |events| {
            let state = RunState::fold(run_id.as_str(), events)?;
            let over = state.outcome.is_some() || state.cancelled.is_some();
            let ended = || AppError::RunEnded {
                run: run_id.to_string(),
                status: if state.outcome.is_some() {
                    tether_types::state::index_status(events).as_str().to_string()
                } else {
                    "cancelled".into()
                },
            };
            let approval = match find(&state, &request.gate, run_id.as_str()) {
                Ok(approval) => approval,
                Err(_) if over => return Err(ended()),
                Err(e) => return Err(e),
            };
            if approval.outcome.is_some() {
                return Err(AppError::AlreadyDecided {
                    run: run_id.to_string(),
                    request: approval.id.clone(),
                    gate: approval.gate.clone(),
                    by: deciders(events, &approval.id),
                });
            }
            if over {
                return Err(ended());
            }
            check_approver(&state, &request.identity, &approval.gate)?;
            let now = version(events, &approval.id);
            if let Some(seen) = request.version.filter(|seen| *seen != now) {
                return Err(AppError::Stale { run: run_id.to_string(), request: approval.id.clone(), seen, now });
            }
            if request.decision == Decision::Approve && approval.approvers.contains(&request.identity) {
                return Err(AppError::AlreadyApproved {
                    identity: request.identity.clone(),
                    request: approval.id.clone(),
                    gate: approval.gate.clone(),
                    needed: approval.needed,
                });
            }
            if let Some(edited) = &request.payload {
                crate::proposal::check_edit(&approval.proposal, edited)
                    .map_err(|problems| AppError::BadPayload { request: approval.id.clone(), problems })?;
            }
            let event = EventKind::ApprovalDecided {
                id: approval.id.clone(),
                gate: approval.gate.clone(),
                step: approval.step.clone(),
                call: approval.call,
                by: request.identity.clone(),
                decision: request.decision,
                payload: request.payload.clone(),
                comment: request.comment.clone(),
                evidence: None,
            };
            let mut after = approval.clone();
            after.decide(&event);
            seen = Some((approval, after, state.outcome.is_some()));
            Ok(vec![event])
        })
        .await?;
        let (before, after, finished) =
            seen.ok_or_else(|| AppError::Corrupt("the decision was not recorded".into()))?;
        Ok(Decided { run_id, before, after, finished })
    }

    /// Records that a relaxed gate's automatic approval should not have been given: it
    /// counts against the gate's track record once, which re-arms the gate.
    pub async fn override_auto(&self, request: OverrideRequest) -> Result<(RunId, Approval), AppError> {
        let run_id = self.resolve_run(&request.run).await?;
        let mut overridden = None;
        self.append_with(&run_id, |events| {
            let state = RunState::fold(run_id.as_str(), events)?;
            let approval = find(&state, &request.gate, run_id.as_str())?;
            let auto = events.iter().any(
                |e| matches!(&e.kind, EventKind::ApprovalDecided { id, evidence: Some(_), .. } if *id == approval.id),
            );
            if !auto {
                return Err(AppError::NotAutomatic { request: approval.id.clone() });
            }
            let before = events.iter().find_map(|e| match &e.kind {
                EventKind::ApprovalOverridden { id, by, .. } if *id == approval.id => Some(by.clone()),
                _ => None,
            });
            if let Some(by) = before {
                return Err(AppError::AlreadyOverridden { request: approval.id.clone(), by });
            }
            check_approver(&state, &request.identity, &approval.gate)?;
            let event = EventKind::ApprovalOverridden {
                id: approval.id.clone(),
                gate: approval.gate.clone(),
                by: request.identity.clone(),
                payload: request.payload.clone(),
                comment: request.comment.clone(),
            };
            overridden = Some(approval);
            Ok(vec![event])
        })
        .await?;
        let approval = overridden.ok_or_else(|| AppError::Corrupt("the override was not recorded".into()))?;
        Ok((run_id, approval))
    }

    /// The waiting runs that can go on at `now_us`: a request's deadline has passed (its
    /// default decision is taken when the run continues), or every request is decided.
    pub async fn runs_to_sweep(&self, now_us: u64) -> Result<Vec<RunId>, AppError> {
        let mut due_runs = Vec::new();
        for summary in self.store.runs(Some(RunIndexStatus::Waiting), 10_000).await? {
            let run = RunId::try_from(summary.run_id).map_err(AppError::Corrupt)?;
            let (state, _) = self.state(&run).await?;
            let due = state.pending_approvals().any(|a| a.deadline_us.is_some_and(|d| d <= now_us));
            let decided =
                state.approvals.values().any(|a| a.outcome.is_some()) && state.pending_approvals().next().is_none();
            if due || decided {
                due_runs.push(run);
            }
        }
        Ok(due_runs)
    }

    /// Appends what `decide` returns under the run's lease, after it has seen the run's
    /// events as they are while nobody else can write them.
    async fn append_with(
        &self,
        run: &RunId,
        decide: impl FnOnce(&[Event]) -> Result<Vec<EventKind>, AppError>,
    ) -> Result<(), AppError> {
        tether_runtime::append_with(&self.store, self.leases, run.as_str(), decide).await
    }
}

fn requested_at(events: &[Event], id: &str) -> u64 {
    events
        .iter()
        .rev()
        .find(|e| matches!(&e.kind, EventKind::ApprovalRequested { id: i, .. } if i == id))
        .map_or(0, |e| e.at_us)
}

/// A request's version: the sequence number of the last event that changed it.
fn version(events: &[Event], id: &str) -> u64 {
    events
        .iter()
        .rev()
        .find(|e| match &e.kind {
            EventKind::ApprovalRequested { id: i, .. } | EventKind::ApprovalDecided { id: i, .. } => i == id,
            _ => false,
        })
        .map_or(0, |e| e.seq)
}

/// Who decided a request, from its `approval_decided` events.
fn deciders(events: &[Event], id: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ApprovalDecided { id: i, by, .. } if i == id => Some(by.clone()),
            _ => None,
        })
        .collect()
}

/// The request `gate` names: a request id, or a gate the run has exactly one open (or,
/// failing that, one decided) request at.
fn find(state: &RunState, gate: &str, run_id: &str) -> Result<Approval, AppError> {
    if let Some(a) = state.approvals.get(gate) {
        return Ok(a.clone());
    }
    let at_gate: Vec<&Approval> = state.approvals.values().filter(|a| a.gate == gate).collect();
    let open: Vec<&&Approval> = at_gate.iter().filter(|a| a.outcome.is_none()).collect();
    let ids = |list: &[&Approval]| list.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    match (open.as_slice(), at_gate.as_slice()) {
        ([one], _) => Ok((**one).clone()),
        ([], [one]) => Ok((*one).clone()),
        ([], []) => Err(AppError::NoRequest {
            run: run_id.into(),
            gate: gate.into(),
            waiting: state.pending_approvals().map(|a| (a.gate.clone(), a.id.clone())).collect(),
        }),
        ([], several) => {
            Err(AppError::SeveralRequests { run: run_id.into(), gate: gate.into(), ids: ids(several), decided: true })
        }
        (several, _) => {
            let open: Vec<&Approval> = several.iter().map(|a| **a).collect();
            Err(AppError::SeveralRequests { run: run_id.into(), gate: gate.into(), ids: ids(&open), decided: false })
        }
    }
}

/// The identity must be declared by the run's pinned policy and allowed to decide `gate`.
fn check_approver(state: &RunState, identity: &str, gate: &str) -> Result<(), AppError> {
    let policy = state.plan.policy.clone().unwrap_or_default();
    if !policy.identities.contains_key(identity) {
        return Err(AppError::UnknownIdentity {
            identity: identity.into(),
            declared: policy.identities.keys().cloned().collect(),
        });
    }
    if !policy.may_approve(identity, gate) {
        return Err(AppError::NotApprover {
            identity: identity.into(),
            gate: gate.into(),
            allowed: policy.identities.keys().filter(|i| policy.may_approve(i, gate)).cloned().collect(),
        });
    }
    Ok(())
}
