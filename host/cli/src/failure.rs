//! How a command fails: the error that ends it and the exit code it implies, and how
//! the store's and the driver's errors map to them.

use tether_runtime::DriverError;
use tether_types::store::StoreError;

/// An error that ends the command, with the exit code it implies.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad usage or bad input (a manifest, a component, the run input): exit code 2.
    Usage(String),
    /// The host itself failed: exit code 1.
    Internal(String),
    /// Another tether process is executing the run: exit code 4.
    Busy(String),
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }
}

pub(crate) fn store_failure(e: StoreError) -> Failure {
    match e {
        StoreError::UnknownRun(_)
        | StoreError::BadUrl(_)
        | StoreError::NoJournal(_)
        | StoreError::NotOurs(_)
        | StoreError::NewerSchema(_)
        | StoreError::PluginConflict { .. }
        | StoreError::PluginInUse { .. }
        | StoreError::UnknownPlugin(_) => Failure::usage(e.to_string()),
        _ => Failure::Internal(e.to_string()),
    }
}

pub(crate) fn driver_failure(e: DriverError) -> Failure {
    match e {
        DriverError::Store(s) => store_failure(s),
        DriverError::Exists(_) | DriverError::InputTooLarge(_) => Failure::usage(e.to_string()),
        DriverError::Busy(_) => Failure::Busy(e.to_string()),
        DriverError::Load(m) if m.starts_with("--budget") => Failure::usage(m),
        other => Failure::Internal(other.to_string()),
    }
}

impl From<DriverError> for Failure {
    fn from(e: DriverError) -> Self {
        driver_failure(e)
    }
}
