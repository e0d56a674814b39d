//! Governance, as resolved and pinned in a run's plan: who may do what (identities and
//! their grants), which actions need a human (gates), and the rules that decide each
//! tool call and step (allow, deny, or require approval).
//!
//! Written in a policy file or in a workflow's `[policy]` table; parsed and checked in
//! [`crate::manifest`]. A run pins the policy it started with, so a later edit of the
//! file never changes how a recorded run is resumed or replayed, and replay serves every
//! verdict from the journal instead of deciding again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::expr::Expr;

/// A resolved policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Identities and their grants, by name. A run's identity must be one of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<String, IdentityGrants>,
    /// Approval gates, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gates: BTreeMap<String, GateSpec>,
    /// Rules, in order: the first whose checkpoint matches and whose `when` holds decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// The model steps may call, when the operator configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::model::ModelConfig>,
}

/// What one identity is granted. Anything not listed is denied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdentityGrants {
    /// Tools its steps may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Host directories its steps and tools may see, and whether they may write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirAccess>,
    /// Environment variables its steps and tools may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvGrant>,
    /// Outbound HTTP its steps and tools may make (each also only where it asks for it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<crate::egress::HttpGrant>,
    /// Whether its steps may call the model (each also only where it asks for it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model: bool,
    /// The most any one step attempt may use, whatever the workflow asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetCeiling>,
    /// Gates this identity may decide (`tether approve`, `tether reject`, `tether override`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approves: Vec<String>,
}

/// A host directory an identity may grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirAccess {
    /// Host path (absolute once resolved); subdirectories are included.
    pub host: String,
    /// Whether writing is allowed (default: read-only).
    #[serde(default)]
    pub write: bool,
}

/// An environment variable granted to a step or tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvGrant {
    /// Its name; the value is read from tether's own environment.
    pub name: String,
    /// A secret's value is never journaled, and is redacted from logs and journaled payloads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// Per-attempt ceilings; `None` leaves the workflow's figure as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetCeiling {
    /// Fuel units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall time, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time_ms: Option<u64>,
    /// Memory bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<u32>,
}

impl BudgetCeiling {
    /// `budget`, with every figure above its ceiling lowered to it.
    pub fn clip(&self, mut budget: crate::StepBudget) -> crate::StepBudget {
        if let Some(f) = self.fuel {
            budget.fuel = budget.fuel.min(f);
        }
        if let Some(w) = self.wall_time_ms {
            budget.wall_time = budget.wall_time.min(std::time::Duration::from_millis(w));
        }
        if let Some(m) = self.memory {
            budget.memory = budget.memory.min(m);
        }
        if let Some(t) = self.tool_calls {
            budget.tool_calls = budget.tool_calls.min(t);
        }
        budget
    }
}

/// An approval gate: who must agree, by when, and when it may relax.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateSpec {
    /// Distinct approvers needed (1 or 2).
    pub approvals: u32,
    /// How long a request may wait, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// What happens when the deadline passes.
    #[serde(default)]
    pub on_timeout: Decision,
    /// When the gate starts approving by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relax_after: Option<Relax>,
}

/// A gate's condition for approving by itself, judged on its track record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relax {
    /// Human decisions needed first.
    pub decisions: u32,
    /// The largest share of those decisions that may have been overrides (edited or rejected).
    pub max_override_rate: f64,
    /// CEL giving the class of a request (with `proposal`, `input`, `step`, `tool`): each
    /// class keeps its own record and relaxes on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
}

/// Who decided when the deadline passed: the gate's default decision.
pub const BY_DEADLINE: &str = "deadline";
/// Who decided when a relaxed gate approved by itself.
pub const BY_AUTONOMY: &str = "autonomy";
/// Who acted for the host itself (in `tether history`).
pub const BY_HOST: &str = "tether";
/// Names no identity may take: they would pass for the host's own decisions.
pub const RESERVED_IDENTITIES: [&str; 3] = [BY_DEADLINE, BY_AUTONOMY, BY_HOST];

/// Whether `name` may name an identity (in a policy, `--as`, or a workflow's
/// `identity`): the manifest's name rule, and not one of the host's own names.
pub fn check_identity_name(name: &str) -> Result<(), String> {
    crate::names::check_name(name).map_err(|m| format!("identity name {m}"))?;
    if RESERVED_IDENTITIES.contains(&name) {
        return Err(format!("identity name `{name}` is reserved for the host's own decisions"));
    }
    Ok(())
}

/// A human (or default) decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead (with the proposal, or with an edited payload).
    Approve,
    /// Do not.
    #[default]
    Reject,
}

impl Decision {
    /// `approve` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

/// Where a rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    /// Before a tool call: `identity`, `step`, `tool`, `effect`, `input`, `run`.
    ToolCall,
    /// After a tool call, before the step sees the result: the same, plus `output`.
    ToolResult,
    /// Before a step runs: `identity`, `step`, `input`, `run`.
    Step,
    /// After a step, before anything uses its output: the same, plus `output`.
    StepResult,
    /// Before an outbound HTTP request leaves: `identity`, `step`, `tool` (empty when the
    /// step makes it), `method`, `url`, `scheme`, `host`, `port`, `path`, `run`.
    HttpRequest,
    /// Before a model call: `identity`, `step`, `model`, `tools` (the names offered to the
    /// model), `run`.
    ModelCall,
}

impl Checkpoint {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Checkpoint::ToolCall => "tool_call",
            Checkpoint::ToolResult => "tool_result",
            Checkpoint::Step => "step",
            Checkpoint::StepResult => "step_result",
            Checkpoint::HttpRequest => "http_request",
            Checkpoint::ModelCall => "model_call",
        }
    }

    /// What an approval at this checkpoint approves (and an override may edit).
    pub fn proposal(self) -> &'static str {
        match self {
            Checkpoint::ToolCall | Checkpoint::Step => "input",
            Checkpoint::HttpRequest | Checkpoint::ModelCall => "request",
            Checkpoint::ToolResult | Checkpoint::StepResult => "output",
        }
    }
}

/// What a rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refuse: a tool call returns a `denied` failure to the step; a step fails `denied`.
    Deny,
    /// Wait for a human at the rule's gate.
    RequireApproval,
}

impl Verdict {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::RequireApproval => "require_approval",
        }
    }
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Its name, journaled with every verdict it gives.
    pub name: String,
    /// Where it applies.
    pub on: Checkpoint,
    /// CEL condition; none means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// What it decides when it applies.
    pub verdict: Verdict,
    /// The gate, for `require_approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
}

/// A verdict and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruling {
    /// The verdict.
    pub verdict: Verdict,
    /// The rule that gave it; `None` when no rule applied (allowed by grant).
    pub rule: Option<String>,
    /// The gate to wait at, for `require_approval`.
    pub gate: Option<String>,
}

/// A policy's rules, compiled.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    rules: Vec<(Rule, Option<Expr>)>,
}

impl Rules {
    /// Compiles `policy`'s rules (checked when the policy was parsed, so this fails only
    /// for a tampered or foreign plan).
    pub fn compile(policy: &Policy) -> Result<Rules, String> {
        let rules = policy
            .rules
            .iter()
            .map(|r| {
                let when = r.when.as_deref().map(Expr::compile).transpose();
                when.map(|w| (r.clone(), w)).map_err(|e| format!("rule `{}`: {e}", r.name))
            })
            .collect::<Result<_, String>>()?;
        Ok(Rules { rules })
    }

    /// Whether any rule applies at `at`.
    pub fn any_at(&self, at: Checkpoint) -> bool {
        self.rules.iter().any(|(r, _)| r.on == at)
    }

    /// The first rule at `at` whose condition holds decides; none applying allows. A
    /// condition that cannot be evaluated denies (and says why), so a broken rule never
    /// lets an action through.
    pub fn decide(&self, at: Checkpoint, vars: &Map<String, Value>) -> Ruling {
        for (rule, when) in self.rules.iter().filter(|(r, _)| r.on == at) {
            let holds = match when {
                None => Ok(true),
                Some(w) => w.eval_vars_bool(vars),
            };
            match holds {
                Ok(true) => {
                    return Ruling { verdict: rule.verdict, rule: Some(rule.name.clone()), gate: rule.gate.clone() }
                }
                Ok(false) => {}
                Err(e) => {
                    return Ruling {
                        verdict: Verdict::Deny,
                        rule: Some(format!("{} (error: {e})", rule.name)),
                        gate: None,
                    }
                }
            }
        }
        Ruling { verdict: Verdict::Allow, rule: None, gate: None }
    }
}

impl Policy {
    /// Whether this policy says anything (an empty policy changes nothing).
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.gates.is_empty() && self.rules.is_empty() && self.model.is_none()
    }

    /// Whether `identity` may decide `gate`.
    pub fn may_approve(&self, identity: &str, gate: &str) -> bool {
        self.identities.get(identity).is_some_and(|g| g.approves.iter().any(|a| a == gate || a == "*"))
    }
}

/// The variables a rule or a gate condition sees.
pub fn vars(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect()
}

/// The id of an approval request: `KEY@CHECKPOINT`, or `KEY/CALL@CHECKPOINT` for a tool call.
pub fn approval_id(step: &str, call: Option<u32>, on: Checkpoint) -> String {
    match call {
        Some(c) => format!("{step}/{c}@{}", on.as_str()),
        None => format!("{step}@{}", on.as_str()),
    }
}

/// Where an approval request is raised.
#[derive(Clone, Debug)]
pub struct RequestAt<'a> {
    /// The step's key.
    pub step: &'a str,
    /// The tool call, if it is one.
    pub call: Option<u32>,
    /// The checkpoint.
    pub on: Checkpoint,
}

impl Policy {
    /// The request event for `gate` at `at`, proposing `proposal`. `vars` are the rule
    /// variables, for the gate's class expression; `now_us` starts the deadline.
    pub fn request(
        &self,
        gate: &str,
        at: RequestAt<'_>,
        proposal: Value,
        vars: &Map<String, Value>,
        now_us: u64,
    ) -> crate::EventKind {
        let spec = self.gates.get(gate);
        let class = spec.and_then(|g| g.relax_after.as_ref()).and_then(|r| r.per.as_deref()).map(|per| {
            let mut vars = vars.clone();
            vars.insert("proposal".into(), proposal.clone());
            match Expr::compile(per).and_then(|e| e.eval_vars(&vars)) {
                Ok(Value::String(s)) => s,
                Ok(v) => v.to_string(),
                Err(e) => format!("(class error: {e})"),
            }
        });
        crate::EventKind::ApprovalRequested {
            id: approval_id(at.step, at.call, at.on),
            gate: gate.to_string(),
            step: at.step.to_string(),
            call: at.call,
            on: at.on,
            proposal,
            approvals: spec.map_or(1, |g| g.approvals),
            deadline_us: spec.and_then(|g| g.deadline_ms).map(|ms| now_us.saturating_add(ms.saturating_mul(1000))),
            on_timeout: spec.map_or(Decision::Reject, |g| g.on_timeout),
            class,
        }
    }
}
