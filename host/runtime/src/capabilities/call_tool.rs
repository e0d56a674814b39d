//! `host.call-tool`: a step calls one of its granted tools. In order, each part served
//! from the journal when it holds it and decided live (and journaled) otherwise:
//!
//! 1. the request, counted against the step's `tool_calls` budget;
//! 2. the grant and input checks ([`refusal`]);
//! 3. the policy's verdict, and an approval if it requires one (`checkpoint.rs`);
//! 4. the tool in its own sandbox (`tool.rs`), journaled durably before the guest sees
//!    the result ([`perform`]);
//! 5. the verdict on its output; then the tool's fuel, logs and usage are charged to the
//!    step ([`settle`]).
//!
//! Registered by hand rather than through bindgen's `Host` trait because it needs the
//! calling store itself: the fuel a tool burns is deducted from the step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tether_types::event::{EventKind, ToolResult};
use tether_types::policy::Checkpoint;
use tether_types::{FailureClass, GuestFailureKind, ToolCallReport};
use wasmtime::component::LinkerInstance;
use wasmtime::StoreContextMut;

use crate::capabilities::checkpoint::descriptor;
use crate::capabilities::checkpoint::{checkpoint, tool_vars};
use crate::capabilities::grants::ToolCallView;
use crate::capabilities::http::{HttpHooks, HttpScope};
use crate::capabilities::served::{live, record_durably, serve, sync_before_effect};
use crate::capabilities::tool::run_tool_call;
use crate::durable::tape::lock;
use crate::govern::governance::{At, Pass};
use crate::sandbox::bindings::{Descriptor, Failure, FailureKind};
use crate::sandbox::classify::wit_kind;
use crate::sandbox::limits::Limits;

/// Adds `call-tool` to the step's `host` interface.
pub(crate) fn add_to_linker<T: ToolCallView>(host: &mut LinkerInstance<'_, T>) -> wasmtime::Result<()> {
    host.func_wrap_async("call-tool", |cx: StoreContextMut<'_, T>, (name, input): (String, String)| {
        Box::new(call_tool(cx, name, input))
    })?;
    host.func_wrap_async("describe-tool", |cx: StoreContextMut<'_, T>, (name,): (String,)| {
        Box::new(describe_granted(cx, name))
    })
}

/// `host.describe-tool`: a granted tool's descriptor, asked of its component once per
/// loaded workflow. Not journaled: a pinned component describes itself the same way
/// every time, so resume and replay get what the run got.
async fn describe_granted<T: ToolCallView>(
    cx: StoreContextMut<'_, T>,
    name: String,
) -> wasmtime::Result<(Result<Descriptor, Failure>,)> {
    let Some(tool) = cx.data().grants().tools.get(&name).cloned() else {
        let shown: String = name.chars().take(64).collect();
        let message = format!("tool `{shown}` is not granted to this step; list it in the step's `tools`");
        return Ok((Err(Failure { kind: FailureKind::Denied, message }),));
    };
    let described = descriptor(cx.engine().clone(), &tool).await;
    Ok((described.map_err(|message| Failure { kind: FailureKind::Internal, message }),))
}

/// One call, as the guest made it.
struct Call {
    name: String,
    /// The name as events show it (cut to 64 characters).
    shown_name: String,
    input: String,
    /// The input as events show it (the text, cut, if it is not JSON).
    input_value: Value,
    step: String,
    index: u32,
    idempotency_key: String,
}

impl Call {
    fn at(&self) -> At<'_> {
        (&self.step, self.index)
    }
}

async fn call_tool<T: ToolCallView>(
    mut cx: StoreContextMut<'_, T>,
    name: String,
    input: String,
) -> wasmtime::Result<(Result<String, Failure>,)> {
    let (call, requested) = request(cx.data_mut(), name, input)?;
    let at = call.at();
    let mut completed = match refusal(cx.data(), &call) {
        Some(refused) => served_or_refused(cx.data_mut(), at, &call.shown_name, refused)?,
        None => {
            let vars = tool_vars(&mut cx, &call.name, &call.input_value).await;
            match checkpoint(&mut cx, at, Checkpoint::ToolCall, &vars, call.input_value.clone()).await? {
                Pass::Refuse(refused) => {
                    let event = completed_event(at, &call.shown_name, refused);
                    served_or_refused(cx.data_mut(), at, &call.shown_name, event)?
                }
                Pass::Go(edited) => perform(&mut cx, &call, &requested, edited).await?,
            }
        }
    };
    let EventKind::ToolCallCompleted { result, .. } = &mut completed else {
        let msg = "the journal holds no result for this tool call".to_string();
        return Err(cx.data_mut().sandbox().trip(FailureClass::HostFault, msg));
    };
    if let ToolResult::Ok(output) = result {
        let mut vars = tool_vars(&mut cx, &call.name, &call.input_value).await;
        vars.insert("output".into(), output.clone());
        match checkpoint(&mut cx, at, Checkpoint::ToolResult, &vars, output.clone()).await? {
            Pass::Go(Some(edited)) => *result = ToolResult::Ok(edited),
            Pass::Go(None) => {}
            Pass::Refuse(refused) => *result = refused,
        }
    }
    settle(&mut cx, completed)
}

/// Counts the call against the step's budget and journals its request.
fn request<T: ToolCallView>(state: &mut T, name: String, input: String) -> wasmtime::Result<(Call, EventKind)> {
    let grants = state.grants();
    let index = state.sandbox_ref().record.tool_calls.len() as u32;
    if index >= grants.max_calls {
        let msg = format!(
            "step `{}` tried a tool call beyond its tool_calls budget of {}",
            grants.step_name, grants.max_calls
        );
        return Err(state.sandbox().trip(FailureClass::ToolBudgetExceeded, msg));
    }
    let step = grants.step_name.clone();
    let idempotency_key = format!("{}/{}/{}", grants.run_id, step, index);
    let shown_name: String = name.chars().take(64).collect();
    let input_value: Value =
        serde_json::from_str(&input).unwrap_or_else(|_| Value::String(input.chars().take(1024).collect()));
    let requested = EventKind::ToolCallRequested {
        step: step.clone(),
        call: index,
        tool: shown_name.clone(),
        input: input_value.clone(),
        idempotency_key: idempotency_key.clone(),
    };
    let is_request = |k: &EventKind| k == &requested;
    if serve(state, is_request, || requested.clone())?.is_none() {
        live(state, &requested);
    }
    let call = Call { name, shown_name, input, input_value, step, index, idempotency_key };
    Ok((call, requested))
}

/// Why a call is refused before any policy is asked: a tool the step may not use, an
/// input that is too large or not JSON.
fn refusal<T: ToolCallView>(state: &T, call: &Call) -> Option<EventKind> {
    let grants = state.grants();
    let refused = |class: FailureClass, kind: GuestFailureKind, message: String| {
        Some(completed_event(call.at(), &call.shown_name, ToolResult::Err { kind, message, class: Some(class) }))
    };
    if !grants.tools.contains_key(&call.name) {
        let msg = match grants.refused_tools.get(&call.name) {
            Some(reason) => format!("{reason}; grant it in the policy, or run as an identity that has it"),
            None => format!(
                "tool `{}` is not granted to step `{}`; list it in the step's `tools` in the workflow",
                call.shown_name, grants.step_name
            ),
        };
        return refused(FailureClass::Denied, GuestFailureKind::Denied, msg);
    }
    let input = &call.input;
    if input.len() as u64 > grants.max_tool_input {
        let msg = format!("tool input is {} bytes; the cap is {} bytes", input.len(), grants.max_tool_input);
        return refused(FailureClass::InvalidInput, GuestFailureKind::InvalidInput, msg);
    }
    // Parsed as the tool's own value would be: what the journal records is what it got.
    if let Err(e) = serde_json::from_str::<Value>(input) {
        return refused(
            FailureClass::InvalidInput,
            GuestFailureKind::InvalidInput,
            format!("tool input is not JSON: {e}"),
        );
    }
    None
}

/// The call's recorded result, or the tool run now (with an approver's edit of its
/// input, if any) and its result journaled durably.
async fn perform<T: ToolCallView>(
    cx: &mut StoreContextMut<'_, T>,
    call: &Call,
    requested: &EventKind,
    edited: Option<Value>,
) -> wasmtime::Result<EventKind> {
    if let Some(completed) = serve(cx.data_mut(), completed_for(call.at()), || requested.clone())? {
        return Ok(completed);
    }
    // A host that may no longer write the run must not act for it.
    let failed = cx.data().tape().and_then(|t| lock(t).journal()?.failure());
    if let Some(e) = failed {
        return Err(cx.data_mut().sandbox().trip(FailureClass::HostFault, e.to_string()));
    }
    let input = edited.map_or_else(|| call.input.clone(), |v| v.to_string());
    // The tool may act on the world: the run up to its request is durable first.
    sync_before_effect(cx.data_mut()).await?;
    let completed = execute(cx, call, &input).await?;
    record_durably(cx.data_mut(), &completed).await?;
    Ok(completed)
}

/// Runs the tool in its own sandbox and describes the result as the event to journal.
async fn execute<T: ToolCallView>(
    cx: &mut StoreContextMut<'_, T>,
    call: &Call,
    input: &str,
) -> wasmtime::Result<EventKind> {
    let grants = cx.data().grants();
    let Some(tool) = grants.tools.get(&call.name).cloned() else {
        return Err(wasmtime::Error::msg("checked by refusal()"));
    };
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
    let env = Arc::clone(&grants.env);
    let http = HttpScope {
        whose: format!("tool `{}`", call.name),
        run_id: grants.run_id.clone(),
        step: grants.step_name.clone(),
        tool_call: Some(call.index),
        asked: tool.spec.http.clone(),
        identity: HttpScope::identity_grants(grants.governance.as_deref()),
        deadline: Instant::now() + limits.wall_time,
        max_requests: budget.http_requests,
        max_bytes: budget.http_bytes,
        tool: Some(call.name.clone()),
        governance: grants.governance.clone(),
        secrets: grants.env.secrets(),
    };
    let http = HttpHooks::within(http, cx.data().tape().cloned(), cx.data().http_budget());
    let engine = cx.engine().clone();
    let key = call.idempotency_key.clone();
    let (outcome, stats) = run_tool_call(&engine, &tool, input, limits, key, &env, http).await;
    // A request of the tool's waits for a person: so does the step, with nothing of the
    // call recorded; it runs again, from the journal, once the request is decided.
    // A request of the tool's in doubt is the step's: the call must not simply be made
    // again (by an agent, say) with a new request number.
    if let Err(f) = &outcome {
        if matches!(f.class, FailureClass::AwaitingApproval | FailureClass::InDoubt) {
            return Err(cx.data_mut().sandbox().trip(f.class, f.message.clone()));
        }
    }
    let name = &call.name;
    let result = match outcome {
        Ok(value) => ToolResult::Ok(value),
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
    Ok(EventKind::ToolCallCompleted {
        step: call.step.clone(),
        call: call.index,
        tool: call.shown_name.clone(),
        result,
        fuel: stats.fuel.saturating_add(stats.tool_fuel),
        wall_us: stats.wall_us,
        logs,
        usage: stats.usage,
    })
}

/// Charges the call to the step (fuel, logs, usage, the call's report) and gives the
/// guest the recorded value, re-serialized: identical live and served.
fn settle<T: ToolCallView>(
    cx: &mut StoreContextMut<'_, T>,
    completed: EventKind,
) -> wasmtime::Result<(Result<String, Failure>,)> {
    let EventKind::ToolCallCompleted { tool, result, fuel, wall_us, logs, usage, .. } = completed else {
        return Err(wasmtime::Error::msg("checked by call_tool()"));
    };
    if let Ok(step_fuel) = cx.get_fuel() {
        cx.set_fuel(step_fuel.saturating_sub(fuel))?;
    }
    let shown = match &result {
        ToolResult::Ok(_) => "ok".to_string(),
        ToolResult::Err { class: Some(c), .. } => c.as_str().to_string(),
        ToolResult::Err { .. } => FailureClass::GuestError.as_str().to_string(),
    };
    let report = ToolCallReport { tool, outcome: shown, fuel, wall_us };
    let sandbox = cx.data_mut().sandbox();
    if let Err(msg) = sandbox.record.absorb_tool(&logs, &usage, report) {
        return Err(sandbox.trip(FailureClass::Trap, format!("invalid usage report: {msg}")));
    }
    sandbox.check_usage_limits()?;
    Ok((match result {
        ToolResult::Ok(v) => Ok(v.to_string()),
        ToolResult::Err { kind, message, .. } => Err(Failure { kind: wit_kind(kind), message }),
    },))
}

/// Accepts the `ToolCallCompleted` of call `at`.
fn completed_for((step, call): At<'_>) -> impl Fn(&EventKind) -> bool + '_ {
    move |k| matches!(k, EventKind::ToolCallCompleted { step: s, call: c, .. } if s == step && *c == call)
}

/// The recorded `ToolCallCompleted` of a refused call, or the refusal, journaled.
fn served_or_refused<T: ToolCallView>(
    state: &mut T,
    at: At<'_>,
    shown_name: &str,
    refused: EventKind,
) -> wasmtime::Result<EventKind> {
    let actual = || completed_event(at, shown_name, ToolResult::Ok(Value::Null));
    match serve(state, completed_for(at), actual)? {
        Some(recorded) => Ok(recorded),
        None => {
            live(state, &refused);
            Ok(refused)
        }
    }
}

/// A `ToolCallCompleted` for a call that ran nothing.
fn completed_event((step, call): At<'_>, tool: &str, result: ToolResult) -> EventKind {
    EventKind::ToolCallCompleted {
        step: step.to_string(),
        call,
        tool: tool.to_string(),
        result,
        fuel: 0,
        wall_us: 0,
        logs: Vec::new(),
        usage: BTreeMap::new(),
    }
}
