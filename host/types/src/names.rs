//! The rule for the names a workflow or policy gives (workflows, steps, tools, gates,
//! identities), in one place: the manifest, the policy and the CLI's `--as` agree on it.

/// Whether `name` can be an environment variable's name: letters, digits and `_`.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

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

/// A name that keeps the rule, made from one that does not: lowercased, other characters
/// as `-`, cut to 64; for hints ("rename it, for example `refund-check`").
pub fn suggest(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(64).collect();
    if out.is_empty() {
        out = "step-1".into();
    }
    out
}

/// The hint for a name that breaks the rule.
pub fn rename_hint(name: &str) -> String {
    format!("rename it, for example `{}`", suggest(name))
}

#[cfg(test)]
mod tests {
    use super::{check_name, suggest};

    #[test]
    fn a_suggested_name_keeps_the_rule() {
        for bad in ["Refund Check", "", "   ", "-x-", "ÄÖ name!", "a/b\\c", &"x".repeat(100), "UPPER_case"] {
            let s = suggest(bad);
            assert_eq!(check_name(&s), Ok(()), "{bad:?} -> {s:?}");
        }
        assert_eq!(suggest("Refund Check"), "refund-check");
        assert_eq!(suggest("UPPER_case"), "upper_case");
    }
}
