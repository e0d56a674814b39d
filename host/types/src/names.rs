//! The rule for the names a workflow or policy gives (workflows, steps, tools, gates,
//! identities), in one place: the manifest, the policy and the CLI's `--as` agree on it.

/// Checks a name: 1-64 lowercase letters, digits, `-` or `_`, starting with a letter or
/// digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` must be 1-64 lowercase letters, digits, `-` or `_`, starting with a letter or digit"))
    }
}
