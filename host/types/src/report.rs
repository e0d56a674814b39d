//! What running a workflow produces: per-step statistics and outcomes, and the run's
//! result. These are the shapes of `tether run --json`; field names are stable.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::failure::StepFailure;
use crate::ids::RunId;

/// Severity of a guest log line (mirrors the WIT `level`), plus the host's own streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Debugging detail.
    Debug,
    /// Normal progress.
    Info,
    /// Recovered problem.
    Warn,
    /// Failure.
    Error,
}

/// One line a component wrote, with where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// `log` for the host interface, `stdout` or `stderr` for captured WASI output.
    pub stream: String,
    /// The tool that wrote it, if it came from a tool call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The text, capped in length by the host.
    pub message: String,
}

/// One tool call made by a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallReport {
    /// The tool's name.
    pub tool: String,
    /// `ok`, or the failure class of the call (e.g. `denied`, `fuel_exhausted`, `guest_error`).
    pub outcome: String,
    /// Fuel the tool used (charged to the step as well).
    pub fuel: u64,
    /// Wall time of the call, in microseconds.
    pub wall_us: u64,
}

/// Measurements of one step attempt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Fuel the step consumed itself.
    pub fuel: u64,
    /// Fuel consumed by the tools it called (also deducted from the step's budget).
    pub tool_fuel: u64,
    /// Wall time of the attempt, in microseconds.
    pub wall_us: u64,
    /// Peak total linear memory of the step's component, in bytes.
    pub peak_memory: u64,
    /// Tool calls made, in order.
    pub tool_calls: Vec<ToolCallReport>,
    /// Usage reported by the step and its tools, summed per metric.
    pub usage: BTreeMap<String, f64>,
    /// Log lines, in order, capped by the host.
    pub logs: Vec<LogLine>,
    /// Log lines dropped because a cap was reached.
    pub logs_dropped: u64,
}

impl StepStats {
    /// Fuel charged for the step: its own plus its tools'.
    pub fn total_fuel(&self) -> u64 {
        self.fuel.saturating_add(self.tool_fuel)
    }
}

/// How one step ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// `completed` or `failed`.
    pub outcome: RunStatus,
    /// The failure, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepFailure>,
    /// Measurements.
    pub stats: StepStats,
}

/// Terminal status of a run (more states arrive with the journal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every step completed.
    Completed,
    /// A step failed; the run stopped there.
    Failed,
    /// A run budget ran out; `tether resume RUN --budget METRIC=+N` continues it.
    Paused,
    /// Nothing can run until a human decides a pending approval (`tether inbox`).
    Waiting,
    /// A step failed and every completed step's compensation succeeded.
    Compensated,
    /// A step failed and at least one compensation failed too.
    CompensationFailed,
    /// (Steps only.) The step did not run: its `when` did not hold, a route chose
    /// another step, or every step it needs was skipped.
    Skipped,
}

/// The run's error: which step failed and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    /// Failure class of the failing step.
    pub class: crate::FailureClass,
    /// The failing step.
    pub step: String,
    /// What happened.
    pub message: String,
}

/// Totals over a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTotals {
    /// Fuel of every step and every tool call.
    pub fuel: u64,
    /// Wall time of the run, in microseconds.
    pub wall_us: u64,
    /// Number of tool calls.
    pub tool_calls: u64,
    /// Reported usage per metric.
    pub usage: BTreeMap<String, f64>,
}

/// The result of a run, as printed by `tether run --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's id.
    pub run_id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// `completed` or `failed`.
    pub status: RunStatus,
    /// The last step's output (null when the run failed).
    pub output: serde_json::Value,
    /// Why the run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// Every step that ran, in order.
    pub steps: Vec<StepReport>,
    /// Totals.
    pub totals: RunTotals,
}

impl RunReport {
    /// Totals computed from the steps and the run's wall time.
    pub fn totals_of(steps: &[StepReport], wall_us: u64) -> RunTotals {
        let mut totals = RunTotals { wall_us, ..RunTotals::default() };
        for s in steps {
            totals.fuel = totals.fuel.saturating_add(s.stats.total_fuel());
            totals.tool_calls += s.stats.tool_calls.len() as u64;
            for (metric, amount) in &s.stats.usage {
                *totals.usage.entry(metric.clone()).or_default() += amount;
            }
        }
        totals
    }
}

/// What a tool call does to the world (mirrors the WIT `effect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Only reads.
    ReadOnly,
    /// Repeating a call with the same input has no further effect.
    Idempotent,
    /// An external side effect that must happen at most once.
    External,
}

impl Effect {
    /// The WIT name: `read-only`, `idempotent` or `external`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::ReadOnly => "read-only",
            Effect::Idempotent => "idempotent",
            Effect::External => "external",
        }
    }
}

impl LogLevel {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// How a tool describes itself (`tool.describe()`), with its schemas checked to be JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDescriptor {
    /// The tool's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the output.
    pub output_schema: serde_json::Value,
    /// What a call does to the world.
    pub effect: Effect,
}
