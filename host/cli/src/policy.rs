//! The policy a run starts with: the workflow's own `[policy]` table merged with its
//! policy file (or `--policy`), directory grants resolved against where each was written.

use std::path::Path;

use tether_types::Workflow;

use crate::failure::Failure;

/// The policy a run starts with: the workflow's `[policy]`, plus the policy file
/// (`--policy`, or the workflow's `policy_file`). Directory grants are made absolute
/// from the file that declares them. Every gate a rule or step names must be declared.
pub(crate) fn effective_policy(workflow: &mut Workflow, file: Option<&Path>, base: &Path) -> Result<(), Failure> {
    policy_problems(workflow, file, base).map_err(|problems| match problems {
        PolicyProblems::Positioned(list) => {
            Failure::usage(list.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        }
        PolicyProblems::Other(failure) => failure,
    })
}

/// Why the policy could not be assembled: problems with a place in a file (the policy
/// file's own line and column), or a failure to read it.
pub(crate) enum PolicyProblems {
    Positioned(Vec<tether_types::ManifestError>),
    Other(Failure),
}

/// [`effective_policy`], keeping each problem's file and position (for `validate --json`).
pub(crate) fn policy_problems(workflow: &mut Workflow, file: Option<&Path>, base: &Path) -> Result<(), PolicyProblems> {
    let from_workflow = workflow.policy_file.as_ref().map(|f| base.join(f));
    let file = file.map(Path::to_path_buf).or(from_workflow);
    let mut parsed = std::mem::take(&mut workflow.policy);
    resolve_dirs(&mut parsed.policy, base);
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = crate::files::read_text(&path, crate::files::TEXT_LIMIT, "the policy file")
            .map_err(PolicyProblems::Other)?;
        let mut from_file =
            tether_types::manifest::ParsedPolicy::parse(&shown, &text).map_err(|e| PolicyProblems::Positioned(e.0))?;
        resolve_dirs(&mut from_file.policy, path.parent().unwrap_or(Path::new(".")));
        parsed = parsed.merge(from_file, &shown).map_err(|m| PolicyProblems::Other(Failure::usage(m)))?;
    }
    let missing = parsed.missing_gates();
    if !missing.is_empty() {
        return Err(PolicyProblems::Positioned(missing));
    }
    workflow.policy = parsed;
    Ok(())
}

fn resolve_dirs(policy: &mut tether_types::policy::Policy, base: &Path) {
    for grants in policy.identities.values_mut() {
        for d in &mut grants.dirs {
            let joined = base.join(&d.host);
            d.host = std::fs::canonicalize(&joined).unwrap_or(joined).display().to_string();
        }
    }
}
