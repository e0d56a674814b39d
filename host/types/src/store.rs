//! The storage traits: what the host needs from a journal, and nothing more. SQL lives
//! only in the implementations (`tether-store`); what each event does to the run index
//! is decided here (`run_index.rs`), not in SQL. Every backend must pass one conformance
//! suite, written against these traits (the integration tests' `conformance.rs`).

use crate::chain::{SealedEvent, StoredEvent};
use crate::ids::RunId;

pub use crate::run_index::RunIndexStatus;

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

/// Which runs a page of the run index holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Only runs with this status.
    pub status: Option<RunIndexStatus>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs whose id starts with this.
    pub id_prefix: Option<String>,
    /// Only runs older than this one (its start time and id): the previous page's last.
    pub before: Option<(u64, String)>,
    /// At most this many.
    pub limit: u32,
}

/// Resolves when a queued append is durable, or refused.
pub type AppendAck = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>;

/// One durable append: events of one run, continuing its chain. The run index follows
/// from the events (`run_started` creates a run's row, `run_completed` and `run_failed`
/// finish it), maintained by the store.
///
/// Every append is fenced: it is written only if the run's lease is still held by
/// `fence` (same owner, same epoch), checked in the same statement as the write, and
/// only where its positions are free. A host that lost its lease, or a writer that raced
/// another, writes nothing. A run's journal flushes one append at a time.
#[derive(Clone, Debug)]
pub struct Append {
    /// The run.
    pub run_id: RunId,
    /// The lease the writer holds.
    pub fence: Fence,
    /// Events, in order, continuing the run's chain.
    pub events: Vec<SealedEvent>,
    /// What the append also does to the lease, in the same transaction.
    pub lease: LeaseChange,
}

/// A change to the run's lease that rides on an append, saving a commit of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeaseChange {
    /// Only check the fence.
    #[default]
    Keep,
    /// The run is new: first take its lease for the fence's owner at epoch 1, lasting
    /// `ttl_ms`, if nobody has a lease on this run id (otherwise the fence is refused).
    TakeNew {
        /// The lease's lifetime.
        ttl_ms: u64,
    },
    /// Give the lease up once the events are written: the run stops here.
    Release,
    /// The run is new and stops with this append, its whole stretch in one commit: take
    /// its lease as [`LeaseChange::TakeNew`] does, write the events, give it up.
    TakeAndRelease {
        /// The lease's lifetime, should the release not happen (it always does).
        ttl_ms: u64,
    },
}

impl LeaseChange {
    /// Whether the append takes a new run's lease first.
    pub fn takes(self) -> Option<u64> {
        match self {
            LeaseChange::TakeNew { ttl_ms } | LeaseChange::TakeAndRelease { ttl_ms } => Some(ttl_ms),
            LeaseChange::Keep | LeaseChange::Release => None,
        }
    }

    /// Whether the append gives the lease up after its events.
    pub fn releases(self) -> bool {
        matches!(self, LeaseChange::Release | LeaseChange::TakeAndRelease { .. })
    }
}

/// Who may write a run: the owner and epoch of the lease it was taken under.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    /// The owning host (see [`Lease::owner`]).
    pub owner: String,
    /// The lease's epoch: it increases every time the run is taken.
    pub epoch: u64,
}

/// A run's lease: at most one host executes (and writes) a run at a time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// The run.
    pub run_id: String,
    /// The host that holds it: `HOST/pid:PID/start:TICKS` for a tether process, so a
    /// host on the same machine can tell that the owner has died.
    pub owner: String,
    /// Increases on every take; appends are fenced by it.
    pub epoch: u64,
    /// When it lapses unless its holder beats again, microseconds since the Unix epoch
    /// (the store's clock).
    pub expires_us: u64,
}

impl Lease {
    /// The fence appends under this lease carry.
    pub fn fence(&self) -> Fence {
        Fence { owner: self.owner.clone(), epoch: self.epoch }
    }
}

/// What an attempt to take a run's lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseTake {
    /// Taken: the run is ours until the lease lapses or is released.
    Taken(Lease),
    /// Another host holds it and it has not lapsed.
    Held(Lease),
}

/// A run's anchored head, kept with its lease: the last event's position and hash when
/// the run was last given up (with the append that gave it up). A journal that does not
/// reach it was cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunHead {
    /// The last event's sequence number (0 before the first append).
    pub seq: u64,
    /// The last event's hash.
    pub hash: String,
}

/// What the store holds about a run, for `verify`: its index row (if any), its head
/// anchor (if any), and the status text as stored (which may be damaged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// The index row's status, exactly as stored; `None` if the run has no index row.
    pub index_status: Option<String>,
    /// The head anchor; `None` if the run has none yet.
    pub head: Option<RunHead>,
    /// Whether a host holds the run's lease, or took it and never gave it up (it was
    /// killed): the head is then a periodic anchor, and the journal may go past it.
    pub held: bool,
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
    /// The database URL names no backend this build has, or no file.
    #[error("{0}")]
    BadUrl(String),
    /// A command that only reads was pointed at a journal that does not exist.
    #[error("{0}")]
    NoJournal(String),
    /// The database file is not a tether journal.
    #[error("{0}")]
    NotOurs(String),
    /// The database was written by a newer tether.
    #[error("{0}")]
    NewerSchema(String),
    /// No such run.
    #[error("unknown run `{0}`")]
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
    /// Another writer got there first: the run's journal no longer ends where this
    /// writer's does.
    #[error(
        "run {run}: event {seq} ({kind}) conflicts: the journal already ends at event {head}; \
         another host is writing this run"
    )]
    Conflict {
        /// The run.
        run: String,
        /// The first event that could not be written.
        seq: u64,
        /// Its kind.
        kind: String,
        /// Where the run's journal ends now.
        head: u64,
    },
    /// The writer no longer holds the run's lease: another host took the run over.
    #[error(
        "run {run}: this host's lease (epoch {epoch}) was taken over by {holder} (epoch {holder_epoch}); \
         it stops executing the run and writes nothing more"
    )]
    LeaseLost {
        /// The run.
        run: String,
        /// The epoch this writer held.
        epoch: u64,
        /// Who holds the lease now (`nobody` if it was removed).
        holder: String,
        /// Their epoch.
        holder_epoch: u64,
    },
    /// A plugin name and version that already mean another component.
    #[error(
        "plugin {name}@{version} already exists with digest sha256:{existing}, not sha256:{new}; \
         a version always means one component: deploy this one under a new version"
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
        "plugin {plugin} is pinned by {} unfinished run(s): {}; finish them before removing it",
        runs.len(), runs.join(", ")
    )]
    PluginInUse {
        /// `NAME@VERSION`.
        plugin: String,
        /// The runs (running, paused or waiting) whose plan uses its component.
        runs: Vec<String>,
    },
    /// No such plugin.
    #[error("no plugin {0} is deployed")]
    UnknownPlugin(String),
    /// A token by this name exists.
    #[error("a token named `{0}` exists already; pick another name, or revoke it first")]
    TokenExists(String),
    /// No token has this name.
    #[error("no token is named `{0}`")]
    UnknownToken(String),
    /// The database failed.
    #[error("journal database error: {0}")]
    Database(String),
}

/// A durable journal: every role a backend plays. Callers hold `Arc<dyn JournalStore>`
/// and use the role they need (bring its trait into scope); a backend implements each
/// role and gets this trait for free. Every backend passes one conformance suite.
pub trait JournalStore: Journal + RunIndex + Components + Plugins + Leases + CancelRequests + Tokens + Upkeep {}

impl<T: Journal + RunIndex + Components + Plugins + Leases + CancelRequests + Tokens + Upkeep + ?Sized> JournalStore
    for T
{
}

/// The journal itself: each run's events, appended durably under its lease, and read back.
#[async_trait::async_trait]
pub trait Journal: Send + Sync {
    /// Appends durably: returns only once the events are on disk (or replicated).
    async fn append(&self, append: Append) -> Result<(), StoreError>;
    /// Queues an append behind every append queued before it through this store, and
    /// returns once it is queued: the returned future resolves when the append is
    /// durable (or refused). A run's appends are written in the order queued; once one
    /// is refused, every later one under the same fence is refused too, so the journal
    /// never holds a gap. This is how a host pipelines the events of pure work and waits
    /// only where something is about to leave it (see `RunJournal::sync`).
    async fn enqueue(&self, append: Append) -> Result<AppendAck, StoreError> {
        let result = self.append(append).await;
        Ok(Box::pin(std::future::ready(result)))
    }
    /// The largest event payload (bytes) the store accepts: an append holding a larger
    /// one is refused with `PayloadTooLarge` when it is queued.
    fn max_event_bytes(&self) -> usize;
    /// Every event of a run, in order. `UnknownRun` if it has none.
    async fn events(&self, run_id: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// A run's events with `from <= seq <= to`, in order: a page of a long journal
    /// without reading the rest. Empty when none is in that range.
    async fn events_between(&self, run_id: &str, from: u64, to: u64) -> Result<Vec<StoredEvent>, StoreError>;
    /// A run's last event: its seq and hash (what changes whenever the run does).
    /// `UnknownRun` if it has none.
    async fn last_event(&self, run_id: &str) -> Result<(u64, String), StoreError>;
    /// Every run id the store knows of, from the journal, the index and the head anchors.
    async fn run_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Calls `wake` whenever any process on this journal changes what there is to do
    /// (see [`Wakeup`]), so that the work is picked up at once by whichever host claims
    /// it. `false` where the store cannot push this (the caller's periodic scans find the
    /// work instead; they stay the fallback where it can).
    fn on_wakeup(&self, wake: Box<dyn Fn(Wakeup) + Send + Sync>) -> bool {
        let _ = wake;
        false
    }
}

/// The run index: one row per run, kept from the events as they are written (see
/// [`crate::run_index`]), and what `verify` compares it with.
#[async_trait::async_trait]
pub trait RunIndex: Send + Sync {
    /// The run index, newest first, optionally only one status, at most `limit` rows.
    async fn runs(&self, status: Option<RunIndexStatus>, limit: u32) -> Result<Vec<RunSummary>, StoreError>;
    /// A page of the run index, newest first: what `query` selects, after its cursor.
    async fn runs_page(&self, query: &RunQuery) -> Result<Vec<RunSummary>, StoreError>;
    /// The approval events (requested, decided, overridden) of every run of `workflow`,
    /// as (run id, event), each run's in order: the gates' track records are built from them.
    async fn gate_events(&self, workflow: &str) -> Result<Vec<(String, StoredEvent)>, StoreError>;
    /// A run's index row and head anchor, for `verify`.
    async fn run_record(&self, run_id: &str) -> Result<RunRecord, StoreError>;
}

/// Component bytes by digest, so a run resumes and replays with exactly the
/// components it started with.
#[async_trait::async_trait]
pub trait Components: Send + Sync {
    /// Stores a component's bytes by digest (no-op if present), so a run can be resumed
    /// and replayed with exactly the components it started with.
    async fn put_component(&self, digest: &str, wasm: &[u8]) -> Result<(), StoreError>;
    /// A stored component's bytes.
    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether a component is stored, without reading its bytes.
    async fn has_component(&self, digest: &str) -> Result<bool, StoreError>;
}

/// The plugin registry: components deployed under `NAME@VERSION`.
#[async_trait::async_trait]
pub trait Plugins: Send + Sync {
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

/// Work another process made for the hosts on a journal, pushed to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// One of the run's approvals was decided: it may go on.
    Decided(String),
    /// The run stopped to wait for people: its deadlines are due somewhere.
    Waiting(String),
    /// The run was given up unfinished (its host stopped): any host may take it now.
    Interrupted(String),
}

impl Wakeup {
    /// As sent between processes: `decided:RUN`, `waiting:RUN` or `interrupted:RUN`.
    pub fn to_text(&self) -> String {
        match self {
            Wakeup::Decided(run) => format!("decided:{run}"),
            Wakeup::Waiting(run) => format!("waiting:{run}"),
            Wakeup::Interrupted(run) => format!("interrupted:{run}"),
        }
    }

    /// From [`Wakeup::to_text`]; `None` for anything else.
    pub fn from_text(text: &str) -> Option<Wakeup> {
        let (what, run) = text.split_once(':')?;
        let run = run.to_string();
        match what {
            "decided" => Some(Wakeup::Decided(run)),
            "waiting" => Some(Wakeup::Waiting(run)),
            "interrupted" => Some(Wakeup::Interrupted(run)),
            _ => None,
        }
    }
}

/// Run leases: at most one host executes (and writes) a run at a time.
///
/// A host keeps its leases alive with one heartbeat for all of them, not a write per
/// run: a lease lasts while its own expiry (set when it was taken, to cover the host's
/// first beat) or its holder's heartbeat has not lapsed, by the store's clock.
#[async_trait::async_trait]
pub trait Leases: Send + Sync {
    /// Takes a run's lease for `owner` for `ttl_ms` (creating it for a new run), atomically:
    /// if nobody holds it, it has lapsed (by the store's clock), `owner` holds it already,
    /// or `breaking` names the epoch of a holder the caller knows to be dead. Every take
    /// increases the epoch. `Held` if another live holder has it.
    async fn take_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl_ms: u64,
        breaking: Option<u64>,
    ) -> Result<LeaseTake, StoreError>;
    /// Gives a lease up (the run stays as its journal says); nothing if no longer held.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError>;
    /// Takes up to `limit` interrupted runs for `owner`: runs the index says are running
    /// whose lease nobody holds or has lapsed (never `owner`'s own, nor those in `skip`),
    /// oldest first. Runs another host is taking or writing at that moment are passed
    /// over, not waited for, so hosts looking at once share the runs out and each run
    /// goes to one of them.
    async fn claim_interrupted(
        &self,
        owner: &str,
        ttl_ms: u64,
        limit: usize,
        skip: &[String],
    ) -> Result<Vec<Lease>, StoreError>;
    /// The run's lease as it stands (an empty `owner` once given up; `expires_us` the
    /// later of its own expiry and its holder's heartbeat), read without writing: to find
    /// runs nobody executes without taking every lease to see.
    async fn lease(&self, run_id: &str) -> Result<Option<Lease>, StoreError>;
    /// Every lease a host holds now (not given up), by owner then run, with the store's
    /// clock (microseconds since the Unix epoch) to judge which have lapsed: who is
    /// executing what (`tether workers`).
    async fn held_leases(&self) -> Result<(u64, Vec<Lease>), StoreError>;
    /// The store's clock, microseconds since the Unix epoch: what lease expiries are
    /// written and judged by (a shared database server's, so that hosts whose clocks
    /// differ agree on when a lease has lapsed).
    async fn clock_us(&self) -> Result<u64, StoreError>;
    /// `owner`'s heartbeat: every lease it holds now lasts until `ttl_ms` from now (the
    /// store's clock). Hosts that have not beaten for an hour and hold nothing are
    /// forgotten on the way.
    async fn heartbeat(&self, owner: &str, ttl_ms: u64) -> Result<Heartbeat, StoreError>;
    /// `owner` leaves: its heartbeat is gone, so leases it still holds lapse with their
    /// own expiry.
    async fn leave(&self, owner: &str) -> Result<(), StoreError>;
    /// Every host with a heartbeat, by owner, with the store's clock.
    async fn hosts(&self) -> Result<(u64, Vec<HostBeat>), StoreError>;
}

/// What a host's heartbeat found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Until when the host's leases now last (the store's clock).
    pub expires_us: u64,
    /// When the host's previous heartbeat had lapsed before this one, or `None` if it had
    /// not (or this is its first): its runs may have been taken over meanwhile.
    pub lapsed_since_us: Option<u64>,
    /// Whether the store had a heartbeat of this host before this one (`false` for a
    /// first beat, or for a host that left or was forgotten meanwhile).
    pub found: bool,
    /// The store's clock at this beat.
    pub now_us: u64,
}

/// A host on the journal, as its heartbeat says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostBeat {
    /// The lease owner it writes as: `HOST/pid:PID/start:TICKS`.
    pub owner: String,
    /// Its first heartbeat (the store's clock, microseconds since the Unix epoch).
    pub since_us: u64,
    /// Its last heartbeat.
    pub beat_us: u64,
    /// When its leases lapse unless it beats again.
    pub expires_us: u64,
}

/// Cancel requests, for a run another host executes.
#[async_trait::async_trait]
pub trait CancelRequests: Send + Sync {
    /// Asks the host executing `run_id` to cancel it (it journals the cancel itself, under
    /// its lease). `false` if a request is there already: the first one is kept.
    async fn request_cancel(&self, run_id: &str, by: &str, reason: Option<&str>) -> Result<bool, StoreError>;
    /// The cancel request for `run_id`, if any: who asked, and why.
    async fn cancel_request(&self, run_id: &str) -> Result<Option<(String, Option<String>)>, StoreError>;
}

/// API tokens, kept by their hash (see [`crate::access`]).
#[async_trait::async_trait]
pub trait Tokens: Send + Sync {
    /// Keeps a new token; `TokenExists` if its name is taken.
    async fn add_token(&self, token: &crate::access::TokenRecord, hash: &str) -> Result<(), StoreError>;
    /// Every token, revoked ones too, by name.
    async fn tokens(&self) -> Result<Vec<crate::access::TokenRecord>, StoreError>;
    /// The token with this hash, if any.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<crate::access::TokenRecord>, StoreError>;
    /// The SHA-256 kept for the token named `name` (never the token): what copying a
    /// journal carries over, so that its tokens keep working.
    async fn token_hash(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Revokes a token by name (at `at_us`); `UnknownToken` if there is none. Revoking a
    /// revoked token keeps its first revocation time.
    async fn revoke_token(&self, name: &str, at_us: u64) -> Result<crate::access::TokenRecord, StoreError>;
}

/// Keeping the journal: copies and a clean close.
#[async_trait::async_trait]
pub trait Upkeep: Send + Sync {
    /// Writes a consistent copy of the whole journal to `path` (which must not exist),
    /// while other processes keep using it.
    async fn backup(&self, path: &std::path::Path) -> Result<(), StoreError>;
    /// Finishes pending writes and leaves the journal self-contained on disk (SQLite:
    /// the write-ahead log checkpointed into the database file). Called on clean exit.
    async fn close(&self) -> Result<(), StoreError>;
}
