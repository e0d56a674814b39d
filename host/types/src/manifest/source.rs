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

pub(crate) fn toml_hint(message: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some("check the spelling; the fields this table accepts are listed above".into())
    } else if message.contains("missing field") {
        Some("add the field; see the workflow format in the README".into())
    } else {
        None
    }
}
