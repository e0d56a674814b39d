//! What a use case can refuse or fail with, as data. Messages name concepts (a run, a
//! gate, an identity), never a command or a flag: the CLI adds its hints ("`tether runs`
//! lists the runs"), the server its status codes, each from the variant and its fields.

use tether_runtime::DriverError;
use tether_types::store::StoreError;

/// Why a use case was refused or failed. Every refusal leaves the journal as it was.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No run has this id, and none starts with it.
    #[error("unknown run `{given}`")]
    UnknownRun {
        /// What was given.
        given: String,
    },
    /// Several runs start with what was given.
    #[error("`{given}` is the start of {} runs ({}); give more of the id", matches.len(), shown(matches))]
    AmbiguousRun {
        /// What was given.
        given: String,
        /// The runs it could mean.
        matches: Vec<String>,
    },
    /// The run is over, so it takes no decision or cancel.
    #[error("run {run} has ended ({status})")]
    RunEnded {
        /// The run.
        run: String,
        /// How it ended.
        status: String,
    },
    /// The run has no request at this gate (or with this id).
    #[error("run {run} has no request at gate `{gate}`; {}", waiting_text(waiting))]
    NoRequest {
        /// The run.
        run: String,
        /// The gate or request id given.
        gate: String,
        /// What the run does wait on: `(gate, request id)`.
        waiting: Vec<(String, String)>,
    },
    /// The gate has several requests; one must be named by its id.
    #[error("run {run} has several {} requests at gate `{gate}`; name one: {}", if *decided { "decided" } else { "open" }, ids.join(", "))]
    SeveralRequests {
        /// The run.
        run: String,
        /// The gate.
        gate: String,
        /// The requests' ids.
        ids: Vec<String>,
        /// Whether they are all decided already.
        decided: bool,
    },
    /// The request was decided before this decision arrived.
    #[error("run {run}: request {request} at gate `{gate}` was already decided by {}", by_text(by))]
    AlreadyDecided {
        /// The run.
        run: String,
        /// The request.
        request: String,
        /// Its gate.
        gate: String,
        /// Who decided it.
        by: Vec<String>,
    },
    /// The identity is not one the run's policy declares.
    #[error("identity `{identity}` is not declared by the run's policy (it declares: {})", list_or(declared, "none"))]
    UnknownIdentity {
        /// Who tried.
        identity: String,
        /// The identities the policy declares.
        declared: Vec<String>,
    },
    /// The identity may not decide this gate under the policy the run started with.
    #[error("identity `{identity}` may not decide gate `{gate}` (allowed: {})", list_or(allowed, "nobody"))]
    NotApprover {
        /// Who tried.
        identity: String,
        /// The gate.
        gate: String,
        /// Who may.
        allowed: Vec<String>,
    },
    /// The identity approved this request already; the gate needs distinct approvers.
    #[error("{identity} already approved request {request}; gate `{gate}` needs {needed} different approvers")]
    AlreadyApproved {
        /// Who.
        identity: String,
        /// The request.
        request: String,
        /// Its gate.
        gate: String,
        /// Distinct approvers it needs.
        needed: u32,
    },
    /// Only a relaxed gate's own (automatic) approvals can be overridden.
    #[error(
        "request {request} was not approved automatically; only a relaxed gate's own approvals can be \
         overridden after the fact"
    )]
    NotAutomatic {
        /// The request.
        request: String,
    },
    /// An automatic approval counts against its gate once.
    #[error("request {request} was already overridden (by {by}); an automatic approval counts against its gate once")]
    AlreadyOverridden {
        /// The request.
        request: String,
        /// Who overrode it.
        by: String,
    },
    /// An edited proposal does not have the shape of the proposal it replaces.
    #[error("the edited proposal for request {request} does not fit what it replaces: {}", problems.join("; "))]
    BadPayload {
        /// The request.
        request: String,
        /// Each mismatch, with its JSON pointer.
        problems: Vec<String>,
    },
    /// A component deployed without a version declares none either.
    #[error("{origin}: the component declares no version, and none was given")]
    NoVersion {
        /// Where the component came from.
        origin: String,
    },
    /// A new project would be written into a directory that holds files.
    #[error("{}: the directory exists and is not empty", dir.display())]
    DirectoryNotEmpty {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// Input the use case cannot take: a workflow, a policy, a component, the run input.
    /// The text names the file, line or field.
    #[error("{0}")]
    BadInput(String),
    /// Another live host executes the run.
    #[error("{0}")]
    Busy(String),
    /// The journal is damaged or does not make a run.
    #[error("{0}")]
    Corrupt(String),
    /// The journal store failed or refused.
    #[error(transparent)]
    Store(StoreError),
    /// Running, resuming or replaying failed in the host.
    #[error(transparent)]
    Driver(DriverError),
    /// The request changed after the decider read it (someone else decided or edited it).
    #[error(
        "run {run}: request {request} changed since version {seen} (it is at version {now}); read it again and \
         decide on what it is now"
    )]
    Stale {
        /// The run.
        run: String,
        /// The request.
        request: String,
        /// The version the decider saw.
        seen: u64,
        /// Its version now.
        now: u64,
    },
    /// The service is stopping and takes no new work.
    #[error("the service is stopping and takes no new work; ask again once it is back")]
    Stopping,
}

/// What an error means for whoever asked: their mistake, a busy run, or the host's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong or does not fit the journal: fix it and ask again.
    Usage,
    /// Another host executes the run: wait, or ask later.
    Busy,
    /// The request does not fit the run as it is now (decided, ended, changed): read it
    /// again.
    Conflict,
    /// The identity may not do this.
    Forbidden,
    /// The service cannot take it now (it is stopping): ask again later.
    Unavailable,
    /// The host or the journal failed.
    Internal,
}

impl AppError {
    /// What the error means for the caller.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AppError::Busy(_) => ErrorKind::Busy,
            AppError::RunEnded { .. }
            | AppError::AlreadyDecided { .. }
            | AppError::AlreadyApproved { .. }
            | AppError::AlreadyOverridden { .. }
            | AppError::Stale { .. } => ErrorKind::Conflict,
            AppError::NotApprover { .. } | AppError::UnknownIdentity { .. } => ErrorKind::Forbidden,
            AppError::Stopping => ErrorKind::Unavailable,
            AppError::Driver(DriverError::Stopped) => ErrorKind::Unavailable,
            AppError::Corrupt(_) => ErrorKind::Internal,
            AppError::Store(e) => store_kind(e),
            AppError::Driver(DriverError::Store(e)) => store_kind(e),
            AppError::Driver(DriverError::Busy(_)) => ErrorKind::Busy,
            AppError::Driver(
                DriverError::Exists(_)
                | DriverError::InputTooLarge(_)
                | DriverError::NoBudget { .. }
                | DriverError::NoStep { .. },
            ) => ErrorKind::Usage,
            AppError::Driver(_) => ErrorKind::Internal,
            _ => ErrorKind::Usage,
        }
    }
}

impl AppError {
    /// A stable name for the error, for scripts and the API's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::UnknownRun { .. } => "unknown_run",
            AppError::AmbiguousRun { .. } => "ambiguous_run",
            AppError::RunEnded { .. } => "run_ended",
            AppError::NoRequest { .. } => "no_request",
            AppError::SeveralRequests { .. } => "several_requests",
            AppError::AlreadyDecided { .. } => "already_decided",
            AppError::UnknownIdentity { .. } => "unknown_identity",
            AppError::NotApprover { .. } => "not_approver",
            AppError::AlreadyApproved { .. } => "already_approved",
            AppError::NotAutomatic { .. } => "not_automatic",
            AppError::AlreadyOverridden { .. } => "already_overridden",
            AppError::BadPayload { .. } => "bad_payload",
            AppError::Stale { .. } => "stale_decision",
            AppError::Stopping | AppError::Driver(DriverError::Stopped) => "stopping",
            _ => match self.kind() {
                ErrorKind::Busy => "busy",
                ErrorKind::Internal => "internal",
                _ => "invalid_request",
            },
        }
    }
}

fn store_kind(e: &StoreError) -> ErrorKind {
    match e {
        StoreError::UnknownRun(_)
        | StoreError::BadUrl(_)
        | StoreError::NoJournal(_)
        | StoreError::NotOurs(_)
        | StoreError::NewerSchema(_)
        | StoreError::PluginConflict { .. }
        | StoreError::PluginInUse { .. }
        | StoreError::UnknownPlugin(_)
        | StoreError::TokenExists(_)
        | StoreError::UnknownToken(_) => ErrorKind::Usage,
        _ => ErrorKind::Internal,
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownRun(given) => AppError::UnknownRun { given },
            other => AppError::Store(other),
        }
    }
}

impl From<DriverError> for AppError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Store(s) => s.into(),
            DriverError::Busy(busy) => AppError::Busy(busy.to_string()),
            DriverError::Journal(j) => AppError::Corrupt(j.to_string()),
            DriverError::Fold(f) => AppError::Corrupt(f.to_string()),
            other => AppError::Driver(other),
        }
    }
}

impl From<tether_types::state::FoldError> for AppError {
    fn from(e: tether_types::state::FoldError) -> Self {
        AppError::Corrupt(e.to_string())
    }
}

impl From<tether_types::chain::JournalError> for AppError {
    fn from(e: tether_types::chain::JournalError) -> Self {
        AppError::Corrupt(e.to_string())
    }
}

fn shown(list: &[String]) -> String {
    let mut text = list.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if list.len() > 5 {
        text.push_str(&format!(" and {} more", list.len() - 5));
    }
    text
}

fn list_or(list: &[String], none: &str) -> String {
    if list.is_empty() {
        none.to_string()
    } else {
        list.join(", ")
    }
}

fn by_text(by: &[String]) -> String {
    if by.is_empty() {
        "nobody".into()
    } else {
        by.join(" and ")
    }
}

fn waiting_text(waiting: &[(String, String)]) -> String {
    if waiting.is_empty() {
        "it is not waiting for any approval".into()
    } else {
        let at: Vec<String> = waiting.iter().map(|(gate, id)| format!("{gate} ({id})")).collect();
        format!("it waits at: {}", at.join(", "))
    }
}
