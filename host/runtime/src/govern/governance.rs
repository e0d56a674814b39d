//! What a run's tool-call checkpoints decide: the policy's verdict, the approval request
//! a verdict raises, a gate's own decision when it has earned autonomy, and what each
//! means for the call. Pure decisions: journaling them, and serving them from the journal
//! on resume and replay, is the tool-call capability's part.

use serde_json::{Map, Value};
use tether_types::autonomy::Outcome;
use tether_types::event::{EventKind, ToolResult};
use tether_types::policy::{vars, Checkpoint, Policy, RequestAt, Rules, Verdict};
use tether_types::state::ApprovalOutcome;
use tether_types::{FailureClass, GuestFailureKind};

use crate::durable::time::now_us;

/// What a run's tool-call checkpoints need.
pub(crate) struct Governance {
    pub(crate) identity: String,
    pub(crate) policy: Policy,
    pub(crate) rules: Rules,
    pub(crate) workflow: String,
    pub(crate) run_input: Value,
    /// The decided requests of this workflow's runs, for the gates' track records.
    pub(crate) outcomes: Vec<Outcome>,
}

/// What a checkpoint says about a tool call.
pub(crate) enum Pass {
    /// Go on, with an approver's edit of the proposal if there is one.
    Go(Option<Value>),
    /// Do not: the guest gets this failure.
    Refuse(ToolResult),
}

/// Where in a run a checkpoint is: the key of the run of the step, and the call.
pub(crate) type At<'a> = (&'a str, u32);

impl Governance {
    /// Whether `on` is decided at all: every tool call's verdict is journaled; a tool's
    /// result and a model call only where rules look at them.
    pub(crate) fn checks(&self, on: Checkpoint) -> bool {
        on == Checkpoint::ToolCall || self.rules.any_at(on)
    }

    /// The variables a tool-call rule sees: `identity`, `step`, `tool`, `effect`, `input`, `run`.
    pub(crate) fn tool_vars(&self, step_key: &str, tool: &str, effect: String, input: &Value) -> Map<String, Value> {
        let step = tether_types::flow::step_of(step_key).to_string();
        vars(&[
            ("identity", Value::String(self.identity.clone())),
            ("step", Value::String(step)),
            ("tool", Value::String(tool.to_string())),
            ("effect", Value::String(effect)),
            ("input", input.clone()),
            ("run", serde_json::json!({"workflow": self.workflow, "input": self.run_input})),
        ])
    }

    /// The policy's verdict at `on`, as the event that records it.
    pub(crate) fn verdict(&self, (step, call): At<'_>, on: Checkpoint, vars: &Map<String, Value>) -> EventKind {
        let ruling = self.rules.decide(on, vars);
        EventKind::PolicyVerdict {
            step: step.to_string(),
            call: Some(call),
            on,
            identity: self.identity.clone(),
            verdict: ruling.verdict,
            rule: ruling.rule,
            gate: ruling.gate,
        }
    }

    /// The approval request a `require_approval` verdict at `on` raises at `gate`.
    pub(crate) fn request(
        &self,
        gate: &str,
        (step, call): At<'_>,
        on: Checkpoint,
        proposal: &Value,
        vars: &Map<String, Value>,
    ) -> EventKind {
        self.policy.request(gate, RequestAt { step, call: Some(call), on }, proposal.clone(), vars, now_us())
    }

    /// The gate's own approval of `request` (an `approval_requested`, of a step or a
    /// tool call), if its track record has earned it: decided in the core, in one place.
    pub(crate) fn auto_decision(&self, request: &EventKind) -> Option<EventKind> {
        tether_types::next::approvals::auto_decision(request, &self.policy, &self.outcomes)
    }
}

/// What a verdict means for the call; `None` for `require_approval`, which an approval decides.
pub(crate) fn verdict_pass(verdict: Verdict, rule: Option<String>, on: Checkpoint) -> Option<Pass> {
    match verdict {
        Verdict::Allow => Some(Pass::Go(None)),
        Verdict::Deny => Some(Pass::Refuse(ToolResult::Err {
            kind: GuestFailureKind::Denied,
            message: format!("denied by rule `{}` at the `{}` checkpoint", rule.unwrap_or_default(), on.as_str()),
            class: Some(FailureClass::Denied),
        })),
        Verdict::RequireApproval => None,
    }
}

/// What an approval's outcome means for the call (`proposal` is what was asked to be
/// approved); `None` while it is undecided.
pub(crate) fn approval_pass(outcome: Option<ApprovalOutcome>, proposal: &Value, gate: &str) -> Option<Pass> {
    match outcome? {
        ApprovalOutcome::Approved(payload) => Some(Pass::Go((payload != *proposal).then_some(payload))),
        ApprovalOutcome::Rejected { by, comment } => Some(Pass::Refuse(ToolResult::Err {
            kind: GuestFailureKind::Denied,
            message: format!(
                "rejected by {by} at gate `{gate}`{}",
                comment.map(|c| format!(": {c}")).unwrap_or_default()
            ),
            class: Some(FailureClass::Rejected),
        })),
    }
}
