//! The resolved plan a run is tied to for its whole life: every component pinned by
//! digest, every budget and grant resolved. Resume and replay use the plan recorded in
//! `RunStarted`, never the manifest as it is today.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::budget::{StepBudget, ToolBudget};

/// A resolved workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The workflow's name.
    pub workflow: String,
    /// Its version, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Steps, in order.
    pub steps: Vec<PlanStep>,
    /// Tools, by name.
    pub tools: BTreeMap<String, PlanTool>,
    /// Totals across the whole run.
    #[serde(default, skip_serializing_if = "is_unlimited")]
    pub run_budget: crate::run_budget::RunBudget,
    /// Loops, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub loops: BTreeMap<String, PlanLoop>,
    /// The run output expression (CEL); by default the output of the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The policy the run is governed by (identities, gates, rules), pinned at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::policy::Policy>,
}

/// A step's approval gate as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanApproval {
    /// The gate.
    pub gate: String,
    /// CEL condition over `input` and `output`; none means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A loop, with its `until` expression as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLoop {
    /// CEL, checked after each iteration.
    pub until: String,
    /// The most iterations it runs.
    pub max_iterations: u32,
    /// What happens when the last iteration ends without `until` holding.
    #[serde(default)]
    pub on_exhausted: OnExhausted,
}

/// What a loop does when its last iteration ends without `until` holding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// The run fails with class `loop_exhausted` (compensating what it did).
    #[default]
    Fail,
    /// The run goes on with the last iteration's outputs.
    Continue,
}

/// A `for_each` as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanForEach {
    /// CEL giving the list.
    pub items: String,
    /// How many items run at once.
    pub concurrency: u32,
}

/// A route case as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRouteCase {
    /// CEL condition; none for the default case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The step it leads to.
    pub to: String,
}

fn is_unlimited(b: &crate::run_budget::RunBudget) -> bool {
    *b == crate::run_budget::RunBudget::default()
}

/// A step with its component pinned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// The step's name.
    pub name: String,
    /// sha256 of its component; empty for a route.
    #[serde(default)]
    pub component: String,
    /// The steps it needs. Absent in plans recorded before `needs` existed, where each
    /// step needed the one before it; [`Plan::normalize`] fills that in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<String>>,
    /// CEL building its input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// CEL condition; the step is skipped unless it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Fan-out over a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<PlanForEach>,
    /// Route cases, for a route step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<PlanRouteCase>>,
    /// The loop it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "loop")]
    pub in_loop: Option<String>,
    /// Tools it may call.
    pub tools: Vec<String>,
    /// Its budget.
    pub budget: StepBudget,
    /// Its retry policy.
    #[serde(default)]
    pub retry: crate::retry::RetryPolicy,
    /// What undoes it if the run fails later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<PlanCompensation>,
    /// Host directories it asks for (given only as the run's identity is granted them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirGrant>,
    /// Environment variables it asks for (given only if the run's identity is granted them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Outbound HTTP it asks for (allowed only where the run's identity is granted it too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<crate::egress::HttpGrant>,
    /// Whether it asks for the operator's model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model: bool,
    /// The gate its output must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<PlanApproval>,
}

/// A pinned compensation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanCompensation {
    /// A declared tool, by name.
    Tool(String),
    /// A step component, by digest.
    Component(String),
}

/// A tool with its component pinned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanTool {
    /// sha256 of its component.
    pub component: String,
    /// The budget of each call.
    pub budget: ToolBudget,
    /// Host directories the tool may see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirGrant>,
    /// Environment variables it asks for (given only if the run's identity is granted them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Outbound HTTP it asks for (allowed only where the run's identity is granted it too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<crate::egress::HttpGrant>,
}

/// A host directory made visible to a component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirGrant {
    /// Absolute host path.
    pub host: String,
    /// Path the guest sees.
    pub guest: String,
    /// Whether the guest may write.
    pub write: bool,
}

impl Plan {
    /// Fills in what older plans left implicit: a step without `needs` needs the one
    /// before it.
    pub fn normalize(&mut self) {
        let names: Vec<String> = self.steps.iter().map(|s| s.name.clone()).collect();
        for (i, step) in self.steps.iter_mut().enumerate() {
            if step.needs.is_none() {
                step.needs = Some(i.checked_sub(1).map(|p| vec![names[p].clone()]).unwrap_or_default());
            }
        }
    }

    /// What step `name` needs.
    pub fn needs_of(&self, name: &str) -> &[String] {
        self.step(name).and_then(|s| s.needs.as_deref()).unwrap_or_default()
    }

    /// Whether the output of step `name` waits for a check (a step approval gate or a
    /// `step_result` rule) before anything may use it.
    pub fn checks_output(&self, name: &str) -> bool {
        self.step(name).is_some_and(|s| s.approval.is_some())
            || self
                .policy
                .as_ref()
                .is_some_and(|p| p.rules.iter().any(|r| r.on == crate::policy::Checkpoint::StepResult))
    }

    /// Whether a step's input is checked before it runs (`step` rules).
    pub fn checks_input(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.rules.iter().any(|r| r.on == crate::policy::Checkpoint::Step))
    }

    /// The step called `name`.
    pub fn step(&self, name: &str) -> Option<&PlanStep> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// sha256 of the plan's canonical JSON: what `RunStarted` records as the workflow digest.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(serde_json::to_vec(self).expect("plans serialize")))
    }
}
