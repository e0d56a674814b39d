//! Governance in the runtime: narrowing a loaded workflow to what the run's identity is
//! granted, the values of granted environment variables (secrets kept out of the
//! journal), and what tool-call checkpoints need (the rules, the identity, and the gates'
//! track records for earned autonomy).
//!
//! Without a policy, or with a policy that declares no identities, the workflow's own
//! declarations are the grants (a step still gets only the tools, directories and
//! variables it lists). With identities, the run's identity must be one of them and gets
//! the intersection of what the workflow declares and what the identity is granted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tether_types::autonomy::{Outcome, TrackRecord};
use tether_types::plan::DirGrant;
use tether_types::policy::{DirAccess, EnvGrant, IdentityGrants, Policy, Rules};

use crate::load::{LoadedStep, LoadedTool, LoadedWorkflow};
use crate::redact::REDACTED;

/// Narrows `workflow` to what `identity` is granted; returns every declared grant it
/// refused (tools stay listed as refused so a call says why it was denied). `Err` names
/// an identity the policy does not declare.
pub fn apply_identity(workflow: &mut LoadedWorkflow, identity: &str) -> Result<Vec<String>, String> {
    let Some(policy) = workflow.plan.policy.as_ref().filter(|p| !p.identities.is_empty()) else {
        return Ok(Vec::new());
    };
    let Some(grants) = policy.identities.get(identity).cloned() else {
        let known: Vec<&str> = policy.identities.keys().map(String::as_str).collect();
        return Err(format!(
            "identity `{identity}` is not declared by the run's policy (it declares: {}); pass one with --as",
            known.join(", ")
        ));
    };
    let mut refused = Vec::new();
    let mut tools = BTreeMap::new();
    for (name, tool) in &workflow.tools {
        let mut t = LoadedTool::clone(tool);
        t.dirs = narrow_dirs(&t.dirs, &grants.dirs, &format!("tool `{name}`"), &mut refused);
        t.env = narrow_env(&t.env, &grants, &format!("tool `{name}`"), &mut refused);
        tools.insert(name.clone(), Arc::new(t));
    }
    for step in &mut workflow.steps {
        let mut s = LoadedStep::clone(step);
        let what = format!("step `{}`", s.spec.name);
        let mut granted = HashMap::new();
        let mut denied = BTreeMap::new();
        for name in &s.spec.tools {
            match tools.get(name) {
                Some(t) if grants.tools.iter().any(|g| g == name) => {
                    granted.insert(name.clone(), Arc::clone(t));
                }
                _ => {
                    refused.push(format!("{what}: tool `{name}`"));
                    denied.insert(name.clone(), format!("identity `{identity}` is not granted tool `{name}`"));
                }
            }
        }
        s.tools = Arc::new(granted);
        s.refused_tools = Arc::new(denied);
        s.dirs = narrow_dirs(&s.dirs, &grants.dirs, &what, &mut refused);
        s.env = narrow_env(&s.env, &grants, &what, &mut refused);
        if let Some(ceiling) = &grants.budget {
            s.spec.budget = ceiling.clip(s.spec.budget);
        }
        *step = Arc::new(s);
    }
    if let Some(ceiling) = &grants.budget {
        for s in &mut workflow.plan.steps {
            s.budget = ceiling.clip(s.budget);
        }
    }
    workflow.tools = tools;
    workflow.refused.clone_from(&refused);
    Ok(refused)
}

/// Each declared directory is kept if a granted directory contains it; a write grant is
/// needed to keep it writable (otherwise it is kept read-only, and the write refused).
fn narrow_dirs(declared: &[DirGrant], granted: &[DirAccess], what: &str, refused: &mut Vec<String>) -> Vec<DirGrant> {
    let mut kept = Vec::new();
    for d in declared {
        let covering: Vec<&DirAccess> =
            granted.iter().filter(|g| Path::new(&d.host).starts_with(Path::new(&g.host))).collect();
        if covering.is_empty() {
            refused.push(format!("{what}: directory {}", d.host));
            continue;
        }
        let write = d.write && covering.iter().any(|g| g.write);
        if d.write && !write {
            refused.push(format!("{what}: writing to directory {}", d.host));
        }
        kept.push(DirGrant { write, ..d.clone() });
    }
    kept
}

fn narrow_env(declared: &[EnvGrant], grants: &IdentityGrants, what: &str, refused: &mut Vec<String>) -> Vec<EnvGrant> {
    declared
        .iter()
        .filter_map(|d| match grants.env.iter().find(|g| g.name == d.name) {
            Some(g) => Some(g.clone()),
            None => {
                refused.push(format!("{what}: environment variable {}", d.name));
                None
            }
        })
        .collect()
}

/// The values of the environment variables a run's steps and tools were granted.
/// Non-secret values are read once, when the run starts, and journaled (so resume and
/// replay see the same); a secret is read from tether's environment each time and
/// never journaled.
#[derive(Clone, Debug, Default)]
pub struct EnvValues {
    values: BTreeMap<String, String>,
    secrets: Arc<Vec<String>>,
}

impl EnvValues {
    /// Values for `workflow`'s grants: recorded ones from `recorded` (resume, replay),
    /// otherwise from tether's environment.
    pub fn new(workflow: &LoadedWorkflow, recorded: Option<&BTreeMap<String, String>>) -> EnvValues {
        let mut env = EnvValues::default();
        let mut secrets = Vec::new();
        let grants = env_grants(workflow);
        for g in grants {
            let value = match (g.secret, recorded) {
                (false, Some(r)) => r.get(&g.name).cloned(),
                _ => std::env::var(&g.name).ok(),
            };
            if let Some(v) = value {
                if g.secret && !v.is_empty() && !secrets.contains(&v) {
                    secrets.push(v.clone());
                }
                env.values.insert(g.name.clone(), v);
            }
        }
        env.secrets = Arc::new(secrets);
        env
    }

    /// What the journal records: non-secret values, and secrets as `[secret]`.
    pub(crate) fn journaled(&self, workflow: &LoadedWorkflow) -> BTreeMap<String, String> {
        let secret = |name: &str| env_grants(workflow).any(|g| g.secret && g.name == name);
        self.values.iter().map(|(k, v)| (k.clone(), if secret(k) { REDACTED.to_string() } else { v.clone() })).collect()
    }

    /// The (name, value) pairs for a component granted `grants`.
    pub(crate) fn for_grants(&self, grants: &[EnvGrant]) -> Vec<(String, String)> {
        grants.iter().filter_map(|g| self.values.get(&g.name).map(|v| (g.name.clone(), v.clone()))).collect()
    }

    /// The secret values, to redact wherever text leaves the sandbox.
    pub(crate) fn secrets(&self) -> Arc<Vec<String>> {
        Arc::clone(&self.secrets)
    }
}

/// Every environment grant of a workflow's steps and tools.
fn env_grants(workflow: &LoadedWorkflow) -> impl Iterator<Item = &EnvGrant> {
    let steps = workflow.steps.iter().flat_map(|s| s.env.iter());
    steps.chain(workflow.tools.values().flat_map(|t| t.env.iter()))
}

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

impl Governance {
    /// The record that lets `gate` approve a request of `class` by itself, if it has earned that.
    pub(crate) fn auto_approval(&self, gate: &str, class: Option<&str>) -> Option<TrackRecord> {
        let relax = self.policy.gates.get(gate)?.relax_after.as_ref()?;
        let record = tether_types::autonomy::record(&self.outcomes, gate, class.filter(|_| relax.per.is_some()));
        record.meets(relax).then_some(record)
    }
}
