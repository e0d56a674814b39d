//! The host interfaces a guest can call: `tether:plugin/host` for steps and
//! `tether:plugin/tool-host` for tools, plus WASI p2 with nothing granted.
//!
//! Registered by hand rather than through bindgen's `Host` trait because `call-tool`
//! needs the calling store itself: the fuel a tool burns is deducted from the step.
//! In journaled attempts every call goes through the attempt's tape (see `tape.rs`).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::de::IgnoredAny;
use serde_json::Value;
use tether_types::event::{EventKind, ToolResult};
use tether_types::{FailureClass, GuestFailureKind, LogLevel, LogLine, ToolCallReport};
use wasmtime::component::{Linker, LinkerInstance};
use wasmtime::{Engine, StoreContextMut};

use crate::attempt::{run_tool_call, Limits};
use crate::bindings::{names, Failure, Level};
use crate::classify::wit_kind;
use crate::state::StoreState;
use crate::tape::{lock, ToolPlan};

pub(crate) fn step_linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let mut host = linker.instance(names::HOST)?;
    add_log_and_usage(&mut host)?;
    host.func_wrap_async("call-tool", |cx: StoreContextMut<'_, StoreState>, (name, input): (String, String)| {
        Box::new(call_tool(cx, name, input))
    })?;
    Ok(linker)
}

pub(crate) fn tool_linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let mut host = linker.instance(names::TOOL_HOST)?;
    add_log_and_usage(&mut host)?;
    host.func_wrap("idempotency-key", |cx: StoreContextMut<'_, StoreState>, (): ()| {
        Ok((cx.data().idempotency_key.clone().unwrap_or_default(),))
    })?;
    Ok(linker)
}

/// `log` and `report-usage`, which steps (`host`) and tools (`tool-host`) share.
fn add_log_and_usage(instance: &mut LinkerInstance<'_, StoreState>) -> wasmtime::Result<()> {
    instance.func_wrap("log", |mut cx: StoreContextMut<'_, StoreState>, (level, message): (Level, String)| {
        let state = cx.data_mut();
        state.log_line(LogLine { level: log_level(level), stream: "log".into(), tool: None, message });
        stop_if_diverged(state)
    })?;
    instance.func_wrap("report-usage", |mut cx: StoreContextMut<'_, StoreState>, (metric, amount): (String, f64)| {
        report_usage(cx.data_mut(), &metric, amount)
    })
}

fn log_level(level: Level) -> LogLevel {
    match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

fn report_usage(state: &mut StoreState, metric: &str, amount: f64) -> wasmtime::Result<()> {
    if let Err(msg) = state.record.add_usage(metric, amount) {
        return Err(state.trip(FailureClass::Trap, format!("invalid usage report: {msg}")));
    }
    if let Some(t) = &state.tape {
        let step = lock(t).step.clone();
        lock(t).note(EventKind::UsageReported { step, metric: metric.to_string(), amount });
    }
    stop_if_diverged(state)?;
    state.check_usage_limits()
}

/// Once execution has left the journal there is nothing to serve: stop the guest.
fn stop_if_diverged(state: &mut StoreState) -> wasmtime::Result<()> {
    match state.divergence() {
        Some(d) => Err(state.trip(FailureClass::HostFault, format!("execution diverged from the journal {d}"))),
        None => Ok(()),
    }
}

/// `host.call-tool`: served from the journal if it already has this call, otherwise the
/// grant check, the input check, and the tool in its own sandbox, journaled durably
/// before the guest sees the result. The tool's fuel is charged to the calling step.
async fn call_tool(
    mut cx: StoreContextMut<'_, StoreState>,
    name: String,
    input: String,
) -> wasmtime::Result<(Result<String, Failure>,)> {
    let state = cx.data_mut();
    let Some(grants) = state.step.as_ref() else {
        return Err(wasmtime::Error::msg("call-tool is only available to steps"));
    };
    let call = state.record.tool_calls.len() as u32;
    if call >= grants.max_calls {
        let msg = format!(
            "step `{}` tried a tool call beyond its tool_calls budget of {}",
            grants.step_name, grants.max_calls
        );
        return Err(state.trip(FailureClass::ToolBudgetExceeded, msg));
    }
    let step = grants.step_name.clone();
    let key = format!("{}/{}/{}", grants.run_id, step, call);
    let shown_name: String = name.chars().take(64).collect();
    let requested = EventKind::ToolCallRequested {
        step: step.clone(),
        call,
        tool: shown_name.clone(),
        input: serde_json::from_str(&input).unwrap_or_else(|_| Value::String(input.chars().take(1024).collect())),
        idempotency_key: key.clone(),
    };
    let plan = match &state.tape {
        Some(t) => lock(t).tool_requested(requested),
        None => ToolPlan::Execute,
    };
    let completed = match plan {
        ToolPlan::Diverged => return stop_if_diverged(state).map(|()| unreachable!("diverged")),
        ToolPlan::Served(completed) => completed,
        ToolPlan::Execute => {
            let completed = execute(&mut cx, &name, &shown_name, &input, (step, call), key).await?;
            let journal = cx.data().tape.as_ref().and_then(|t| {
                let mut t = lock(t);
                t.tool_completed(&completed);
                t.journal()
            });
            if let Some(journal) = journal {
                if let Err(e) = journal.flush().await {
                    return Err(cx
                        .data_mut()
                        .trip(FailureClass::HostFault, format!("cannot journal the tool call: {e}")));
                }
            }
            completed
        }
    };
    let EventKind::ToolCallCompleted { tool, result, fuel, wall_us, logs, usage, .. } = completed else {
        return Err(cx
            .data_mut()
            .trip(FailureClass::HostFault, "the journal holds no result for this tool call".into()));
    };
    if let Ok(step_fuel) = cx.get_fuel() {
        cx.set_fuel(step_fuel.saturating_sub(fuel))?;
    }
    let outcome = match &result {
        ToolResult::Ok(_) => "ok".to_string(),
        ToolResult::Err { class: Some(c), .. } => c.as_str().to_string(),
        ToolResult::Err { .. } => FailureClass::GuestError.as_str().to_string(),
    };
    cx.data_mut().record.absorb_tool(&logs, &usage, ToolCallReport { tool, outcome, fuel, wall_us });
    cx.data_mut().check_usage_limits()?;
    Ok((match result {
        // The guest sees the recorded value, re-serialized: identical live and served.
        ToolResult::Ok(v) => Ok(v.to_string()),
        ToolResult::Err { kind, message, .. } => Err(Failure { kind: wit_kind(kind), message }),
    },))
}

/// Performs a tool call (or refuses it) and describes the result as the event to journal.
async fn execute(
    cx: &mut StoreContextMut<'_, StoreState>,
    name: &str,
    shown_name: &str,
    input: &str,
    (step, call): (String, u32),
    key: String,
) -> wasmtime::Result<EventKind> {
    let grants = cx.data().step.as_ref().expect("checked by call_tool");
    let completed = |result: ToolResult, fuel: u64, wall_us: u64, logs: Vec<LogLine>, usage: BTreeMap<String, f64>| {
        EventKind::ToolCallCompleted {
            step: step.clone(),
            call,
            tool: shown_name.to_string(),
            result,
            fuel,
            wall_us,
            logs,
            usage,
        }
    };
    let refused = |class: FailureClass, kind: GuestFailureKind, message: String| {
        completed(ToolResult::Err { kind, message, class: Some(class) }, 0, 0, Vec::new(), BTreeMap::new())
    };
    let Some(tool) = grants.tools.get(name).cloned() else {
        let msg = format!(
            "tool `{shown_name}` is not granted to step `{}`; list it in the step's `tools` in the workflow",
            grants.step_name
        );
        return Ok(refused(FailureClass::Denied, GuestFailureKind::Denied, msg));
    };
    if input.len() as u64 > grants.max_tool_input {
        let msg = format!("tool input is {} bytes; the cap is {} bytes", input.len(), grants.max_tool_input);
        return Ok(refused(FailureClass::InvalidInput, GuestFailureKind::InvalidInput, msg));
    }
    if let Err(e) = serde_json::from_str::<IgnoredAny>(input) {
        let msg = format!("tool input is not JSON: {e}");
        return Ok(refused(FailureClass::InvalidInput, GuestFailureKind::InvalidInput, msg));
    }

    // The tool may use no more fuel or time than the step has left, so the step's
    // budget is a true ceiling on everything done on its behalf.
    let step_fuel = cx.get_fuel().ok();
    let budget = tool.spec.budget;
    let limits = Limits {
        fuel: step_fuel.map_or(budget.fuel, |f| f.min(budget.fuel)),
        wall_time: budget.wall_time.min(grants.deadline.saturating_duration_since(Instant::now())),
        memory: budget.memory,
        output: budget.output,
    };
    let engine = cx.engine().clone();
    let (outcome, stats) = run_tool_call(&engine, &tool, input, limits, key).await;
    let result = match outcome {
        Ok(json) => ToolResult::Ok(serde_json::from_str(&json).unwrap_or(Value::Null)),
        Err(f) => match f.guest_kind {
            Some(kind) => ToolResult::Err { kind, message: f.message, class: None },
            None => ToolResult::Err {
                kind: if f.class == FailureClass::TimedOut {
                    GuestFailureKind::Transient
                } else {
                    GuestFailureKind::Internal
                },
                message: format!("tool `{name}` failed ({}): {}", f.class, f.message),
                class: Some(f.class),
            },
        },
    };
    let logs = stats
        .logs
        .into_iter()
        .map(|mut l| {
            l.tool.get_or_insert_with(|| name.to_string());
            l
        })
        .collect();
    Ok(completed(result, stats.fuel.saturating_add(stats.tool_fuel), stats.wall_us, logs, stats.usage))
}
