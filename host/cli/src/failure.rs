//! How a command fails: the error that ends it and the exit code it implies. The
//! application's errors name concepts; here each gets the command-line hint that says
//! what to type next.

use tether_app::{AppError, ErrorKind};
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
    app_failure(e.into())
}

/// The application's error, with the hint a person at a shell needs.
pub(crate) fn app_failure(e: AppError) -> Failure {
    let hint = match &e {
        AppError::UnknownRun { .. } => Some("`tether runs` lists the runs in this journal".to_string()),
        AppError::AlreadyDecided { run, .. } => Some(format!("see `tether history {run}`")),
        AppError::NotApprover { gate, .. } => Some(format!(
            "grant it with approves = [\"{gate}\"] in the policy, for runs started after that: a run keeps the \
             policy it started with"
        )),
        AppError::BadPayload { .. } => {
            Some("send the whole proposal with your changes (`tether inbox --json` shows it)".to_string())
        }
        AppError::Driver(DriverError::Exists(run)) => Some(format!("continue it with `tether resume {run}`")),
        AppError::Store(StoreError::PluginConflict { .. }) => Some("add it under a new --version".to_string()),
        AppError::Store(StoreError::PluginInUse { .. }) => {
            Some("finish them with `tether resume`, `tether approve` or `tether reject` first".to_string())
        }
        AppError::Store(StoreError::UnknownPlugin(_)) => {
            Some("`tether plugin list` shows what is deployed".to_string())
        }
        AppError::DirectoryNotEmpty { .. } => Some("choose another with --dir".to_string()),
        AppError::Busy(_) => Some("wait for it with --wait 60s, or let it finish".to_string()),
        _ => None,
    };
    let message = match (&e, hint) {
        (AppError::Driver(DriverError::NoBudget { metric, .. }), _) => format!("--budget {metric}: {e}"),
        (AppError::Driver(DriverError::NoStep { name, steps }), _) => {
            format!("--with names step `{name}`, which this run does not have (its steps: {steps})")
        }
        (_, Some(hint)) => format!("{e}; {hint}"),
        (_, None) => e.to_string(),
    };
    match e.kind() {
        ErrorKind::Usage | ErrorKind::Conflict | ErrorKind::Forbidden => Failure::Usage(message),
        ErrorKind::Busy | ErrorKind::Unavailable => Failure::Busy(message),
        ErrorKind::Internal => Failure::Internal(message),
    }
}

pub(crate) fn driver_failure(e: DriverError) -> Failure {
    app_failure(e.into())
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        app_failure(e)
    }
}

impl From<DriverError> for Failure {
    fn from(e: DriverError) -> Self {
        driver_failure(e)
    }
}
