//! Typed identifiers. A run id carries the `run_` prefix so it cannot be confused with
//! any other id in logs, JSON output or the journal.

use serde::{Deserialize, Serialize};

/// Identifies one run of a workflow. Created by the caller (for example from a UUIDv7,
/// which sorts by creation time) and validated here.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// The prefix every run id starts with.
    pub const PREFIX: &'static str = "run_";

    /// Builds a run id from a unique suffix (letters, digits, `-`).
    pub fn from_suffix(suffix: &str) -> Result<Self, String> {
        Self::try_from(format!("{}{suffix}", Self::PREFIX))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let suffix = s.strip_prefix(Self::PREFIX).ok_or_else(|| format!("run id `{s}` does not start with `run_`"))?;
        if suffix.is_empty() || suffix.len() > 64 || !suffix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("run id `{s}` must be `run_` followed by 1-64 letters, digits or `-`"));
        }
        Ok(RunId(s))
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_need_prefix_and_safe_suffix() {
        assert!(RunId::from_suffix("0193a-ff").is_ok());
        assert!(RunId::try_from("step_1".to_string()).is_err());
        assert!(RunId::from_suffix("").is_err());
        assert!(RunId::from_suffix("a b").is_err());
    }
}
