//! The values of the environment variables a run's steps and tools were granted, with
//! the secrets among them kept out of the journal.

use std::collections::BTreeMap;
use std::sync::Arc;

use tether_types::policy::EnvGrant;

use crate::redact::REDACTED;

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
    /// Values for `grants` (every grant of a workflow's steps and tools): recorded ones
    /// from `recorded` (resume, replay), otherwise from tether's environment.
    pub(crate) fn from_grants<'a>(
        grants: impl Iterator<Item = &'a EnvGrant>,
        recorded: Option<&BTreeMap<String, String>>,
    ) -> EnvValues {
        let mut env = EnvValues::default();
        let mut secrets = Vec::new();
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

    /// What the journal records: non-secret values, and secrets (the names `secret`
    /// accepts) as `[secret]`.
    pub(crate) fn journaled_with(&self, secret: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
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
