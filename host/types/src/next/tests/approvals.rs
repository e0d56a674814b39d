//! Approvals in a flow: a step's gate on its output and a `step` rule on a step's input.
//! (The gate's own decision rules, such as two distinct approvers, are in `checks.rs`.)

use serde_json::json;

use crate::event::EventKind;
use crate::failure::FailureClass;
use crate::next::Next;
use crate::policy::{Checkpoint, Decision, Verdict};
use crate::testing::{decided, Run};

const GATED: &str = r#"
[policy.gates.refund]
approvals = 1
deadline = "1h"

[policy.identities.alice]
approves = ["refund"]

[[steps]]
name = "assess"
needs = []
component = "assess.wasm"
approval = { gate = "refund", when = "output.amount > 100" }

[[steps]]
name = "side"
needs = []
component = "side.wasm"

[[steps]]
name = "pay"
needs = ["assess"]
component = "pay.wasm"
"#;

const ID: &str = "assess@step_result";

/// Runs `assess` (to `amount`) and `side`, and records the gate's decision on assess.
fn assessed(amount: i64) -> (Run, Vec<EventKind>) {
    let mut run = Run::new(GATED, json!({}));
    run.start(&["assess", "side"]);
    run.complete("assess", json!({"amount": amount}));
    assert_eq!(run.state.instances["assess"].pending, Some(json!({"amount": amount})), "held for its check");
    let events = run.record();
    (run, events)
}

fn with_comment(mut event: EventKind, text: &str) -> EventKind {
    if let EventKind::ApprovalDecided { comment, .. } = &mut event {
        *comment = Some(text.into());
    }
    event
}

#[test]
fn a_pending_request_holds_what_needs_the_step_and_the_approved_edit_runs_on() {
    let (mut run, events) = assessed(150);
    let verdict = EventKind::PolicyVerdict {
        step: "assess".into(),
        call: None,
        on: Checkpoint::StepResult,
        identity: "bot".into(),
        verdict: Verdict::RequireApproval,
        rule: Some("assess.approval".into()),
        gate: Some("refund".into()),
    };
    let request = EventKind::ApprovalRequested {
        id: ID.into(),
        gate: "refund".into(),
        step: "assess".into(),
        call: None,
        on: Checkpoint::StepResult,
        proposal: json!({"amount": 150}),
        approvals: 1,
        deadline_us: Some(run.now + 3_600_000_000),
        on_timeout: Decision::Reject,
        class: None,
    };
    assert_eq!(events, vec![verdict, request]);
    // Something still runs: the run goes on with it rather than wait.
    assert_eq!(run.next(), Next::Run(vec![]));
    run.complete("side", json!("side"));
    assert_eq!(run.next(), Next::Wait(vec![ID.into()]));
    run.apply([EventKind::RunWaiting { approvals: vec![ID.into()] }]);
    assert!(run.state.waiting);
    run.apply([EventKind::RunResumed { pid: 2 }]);
    assert!(!run.state.waiting);
    assert_eq!(run.next(), Next::Wait(vec![ID.into()]), "resuming decides nothing");
    run.apply([decided(ID, "refund", "alice", Decision::Approve, Some(json!({"amount": 120})))]);
    assert_eq!(run.state.pending_approvals().count(), 0);
    let pay = run.run(&["pay"], |_| json!("paid"));
    assert_eq!(pay[0].input, json!({"amount": 120}), "the approver's edit is the step's output");
    assert_eq!(run.next(), Next::Complete(json!("paid")));
}

#[test]
fn an_output_the_gate_does_not_cover_is_allowed_and_used_at_once() {
    let (mut run, events) = assessed(50);
    assert!(
        matches!(&events[..], [EventKind::PolicyVerdict { verdict: Verdict::Allow, rule: None, .. }]),
        "{events:?}"
    );
    run.complete("side", json!("side"));
    let pay = run.run(&["pay"], |_| json!("paid"));
    assert_eq!(pay[0].input, json!({"amount": 50}));
}

#[test]
fn a_rejected_output_fails_the_run_as_rejected() {
    let (mut run, _) = assessed(150);
    run.complete("side", json!("side"));
    run.apply([with_comment(decided(ID, "refund", "alice", Decision::Reject, None), "too much")]);
    let events = run.record();
    let [EventKind::StepFailed { step, attempt: 1, failure, .. }] = &events[..] else { panic!("{events:?}") };
    assert_eq!((step.as_str(), failure.class), ("assess", FailureClass::Rejected));
    assert_eq!(failure.message, "rejected by alice at gate `refund`: too much");
    let Next::Fail(error) = run.next() else { panic!("expected the run to fail") };
    assert_eq!((error.class, error.step.as_str()), (FailureClass::Rejected, "assess"));
    assert!(!run.state.instances.contains_key("pay"));
}

#[test]
fn a_rejection_at_the_deadline_says_nobody_decided() {
    let (mut run, _) = assessed(150);
    run.apply([decided(ID, "refund", crate::policy::BY_DEADLINE, Decision::Reject, None)]);
    let events = run.record();
    let [EventKind::StepFailed { failure, .. }] = &events[..] else { panic!("{events:?}") };
    assert_eq!(failure.message, "gate `refund`: nobody decided before the deadline; its default is to reject");
}

const RULED: &str = r#"
[policy.gates.big]

[[policy.rules]]
name = "big-payments"
on = "step"
when = "step == 'pay' && input.amount > 100"
verdict = "require_approval"
gate = "big"

[[steps]]
name = "assess"
component = "assess.wasm"

[[steps]]
name = "pay"
component = "pay.wasm"
"#;

fn step_verdict(step: &str, verdict: Verdict, rule: Option<&str>, gate: Option<&str>) -> EventKind {
    EventKind::PolicyVerdict {
        step: step.into(),
        call: None,
        on: Checkpoint::Step,
        identity: "bot".into(),
        verdict,
        rule: rule.map(Into::into),
        gate: gate.map(Into::into),
    }
}

#[test]
fn a_step_rule_holds_the_step_before_it_runs_and_an_approved_edit_is_its_input() {
    let mut run = Run::new(RULED, json!({}));
    assert_eq!(run.record(), vec![step_verdict("assess", Verdict::Allow, None, None)]);
    run.run(&["assess"], |_| json!({"amount": 500}));
    let events = run.record();
    assert_eq!(events[0], step_verdict("pay", Verdict::RequireApproval, Some("big-payments"), Some("big")));
    assert!(
        matches!(&events[1], EventKind::ApprovalRequested { id, on: Checkpoint::Step, proposal, deadline_us: None, .. }
            if id == "pay@step" && *proposal == json!({"amount": 500})),
        "{events:?}"
    );
    assert_eq!(run.next(), Next::Wait(vec!["pay@step".into()]));
    run.apply([decided("pay@step", "big", "carol", Decision::Approve, Some(json!({"amount": 100})))]);
    let pay = run.run(&["pay"], |_| json!("paid"));
    assert_eq!(pay[0].input, json!({"amount": 100}));
    assert_eq!(run.next(), Next::Complete(json!("paid")));
}

#[test]
fn a_deny_rule_fails_the_step_before_it_runs() {
    let toml = RULED.replace("verdict = \"require_approval\"\ngate = \"big\"", "verdict = \"deny\"");
    let mut run = Run::new(&toml, json!({}));
    run.record();
    run.run(&["assess"], |_| json!({"amount": 500}));
    let events = run.record();
    let [verdict, EventKind::StepFailed { step, failure, .. }] = &events[..] else { panic!("{events:?}") };
    assert_eq!(*verdict, step_verdict("pay", Verdict::Deny, Some("big-payments"), None));
    assert_eq!((step.as_str(), failure.class), ("pay", FailureClass::Denied));
    assert_eq!(failure.message, "denied by rule `big-payments` at the `step` checkpoint");
    assert!(matches!(run.next(), Next::Fail(e) if e.class == FailureClass::Denied));
    assert_eq!(run.state.instances["pay"].open, None, "it never started");
}

const TOOL_RULED: &str = r#"
[tools.pay]
component = "pay.wasm"

[policy.gates.g]

[[policy.rules]]
name = "every-payment"
on = "tool_call"
verdict = "require_approval"
gate = "g"

[[steps]]
name = "a"
component = "a.wasm"
tools = ["pay"]
"#;

#[test]
fn an_attempt_stopped_in_a_tool_call_for_approval_waits_then_goes_on_from_the_journal() {
    let mut run = Run::new(TOOL_RULED, json!({}));
    run.start(&["a"]);
    // Inside the attempt: the call's verdict and request are interactions of it.
    let id = "a/0@tool_call";
    let verdict = EventKind::PolicyVerdict {
        step: "a".into(),
        call: Some(0),
        on: Checkpoint::ToolCall,
        identity: "bot".into(),
        verdict: Verdict::RequireApproval,
        rule: Some("every-payment".into()),
        gate: Some("g".into()),
    };
    let request = EventKind::ApprovalRequested {
        id: id.into(),
        gate: "g".into(),
        step: "a".into(),
        call: Some(0),
        on: Checkpoint::ToolCall,
        proposal: json!({"amount": 5}),
        approvals: 1,
        deadline_us: None,
        on_timeout: Decision::Reject,
        class: None,
    };
    run.apply([verdict, request]);
    // The attempt stops to wait (nothing is journaled for that) and holds no sandbox.
    run.busy.remove("a");
    assert_eq!(run.next(), Next::Wait(vec![id.into()]), "not launched again while the request is open");
    let mut decision = decided(id, "g", "carol", Decision::Approve, None);
    if let EventKind::ApprovalDecided { call, .. } = &mut decision {
        *call = Some(0);
    }
    run.apply([decision]);
    let launches = run.launches();
    let open = launches[0].resume.as_ref().expect("the attempt goes on");
    assert_eq!((launches[0].key.as_str(), open.attempt, open.interactions.len()), ("a", 1, 3));
}
