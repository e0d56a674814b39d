//! Policy checkpoints of steps: before a step runs (`step` rules) and after it, before
//! anything uses its output (the step's approval gate, then `step_result` rules). A
//! verdict is decided once and journaled; from then on the journal's verdict (and the
//! approval's outcome) is what counts, so a resumed run never decides again.

use serde_json::{json, Value};

use super::make::failed;
use super::Flow;
use crate::failure::FailureClass;
use crate::policy::{approval_id, vars, Checkpoint, RequestAt, Ruling, Verdict};
use crate::state::{ApprovalOutcome, RunState};
use crate::EventKind;

/// What a checkpoint says about going on.
pub(super) enum Gate {
    /// Go on with this payload (the input, or an approved edit of it).
    Go(Value),
    /// Not yet: an approval is pending, or the step already failed.
    Wait,
    /// Record these decisions first.
    Record(Vec<EventKind>),
}

impl Gate {
    pub(super) fn events(self) -> Option<Vec<EventKind>> {
        match self {
            Gate::Record(events) => Some(events),
            Gate::Go(_) | Gate::Wait => None,
        }
    }
}

impl Flow {
    /// The checkpoint before step `key` runs with `input`.
    pub(super) fn check_input(&self, state: &RunState, step: &str, key: &str, input: Value, now_us: u64) -> Gate {
        if !state.plan.checks_input() {
            return Gate::Go(input);
        }
        self.checkpoint(state, (step, key), Checkpoint::Step, (input, None), now_us)
    }

    /// The checkpoint of a completed step's `output`.
    pub(super) fn check_output(&self, state: &RunState, step: &str, key: &str, output: Value, now_us: u64) -> Gate {
        let input = state.completed.iter().rev().find(|(k, _, _)| k == key).map_or(Value::Null, |(_, i, _)| i.clone());
        self.checkpoint(state, (step, key), Checkpoint::StepResult, (input, Some(output)), now_us)
    }

    fn checkpoint(
        &self,
        state: &RunState,
        (step, key): (&str, &str),
        on: Checkpoint,
        (input, output): (Value, Option<Value>),
        now_us: u64,
    ) -> Gate {
        let attempt = state.instances.get(key).map_or(1, |i| i.attempts.max(1));
        let proposal = output.clone().unwrap_or_else(|| input.clone());
        let Some(ruling) = state.verdicts.get(&(key.to_string(), on)) else {
            let mut pairs = vec![
                ("identity", Value::String(state.identity.clone())),
                ("step", Value::String(step.to_string())),
                ("input", input),
                ("run", json!({"workflow": state.plan.workflow, "input": state.input})),
            ];
            if let Some(output) = output {
                pairs.push(("output", output));
            }
            let vars = vars(&pairs);
            let ruling = self.rule(step, on, &vars);
            let mut events = vec![EventKind::PolicyVerdict {
                step: key.to_string(),
                call: None,
                on,
                identity: state.identity.clone(),
                verdict: ruling.verdict,
                rule: ruling.rule.clone(),
                gate: ruling.gate.clone(),
            }];
            match (ruling.verdict, &ruling.gate) {
                (Verdict::Allow, _) => {}
                (Verdict::Deny, _) => {
                    let rule = ruling.rule.as_deref().unwrap_or("policy");
                    let message = format!("denied by rule `{rule}` at the `{}` checkpoint", on.as_str());
                    events.push(failed(key, attempt, FailureClass::Denied, message));
                }
                (Verdict::RequireApproval, gate) => {
                    let gate = gate.as_deref().unwrap_or_default();
                    let policy = state.plan.policy.clone().unwrap_or_default();
                    let at = RequestAt { step: key, call: None, on };
                    events.push(policy.request(gate, at, proposal, &vars, now_us));
                }
            }
            return Gate::Record(events);
        };
        match ruling.verdict {
            Verdict::Allow => Gate::Go(proposal),
            Verdict::Deny => Gate::Wait,
            Verdict::RequireApproval => {
                match state.approvals.get(&approval_id(key, None, on)).and_then(|a| a.outcome.as_ref()) {
                    None => Gate::Wait,
                    Some(ApprovalOutcome::Approved(payload)) => Gate::Go(payload.clone()),
                    Some(ApprovalOutcome::Rejected { .. })
                        if state.instances.get(key).is_some_and(|i| i.failed.is_some()) =>
                    {
                        Gate::Wait
                    }
                    Some(ApprovalOutcome::Rejected { by, comment }) => {
                        let gate = ruling.gate.as_deref().unwrap_or_default();
                        let why = comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
                        let message = match by.as_str() {
                            crate::policy::BY_DEADLINE => {
                                format!("gate `{gate}`: nobody decided before the deadline; its default is to reject")
                            }
                            _ => format!("rejected by {by} at gate `{gate}`{why}"),
                        };
                        Gate::Record(vec![failed(key, attempt, FailureClass::Rejected, message)])
                    }
                }
            }
        }
    }

    /// The verdict at `on` for `step`: its own approval gate first (after it runs), then the rules.
    fn rule(&self, step: &str, on: Checkpoint, vars: &serde_json::Map<String, Value>) -> Ruling {
        if on == Checkpoint::StepResult {
            if let Some(when) = self.approval_when.get(step) {
                let holds = when.as_ref().map_or(Ok(true), |w| w.eval_vars_bool(vars));
                let rule = Some(format!("{step}.approval"));
                match holds {
                    Ok(true) => {
                        let gate = self.approval_gate.get(step).cloned();
                        return Ruling { verdict: Verdict::RequireApproval, rule, gate };
                    }
                    Ok(false) => {}
                    Err(e) => {
                        return Ruling {
                            verdict: Verdict::Deny,
                            rule: Some(format!("{step}.approval (error: {e})")),
                            gate: None,
                        }
                    }
                }
            }
        }
        self.rules.decide(on, vars)
    }
}

/// Whether an attempt of `key` stopped inside a tool call to wait for an approval that
/// is not decided yet (it must not run again until it is).
pub(super) fn waits_in_call(state: &RunState, key: &str) -> bool {
    state.approvals.values().any(|a| a.step == key && a.call.is_some() && a.outcome.is_none())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use crate::next::{Flow, Next};
    use crate::plan::Plan;
    use crate::policy::{Decision, Verdict};
    use crate::state::RunState;
    use crate::{EventKind, FailureClass};

    fn gated_run(x: i64) -> (Flow, RunState) {
        let plan: Plan = serde_json::from_value(json!({
            "workflow": "w",
            "steps": [{
                "name": "a", "component": "d", "needs": [], "tools": [],
                "budget": {"fuel": 1, "wall_time": 1, "memory": 65536, "tool_calls": 0, "output": 100},
                "approval": {"gate": "g", "when": "output.x > 1"}
            }],
            "tools": {},
            "policy": {"gates": {"g": {"approvals": 2}}, "identities": {"alice": {"approves": ["g"]}}}
        }))
        .unwrap();
        let flow = Flow::compile(&plan).unwrap();
        let mut state = RunState::new(plan, json!({}), "bot".into());
        let started = EventKind::StepAttemptStarted {
            step: "a".into(),
            attempt: 1,
            component_digest: "d".into(),
            input: json!({}),
            limits: None,
            usage_limits: Default::default(),
        };
        let completed = EventKind::StepCompleted {
            step: "a".into(),
            attempt: 1,
            output: json!({"x": x}),
            fuel: 0,
            tool_fuel: 0,
            wall_us: 0,
            peak_memory: 0,
        };
        state.apply(1, &started).unwrap();
        state.apply(2, &completed).unwrap();
        (flow, state)
    }

    fn next(flow: &Flow, state: &mut RunState) -> Next {
        let n = flow.next(state, &HashSet::new(), 1_000);
        if let Next::Record(events) = &n {
            for e in events {
                state.apply(9, e).unwrap();
            }
        }
        n
    }

    fn decided(by: &str, decision: Decision, payload: Option<serde_json::Value>) -> EventKind {
        EventKind::ApprovalDecided {
            id: "a@step_result".into(),
            gate: "g".into(),
            step: "a".into(),
            call: None,
            by: by.into(),
            decision,
            payload,
            comment: None,
            evidence: None,
        }
    }

    #[test]
    fn an_output_below_the_condition_passes_with_an_allow_verdict() {
        let (flow, mut state) = gated_run(0);
        let Next::Record(events) = next(&flow, &mut state) else { panic!("expected a verdict") };
        assert!(matches!(&events[..], [EventKind::PolicyVerdict { verdict: Verdict::Allow, .. }]), "{events:?}");
        assert_eq!(next(&flow, &mut state), Next::Complete(json!({"x": 0})));
    }

    #[test]
    fn a_gated_output_waits_for_two_distinct_approvers_and_the_edit_is_what_runs_on() {
        let (flow, mut state) = gated_run(5);
        let Next::Record(events) = next(&flow, &mut state) else { panic!("expected a verdict") };
        assert!(
            matches!(
                &events[..],
                [
                    EventKind::PolicyVerdict { verdict: Verdict::RequireApproval, .. },
                    EventKind::ApprovalRequested { approvals: 2, .. }
                ]
            ),
            "{events:?}"
        );
        assert_eq!(next(&flow, &mut state), Next::Wait(vec!["a@step_result".into()]));
        state.apply(10, &decided("alice", Decision::Approve, None)).unwrap();
        state.apply(11, &decided("alice", Decision::Approve, None)).unwrap();
        assert_eq!(next(&flow, &mut state), Next::Wait(vec!["a@step_result".into()]), "alice counts once");
        state.apply(12, &decided("bob", Decision::Approve, Some(json!({"x": 2})))).unwrap();
        assert_eq!(next(&flow, &mut state), Next::Complete(json!({"x": 2})));
    }

    #[test]
    fn a_rejected_output_fails_the_step_as_rejected() {
        let (flow, mut state) = gated_run(5);
        next(&flow, &mut state);
        state.apply(10, &decided("alice", Decision::Reject, None)).unwrap();
        let Next::Record(events) = next(&flow, &mut state) else { panic!("expected the failure") };
        assert!(
            matches!(&events[..], [EventKind::StepFailed { failure, .. }] if failure.class == FailureClass::Rejected),
            "{events:?}"
        );
        assert!(matches!(next(&flow, &mut state), Next::Fail(e) if e.class == FailureClass::Rejected));
    }
}
