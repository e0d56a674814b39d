//! Grants narrowed to the run's identity.
//!
//! Without a policy, or with a policy that declares no identities, the workflow's own
//! declarations are the grants (a step still gets only the tools, directories and
//! variables it lists). With identities, the run's identity must be one of them and gets
//! the intersection of what the workflow declares and what the identity is granted.
//! What is decided here; the crate's `identity.rs` applies it to a loaded workflow.

use std::path::Path;

use tether_types::plan::DirGrant;
use tether_types::policy::{DirAccess, EnvGrant, IdentityGrants, Policy};
use tether_types::StepBudget;

/// What one identity is granted, and every declared grant refused so far.
pub(crate) struct Narrowing {
    identity: String,
    grants: IdentityGrants,
    /// Each refused grant, as `WHAT: GRANT` (`step `fetch`: directory /data`).
    pub(crate) refused: Vec<String>,
}

impl Narrowing {
    /// How `policy` narrows the grants of a run as `identity`: `None` when it does not
    /// (no policy, or one that declares no identities). `Err` names an identity the
    /// policy does not declare.
    pub(crate) fn new(policy: Option<&Policy>, identity: &str) -> Result<Option<Narrowing>, String> {
        let Some(policy) = policy.filter(|p| !p.identities.is_empty()) else {
            return Ok(None);
        };
        let Some(grants) = policy.identities.get(identity).cloned() else {
            let known: Vec<&str> = policy.identities.keys().map(String::as_str).collect();
            return Err(format!(
                "identity `{identity}` is not declared by the run's policy (it declares: {}); pass one with --as",
                known.join(", ")
            ));
        };
        Ok(Some(Narrowing { identity: identity.to_string(), grants, refused: Vec::new() }))
    }

    /// Whether the identity is granted tool `name`.
    pub(crate) fn grants_tool(&self, name: &str) -> bool {
        self.grants.tools.iter().any(|g| g == name)
    }

    /// Records that `what` may not use tool `name`; returns what a call of it is told.
    pub(crate) fn refuse_tool(&mut self, what: &str, name: &str) -> String {
        self.refused.push(format!("{what}: tool `{name}`"));
        format!("identity `{}` is not granted tool `{name}`", self.identity)
    }

    /// Each declared directory is kept if a granted directory contains it; a write grant
    /// is needed to keep it writable (otherwise it is kept read-only, and the write refused).
    pub(crate) fn dirs(&mut self, declared: &[DirGrant], what: &str) -> Vec<DirGrant> {
        let granted: &[DirAccess] = &self.grants.dirs;
        let mut kept = Vec::new();
        for d in declared {
            let covering: Vec<&DirAccess> =
                granted.iter().filter(|g| Path::new(&d.host).starts_with(Path::new(&g.host))).collect();
            if covering.is_empty() {
                self.refused.push(format!("{what}: directory {}", d.host));
                continue;
            }
            let write = d.write && covering.iter().any(|g| g.write);
            if d.write && !write {
                self.refused.push(format!("{what}: writing to directory {}", d.host));
            }
            kept.push(DirGrant { write, ..d.clone() });
        }
        kept
    }

    /// The declared environment variables the identity is granted, as it grants them
    /// (which makes a variable secret).
    pub(crate) fn env(&mut self, declared: &[EnvGrant], what: &str) -> Vec<EnvGrant> {
        let mut kept = Vec::new();
        for d in declared {
            match self.grants.env.iter().find(|g| g.name == d.name) {
                Some(g) => kept.push(g.clone()),
                None => self.refused.push(format!("{what}: environment variable {}", d.name)),
            }
        }
        kept
    }

    /// A step's budget within the identity's ceiling, if it has one.
    pub(crate) fn clip(&self, budget: StepBudget) -> StepBudget {
        match &self.grants.budget {
            Some(ceiling) => ceiling.clip(budget),
            None => budget,
        }
    }
}
