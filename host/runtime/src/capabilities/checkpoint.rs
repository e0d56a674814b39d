//! The policy's checkpoints on a tool call, journaled: the verdict before the call and
//! on its result (recorded, or decided by governance now and journaled), and for a
//! `require_approval` verdict the approval: its request (durable before the run waits),
//! its recorded decisions, or the gate's own if it has earned autonomy. Until it is
//! decided the attempt stops, and the run waits holding no sandbox.

use std::sync::Arc;

use serde_json::{Map, Value};
use tether_types::event::EventKind;
use tether_types::policy::{approval_id, Checkpoint};
use tether_types::state::Approval;
use tether_types::FailureClass;
use wasmtime::StoreContextMut;

use crate::capabilities::grants::ToolCallView;
use crate::capabilities::served::{record_durably, serve, served_or_live};
use crate::capabilities::tool::{describe_tool, LoadedTool};
use crate::durable::tape::lock;
use crate::govern::governance::{approval_pass, verdict_pass, At, Governance, Pass};
use crate::sandbox::bindings::{Descriptor, Effect};
use tether_types::ToolDescriptor;

/// The variables a tool-call rule sees (none without a policy). The tool's effect is
/// asked of its component the first time a rule needs it.
pub(crate) async fn tool_vars<T: ToolCallView>(
    cx: &mut StoreContextMut<'_, T>,
    name: &str,
    input: &Value,
) -> Map<String, Value> {
    let grants = cx.data().grants();
    let Some(gov) = grants.governance.clone() else { return Map::new() };
    let step_key = grants.step_name.clone();
    let effect = match grants.tools.get(name).cloned() {
        Some(tool) => effect(cx.engine().clone(), tool).await,
        None => "unknown".into(),
    };
    gov.tool_vars(&step_key, name, effect, input)
}

/// The tool's declared effect, or `unknown` if it cannot say.
async fn effect(engine: wasmtime::Engine, tool: Arc<LoadedTool>) -> String {
    match described(engine, &tool).await {
        Ok(d) => serde_json::to_value(d.effect).ok().and_then(|v| v.as_str().map(String::from)),
        Err(_) => None,
    }
    .unwrap_or_else(|| "unknown".into())
}

/// What the tool's `describe` said, asked once per loaded tool.
async fn described(engine: wasmtime::Engine, tool: &LoadedTool) -> Result<ToolDescriptor, String> {
    let component = Arc::clone(&tool.component);
    tool.described
        .get_or_init(|| async move { describe_tool(&engine, &component).await.map_err(|f| f.to_string()) })
        .await
        .clone()
}

/// The tool's descriptor in the step world's types, for `describe-tool`.
pub(crate) async fn descriptor(engine: wasmtime::Engine, tool: &LoadedTool) -> Result<Descriptor, String> {
    let d =
        described(engine, tool).await.map_err(|e| format!("tool `{}` cannot describe itself: {e}", tool.spec.name))?;
    Ok(Descriptor {
        name: d.name,
        description: d.description,
        input_schema: d.input_schema.to_string(),
        output_schema: d.output_schema.to_string(),
        effect: match d.effect {
            tether_types::Effect::ReadOnly => Effect::ReadOnly,
            tether_types::Effect::Idempotent => Effect::Idempotent,
            tether_types::Effect::External => Effect::External,
        },
    })
}

/// The policy's verdict at a tool-call checkpoint: recorded, or decided now and
/// journaled; an approval when it requires one.
pub(crate) async fn checkpoint<T: ToolCallView>(
    cx: &mut StoreContextMut<'_, T>,
    at: At<'_>,
    on: Checkpoint,
    vars: &Map<String, Value>,
    proposal: Value,
) -> wasmtime::Result<Pass> {
    let Some(gov) = cx.data().grants().governance.clone() else { return Ok(Pass::Go(None)) };
    if !gov.checks(on) {
        return Ok(Pass::Go(None));
    }
    let (step, call) = at;
    let is_verdict = |k: &EventKind| matches!(k, EventKind::PolicyVerdict { step: s, call: Some(c), on: o, .. } if s == step && *c == call && *o == on);
    let event = served_or_live(cx.data_mut(), is_verdict, || gov.verdict(at, on, vars))?;
    let EventKind::PolicyVerdict { verdict, rule, gate, .. } = event else {
        let msg = "the journal holds no verdict for this call".to_string();
        return Err(cx.data_mut().sandbox().trip(FailureClass::HostFault, msg));
    };
    match verdict_pass(verdict, rule, on) {
        Some(pass) => Ok(pass),
        None => approval(cx, &gov, at, on, &gate.unwrap_or_default(), vars, proposal).await,
    }
}

/// A tool-call approval: the request (recorded or raised now, durably), its decisions
/// (recorded; or the gate's own, if it has earned autonomy), and the outcome.
async fn approval<T: ToolCallView>(
    cx: &mut StoreContextMut<'_, T>,
    gov: &Governance,
    at: At<'_>,
    on: Checkpoint,
    gate: &str,
    vars: &Map<String, Value>,
    proposal: Value,
) -> wasmtime::Result<Pass> {
    let (step, call) = at;
    let id = approval_id(step, Some(call), on);
    let raise = || gov.request(gate, at, on, &proposal, vars);
    let is_request = |k: &EventKind| matches!(k, EventKind::ApprovalRequested { id: i, .. } if *i == id);
    let request = match serve(cx.data_mut(), is_request, raise)? {
        Some(r) => r,
        None => {
            let r = raise();
            record_durably(cx.data_mut(), &r).await?;
            r
        }
    };
    let Some(mut pending) = Approval::requested(&request) else {
        let msg = "the journal holds no approval request here".to_string();
        return Err(cx.data_mut().sandbox().trip(FailureClass::HostFault, msg));
    };
    let is_decision = |k: &EventKind| matches!(k, EventKind::ApprovalDecided { id: i, .. } if *i == id);
    loop {
        let next_is_decision =
            cx.data().tape().is_some_and(|t| lock(t).leftover().is_some_and(|(_, k)| is_decision(k)));
        let decided = if next_is_decision { serve(cx.data_mut(), is_decision, || request.clone())? } else { None };
        match decided {
            Some(d) => pending.decide(&d),
            None => break,
        }
    }
    if pending.outcome.is_none() {
        if let Some(decided) = gov.auto_decision(&request) {
            record_durably(cx.data_mut(), &decided).await?;
            pending.decide(&decided);
        }
    }
    match approval_pass(pending.outcome, &proposal, gate) {
        Some(pass) => Ok(pass),
        None => {
            Err(cx.data_mut().sandbox().trip(FailureClass::AwaitingApproval, format!("waiting for approval of {id}")))
        }
    }
}
