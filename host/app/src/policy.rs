//! The policy a run starts with: the workflow's own `[policy]` table merged with its
//! policy file (given, or the workflow's `policy_file`), directory grants resolved against
//! the file that declares them.

use std::path::Path;

use tether_types::{ManifestError, Workflow};

/// Policy and workflow files are read up to this size.
pub const TEXT_LIMIT: u64 = 1 << 20;

/// Why the policy could not be assembled.
#[derive(Debug)]
pub enum PolicyProblems {
    /// Problems with a place in a file (the policy file's own line and column).
    Positioned(Vec<ManifestError>),
    /// The policy file could not be read, or does not merge with the workflow's.
    Unusable(String),
}

impl std::fmt::Display for PolicyProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyProblems::Positioned(list) => {
                let lines: Vec<String> = list.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
            PolicyProblems::Unusable(text) => f.write_str(text),
        }
    }
}

/// Sets `workflow.policy` to the policy its runs start with: its `[policy]`, plus the
/// policy file (`file`, or the workflow's `policy_file`, relative to `base`). Every gate
/// a rule or step names must be declared.
pub fn assemble(workflow: &mut Workflow, file: Option<&Path>, base: &Path) -> Result<(), PolicyProblems> {
    let from_workflow = workflow.policy_file.as_ref().map(|f| base.join(f));
    let file = file.map(Path::to_path_buf).or(from_workflow);
    let mut parsed = std::mem::take(&mut workflow.policy);
    resolve_dirs(&mut parsed.policy, base);
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = read_text(&path, "the policy file").map_err(PolicyProblems::Unusable)?;
        let mut from_file =
            tether_types::manifest::ParsedPolicy::parse(&shown, &text).map_err(|e| PolicyProblems::Positioned(e.0))?;
        resolve_dirs(&mut from_file.policy, path.parent().unwrap_or(Path::new(".")));
        parsed = parsed.merge(from_file, &shown).map_err(PolicyProblems::Unusable)?;
    }
    let missing = parsed.missing_gates();
    if !missing.is_empty() {
        return Err(PolicyProblems::Positioned(missing));
    }
    workflow.policy = parsed;
    Ok(())
}

/// A UTF-8 text file of at most [`TEXT_LIMIT`] bytes; `what` names it in errors.
pub fn read_text(path: &Path, what: &str) -> Result<String, String> {
    let bytes = tether_runtime::files::read_limited(path, TEXT_LIMIT, what)
        .map_err(|problem| format!("cannot read {what} {}: {problem}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| format!("{}: {what} is not UTF-8 text: {e}", path.display()))
}

fn resolve_dirs(policy: &mut tether_types::policy::Policy, base: &Path) {
    for grants in policy.identities.values_mut() {
        for d in &mut grants.dirs {
            let joined = base.join(&d.host);
            d.host = std::fs::canonicalize(&joined).unwrap_or(joined).display().to_string();
        }
    }
}
