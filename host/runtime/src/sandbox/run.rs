//! One sandbox run: a fresh store with its budget set before anything runs, instantiate
//! from the cached `InstancePre`, one call, classify how it ended, drop the store. A
//! store that trapped is never reused because no store outlives its run. Generic over
//! the store's data, which the caller builds (a step attempt's, a tool call's).

use std::time::Instant;

use serde_json::Value;
use tether_types::{FailureClass, StepFailure, StepStats};
use wasmtime::{Engine, Store, UpdateDeadline};

use crate::redact::redact;
use crate::sandbox::bindings::step::StepPluginPre;
use crate::sandbox::bindings::tool::ToolPluginPre;
use crate::sandbox::bindings::{Descriptor, Effect, Failure};
use crate::sandbox::classify::{classify, guest_failure, hostcall_limit, WallClockExpired};
use crate::sandbox::limits::Limits;
use crate::sandbox::store::{finish, SandboxView};

/// Fuel between two stores of a running guest's fuel count (about a millisecond of CPU).
const FUEL_CHECKPOINT: u64 = 10_000_000;

/// What is called.
pub(crate) enum Export<'a, T: 'static> {
    /// A step's `run`.
    Run(&'a StepPluginPre<T>),
    /// The tool `name`'s `call`.
    Call(&'a ToolPluginPre<T>, &'a str),
    /// A tool's `describe`.
    Describe(&'a ToolPluginPre<T>),
}

impl<T: Send + 'static> Export<'_, T> {
    async fn instantiate_and_call(&self, store: &mut Store<T>, input: &str) -> Phase {
        match self {
            Export::Run(pre) => match pre.instantiate_async(&mut *store).await {
                Err(e) => Phase::Instantiate(e),
                Ok(i) => Phase::Call(i.tether_plugin_step().call_run(&mut *store, &input.to_owned()).await),
            },
            Export::Call(pre, _) => match pre.instantiate_async(&mut *store).await {
                Err(e) => Phase::Instantiate(e),
                Ok(i) => Phase::Call(i.tether_plugin_tool().call_call(&mut *store, &input.to_owned()).await),
            },
            Export::Describe(pre) => match pre.instantiate_async(&mut *store).await {
                Err(e) => Phase::Instantiate(e),
                Ok(i) => {
                    Phase::Call(i.tether_plugin_tool().call_describe(&mut *store).await.map(|d| Ok(describe_json(d))))
                }
            },
        }
    }

    /// The tool whose lines these are, for the log.
    fn tool(&self) -> Option<&str> {
        match self {
            Export::Call(_, name) => Some(name),
            Export::Run(_) | Export::Describe(_) => None,
        }
    }
}

/// Where a run ended: instantiation failures can be host faults, call failures cannot.
enum Phase {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Result<Result<String, Failure>>),
    /// Stopped from beside the guest (see `SandboxView::stop_signal`).
    Stopped,
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

/// Runs `export` with `input` in a store holding `state` (`Err`: the sandbox could not be
/// set up, a host fault), within `limits`.
pub(crate) async fn run<T: SandboxView>(
    engine: &Engine,
    export: Export<'_, T>,
    input: &str,
    limits: Limits,
    state: Result<T, String>,
) -> (Result<Value, StepFailure>, StepStats) {
    let start = Instant::now();
    let deadline = start + limits.wall_time;
    let state = match state {
        Ok(s) => s,
        Err(e) => return (Err(StepFailure::new(FailureClass::HostFault, e)), StepStats::default()),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.sandbox().limiter);
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
        if let Some((class, msg)) = cx.data().over_budget() {
            return Err(cx.data_mut().sandbox().trip(class, msg));
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

    let stop = store.data().stop_signal();
    let phase = {
        let call = tokio::time::timeout(limits.wall_time, export.instantiate_and_call(&mut store, input));
        let stopped = async {
            match &stop {
                Some(signal) => signal.notified().await,
                None => std::future::pending().await,
            }
        };
        // Stopped from beside the guest: why is in `over_budget`, checked below.
        tokio::select! {
            phase = call => phase,
            () = stopped => Ok(Phase::Stopped),
        }
    };
    let wall_us = start.elapsed().as_micros() as u64;
    let remaining = if metered { store.get_fuel().unwrap_or(0) } else { 0 };
    let state = store.data_mut();
    let sandbox = state.sandbox();
    let used = if metered { limits.fuel.saturating_sub(remaining).saturating_sub(sandbox.record.tool_fuel) } else { 0 };
    let outcome = match phase {
        Err(_elapsed) => Err(StepFailure::new(
            FailureClass::TimedOut,
            format!("exceeded its wall_time budget of {:?} (stopped while blocked in a host call)", limits.wall_time),
        )),
        Ok(Phase::Instantiate(e)) => Err(classify(e, sandbox, &limits, true)),
        Ok(Phase::Call(Err(e))) => Err(classify(e, sandbox, &limits, false)),
        Ok(Phase::Call(Ok(Err(f)))) => Err(guest_failure(f)),
        Ok(Phase::Call(Ok(Ok(json)))) => check_output(json, limits.output),
        Ok(Phase::Stopped) => Err(StepFailure::new(FailureClass::HostFault, "stopped with no reason given")),
    };
    // A read or request past the budget that no check caught before the guest returned
    // still ends it.
    let outcome = match state.over_budget() {
        Some((class, msg)) if state.sandbox_ref().tripped.is_none() => Err(StepFailure::new(class, msg)),
        _ => outcome,
    };
    // Guest text (a failure's message, a panic's note) leaves the sandbox here: without
    // the values of granted secrets, before anything can print or record it.
    let outcome = outcome.map_err(|mut f| {
        if let Some(clean) = redact(&f.message, &state.sandbox_ref().secrets) {
            f.message = clean;
        }
        f
    });
    let stats = finish(state, used, wall_us, export.tool());
    // Stopping for the layer above trumps how the guest then ended.
    let outcome = match state.halted() {
        Some(msg) if !matches!(&outcome, Err(f) if f.class == FailureClass::HostFault) => {
            Err(StepFailure::new(FailureClass::HostFault, msg))
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
