//! What a component imports and exports, whether it fits the step or tool world (with
//! the exact import or export that is wrong when it does not), and what a tool says it
//! is.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tether_types::{StepFailure, ToolDescriptor};
use wasmtime::component::Component;

use crate::capabilities::tool::{describe_tool, ToolComponent};
use crate::load::LoadError;
use crate::runtime::Runtime;
use crate::sandbox::inspect::{check_fit, World};

/// Whether a component fits a world, and if not, why.
#[derive(Clone, Debug, Serialize)]
pub struct WorldFit {
    /// It fits.
    pub fits: bool,
    /// The first import or export that is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Everything `tether inspect` reports about a component.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentInfo {
    /// Size of the file in bytes.
    pub size: u64,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// `step-plugin`, `tool-plugin`, or null if it fits neither.
    pub world: Option<&'static str>,
    /// Imported interfaces.
    pub imports: Vec<String>,
    /// Exported interfaces.
    pub exports: Vec<String>,
    /// Fit with the step world.
    pub step: WorldFit,
    /// Fit with the tool world.
    pub tool: WorldFit,
    /// For a tool: what its `describe()` returned, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<Result<tether_types::ToolDescriptor, String>>,
}

impl Runtime {
    /// Inspects a component file. `Err` if it cannot be read or is not a component.
    /// A tool is asked to describe itself, in a sandbox with the default tool budget.
    pub async fn inspect(&self, path: &Path) -> Result<ComponentInfo, LoadError> {
        let err = |problem: String| LoadError { path: path.to_path_buf(), problem };
        let wasm = crate::files::read_limited(path, crate::files::COMPONENT_LIMIT, "a component").map_err(err)?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        let engine = &self.inner.engine;
        let component = self.inner.cache.component(engine, &wasm, &sha256).map_err(err)?;
        let ty = component.component_type();
        let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let fit = |world| match self.fits(&component, world) {
            Ok(()) => WorldFit { fits: true, problem: None },
            Err(p) => WorldFit { fits: false, problem: Some(p) },
        };
        let (step, tool) = (fit(World::Step), fit(World::Tool));
        let world = if step.fits {
            Some("step-plugin")
        } else if tool.fits {
            Some("tool-plugin")
        } else {
            None
        };
        let descriptor = match tool.fits {
            true => match self.load_tool(path) {
                Ok(c) => Some(self.describe_tool(&c).await.map_err(|f| f.to_string())),
                Err(e) => Some(Err(e.problem)),
            },
            false => None,
        };
        Ok(ComponentInfo { size: wasm.len() as u64, sha256, world, imports, exports, step, tool, descriptor })
    }
}

impl Runtime {
    /// Asks a tool component to describe itself (in a sandbox with the default tool budget).
    pub async fn describe_tool(&self, tool: &ToolComponent) -> Result<ToolDescriptor, StepFailure> {
        describe_tool(&self.inner.engine, tool).await
    }

    /// Whether `component` fits `world`: its names (with a message naming the wrong import
    /// or export), then its types, by linking it.
    pub(crate) fn fits(&self, component: &Component, world: World) -> Result<(), String> {
        check_fit(&self.inner.engine, component, world)?;
        let linked = match world {
            World::Step => self.inner.step_linker.instantiate_pre(component).map(|_| ()),
            World::Tool => self.inner.tool_linker.instantiate_pre(component).map(|_| ()),
        };
        linked.map_err(|e| format!("{e:#}"))
    }
}
