//! The small things the decider makes over and over: a launch (fresh, retried or
//! resumed), a step's default input, the run's error, and the failure events it records
//! without running anything.

use std::collections::HashSet;

use serde_json::Value;

use super::Launch;
use crate::state::RunState;
use crate::{FailureClass, RunError, StepFailure};

/// The first instance that failed for good (and is not running again), as the run's error.
pub(super) fn failure(state: &RunState, busy: &HashSet<String>) -> Option<RunError> {
    state.instances.iter().filter(|(k, _)| !busy.contains(*k)).find_map(|(key, inst)| {
        inst.failed.as_ref().map(|f| RunError { class: f.class, step: key.clone(), message: f.message.clone() })
    })
}

pub(super) fn default_input(state: &RunState, needs: &[String], outputs: &[(&String, &Value)]) -> Value {
    match needs.len() {
        0 => state.input.clone(),
        1 => outputs.first().map_or(Value::Null, |(_, v)| (*v).clone()),
        _ => Value::Object(outputs.iter().map(|(name, v)| ((*name).clone(), (*v).clone())).collect()),
    }
}

pub(super) fn launch(key: &str, step: &str, input: Value, instance: Option<&crate::state::Instance>) -> Launch {
    let resume = instance.and_then(|i| i.open.clone());
    let retry = instance.and_then(|i| i.retry.as_ref());
    let attempt = match (&resume, retry) {
        (Some(open), _) => open.attempt,
        (None, Some(r)) => r.attempt,
        (None, None) => instance.map_or(0, |i| i.attempts) + 1,
    };
    Launch {
        key: key.to_string(),
        step: step.to_string(),
        input: resume.as_ref().map_or(input, |o| o.input.clone()),
        attempt,
        not_before_us: retry.map(|r| r.not_before_us),
        resume,
    }
}

pub(super) fn invalid_input(key: &str, attempt: u32, message: String) -> crate::EventKind {
    failed(key, attempt, FailureClass::InvalidInput, message)
}

pub(super) fn failed(key: &str, attempt: u32, class: FailureClass, message: String) -> crate::EventKind {
    crate::EventKind::StepFailed {
        step: key.to_string(),
        attempt,
        failure: StepFailure::new(class, message),
        fuel: 0,
        tool_fuel: 0,
        wall_us: 0,
        peak_memory: 0,
    }
}
