//! Where a manifest problem is: the file, line and column of a span, and the hints for
//! the parser's own messages.

use std::ops::Range;

#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub(crate) file: String,
    pub(crate) text: String,
}

/// One problem in a manifest, with its position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct ManifestError {
    /// The manifest file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

/// Every problem found in a manifest (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl Source {
    pub(crate) fn error(&self, span: Range<usize>, message: &str, hint: Option<String>) -> ManifestError {
        let (line, column) = line_column(&self.text, span.start);
        ManifestError { file: self.file.clone(), line, column, message: message.to_string(), hint }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A hint for every message of the TOML parser: what to do at the place it points to.
pub(crate) fn toml_hint(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let hint = if m.contains("unknown field") {
        "check the spelling; the message lists the fields this table accepts"
    } else if m.contains("missing field") {
        "add the field; see the workflow format in the README"
    } else if m.contains("unknown variant") {
        "use one of the values the message lists"
    } else if m.contains("duplicate key") || m.contains("duplicate") {
        "each key and table may appear once; remove or rename the second"
    } else if m.contains("is not a duration") || m.contains("is not a size") || m.contains("size unit") {
        "write it with a unit, as the message shows"
    } else if m.contains("invalid type") {
        "write the value as the type the message expects: numbers bare, text in quotes, lists in [ ]"
    } else if m.contains("unterminated") || m.contains("unclosed") || m.contains("missing `\"`") {
        "close the string, list or table that starts here"
    } else if m.contains("invalid escape") || m.contains("invalid unicode") {
        "inside \"...\" write a backslash as \\\\, or use '...' for text with backslashes"
    } else {
        "this is not valid TOML at this line and column; compare it with the examples in the README"
    };
    Some(hint.into())
}
