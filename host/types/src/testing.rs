//! Test support for the pure core: plans written as small workflow files, and a run
//! driven by hand through [`Flow::next`], with the events the host would record.

use std::collections::HashSet;

use serde_json::Value;

use crate::event::{Event, EventKind};
use crate::failure::{FailureClass, StepFailure};
use crate::manifest::{Compensation, Workflow};
use crate::next::after::{after_attempt, Ended};
use crate::next::{Flow, Launch, Next};
use crate::plan::{Plan, PlanCompensation, PlanTool};
use crate::policy::Decision;
use crate::report::StepStats;
use crate::resolve::{plan_of, ResolvedStep};
use crate::run_budget::Capped;
use crate::state::RunState;

/// The run id retry jitter is drawn from.
pub(crate) const RUN: &str = "run_test";

/// The plan of a workflow file (its `name` line is added), resolved as the loader does
/// it, with each component's path standing for its digest.
pub(crate) fn plan(toml: &str) -> Plan {
    let text = format!("name = \"t\"\n{toml}");
    let wf = Workflow::parse("t.toml", &text).unwrap_or_else(|e| {
        let errors: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        panic!("the workflow does not parse:\n{}", errors.join("\n"))
    });
    let policy = (!wf.policy.policy.is_empty()).then(|| wf.policy.policy.clone());
    let resolved = |s: &crate::StepSpec| ResolvedStep {
        component: s.component.as_ref().map(|c| c.path.clone()).unwrap_or_default(),
        compensate: s.compensate.as_ref().map(|c| match c {
            Compensation::Tool(t) => PlanCompensation::Tool(t.clone()),
            Compensation::Component(c) => PlanCompensation::Component(c.path.clone()),
        }),
        dirs: Vec::new(),
    };
    let tools = wf.tools.iter().map(|(n, t)| {
        let tool = PlanTool {
            component: t.component.path.clone(),
            budget: t.budget,
            dirs: Vec::new(),
            env: t.env.clone(),
            http: t.http.clone(),
        };
        (n.clone(), tool)
    });
    plan_of(&wf, policy, resolved, tools)
}

/// A run driven by hand: ask [`Flow::next`], check the answer, apply what the host would
/// record, ask again.
pub(crate) struct Run {
    pub flow: Flow,
    pub state: RunState,
    /// Keys of the attempts running now.
    pub busy: HashSet<String>,
    /// The clock, in microseconds since the Unix epoch.
    pub now: u64,
    /// Every event applied after `run_started`, in order.
    pub journal: Vec<EventKind>,
}

impl Run {
    /// A run of the workflow `toml` with `input`, started by `bot`.
    pub fn new(toml: &str, input: Value) -> Run {
        Run::of(plan(toml), input)
    }

    /// A run of `plan` with `input`, started by `bot`.
    pub fn of(plan: Plan, input: Value) -> Run {
        let flow = Flow::compile(&plan).expect("the plan compiles");
        Run {
            flow,
            state: RunState::new(plan, input, "bot".into()),
            busy: HashSet::new(),
            now: 1_000_000,
            journal: Vec::new(),
        }
    }

    /// What the run does next (nothing is applied).
    pub fn next(&self) -> Next {
        self.flow.next(&self.state, &self.busy, self.now)
    }

    /// Applies events as the host records them; a refused event fails the test.
    pub fn apply(&mut self, events: impl IntoIterator<Item = EventKind>) {
        for e in events {
            let seq = self.journal.len() as u64 + 2;
            if let Err(reason) = self.state.apply(seq, &e) {
                panic!("event {seq} ({}) was refused: {reason}", e.name());
            }
            self.journal.push(e);
        }
    }

    /// Expects decisions to record; applies and returns them.
    pub fn record(&mut self) -> Vec<EventKind> {
        match self.next() {
            Next::Record(events) => {
                self.apply(events.clone());
                events
            }
            other => panic!("expected decisions to record, got {other:?}"),
        }
    }

    /// Expects attempts to run; returns them (nothing is applied).
    pub fn launches(&self) -> Vec<Launch> {
        match self.next() {
            Next::Run(launches) => launches,
            other => panic!("expected attempts to run, got {other:?}"),
        }
    }

    /// Expects exactly the attempts of `keys` to run and starts them, as the host does:
    /// each is busy, and a fresh one records `step_attempt_started`.
    pub fn start(&mut self, keys: &[&str]) -> Vec<Launch> {
        let launches = self.launches();
        let launched: Vec<&str> = launches.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(launched, keys, "launched");
        for l in &launches {
            self.busy.insert(l.key.clone());
            if l.resume.is_none() {
                self.apply([started(&l.key, l.attempt, l.input.clone())]);
            }
        }
        launches
    }

    /// The running attempt of `key` completes with `output`.
    pub fn complete(&mut self, key: &str, output: Value) {
        let attempt = self.open_attempt(key);
        self.busy.remove(key);
        self.apply([completed(key, attempt, output)]);
    }

    /// The running attempt of `key` fails; as the host does, its end is recorded as
    /// [`after_attempt`] decides it, with a retry when the step's retry policy takes
    /// this failure (its limits were not clipped by the run's budget). Returns the
    /// retry's earliest start.
    pub fn fail(&mut self, key: &str, failure: StepFailure) -> Option<u64> {
        let attempt = self.open_attempt(key);
        self.busy.remove(key);
        let retry = self.state.plan.step(crate::flow::step_of(key)).expect("a step of the plan").retry.clone();
        let stats = StepStats::default();
        let ended = Ended { run: RUN, key, attempt, outcome: Err(failure), stats: &stats, capped: Capped::default() };
        let after = after_attempt(&retry, ended, self.now).expect("a failure that is not a wait for approval");
        self.apply(after.events);
        after.retry_in.map(|backoff| self.now + backoff.as_micros() as u64)
    }

    /// Runs each of `keys` to completion, the output of each given by `output(launch)`.
    pub fn run(&mut self, keys: &[&str], output: impl Fn(&Launch) -> Value) -> Vec<Launch> {
        let launches = self.start(keys);
        for l in &launches {
            self.complete(&l.key, output(l));
        }
        launches
    }

    fn open_attempt(&self, key: &str) -> u32 {
        let open = self.state.instances.get(key).and_then(|i| i.open.as_ref());
        open.unwrap_or_else(|| panic!("`{key}` has no open attempt")).attempt
    }
}

/// `step_attempt_started` of `key`.
pub(crate) fn started(key: &str, attempt: u32, input: Value) -> EventKind {
    EventKind::StepAttemptStarted {
        step: key.into(),
        attempt,
        component_digest: "d".into(),
        input,
        limits: None,
        usage_limits: Default::default(),
    }
}

/// `step_completed` of `key`.
pub(crate) fn completed(key: &str, attempt: u32, output: Value) -> EventKind {
    EventKind::StepCompleted { step: key.into(), attempt, output, fuel: 0, tool_fuel: 0, wall_us: 0, peak_memory: 0 }
}

/// A failure of `class`.
pub(crate) fn failure(class: FailureClass) -> StepFailure {
    StepFailure::new(class, format!("it failed: {class}"))
}

/// `approval_decided` of the step-level request `id` (`KEY@CHECKPOINT`) at gate `gate`.
pub(crate) fn decided(id: &str, gate: &str, by: &str, decision: Decision, payload: Option<Value>) -> EventKind {
    let step = id.split(['@', '/']).next().unwrap_or(id).to_string();
    EventKind::ApprovalDecided {
        id: id.into(),
        gate: gate.into(),
        step,
        call: None,
        by: by.into(),
        decision,
        payload,
        comment: None,
        evidence: None,
    }
}

/// `run_started` of `plan` with `input`.
pub(crate) fn run_started(plan: &Plan, input: Value) -> EventKind {
    EventKind::RunStarted {
        workflow: plan.workflow.clone(),
        workflow_digest: plan.digest(),
        plan: serde_json::to_value(plan).expect("plans serialize"),
        input,
        identity: "bot".into(),
        origin: None,
    }
}

/// A journal of these events, numbered from 1 (hashes are placeholders: the fold does not
/// check the chain).
pub(crate) fn journal(kinds: Vec<EventKind>) -> Vec<Event> {
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Event { seq: i as u64 + 1, at_us: 1_000 + i as u64, kind, hash: format!("h{}", i + 1) })
        .collect()
}
