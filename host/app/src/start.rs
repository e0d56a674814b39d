//! Starting, resuming, continuing and replaying runs: one road from a parsed workflow to
//! a loaded one (policy assembled, deployed plugins resolved to digests, the identity's
//! grants applied), then the driver executes it under the run's lease.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tether_runtime::{DriverError, LoadedWorkflow, Progress, ReplayReport, Runtime, StartOptions, StoredComponents};
use tether_types::store::JournalStore;
use tether_types::{RunId, RunReport, Workflow};

use crate::{App, AppError};

/// A run to start.
pub struct StartRequest {
    /// The parsed workflow.
    pub workflow: Workflow,
    /// The directory its relative paths (components, policy file, dirs) are taken from.
    pub base: PathBuf,
    /// A policy file given with the request, in place of the workflow's `policy_file`.
    pub policy_file: Option<PathBuf>,
    /// Who the run acts as; else the workflow's `identity`, else `local`.
    pub identity: Option<String>,
    /// The run's input.
    pub input: Value,
    /// The run id; a new one when `None`.
    pub run_id: Option<RunId>,
}

/// A run loaded and checked, ready to start.
pub struct Prepared {
    workflow: LoadedWorkflow,
    identity: String,
    input: Value,
    /// Its id.
    pub run_id: RunId,
}

impl Prepared {
    /// Its workflow's name.
    pub fn workflow_name(&self) -> &str {
        &self.workflow.name
    }

    /// How many steps its plan has.
    pub fn steps(&self) -> usize {
        self.workflow.plan.steps.len()
    }
}

/// What continuing a run came to.
pub enum Continued {
    /// It ran until it ended, waited or paused: its report, from the journal.
    Report(RunReport),
    /// Another live host executes it; that host goes on from the journal.
    HeldElsewhere(String),
}

impl App {
    /// Loads and checks a run without starting it: the policy assembled, components
    /// resolved and compiled, the identity's grants applied.
    pub async fn prepare(&self, request: StartRequest) -> Result<Prepared, AppError> {
        let StartRequest { mut workflow, base, policy_file, identity, input, run_id } = request;
        let driver = self.driver()?;
        let identity = identity.or_else(|| workflow.identity.clone()).unwrap_or_else(|| "local".into());
        crate::policy::assemble(&mut workflow, policy_file.as_deref(), &base)
            .map_err(|p| AppError::BadInput(p.to_string()))?;
        let stored = stored_components(self.store.as_ref(), driver.runtime(), &workflow).await?;
        let mut loaded = driver
            .runtime()
            .load_workflow_with(workflow, &base, &stored)
            .map_err(|e| AppError::BadInput(e.to_string()))?;
        tether_runtime::apply_identity(&mut loaded, &identity).map_err(AppError::BadInput)?;
        let run_id = run_id.unwrap_or_else(new_run_id);
        Ok(Prepared { workflow: loaded, identity, input, run_id })
    }

    /// Starts a prepared run and executes it until it ends, waits for people or pauses.
    pub async fn start(&self, run: Prepared, progress: impl FnMut(Progress<'_>)) -> Result<RunReport, AppError> {
        let driver = self.driver()?;
        driver.start(&run.workflow, run.run_id.clone(), run.input, &run.identity, progress).await?;
        self.report(&run.run_id).await
    }

    /// [`App::start`] for a service: with where the run came from, a slot to wait for
    /// once its start is durable, and the service's drain.
    pub async fn start_with(
        &self,
        run: Prepared,
        options: StartOptions,
        progress: impl FnMut(Progress<'_>),
    ) -> Result<RunReport, AppError> {
        let driver = self.driver()?;
        driver.start_with(&run.workflow, run.run_id.clone(), run.input, &run.identity, options, progress).await?;
        self.report(&run.run_id).await
    }

    /// Continues an interrupted, paused or decided run; `raises` adds to its run budgets
    /// (`wall_time` in milliseconds). A run that is over is only reported.
    pub async fn resume(
        &self,
        run: &RunId,
        raises: &[(String, f64)],
        progress: impl FnMut(Progress<'_>),
    ) -> Result<RunReport, AppError> {
        self.driver()?.resume(run.as_str(), raises, progress).await?;
        self.report(run).await
    }

    /// Continues a run after a decision or a cancel. A run another live host executes is
    /// left to it: what was recorded is in the journal, and that host goes on from it.
    pub async fn continue_run(&self, run: &RunId, progress: impl FnMut(Progress<'_>)) -> Result<Continued, AppError> {
        match self.driver()?.resume(run.as_str(), &[], progress).await {
            Err(DriverError::Busy(busy)) => Ok(Continued::HeldElsewhere(busy.to_string())),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(Continued::Report(self.report(run).await?)),
        }
    }

    /// Re-executes a recorded run against its journal with no side effects; `overrides`
    /// replaces step components (by step name) to check a new version against history.
    pub async fn replay(&self, run: &RunId, overrides: &HashMap<String, Arc<[u8]>>) -> Result<ReplayReport, AppError> {
        self.driver()?.replay(run.as_str(), overrides).await.map_err(|e| match e {
            // A replacement component that does not load is the caller's to fix.
            DriverError::Load(m) => AppError::BadInput(m),
            other => other.into(),
        })
    }
}

/// The components a workflow takes from the journal's store: deployed plugins
/// (`NAME@VERSION`) resolved to digests, and the bytes of those whose compiled form is not
/// in the cache (a deployed plugin's normally is, so nothing is read). References that do
/// not resolve are left out: loading the workflow reports them at their position.
pub async fn stored_components(
    store: &dyn JournalStore,
    runtime: &Runtime,
    workflow: &Workflow,
) -> Result<StoredComponents, AppError> {
    let mut stored = StoredComponents::default();
    for reference in workflow.plugin_refs() {
        let Ok((name, version)) = tether_types::plugin_ref::parse(&reference) else { continue };
        let plugins = store.plugins(Some(name)).await?;
        if let Some(p) = plugins.into_iter().find(|p| p.version == version) {
            stored.plugins.insert(reference, p.digest);
        }
    }
    let mut digests = workflow.digest_refs();
    digests.extend(stored.plugins.values().cloned());
    for digest in digests {
        // Only what this journal holds: a run must be able to resume and replay from it.
        if !store.has_component(&digest).await? {
            continue;
        }
        if runtime.preload_compiled(&digest) {
            stored.preloaded.insert(digest);
        } else if let Some(bytes) = store.component(&digest).await? {
            stored.bytes.insert(digest, bytes.into());
        }
    }
    Ok(stored)
}

/// A new run id: time-ordered (UUID v7), so ids sort by when runs started.
pub fn new_run_id() -> RunId {
    RunId::from_suffix(&uuid::Uuid::now_v7().simple().to_string()).expect("a UUID is a valid run id suffix")
}
