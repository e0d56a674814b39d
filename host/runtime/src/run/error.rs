//! What can go wrong in a durable operation (start, resume, replay, a decision).

use tether_types::chain::JournalError;
use tether_types::state::FoldError;
use tether_types::store::StoreError;

use crate::durable::lease::TakeError;

/// Why a durable operation could not be carried out. The run (if any) is left as the
/// journal says, so it can be resumed once the cause is fixed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The journal store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal is corrupted or was tampered with.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal's events do not make a run.
    #[error(transparent)]
    Fold(#[from] FoldError),
    /// A recorded or given component cannot be loaded.
    #[error("{0}")]
    Load(String),
    /// A raise names a budget the run does not have.
    #[error("this run has no `{metric}` budget to raise (it has: {has})")]
    NoBudget {
        /// The budget named.
        metric: String,
        /// The run's budgets, in words.
        has: String,
    },
    /// A replacement component names a step the run does not have.
    #[error("this run has no step `{name}` (its steps: {steps})")]
    NoStep {
        /// The step named.
        name: String,
        /// The run's steps, in words.
        steps: String,
    },
    /// The run id is taken.
    #[error("run {0} already exists")]
    Exists(String),
    /// The run cannot start with this input: its first event would be too large to journal.
    #[error("{0}")]
    InputTooLarge(String),
    /// Another live host is executing the run.
    #[error(transparent)]
    Busy(TakeError),
    /// The host is stopping: the run's attempts that were running ended, nothing new was
    /// started, and the run is left, durable, for a host to resume.
    #[error("the host is stopping; the run is left to resume")]
    Stopped,
}

impl From<TakeError> for DriverError {
    fn from(e: TakeError) -> Self {
        match e {
            TakeError::Store(s) => DriverError::Store(s),
            busy => DriverError::Busy(busy),
        }
    }
}
