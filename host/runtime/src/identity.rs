//! Governance applied to a loaded workflow: its grants narrowed to the run's identity,
//! and the values of its environment grants. What is decided lives in `govern/`; this is
//! where the loaded steps and tools it applies to are known.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tether_types::policy::EnvGrant;

use crate::capabilities::tool::LoadedTool;
use crate::govern::env::EnvValues;
use crate::govern::identity::Narrowing;
use crate::load::LoadedWorkflow;
use crate::step::LoadedStep;

/// Narrows `workflow` to what `identity` is granted; returns every declared grant it
/// refused (tools stay listed as refused so a call says why it was denied). `Err` names
/// an identity the policy does not declare.
pub fn apply_identity(workflow: &mut LoadedWorkflow, identity: &str) -> Result<Vec<String>, String> {
    let Some(mut narrowing) = Narrowing::new(workflow.plan.policy.as_ref(), identity)? else {
        return Ok(Vec::new());
    };
    let mut tools = BTreeMap::new();
    for (name, tool) in &workflow.tools {
        let mut t = LoadedTool::clone(tool);
        let what = format!("tool `{name}`");
        t.dirs = narrowing.dirs(&t.dirs, &what);
        t.env = narrowing.env(&t.env, &what);
        tools.insert(name.clone(), Arc::new(t));
    }
    for step in &mut workflow.steps {
        let mut s = LoadedStep::clone(step);
        let what = format!("step `{}`", s.spec.name);
        let mut granted = HashMap::new();
        let mut denied = BTreeMap::new();
        for name in &s.spec.tools {
            match tools.get(name) {
                Some(t) if narrowing.grants_tool(name) => {
                    granted.insert(name.clone(), Arc::clone(t));
                }
                _ => {
                    denied.insert(name.clone(), narrowing.refuse_tool(&what, name));
                }
            }
        }
        s.tools = Arc::new(granted);
        s.refused_tools = Arc::new(denied);
        s.dirs = narrowing.dirs(&s.dirs, &what);
        s.env = narrowing.env(&s.env, &what);
        s.spec.budget = narrowing.clip(s.spec.budget);
        *step = Arc::new(s);
    }
    for s in &mut workflow.plan.steps {
        s.budget = narrowing.clip(s.budget);
    }
    workflow.recorded_plan = Default::default();
    workflow.tools = tools;
    workflow.refused.clone_from(&narrowing.refused);
    Ok(narrowing.refused)
}

impl EnvValues {
    /// Values for `workflow`'s grants: recorded ones from `recorded` (resume, replay),
    /// otherwise from tether's environment.
    pub fn new(workflow: &LoadedWorkflow, recorded: Option<&BTreeMap<String, String>>) -> EnvValues {
        EnvValues::from_grants(env_grants(workflow), recorded)
    }

    /// What the journal records: non-secret values, and secrets as `[secret]`.
    pub(crate) fn journaled(&self, workflow: &LoadedWorkflow) -> BTreeMap<String, String> {
        self.journaled_with(|name| env_grants(workflow).any(|g| g.secret && g.name == name))
    }
}

/// Every environment grant of a workflow's steps and tools.
fn env_grants(workflow: &LoadedWorkflow) -> impl Iterator<Item = &EnvGrant> {
    let steps = workflow.steps.iter().flat_map(|s| s.env.iter());
    steps.chain(workflow.tools.values().flat_map(|t| t.env.iter()))
}
