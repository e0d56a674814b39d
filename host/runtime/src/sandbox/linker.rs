//! The imports every guest gets, for any store data that holds a sandbox: WASI p2 with
//! nothing granted (symlinks kept within their directory), and the `log` and
//! `report-usage` functions that steps (`host`) and tools (`tool-host`) share. The
//! linkers themselves are assembled where the store data is defined, from these and the
//! functions of the layers above.

use tether_types::{FailureClass, LogLevel, LogLine};
use wasmtime::component::{Linker, LinkerInstance};
use wasmtime::StoreContextMut;

use crate::sandbox::bindings::Level;
use crate::sandbox::store::{log_line, stop_if_halted, SandboxView};
use crate::sandbox::symlinks;

/// WASI p2, with `symlink-at` replaced (see `symlinks.rs`).
pub(crate) fn add_wasi<T: SandboxView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    symlinks::add_to_linker(linker)
}

/// `log` and `report-usage`.
pub(crate) fn add_log_and_usage<T: SandboxView>(instance: &mut LinkerInstance<'_, T>) -> wasmtime::Result<()> {
    instance.func_wrap("log", |mut cx: StoreContextMut<'_, T>, (level, message): (Level, String)| {
        let state = cx.data_mut();
        log_line(state, LogLine { level: log_level(level), stream: "log".into(), tool: None, message });
        stop_if_halted(state)
    })?;
    instance.func_wrap("report-usage", |mut cx: StoreContextMut<'_, T>, (metric, amount): (String, f64)| {
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

fn report_usage<T: SandboxView>(state: &mut T, metric: &str, amount: f64) -> wasmtime::Result<()> {
    let sandbox = state.sandbox();
    if let Err(msg) = sandbox.record.add_usage(metric, amount) {
        return Err(sandbox.trip(FailureClass::Trap, format!("invalid usage report: {msg}")));
    }
    state.reported_usage(metric, amount);
    stop_if_halted(state)?;
    state.sandbox().check_usage_limits()
}
