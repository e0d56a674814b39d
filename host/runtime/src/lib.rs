//! The tether runtime: the only crate that touches wasmtime.
//!
//! One [`Runtime`] owns one wasmtime `Engine` (pooling allocator, fuel and epoch
//! interruption, deterministic floats), an on-disk cache of compiled components, and the
//! linkers for the two worlds of `tether:plugin@0.1.0`. Every step attempt and every tool
//! call runs in a fresh `Store` with its own budget; nothing a guest does can reach the
//! host beyond the `host` interface and a WASI with nothing granted.
//!
//! The modules form layers that import one way, each naming only those below it:
//!
//! - `run/`: the driver, the scheduler, compensation and runs without a journal;
//! - `inspect.rs`, `plugin.rs`, `identity.rs`, `load.rs`, `runtime.rs`: what callers
//!   do with components and loaded workflows, and the [`Runtime`] itself;
//! - `step/`: a step attempt, whose store data carries every layer's context;
//! - `capabilities/`: what a step reaches beyond its sandbox (tool calls);
//! - `govern/`: identities, environment values, verdicts and approvals;
//! - `durable/`: the journal, the lease, each attempt's tape, virtual clocks;
//! - `sandbox/`: wasmtime itself, knowing nothing of the layers above;
//! - `files.rs`, `redact.rs`: leaves any layer may use.

mod capabilities;
mod durable;
pub mod files;
mod govern;
mod identity;
mod inspect;
mod load;
mod plugin;
mod redact;
mod run;
mod runtime;
mod sandbox;
mod step;

pub use capabilities::tool::{LoadedTool, ToolComponent};
pub use durable::lease::{free_to_take, LeaseConfig, TakeError};
pub use durable::owner::{known_dead, owner_id};
pub use durable::presence::{presence, Presence};
pub use durable::tape::Divergence;
pub use govern::env::EnvValues;
pub use identity::apply_identity;
pub use inspect::{ComponentInfo, WorldFit};
pub use load::{LoadError, LoadedWorkflow, StoredComponents};
pub use plugin::PreparedPlugin;
pub use run::driver::{append_with, Drain, Driver, DriverError, ReplayReport, StartOptions};
pub use run::workflow::{Progress, StepRun};
pub use runtime::Runtime;
pub use sandbox::cache::{AotCache, CompileNotice};
pub use sandbox::engine::RuntimeConfig;
pub use step::{LoadedCompensation, LoadedStep, StepComponent};
