use crate::bindings::tether::plugin::types as wit;

/// What kind of failure a step or tool reports. The host uses it to classify the failed
/// step and to decide whether it may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The input was malformed or violated the contract. Not retried.
    InvalidInput,
    /// Something looked for does not exist. Not retried.
    NotFound,
    /// A grant or policy refused the action. The step fails with class `denied`.
    Denied,
    /// A temporary condition; the step may be retried.
    Transient,
    /// A bug or unexpected state.
    Internal,
}

/// A typed failure returned by a step, a tool, or the host on a tool's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure this is.
    pub kind: FailureKind,
    /// A human-readable explanation, recorded with the run.
    pub message: String,
}

impl Failure {
    /// A failure of the given kind.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure { kind, message: message.into() }
    }
    /// The input was malformed or violated the contract.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(FailureKind::InvalidInput, message)
    }
    /// Something looked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(FailureKind::NotFound, message)
    }
    /// A grant or the host refused the action.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Denied, message)
    }
    /// A temporary condition that a retry may clear.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Transient, message)
    }
    /// A bug or unexpected state.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Internal, message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Failure {}

impl From<wit::Failure> for Failure {
    fn from(f: wit::Failure) -> Self {
        let kind = match f.kind {
            wit::FailureKind::InvalidInput => FailureKind::InvalidInput,
            wit::FailureKind::NotFound => FailureKind::NotFound,
            wit::FailureKind::Denied => FailureKind::Denied,
            wit::FailureKind::Transient => FailureKind::Transient,
            wit::FailureKind::Internal => FailureKind::Internal,
        };
        Failure { kind, message: f.message }
    }
}

impl From<Failure> for wit::Failure {
    fn from(f: Failure) -> Self {
        let kind = match f.kind {
            FailureKind::InvalidInput => wit::FailureKind::InvalidInput,
            FailureKind::NotFound => wit::FailureKind::NotFound,
            FailureKind::Denied => wit::FailureKind::Denied,
            FailureKind::Transient => wit::FailureKind::Transient,
            FailureKind::Internal => wit::FailureKind::Internal,
        };
        wit::Failure { kind, message: f.message }
    }
}

/// Decodes a JSON payload into `T`, or an `invalid-input` failure that says why.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, Failure> {
    serde_json::from_str(json)
        .map_err(|e| Failure::invalid_input(format!("{what} does not match the expected shape: {e}")))
}

/// Encodes `value` as JSON, or an `internal` failure.
pub(crate) fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::internal(format!("cannot encode {what} as JSON: {e}")))
}
