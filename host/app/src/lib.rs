//! The application layer: every use case of tether, shared by the CLI and the server.
//!
//! One [`App`] holds a journal store, the lease settings, and (made when first needed, so
//! commands that only read never start wasmtime) a runtime. Each use case checks what it
//! is asked against the journal, records what it decides under the run's lease, and
//! answers with data or a typed [`AppError`]; printing, flags and HTTP status codes are
//! the shells' business.

mod approvals;
mod cancel;
pub mod copy;
mod error;
mod gates;
pub mod metrics;
pub mod new;
mod plugins;
pub mod policy;
mod proposal;
mod runs;
pub mod schedule;
mod show;
mod start;
mod stats;
mod tokens;
mod verify;
mod worker;
mod workers;

use std::sync::{Arc, OnceLock};

use tether_runtime::{Driver, LeaseConfig, Runtime, RuntimeConfig};
use tether_types::store::JournalStore;

pub use approvals::{Decided, DecisionRequest, OverrideRequest, Pending};
pub use cancel::{CancelNote, CancelRequest, Cancelled};
pub use error::{AppError, ErrorKind};
pub use gates::{AutoApproval, GateRecord, GateView};
pub use plugins::{Deploy, Deployed};
pub use runs::EventsPage;
pub use show::{NextStep, Paused, RunView, StepView, Totals, WaitingOn};
pub use start::{new_run_id, stored_components, Continued, Prepared, StartRequest};
pub use stats::{GateStats, Stats, StatsFilter, StepLatency};
pub use tokens::{NewToken, Refused};
pub use verify::Checked;
pub use worker::{Stopped, Submitted, Worker, WorkerConfig};
pub use workers::{HeldRun, WorkerView};

/// Every use case, over one journal.
pub struct App {
    store: Arc<dyn JournalStore>,
    runtime: RuntimeConfig,
    leases: LeaseConfig,
    driver: OnceLock<Driver>,
}

impl App {
    /// An application over `store`; runs are executed with a runtime made from `runtime`
    /// when first needed, and taken with `leases`.
    pub fn new(store: Arc<dyn JournalStore>, runtime: RuntimeConfig, leases: LeaseConfig) -> App {
        App { store, runtime, leases, driver: OnceLock::new() }
    }

    /// The journal store.
    pub fn store(&self) -> &Arc<dyn JournalStore> {
        &self.store
    }

    /// The lease settings runs are taken with.
    pub fn leases(&self) -> LeaseConfig {
        self.leases
    }

    /// The driver that executes runs, with its runtime (made on first use).
    pub fn driver(&self) -> Result<&Driver, AppError> {
        if let Some(driver) = self.driver.get() {
            return Ok(driver);
        }
        let runtime = Runtime::new(self.runtime.clone()).map_err(|e| {
            AppError::Driver(tether_runtime::DriverError::Load(format!("cannot start the runtime: {e:#}")))
        })?;
        let driver = Driver::new(runtime, Arc::clone(&self.store)).with_leases(self.leases);
        Ok(self.driver.get_or_init(|| driver))
    }
}
