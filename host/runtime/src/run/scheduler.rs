//! The scheduler: runs a workflow's steps as their needs allow, several at once. It asks
//! the pure [`Flow::next`] what to do, records decisions, launches ready attempts as
//! tasks, and records each attempt's end (durably, before anything depends on it). Its
//! run state is the fold of everything recorded, so what it decides is what a resumed
//! run would decide.

use std::collections::{BTreeMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tether_types::next::after::{after_attempt, Ended};
use tether_types::next::{approvals, Flow, Launch, Next};
use tether_types::run_budget::{Admission, AttemptLimits as Limits, Capped, RunBudget, RunUsage};
use tether_types::state::{OpenAttempt, RunState};
use tether_types::{EventKind, FailureClass, RunError, RunReport, RunStatus, StepFailure, StepReport, StepStats};
use tokio::task::JoinSet;

use crate::durable::journal::RunJournal;
use crate::durable::tape::{lock, Mode, Tape};
use crate::durable::time::now_us;
use crate::govern::env::EnvValues;
use crate::govern::governance::Governance;
use crate::load::LoadedWorkflow;
use crate::run::compensation;
use crate::run::error::DriverError;
use crate::run::workflow::Progress;
use crate::step::attempt::{run_step_attempt, StepContext};
use crate::step::LoadedStep;

/// How often a run with attempts in flight looks for a cancel asked for by another
/// process (one indexed read).
const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// How long attempts may run before what the run recorded is handed to the journal
/// (output commit: it is synced in the background; see `RunJournal::flush`).
const SEND_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// An attempt that ended, as its task reports it.
struct Finished {
    key: String,
    step: Arc<LoadedStep>,
    attempt: u32,
    outcome: Result<Value, StepFailure>,
    stats: StepStats,
    capped: Capped,
}

pub(crate) struct Scheduler<'a, P> {
    engine: wasmtime::Engine,
    workflow: &'a LoadedWorkflow,
    journal: Arc<RunJournal>,
    state: RunState,
    flow: Arc<Flow>,
    running: JoinSet<Finished>,
    busy: HashSet<String>,
    /// Set when a run budget ran out: the key that could not start, and what ran out.
    pausing: Option<(String, (String, f64, f64))>,
    reports: Vec<StepReport>,
    progress: P,
    started: Instant,
    governance: Option<Arc<Governance>>,
    env: Arc<EnvValues>,
    /// Set when nothing can run until these approval requests are decided.
    waiting: Option<Vec<String>>,
    /// What each running attempt may still consume of the run's budget, by key: held
    /// from launch until its end is recorded, so concurrent attempts share what is left
    /// and the run's totals never pass its limits.
    reserved: BTreeMap<String, RunUsage>,
    /// Fires [`SEND_AFTER`] after events were first left unsent while attempts run.
    send_timer: Pin<Box<tokio::time::Sleep>>,
    send_armed: bool,
    /// Fires every [`CANCEL_POLL`] while attempts run.
    poll_timer: Pin<Box<tokio::time::Sleep>>,
    /// Set for a new run until `Progress::RunStarted` is given: once its start is durable.
    announce: bool,
    /// Turns `true` when the host is stopping: no attempt starts after that, and once the
    /// running ones end the run is left, durable, for a host to resume.
    drain: Option<tokio::sync::watch::Receiver<bool>>,
    /// Attempts launched to start after a retry's backoff: set once each has begun. A
    /// drain withdraws those that have not (their retry is journaled; a resume waits
    /// out what is left of the backoff).
    backoffs: Vec<(Arc<AtomicBool>, tokio::task::AbortHandle)>,
}

impl<'a, P: FnMut(Progress<'_>)> Scheduler<'a, P> {
    pub(crate) fn new(
        engine: wasmtime::Engine,
        workflow: &'a LoadedWorkflow,
        journal: Arc<RunJournal>,
        state: RunState,
        progress: P,
    ) -> Result<Self, DriverError> {
        let flow = match workflow.flow_of(&state.plan) {
            Some(flow) => flow,
            None => Arc::new(Flow::compile(&state.plan).map_err(DriverError::Load)?),
        };
        Ok(Scheduler {
            engine,
            workflow,
            journal,
            state,
            flow,
            running: JoinSet::new(),
            busy: HashSet::new(),
            pausing: None,
            reports: Vec::new(),
            progress,
            started: Instant::now(),
            governance: None,
            env: Arc::default(),
            waiting: None,
            reserved: BTreeMap::new(),
            send_timer: Box::pin(tokio::time::sleep(SEND_AFTER)),
            send_armed: false,
            poll_timer: Box::pin(tokio::time::sleep(CANCEL_POLL)),
            announce: false,
            drain: None,
            backoffs: Vec::new(),
        })
    }

    /// Stops starting attempts once `drain` turns `true` (see [`crate::Drain`]).
    pub(crate) fn draining_on(mut self, drain: Option<tokio::sync::watch::Receiver<bool>>) -> Self {
        self.drain = drain;
        self
    }

    fn draining(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| *d.borrow())
    }

    /// A new run: its id is given out (`Progress::RunStarted`) once its start is durable
    /// while the run goes on. A fast run's start is durable only with its end, and then
    /// its report names it instead.
    pub(crate) fn announcing_start(mut self) -> Self {
        self.announce = true;
        self
    }

    /// Gives the run's id out, if it is to be and its start is now durable.
    fn announce(&mut self) {
        if self.announce && self.journal.started() {
            self.announce = false;
            (self.progress)(Progress::RunStarted { run_id: self.journal.run_id.as_str() });
        }
    }

    /// The run's policy (for tool-call checkpoints and earned autonomy) and its granted
    /// environment values.
    pub(crate) fn with(mut self, governance: Option<Arc<Governance>>, env: EnvValues) -> Self {
        self.governance = governance;
        self.env = Arc::new(env);
        self
    }

    /// Runs until the run completes, fails (and is compensated), or pauses.
    pub(crate) async fn run(mut self) -> Result<RunReport, DriverError> {
        self.absorb()?;
        if let Some(begun) = self.state.compensating.clone() {
            // Interrupted while undoing completed steps: finish that, nothing else.
            let status =
                Box::pin(compensation::fail(&self.engine, self.workflow, &self.journal, &begun.error, &self.state))
                    .await?;
            return Ok(self.report(status, Value::Null, Some(begun.error)));
        }
        if self.state.cancelled.is_some() && self.state.outcome.is_none() {
            // Cancelled by a person: nothing more starts; completed steps are undone.
            return Box::pin(self.end_cancelled()).await;
        }
        let end = loop {
            self.announce();
            if self.draining() {
                self.withdraw_backoffs();
            }
            let next = if self.pausing.is_some() || self.draining() {
                Next::Run(Vec::new())
            } else {
                self.flow.next(&self.state, &self.busy, now_us())
            };
            match next {
                Next::Record(events) => {
                    for event in events {
                        self.note_skip(&event);
                        let auto = self.auto_decision(&event);
                        self.journal.record(event);
                        if let Some(auto) = auto {
                            self.journal.record(auto);
                        }
                    }
                    self.journal.flush().await?;
                    self.absorb()?;
                    continue;
                }
                Next::Run(launches) => {
                    let mut fresh = launches.iter().filter(|l| l.resume.is_none()).count();
                    for launch in launches {
                        if self.pausing.is_none() {
                            let is_fresh = launch.resume.is_none();
                            self.launch(launch, fresh.max(1));
                            fresh -= usize::from(is_fresh);
                        }
                    }
                }
                Next::Fail(error) if self.running.is_empty() => break Err(error),
                Next::Complete(output) => break Ok(output),
                Next::Fail(_) => {}
                Next::Wait(ids) if self.running.is_empty() => {
                    if self.decide_due() {
                        self.journal.flush().await?;
                        self.absorb()?;
                        continue;
                    }
                    self.waiting = Some(ids);
                    break Ok(Value::Null);
                }
                Next::Wait(_) => {}
            }
            if self.running.is_empty() {
                if self.pausing.is_some() {
                    break Ok(Value::Null);
                }
                if self.draining() {
                    // Everything recorded is made durable; the driver gives the lease up.
                    self.journal.sync().await?;
                    return Err(DriverError::Stopped);
                }
                break Err(RunError {
                    class: FailureClass::HostFault,
                    step: String::new(),
                    message: "the run cannot go on: a ready step has no component (please report this)".into(),
                });
            }
            // While attempts run: what was recorded goes to the journal once they take a
            // while (a fast attempt's events wait for the next), and a cancel asked for by
            // another process is looked for.
            match (self.journal.unsent(), self.send_armed) {
                (true, false) => {
                    self.send_timer.as_mut().reset(tokio::time::Instant::now() + SEND_AFTER);
                    self.send_armed = true;
                }
                (false, true) => self.send_armed = false,
                _ => {}
            }
            let mut drain = self.drain.clone().filter(|d| !*d.borrow());
            let joined = tokio::select! {
                joined = self.running.join_next() => joined,
                // Looked at again at the top: nothing new starts, and the run stops once
                // its running attempts end.
                () = drained(drain.as_mut()), if drain.is_some() => continue,
                () = self.send_timer.as_mut(), if self.send_armed => {
                    self.send_armed = false;
                    self.journal.send().await?;
                    continue;
                }
                () = self.poll_timer.as_mut() => {
                    self.poll_timer.as_mut().reset(tokio::time::Instant::now() + CANCEL_POLL);
                    if let Some((by, reason)) = self.journal.cancel_requested().await? {
                        return Box::pin(self.cancel_in_flight(by, reason)).await;
                    }
                    continue;
                }
            };
            let finished = match joined {
                Some(Ok(f)) => f,
                // Withdrawn while it waited out a backoff: the host is stopping.
                Some(Err(e)) if e.is_cancelled() && self.draining() => continue,
                Some(Err(e)) => return Err(DriverError::Load(format!("an attempt's task failed: {e}"))),
                None => continue,
            };
            self.finish(finished).await?;
        };
        if let Some(approvals) = self.waiting.take() {
            self.journal.record(EventKind::RunWaiting { approvals: approvals.clone() });
            self.journal.flush_final().await?;
            let error = RunError {
                class: FailureClass::AwaitingApproval,
                step: approvals.join(", "),
                message: format!("waiting for approval of {}", approvals.join(", ")),
            };
            return Ok(self.report(RunStatus::Waiting, Value::Null, Some(error)));
        }
        if let Some((key, (exceeded, used, limit))) = self.pausing.take() {
            self.journal.record(EventKind::RunPaused { step: key, exceeded, used, limit });
            self.journal.flush_final().await?;
            let error = self.state.paused_error();
            return Ok(self.report(RunStatus::Paused, Value::Null, error));
        }
        match end {
            Ok(output) => {
                self.journal.record(EventKind::RunCompleted { output: output.clone() });
                self.journal.flush_final().await?;
                Ok(self.report(RunStatus::Completed, output, None))
            }
            Err(error) => {
                let status =
                    Box::pin(compensation::fail(&self.engine, self.workflow, &self.journal, &error, &self.state))
                        .await?;
                Ok(self.report(status, Value::Null, Some(error)))
            }
        }
    }

    /// Applies everything recorded since the last look to the run state.
    fn absorb(&mut self) -> Result<(), DriverError> {
        for (seq, kind) in self.journal.take_recorded() {
            self.state
                .apply(seq, &kind)
                .map_err(|reason| DriverError::Load(format!("run {}: event {seq}: {reason}", self.journal.run_id)))?;
        }
        Ok(())
    }

    /// Starts an attempt as a task. Its limits are the step's, clipped to its share of
    /// what the run has left (`sharing` fresh attempts are about to start, this one
    /// included), and reserved until it ends. If nothing is left the run pauses, unless
    /// running attempts hold it: then the launch waits for them to settle.
    fn launch(&mut self, launch: Launch, sharing: usize) {
        let Some(step) = self.workflow.steps.iter().find(|s| s.spec.name == launch.step).cloned() else {
            return;
        };
        let limits = match &launch.resume {
            Some(open) => Limits {
                budget: open.limits.unwrap_or(step.spec.budget),
                usage: open.usage_limits.clone(),
                capped: Capped::default(),
            },
            None => {
                match self.budget().admit(&self.committed(), !self.reserved.is_empty(), step.spec.budget, sharing) {
                    Admission::Start(limits) => limits,
                    Admission::Pause(exhausted) => {
                        self.pausing = Some((launch.key, exhausted));
                        return;
                    }
                    // What is left is held by running attempts: launched again once one ends.
                    Admission::Wait => return,
                }
            }
        };
        self.reserved.insert(launch.key.clone(), limits.reservation());
        let index = self.workflow.plan.steps.iter().position(|s| s.name == launch.step).unwrap_or(0);
        (self.progress)(Progress::StepStarted { index, name: &launch.key });
        self.busy.insert(launch.key.clone());
        let engine = self.engine.clone();
        let journal = Arc::clone(&self.journal);
        let run = RunContext { governance: self.governance.clone(), env: Arc::clone(&self.env) };
        let begun = Arc::new(AtomicBool::new(launch.not_before_us.is_none()));
        let began = Arc::clone(&begun);
        let handle = self.running.spawn(async move {
            if let Some(t) = launch.not_before_us {
                wait_until(t).await;
                began.store(true, Ordering::Release);
            }
            let Launch { key, input, attempt, resume, .. } = launch;
            if resume.is_none() {
                journal.record(EventKind::StepAttemptStarted {
                    step: key.clone(),
                    attempt,
                    component_digest: step.component.digest.clone(),
                    input: input.clone(),
                    limits: limits.capped.any().then_some(limits.budget),
                    usage_limits: limits.usage.clone(),
                });
            }
            let expected = resume.map(|o: OpenAttempt| o.interactions).unwrap_or_default();
            let (outcome, stats) = live_attempt(&engine, &step, &key, &input, expected, &journal, &limits, run).await;
            Finished { key, step, attempt, outcome, stats, capped: limits.capped }
        });
        if !begun.load(Ordering::Acquire) {
            self.backoffs.retain(|(begun, _)| !begun.load(Ordering::Acquire));
            self.backoffs.push((begun, handle));
        }
    }

    /// Aborts the attempts still waiting out a backoff (see `backoffs`).
    fn withdraw_backoffs(&mut self) {
        for (begun, handle) in self.backoffs.drain(..) {
            if !begun.load(Ordering::Acquire) {
                handle.abort();
            }
        }
    }

    /// Records an attempt's end (and its retry, if it gets one), durably, as
    /// [`after_attempt`] decides it.
    async fn finish(&mut self, f: Finished) -> Result<(), DriverError> {
        let Finished { key, step, attempt, outcome, stats, capped } = f;
        self.busy.remove(&key);
        // Settled: from here on the run's totals hold what the attempt really used.
        self.reserved.remove(&key);
        let ended = Ended { run: self.journal.run_id.as_str(), key: &key, attempt, outcome, stats: &stats, capped };
        let Some(after) = after_attempt(&step.spec.retry, ended, now_us()) else {
            // The attempt stopped inside a tool call for a human; its request is journaled,
            // and it continues from the journal once decided.
            self.absorb()?;
            return Ok(());
        };
        for event in after.events {
            self.journal.record(event);
        }
        self.journal.flush().await?;
        self.absorb()?;
        if let Some(named) = after.pause {
            // The run's budget ran out, not the step's: the run pauses.
            let exhausted = tether_types::next::after::exhausted(&self.state, named);
            self.pausing.get_or_insert((key.clone(), exhausted));
        }
        let report = StepReport {
            name: key,
            outcome: if after.outcome.is_ok() { RunStatus::Completed } else { RunStatus::Failed },
            error: after.outcome.err(),
            stats,
        };
        let index = self.workflow.plan.steps.iter().position(|s| s.name == step.spec.name).unwrap_or(0);
        (self.progress)(Progress::StepFinished { index, report: &report, attempt, retry_in: after.retry_in });
        self.reports.push(report);
        Ok(())
    }

    /// A cancel asked for while attempts run: they are interrupted (as a crash would; what
    /// they journaled stays, and an attempt left open is simply not finished), the cancel
    /// is journaled under this host's lease, completed steps are undone and the run ends.
    async fn cancel_in_flight(mut self, by: String, reason: Option<String>) -> Result<RunReport, DriverError> {
        self.running.abort_all();
        while self.running.join_next().await.is_some() {}
        self.busy.clear();
        self.reserved.clear();
        self.journal.record(EventKind::RunCancelled { by, reason });
        self.journal.flush().await?;
        self.absorb()?;
        self.end_cancelled().await
    }

    /// Ends a cancelled run: its completed steps undone, its error the cancel.
    async fn end_cancelled(self) -> Result<RunReport, DriverError> {
        let error = self.state.cancel_error().expect("called once the cancel is in the state");
        let status = compensation::fail(&self.engine, self.workflow, &self.journal, &error, &self.state).await?;
        Ok(self.report(status, Value::Null, Some(error)))
    }

    /// The gate's own approval of a step-level request, if its track record has earned it.
    fn auto_decision(&self, event: &EventKind) -> Option<EventKind> {
        self.governance.as_ref()?.auto_decision(event)
    }

    /// Takes the default decision of every pending request whose deadline has passed.
    fn decide_due(&mut self) -> bool {
        let due = approvals::due_defaults(&self.state, now_us());
        let any = !due.is_empty();
        for event in due {
            self.journal.record(event);
        }
        any
    }

    /// Adds a skipped step to the report and the progress display.
    fn note_skip(&mut self, event: &EventKind) {
        if let EventKind::StepSkipped { step, reason } = event {
            let report = StepReport {
                name: step.clone(),
                outcome: RunStatus::Skipped,
                error: None,
                stats: StepStats { logs: vec![skip_note(reason)], ..StepStats::default() },
            };
            let name = tether_types::flow::step_of(step);
            let index = self.workflow.plan.steps.iter().position(|s| s.name == name).unwrap_or(0);
            (self.progress)(Progress::StepFinished { index, report: &report, attempt: 0, retry_in: None });
            self.reports.push(report);
        }
    }

    /// What the run has used, plus what running attempts hold.
    fn committed(&self) -> RunUsage {
        let mut total = self.state.used.clone();
        for held in self.reserved.values() {
            total.fuel = total.fuel.saturating_add(held.fuel);
            total.wall_us = total.wall_us.saturating_add(held.wall_us);
            total.tool_calls = total.tool_calls.saturating_add(held.tool_calls);
            total.http_requests = total.http_requests.saturating_add(held.http_requests);
            total.http_bytes = total.http_bytes.saturating_add(held.http_bytes);
            for (metric, amount) in &held.usage {
                *total.usage.entry(metric.clone()).or_default() += amount;
            }
        }
        total
    }

    fn budget(&self) -> RunBudget {
        self.state.plan.run_budget.raised(&self.state.raises)
    }

    fn report(self, status: RunStatus, output: Value, error: Option<RunError>) -> RunReport {
        let totals = RunReport::totals_of(&self.reports, self.started.elapsed().as_micros() as u64);
        RunReport {
            run_id: self.journal.run_id.clone(),
            workflow: self.workflow.name.clone(),
            status,
            output,
            error,
            steps: self.reports,
            totals,
        }
    }
}

fn skip_note(reason: &str) -> tether_types::LogLine {
    tether_types::LogLine {
        level: tether_types::LogLevel::Info,
        stream: "host".into(),
        tool: None,
        message: format!("skipped: {reason}"),
    }
}

/// What every attempt of a run shares.
struct RunContext {
    governance: Option<Arc<Governance>>,
    env: Arc<EnvValues>,
}

/// One live attempt with a tape; checks that it consumed everything it was served.
#[allow(clippy::too_many_arguments)]
async fn live_attempt(
    engine: &wasmtime::Engine,
    step: &LoadedStep,
    key: &str,
    input: &Value,
    expected: Vec<(u64, EventKind)>,
    journal: &Arc<RunJournal>,
    limits: &Limits,
    run: RunContext,
) -> (Result<Value, StepFailure>, StepStats) {
    let tape = Tape::new(key, expected, Mode::Live, Some(Arc::clone(journal)));
    let ctx = StepContext {
        run_id: journal.run_id.to_string(),
        key: key.to_string(),
        tape: Some(Arc::clone(&tape)),
        budget: limits.budget,
        usage_limits: limits.usage.clone(),
        governance: run.governance,
        env: run.env,
    };
    let (outcome, stats) = run_step_attempt(engine, step, &input.to_string(), ctx).await;
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

/// Completes when the drain turns on (never, if its sender is gone).
async fn drained(drain: Option<&mut tokio::sync::watch::Receiver<bool>>) {
    let on = match drain {
        Some(d) => d.wait_for(|on| *on).await.is_ok(),
        None => false,
    };
    if !on {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until a wall-clock time (microseconds since the Unix epoch); a durable backoff
/// resumed after a restart waits only for what is left of it.
async fn wait_until(not_before_us: u64) {
    let now = now_us();
    if not_before_us > now {
        tokio::time::sleep(std::time::Duration::from_micros(not_before_us - now)).await;
    }
}
