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
}

fn is_unlimited(b: &crate::run_budget::RunBudget) -> bool {
    *b == crate::run_budget::RunBudget::default()
}

/// A step with its component pinned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// The step's name.
    pub name: String,
    /// sha256 of its component.
    pub component: String,
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
    /// sha256 of the plan's canonical JSON: what `RunStarted` records as the workflow digest.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(serde_json::to_vec(self).expect("plans serialize")))
    }
}
