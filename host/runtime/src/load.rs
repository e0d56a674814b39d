//! Loading components and workflows: read, hash, compile (or take from the cache), check
//! that the component fits its world, and pre-instantiate it once. A loaded workflow
//! carries the resolved [`Plan`] that a journaled run is pinned to; a plan can be loaded
//! back from component bytes alone (resume and replay).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tether_types::manifest::ComponentRef;
use tether_types::plan::{DirGrant, Plan, PlanCompensation, PlanTool};
use tether_types::policy::Policy;
use tether_types::resolve::ResolvedStep;
use tether_types::{Compensation, ManifestErrors, StepSpec, ToolSpec, Workflow};
use wasmtime::component::Component;

use crate::capabilities::tool::{LoadedTool, ToolComponent};
use crate::runtime::Runtime;
use crate::sandbox::bindings::{step::StepPluginPre, tool::ToolPluginPre};
use crate::sandbox::inspect::{check_fit, World};
use crate::step::{LoadedCompensation, LoadedStep, StepComponent};

/// A workflow whose every component is loaded and fits its world.
pub struct LoadedWorkflow {
    /// The workflow's name.
    pub name: String,
    /// The resolved plan (component digests, budgets, grants).
    pub plan: Plan,
    /// Steps that run a component, in the order written (routes run none).
    pub steps: Vec<Arc<LoadedStep>>,
    /// Tools, by name.
    pub tools: BTreeMap<String, Arc<LoadedTool>>,
    /// Grants the workflow declared that the run's identity refused (see [`crate::apply_identity`]).
    pub refused: Vec<String>,
    /// What every run's start records of `plan` and runs by, made on first use rather
    /// than for every run. Whoever changes `plan` resets it.
    pub(crate) recorded_plan: std::sync::OnceLock<Arc<RecordedPlan>>,
}

/// A workflow's plan as its runs start with it.
pub(crate) struct RecordedPlan {
    /// Its digest, as `RunStarted` records it.
    pub(crate) digest: String,
    /// Its JSON, as `RunStarted` records it.
    pub(crate) json: serde_json::Value,
    /// Normalized, as a run's state holds it (shared by every run of the workflow).
    pub(crate) normalized: Arc<tether_types::plan::Plan>,
    /// Its expressions compiled (`None` if one does not compile: each run reports it).
    pub(crate) flow: Option<Arc<tether_types::next::Flow>>,
}

impl LoadedWorkflow {
    /// The plan as a run's start records it and its state holds it.
    pub(crate) fn recorded_plan(&self) -> Arc<RecordedPlan> {
        let made = self.recorded_plan.get_or_init(|| {
            let mut normalized = self.plan.clone();
            normalized.normalize();
            Arc::new(RecordedPlan {
                digest: self.plan.digest(),
                json: serde_json::to_value(&self.plan).expect("plans serialize"),
                flow: tether_types::next::Flow::compile(&normalized).ok().map(Arc::new),
                normalized: Arc::new(normalized),
            })
        });
        Arc::clone(made)
    }

    /// The compiled expressions of `plan`, if it is this workflow's own as its runs start
    /// with it (a resumed run's plan, read from its journal, is compiled anew).
    pub(crate) fn flow_of(&self, plan: &Arc<tether_types::plan::Plan>) -> Option<Arc<tether_types::next::Flow>> {
        let recorded = self.recorded_plan.get()?;
        if Arc::ptr_eq(&recorded.normalized, plan) {
            recorded.flow.clone()
        } else {
            None
        }
    }
}

/// A component that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct LoadError {
    /// The file (or `sha256:DIGEST` for a stored component).
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// Components kept in the journal's store that a workflow refers to, gathered by the
/// caller (the store is async; loading is not).
#[derive(Default)]
pub struct StoredComponents {
    /// `NAME@VERSION` of each deployed plugin referenced, to its digest.
    pub plugins: HashMap<String, String>,
    /// Bytes of referenced components whose compiled form is not already loaded (see
    /// [`Runtime::preload_compiled`]), by digest.
    pub bytes: HashMap<String, Arc<[u8]>>,
    /// Digests the caller found in the store and preloaded from the AOT cache, so their
    /// bytes were not read. (The cache is shared between journals: finding a digest there
    /// does not mean this journal holds its bytes, which resume and replay will need.)
    pub preloaded: std::collections::HashSet<String>,
}

/// Where a component comes from.
enum Source {
    /// A file's bytes.
    File(Arc<[u8]>),
    /// The journal's store: its digest, and its bytes if they were needed.
    Stored(String, Option<Arc<[u8]>>),
}

impl Runtime {
    fn remember(&self, digest: [u8; 32], component: &Component) {
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(digest, component.clone());
    }

    fn already_loaded(&self, digest: &[u8; 32]) -> Option<Component> {
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(digest).cloned()
    }

    pub(crate) fn compile(&self, wasm: &[u8]) -> Result<(Component, String), String> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        let hex = hex::encode(digest);
        if let Some(c) = self.already_loaded(&digest) {
            return Ok((c, hex));
        }
        let component = self.inner.cache.component(&self.inner.engine, wasm, &hex)?;
        self.remember(digest, &component);
        Ok((component, hex))
    }

    /// Loads the compiled form of the stored component `digest` from the AOT cache, without
    /// its bytes. `false` if it is not there (or not sound): the caller must then pass the
    /// bytes in [`StoredComponents::bytes`]. This is what makes a deployed plugin start
    /// without reading, hashing or compiling its wasm.
    pub fn preload_compiled(&self, digest: &str) -> bool {
        let Some(key) = digest_key(digest) else { return false };
        if self.already_loaded(&key).is_some() {
            return true;
        }
        match self.inner.cache.cached(&self.inner.engine, digest) {
            Some(c) => {
                self.remember(key, &c);
                true
            }
            None => false,
        }
    }

    /// The component for a stored digest: already loaded, or compiled from `wasm`, whose
    /// sha256 must be `digest` (a store that returns other bytes is not trusted).
    fn compile_stored(&self, digest: &str, wasm: Option<&[u8]>) -> Result<Component, String> {
        let key = digest_key(digest).ok_or_else(|| format!("`{digest}` is not a sha256 digest"))?;
        if let Some(c) = self.already_loaded(&key) {
            return Ok(c);
        }
        let wasm = wasm.ok_or("is not stored in the journal")?;
        let (component, actual) = self.compile(wasm)?;
        if actual != digest {
            return Err(format!("the stored bytes hash to sha256:{actual}, not to their digest; the store is damaged"));
        }
        Ok(component)
    }

    fn step_from(
        &self,
        component: Component,
        digest: String,
        wasm: Option<Arc<[u8]>>,
    ) -> Result<StepComponent, String> {
        check_fit(&self.inner.engine, &component, World::Step)?;
        let pre = self.inner.step_linker.instantiate_pre(&component).map_err(|e| format!("{e:#}"))?;
        let pre = StepPluginPre::new(pre).map_err(|e| format!("{e:#}"))?;
        Ok(StepComponent { digest, wasm, pre })
    }

    fn tool_from(
        &self,
        component: Component,
        digest: String,
        wasm: Option<Arc<[u8]>>,
    ) -> Result<ToolComponent, String> {
        check_fit(&self.inner.engine, &component, World::Tool)?;
        let pre = self.inner.tool_linker.instantiate_pre(&component).map_err(|e| format!("{e:#}"))?;
        let pre = ToolPluginPre::new(pre).map_err(|e| format!("{e:#}"))?;
        Ok(ToolComponent { digest, wasm, pre })
    }

    /// Loads a step component from its bytes and checks that it fits the `step-plugin` world.
    pub fn load_step_bytes(&self, wasm: Arc<[u8]>) -> Result<StepComponent, String> {
        let (component, digest) = self.compile(&wasm)?;
        self.step_from(component, digest, Some(wasm))
    }

    /// Loads a tool component from its bytes and checks that it fits the `tool-plugin` world.
    pub fn load_tool_bytes(&self, wasm: Arc<[u8]>) -> Result<ToolComponent, String> {
        let (component, digest) = self.compile(&wasm)?;
        self.tool_from(component, digest, Some(wasm))
    }

    fn load_step_source(&self, source: Source) -> Result<StepComponent, String> {
        match source {
            Source::File(wasm) => self.load_step_bytes(wasm),
            Source::Stored(digest, wasm) => {
                let component = self.compile_stored(&digest, wasm.as_deref())?;
                self.step_from(component, digest, None)
            }
        }
    }

    fn load_tool_source(&self, source: Source) -> Result<ToolComponent, String> {
        match source {
            Source::File(wasm) => self.load_tool_bytes(wasm),
            Source::Stored(digest, wasm) => {
                let component = self.compile_stored(&digest, wasm.as_deref())?;
                self.tool_from(component, digest, None)
            }
        }
    }

    /// Loads a step component file.
    pub fn load_step(&self, path: &Path) -> Result<StepComponent, LoadError> {
        self.load_step_bytes(read(path)?).map_err(|problem| LoadError { path: path.to_path_buf(), problem })
    }

    /// Loads a tool component file.
    pub fn load_tool(&self, path: &Path) -> Result<ToolComponent, LoadError> {
        self.load_tool_bytes(read(path)?).map_err(|problem| LoadError { path: path.to_path_buf(), problem })
    }

    /// Loads every component of `workflow`; relative paths are taken from `base_dir`
    /// (the manifest's directory). Reports every unusable component or directory, each
    /// positioned at its tool or step in the manifest.
    pub fn load_workflow(&self, workflow: Workflow, base_dir: &Path) -> Result<LoadedWorkflow, ManifestErrors> {
        self.load_workflow_with(workflow, base_dir, &StoredComponents::default())
    }

    /// Like [`Runtime::load_workflow`]; components referenced as `sha256:HEX` or as a
    /// deployed plugin's `NAME@VERSION` are taken from `stored` (the CLI fills it from the
    /// journal's store).
    pub fn load_workflow_with(
        &self,
        workflow: Workflow,
        base_dir: &Path,
        stored: &StoredComponents,
    ) -> Result<LoadedWorkflow, ManifestErrors> {
        let fetch = |c: &ComponentRef| -> Result<Source, LoadError> {
            let missing = |problem: &str| LoadError { path: PathBuf::from(&c.path), problem: problem.into() };
            let digest = match (c.digest(), c.plugin()) {
                (Some(d), _) => d.to_string(),
                (None, Some(p)) => stored.plugins.get(p).cloned().ok_or_else(|| {
                    missing("no plugin with this name and version is deployed (`tether plugin list` shows them)")
                })?,
                (None, None) => return read(&base_dir.join(&c.path)).map(Source::File),
            };
            let wasm = stored.bytes.get(&digest).cloned();
            if wasm.is_none() && !stored.preloaded.contains(&digest) {
                return Err(missing("no component with this digest is stored in the journal"));
            }
            Ok(Source::Stored(digest, wasm))
        };
        let mut errors = Vec::new();
        let mut tools = BTreeMap::new();
        let resolve = |what: &str, span: &std::ops::Range<usize>, specs: &[tether_types::manifest::DirSpec]| {
            let mut dirs = Vec::new();
            let mut problems = Vec::new();
            for d in specs {
                match std::fs::canonicalize(base_dir.join(&d.host)) {
                    Ok(p) if p.is_dir() => {
                        dirs.push(DirGrant { host: p.display().to_string(), guest: d.guest.clone(), write: d.write })
                    }
                    _ => problems.push(workflow.error_at(
                        span.clone(),
                        format!("{what}: granted directory `{}` does not exist", d.host),
                        Some(
                            "create it, or fix the path (relative paths start at the workflow file's directory)".into(),
                        ),
                    )),
                }
            }
            (dirs, problems)
        };
        for (name, spec) in &workflow.tools {
            let (dirs, problems) = resolve(&format!("tool `{name}`"), &spec.component.span, &spec.dirs);
            errors.extend(problems);
            let loaded = fetch(&spec.component).and_then(|source| {
                self.load_tool_source(source)
                    .map_err(|problem| LoadError { path: base_dir.join(&spec.component.path), problem })
            });
            match loaded {
                Ok(c) => {
                    tools.insert(name.clone(), Arc::new(LoadedTool::new(spec.clone(), Arc::new(c), dirs)));
                }
                Err(e) => errors.push(position(&workflow, &spec.component, &e, "tool")),
            }
        }
        let mut steps = Vec::new();
        for spec in &workflow.steps {
            let Some(component) = &spec.component else { continue };
            let (dirs, problems) = resolve(&format!("step `{}`", spec.name), &component.span, &spec.dirs);
            errors.extend(problems);
            let compensation = match &spec.compensate {
                None => None,
                Some(Compensation::Tool(t)) => tools.get(t).map(|l| LoadedCompensation::Tool(Arc::clone(l))),
                Some(Compensation::Component(c)) => match fetch(c).and_then(|source| {
                    self.load_step_source(source).map_err(|problem| LoadError { path: base_dir.join(&c.path), problem })
                }) {
                    Ok(component) => Some(LoadedCompensation::Component(Arc::new(component))),
                    Err(e) => {
                        errors.push(position(&workflow, c, &e, "compensation"));
                        None
                    }
                },
            };
            let loaded = fetch(component).and_then(|source| {
                self.load_step_source(source)
                    .map_err(|problem| LoadError { path: base_dir.join(&component.path), problem })
            });
            match loaded {
                Ok(c) => steps.push(Arc::new(LoadedStep::new(
                    spec.clone(),
                    Arc::new(c),
                    granted(&spec.tools, &tools),
                    compensation,
                    dirs,
                ))),
                Err(e) => errors.push(position(&workflow, component, &e, "step")),
            }
        }
        if !errors.is_empty() {
            return Err(ManifestErrors(errors));
        }
        let policy = (!workflow.policy.policy.is_empty()).then(|| workflow.policy.policy.clone());
        let plan = plan_of(&workflow, &steps, &tools, policy);
        Ok(LoadedWorkflow {
            name: workflow.name.clone(),
            plan,
            steps,
            tools,
            refused: Vec::new(),
            recorded_plan: Default::default(),
        })
    }

    /// Loads a recorded plan from component bytes by digest (resume, replay).
    /// `overrides` replaces a step's component (replay `--with`).
    pub fn load_plan(
        &self,
        plan: &Plan,
        wasm: &HashMap<String, Arc<[u8]>>,
        overrides: &HashMap<String, Arc<[u8]>>,
    ) -> Result<LoadedWorkflow, String> {
        let bytes = |digest: &str| {
            wasm.get(digest).cloned().ok_or_else(|| format!("component sha256:{digest} is not in the journal"))
        };
        let mut tools = BTreeMap::new();
        for (name, t) in &plan.tools {
            let component = self.load_tool_bytes(bytes(&t.component)?).map_err(|e| format!("tool `{name}`: {e}"))?;
            let spec = ToolSpec {
                name: name.clone(),
                component: pinned(&t.component),
                budget: t.budget,
                dirs: Vec::new(),
                env: t.env.clone(),
                http: t.http.clone(),
            };
            tools.insert(name.clone(), Arc::new(LoadedTool::new(spec, Arc::new(component), t.dirs.clone())));
        }
        let mut steps = Vec::new();
        for s in &plan.steps {
            if s.route.is_some() {
                continue;
            }
            let wasm = match overrides.get(&s.name) {
                Some(w) => w.clone(),
                None => bytes(&s.component)?,
            };
            let component = self.load_step_bytes(wasm).map_err(|e| format!("step `{}`: {e}", s.name))?;
            let (compensate, compensation) = match &s.compensate {
                None => (None, None),
                Some(PlanCompensation::Tool(t)) => {
                    let tool = tools
                        .get(t)
                        .ok_or_else(|| format!("step `{}`: compensating tool `{t}` is not in the plan", s.name))?;
                    (Some(Compensation::Tool(t.clone())), Some(LoadedCompensation::Tool(Arc::clone(tool))))
                }
                Some(PlanCompensation::Component(digest)) => {
                    let c = self
                        .load_step_bytes(bytes(digest)?)
                        .map_err(|e| format!("step `{}`: compensation: {e}", s.name))?;
                    (Some(Compensation::Component(pinned(digest))), Some(LoadedCompensation::Component(Arc::new(c))))
                }
            };
            let spec = StepSpec {
                name: s.name.clone(),
                component: Some(pinned(&s.component)),
                tools: s.tools.clone(),
                budget: s.budget,
                retry: s.retry.clone(),
                compensate,
                // The flow and the approval gate are read from the plan itself; specs only
                // carry what a step runs with.
                flow: Default::default(),
                approval: None,
                dirs: Vec::new(),
                env: s.env.clone(),
                http: s.http.clone(),
                model: s.model,
            };
            let tools = granted(&s.tools, &tools);
            steps.push(Arc::new(LoadedStep::new(spec, Arc::new(component), tools, compensation, s.dirs.clone())));
        }
        Ok(LoadedWorkflow {
            name: plan.workflow.clone(),
            plan: plan.clone(),
            steps,
            tools,
            refused: Vec::new(),
            recorded_plan: Default::default(),
        })
    }
}

fn read(path: &Path) -> Result<Arc<[u8]>, LoadError> {
    crate::files::read_limited(path, crate::files::COMPONENT_LIMIT, "a component")
        .map(Arc::from)
        .map_err(|problem| LoadError { path: path.to_path_buf(), problem })
}

fn digest_key(digest: &str) -> Option<[u8; 32]> {
    hex::decode(digest).ok()?.try_into().ok()
}

fn pinned(digest: &str) -> ComponentRef {
    ComponentRef { path: format!("sha256:{digest}"), span: 0..0 }
}

fn granted(names: &[String], tools: &BTreeMap<String, Arc<LoadedTool>>) -> HashMap<String, Arc<LoadedTool>> {
    names.iter().filter_map(|t| tools.get(t).map(|l| (t.clone(), Arc::clone(l)))).collect()
}

fn plan_of(
    workflow: &Workflow,
    steps: &[Arc<LoadedStep>],
    tools: &BTreeMap<String, Arc<LoadedTool>>,
    policy: Option<Policy>,
) -> Plan {
    let resolved = |spec: &StepSpec| {
        let Some(loaded) = steps.iter().find(|s| s.spec.name == spec.name) else {
            return ResolvedStep::default();
        };
        ResolvedStep {
            component: loaded.component.digest.clone(),
            compensate: loaded.compensation.as_ref().map(|c| match c {
                LoadedCompensation::Tool(t) => PlanCompensation::Tool(t.spec.name.clone()),
                LoadedCompensation::Component(c) => PlanCompensation::Component(c.digest.clone()),
            }),
            dirs: loaded.dirs.clone(),
        }
    };
    let tools = tools.iter().map(|(n, t)| {
        let tool = PlanTool {
            component: t.component.digest.clone(),
            budget: t.spec.budget,
            dirs: t.dirs.clone(),
            env: t.spec.env.clone(),
            http: t.spec.http.clone(),
        };
        (n.clone(), tool)
    });
    tether_types::resolve::plan_of(workflow, policy, resolved, tools)
}

fn position(workflow: &Workflow, component: &ComponentRef, e: &LoadError, role: &str) -> tether_types::ManifestError {
    let hint = if e.problem == "file not found" {
        Some(
            "build the component first, or fix the path (relative paths start at the workflow file's directory)".into(),
        )
    } else {
        None
    };
    // A file's resolved path helps; a plugin or digest reference would only repeat itself.
    let message = if e.path == Path::new(&component.path) {
        format!("{role} component `{}`: {}", component.path, e.problem)
    } else {
        format!("{role} component `{}` ({}): {}", component.path, e.path.display(), e.problem)
    };
    workflow.error_at(component.span.clone(), message, hint)
}
