//! The host interfaces a guest can call: `tether:plugin/host` for steps and
//! `tether:plugin/tool-host` for tools, plus WASI p2 with nothing granted.
//!
//! Registered by hand rather than through bindgen's `Host` trait because `call-tool`
//! needs the calling store itself: the fuel a tool burns is deducted from the step.
//! In journaled attempts every call goes through the attempt's tape (see `tape.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tether_types::event::{EventKind, ToolResult};
use tether_types::policy::{approval_id, vars, Checkpoint, Decision, RequestAt, Verdict};
use tether_types::state::{Approval, ApprovalOutcome};
use tether_types::{FailureClass, GuestFailureKind, LogLevel, LogLine, ToolCallReport};
use wasmtime::component::{Linker, LinkerInstance};
use wasmtime::{Engine, StoreContextMut};

use crate::attempt::{run_tool_call, Limits};
use crate::durable::tape::lock;
use crate::durable::time::now_us;
use crate::govern::Governance;
use crate::sandbox::bindings::{names, Failure, Level};
use crate::sandbox::classify::wit_kind;
use crate::state::StoreState;

pub(crate) fn step_linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    crate::sandbox::symlinks::add_to_linker(&mut linker)?;
    add_random(&mut linker)?;
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
    crate::sandbox::symlinks::add_to_linker(&mut linker)?;
    let mut host = linker.instance(names::TOOL_HOST)?;
    add_log_and_usage(&mut host)?;
    host.func_wrap("idempotency-key", |cx: StoreContextMut<'_, StoreState>, (): ()| {
        Ok((cx.data().idempotency_key.clone().unwrap_or_default(),))
    })?;
    Ok(linker)
}

/// `get-random-bytes` and `get-random-u64` for steps. wasmtime-wasi's own draw the bytes
/// one at a time from the context's generator, which through the tape would be one
/// journal event per byte; here a call is one event, counted against the step's budget.
fn add_random(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut random = linker.instance(names::WASI_RANDOM)?;
    random.func_wrap("get-random-bytes", |mut cx: StoreContextMut<'_, StoreState>, (len,): (u64,)| {
        Ok((random_bytes(cx.data_mut(), len)?,))
    })?;
    random.func_wrap("get-random-u64", |mut cx: StoreContextMut<'_, StoreState>, (): ()| {
        let bytes: [u8; 8] = random_bytes(cx.data_mut(), 8)?.try_into().expect("asked for 8 bytes");
        Ok((u64::from_le_bytes(bytes),))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Secure random for a step: from the tape when journaled, counted against the step's
/// `host_reads` and `random_bytes`; checked before anything is allocated.
fn random_bytes(state: &mut StoreState, len: u64) -> wasmtime::Result<Vec<u8>> {
    let Some(tape) = state.tape.clone() else {
        let cap = state.step.as_ref().map_or(0, |g| g.random_bytes);
        if len > cap {
            let msg = format!("asked for {len} bytes of random at once; its random_bytes budget is {cap}");
            return Err(state.trip(FailureClass::HostReadsExceeded, msg));
        }
        let mut bytes = vec![0u8; len as usize];
        rand::fill(&mut bytes[..]);
        return Ok(bytes);
    };
    let read = lock(&tape).random(len);
    match read {
        Ok(bytes) => {
            stop_if_diverged(state)?;
            Ok(bytes)
        }
        Err(msg) if lock(&tape).over_budget.is_some() => Err(state.trip(FailureClass::HostReadsExceeded, msg)),
        Err(msg) => Err(state.trip(FailureClass::HostFault, msg)),
    }
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

/// `host.call-tool`. In order, each step served from the journal when it holds it and
/// decided live (and journaled) otherwise: the request; the grant and input checks; the
/// policy's verdict before the call (and an approval, if it requires one); the tool in
/// its own sandbox, journaled durably before the guest sees the result; the verdict on
/// its output. The tool's fuel is charged to the calling step.
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
    let input_value: Value =
        serde_json::from_str(&input).unwrap_or_else(|_| Value::String(input.chars().take(1024).collect()));
    let requested = EventKind::ToolCallRequested {
        step: step.clone(),
        call,
        tool: shown_name.clone(),
        input: input_value.clone(),
        idempotency_key: key.clone(),
    };
    let is_request = |k: &EventKind| k == &requested;
    if serve(state, is_request, || requested.clone())?.is_none() {
        live(state, &requested);
    }
    let at = (step.as_str(), call);
    let mut result = match refusal(state, &name, &shown_name, &input) {
        Some(refused) => served_or(state, at, &shown_name, || async { refused }).await?,
        None => {
            let vars = tool_vars(&mut cx, &name, &input_value).await;
            match checkpoint(&mut cx, at, Checkpoint::ToolCall, &vars, input_value.clone()).await? {
                Pass::Refuse(refused) => {
                    let event = completed_event(at, &shown_name, refused);
                    served_or(cx.data_mut(), at, &shown_name, || async { event }).await?
                }
                Pass::Go(edited) => {
                    let input = edited.map_or(input, |v| v.to_string());
                    let served = serve(cx.data_mut(), completed_for(at), || requested.clone())?;
                    match served {
                        Some(completed) => completed,
                        None => {
                            // A host that may no longer write the run must not act for it.
                            let failed = cx.data().tape.as_ref().and_then(|t| lock(t).journal()?.failure());
                            if let Some(e) = failed {
                                return Err(cx.data_mut().trip(FailureClass::HostFault, e.to_string()));
                            }
                            let completed =
                                execute(&mut cx, &name, &shown_name, &input, (step.clone(), call), key).await?;
                            record_durably(&mut cx, &completed).await?;
                            completed
                        }
                    }
                }
            }
        }
    };
    let EventKind::ToolCallCompleted { tool, result: outcome, fuel, wall_us, logs, usage, .. } = &mut result else {
        return Err(cx
            .data_mut()
            .trip(FailureClass::HostFault, "the journal holds no result for this tool call".into()));
    };
    if let ToolResult::Ok(output) = outcome {
        let mut vars = tool_vars(&mut cx, &name, &input_value).await;
        vars.insert("output".into(), output.clone());
        match checkpoint(&mut cx, at, Checkpoint::ToolResult, &vars, output.clone()).await? {
            Pass::Go(Some(edited)) => *outcome = ToolResult::Ok(edited),
            Pass::Go(None) => {}
            Pass::Refuse(refused) => *outcome = refused,
        }
    }
    if let Ok(step_fuel) = cx.get_fuel() {
        cx.set_fuel(step_fuel.saturating_sub(*fuel))?;
    }
    let shown = match &outcome {
        ToolResult::Ok(_) => "ok".to_string(),
        ToolResult::Err { class: Some(c), .. } => c.as_str().to_string(),
        ToolResult::Err { .. } => FailureClass::GuestError.as_str().to_string(),
    };
    let report = ToolCallReport { tool: tool.clone(), outcome: shown, fuel: *fuel, wall_us: *wall_us };
    if let Err(msg) = cx.data_mut().record.absorb_tool(logs, usage, report) {
        return Err(cx.data_mut().trip(FailureClass::Trap, format!("invalid usage report: {msg}")));
    }
    cx.data_mut().check_usage_limits()?;
    Ok((match outcome.clone() {
        // The guest sees the recorded value, re-serialized: identical live and served.
        ToolResult::Ok(v) => Ok(v.to_string()),
        ToolResult::Err { kind, message, .. } => Err(Failure { kind: wit_kind(kind), message }),
    },))
}

/// A recorded interaction `wanted` accepts (see [`crate::durable::tape::Tape::serve`]); always
/// `None` for an attempt without a tape. A divergence stops the guest.
fn serve(
    state: &mut StoreState,
    wanted: impl Fn(&EventKind) -> bool,
    actual: impl FnOnce() -> EventKind,
) -> wasmtime::Result<Option<EventKind>> {
    let Some(t) = &state.tape else { return Ok(None) };
    let served = lock(t).serve(wanted, actual);
    match served {
        Ok(served) => Ok(served),
        Err(()) => stop_if_diverged(state).map(|()| None),
    }
}

/// Journals something decided live.
fn live(state: &StoreState, kind: &EventKind) {
    if let Some(t) = &state.tape {
        lock(t).emit_live(kind);
    }
}

/// Journals `kind` and waits until it is durable: the guest must not see a result, or a
/// request wait for a human, before the journal holds it.
async fn record_durably(cx: &mut StoreContextMut<'_, StoreState>, kind: &EventKind) -> wasmtime::Result<()> {
    let journal = cx.data().tape.as_ref().and_then(|t| {
        let mut t = lock(t);
        t.emit_live(kind);
        t.journal()
    });
    if let Some(journal) = journal {
        if let Err(e) = journal.flush().await {
            return Err(cx.data_mut().trip(FailureClass::HostFault, format!("cannot journal the tool call: {e}")));
        }
    }
    Ok(())
}

fn completed_for((step, call): (&str, u32)) -> impl Fn(&EventKind) -> bool + '_ {
    move |k| matches!(k, EventKind::ToolCallCompleted { step: s, call: c, .. } if s == step && *c == call)
}

/// The recorded `ToolCallCompleted` of a refused call, or the refusal, journaled.
async fn served_or<F: std::future::Future<Output = EventKind>>(
    state: &mut StoreState,
    at: (&str, u32),
    shown_name: &str,
    refused: impl FnOnce() -> F,
) -> wasmtime::Result<EventKind> {
    let name = shown_name.to_string();
    let actual = move || completed_event(at, &name, ToolResult::Ok(Value::Null));
    match serve(state, completed_for(at), actual)? {
        Some(recorded) => Ok(recorded),
        None => {
            let event = refused().await;
            live(state, &event);
            Ok(event)
        }
    }
}

fn completed_event((step, call): (&str, u32), tool: &str, result: ToolResult) -> EventKind {
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

/// Why a call is refused before any policy is asked: a tool the step may not use, an
/// input that is too large or not JSON.
fn refusal(state: &StoreState, name: &str, shown_name: &str, input: &str) -> Option<EventKind> {
    let grants = state.step.as_ref()?;
    let at = (grants.step_name.as_str(), state.record.tool_calls.len() as u32);
    let refused = |class: FailureClass, kind: GuestFailureKind, message: String| {
        Some(completed_event(at, shown_name, ToolResult::Err { kind, message, class: Some(class) }))
    };
    if !grants.tools.contains_key(name) {
        let msg = match grants.refused_tools.get(name) {
            Some(reason) => format!("{reason}; grant it in the policy, or run as an identity that has it"),
            None => format!(
                "tool `{shown_name}` is not granted to step `{}`; list it in the step's `tools` in the workflow",
                grants.step_name
            ),
        };
        return refused(FailureClass::Denied, GuestFailureKind::Denied, msg);
    }
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

/// The variables a tool-call rule sees: `identity`, `step`, `tool`, `effect`, `input`, `run`.
async fn tool_vars(cx: &mut StoreContextMut<'_, StoreState>, name: &str, input: &Value) -> Map<String, Value> {
    let Some(grants) = cx.data().step.as_ref() else { return Map::new() };
    let Some(gov) = grants.governance.clone() else { return Map::new() };
    let step = tether_types::flow::step_of(&grants.step_name).to_string();
    let effect = match grants.tools.get(name).cloned() {
        Some(tool) => {
            let engine = cx.engine().clone();
            let component = Arc::clone(&tool.component);
            tool.effect
                .get_or_init(|| async move {
                    match crate::attempt::describe_tool(&engine, &component).await {
                        Ok(d) => serde_json::to_value(d.effect).ok().and_then(|v| v.as_str().map(String::from)),
                        Err(_) => None,
                    }
                    .unwrap_or_else(|| "unknown".into())
                })
                .await
                .clone()
        }
        None => "unknown".into(),
    };
    vars(&[
        ("identity", Value::String(gov.identity.clone())),
        ("step", Value::String(step)),
        ("tool", Value::String(name.to_string())),
        ("effect", Value::String(effect)),
        ("input", input.clone()),
        ("run", serde_json::json!({"workflow": gov.workflow, "input": gov.run_input})),
    ])
}

/// What a checkpoint says about a tool call.
enum Pass {
    /// Go on, with an approver's edit of the proposal if there is one.
    Go(Option<Value>),
    /// Do not: the guest gets this failure.
    Refuse(ToolResult),
}

/// The policy's verdict at a tool-call checkpoint: recorded, or decided now and
/// journaled. A `require_approval` verdict raises a request at its gate, which the gate
/// may approve by itself (earned autonomy); until it is decided the attempt stops, and
/// the run waits holding no sandbox.
async fn checkpoint(
    cx: &mut StoreContextMut<'_, StoreState>,
    (step, call): (&str, u32),
    on: Checkpoint,
    vars: &Map<String, Value>,
    proposal: Value,
) -> wasmtime::Result<Pass> {
    let Some(gov) = cx.data().step.as_ref().and_then(|g| g.governance.clone()) else { return Ok(Pass::Go(None)) };
    // Every call's verdict is journaled; the result's only where rules look at it.
    if on == Checkpoint::ToolResult && !gov.rules.any_at(on) {
        return Ok(Pass::Go(None));
    }
    let verdict = |k: &EventKind| matches!(k, EventKind::PolicyVerdict { step: s, call: Some(c), on: o, .. } if s == step && *c == call && *o == on);
    let decide = || {
        let ruling = gov.rules.decide(on, vars);
        EventKind::PolicyVerdict {
            step: step.to_string(),
            call: Some(call),
            on,
            identity: gov.identity.clone(),
            verdict: ruling.verdict,
            rule: ruling.rule,
            gate: ruling.gate,
        }
    };
    let recorded = serve(cx.data_mut(), verdict, decide)?;
    let event = match recorded {
        Some(e) => e,
        None => {
            let e = decide();
            live(cx.data(), &e);
            e
        }
    };
    let EventKind::PolicyVerdict { verdict, rule, gate, .. } = event else {
        return Err(cx.data_mut().trip(FailureClass::HostFault, "the journal holds no verdict for this call".into()));
    };
    match verdict {
        Verdict::Allow => Ok(Pass::Go(None)),
        Verdict::Deny => Ok(Pass::Refuse(ToolResult::Err {
            kind: GuestFailureKind::Denied,
            message: format!("denied by rule `{}` at the `{}` checkpoint", rule.unwrap_or_default(), on.as_str()),
            class: Some(FailureClass::Denied),
        })),
        Verdict::RequireApproval => {
            let gate = gate.unwrap_or_default();
            approval(cx, &gov, (step, call, on), &gate, vars, proposal).await
        }
    }
}

/// A tool-call approval: the request (recorded or raised now, durably), its decisions
/// (recorded; or the gate's own, if it has earned autonomy), and the outcome.
async fn approval(
    cx: &mut StoreContextMut<'_, StoreState>,
    gov: &Governance,
    (step, call, on): (&str, u32, Checkpoint),
    gate: &str,
    vars: &Map<String, Value>,
    proposal: Value,
) -> wasmtime::Result<Pass> {
    let id = approval_id(step, Some(call), on);
    let raise = || gov.policy.request(gate, RequestAt { step, call: Some(call), on }, proposal.clone(), vars, now_us());
    let is_request = |k: &EventKind| matches!(k, EventKind::ApprovalRequested { id: i, .. } if *i == id);
    let request = match serve(cx.data_mut(), is_request, raise)? {
        Some(r) => r,
        None => {
            let r = raise();
            record_durably(cx, &r).await?;
            r
        }
    };
    let Some(mut pending) = Approval::requested(&request) else {
        return Err(cx.data_mut().trip(FailureClass::HostFault, "the journal holds no approval request here".into()));
    };
    let is_decision = |k: &EventKind| matches!(k, EventKind::ApprovalDecided { id: i, .. } if *i == id);
    loop {
        let decided =
            if cx.data().tape.as_ref().is_some_and(|t| lock(t).leftover().is_some_and(|(_, k)| is_decision(k))) {
                serve(cx.data_mut(), is_decision, || request.clone())?
            } else {
                None
            };
        match decided {
            Some(d) => pending.decide(&d),
            None => break,
        }
    }
    if pending.outcome.is_none() {
        if let Some(evidence) = gov.auto_approval(gate, pending.class.as_deref()) {
            let decided = EventKind::ApprovalDecided {
                id: id.clone(),
                gate: gate.to_string(),
                step: step.to_string(),
                call: Some(call),
                by: tether_types::policy::BY_AUTONOMY.into(),
                decision: Decision::Approve,
                payload: None,
                comment: None,
                evidence: Some(evidence),
            };
            record_durably(cx, &decided).await?;
            pending.decide(&decided);
        }
    }
    match pending.outcome {
        Some(ApprovalOutcome::Approved(payload)) => Ok(Pass::Go((payload != proposal).then_some(payload))),
        Some(ApprovalOutcome::Rejected { by, comment }) => Ok(Pass::Refuse(ToolResult::Err {
            kind: GuestFailureKind::Denied,
            message: format!(
                "rejected by {by} at gate `{gate}`{}",
                comment.map(|c| format!(": {c}")).unwrap_or_default()
            ),
            class: Some(FailureClass::Rejected),
        })),
        None => Err(cx.data_mut().trip(FailureClass::AwaitingApproval, format!("waiting for approval of {id}"))),
    }
}

/// Performs a tool call and describes the result as the event to journal.
async fn execute(
    cx: &mut StoreContextMut<'_, StoreState>,
    name: &str,
    shown_name: &str,
    input: &str,
    (step, call): (String, u32),
    key: String,
) -> wasmtime::Result<EventKind> {
    let grants = cx.data().step.as_ref().expect("checked by call_tool");
    let Some(tool) = grants.tools.get(name).cloned() else {
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
    let engine = cx.engine().clone();
    let (outcome, stats) = run_tool_call(&engine, &tool, input, limits, key, &env).await;
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
        step,
        call,
        tool: shown_name.to_string(),
        result,
        fuel: stats.fuel.saturating_add(stats.tool_fuel),
        wall_us: stats.wall_us,
        logs,
        usage: stats.usage,
    })
}
