//! A step attempt assembled from every layer: the step as loaded (its pre-instantiated
//! component and grants), the data of its store (`store.rs`: the sandbox, the tape and
//! the tool grants, with each layer's accessor trait implemented), the step world's
//! linker built from each layer's functions, and one attempt (`attempt.rs`).
//!
//! The only place that knows them all, so it sits above the capabilities; the loader
//! and the run above it.

pub(crate) mod attempt;
pub(crate) mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tether_types::plan::DirGrant;
use tether_types::policy::EnvGrant;
use tether_types::StepSpec;

use crate::capabilities::tool::LoadedTool;
use crate::sandbox::bindings::step::StepPluginPre;
use crate::step::store::StepState;

/// A step component, compiled and pre-instantiated.
pub struct StepComponent {
    /// sha256 of the wasm, hex.
    pub digest: String,
    /// The wasm itself, so a run can store exactly what it ran; `None` when it was taken
    /// from the journal's store (a deployed plugin, a `sha256:` reference), where it is
    /// already kept, so a run never reads or copies its bytes.
    pub wasm: Option<Arc<[u8]>>,
    pub(crate) pre: StepPluginPre<StepState>,
}

/// A step with its component and the tools it was granted.
#[derive(Clone)]
pub struct LoadedStep {
    /// The declaration.
    pub spec: StepSpec,
    /// The component.
    pub component: Arc<StepComponent>,
    pub(crate) tools: Arc<HashMap<String, Arc<LoadedTool>>>,
    /// What undoes it, if the run fails after it completed.
    pub compensation: Option<LoadedCompensation>,
    /// Directories it may see (absolute host paths).
    pub dirs: Vec<DirGrant>,
    /// Environment variables it may read.
    pub env: Vec<EnvGrant>,
    /// Tools it declared that the run's identity may not use, with the reason.
    pub(crate) refused_tools: Arc<BTreeMap<String, String>>,
}

impl LoadedStep {
    /// A step with what it declared as its grants (before an identity narrows them).
    pub(crate) fn new(
        spec: StepSpec,
        component: Arc<StepComponent>,
        tools: HashMap<String, Arc<LoadedTool>>,
        compensation: Option<LoadedCompensation>,
        dirs: Vec<DirGrant>,
    ) -> LoadedStep {
        let env = spec.env.iter().map(|name| EnvGrant { name: name.clone(), secret: false }).collect();
        LoadedStep { spec, component, tools: Arc::new(tools), compensation, dirs, env, refused_tools: Arc::default() }
    }
}

/// A loaded compensation.
#[derive(Clone)]
pub enum LoadedCompensation {
    /// A declared tool.
    Tool(Arc<LoadedTool>),
    /// A step component (run with no tools).
    Component(Arc<StepComponent>),
}
