//! A tool as loaded, and the sandbox it runs in: its own store, with WASI, `log`,
//! `report-usage` and its call's idempotency key, and nothing of the step that called
//! it. A tool call (see `call_tool.rs`), a compensation and `describe` run here.

use std::sync::Arc;

use serde_json::Value;
use tether_types::plan::DirGrant;
use tether_types::policy::EnvGrant;
use tether_types::{FailureClass, StepFailure, StepStats, ToolBudget, ToolDescriptor, ToolSpec};
use wasmtime::component::Linker;
use wasmtime::{Engine, StoreContextMut};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::http::HttpHooks;
use crate::govern::env::EnvValues;
use crate::sandbox::bindings::names;
use crate::sandbox::bindings::tool::ToolPluginPre;
use crate::sandbox::limits::Limits;
use crate::sandbox::linker::{add_log_and_usage, add_wasi};
use crate::sandbox::run::{run, Export};
use crate::sandbox::store::{Sandbox, SandboxView, Setup};

/// A tool component, compiled and pre-instantiated.
pub struct ToolComponent {
    /// sha256 of the wasm, hex.
    pub digest: String,
    /// The wasm itself; `None` when it is already in the journal's store.
    pub wasm: Option<Arc<[u8]>>,
    pub(crate) pre: ToolPluginPre<ToolState>,
}

/// A declared tool with its component and resolved grants.
#[derive(Clone)]
pub struct LoadedTool {
    /// The declaration.
    pub spec: ToolSpec,
    /// The component.
    pub component: Arc<ToolComponent>,
    /// Directories it may see (absolute host paths).
    pub dirs: Vec<DirGrant>,
    /// Environment variables it may read.
    pub env: Vec<EnvGrant>,
    /// What its component's `describe` says (its declared effect for policy rules, its
    /// schemas for `describe-tool`), asked the first time something needs it.
    pub(crate) described: Arc<tokio::sync::OnceCell<Result<ToolDescriptor, String>>>,
}

impl LoadedTool {
    /// A tool with what it declared as its grants (before an identity narrows them).
    pub(crate) fn new(spec: ToolSpec, component: Arc<ToolComponent>, dirs: Vec<DirGrant>) -> LoadedTool {
        let env = spec.env.iter().map(|name| EnvGrant { name: name.clone(), secret: false }).collect();
        LoadedTool { spec, component, dirs, env, described: Arc::default() }
    }
}

/// The data of a tool's store.
pub(crate) struct ToolState {
    sandbox: Sandbox,
    /// The call's idempotency key (`None` for `describe`).
    idempotency_key: Option<String>,
    /// Its outbound HTTP, journaled on the calling step's tape.
    http: HttpHooks,
    http_ctx: WasiHttpCtx,
}

impl WasiHttpView for ToolState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http_ctx, table: self.sandbox.table(), hooks: &mut self.http }
    }
}

impl WasiView for ToolState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.sandbox.wasi()
    }
}

impl SandboxView for ToolState {
    fn sandbox(&mut self) -> &mut Sandbox {
        &mut self.sandbox
    }

    fn sandbox_ref(&self) -> &Sandbox {
        &self.sandbox
    }

    fn over_budget(&self) -> Option<(FailureClass, String)> {
        self.http.stopped()
    }

    fn stop_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.http.stop_signal())
    }
}

/// The linker of the `tool-plugin` world: WASI, `wasi:http` and `tool-host`.
pub(crate) fn tool_linker(engine: &Engine) -> wasmtime::Result<Linker<ToolState>> {
    let mut linker = Linker::new(engine);
    add_wasi(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let mut host = linker.instance(names::TOOL_HOST)?;
    add_log_and_usage(&mut host)?;
    host.func_wrap("idempotency-key", |cx: StoreContextMut<'_, ToolState>, (): ()| {
        Ok((cx.data().idempotency_key.clone().unwrap_or_default(),))
    })?;
    Ok(linker)
}

/// Runs one tool call in its own sandbox.
pub(crate) async fn run_tool_call(
    engine: &Engine,
    tool: &LoadedTool,
    input: &str,
    limits: Limits,
    idempotency_key: String,
    env: &EnvValues,
    http: HttpHooks,
) -> (Result<Value, StepFailure>, StepStats) {
    let setup =
        Setup { dirs: tool.dirs.clone(), env: env.for_grants(&tool.env), secrets: env.secrets(), ..Setup::default() };
    let state = Sandbox::new(limits.memory, setup, |_| {}).map(|sandbox| ToolState {
        sandbox,
        idempotency_key: Some(idempotency_key),
        http,
        http_ctx: WasiHttpCtx::new(),
    });
    run(engine, Export::Call(&tool.component.pre, &tool.spec.name), input, limits, state).await
}

/// Calls a tool's `describe` in a sandbox with the default tool budget. `Err` if it fails
/// or its schemas are not JSON.
pub(crate) async fn describe_tool(engine: &Engine, tool: &ToolComponent) -> Result<ToolDescriptor, StepFailure> {
    let limits = Limits::from(ToolBudget::DEFAULT);
    let state = Sandbox::new(limits.memory, Setup::default(), |_| {}).map(|sandbox| ToolState {
        sandbox,
        idempotency_key: None,
        http: HttpHooks::none(),
        http_ctx: WasiHttpCtx::new(),
    });
    let (out, _) = run(engine, Export::Describe(&tool.pre), "", limits, state).await;
    serde_json::from_value(out?).map_err(|e| StepFailure::new(FailureClass::InvalidOutput, e.to_string()))
}
