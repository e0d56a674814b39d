//! Ending a failed run: undoing its completed steps (sagas). Each compensation runs in a
//! fresh sandbox and is journaled before the next starts, so a host killed while
//! compensating goes on from where it stopped, and no step is undone twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use tether_types::event::{EventKind, ToolResult};
use tether_types::next::undo::{undo, Undo};
use tether_types::state::RunState;
use tether_types::{RunError, RunId, RunStatus};
use wasmtime::Engine;

use crate::capabilities::http::HttpHooks;
use crate::capabilities::tool::run_tool_call;
use crate::durable::journal::RunJournal;
use crate::govern::env::EnvValues;
use crate::load::LoadedWorkflow;
use crate::run::error::DriverError;
use crate::sandbox::limits::Limits;
use crate::step::attempt::{run_step_attempt, StepContext};
use crate::step::{LoadedCompensation, LoadedStep};

/// Ends a failed run as [`undo`] decides from its state: `run_failed` if nothing needs
/// undoing; otherwise the completed steps' compensations, in reverse order of
/// completion, each durable before the next, then `run_compensated` or
/// `run_compensation_failed`. When the state shows compensation already begun (`error`
/// is then the error it began with), the steps already compensated (and which of those
/// failed) are not run again, and count in the run's end.
pub(crate) async fn fail(
    engine: &Engine,
    workflow: &LoadedWorkflow,
    journal: &RunJournal,
    error: &RunError,
    state: &RunState,
) -> Result<RunStatus, DriverError> {
    let loaded = |name: &str| workflow.steps.iter().find(|s| s.spec.name == name);
    let owed = match undo(state, error, |name| loaded(name).is_some_and(|s| s.compensation.is_some())) {
        Undo::Fail(event) => {
            journal.record(event);
            journal.flush_final().await?;
            return Ok(RunStatus::Failed);
        }
        Undo::Compensate(owed) => owed,
    };
    if let Some(begun) = &owed.begin {
        journal.record(begun.clone());
        journal.sync().await?;
    }
    let mut compensated = Vec::new();
    // Keys name runs of steps (`search[2]`, `fix#3`); each completed run is undone.
    for (key, input, output) in owed.steps.iter().copied() {
        let Some(step) = loaded(tether_types::flow::step_of(key)) else { continue };
        let event = compensate(engine, &journal.run_id, key, step, input, output).await;
        journal.record(event.clone());
        journal.sync().await?;
        compensated.push(event);
    }
    let (event, status) = owed.end(&compensated);
    journal.record(event);
    journal.flush_final().await?;
    Ok(status)
}

/// Runs one step's compensation with `{"step", "input", "output"}` (`step` is the
/// key of the run of the step); a tool gets the idempotency key `RUN/compensate/KEY`.
async fn compensate(
    engine: &Engine,
    run_id: &RunId,
    key: &str,
    step: &LoadedStep,
    input: &Value,
    output: &Value,
) -> EventKind {
    let payload = serde_json::json!({"step": key, "input": input, "output": output}).to_string();
    let (via, (outcome, stats)) = match step.compensation.as_ref().expect("filtered by fail()") {
        LoadedCompensation::Tool(tool) => {
            let idempotency = format!("{run_id}/compensate/{key}");
            let limits = Limits::from(tool.spec.budget);
            (
                format!("tool:{}", tool.spec.name),
                run_tool_call(engine, tool, &payload, limits, idempotency, &EnvValues::default(), HttpHooks::none())
                    .await,
            )
        }
        LoadedCompensation::Component(component) => {
            let spec = tether_types::StepSpec {
                name: format!("{}:compensate", step.spec.name),
                tools: Vec::new(),
                compensate: None,
                retry: Default::default(),
                env: Vec::new(),
                http: Vec::new(),
                model: false,
                ..step.spec.clone()
            };
            let undo = LoadedStep::new(spec, Arc::clone(component), HashMap::new(), None, Vec::new());
            let ctx = StepContext {
                run_id: run_id.to_string(),
                key: format!("{key}:compensate"),
                tape: None,
                budget: step.spec.budget,
                usage_limits: BTreeMap::new(),
                governance: None,
                env: Arc::default(),
            };
            (format!("component:{}", component.digest), run_step_attempt(engine, &undo, &payload, ctx).await)
        }
    };
    let result = match outcome {
        Ok(value) => ToolResult::Ok(value),
        Err(f) => ToolResult::Err {
            kind: f.guest_kind.unwrap_or(tether_types::GuestFailureKind::Internal),
            message: f.message,
            class: Some(f.class),
        },
    };
    EventKind::StepCompensated { step: key.to_string(), via, result, fuel: stats.total_fuel(), wall_us: stats.wall_us }
}
