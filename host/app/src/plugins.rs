//! The plugin store: components deployed under `NAME@VERSION`, checked against the
//! plugin worlds and compiled when added, so a run that names one starts without a
//! compile; one that unfinished runs pin cannot be removed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tether_types::plugin_ref;
use tether_types::store::{PluginAdded, PluginRecord, StoreError};

use crate::{App, AppError};

/// A component to deploy.
pub struct Deploy {
    /// Its bytes.
    pub wasm: Arc<[u8]>,
    /// Where it came from, to name it in errors.
    pub origin: String,
    /// Its name.
    pub name: String,
    /// Its version; else the version its metadata declares.
    pub version: Option<String>,
}

/// A deployed plugin.
pub struct Deployed {
    /// Its record.
    pub record: PluginRecord,
    /// Whether it was new (else the same NAME@VERSION and digest was there already).
    pub added: PluginAdded,
    /// How long checking and compiling it took.
    pub compiled_in: Duration,
}

impl App {
    /// Checks, compiles and deploys a component. A NAME@VERSION that means another
    /// component is refused before the compile.
    pub async fn deploy(&self, deploy: Deploy, now_us: u64) -> Result<Deployed, AppError> {
        let Deploy { wasm, origin, name, version } = deploy;
        plugin_ref::check_name(&name).map_err(AppError::BadInput)?;
        if let Some(v) = &version {
            plugin_ref::check_version(v).map_err(AppError::BadInput)?;
            let digest = hex::encode(Sha256::digest(&wasm));
            let existing = self.store.plugins(Some(&name)).await?;
            if let Some(p) = existing.iter().find(|p| &p.version == v && p.digest != digest) {
                return Err(AppError::Store(StoreError::PluginConflict {
                    name,
                    version: v.clone(),
                    existing: p.digest.clone(),
                    new: digest,
                }));
            }
        }
        let started = Instant::now();
        let prepared =
            self.driver()?.runtime().prepare_plugin(&wasm).map_err(|e| AppError::BadInput(format!("{origin}: {e}")))?;
        let compiled_in = started.elapsed();
        let version = match (version, prepared.metadata["version"].as_str()) {
            (Some(v), _) => v,
            (None, Some(v)) if plugin_ref::check_version(v).is_ok() => v.to_string(),
            _ => return Err(AppError::NoVersion { origin }),
        };
        let record = PluginRecord {
            name,
            version,
            digest: prepared.digest,
            world: prepared.world.to_string(),
            size: wasm.len() as u64,
            metadata: prepared.metadata,
            added_us: now_us,
        };
        let added = self.store.add_plugin(&record, &wasm).await?;
        Ok(Deployed { record, added, compiled_in })
    }

    /// Deployed plugins: all, or the versions of one name.
    pub async fn plugins(&self, name: Option<&str>) -> Result<Vec<PluginRecord>, AppError> {
        Ok(self.store.plugins(name).await?)
    }

    /// Removes a deployed plugin that no unfinished run pins.
    pub async fn remove_plugin(&self, name: &str, version: &str) -> Result<PluginRecord, AppError> {
        Ok(self.store.remove_plugin(name, version).await?)
    }
}
