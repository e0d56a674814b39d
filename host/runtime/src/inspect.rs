//! What a component imports and exports, and whether it fits the step or tool world,
//! with the exact import or export that is wrong when it does not.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::sandbox::bindings::names;
use crate::sandbox::engine::Runtime;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum World {
    Step,
    Tool,
}

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
    pub async fn inspect(&self, path: &Path) -> Result<ComponentInfo, crate::LoadError> {
        let err = |problem: String| crate::LoadError { path: path.to_path_buf(), problem };
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

/// Checks names first, for messages that say exactly what is wrong; type mismatches are
/// caught afterwards by `instantiate_pre` and the bindings' export lookup.
pub(crate) fn check_fit(engine: &Engine, component: &Component, world: World) -> Result<(), String> {
    let ty = component.component_type();
    let (own_host, other_host, export, other_export, role, other_role) = match world {
        World::Step => (names::HOST, names::TOOL_HOST, names::STEP, names::TOOL, "step", "tool"),
        World::Tool => (names::TOOL_HOST, names::HOST, names::TOOL, names::STEP, "tool", "step"),
    };
    for (name, _) in ty.imports(engine) {
        if name == own_host || name == names::TYPES || name.starts_with("wasi:") {
            continue;
        }
        if name == other_host {
            return Err(format!("imports `{name}`, which only {other_role}s get; a {role} imports `{own_host}`"));
        }
        return Err(format!("imports `{name}`, which tether does not provide to a {role}"));
    }
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    if !exports.iter().any(|e| e == export) {
        let mut msg = format!("does not export `{export}`, so it is not a {role}");
        if exports.iter().any(|e| e == other_export) {
            msg.push_str(&format!(" (it exports `{other_export}`: it is a {other_role}; declare it as one)"));
        } else if exports.is_empty() {
            msg.push_str(" (it exports nothing)");
        } else {
            msg.push_str(&format!(" (it exports {})", exports.join(", ")));
        }
        return Err(msg);
    }
    Ok(())
}
