//! The driver: runs workflows durably against a journal, resumes interrupted runs, and
//! replays recorded ones. The journal is the system of record; everything here is
//! decided from the fold of its events ([`RunState`]).
//!
//! Durability points: `RunStarted` before any step runs; every executed tool call before
//! the guest sees its result (in `host.rs`); every step's end before the next step starts
//! (the last step's end together with the run's end). Everything else is buffered and
//! made durable with the next point, so the durable journal is always a prefix of what
//! happened, and a resumed attempt can be served from it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use std::collections::BTreeMap;
use tether_types::event::{verify_and_decode, Chain, Event, EventKind, JournalError, ToolResult};

use tether_types::run_budget::{Remaining, RunBudget, RunUsage};
use tether_types::state::{report_from_events, FoldError, OpenAttempt, PendingRetry, RunState};
use tether_types::store::{JournalStore, StoreError};
use tether_types::{FailureClass, RunError, RunId, RunReport, RunStatus, StepFailure, StepReport, StepStats};

use crate::attempt::{run_step_attempt, StepContext};
use crate::engine::Runtime;
use crate::journal::RunJournal;
use crate::load::{LoadedCompensation, LoadedStep, LoadedWorkflow};
use crate::tape::{lock, Divergence, Mode, Tape};
use crate::workflow::Progress;

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
    /// The run id is taken.
    #[error("run {0} already exists; continue it with `tether resume {0}`")]
    Exists(String),
}

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

/// Runs, resumes and replays workflows against a journal.
#[derive(Clone)]
pub struct Driver {
    runtime: Runtime,
    store: Arc<dyn JournalStore>,
    /// Component digests known to be in the journal, so each is stored once per process.
    stored: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Driver {
    /// A driver over `runtime` and `store`.
    pub fn new(runtime: Runtime, store: Arc<dyn JournalStore>) -> Self {
        Driver { runtime, store, stored: Arc::default() }
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
        let undo = workflow.steps.iter().filter_map(|s| match &s.compensation {
            Some(LoadedCompensation::Component(c)) => Some((&c.digest, &c.wasm)),
            _ => None,
        });
        let components = workflow.steps.iter().map(|s| (&s.component.digest, &s.component.wasm)).chain(undo);
        let components = components.chain(workflow.tools.values().map(|t| (&t.component.digest, &t.component.wasm)));
        for (digest, wasm) in components {
            if self.stored.lock().unwrap_or_else(|p| p.into_inner()).contains(digest) {
                continue;
            }
            self.store.put_component(digest, wasm).await?;
            self.stored.lock().unwrap_or_else(|p| p.into_inner()).insert(digest.clone());
        }
        let journal = Arc::new(RunJournal::new(run_id, Arc::clone(&self.store), Chain::new()));
        journal.record(&EventKind::RunStarted {
            workflow: workflow.name.clone(),
            workflow_digest: workflow.plan.digest(),
            plan: serde_json::to_value(&workflow.plan).expect("plans serialize"),
            input: input.clone(),
            identity: identity.to_string(),
        });
        // The journal refuses a second event 1 for a run id: that is how a taken id shows.
        journal.flush().await.map_err(|e| match e {
            StoreError::Conflict { run, seq: 1 } => DriverError::Exists(run),
            other => DriverError::Store(other),
        })?;
        let from = Continue { budget: workflow.plan.run_budget.clone(), ..Continue::new(input) };
        self.execute(workflow, journal, from, progress).await
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
        let events = self.events(run_id).await?;
        let id = RunId::try_from(run_id.to_string()).map_err(DriverError::Load)?;
        let state = RunState::fold(run_id, &events)?;
        if state.outcome.is_some() {
            return Ok(report_from_events(id, &events));
        }
        let workflow = self.load_recorded(&state, &HashMap::new()).await?;
        let journal = Arc::new(RunJournal::new(id, Arc::clone(&self.store), Chain::after(state.last.0, &state.last.1)));
        journal.record(&EventKind::RunResumed { pid: std::process::id() });
        let mut all_raises = state.raises.clone();
        for (metric, by) in raises {
            if !state.plan.run_budget.raisable(metric) {
                return Err(DriverError::Load(format!(
                    "--budget {metric}: this run has no `{metric}` budget to raise (it has: {})",
                    budget_names(&state.plan.run_budget)
                )));
            }
            journal.record(&EventKind::BudgetRaised { metric: metric.clone(), by: *by });
            *all_raises.entry(metric.clone()).or_default() += by;
        }
        let input = match state.completed.last() {
            Some((_, _, output)) => output.clone(),
            None => state.input.clone(),
        };
        let from = Continue {
            next: state.next_step(),
            input,
            open: state.open,
            retry: state.retry,
            attempts: state.attempts,
            used: state.used,
            budget: state.plan.run_budget.raised(&all_raises),
            completed: state.completed,
            compensating: state.compensating,
        };
        self.execute(&workflow, journal, from, progress).await
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
        let digests = state
            .plan
            .steps
            .iter()
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
        self.runtime.load_plan(&state.plan, &wasm, overrides).map_err(DriverError::Load)
    }

    /// Runs steps `next..` of the workflow, journaling as it goes.
    async fn execute(
        &self,
        workflow: &LoadedWorkflow,
        journal: Arc<RunJournal>,
        from: Continue,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<RunReport, DriverError> {
        let Continue { next, mut input, mut open, mut retry, attempts, mut used, budget, mut completed, compensating } =
            from;
        if let Some((error, done)) = compensating {
            // Interrupted while undoing completed steps: finish that, nothing else.
            let status = self.fail(workflow, &journal, &error, &completed, Some(&done)).await?;
            return Ok(terminal_report(&journal.run_id, workflow, status, Some(error)));
        }
        let start = std::time::Instant::now();
        let run_id = journal.run_id.clone();
        let last = workflow.steps.len().saturating_sub(1);
        let mut reports = Vec::new();
        let mut error: Option<RunError> = None;
        let mut paused = false;
        'steps: for (index, step) in workflow.steps.iter().enumerate().skip(next) {
            progress(Progress::StepStarted { index, name: &step.spec.name });
            // The attempt to run: an interrupted one, a scheduled retry, or the first.
            let mut resumed = open.take().filter(|o| o.step == step.spec.name);
            let mut attempt = match retry.take().filter(|r| r.step == step.spec.name) {
                Some(r) => {
                    wait_until(r.not_before_us).await;
                    r.attempt
                }
                None => {
                    resumed.as_ref().map_or_else(|| attempts.get(&step.spec.name).map_or(1, |a| a + 1), |o| o.attempt)
                }
            };
            loop {
                let (expected, limits) = match resumed.take() {
                    Some(o) if o.attempt == attempt => {
                        input = o.input;
                        let limits = Limits {
                            budget: o.limits.unwrap_or(step.spec.budget),
                            usage: o.usage_limits,
                            capped: Capped::default(),
                        };
                        (o.interactions, limits)
                    }
                    _ => {
                        let limits = match budget.remaining(&used) {
                            Ok(remaining) => Limits::clip(step.spec.budget, &remaining),
                            Err(exhausted) => {
                                self.pause(&journal, step, exhausted).await?;
                                paused = true;
                                break 'steps;
                            }
                        };
                        journal.record(&EventKind::StepAttemptStarted {
                            step: step.spec.name.clone(),
                            attempt,
                            component_digest: step.component.digest.clone(),
                            input: input.clone(),
                            limits: limits.capped.any().then_some(limits.budget),
                            usage_limits: limits.usage.clone(),
                        });
                        (Vec::new(), limits)
                    }
                };
                let (outcome, stats) = self.attempt(step, &run_id, &input, expected, &journal, &limits).await;
                used.add(&stats);
                journal.record(&end_event(step, attempt, &outcome, &stats));
                if let Err(f) = &outcome {
                    if limits.capped.explains(f) {
                        let exhausted = budget.remaining(&used).err().unwrap_or_else(|| limits.capped.name(f));
                        progress(Progress::StepFinished { index, report: &failed_report(step, f, &stats) });
                        self.pause(&journal, step, exhausted).await?;
                        paused = true;
                        break 'steps;
                    }
                }
                let report = StepReport {
                    name: step.spec.name.clone(),
                    outcome: if outcome.is_ok() { RunStatus::Completed } else { RunStatus::Failed },
                    error: outcome.as_ref().err().cloned(),
                    stats,
                };
                let retry_after = match &outcome {
                    Err(f) if step.spec.retry.retries(f, attempt) => {
                        Some(step.spec.retry.backoff(attempt, rand::random()))
                    }
                    _ => None,
                };
                match outcome {
                    Ok(output) => {
                        completed.push((step.spec.name.clone(), input.clone(), output.clone()));
                        if index == last {
                            journal.record(&EventKind::RunCompleted { output: output.clone() });
                        }
                        input = output;
                    }
                    Err(_) if retry_after.is_some() => {}
                    Err(f) => {
                        error = Some(RunError { class: f.class, step: step.spec.name.clone(), message: f.message })
                    }
                }
                if let Some(backoff) = retry_after {
                    let not_before_us = crate::journal::now_us() + backoff.as_micros() as u64;
                    journal.record(&EventKind::RetryScheduled {
                        step: step.spec.name.clone(),
                        attempt: attempt + 1,
                        not_before_us,
                        backoff_ms: backoff.as_millis() as u64,
                    });
                }
                journal.flush().await?;
                progress(Progress::StepFinished { index, report: &report });
                reports.push(report);
                match retry_after {
                    Some(backoff) => {
                        tokio::time::sleep(backoff).await;
                        attempt += 1;
                    }
                    None => break,
                }
            }
            if error.is_some() {
                break;
            }
        }
        let status = match (&error, paused) {
            (_, true) => RunStatus::Paused,
            (Some(e), _) => self.fail(workflow, &journal, e, &completed, None).await?,
            (None, _) => RunStatus::Completed,
        };
        let wall_us = start.elapsed().as_micros() as u64;
        let totals = RunReport::totals_of(&reports, wall_us);
        Ok(RunReport {
            run_id,
            workflow: workflow.name.clone(),
            status,
            output: if status == RunStatus::Completed { input } else { Value::Null },
            error,
            steps: reports,
            totals,
        })
    }

    /// Ends a failed run: `run_failed` if nothing needs undoing; otherwise the completed
    /// steps' compensations, in reverse order of completion, each durable before the
    /// next, then `run_compensated` or `run_compensation_failed`. `resumed` is set when
    /// the journal shows compensation already begun, with the steps already compensated.
    async fn fail(
        &self,
        workflow: &LoadedWorkflow,
        journal: &RunJournal,
        error: &RunError,
        completed: &[(String, Value, Value)],
        resumed: Option<&[String]>,
    ) -> Result<RunStatus, DriverError> {
        let done = resumed.unwrap_or_default();
        let to_undo: Vec<(&LoadedStep, &Value, &Value)> = completed
            .iter()
            .rev()
            .filter_map(|(name, i, o)| workflow.steps.iter().find(|s| &s.spec.name == name).map(|s| (s, i, o)))
            .filter(|(s, _, _)| s.compensation.is_some())
            .collect();
        if to_undo.is_empty() {
            journal.record(&EventKind::RunFailed { error: error.clone() });
            journal.flush().await?;
            return Ok(RunStatus::Failed);
        }
        if resumed.is_none() {
            journal.record(&EventKind::CompensationBegun { error: error.clone() });
            journal.flush().await?;
        }
        let mut failed = Vec::new();
        for (step, input, output) in to_undo {
            if done.contains(&step.spec.name) {
                continue;
            }
            let event = self.compensate(&journal.run_id, step, input, output).await;
            if matches!(&event, EventKind::StepCompensated { result: ToolResult::Err { .. }, .. }) {
                failed.push(step.spec.name.clone());
            }
            journal.record(&event);
            journal.flush().await?;
        }
        let (event, status) = if failed.is_empty() {
            (EventKind::RunCompensated { error: error.clone() }, RunStatus::Compensated)
        } else {
            (EventKind::RunCompensationFailed { error: error.clone(), failed }, RunStatus::CompensationFailed)
        };
        journal.record(&event);
        journal.flush().await?;
        Ok(status)
    }

    /// Runs one step's compensation with `{"step", "input", "output"}`; a tool gets the
    /// idempotency key `RUN/compensate/STEP`.
    async fn compensate(&self, run_id: &RunId, step: &LoadedStep, input: &Value, output: &Value) -> EventKind {
        let payload = serde_json::json!({"step": step.spec.name, "input": input, "output": output}).to_string();
        let engine = self.runtime.engine_ref();
        let (via, (outcome, stats)) = match step.compensation.as_ref().expect("filtered by fail()") {
            LoadedCompensation::Tool(tool) => {
                let key = format!("{run_id}/compensate/{}", step.spec.name);
                let limits = crate::attempt::Limits::from(tool.spec.budget);
                (
                    format!("tool:{}", tool.spec.name),
                    crate::attempt::run_tool_call(engine, tool, &payload, limits, key).await,
                )
            }
            LoadedCompensation::Component(component) => {
                let undo = LoadedStep {
                    spec: tether_types::StepSpec {
                        name: format!("{}:compensate", step.spec.name),
                        tools: Vec::new(),
                        compensate: None,
                        retry: Default::default(),
                        ..step.spec.clone()
                    },
                    component: Arc::clone(component),
                    tools: Arc::default(),
                    compensation: None,
                };
                let ctx = StepContext {
                    run_id: run_id.to_string(),
                    tape: None,
                    budget: step.spec.budget,
                    usage_limits: BTreeMap::new(),
                };
                (format!("component:{}", component.digest), run_step_attempt(engine, &undo, &payload, ctx).await)
            }
        };
        let result = match outcome {
            Ok(json) => ToolResult::Ok(serde_json::from_str(&json).unwrap_or(Value::Null)),
            Err(f) => ToolResult::Err {
                kind: f.guest_kind.unwrap_or(tether_types::GuestFailureKind::Internal),
                message: f.message,
                class: Some(f.class),
            },
        };
        EventKind::StepCompensated {
            step: step.spec.name.clone(),
            via,
            result,
            fuel: stats.total_fuel(),
            wall_us: stats.wall_us,
        }
    }

    /// Pauses the run because a budget ran out; durable before it returns.
    async fn pause(
        &self,
        journal: &RunJournal,
        step: &LoadedStep,
        (exceeded, used, limit): (String, f64, f64),
    ) -> Result<(), DriverError> {
        journal.record(&EventKind::RunPaused { step: step.spec.name.clone(), exceeded, used, limit });
        Ok(journal.flush().await?)
    }

    /// One live attempt with a tape; checks that it consumed everything it was served.
    async fn attempt(
        &self,
        step: &LoadedStep,
        run_id: &RunId,
        input: &Value,
        expected: Vec<(u64, EventKind)>,
        journal: &Arc<RunJournal>,
        limits: &Limits,
    ) -> (Result<Value, StepFailure>, StepStats) {
        let tape = Tape::new(&step.spec.name, expected, Mode::Live, Some(Arc::clone(journal)));
        let ctx = StepContext {
            run_id: run_id.to_string(),
            tape: Some(Arc::clone(&tape)),
            budget: limits.budget,
            usage_limits: limits.usage.clone(),
        };
        let (outcome, stats) = run_step_attempt(self.runtime.engine_ref(), step, &input.to_string(), ctx).await;
        let outcome = outcome.map(|json| serde_json::from_str(&json).unwrap_or(Value::Null));
        let leftover = lock(&tape).leftover().cloned();
        let outcome = match (outcome, leftover) {
            (Ok(_), Some((seq, recorded))) => Err(StepFailure::new(
                FailureClass::HostFault,
                format!(
                    "the step ended before repeating its recorded interaction at event {seq} ({}); is the component nondeterministic?",
                    recorded.name()
                ),
            )),
            (outcome, _) => outcome,
        };
        (outcome, stats)
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
                return Err(DriverError::Load(format!(
                    "--with names step `{name}`, which this run does not have (its steps: {})",
                    steps.join(", ")
                )));
            }
        }
        let workflow = self.load_recorded(&state, overrides).await?;
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
                    k if k.is_interaction() => interactions.push((events[j].seq, k.clone())),
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
            let step = workflow.steps.iter().find(|s| &s.spec.name == name).ok_or_else(|| {
                DriverError::Load(format!("the journal has step `{name}`, which the run's plan does not"))
            })?;
            let tape = Tape::new(name, interactions, Mode::Replay, None);
            let ctx = StepContext {
                run_id: run_id.to_string(),
                tape: Some(Arc::clone(&tape)),
                budget: limits.unwrap_or(step.spec.budget),
                usage_limits: usage_limits.clone(),
            };
            let (outcome, stats) = run_step_attempt(self.runtime.engine_ref(), step, &input.to_string(), ctx).await;
            report.attempts += 1;
            let outcome = outcome.map(|json| serde_json::from_str::<Value>(&json).unwrap_or(Value::Null));
            let actual_end = end_event(step, *attempt, &outcome, &stats);
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

/// Where `execute` picks up: the next step and its input, any interrupted attempt or
/// scheduled retry, attempt numbers so far, what the run has used, and its budget.
struct Continue {
    next: usize,
    input: Value,
    open: Option<OpenAttempt>,
    retry: Option<PendingRetry>,
    attempts: BTreeMap<String, u32>,
    used: RunUsage,
    budget: RunBudget,
    /// Steps completed so far: (step, input, output), for compensation.
    completed: Vec<(String, Value, Value)>,
    /// Set if the run was already undoing its completed steps.
    compensating: Option<(RunError, Vec<String>)>,
}

impl Continue {
    fn new(input: Value) -> Self {
        Continue {
            next: 0,
            input,
            open: None,
            retry: None,
            attempts: BTreeMap::new(),
            used: RunUsage::default(),
            budget: RunBudget::default(),
            completed: Vec::new(),
            compensating: None,
        }
    }
}

/// Which of an attempt's limits were clipped by the run's budget.
#[derive(Clone, Copy, Default)]
struct Capped {
    fuel: bool,
    wall_time: bool,
    tool_calls: bool,
}

impl Capped {
    fn any(&self) -> bool {
        self.fuel || self.wall_time || self.tool_calls
    }

    /// Whether this failure is the run's budget running out rather than the step's.
    fn explains(&self, f: &StepFailure) -> bool {
        match f.class {
            FailureClass::RunBudgetExceeded => true,
            FailureClass::FuelExhausted => self.fuel,
            FailureClass::TimedOut => self.wall_time,
            FailureClass::ToolBudgetExceeded => self.tool_calls,
            _ => false,
        }
    }

    fn name(&self, f: &StepFailure) -> (String, f64, f64) {
        let what = match f.class {
            FailureClass::FuelExhausted => "fuel",
            FailureClass::TimedOut => "wall_time",
            FailureClass::ToolBudgetExceeded => "tool_calls",
            _ => "usage",
        };
        (what.to_string(), 0.0, 0.0)
    }
}

/// An attempt's effective limits.
struct Limits {
    budget: tether_types::StepBudget,
    usage: BTreeMap<String, f64>,
    capped: Capped,
}

impl Limits {
    /// The step's budget, clipped to what the run has left.
    fn clip(mut budget: tether_types::StepBudget, remaining: &Remaining) -> Limits {
        let mut capped = Capped::default();
        if let Some(f) = remaining.fuel.filter(|f| *f < budget.fuel) {
            budget.fuel = f;
            capped.fuel = true;
        }
        if let Some(w) = remaining.wall_time.filter(|w| *w < budget.wall_time) {
            budget.wall_time = w;
            capped.wall_time = true;
        }
        if let Some(t) = remaining.tool_calls.filter(|t| *t < u64::from(budget.tool_calls)) {
            budget.tool_calls = t as u32;
            capped.tool_calls = true;
        }
        Limits { budget, usage: remaining.usage.clone(), capped }
    }
}

/// The report of a run that only finished its compensations in this process.
fn terminal_report(run_id: &RunId, workflow: &LoadedWorkflow, status: RunStatus, error: Option<RunError>) -> RunReport {
    RunReport {
        run_id: run_id.clone(),
        workflow: workflow.name.clone(),
        status,
        output: Value::Null,
        error,
        steps: Vec::new(),
        totals: Default::default(),
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
    names.extend(b.usage.keys().cloned());
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn failed_report(step: &LoadedStep, f: &StepFailure, stats: &StepStats) -> StepReport {
    StepReport {
        name: step.spec.name.clone(),
        outcome: RunStatus::Failed,
        error: Some(f.clone()),
        stats: stats.clone(),
    }
}

/// Sleeps until a wall-clock time (microseconds since the Unix epoch); a durable backoff
/// resumed after a restart waits only for what is left of it.
async fn wait_until(not_before_us: u64) {
    let now = crate::journal::now_us();
    if not_before_us > now {
        tokio::time::sleep(std::time::Duration::from_micros(not_before_us - now)).await;
    }
}

/// The event that ends an attempt with `outcome`.
fn end_event(step: &LoadedStep, attempt: u32, outcome: &Result<Value, StepFailure>, stats: &StepStats) -> EventKind {
    match outcome {
        Ok(output) => EventKind::StepCompleted {
            step: step.spec.name.clone(),
            attempt,
            output: output.clone(),
            fuel: stats.fuel,
            tool_fuel: stats.tool_fuel,
            wall_us: stats.wall_us,
            peak_memory: stats.peak_memory,
        },
        Err(f) => EventKind::StepFailed {
            step: step.spec.name.clone(),
            attempt,
            failure: f.clone(),
            fuel: stats.fuel,
            tool_fuel: stats.tool_fuel,
            wall_us: stats.wall_us,
            peak_memory: stats.peak_memory,
        },
    }
}

/// Two attempt endings agree if they produced the same output, or failed with the same
/// class. Measurements (fuel, time, memory) are not compared.
fn same_end(recorded: &EventKind, actual: &EventKind) -> bool {
    match (recorded, actual) {
        (EventKind::StepCompleted { output: a, .. }, EventKind::StepCompleted { output: b, .. }) => a == b,
        (EventKind::StepFailed { failure: a, .. }, EventKind::StepFailed { failure: b, .. }) => a.class == b.class,
        _ => false,
    }
}
