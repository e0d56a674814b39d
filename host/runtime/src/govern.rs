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
use tether_types::autonomy::Outcome;
use tether_types::event::EventKind;
use tether_types::plan::DirGrant;
use tether_types::policy::{DirAccess, EnvGrant, IdentityGrants, Policy, Rules};

use crate::load::{LoadedStep, LoadedTool, LoadedWorkflow};

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

/// What a journal shows instead of a secret's value.
pub const REDACTED: &str = "[secret]";

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

/// Replaces every secret value in `text` with `[secret]`; `None` if there is none.
///
/// Idempotent, so text redacted once (a log line, then the event that carries it) is
/// never changed again: a marker already in the text is kept as it is, even when a
/// secret's value occurs inside it, and where secrets overlap the longest one is replaced.
pub(crate) fn redact(text: &str, secrets: &[String]) -> Option<String> {
    if !secrets.iter().any(|s| !s.is_empty() && text.contains(s.as_str())) {
        return None;
    }
    let mut longest_first: Vec<&str> = secrets.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
    longest_first.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let (mut out, mut rest, mut changed) = (String::with_capacity(text.len()), text, false);
    while let Some(c) = rest.chars().next() {
        let skip = if rest.starts_with(REDACTED) {
            out.push_str(REDACTED);
            REDACTED.len()
        } else if let Some(secret) = longest_first.iter().find(|s| rest.starts_with(**s)) {
            out.push_str(REDACTED);
            changed = true;
            secret.len()
        } else {
            out.push(c);
            c.len_utf8()
        };
        rest = &rest[skip..];
    }
    changed.then_some(out)
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
    /// The gate's own approval of `request` (an `approval_requested`, of a step or a
    /// tool call), if its track record has earned it: decided in the core, in one place.
    pub(crate) fn auto_decision(&self, request: &EventKind) -> Option<EventKind> {
        tether_types::next::approvals::auto_decision(request, &self.policy, &self.outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn redaction_is_idempotent_even_when_a_secret_is_inside_the_marker() {
        let s = secrets(&["secret"]);
        let once = redact("authorizing with key secret", &s).unwrap();
        assert_eq!(once, "authorizing with key [secret]");
        assert_eq!(redact(&once, &s), None, "redacting again changes nothing");
    }

    #[test]
    fn overlapping_secrets_are_replaced_longest_first_and_clean_text_is_untouched() {
        let s = secrets(&["abc", "abcdef", ""]);
        assert_eq!(redact("x abcdef y abc", &s).unwrap(), "x [secret] y [secret]");
        assert_eq!(redact("nothing here", &s), None);
        assert_eq!(redact("ünïcode abc ✓", &s).unwrap(), "ünïcode [secret] ✓");
    }
}
