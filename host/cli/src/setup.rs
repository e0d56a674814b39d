//! How a command gets what it runs on: the async runtime, the wasm runtime, the journal
//! (opened, or created for commands that start runs) and the lease settings. Commands
//! end by dropping their `Rt`, which closes every journal they opened.

use std::sync::Arc;
use std::time::Duration;

use tether_app::App;
use tether_runtime::{LeaseConfig, Runtime};
use tether_store::{Durability, StoreConfig};
use tether_types::store::JournalStore;

use crate::cli::{CacheArgs, DbArgs, HostArgs, WaitArgs};
use crate::failure::Failure;

impl CacheArgs {
    pub(crate) fn runtime(&self) -> Result<Runtime, Failure> {
        Runtime::new(self.config()).map_err(|e| Failure::Internal(format!("cannot start the runtime: {e:#}")))
    }

    /// The runtime's settings: the cache, and a notice while a large component compiles.
    pub(crate) fn config(&self) -> tether_runtime::RuntimeConfig {
        let mut config = tether_runtime::RuntimeConfig::default();
        if self.no_cache {
            config.cache_dir = None;
        } else if let Some(dir) = &self.cache_dir {
            config.cache_dir = Some(dir.clone());
        }
        config.max_sandboxes = 16;
        // Compiling a large component (a Python one) takes seconds: say so, once. Small
        // ones compile in well under a second and are not mentioned.
        let cached = config.cache_dir.is_some();
        config.on_compile =
            Some(tether_runtime::CompileNotice(std::sync::Arc::new(move |digest: &str, bytes: usize| {
                if bytes < 1 << 20 {
                    return;
                }
                let later = if cached { "; later runs load it from the cache" } else { " (--no-cache)" };
                eprintln!(
                    "compiling component sha256:{} ({:.1} MB){later}",
                    &digest[..12.min(digest.len())],
                    bytes as f64 / 1e6
                );
            })));
        config
    }
}

impl DbArgs {
    /// Opens the journal, creating it if it does not exist (inside the async runtime).
    pub(crate) async fn open(&self) -> Result<Arc<dyn JournalStore>, Failure> {
        self.open_with(true).await
    }

    /// Opens a journal that must exist: for commands that read, or continue what a
    /// journal holds. A mistyped path is an error, not a new empty journal.
    pub(crate) async fn open_existing(&self) -> Result<Arc<dyn JournalStore>, Failure> {
        self.open_with(false).await
    }

    /// The application over a journal that must exist, for commands that only read it
    /// (no runtime is ever started for them).
    pub(crate) async fn reader(&self) -> Result<App, Failure> {
        self.recorder(LeaseConfig::default()).await
    }

    /// The application over a journal that must exist, for commands that record
    /// decisions under a run's lease but never execute a run.
    pub(crate) async fn recorder(&self, leases: LeaseConfig) -> Result<App, Failure> {
        let store = self.open_existing().await?;
        Ok(App::new(store, tether_runtime::RuntimeConfig::default(), leases))
    }

    async fn open_with(&self, create: bool) -> Result<Arc<dyn JournalStore>, Failure> {
        let mut config = StoreConfig::new(self.db.clone().unwrap_or_else(tether_store::default_database_url));
        config.create = create;
        config.pool = self.pool;
        config.durability = match self.sync.as_str() {
            "full" => Durability::Full,
            "normal" => Durability::Normal,
            other => return Err(Failure::usage(format!("--sync must be `full` or `normal`, not `{other}`"))),
        };
        let store = tether_store::open(&config).await.map_err(crate::failure::store_failure)?;
        OPENED.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::clone(&store));
        Ok(store)
    }
}

impl HostArgs {
    /// The application on the journal; `create`: a new run may be started in a new journal.
    pub(crate) async fn app(&self, leases: LeaseConfig, create: bool) -> Result<App, Failure> {
        let store = self.db.open_with(create).await?;
        Ok(App::new(store, self.cache.config(), leases))
    }
}

/// The async runtime a command runs on. Dropped when the command is done, it closes every
/// journal the command opened, so the journal is left self-contained on disk.
pub(crate) struct Rt(tokio::runtime::Runtime);

/// Journals opened by this command, closed when it ends.
static OPENED: std::sync::Mutex<Vec<Arc<dyn JournalStore>>> = std::sync::Mutex::new(Vec::new());

impl Rt {
    pub(crate) fn block_on<F: std::future::Future>(&self, command: F) -> F::Output {
        self.0.block_on(command)
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        let opened = std::mem::take(&mut *OPENED.lock().unwrap_or_else(|p| p.into_inner()));
        self.0.block_on(async {
            for store in opened {
                if let Err(e) = store.close().await {
                    tracing::warn!("closing the journal: {e}");
                }
            }
        });
    }
}

pub(crate) fn async_runtime() -> Result<Rt, Failure> {
    // Several workers, so independent steps and for_each items run in parallel.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        // Time for budgets and backoffs; I/O for outbound HTTP.
        .enable_all()
        .build()
        .map(Rt)
        .map_err(|e| Failure::Internal(format!("cannot start the async runtime: {e}")))
}

/// How long a command waits for a run that another host is executing.
impl WaitArgs {
    /// The lease settings: `--wait` (or `default_wait`) and `$TETHER_LEASE_TTL`.
    pub(crate) fn leases(&self, default_wait: Duration) -> Result<LeaseConfig, Failure> {
        leases(self.duration(default_wait)?)
    }

    /// `--wait`, or `default_wait`.
    pub(crate) fn duration(&self, default_wait: Duration) -> Result<Duration, Failure> {
        match &self.wait {
            Some(w) => humantime::parse_duration(w)
                .map_err(|e| Failure::usage(format!("--wait `{w}`: {e}; write a duration such as 30s or 5m"))),
            None => Ok(default_wait),
        }
    }
}

/// Lease settings with `wait`, and the lease lifetime from `$TETHER_LEASE_TTL`.
pub(crate) fn leases(wait: Duration) -> Result<LeaseConfig, Failure> {
    let mut config = LeaseConfig { wait, ..LeaseConfig::default() };
    if let Ok(ttl) = std::env::var("TETHER_LEASE_TTL") {
        config.ttl = humantime::parse_duration(&ttl)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Failure::usage(format!("TETHER_LEASE_TTL=`{ttl}` is not a duration such as 30s")))?;
    }
    Ok(config)
}
