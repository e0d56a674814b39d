//! Decisions the host takes without a person (`approvals`): a gate's default once a
//! request's deadline passed, and a gate's own approval once its record earned it. The
//! requests and the gates' histories are written by hand.

use serde_json::json;

use crate::autonomy::{earned, Outcome, OutcomeKind, TrackRecord};
use crate::event::EventKind;
use crate::next::approvals::{auto_decision, by_autonomy, due_defaults, DEADLINE_COMMENT};
use crate::policy::{Checkpoint, Decision, Policy, BY_AUTONOMY, BY_DEADLINE};
use crate::state::ApprovalOutcome;
use crate::testing::{decided, plan, started, Run};

const GATES: &str = r#"
[policy.gates.refund]
approvals = 2
deadline = "1h"
on_timeout = "approve"
relax_after = { decisions = 3, max_override_rate = 0.34 }

[policy.gates.ship]
approvals = 1
relax_after = { decisions = 2, max_override_rate = 0.0, per = "proposal.size" }

[policy.gates.legal]
approvals = 1
deadline = "10m"

[policy.identities.alice]
approves = ["refund", "ship", "legal"]

[[steps]]
name = "a"
needs = []
component = "a.wasm"

[[steps]]
name = "b"
needs = []
component = "b.wasm"

[[steps]]
name = "c"
needs = []
component = "c.wasm"

[[steps]]
name = "d"
needs = []
component = "d.wasm"
"#;

/// A request on `step`'s result at `gate`.
fn request(step: &str, gate: &str, deadline_us: Option<u64>, on_timeout: Decision) -> EventKind {
    EventKind::ApprovalRequested {
        id: format!("{step}@step_result"),
        gate: gate.into(),
        step: step.into(),
        call: None,
        on: Checkpoint::StepResult,
        proposal: json!({"from": step}),
        approvals: 1,
        deadline_us,
        on_timeout,
        class: None,
    }
}

fn by_deadline(id: &str, gate: &str, step: &str, call: Option<u32>, decision: Decision) -> EventKind {
    EventKind::ApprovalDecided {
        id: id.into(),
        gate: gate.into(),
        step: step.into(),
        call,
        by: BY_DEADLINE.into(),
        decision,
        payload: None,
        comment: Some(DEADLINE_COMMENT.into()),
        evidence: None,
    }
}

#[test]
fn requests_past_their_deadline_get_their_gates_default_and_the_others_wait() {
    let mut run = Run::new(GATES, json!({}));
    run.apply([
        request("b", "refund", Some(200), Decision::Approve),
        request("a", "legal", Some(100), Decision::Reject),
        request("c", "ship", None, Decision::Reject),
        request("d", "legal", Some(100), Decision::Reject),
        decided("d@step_result", "legal", "alice", Decision::Approve, None),
    ]);
    assert_eq!(due_defaults(&run.state, 99), vec![], "none is due yet");
    let a = by_deadline("a@step_result", "legal", "a", None, Decision::Reject);
    assert_eq!(due_defaults(&run.state, 100), vec![a.clone()], "due at its deadline");
    // Long after: every request with a deadline that nobody decided, in the order of
    // their ids; not the one without a deadline, nor the one decided.
    let b = by_deadline("b@step_result", "refund", "b", None, Decision::Approve);
    let due = due_defaults(&run.state, u64::MAX);
    assert_eq!(due, vec![a, b]);
    run.apply(due);
    let outcome = |id: &str| run.state.approvals[id].outcome.clone();
    let rejected = ApprovalOutcome::Rejected { by: BY_DEADLINE.into(), comment: Some(DEADLINE_COMMENT.into()) };
    assert_eq!(outcome("a@step_result"), Some(rejected));
    // The default stands for both approvers the request needed.
    assert_eq!(outcome("b@step_result"), Some(ApprovalOutcome::Approved(json!({"from": "b"}))));
    let pending: Vec<&str> = run.state.pending_approvals().map(|a| a.id.as_str()).collect();
    assert_eq!(pending, ["c@step_result"]);
    assert_eq!(due_defaults(&run.state, u64::MAX), vec![], "decided once");
}

#[test]
fn a_tool_calls_request_past_its_deadline_is_decided_for_that_call() {
    let mut run = Run::new(GATES, json!({}));
    run.apply([started("a", 1, json!({}))]);
    let mut in_call = request("a", "legal", Some(50), Decision::Reject);
    if let EventKind::ApprovalRequested { id, call, on, .. } = &mut in_call {
        (*id, *call, *on) = ("a/1@tool_call".into(), Some(1), Checkpoint::ToolCall);
    }
    run.apply([in_call]);
    assert_eq!(
        due_defaults(&run.state, 50),
        vec![by_deadline("a/1@tool_call", "legal", "a", Some(1), Decision::Reject)]
    );
}

fn policy() -> Policy {
    plan(GATES).policy.expect("the workflow declares a policy")
}

fn outcome(gate: &str, class: Option<&str>, at_us: u64, kind: OutcomeKind) -> Outcome {
    Outcome {
        run_id: format!("run_{at_us}"),
        id: "x@step_result".into(),
        gate: gate.into(),
        class: class.map(str::to_string),
        at_us,
        kind,
    }
}

fn autonomous(request: &EventKind, evidence: TrackRecord) -> EventKind {
    let EventKind::ApprovalRequested { id, gate, step, call, .. } = request else { panic!("not a request") };
    EventKind::ApprovalDecided {
        id: id.clone(),
        gate: gate.clone(),
        step: step.clone(),
        call: *call,
        by: BY_AUTONOMY.into(),
        decision: Decision::Approve,
        payload: None,
        comment: None,
        evidence: Some(evidence),
    }
}

#[test]
fn a_gate_approves_by_itself_once_its_record_has_earned_it() {
    use OutcomeKind::*;
    let policy = policy();
    let ask = request("a", "refund", Some(3_600_000_000), Decision::Reject);
    let mut history = vec![outcome("refund", None, 1, Approved), outcome("refund", None, 2, TimedOut)];
    history.push(outcome("refund", None, 3, Approved));
    assert_eq!(earned(&policy, &history, "refund", None), None, "two human decisions of three");
    assert_eq!(auto_decision(&ask, &policy, &history), None);
    history.push(outcome("refund", None, 4, Edited));
    let record = earned(&policy, &history, "refund", None).expect("one override in three is within 0.34");
    assert_eq!((record.decisions, record.approved, record.overrides), (3, 2, 1));
    let decision = auto_decision(&ask, &policy, &history).expect("earned");
    assert_eq!(decision, autonomous(&ask, record.clone()));
    assert_eq!(by_autonomy(&ask, record), Some(decision.clone()));
    // It stands for both approvers the gate needs, with the proposal as it was.
    let mut run = Run::new(GATES, json!({}));
    run.apply([ask, decision]);
    assert_eq!(run.state.approvals["a@step_result"].outcome, Some(ApprovalOutcome::Approved(json!({"from": "a"}))));
    // One more override is too many.
    history.push(outcome("refund", None, 5, Rejected));
    assert_eq!(earned(&policy, &history, "refund", None), None);
}

#[test]
fn a_gate_that_does_not_relax_never_approves_by_itself() {
    let policy = policy();
    let history: Vec<Outcome> = (1..=20).map(|t| outcome("legal", None, t, OutcomeKind::Approved)).collect();
    assert_eq!(earned(&policy, &history, "legal", None), None, "no relax_after");
    assert_eq!(auto_decision(&request("a", "legal", None, Decision::Reject), &policy, &history), None);
    let undeclared: Vec<Outcome> = (1..=20).map(|t| outcome("other", None, t, OutcomeKind::Approved)).collect();
    assert_eq!(earned(&policy, &undeclared, "other", None), None);
    assert_eq!(earned(&Policy::default(), &history, "legal", None), None, "no gates at all");
    // Only a request is decided.
    let not_a_request = decided("a@step_result", "refund", "alice", Decision::Approve, None);
    assert_eq!(auto_decision(&not_a_request, &policy, &history), None);
    assert_eq!(by_autonomy(&not_a_request, TrackRecord::default()), None);
}

fn classed(step: &str, class: &str) -> EventKind {
    let mut r = request(step, "ship", None, Decision::Reject);
    if let EventKind::ApprovalRequested { class: c, proposal, .. } = &mut r {
        *c = Some(class.into());
        *proposal = json!({"size": class});
    }
    r
}

#[test]
fn a_gate_counting_per_class_approves_only_the_classes_that_earned_it() {
    use OutcomeKind::*;
    let policy = policy();
    let history = vec![
        outcome("ship", Some("small"), 1, Approved),
        outcome("ship", Some("big"), 2, Approved),
        outcome("ship", Some("small"), 3, Approved),
        outcome("ship", Some("big"), 4, Rejected),
        outcome("ship", Some("big"), 5, Approved),
    ];
    let small = earned(&policy, &history, "ship", Some("small")).expect("two approvals, no override");
    assert_eq!((small.decisions, small.class.as_deref()), (2, Some("small")));
    assert_eq!(earned(&policy, &history, "ship", Some("big")), None, "one override of three");
    assert_eq!(earned(&policy, &history, "ship", Some("new")), None, "no record yet");
    let ask = classed("c", "small");
    assert_eq!(auto_decision(&ask, &policy, &history), Some(autonomous(&ask, small)));
    assert_eq!(auto_decision(&classed("d", "big"), &policy, &history), None);
    // A gate that does not count per class judges its whole record, whatever the class.
    let refund: Vec<Outcome> =
        ["x", "y", "z"].iter().zip(1..).map(|(c, t)| outcome("refund", Some(c), t, Approved)).collect();
    let record = earned(&policy, &refund, "refund", Some("x")).expect("three approvals in all");
    assert_eq!((record.decisions, record.class), (3, None));
}

#[test]
fn an_overridden_automatic_approval_rearms_the_gate() {
    use OutcomeKind::*;
    let policy = policy();
    let mut history: Vec<Outcome> = (1..=3).map(|t| outcome("refund", None, t, Approved)).collect();
    history.push(outcome("refund", None, 4, AutoApproved));
    let record = earned(&policy, &history, "refund", None).expect("earned");
    assert_eq!((record.decisions, record.auto_approved), (3, 1));
    history.push(outcome("refund", None, 5, AutoOverridden));
    assert_eq!(earned(&policy, &history, "refund", None), None, "humans decide again");
    history.extend((6..=8).map(|t| outcome("refund", None, t, Approved)));
    let again = earned(&policy, &history, "refund", None).expect("earned again");
    assert_eq!((again.decisions, again.rearmed_us), (3, Some(5)));
}
