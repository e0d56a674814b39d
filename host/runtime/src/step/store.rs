//! The data of a step attempt's store, and the step world's linker. It holds the
//! sandbox, the attempt's tape (journaled attempts) and what the step may call, and
//! implements each layer's accessor trait, so that layer's host functions (generic over
//! it) reach their part and nothing else: the sandbox's WASI, `log` and `report-usage`;
//! the journal's clocks and random numbers; the capabilities' `call-tool`.

use tether_types::LogLine;
use wasmtime::component::Linker;
use wasmtime::Engine;
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::call_tool;
use crate::capabilities::grants::{ToolCallView, ToolGrants};
use crate::capabilities::http::HttpHooks;
use crate::durable::clocks::add_random;
use crate::durable::tape::{lock, SharedTape, TapeView};
use crate::sandbox::bindings::names;
use crate::sandbox::linker::{add_log_and_usage, add_wasi};
use crate::sandbox::store::{Sandbox, SandboxView};

/// The data of a step attempt's store.
pub(crate) struct StepState {
    pub(crate) sandbox: Sandbox,
    /// Present in journaled attempts: where interactions are served from and go to.
    pub(crate) tape: Option<SharedTape>,
    /// What the step may call.
    pub(crate) grants: ToolGrants,
    /// Its outbound HTTP.
    pub(crate) http: HttpHooks,
    pub(crate) http_ctx: WasiHttpCtx,
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http_ctx, table: self.sandbox.table(), hooks: &mut self.http }
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.sandbox.wasi()
    }
}

impl SandboxView for StepState {
    fn sandbox(&mut self) -> &mut Sandbox {
        &mut self.sandbox
    }

    fn sandbox_ref(&self) -> &Sandbox {
        &self.sandbox
    }

    fn kept_line(&mut self, line: &LogLine, output: bool) {
        if let Some(t) = &self.tape {
            lock(t).note_line(line, output);
        }
    }

    fn reported_usage(&mut self, metric: &str, amount: f64) {
        if let Some(t) = &self.tape {
            lock(t).note_usage(metric, amount);
        }
    }

    fn halted(&self) -> Option<String> {
        self.tape.as_ref().and_then(|t| lock(t).halted())
    }

    fn stop_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        Some(self.http.stop_signal())
    }

    fn over_budget(&self) -> Option<(tether_types::FailureClass, String)> {
        let reads = self.tape.as_ref().and_then(|t| lock(t).over_budget.clone());
        reads.map(|msg| (tether_types::FailureClass::HostReadsExceeded, msg)).or_else(|| self.http.stopped())
    }
}

impl TapeView for StepState {
    fn tape(&self) -> Option<&SharedTape> {
        self.tape.as_ref()
    }
}

impl ToolCallView for StepState {
    fn grants(&self) -> &ToolGrants {
        &self.grants
    }

    fn http_budget(&self) -> std::sync::Arc<crate::capabilities::http::AttemptBudget> {
        self.http.attempt()
    }
}

/// The linker of the `step-plugin` world: WASI, with secure random served through the
/// tape, `wasi:http` (`capabilities/http.rs`), `host` (`log`, `report-usage`,
/// `call-tool`) and `model` (`capabilities/model.rs`).
pub(crate) fn step_linker(engine: &Engine) -> wasmtime::Result<Linker<StepState>> {
    let mut linker = Linker::new(engine);
    add_wasi(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    add_random(&mut linker)?;
    let mut host = linker.instance(names::HOST)?;
    add_log_and_usage(&mut host)?;
    call_tool::add_to_linker(&mut host)?;
    let mut model = linker.instance(names::MODEL)?;
    crate::capabilities::model::add_to_linker(&mut model)?;
    Ok(linker)
}
