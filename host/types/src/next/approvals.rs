//! Approval decisions the host takes itself, without a person: a gate's default once a
//! request's deadline has passed, and a gate's own approval once its track record has
//! earned it. Decided here, as events the host records, so that every such decision is
//! in the journal and a resumed run folds to the same state.

use crate::autonomy::{Outcome, TrackRecord};
use crate::event::EventKind;
use crate::policy::{Decision, Policy, BY_AUTONOMY, BY_DEADLINE};
use crate::state::RunState;

/// The comment a deadline's default decision carries.
pub const DEADLINE_COMMENT: &str = "nobody decided before the deadline";

/// The default decision of every pending request whose deadline has passed at `now_us`
/// (microseconds since the Unix epoch), in the order of the requests' ids. A request
/// without a deadline waits for a person however long it takes.
pub fn due_defaults(state: &RunState, now_us: u64) -> Vec<EventKind> {
    state
        .pending_approvals()
        .filter(|a| a.deadline_us.is_some_and(|d| d <= now_us))
        .map(|a| EventKind::ApprovalDecided {
            id: a.id.clone(),
            gate: a.gate.clone(),
            step: a.step.clone(),
            call: a.call,
            by: BY_DEADLINE.into(),
            decision: a.on_timeout,
            payload: None,
            comment: Some(DEADLINE_COMMENT.into()),
            evidence: None,
        })
        .collect()
}

/// The gate's own approval of `request` (an `approval_requested` event), with the track
/// record it relies on as its evidence; `None` for any other event. The decision stands
/// for every approver the gate needs, and the evidence lets a reviewer judge it later.
pub fn by_autonomy(request: &EventKind, evidence: TrackRecord) -> Option<EventKind> {
    let EventKind::ApprovalRequested { id, gate, step, call, .. } = request else { return None };
    Some(EventKind::ApprovalDecided {
        id: id.clone(),
        gate: gate.clone(),
        step: step.clone(),
        call: *call,
        by: BY_AUTONOMY.into(),
        decision: Decision::Approve,
        payload: None,
        comment: None,
        evidence: Some(evidence),
    })
}

/// The gate's own approval of `request`, if the gate relaxes (`relax_after`) and its
/// record in `outcomes` (the decided requests of the workflow's runs) has earned it;
/// `None` otherwise, and for any event that is not an `approval_requested`.
pub fn auto_decision(request: &EventKind, policy: &Policy, outcomes: &[Outcome]) -> Option<EventKind> {
    let EventKind::ApprovalRequested { gate, class, .. } = request else { return None };
    let evidence = crate::autonomy::earned(policy, outcomes, gate, class.as_deref())?;
    by_autonomy(request, evidence)
}
