//! The driver: runs workflows durably against a journal, resumes interrupted runs, and
//! replays recorded ones. The journal is the system of record; everything here is
//! decided from the fold of its events ([`RunState`]).
//!
//! Durability points: `RunStarted` before any step runs; every executed tool call before
//! the guest sees its result (in `capabilities/call_tool.rs`); every step's end before the next step starts
//! (the last step's end together with the run's end). Everything else is buffered and
//! made durable with the next point, so the durable journal is always a prefix of what
//! happened, and a resumed attempt can be served from it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tether_types::chain::{verify_and_decode, Chain};
use tether_types::event::{Event, EventKind};

use tether_types::run_budget::RunBudget;
use tether_types::state::{report_from_events, RunState};
use tether_types::store::{JournalStore, StoreError};
use tether_types::{FailureClass, RunId, RunReport};

use crate::durable::journal::RunJournal;
use crate::durable::lease::{LeaseConfig, RunLease};
use crate::durable::tape::{lock, Divergence, Mode, Tape};
use crate::govern::env::EnvValues;
use crate::govern::governance::Governance;
use crate::identity::apply_identity;
use crate::load::LoadedWorkflow;
pub use crate::run::error::DriverError;
use crate::run::scheduler::Scheduler;
use crate::run::workflow::Progress;
use crate::runtime::Runtime;
use crate::step::attempt::{run_step_attempt, StepContext};
use crate::step::LoadedCompensation;

/// The result of replaying a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReplayReport {
    /// The run.
    pub run_id: String,
    /// Events in the run's journal.
    pub events: u64,
    /// Events checked and matched before the first divergence (all of them if none).
    pub matched: u64,
    /// Step attempts re-executed.
    pub attempts: u64,
    /// The first divergence, if any.
    pub divergence: Option<Divergence>,
}

/// What a service adds to a run's start.
#[derive(Default)]
pub struct StartOptions {
    /// Where the run came from, journaled with its start.
    pub origin: Option<tether_types::Origin>,
    /// Awaited once the run's start is durable (and announced with
    /// `Progress::RunStarted`) and before its first step: a slot under the service's
    /// concurrency limit.
    pub admission: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    /// Stops the run at its next attempt boundary when the service stops.
    pub drain: Option<Drain>,
}

/// A service's graceful stop, shared by the runs it executes: once started, no run starts
/// another attempt; each stops (with [`DriverError::Stopped`]) when its running attempts
/// end, durable and with its lease given up, for a host to resume.
#[derive(Clone, Debug)]
pub struct Drain(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Drain {
    fn default() -> Self {
        Drain(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Drain {
    /// Starts draining every run that shares this drain.
    pub fn start(&self) {
        self.0.send_replace(true);
    }

    /// Whether draining has started.
    pub fn started(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once draining has started.
    pub async fn wait(&self) {
        let mut rx = self.receiver();
        let _ = rx.wait_for(|on| *on).await;
    }

    fn receiver(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Runs, resumes and replays workflows against a journal.
#[derive(Clone)]
pub struct Driver {
    runtime: Runtime,
    store: Arc<dyn JournalStore>,
    leases: LeaseConfig,
    /// Component digests known to be in the journal, so each is stored once per process.
    stored: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Driver {
    /// A driver over `runtime` and `store`.
    pub fn new(runtime: Runtime, store: Arc<dyn JournalStore>) -> Self {
        Driver { runtime, store, leases: LeaseConfig::default(), stored: Arc::default() }
    }

    /// How this driver takes runs (lease lifetime, patience with a busy run).
    pub fn with_leases(mut self, leases: LeaseConfig) -> Self {
        self.leases = leases;
        self
    }

    /// The runtime, to load workflows with (a workflow must be loaded by the runtime that runs it).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The journal store.
    pub fn store(&self) -> &Arc<dyn JournalStore> {
        &self.store
    }

    /// Starts a run: pins its plan and components in the journal, then runs its steps.
    pub async fn start(
        &self,
        workflow: &LoadedWorkflow,
        run_id: RunId,
        input: Value,
        identity: &str,
        progress: impl FnMut(Progress<'_>),
    ) -> Result<RunReport, DriverError> {
        self.start_with(workflow, run_id, input, identity, StartOptions::default(), progress).await
    }

    /// [`Driver::start`], with what a service adds: where the run came from, and a slot
    /// to wait for between its durable start and its first step.
    pub async fn start_with(
        &self,
        workflow: &LoadedWorkflow,
        run_id: RunId,
        input: Value,
        identity: &str,
        options: StartOptions,
        progress: impl FnMut(Progress<'_>),
    ) -> Result<RunReport, DriverError> {
        let undo = workflow.steps.iter().filter_map(|s| match &s.compensation {
            Some(LoadedCompensation::Component(c)) => Some((&c.digest, &c.wasm)),
            _ => None,
        });
        let components = workflow.steps.iter().map(|s| (&s.component.digest, &s.component.wasm)).chain(undo);
        let components = components.chain(workflow.tools.values().map(|t| (&t.component.digest, &t.component.wasm)));
        for (digest, wasm) in components {
            // `None`: taken from the store, so already kept there.
            let Some(wasm) = wasm else { continue };
            if self.stored.lock().unwrap_or_else(|p| p.into_inner()).contains(digest) {
                continue;
            }
            self.store.put_component(digest, wasm).await?;
            self.stored.lock().unwrap_or_else(|p| p.into_inner()).insert(digest.clone());
        }
        // The common case, a new run id: its first append takes the lease, one commit.
        let mut progress = progress;
        let mut options = options;
        let lease = RunLease::for_new_run(&self.store, run_id.as_str(), self.leases);
        let result = self
            .start_leased(workflow, run_id.clone(), input.clone(), identity, &mut options, &mut progress, &lease)
            .await;
        // Refused before it was taken: someone else has a lease on this run id.
        let held_elsewhere = !lease.taken() && matches!(&result, Err(DriverError::Store(StoreError::LeaseLost { .. })));
        lease.release().await;
        if !held_elsewhere {
            return result;
        }
        // The run id has a lease already: a run by that id exists, or is starting elsewhere.
        let lease = RunLease::take(&self.store, run_id.as_str(), self.leases).await?;
        let result =
            Box::pin(self.start_leased(workflow, run_id, input, identity, &mut options, &mut progress, &lease)).await;
        lease.release().await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_leased(
        &self,
        workflow: &LoadedWorkflow,
        run_id: RunId,
        input: Value,
        identity: &str,
        options: &mut StartOptions,
        mut progress: impl FnMut(Progress<'_>),
        lease: &RunLease,
    ) -> Result<RunReport, DriverError> {
        let journal = Arc::new(RunJournal::new(run_id, Arc::clone(&self.store), Chain::new(), lease));
        let recorded = workflow.recorded_plan();
        journal.record(EventKind::RunStarted {
            workflow: workflow.name.clone(),
            workflow_digest: recorded.digest.clone(),
            plan: recorded.json.clone(),
            input: input.clone(),
            identity: identity.to_string(),
            origin: options.origin.clone(),
        });
        let env = EnvValues::new(workflow, None);
        journal.set_secrets(env.secrets());
        if let Some(grants) = grants_applied(workflow, identity, &env) {
            journal.record(grants);
        }
        // The run's start and what a resume needs to rebuild it go to the journal together,
        // with the run's first steps: nothing has left the host yet, so nothing waits for
        // them. A start too large for the journal is refused before any work is done; a
        // run id already taken shows when the first append is refused (before any effect,
        // since an effect waits for what precedes it to be durable).
        let input_bytes = input.to_string().len();
        if let Some(e) = journal.oversized() {
            return Err(start_error(e, input_bytes));
        }
        let mut state = RunState::new(Arc::clone(&recorded.normalized), input, identity.to_string());
        for (seq, kind) in journal.take_recorded().into_iter().skip(1) {
            state.apply(seq, &kind).map_err(|reason| DriverError::Load(format!("event {seq}: {reason}")))?;
        }
        let governance = self.governance(&state).await?;
        let announced = options.admission.is_some();
        if announced {
            // A service answers with the run's id once its start is durable, then the run
            // waits its turn; a crash meanwhile leaves an interrupted run to take over.
            // (Taken only once the start is durable: a start retried under another lease
            // still waits for its slot.)
            journal.sync().await.map_err(|e| start_error(e, input_bytes))?;
            progress(Progress::RunStarted { run_id: journal.run_id.as_str() });
            if let Some(admitted) = options.admission.take() {
                admitted.await;
            }
        }
        let scheduler = Scheduler::new(self.runtime.engine_ref().clone(), workflow, journal, state, progress)?
            .with(governance, env)
            .draining_on(options.drain.as_ref().map(Drain::receiver));
        let scheduler = if announced { scheduler } else { scheduler.announcing_start() };
        scheduler.run().await.map_err(|e| match e {
            DriverError::Store(e) => start_error(e, input_bytes),
            other => other,
        })
    }

    /// Continues an interrupted run from its journal. Completed steps are not run again;
    /// an interrupted attempt is run again with its recorded interactions served from
    /// the journal. A finished run is left as it is.
    pub async fn resume(
        &self,
        run_id: &str,
        raises: &[(String, f64)],
        progress: impl FnMut(Progress<'_>),
    ) -> Result<RunReport, DriverError> {
        self.resume_with(run_id, raises, None, None, progress).await
    }

    /// [`Driver::resume`], with the raises journaled as asked for by `requested_by`,
    /// stopping at the next attempt boundary when `drain` starts.
    pub async fn resume_with(
        &self,
        run_id: &str,
        raises: &[(String, f64)],
        requested_by: Option<&str>,
        drain: Option<&Drain>,
        progress: impl FnMut(Progress<'_>),
    ) -> Result<RunReport, DriverError> {
        let lease = RunLease::take(&self.store, run_id, self.leases).await?;
        let result = self.resume_leased(run_id, (raises, requested_by), drain, progress, &lease).await;
        lease.release().await;
        result
    }

    async fn resume_leased(
        &self,
        run_id: &str,
        (raises, requested_by): (&[(String, f64)], Option<&str>),
        drain: Option<&Drain>,
        progress: impl FnMut(Progress<'_>),
        lease: &RunLease,
    ) -> Result<RunReport, DriverError> {
        // Read under the lease: nobody else appends while this host holds it.
        let events = self.events(run_id).await?;
        let id = RunId::try_from(run_id.to_string()).map_err(DriverError::Load)?;
        let state = RunState::fold(run_id, &events)?;
        if state.outcome.is_some() {
            return Ok(report_from_events(id, &events));
        }
        for (metric, _) in raises {
            if !state.plan.run_budget.raisable(metric) {
                return Err(DriverError::NoBudget {
                    metric: metric.clone(),
                    has: budget_names(&state.plan.run_budget),
                });
            }
        }
        let workflow = self.load_recorded(&state, &HashMap::new()).await?;
        // A journal that holds only `run_started` was cut before its grants were written
        // (by a tether that wrote them separately): nothing has run, so the grants are
        // taken now, exactly as a start would.
        let cut_at_start = events.len() == 1;
        let env = EnvValues::new(&workflow, (!cut_at_start).then_some(&state.env));
        let journal =
            Arc::new(RunJournal::new(id, Arc::clone(&self.store), Chain::after(state.last.0, &state.last.1), lease));
        journal.set_secrets(env.secrets());
        if cut_at_start {
            if let Some(grants) = grants_applied(&workflow, &state.identity, &env) {
                journal.record(grants);
            }
        }
        journal.record(EventKind::RunResumed { pid: std::process::id() });
        for (metric, by) in raises {
            journal.record(EventKind::BudgetRaised {
                metric: metric.clone(),
                by: *by,
                requested_by: requested_by.map(str::to_string),
            });
        }
        // A cancel asked for while another host had the run, which stopped before it saw it.
        if state.cancelled.is_none() {
            if let Some((by, reason)) = journal.cancel_requested().await? {
                journal.record(EventKind::RunCancelled { by, reason });
            }
        }
        let mut state = state;
        for (seq, kind) in journal.take_recorded() {
            state.apply(seq, &kind).map_err(|reason| DriverError::Load(format!("event {seq}: {reason}")))?;
        }
        let governance = self.governance(&state).await?;
        Scheduler::new(self.runtime.engine_ref().clone(), &workflow, journal, state, progress)?
            .with(governance, env)
            .draining_on(drain.map(Drain::receiver))
            .run()
            .await
    }

    /// What a run's tool-call checkpoints need, when its plan has a policy: the rules,
    /// the identity, and the track records of this workflow's gates.
    async fn governance(&self, state: &RunState) -> Result<Option<Arc<Governance>>, DriverError> {
        let Some(policy) = state.plan.policy.clone() else { return Ok(None) };
        let rules = tether_types::policy::Rules::compile(&policy).map_err(DriverError::Load)?;
        let outcomes = if policy.gates.values().any(|g| g.relax_after.is_some()) {
            self.gate_outcomes(&state.plan.workflow).await?
        } else {
            Vec::new()
        };
        Ok(Some(Arc::new(Governance {
            identity: state.identity.clone(),
            policy,
            rules,
            workflow: state.plan.workflow.clone(),
            run_input: state.input.clone(),
            outcomes,
        })))
    }

    /// The decided approval requests of every run of `workflow`, in the order decided.
    pub async fn gate_outcomes(&self, workflow: &str) -> Result<Vec<tether_types::autonomy::Outcome>, DriverError> {
        let rows = self.store.gate_events(workflow).await?;
        let mut runs: Vec<(String, Vec<Event>)> = Vec::new();
        for (run, row) in rows {
            let kind: EventKind = serde_json::from_str(&row.payload)
                .map_err(|e| DriverError::Load(format!("run {run}: event {}: {e}", row.seq)))?;
            let event = Event { seq: row.seq, at_us: row.at_us, kind, hash: row.hash };
            match runs.last_mut() {
                Some((r, events)) if *r == run => events.push(event),
                _ => runs.push((run, vec![event])),
            }
        }
        Ok(tether_types::autonomy::outcomes(runs.iter().map(|(r, e)| (r.as_str(), e.as_slice()))))
    }

    /// Appends events decided outside a running host (an approver's decision, a
    /// reviewer's override) to a run's journal, durably, continuing its hash chain.
    /// `decide` sees the run's events as they are under the run's lease, so what it
    /// checks (a gate still open, an approver not yet counted) still holds when its
    /// events are written; its error leaves the journal unchanged.
    pub async fn append_with<E: From<DriverError>>(
        &self,
        run_id: &str,
        decide: impl FnOnce(&[Event]) -> Result<Vec<EventKind>, E>,
    ) -> Result<(), E> {
        append_with(&self.store, self.leases, run_id, decide).await
    }

    /// The run's report, from its journal alone.
    pub async fn report(&self, run_id: &str) -> Result<RunReport, DriverError> {
        let events = self.events(run_id).await?;
        let id = RunId::try_from(run_id.to_string()).map_err(DriverError::Load)?;
        Ok(report_from_events(id, &events))
    }

    /// The run's events, with the hash chain verified.
    pub async fn events(&self, run_id: &str) -> Result<Vec<Event>, DriverError> {
        let rows = self.store.events(run_id).await?;
        Ok(verify_and_decode(run_id, &rows)?)
    }

    async fn load_recorded(
        &self,
        state: &RunState,
        overrides: &HashMap<String, Arc<[u8]>>,
    ) -> Result<LoadedWorkflow, DriverError> {
        let mut wasm = HashMap::new();
        let undo = state.plan.steps.iter().filter_map(|s| match &s.compensate {
            Some(tether_types::plan::PlanCompensation::Component(d)) => Some(d),
            _ => None,
        });
        // A route runs no component: its plan entry has no digest.
        let digests = state
            .plan
            .steps
            .iter()
            .filter(|s| s.route.is_none())
            .map(|s| &s.component)
            .chain(state.plan.tools.values().map(|t| &t.component))
            .chain(undo);
        for digest in digests {
            if wasm.contains_key(digest) {
                continue;
            }
            let bytes =
                self.store.component(digest).await?.ok_or_else(|| {
                    DriverError::Load(format!("component sha256:{digest} is missing from the journal"))
                })?;
            wasm.insert(digest.clone(), Arc::from(bytes));
        }
        let mut workflow = self.runtime.load_plan(&state.plan, &wasm, overrides).map_err(DriverError::Load)?;
        apply_identity(&mut workflow, &state.identity).map_err(DriverError::Load)?;
        Ok(workflow)
    }

    /// Re-executes every finished attempt of a run against its journal, with no side
    /// effects: tool results, clocks and random numbers are served from the journal, and
    /// every guest interaction is compared with the recorded one. `overrides` replaces
    /// step components (by step name) to check a new version against recorded history.
    pub async fn replay(
        &self,
        run_id: &str,
        overrides: &HashMap<String, Arc<[u8]>>,
    ) -> Result<ReplayReport, DriverError> {
        let events = self.events(run_id).await?;
        let state = RunState::fold(run_id, &events)?;
        for name in overrides.keys() {
            if !state.plan.steps.iter().any(|s| &s.name == name) {
                let steps: Vec<&str> = state.plan.steps.iter().map(|s| s.name.as_str()).collect();
                return Err(DriverError::NoStep { name: name.clone(), steps: steps.join(", ") });
            }
        }
        let workflow = self.load_recorded(&state, overrides).await?;
        let env = Arc::new(EnvValues::new(&workflow, Some(&state.env)));
        // Replay never decides again: verdicts and approvals are served from the journal.
        let governance = self.governance(&state).await?;
        let mut report = ReplayReport {
            run_id: run_id.into(),
            events: events.len() as u64,
            matched: 0,
            attempts: 0,
            divergence: None,
        };
        let mut i = 0;
        while i < events.len() {
            let EventKind::StepAttemptStarted { step: name, attempt, input, limits, usage_limits, .. } =
                &events[i].kind
            else {
                i += 1;
                continue;
            };
            let mut interactions = Vec::new();
            let mut end = None;
            let mut j = i + 1;
            while j < events.len() {
                match &events[j].kind {
                    EventKind::StepCompleted { step, .. } | EventKind::StepFailed { step, .. } if step == name => {
                        end = Some(&events[j]);
                        break;
                    }
                    // Attempts of parallel steps interleave; each keeps its own interactions.
                    k if k.is_interaction() && k.step() == Some(name.as_str()) => {
                        interactions.push((events[j].seq, k.clone()))
                    }
                    _ => {}
                }
                j += 1;
            }
            let Some(end) = end else {
                // An attempt that never ended (the run was interrupted and not resumed):
                // there is no recorded outcome to compare with.
                i = j;
                continue;
            };
            let step_name = tether_types::flow::step_of(name);
            let step = workflow.steps.iter().find(|s| s.spec.name == step_name).ok_or_else(|| {
                DriverError::Load(format!("the journal has step `{name}`, which the run's plan does not"))
            })?;
            let tape = Tape::new(name, interactions, Mode::Replay, None);
            let ctx = StepContext {
                run_id: run_id.to_string(),
                key: name.clone(),
                tape: Some(Arc::clone(&tape)),
                budget: limits.unwrap_or(step.spec.budget),
                usage_limits: usage_limits.clone(),
                governance: governance.clone(),
                env: Arc::clone(&env),
            };
            let (outcome, stats) = run_step_attempt(self.runtime.engine_ref(), step, &input.to_string(), ctx).await;
            report.attempts += 1;
            let actual_end = tether_types::next::after::end_event(name, *attempt, &outcome, &stats);
            let tape = lock(&tape);
            let divergence = if let Some(d) = tape.divergence.clone() {
                Some(d)
            } else if let Some((seq, recorded)) = tape.leftover().cloned() {
                Some(Divergence { seq: Some(seq), step: name.clone(), expected: Some(recorded), actual: actual_end })
            } else if !same_end(&end.kind, &actual_end) {
                Some(Divergence {
                    seq: Some(end.seq),
                    step: name.clone(),
                    expected: Some(end.kind.clone()),
                    actual: actual_end,
                })
            } else {
                None
            };
            if let Some(d) = divergence {
                // Everything before this attempt, its start, and what it matched.
                report.matched = i as u64 + 1 + tape.matched;
                report.divergence = Some(d);
                return Ok(report);
            }
            i = j + 1;
        }
        report.matched = report.events;
        Ok(report)
    }
}

fn budget_names(b: &RunBudget) -> String {
    let mut names: Vec<String> = Vec::new();
    if b.fuel.is_some() {
        names.push("fuel".into());
    }
    if b.wall_time.is_some() {
        names.push("wall_time".into());
    }
    if b.tool_calls.is_some() {
        names.push("tool_calls".into());
    }
    if b.http_requests.is_some() {
        names.push("http_requests".into());
    }
    if b.http_bytes.is_some() {
        names.push("http_bytes".into());
    }
    names.extend(b.usage.keys().cloned());
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Two attempt endings agree if they produced the same output, or failed with the same
/// class. Measurements (fuel, time, memory) are not compared.
fn same_end(recorded: &EventKind, actual: &EventKind) -> bool {
    match (recorded, actual) {
        (EventKind::StepCompleted { output: a, .. }, EventKind::StepCompleted { output: b, .. }) => a == b,
        (EventKind::StepFailed { failure: a, .. }, EventKind::StepFailed { failure: b, .. }) => {
            // An attempt cut short by the run's budget is recorded as `run_budget_exceeded`;
            // re-run with the same limits it ends by the limit that was clipped.
            a.class == b.class
                || (a.class == FailureClass::RunBudgetExceeded
                    && matches!(
                        b.class,
                        FailureClass::FuelExhausted | FailureClass::TimedOut | FailureClass::ToolBudgetExceeded
                    ))
        }
        _ => false,
    }
}

/// [`Driver::append_with`] without a runtime: for commands that only record decisions.
pub async fn append_with<E: From<DriverError>>(
    store: &Arc<dyn JournalStore>,
    leases: LeaseConfig,
    run_id: &str,
    decide: impl FnOnce(&[Event]) -> Result<Vec<EventKind>, E>,
) -> Result<(), E> {
    let lease = RunLease::take(store, run_id, leases).await.map_err(DriverError::from)?;
    let result = append_leased(store, run_id, decide, &lease).await;
    lease.release().await;
    result
}

async fn append_leased<E: From<DriverError>>(
    store: &Arc<dyn JournalStore>,
    run_id: &str,
    decide: impl FnOnce(&[Event]) -> Result<Vec<EventKind>, E>,
    lease: &RunLease,
) -> Result<(), E> {
    let rows = store.events(run_id).await.map_err(DriverError::from)?;
    let events = verify_and_decode(run_id, &rows).map_err(DriverError::from)?;
    let kinds = decide(&events)?;
    let last = events.last().ok_or_else(|| DriverError::Load(format!("run {run_id} has no events")))?;
    let id = RunId::try_from(run_id.to_string()).map_err(DriverError::Load)?;
    let journal = RunJournal::new(id, Arc::clone(store), Chain::after(last.seq, &last.hash), lease);
    for kind in kinds {
        journal.record(kind);
    }
    journal.flush_final().await.map_err(DriverError::from)?;
    Ok(())
}

/// The `grants_applied` event a run starts with, when there is anything to record: the
/// identity under a policy, granted environment values, or refused grants.
fn grants_applied(workflow: &LoadedWorkflow, identity: &str, env: &EnvValues) -> Option<EventKind> {
    let journaled = env.journaled(workflow);
    (workflow.plan.policy.is_some() || !workflow.refused.is_empty() || !journaled.is_empty()).then(|| {
        EventKind::GrantsApplied { identity: identity.to_string(), env: journaled, refused: workflow.refused.clone() }
    })
}

/// What a store's refusal of a new run's first event means to whoever started it: the
/// run id is taken, or the input is too large.
fn start_error(e: StoreError, input_bytes: usize) -> DriverError {
    match e {
        StoreError::Conflict { run, seq: 1, .. } => DriverError::Exists(run),
        StoreError::PayloadTooLarge { seq: 1, size, cap, .. } => DriverError::InputTooLarge(format!(
            "the run input is {input_bytes} bytes: with the workflow's plan, its first journal event would be \
             {size} bytes, above the journal's cap of {cap}; pass large data by reference (a file in a granted \
             directory) instead"
        )),
        other => DriverError::Store(other),
    }
}
