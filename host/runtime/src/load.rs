//! Loading components and workflows: read, hash, compile (or take from the cache), check
//! that the component fits its world, and pre-instantiate it once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tether_types::{ManifestErrors, StepSpec, ToolSpec, Workflow};
use wasmtime::component::Component;

use crate::bindings::{step::StepPluginPre, tool::ToolPluginPre};
use crate::engine::Runtime;
use crate::inspect::{check_fit, World};
use crate::state::StoreState;

/// A step component, compiled and pre-instantiated.
pub struct StepComponent {
    /// sha256 of the wasm file, hex.
    pub digest: String,
    pub(crate) pre: StepPluginPre<StoreState>,
}

/// A tool component, compiled and pre-instantiated.
pub struct ToolComponent {
    /// sha256 of the wasm file, hex.
    pub digest: String,
    pub(crate) pre: ToolPluginPre<StoreState>,
}

/// A declared tool with its component.
pub struct LoadedTool {
    /// The declaration.
    pub spec: ToolSpec,
    /// The component.
    pub component: Arc<ToolComponent>,
}

/// A step with its component and the tools it was granted.
pub struct LoadedStep {
    /// The declaration.
    pub spec: StepSpec,
    /// The component.
    pub component: Arc<StepComponent>,
    pub(crate) tools: Arc<HashMap<String, Arc<LoadedTool>>>,
}

/// A workflow whose every component is loaded and fits its world.
pub struct LoadedWorkflow {
    /// The manifest.
    pub workflow: Workflow,
    /// Steps, in order.
    pub steps: Vec<LoadedStep>,
}

/// A component file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct LoadError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl Runtime {
    fn component(&self, path: &Path) -> Result<(Component, String), LoadError> {
        let err = |problem: String| LoadError { path: path.to_path_buf(), problem };
        let wasm = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err("file not found".into()),
            _ => err(format!("cannot read it: {e}")),
        })?;
        let digest: [u8; 32] = Sha256::digest(&wasm).into();
        let hex = hex::encode(digest);
        if let Some(c) = self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(&digest) {
            return Ok((c.clone(), hex));
        }
        let component = self.inner.cache.component(&self.inner.engine, &wasm, &hex).map_err(err)?;
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(digest, component.clone());
        Ok((component, hex))
    }

    /// Loads a step component and checks that it fits the `step-plugin` world.
    pub fn load_step(&self, path: &Path) -> Result<StepComponent, LoadError> {
        let (component, digest) = self.component(path)?;
        let err = |problem: String| LoadError { path: path.to_path_buf(), problem };
        check_fit(&self.inner.engine, &component, World::Step).map_err(err)?;
        let pre = self.inner.step_linker.instantiate_pre(&component).map_err(|e| err(format!("{e:#}")))?;
        let pre = StepPluginPre::new(pre).map_err(|e| err(format!("{e:#}")))?;
        Ok(StepComponent { digest, pre })
    }

    /// Loads a tool component and checks that it fits the `tool-plugin` world.
    pub fn load_tool(&self, path: &Path) -> Result<ToolComponent, LoadError> {
        let (component, digest) = self.component(path)?;
        let err = |problem: String| LoadError { path: path.to_path_buf(), problem };
        check_fit(&self.inner.engine, &component, World::Tool).map_err(err)?;
        let pre = self.inner.tool_linker.instantiate_pre(&component).map_err(|e| err(format!("{e:#}")))?;
        let pre = ToolPluginPre::new(pre).map_err(|e| err(format!("{e:#}")))?;
        Ok(ToolComponent { digest, pre })
    }

    /// Loads every component of `workflow`; relative paths are taken from `base_dir`
    /// (the manifest's directory). Reports every unusable component, each positioned
    /// at its reference in the manifest.
    pub fn load_workflow(&self, workflow: Workflow, base_dir: &Path) -> Result<LoadedWorkflow, ManifestErrors> {
        let mut errors = Vec::new();
        let mut tools = BTreeMap::new();
        for (name, spec) in &workflow.tools {
            let path = base_dir.join(&spec.component.path);
            match self.load_tool(&path) {
                Ok(c) => {
                    tools.insert(name.clone(), Arc::new(LoadedTool { spec: spec.clone(), component: Arc::new(c) }));
                }
                Err(e) => errors.push(position(&workflow, &spec.component, &e, "tool")),
            }
        }
        let mut steps = Vec::new();
        for spec in &workflow.steps {
            let path = base_dir.join(&spec.component.path);
            match self.load_step(&path) {
                Ok(c) => {
                    let granted =
                        spec.tools.iter().filter_map(|t| tools.get(t).map(|l| (t.clone(), Arc::clone(l)))).collect();
                    steps.push(LoadedStep { spec: spec.clone(), component: Arc::new(c), tools: Arc::new(granted) });
                }
                Err(e) => errors.push(position(&workflow, &spec.component, &e, "step")),
            }
        }
        if !errors.is_empty() {
            return Err(ManifestErrors(errors));
        }
        Ok(LoadedWorkflow { workflow, steps })
    }
}

fn position(
    workflow: &Workflow,
    component: &tether_types::manifest::ComponentRef,
    e: &LoadError,
    role: &str,
) -> tether_types::ManifestError {
    let hint = if e.problem == "file not found" {
        Some(
            "build the component first, or fix the path (relative paths start at the workflow file's directory)".into(),
        )
    } else {
        None
    };
    workflow.error_at(
        component.span.clone(),
        format!("{role} component `{}` ({}): {}", component.path, e.path.display(), e.problem),
        hint,
    )
}
