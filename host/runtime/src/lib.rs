//! The tether runtime: the only crate that touches wasmtime.
//!
//! One [`Runtime`] owns one wasmtime `Engine` (pooling allocator, fuel and epoch
//! interruption, deterministic floats), an on-disk cache of compiled components, and the
//! linkers for the two worlds of `tether:plugin@0.1.0`. Every step attempt and every tool
//! call runs in a fresh `Store` with its own budget; nothing a guest does can reach the
//! host beyond the `host` interface and a WASI with nothing granted.

mod attempt;
mod bindings;
mod cache;
mod classify;
mod clocks;
mod compensation;
mod driver;
mod engine;
mod error;
pub mod files;
mod govern;
mod host;
mod inspect;
mod journal;
mod lease;
mod limits;
mod load;
mod pipe;
mod plugin;
mod scheduler;
mod state;
mod symlinks;
mod tape;
mod workflow;

pub use cache::{AotCache, CompileNotice};
pub use driver::{append_with, Driver, DriverError, ReplayReport};
pub use engine::{Runtime, RuntimeConfig};
pub use govern::{apply_identity, EnvValues};
pub use inspect::{ComponentInfo, WorldFit};
pub use lease::{owner_id, LeaseConfig, TakeError};
pub use load::{
    LoadError, LoadedCompensation, LoadedStep, LoadedTool, LoadedWorkflow, StepComponent, StoredComponents,
    ToolComponent,
};
pub use plugin::PreparedPlugin;
pub use tape::Divergence;
pub use workflow::{Progress, StepRun};
