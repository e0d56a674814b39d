//! One attempt: a fresh store with its budget set before anything runs, instantiate from
//! the cached `InstancePre`, one call, classify how it ended, drop the store. A store that
//! trapped is never reused because no store outlives its attempt.

use std::sync::Arc;

use serde_json::Value;
use std::time::{Duration, Instant};

use tether_types::{FailureClass, StepFailure, StepStats, ToolBudget, ToolDescriptor};
use wasmtime::{Engine, Store, UpdateDeadline};

use crate::durable::tape::SharedTape;
use crate::load::{LoadedStep, LoadedTool, ToolComponent};
use crate::sandbox::bindings::{Descriptor, Effect, Failure};
use crate::sandbox::classify::{classify, guest_failure, hostcall_limit, WallClockExpired};
use crate::state::{Setup, StepGrants, StoreState};

/// The limits of one attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) fuel: u64,
    pub(crate) wall_time: Duration,
    pub(crate) memory: u64,
    pub(crate) output: u64,
}

impl From<ToolBudget> for Limits {
    fn from(b: ToolBudget) -> Self {
        Limits { fuel: b.fuel, wall_time: b.wall_time, memory: b.memory, output: b.output }
    }
}

/// Fuel between two stores of a running guest's fuel count (about a millisecond of CPU).
const FUEL_CHECKPOINT: u64 = 10_000_000;

/// What is being called.
enum Entry<'a> {
    Step(&'a LoadedStep),
    Tool(&'a LoadedTool),
    Describe(&'a ToolComponent),
}

impl Entry<'_> {
    async fn instantiate_and_call(&self, store: &mut Store<StoreState>, input: &str) -> Phase {
        match self {
            Entry::Step(s) => match s.component.pre.instantiate_async(&mut *store).await {
                Err(e) => Phase::Instantiate(e),
                Ok(i) => Phase::Call(i.tether_plugin_step().call_run(&mut *store, &input.to_owned()).await),
            },
            Entry::Tool(t) => match t.component.pre.instantiate_async(&mut *store).await {
                Err(e) => Phase::Instantiate(e),
                Ok(i) => Phase::Call(i.tether_plugin_tool().call_call(&mut *store, &input.to_owned()).await),
            },
            Entry::Describe(c) => match c.pre.instantiate_async(&mut *store).await {
                Err(e) => Phase::Instantiate(e),
                Ok(i) => {
                    Phase::Call(i.tether_plugin_tool().call_describe(&mut *store).await.map(|d| Ok(describe_json(d))))
                }
            },
        }
    }
}

/// Where an attempt ended: instantiation failures can be host faults, call failures cannot.
enum Phase {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Result<Result<String, Failure>>),
}

/// Where a step attempt belongs: its run, its tape (journaled runs), and its effective
/// limits (the step's budget clipped to what the run has left).
pub(crate) struct StepContext {
    pub(crate) run_id: String,
    /// The key of this run of the step (`name`, `name[I]`, `name#K`): journal events,
    /// idempotency keys and the insecure-random seed are per key.
    pub(crate) key: String,
    pub(crate) tape: Option<SharedTape>,
    pub(crate) budget: tether_types::StepBudget,
    /// Reported usage the attempt may add, per metric, before the run's budget runs out.
    pub(crate) usage_limits: std::collections::BTreeMap<String, f64>,
    /// The run's policy and identity, when it has a policy.
    pub(crate) governance: Option<Arc<crate::govern::Governance>>,
    /// Granted environment values.
    pub(crate) env: Arc<crate::govern::EnvValues>,
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
    let grants = StepGrants {
        run_id: ctx.run_id,
        step_name: ctx.key,
        tools: Arc::clone(&step.tools),
        max_calls: b.tool_calls,
        deadline: Instant::now() + b.wall_time,
        // A tool's input can be as large as the step's own output may be.
        max_tool_input: b.output,
        random_bytes: b.random_bytes,
        usage_limits: ctx.usage_limits,
        refused_tools: Arc::clone(&step.refused_tools),
        governance: ctx.governance,
        env: Arc::clone(&ctx.env),
    };
    let limits = Limits { fuel: b.fuel, wall_time: b.wall_time, memory: b.memory, output: b.output };
    if let Some(t) = &ctx.tape {
        crate::durable::tape::lock(t).limit_reads(b.host_reads, b.random_bytes);
    }
    let setup = Setup {
        step: Some(grants),
        tape: ctx.tape,
        seed,
        dirs: step.dirs.clone(),
        env: ctx.env.for_grants(&step.env),
        secrets: ctx.env.secrets(),
        ..Setup::default()
    };
    run(engine, Entry::Step(step), input, limits, setup).await
}

/// Runs one tool call in its own sandbox.
pub(crate) async fn run_tool_call(
    engine: &Engine,
    tool: &LoadedTool,
    input: &str,
    limits: Limits,
    idempotency_key: String,
    env: &crate::govern::EnvValues,
) -> (Result<Value, StepFailure>, StepStats) {
    let setup = Setup {
        dirs: tool.dirs.clone(),
        env: env.for_grants(&tool.env),
        secrets: env.secrets(),
        idempotency_key: Some(idempotency_key),
        ..Setup::default()
    };
    run(engine, Entry::Tool(tool), input, limits, setup).await
}

/// Calls a tool's `describe` in a sandbox with the default tool budget. `Err` if it fails
/// or its schemas are not JSON.
pub(crate) async fn describe_tool(engine: &Engine, tool: &ToolComponent) -> Result<ToolDescriptor, StepFailure> {
    let (out, _) = run(engine, Entry::Describe(tool), "", ToolBudget::DEFAULT.into(), Setup::default()).await;
    serde_json::from_value(out?).map_err(|e| StepFailure::new(FailureClass::InvalidOutput, e.to_string()))
}

/// The descriptor as JSON text, so it goes through the same output checks as any call;
/// schemas that are not JSON are reported rather than passed on.
fn describe_json(d: Descriptor) -> String {
    let schema = |text: &str| serde_json::from_str::<serde_json::Value>(text);
    let (input, output) = match (schema(&d.input_schema), schema(&d.output_schema)) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) => return format!("describe(): the input schema is not JSON: {e}"),
        (_, Err(e)) => return format!("describe(): the output schema is not JSON: {e}"),
    };
    let effect = match d.effect {
        Effect::ReadOnly => "read-only",
        Effect::Idempotent => "idempotent",
        Effect::External => "external",
    };
    serde_json::json!({
        "name": d.name, "description": d.description,
        "input_schema": input, "output_schema": output, "effect": effect,
    })
    .to_string()
}

async fn run(
    engine: &Engine,
    entry: Entry<'_>,
    input: &str,
    limits: Limits,
    setup: Setup,
) -> (Result<Value, StepFailure>, StepStats) {
    let start = Instant::now();
    let deadline = start + limits.wall_time;
    let state = match StoreState::new(limits.memory, setup) {
        Ok(s) => s,
        Err(e) => return (Err(StepFailure::new(FailureClass::HostFault, e)), StepStats::default()),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    // Budgets are set before instantiation: a new store has no fuel and an expired
    // deadline, and instantiation runs guest code.
    let metered = store.set_fuel(limits.fuel).is_ok();
    if metered {
        // Compiled code keeps its fuel count in a register and stores it at calls and
        // returns, so a guest stopped mid-loop (a trap, a deadline) would be charged only
        // up to its last call. Refuelling every FUEL_CHECKPOINT units stores the count,
        // so what is charged is within that of what ran.
        let _ = store.fuel_async_yield_interval(Some(FUEL_CHECKPOINT));
    }
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut cx| {
        // A clock read past the budget cannot fail by itself (wasmtime-wasi's clock
        // traits are infallible): it is not journaled, and the guest stops here.
        if let Some(msg) = cx.data().over_read_budget() {
            return Err(cx.data_mut().trip(FailureClass::HostReadsExceeded, msg));
        }
        if Instant::now() >= deadline {
            Err(wasmtime::Error::new(WallClockExpired))
        } else {
            // Yield to the executor every tick so the async timeout below can fire even
            // for a guest that never calls the host.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_hostcall_fuel(hostcall_limit(&limits));

    let phase = tokio::time::timeout(limits.wall_time, entry.instantiate_and_call(&mut store, input)).await;
    let wall_us = start.elapsed().as_micros() as u64;
    let remaining = if metered { store.get_fuel().unwrap_or(0) } else { 0 };
    let state = store.data_mut();
    let used = if metered { limits.fuel.saturating_sub(remaining).saturating_sub(state.record.tool_fuel) } else { 0 };
    let outcome = match phase {
        Err(_elapsed) => Err(StepFailure::new(
            FailureClass::TimedOut,
            format!("exceeded its wall_time budget of {:?} (stopped while blocked in a host call)", limits.wall_time),
        )),
        Ok(Phase::Instantiate(e)) => Err(classify(e, state, &limits, true)),
        Ok(Phase::Call(Err(e))) => Err(classify(e, state, &limits, false)),
        Ok(Phase::Call(Ok(Err(f)))) => Err(guest_failure(f)),
        Ok(Phase::Call(Ok(Ok(json)))) => check_output(json, limits.output),
    };
    // A read past the budget that no check caught before the guest returned still ends it.
    let outcome = match state.over_read_budget() {
        Some(msg) if state.tripped.is_none() => Err(StepFailure::new(FailureClass::HostReadsExceeded, msg)),
        _ => outcome,
    };
    // Guest text (a failure's message, a panic's note) leaves the sandbox here: without
    // the values of granted secrets, before anything can print or record it.
    let outcome = outcome.map_err(|mut f| {
        if let Some(clean) = crate::redact::redact(&f.message, &state.secrets) {
            f.message = clean;
        }
        f
    });
    let tool_name = match entry {
        Entry::Tool(t) => Some(t.spec.name.as_str()),
        Entry::Step(_) | Entry::Describe(_) => None,
    };
    let stats = state.finish(used, wall_us, tool_name);
    // Leaving the journal trumps how the guest then ended.
    let outcome = match state.divergence() {
        Some(d) if !matches!(&outcome, Err(f) if f.class == FailureClass::HostFault) => {
            Err(StepFailure::new(FailureClass::HostFault, format!("execution diverged from the journal {d}")))
        }
        _ => outcome,
    };
    (outcome, stats)
}

/// The output must fit the budget and be JSON, parsed once here: what is accepted is
/// exactly the value recorded and passed on. Nesting deeper than serde_json's limit of
/// 128 levels, a lone surrogate, or a number outside f64 (`1e999`) is `invalid_output`;
/// no later step can read a payload differently, or substitute a value for it.
fn check_output(json: String, cap: u64) -> Result<Value, StepFailure> {
    if json.len() as u64 > cap {
        return Err(StepFailure::new(
            FailureClass::OutputTooLarge,
            format!("output is {} bytes; the output budget is {cap} bytes", json.len()),
        ));
    }
    serde_json::from_str::<Value>(&json).map_err(|e| {
        let start: String = json.chars().take(60).map(|c| if c.is_control() { '?' } else { c }).collect();
        StepFailure::new(
            FailureClass::InvalidOutput,
            format!("output is not JSON tether accepts ({e}); it starts with {start:?}"),
        )
    })
}
