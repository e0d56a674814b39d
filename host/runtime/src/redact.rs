//! Secret values out of text. Applied where text leaves a sandbox (log lines, failure
//! messages) and before an event is sealed into the journal; which values are secret is
//! decided by governance (the environment grants marked secret). A leaf, so every layer
//! that lets text out can apply it.

/// What a journal shows instead of a secret's value.
pub(crate) const REDACTED: &str = "[secret]";

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
