//! One attempt of a step: its grants, tape and budget assembled into the store's data,
//! then run in a fresh sandbox (see `sandbox/run.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tether_types::{StepBudget, StepFailure, StepStats};
use wasmtime::Engine;

use crate::capabilities::grants::ToolGrants;
use crate::capabilities::http::{HttpHooks, HttpScope};
use crate::durable::clocks::virtualize;
use crate::durable::tape::{lock, SharedTape};
use crate::govern::env::EnvValues;
use crate::govern::governance::Governance;
use crate::sandbox::limits::Limits;
use crate::sandbox::run::{run, Export};
use crate::sandbox::store::{Sandbox, Setup};
use crate::step::store::StepState;
use crate::step::LoadedStep;

/// Where a step attempt belongs: its run, its tape (journaled runs), and its effective
/// limits (the step's budget clipped to what the run has left).
pub(crate) struct StepContext {
    pub(crate) run_id: String,
    /// The key of this run of the step (`name`, `name[I]`, `name#K`): journal events,
    /// idempotency keys and the insecure-random seed are per key.
    pub(crate) key: String,
    pub(crate) tape: Option<SharedTape>,
    pub(crate) budget: StepBudget,
    /// Reported usage the attempt may add, per metric, before the run's budget runs out.
    pub(crate) usage_limits: BTreeMap<String, f64>,
    /// The run's policy and identity, when it has a policy.
    pub(crate) governance: Option<Arc<Governance>>,
    /// Granted environment values.
    pub(crate) env: Arc<EnvValues>,
}

/// Runs one attempt of a step.
pub(crate) async fn run_step_attempt(
    engine: &Engine,
    step: &LoadedStep,
    input: &str,
    ctx: StepContext,
) -> (Result<Value, StepFailure>, StepStats) {
    let b = ctx.budget;
    let seed = ctx.tape.as_ref().map(|_| format!("{}/{}", ctx.run_id, ctx.key));
    let deadline = Instant::now() + b.wall_time;
    let http = HttpScope {
        whose: format!("step `{}`", step.spec.name),
        run_id: ctx.run_id.clone(),
        step: ctx.key.clone(),
        tool_call: None,
        asked: step.spec.http.clone(),
        identity: HttpScope::identity_grants(ctx.governance.as_deref()),
        deadline,
        max_requests: b.http_requests,
        max_bytes: b.http_bytes,
        tool: None,
        governance: ctx.governance.clone(),
        secrets: ctx.env.secrets(),
    };
    let http = HttpHooks::new(http, ctx.tape.clone());
    let model = model_access(step, ctx.governance.as_deref());
    let grants = ToolGrants {
        run_id: ctx.run_id,
        step_name: ctx.key,
        tools: Arc::clone(&step.tools),
        max_calls: b.tool_calls,
        deadline,
        // A tool's input can be as large as the step's own output may be.
        max_tool_input: b.output,
        refused_tools: Arc::clone(&step.refused_tools),
        governance: ctx.governance,
        env: Arc::clone(&ctx.env),
        model,
        max_model_calls: b.model_calls,
    };
    let limits = Limits { fuel: b.fuel, wall_time: b.wall_time, memory: b.memory, output: b.output };
    if let Some(t) = &ctx.tape {
        lock(t).limit_reads(b.host_reads, b.random_bytes);
    }
    let setup = Setup {
        dirs: step.dirs.clone(),
        env: ctx.env.for_grants(&step.env),
        secrets: ctx.env.secrets(),
        random_bytes: b.random_bytes,
        usage_limits: ctx.usage_limits,
    };
    let tape = ctx.tape;
    let closing = tape.clone();
    // Journaled attempts read clocks and random numbers through their tape.
    let state = Sandbox::new(limits.memory, setup, |wasi| {
        if let (Some(tape), Some(seed)) = (&tape, &seed) {
            virtualize(wasi, tape, seed);
        }
    })
    .map(|sandbox| StepState { sandbox, tape, grants, http, http_ctx: wasmtime_wasi_http::WasiHttpCtx::new() });
    let ended = run(engine, Export::Run(&step.component.pre), input, limits, state).await;
    // A request still running beside the guest journals nothing more for this attempt.
    if let Some(t) = &closing {
        lock(t).close();
    }
    ended
}

/// Whether the step may call the model: it asked for it, the policy configures one, and
/// (under a policy with identities) its identity is granted it.
fn model_access(step: &LoadedStep, governance: Option<&Governance>) -> crate::capabilities::grants::ModelAccess {
    let name = &step.spec.name;
    if !step.spec.model {
        return Err(format!("step `{name}` does not ask for the model; add `model = true` to it in the workflow"));
    }
    let Some(gov) = governance else {
        return Err("no model is configured: add a [model] table to the run's policy".into());
    };
    let Some(config) = &gov.policy.model else {
        return Err("no model is configured: add a [model] table to the run's policy".into());
    };
    let granted = gov.policy.identities.is_empty() || gov.policy.identities.get(&gov.identity).is_some_and(|g| g.model);
    if !granted {
        return Err(format!(
            "identity `{}` is not granted the model; add `model = true` under [identities.{}] in the policy",
            gov.identity, gov.identity
        ));
    }
    Ok(Arc::new(config.clone()))
}
