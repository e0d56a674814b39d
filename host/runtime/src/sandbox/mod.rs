//! The sandbox: everything that touches wasmtime to run a guest, and nothing that knows
//! the journal, a policy or governance. The engine and its configuration, the AOT cache,
//! per-attempt limits and how an attempt ended, captured stdio, and the WASI every
//! guest gets with nothing granted.

pub(crate) mod bindings;
pub(crate) mod cache;
pub(crate) mod classify;
pub(crate) mod engine;
pub(crate) mod limits;
pub(crate) mod pipe;
pub(crate) mod symlinks;
