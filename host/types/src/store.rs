//! The storage traits: what the host needs from a journal, and nothing more. SQL lives
//! only in the implementations (`tether-store`), which share one schema and one test
//! suite across SQLite and PostgreSQL.

use crate::event::{SealedEvent, StoredEvent};
use crate::ids::RunId;

/// Status of a run as recorded in the run index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunIndexStatus {
    /// Started and not finished (possibly interrupted).
    Running,
    /// Completed.
    Completed,
    /// Failed.
    Failed,
    /// Paused because a run budget ran out.
    Paused,
    /// Waiting for a human to decide an approval request.
    Waiting,
    /// Failed, and its completed steps were undone.
    Compensated,
    /// Failed, and undoing a completed step failed too.
    CompensationFailed,
}

impl RunIndexStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Paused => "paused",
            Self::Waiting => "waiting",
            Self::Compensated => "compensated",
            Self::CompensationFailed => "compensation_failed",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "paused" => Some(Self::Paused),
            "waiting" => Some(Self::Waiting),
            "compensated" => Some(Self::Compensated),
            "compensation_failed" => Some(Self::CompensationFailed),
            _ => None,
        }
    }
}

/// A run's row in the run index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// The run.
    pub run_id: String,
    /// Its workflow.
    pub workflow: String,
    /// Its status.
    pub status: RunIndexStatus,
    /// Who started it.
    pub identity: String,
    /// Start time, microseconds since the Unix epoch.
    pub started_us: u64,
    /// End time, if finished.
    pub finished_us: Option<u64>,
}

/// One durable append: events of one run, continuing its chain. The run index follows
/// from the events (`run_started` creates a run's row, `run_completed` and `run_failed`
/// finish it), maintained by the store.
#[derive(Clone, Debug)]
pub struct Append {
    /// The run.
    pub run_id: RunId,
    /// Events, in order, continuing the run's chain.
    pub events: Vec<SealedEvent>,
}

/// A component deployed to the host under a name and version (`tether plugin add`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PluginRecord {
    /// Its name, for example `summarize`.
    pub name: String,
    /// Its version, for example `1.2.0`.
    pub version: String,
    /// sha256 of the component, hex.
    pub digest: String,
    /// `step-plugin` or `tool-plugin`.
    pub world: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// What the component says about how it was built (producers: languages,
    /// processed-by), and its own name, version and description when it carries them.
    pub metadata: serde_json::Value,
    /// When it was added, microseconds since the Unix epoch.
    pub added_us: u64,
}

impl PluginRecord {
    /// `NAME@VERSION`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// What `add_plugin` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginAdded {
    /// A new name and version.
    Added,
    /// The same name, version and digest were already there: nothing changed.
    AlreadyPresent,
}

/// Why a store operation failed. Messages say what to do.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file is not a tether journal.
    #[error("{0}")]
    NotOurs(String),
    /// The database was written by a newer tether.
    #[error("{0}")]
    NewerSchema(String),
    /// No such run.
    #[error("unknown run `{0}`; `tether runs` lists the runs in this journal")]
    UnknownRun(String),
    /// An event is larger than the configured cap.
    #[error("run {run}: event {seq} ({kind}) is {size} bytes, above the journal's cap of {cap} bytes")]
    PayloadTooLarge {
        /// The run.
        run: String,
        /// The event's position.
        seq: u64,
        /// Its kind.
        kind: String,
        /// Its size.
        size: usize,
        /// The cap.
        cap: usize,
    },
    /// Another writer got there first (for example two hosts on one run).
    #[error("run {run}: event {seq} already exists; another host is writing this run")]
    Conflict {
        /// The run.
        run: String,
        /// The position already taken.
        seq: u64,
    },
    /// A plugin name and version that already mean another component.
    #[error(
        "plugin {name}@{version} already exists with digest sha256:{existing}, not sha256:{new}; \
         a version always means one component: add this one under a new --version"
    )]
    PluginConflict {
        /// Its name.
        name: String,
        /// Its version.
        version: String,
        /// The digest stored under it.
        existing: String,
        /// The digest that was refused.
        new: String,
    },
    /// A plugin that runs still need.
    #[error(
        "plugin {plugin} is pinned by {} unfinished run(s): {}; finish them (`tether resume`, \
         `tether approve`/`reject`) before removing it", runs.len(), runs.join(", ")
    )]
    PluginInUse {
        /// `NAME@VERSION`.
        plugin: String,
        /// The runs (running, paused or waiting) whose plan uses its component.
        runs: Vec<String>,
    },
    /// No such plugin.
    #[error("no plugin {0} in this host's store; `tether plugin list` shows what is deployed")]
    UnknownPlugin(String),
    /// The database failed.
    #[error("journal database error: {0}")]
    Database(String),
}

/// A durable journal.
#[async_trait::async_trait]
pub trait JournalStore: Send + Sync {
    /// Appends durably: returns only once the events are on disk (or replicated).
    async fn append(&self, append: Append) -> Result<(), StoreError>;
    /// Every event of a run, in order. `UnknownRun` if it has none.
    async fn events(&self, run_id: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// The run index, newest first, optionally only one status, at most `limit` rows.
    async fn runs(&self, status: Option<RunIndexStatus>, limit: u32) -> Result<Vec<RunSummary>, StoreError>;
    /// The approval events (requested, decided, overridden) of every run of `workflow`,
    /// as (run id, event), each run's in order: the gates' track records are built from them.
    async fn gate_events(&self, workflow: &str) -> Result<Vec<(String, StoredEvent)>, StoreError>;
    /// Stores a component's bytes by digest (no-op if present), so a run can be resumed
    /// and replayed with exactly the components it started with.
    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<(), StoreError>;
    /// A stored component's bytes.
    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether a component is stored, without reading its bytes.
    async fn has_component(&self, digest: &str) -> Result<bool, StoreError>;
    /// Deploys a component under a name and version: its bytes (by digest) and its
    /// record, in one transaction. `PluginConflict` if the name and version already mean
    /// another digest.
    async fn add_plugin(&self, plugin: &PluginRecord, wasm: &[u8]) -> Result<PluginAdded, StoreError>;
    /// Deployed plugins, by name then version order of addition; only `name`'s if given.
    async fn plugins(&self, name: Option<&str>) -> Result<Vec<PluginRecord>, StoreError>;
    /// Removes a plugin's record, refused with `PluginInUse` while an unfinished run's plan
    /// uses its component. The component's bytes are kept: recorded runs (and a run that
    /// loaded the plugin but has not journaled its start yet) resume and replay from them.
    async fn remove_plugin(&self, name: &str, version: &str) -> Result<PluginRecord, StoreError>;
}
