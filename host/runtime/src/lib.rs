//! The tether runtime: the only crate that touches wasmtime.
//!
//! One [`Runtime`] owns one wasmtime `Engine` (pooling allocator, fuel and epoch
//! interruption, deterministic floats), an on-disk cache of compiled components, and the
//! linkers for the two worlds of `tether:plugin@0.1.0`. Every step attempt and every tool
//! call runs in a fresh `Store` with its own budget; nothing a guest does can reach the
//! host beyond the `host` interface and a WASI with nothing granted.

mod attempt;
mod durable;
pub mod files;
mod govern;
mod host;
mod inspect;
mod load;
mod plugin;
mod redact;
mod run;
mod sandbox;
mod state;

pub use durable::lease::{owner_id, LeaseConfig, TakeError};
pub use durable::tape::Divergence;
pub use govern::{apply_identity, EnvValues};
pub use inspect::{ComponentInfo, WorldFit};
pub use load::{
    LoadError, LoadedCompensation, LoadedStep, LoadedTool, LoadedWorkflow, StepComponent, StoredComponents,
    ToolComponent,
};
pub use plugin::PreparedPlugin;
pub use run::driver::{append_with, Driver, DriverError, ReplayReport};
pub use run::workflow::{Progress, StepRun};
pub use sandbox::cache::{AotCache, CompileNotice};
pub use sandbox::engine::{Runtime, RuntimeConfig};
