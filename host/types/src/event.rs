//! The journal: typed events with a per-run sequence number, chained by hash.
//!
//! A run's journal is the system of record; its state is a fold over its events
//! ([`crate::state::RunState`]). Every host interaction of a step attempt (log lines,
//! usage, clock and random reads, tool calls) is an event, in the order the guest made
//! it, so an attempt can be resumed (served from the journal up to where it stopped) and
//! replayed (each guest call compared with the recorded one).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::failure::StepFailure;
use crate::report::{LogLevel, RunError};

/// What started a run that a server took in: journaled with its start, so history says
/// who or what asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// `api`, `schedule` or `webhook`.
    pub via: String,
    /// The authenticated identity that asked (the API token's), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The idempotency key, schedule tick or webhook delivery id the run id was derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// What happened. Doc comments say which state transition each event causes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A run began: `pending` → `running`. Pins the workflow and every component digest.
    RunStarted {
        /// The workflow's name.
        workflow: String,
        /// sha256 of the resolved plan (manifest plus component digests).
        workflow_digest: String,
        /// The resolved plan the run is tied to for its whole life.
        plan: Value,
        /// The run input.
        input: Value,
        /// Who started it.
        identity: String,
        /// What started it, when not a person at the command line: the API (with the
        /// token's identity and the caller's idempotency key), a schedule, a webhook.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
    },
    /// The host process picked an interrupted run up again. No state change.
    RunResumed {
        /// Process id of the resuming host, for the record.
        pid: u32,
    },
    /// An attempt of a step began: the step becomes `in_progress`.
    StepAttemptStarted {
        /// The step.
        step: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// sha256 of the component that runs.
        component_digest: String,
        /// The step's input.
        input: Value,
        /// The attempt's limits, when the run's budget clipped the step's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits: Option<crate::budget::StepBudget>,
        /// Usage the attempt may report before the run's budget runs out, per metric.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        usage_limits: std::collections::BTreeMap<String, f64>,
    },
    /// The guest asked for a tool call; the grant check has passed.
    ToolCallRequested {
        /// The step.
        step: String,
        /// Index of the call within the step, from 0 (stable across attempts).
        call: u32,
        /// The tool.
        tool: String,
        /// The call's input.
        input: Value,
        /// Passed to the tool; stable across retries, resumes and replays.
        idempotency_key: String,
    },
    /// A tool call finished (or was refused); its result is served from here on resume
    /// and replay.
    ToolCallCompleted {
        /// The step.
        step: String,
        /// Index of the call within the step.
        call: u32,
        /// The tool.
        tool: String,
        /// The output, or the failure returned to the guest.
        result: ToolResult,
        /// Fuel the tool used.
        fuel: u64,
        /// Wall time of the call in microseconds.
        wall_us: u64,
        /// Lines the tool logged (served with the result on resume and replay).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<crate::report::LogLine>,
        /// Usage the tool reported.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        usage: std::collections::BTreeMap<String, f64>,
    },
    /// An outbound HTTP request and what it got, journaled before the guest sees the
    /// answer; resume and replay serve the answer and make no request.
    HttpExchanged {
        /// The step.
        step: String,
        /// Which request of the attempt (and of which tool call).
        #[serde(flatten)]
        at: crate::exchange::ExchangeAt,
        /// The request.
        request: crate::exchange::RecordedRequest,
        /// The answer, or why there was none.
        #[serde(flatten)]
        outcome: crate::exchange::HttpOutcome,
        /// Wall time of the exchange in microseconds.
        wall_us: u64,
    },
    /// A call of the operator's model and its answer, journaled before the step sees it;
    /// resume and replay serve it. The tokens the provider reported (and their price) are
    /// charged to the step and the run from here.
    ModelCalled {
        /// The step.
        step: String,
        /// Index of the call within the attempt, from 0.
        call: u32,
        /// The chat-completions request as sent (the key is never in it).
        request: Value,
        /// The answer, or why there was none.
        #[serde(flatten)]
        outcome: crate::model::ModelOutcome,
        /// Usage charged: `tokens`, and `cost_usd` when the model has a price.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        usage: std::collections::BTreeMap<String, f64>,
        /// Wall time of the call in microseconds.
        wall_us: u64,
    },
    /// A request that is not safe to send twice is about to leave without an idempotency
    /// key. Found without its `http_exchanged` after a crash, it makes the attempt fail
    /// `in_doubt` rather than send it again.
    HttpSending {
        /// The step.
        step: String,
        /// Which request.
        #[serde(flatten)]
        at: crate::exchange::ExchangeAt,
        /// Its method.
        method: String,
        /// Its URL.
        url: String,
    },
    /// The guest read a clock or asked for random data; replay serves the same value.
    HostRead {
        /// The step.
        step: String,
        /// What was read.
        read: HostRead,
    },
    /// The guest reported usage.
    UsageReported {
        /// The step.
        step: String,
        /// Metric name.
        metric: String,
        /// Amount.
        amount: f64,
    },
    /// A log line from the guest or its stdio.
    GuestLog {
        /// The step.
        step: String,
        /// Severity.
        level: LogLevel,
        /// `log`, `stdout` or `stderr`.
        stream: String,
        /// The tool that wrote it, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
        /// The line.
        message: String,
    },
    /// The step's attempt completed: the step becomes `completed` with this output.
    StepCompleted {
        /// The step.
        step: String,
        /// Attempt number.
        attempt: u32,
        /// The output.
        output: Value,
        /// Fuel of the step itself.
        fuel: u64,
        /// Fuel of its tool calls.
        tool_fuel: u64,
        /// Wall time in microseconds.
        wall_us: u64,
        /// Peak memory in bytes.
        peak_memory: u64,
    },
    /// The step's attempt failed: the step becomes `failed`.
    StepFailed {
        /// The step.
        step: String,
        /// Attempt number.
        attempt: u32,
        /// Class and message.
        failure: StepFailure,
        /// Fuel of the step itself.
        fuel: u64,
        /// Fuel of its tool calls.
        tool_fuel: u64,
        /// Wall time in microseconds.
        wall_us: u64,
        /// Peak memory in bytes.
        peak_memory: u64,
    },
    /// The step's attempt failed in a way its retry policy retries: attempt `attempt`
    /// starts no earlier than `not_before_us`, also after a restart.
    RetryScheduled {
        /// The step.
        step: String,
        /// The attempt that will run.
        attempt: u32,
        /// Microseconds since the Unix epoch.
        not_before_us: u64,
        /// The wait, in milliseconds.
        backoff_ms: u64,
    },
    /// A run budget ran out: the run becomes `paused` until it is resumed (usually with
    /// the budget raised).
    RunPaused {
        /// The step that was running.
        step: String,
        /// What ran out: `fuel`, `wall_time`, `tool_calls`, or a usage metric.
        exceeded: String,
        /// How much had been used.
        used: f64,
        /// The limit.
        limit: f64,
    },
    /// Somebody raised a run budget (on resume).
    BudgetRaised {
        /// What was raised.
        metric: String,
        /// By how much (milliseconds for `wall_time`).
        by: f64,
        /// Who asked for it, when known (an API token's identity).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
    },
    /// The run failed and completed steps will be undone, in reverse order of completion.
    CompensationBegun {
        /// Why the run failed.
        error: RunError,
    },
    /// A completed step was compensated (or its compensation failed).
    StepCompensated {
        /// The step that was undone.
        step: String,
        /// `tool:NAME` or `component:DIGEST`.
        via: String,
        /// What the compensation returned.
        result: ToolResult,
        /// Fuel it used.
        fuel: u64,
        /// Its wall time in microseconds.
        wall_us: u64,
    },
    /// Every compensation succeeded: terminal.
    RunCompensated {
        /// Why the run failed.
        error: RunError,
    },
    /// At least one compensation failed: terminal; needs a human.
    RunCompensationFailed {
        /// Why the run failed.
        error: RunError,
        /// Steps whose compensation failed.
        failed: Vec<String>,
    },
    /// A step did not run: its `when` did not hold, a route chose another step, or
    /// every step it needs was skipped. Its dependents follow the same rules.
    StepSkipped {
        /// The step's key (`name`, or `name#K` in iteration K of a loop).
        step: String,
        /// Why, for humans.
        reason: String,
    },
    /// A route step chose the step to run; the other targets are skipped.
    Routed {
        /// The route's key.
        step: String,
        /// The step chosen, if any case was taken.
        to: Option<String>,
        /// The 1-based case that was taken.
        case: Option<u32>,
        /// What the route passes on (its input).
        output: Value,
    },
    /// A `for_each` step fanned out; its items run as `name[0]`, `name[1]`, ...
    ForEachStarted {
        /// The step's key.
        step: String,
        /// How many items.
        items: u32,
    },
    /// Every item of a `for_each` completed; their outputs, in item order, are the step's output.
    ForEachGathered {
        /// The step's key.
        step: String,
        /// The list of item outputs.
        output: Value,
    },
    /// An iteration of a loop ended and its `until` was checked.
    LoopIterationEnded {
        /// The loop.
        name: String,
        /// The iteration, from 1.
        iteration: u32,
        /// Whether `until` held (the loop is over).
        until: bool,
    },
    /// The run's identity and what it was granted: non-secret environment values
    /// (served on resume and replay; a secret's value is never journaled, only its name)
    /// and every declared grant the identity refused.
    GrantsApplied {
        /// The identity.
        identity: String,
        /// Environment variables given to steps and tools: value, or `[secret]`.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        env: std::collections::BTreeMap<String, String>,
        /// Grants the workflow declared that the identity does not have.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<String>,
    },
    /// The policy's verdict at a checkpoint (with `call` for a tool call, inside the attempt).
    PolicyVerdict {
        /// The step's key.
        step: String,
        /// The tool call's index, for `tool_call` and `tool_result`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
        /// Where.
        on: crate::policy::Checkpoint,
        /// Who was acting.
        identity: String,
        /// The verdict.
        verdict: crate::policy::Verdict,
        /// The rule that gave it (none: no rule applied, allowed by grant).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// The gate, for `require_approval`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gate: Option<String>,
    },
    /// An action waits for approval at a gate. While nothing else can run, the run is
    /// `waiting` and holds no sandbox.
    ApprovalRequested {
        /// Names this request: `KEY@CHECKPOINT`, or `KEY/CALL@CHECKPOINT` for a tool call.
        id: String,
        /// The gate.
        gate: String,
        /// The step's key.
        step: String,
        /// The tool call, if it is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
        /// Where.
        on: crate::policy::Checkpoint,
        /// What is proposed (an input or an output); an approver may edit it.
        proposal: Value,
        /// Distinct approvers needed.
        approvals: u32,
        /// When the default decision is taken, in microseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_us: Option<u64>,
        /// The decision taken at the deadline.
        on_timeout: crate::policy::Decision,
        /// The request's class, when the gate keeps a record per class.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<String>,
    },
    /// Somebody (or the deadline, or the gate's track record) decided a request.
    ApprovalDecided {
        /// The request.
        id: String,
        /// The gate.
        gate: String,
        /// The step's key.
        step: String,
        /// The tool call, if it is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
        /// Who: an identity, `deadline` or `autonomy`.
        by: String,
        /// Approve or reject.
        decision: crate::policy::Decision,
        /// An edited proposal (an override), if the approver changed it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<Value>,
        /// Why, in the approver's words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// For an automatic approval: the track record it was based on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<crate::track::TrackRecord>,
    },
    /// A person cancelled the run (`tether cancel`). Nothing more is started; its
    /// completed steps are undone, and it ends with class `cancelled` (status `cancelled`).
    RunCancelled {
        /// Who cancelled it.
        by: String,
        /// Why, for the record.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Nothing can run until a human decides: the run is `waiting`.
    RunWaiting {
        /// The requests it waits for.
        approvals: Vec<String>,
    },
    /// A reviewer found an automatic approval wrong after the fact. The run is not
    /// changed (it went on); the gate's track record counts an override, which re-arms it.
    ApprovalOverridden {
        /// The request.
        id: String,
        /// The gate.
        gate: String,
        /// The reviewer.
        by: String,
        /// What the decision should have been, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<Value>,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// The run completed: terminal.
    RunCompleted {
        /// The run's output.
        output: Value,
    },
    /// The run failed: terminal.
    RunFailed {
        /// Which step failed, and how.
        error: RunError,
    },
}

/// A tool call's result as the guest saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolResult {
    /// The tool's JSON output.
    Ok(Value),
    /// The failure returned to the guest: its WIT kind and message.
    Err {
        /// `invalid-input`, `not-found`, `denied`, `transient` or `internal`.
        kind: crate::GuestFailureKind,
        /// The message.
        message: String,
        /// The class of the failure, when the host produced it (e.g. `denied`, `fuel_exhausted`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<crate::FailureClass>,
    },
}

/// A nondeterministic value the guest read through WASI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum HostRead {
    /// `wasi:clocks/wall-clock.now`, in nanoseconds since the Unix epoch (a u64 lasts
    /// until the year 2554, and unlike u128 it survives serde's tagged enums).
    WallClock {
        /// The value.
        nanos: u64,
    },
    /// `wasi:clocks/monotonic-clock.now`, in nanoseconds.
    MonotonicClock {
        /// The value.
        nanos: u64,
    },
    /// Random bytes (secure or insecure source), hex-encoded.
    Random {
        /// The bytes, hex.
        hex: String,
    },
}

impl EventKind {
    /// The stable snake_case name stored in the `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::RunResumed { .. } => "run_resumed",
            EventKind::StepAttemptStarted { .. } => "step_attempt_started",
            EventKind::ToolCallRequested { .. } => "tool_call_requested",
            EventKind::ToolCallCompleted { .. } => "tool_call_completed",
            EventKind::HttpExchanged { .. } => "http_exchanged",
            EventKind::HttpSending { .. } => "http_sending",
            EventKind::ModelCalled { .. } => "model_called",
            EventKind::HostRead { .. } => "host_read",
            EventKind::UsageReported { .. } => "usage_reported",
            EventKind::GuestLog { .. } => "guest_log",
            EventKind::StepCompleted { .. } => "step_completed",
            EventKind::StepFailed { .. } => "step_failed",
            EventKind::RetryScheduled { .. } => "retry_scheduled",
            EventKind::RunPaused { .. } => "run_paused",
            EventKind::BudgetRaised { .. } => "budget_raised",
            EventKind::CompensationBegun { .. } => "compensation_begun",
            EventKind::StepCompensated { .. } => "step_compensated",
            EventKind::RunCompensated { .. } => "run_compensated",
            EventKind::RunCompensationFailed { .. } => "run_compensation_failed",
            EventKind::StepSkipped { .. } => "step_skipped",
            EventKind::Routed { .. } => "routed",
            EventKind::ForEachStarted { .. } => "for_each_started",
            EventKind::ForEachGathered { .. } => "for_each_gathered",
            EventKind::LoopIterationEnded { .. } => "loop_iteration_ended",
            EventKind::GrantsApplied { .. } => "grants_applied",
            EventKind::PolicyVerdict { .. } => "policy_verdict",
            EventKind::ApprovalRequested { .. } => "approval_requested",
            EventKind::ApprovalDecided { .. } => "approval_decided",
            EventKind::RunCancelled { .. } => "run_cancelled",
            EventKind::RunWaiting { .. } => "run_waiting",
            EventKind::ApprovalOverridden { .. } => "approval_overridden",
            EventKind::RunCompleted { .. } => "run_completed",
            EventKind::RunFailed { .. } => "run_failed",
        }
    }

    /// The step this event belongs to, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            EventKind::StepAttemptStarted { step, .. }
            | EventKind::ToolCallRequested { step, .. }
            | EventKind::ToolCallCompleted { step, .. }
            | EventKind::HttpExchanged { step, .. }
            | EventKind::HttpSending { step, .. }
            | EventKind::ModelCalled { step, .. }
            | EventKind::HostRead { step, .. }
            | EventKind::UsageReported { step, .. }
            | EventKind::GuestLog { step, .. }
            | EventKind::StepCompleted { step, .. }
            | EventKind::StepFailed { step, .. }
            | EventKind::RetryScheduled { step, .. }
            | EventKind::StepCompensated { step, .. }
            | EventKind::StepSkipped { step, .. }
            | EventKind::Routed { step, .. }
            | EventKind::ForEachStarted { step, .. }
            | EventKind::ForEachGathered { step, .. }
            | EventKind::PolicyVerdict { step, .. }
            | EventKind::ApprovalRequested { step, .. }
            | EventKind::ApprovalDecided { step, .. } => Some(step),
            _ => None,
        }
    }

    /// Whether this event is a guest interaction inside an attempt: what resume serves
    /// and replay compares.
    pub fn is_interaction(&self) -> bool {
        matches!(
            self,
            EventKind::ToolCallRequested { .. }
                | EventKind::ToolCallCompleted { .. }
                | EventKind::HttpExchanged { .. }
                | EventKind::HttpSending { .. }
                | EventKind::ModelCalled { .. }
                | EventKind::HostRead { .. }
                | EventKind::UsageReported { .. }
                | EventKind::GuestLog { .. }
                | EventKind::PolicyVerdict { call: Some(_), .. }
                | EventKind::ApprovalRequested { call: Some(_), .. }
                | EventKind::ApprovalDecided { call: Some(_), .. }
        )
    }
}

/// A journaled event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the run's journal, from 1.
    pub seq: u64,
    /// When it was recorded, in microseconds since the Unix epoch.
    pub at_us: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// sha256 over the previous event's hash, this event's seq, time and payload (hex).
    pub hash: String,
}
