//! Names and versions of deployed plugins, and the `NAME@VERSION` references workflows
//! use for them. Pure: the store and the CLI both check against these rules.

/// The longest name or version accepted.
pub const MAX_LEN: usize = 64;

/// Checks a plugin name: lowercase letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid plugin name: use lowercase letters, digits, `-`, `_` and `.`, \
             starting with a letter or digit, at most {MAX_LEN} characters"
        ))
    }
}

/// Checks a plugin version: letters, digits, `.`, `-`, `_` and `+`, at most 64 characters
/// (semantic versions such as `1.2.0` or `2.0.0-rc.1` are the usual choice).
pub fn check_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= MAX_LEN
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{version}` is not a valid plugin version: use letters, digits, `.`, `-`, `_` and `+` \
             (for example 1.2.0), at most {MAX_LEN} characters"
        ))
    }
}

/// `NAME@VERSION`, split, if `s` is written as a plugin reference at all (an `@` and no
/// `/`, and not a `.wasm` file name). The parts are not checked: see [`check_name`].
pub fn split(s: &str) -> Option<(&str, &str)> {
    if s.contains('/') || s.ends_with(".wasm") || s.starts_with("sha256:") {
        return None;
    }
    s.split_once('@')
}

/// Parses `NAME@VERSION`, checking both parts.
pub fn parse(s: &str) -> Result<(&str, &str), String> {
    let (name, version) = split(s)
        .ok_or_else(|| format!("`{s}` is not a plugin reference: write NAME@VERSION, such as summarize@1.0.0"))?;
    check_name(name)?;
    check_version(version)?;
    Ok((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_and_check() {
        assert_eq!(parse("summarize@1.2.0"), Ok(("summarize", "1.2.0")));
        assert_eq!(parse("word-count@2.0.0-rc.1+build.5"), Ok(("word-count", "2.0.0-rc.1+build.5")));
        assert_eq!(split("plugins/a@b.wasm"), None, "a path with @ is still a path");
        assert_eq!(split("a@b.wasm"), None);
        assert_eq!(split("sha256:ab@c"), None);
        assert!(parse("Summarize@1").unwrap_err().contains("lowercase"));
        assert!(parse("-x@1").is_err());
        assert!(parse("x@").unwrap_err().contains("not a valid plugin version"));
        assert!(parse("x@1@2").is_err(), "a second @ is not part of a version");
        assert!(check_name(&"a".repeat(65)).is_err());
    }
}
