//! The sandbox: everything that touches wasmtime to run a guest, and nothing that knows
//! the journal, a policy or governance. The engine and its configuration, the AOT cache,
//! per-attempt limits and how an attempt ended, captured stdio, the WASI every guest gets
//! with nothing granted, and whether a component fits a world.
//!
//! The bottom of the crate's layers: it names none of the others. The layers above reach
//! into a running guest through the store data's [`store::SandboxView`] hooks.

pub(crate) mod bindings;
pub(crate) mod cache;
pub(crate) mod classify;
pub(crate) mod engine;
pub(crate) mod inspect;
pub(crate) mod limits;
pub(crate) mod linker;
pub(crate) mod pipe;
pub(crate) mod run;
pub(crate) mod store;
pub(crate) mod symlinks;
