//! The host interfaces a guest can call: `tether:plugin/host` for steps and
//! `tether:plugin/tool-host` for tools, plus WASI p2 with nothing granted.
//!
//! Registered by hand rather than through bindgen's `Host` trait because `call-tool`
//! needs the calling store itself: the fuel a tool burns is deducted from the step.

use std::time::Instant;

use serde::de::IgnoredAny;
use tether_types::{FailureClass, LogLevel, LogLine, ToolCallReport};
use wasmtime::component::{Linker, LinkerInstance};
use wasmtime::{Engine, StoreContextMut};

use crate::attempt::{run_tool_call, Limits};
use crate::bindings::{names, Failure, FailureKind, Level};
use crate::state::StoreState;

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
    add_log_and_usage(&mut linker.instance(names::TOOL_HOST)?)?;
    Ok(linker)
}

/// `log` and `report-usage`, which steps (`host`) and tools (`tool-host`) share.
fn add_log_and_usage(instance: &mut LinkerInstance<'_, StoreState>) -> wasmtime::Result<()> {
    instance.func_wrap("log", |mut cx: StoreContextMut<'_, StoreState>, (level, message): (Level, String)| {
        log(cx.data_mut(), level, message);
        Ok(())
    })?;
    instance.func_wrap("report-usage", |mut cx: StoreContextMut<'_, StoreState>, (metric, amount): (String, f64)| {
        report_usage(cx.data_mut(), &metric, amount)
    })
}

fn log(state: &mut StoreState, level: Level, message: String) {
    let level = match level {
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    state.record.push_log(LogLine { level, stream: "log".into(), tool: None, message });
}

fn report_usage(state: &mut StoreState, metric: &str, amount: f64) -> wasmtime::Result<()> {
    state
        .record
        .add_usage(metric, amount)
        .map_err(|msg| state.trip(FailureClass::Trap, format!("invalid usage report: {msg}")))
}

fn denied(message: String) -> Failure {
    Failure { kind: FailureKind::Denied, message }
}

fn invalid_input(message: String) -> Failure {
    Failure { kind: FailureKind::InvalidInput, message }
}

/// `host.call-tool`: grant check, budget check, input check, then the tool in its own
/// sandbox; its fuel is charged to the calling step.
async fn call_tool(
    mut cx: StoreContextMut<'_, StoreState>,
    name: String,
    input: String,
) -> wasmtime::Result<(Result<String, Failure>,)> {
    let state = cx.data_mut();
    let Some(grants) = state.step.as_ref() else {
        return Err(wasmtime::Error::msg("call-tool is only available to steps"));
    };
    let made = state.record.tool_calls.len() as u32;
    if made >= grants.max_calls {
        let msg = format!(
            "step `{}` tried a tool call beyond its tool_calls budget of {}",
            grants.step_name, grants.max_calls
        );
        return Err(state.trip(FailureClass::ToolBudgetExceeded, msg));
    }
    let shown_name: String = name.chars().take(64).collect();
    let refused = |state: &mut StoreState, outcome: &str, failure: Failure| {
        state.record.tool_calls.push(ToolCallReport {
            tool: shown_name.clone(),
            outcome: outcome.into(),
            fuel: 0,
            wall_us: 0,
        });
        Ok((Err(failure),))
    };
    let Some(tool) = grants.tools.get(&name).cloned() else {
        let msg = format!(
            "tool `{shown_name}` is not granted to step `{}`; list it in the step's `tools` in the workflow",
            grants.step_name
        );
        return refused(state, "denied", denied(msg));
    };
    if input.len() as u64 > grants.max_tool_input {
        let msg = format!("tool input is {} bytes; the cap is {} bytes", input.len(), grants.max_tool_input);
        return refused(state, "invalid_input", invalid_input(msg));
    }
    if let Err(e) = serde_json::from_str::<IgnoredAny>(&input) {
        return refused(state, "invalid_input", invalid_input(format!("tool input is not JSON: {e}")));
    }
    let deadline = grants.deadline;

    // The tool may use no more fuel than the step has left, so the step's fuel budget is
    // a true ceiling on everything done on its behalf.
    let step_fuel = cx.get_fuel().ok();
    let budget = tool.spec.budget;
    let limits = Limits {
        fuel: step_fuel.map_or(budget.fuel, |f| f.min(budget.fuel)),
        wall_time: budget.wall_time.min(deadline.saturating_duration_since(Instant::now())),
        memory: budget.memory,
        output: budget.output,
    };
    let engine = cx.engine().clone();
    let (outcome, stats) = run_tool_call(&engine, &tool, &input, limits).await;
    if let Some(fuel) = step_fuel {
        cx.set_fuel(fuel.saturating_sub(stats.total_fuel()))?;
    }
    let report = ToolCallReport {
        tool: name.clone(),
        outcome: match &outcome {
            Ok(_) => "ok".into(),
            Err(f) => f.class.as_str().into(),
        },
        fuel: stats.total_fuel(),
        wall_us: stats.wall_us,
    };
    cx.data_mut().record.absorb_tool(stats, report);
    Ok((outcome.map_err(|f| {
        let kind = match (f.class, f.guest_kind) {
            (_, Some(k)) => crate::classify::wit_kind(k),
            (FailureClass::TimedOut, None) => FailureKind::Transient,
            _ => FailureKind::Internal,
        };
        let message = if f.guest_kind.is_some() {
            f.message
        } else {
            format!("tool `{name}` failed ({}): {}", f.class, f.message)
        };
        Failure { kind, message }
    }),))
}
