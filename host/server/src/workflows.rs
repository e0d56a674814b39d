//! The workflows a server starts runs of, by name: read from `--workflows DIR` at start.
//! A run's workflow is pinned in its journal when it starts, so changing a file later
//! changes only runs started after the server reads it again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tether_types::Workflow;

/// A registered workflow and the directory its relative paths are taken from.
#[derive(Clone, Debug)]
pub struct Registered {
    /// The parsed workflow.
    pub workflow: Workflow,
    /// Its file's directory.
    pub base: PathBuf,
    /// Its file.
    pub file: PathBuf,
}

/// Workflows by name.
#[derive(Clone, Debug, Default)]
pub struct Workflows {
    by_name: BTreeMap<String, Registered>,
}

impl Workflows {
    /// Every `*.toml` file in `dir` that is a workflow (policy files, which have no
    /// `[[steps]]`, are left out). Two workflows with one name is an error naming both.
    pub fn load(dir: &Path) -> Result<Workflows, String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read the directory: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        let mut by_name: BTreeMap<String, Registered> = BTreeMap::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let Ok(table) = text.parse::<toml::Table>() else {
                return Err(format!("{}: not valid TOML", file.display()));
            };
            if !table.contains_key("steps") {
                continue;
            }
            let workflow = Workflow::parse(&file.display().to_string(), &text).map_err(|e| e.to_string())?;
            if let Some(other) = by_name.get(&workflow.name) {
                return Err(format!(
                    "{} and {} both define workflow `{}`; rename one",
                    other.file.display(),
                    file.display(),
                    workflow.name
                ));
            }
            let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
            by_name.insert(workflow.name.clone(), Registered { workflow, base, file });
        }
        Ok(Workflows { by_name })
    }

    /// The workflow by name.
    pub fn get(&self, name: &str) -> Option<&Registered> {
        self.by_name.get(name)
    }

    /// Every registered workflow, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Registered> {
        self.by_name.values()
    }

    /// Their names.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }
}

/// The workflows a server starts runs of: those read from its directory at start, and
/// those registered since through the API, which are written into that directory (so
/// the next start reads them too).
#[derive(Debug, Default)]
pub struct Registry {
    dir: Option<PathBuf>,
    current: std::sync::RwLock<Workflows>,
}

impl Registry {
    /// The registry over `dir` (if the server has one), holding `loaded`.
    pub fn new(dir: Option<PathBuf>, loaded: Workflows) -> Registry {
        Registry { dir, current: std::sync::RwLock::new(loaded) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Workflows> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The workflow by name.
    pub fn get(&self, name: &str) -> Option<Registered> {
        self.read().get(name).cloned()
    }

    /// Every registered workflow, by name.
    pub fn list(&self) -> Vec<Registered> {
        self.read().iter().cloned().collect()
    }

    /// Their names.
    pub fn names(&self) -> Vec<String> {
        self.read().names()
    }

    /// A workflow sent to be registered, parsed: where it would be written. Not yet
    /// registered: see [`Registry::commit`].
    pub fn parse(&self, text: &str) -> Result<Registered, String> {
        let Some(dir) = &self.dir else {
            return Err(
                "this server has no workflows directory to register workflows in (start it with --workflows DIR)"
                    .into(),
            );
        };
        let workflow = Workflow::parse("the workflow sent", text).map_err(|e| e.to_string())?;
        // Replacing a workflow rewrites its file; a new one gets `NAME.toml`.
        let file = match self.get(&workflow.name) {
            Some(existing) => existing.file,
            None => dir.join(format!("{}.toml", workflow.name)),
        };
        if self.get(&workflow.name).is_none() && file.exists() {
            return Err(format!(
                "{} exists and is not a workflow this server registered; rename the workflow",
                file.display()
            ));
        }
        Ok(Registered { workflow, base: dir.clone(), file })
    }

    /// Writes a parsed workflow's file (whole, or not at all) and registers it; `true` if
    /// it replaced one by that name.
    pub fn commit(&self, registered: Registered, text: &str) -> Result<bool, String> {
        let partial = registered.file.with_extension("toml.partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &registered.file))
            .map_err(|e| format!("{}: cannot write it: {e}", registered.file.display()))?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        Ok(current.by_name.insert(registered.workflow.name.clone(), registered).is_some())
    }
}
