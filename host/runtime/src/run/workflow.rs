//! Running a workflow in memory, without a journal: its component steps in the order
//! written, each getting the previous step's output; the first failure ends the run.
//! For embedding and benchmarks of plain pipelines only: it ignores the flow fields
//! (`needs`, `input`, `when`, routes, `for_each`, loops). Journaled runs go through
//! [`crate::Driver`], which implements all of them.

use std::time::Instant;

use serde::de::IgnoredAny;
use tether_types::{FailureClass, RunError, RunId, RunReport, RunStatus, StepFailure, StepReport, StepStats};

use crate::load::LoadedWorkflow;
use crate::runtime::Runtime;
use crate::step::attempt::{run_step_attempt, StepContext};
use crate::step::LoadedStep;

/// Progress of a run, for display.
pub enum Progress<'a> {
    /// The run's start is durable and the run goes on: from now on it can be resumed.
    /// Not given for a run whose start became durable only with its end (its report
    /// names it).
    RunStarted {
        /// The run.
        run_id: &'a str,
    },
    /// A step is about to start.
    StepStarted {
        /// Position in the workflow, from 0.
        index: usize,
        /// The step.
        name: &'a str,
    },
    /// A step ended.
    StepFinished {
        /// Position in the workflow, from 0.
        index: usize,
        /// How it ended.
        report: &'a StepReport,
        /// Which attempt this was (from 1; 0 for a skipped step).
        attempt: u32,
        /// If it failed and will be tried again: after how long.
        retry_in: Option<std::time::Duration>,
    },
}

/// The result of one step attempt.
pub struct StepRun {
    /// The JSON output, or how the attempt failed.
    pub output: Result<String, StepFailure>,
    /// What the attempt consumed and recorded.
    pub stats: StepStats,
}

impl Runtime {
    /// Runs one attempt of `step` with a JSON `input` in a fresh sandbox.
    pub async fn run_step(&self, step: &LoadedStep, input: &str) -> StepRun {
        let ctx = StepContext {
            governance: None,
            env: std::sync::Arc::default(),
            run_id: "local".into(),
            key: step.spec.name.clone(),
            tape: None,
            budget: step.spec.budget,
            usage_limits: Default::default(),
        };
        let (output, stats) = run_step_attempt(&self.inner.engine, step, input, ctx).await;
        StepRun { output: output.map(|v| v.to_string()), stats }
    }

    /// Runs every component step of `workflow` in the order written (no flow fields; see
    /// the module documentation).
    pub async fn run_workflow(
        &self,
        workflow: &LoadedWorkflow,
        run_id: RunId,
        input: &str,
        mut progress: impl FnMut(Progress<'_>),
    ) -> RunReport {
        let start = Instant::now();
        let mut reports: Vec<StepReport> = Vec::new();
        let mut current = input.to_string();
        let mut error = None;
        for (index, step) in workflow.steps.iter().enumerate() {
            progress(Progress::StepStarted { index, name: &step.spec.name });
            let run = if let Err(e) = serde_json::from_str::<IgnoredAny>(&current) {
                StepRun {
                    output: Err(StepFailure::new(
                        FailureClass::InvalidInput,
                        format!("the run input is not JSON: {e}"),
                    )),
                    stats: StepStats::default(),
                }
            } else {
                self.run_step(step, &current).await
            };
            let report = StepReport {
                name: step.spec.name.clone(),
                outcome: if run.output.is_ok() { RunStatus::Completed } else { RunStatus::Failed },
                error: run.output.as_ref().err().cloned(),
                stats: run.stats,
            };
            progress(Progress::StepFinished { index, report: &report, attempt: 1, retry_in: None });
            reports.push(report);
            match run.output {
                Ok(out) => current = out,
                Err(f) => {
                    error = Some(RunError { class: f.class, step: step.spec.name.clone(), message: f.message });
                    break;
                }
            }
        }
        let wall_us = start.elapsed().as_micros() as u64;
        // `current` is a checked step output, or the run input when nothing ran.
        let output = match (&error, serde_json::from_str(&current)) {
            (None, Ok(value)) => Some(value),
            (None, Err(e)) => {
                let message = format!("the run input is not JSON: {e}");
                error = Some(RunError { class: FailureClass::InvalidInput, step: String::new(), message });
                None
            }
            (Some(_), _) => None,
        };
        let (status, output) = match output {
            Some(value) => (RunStatus::Completed, value),
            None => (RunStatus::Failed, serde_json::Value::Null),
        };
        RunReport {
            run_id,
            workflow: workflow.name.clone(),
            status,
            output,
            error,
            totals: RunReport::totals_of(&reports, wall_us),
            steps: reports,
        }
    }
}
