//! The workflow file's shape as TOML holds it: what serde reads, with spans for every
//! value a problem can be reported at. `Workflow::parse` checks it and makes the
//! workflow.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::policy::RawPolicy;
use super::DirSpec;
use crate::budget::BudgetSpec;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkflow {
    pub(super) name: Spanned<String>,
    pub(super) version: Option<String>,
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) identity: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    #[serde(default)]
    pub(super) tools: BTreeMap<Spanned<String>, RawTool>,
    #[serde(default)]
    pub(super) steps: Vec<RawStep>,
    #[serde(default)]
    pub(super) run: Option<RawRun>,
    #[serde(default)]
    pub(super) loops: BTreeMap<Spanned<String>, RawLoop>,
    #[serde(default)]
    pub(super) policy: Option<RawPolicy>,
    #[serde(default)]
    pub(super) policy_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoop {
    pub(super) until: Spanned<String>,
    pub(super) max_iterations: Spanned<u32>,
    #[serde(default)]
    pub(super) on_exhausted: crate::plan::OnExhausted,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    #[serde(default)]
    pub(super) budget: Option<Spanned<RawRunBudget>>,
    #[serde(default)]
    pub(super) output: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRunBudget {
    pub(super) fuel: Option<u64>,
    #[serde(default, deserialize_with = "crate::units::duration")]
    pub(super) wall_time: Option<std::time::Duration>,
    pub(super) tool_calls: Option<u64>,
    pub(super) http_requests: Option<u64>,
    #[serde(default, deserialize_with = "crate::units::size")]
    pub(super) http_bytes: Option<u64>,
    #[serde(default)]
    pub(super) usage: BTreeMap<String, f64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    #[serde(default)]
    pub(super) budget: Option<Spanned<BudgetSpec>>,
    #[serde(default)]
    pub(super) tool_budget: Option<Spanned<BudgetSpec>>,
    #[serde(default)]
    pub(super) retry: Option<Spanned<crate::retry::RetrySpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTool {
    pub(super) component: Spanned<String>,
    #[serde(default)]
    pub(super) budget: Option<Spanned<BudgetSpec>>,
    #[serde(default)]
    pub(super) dirs: Vec<Spanned<DirSpec>>,
    #[serde(default)]
    pub(super) env: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) http: Vec<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) component: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) needs: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) input: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) when: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) for_each: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) concurrency: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) route: Option<Spanned<Vec<RawCase>>>,
    #[serde(default, rename = "loop")]
    pub(super) in_loop: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) budget: Option<Spanned<BudgetSpec>>,
    #[serde(default)]
    pub(super) retry: Option<Spanned<crate::retry::RetrySpec>>,
    #[serde(default)]
    pub(super) compensate: Option<Spanned<RawCompensate>>,
    #[serde(default)]
    pub(super) dirs: Vec<Spanned<DirSpec>>,
    #[serde(default)]
    pub(super) env: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) http: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) model: bool,
    #[serde(default)]
    pub(super) approval: Option<RawApproval>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    pub(super) gate: Spanned<String>,
    #[serde(default)]
    pub(super) when: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCase {
    #[serde(default)]
    pub(super) when: Option<Spanned<String>>,
    pub(super) to: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompensate {
    pub(super) tool: Option<String>,
    pub(super) component: Option<Spanned<String>>,
}
