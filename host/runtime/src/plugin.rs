//! Preparing a component for the plugin store: the world it fits (with the wrong import or
//! export named when it fits neither), what it says about how it was built, and its
//! compiled form, precompiled into the AOT cache so the first run does not compile.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::runtime::Runtime;
use crate::sandbox::inspect::World;

/// A component checked and precompiled for the plugin store.
#[derive(Clone, Debug)]
pub struct PreparedPlugin {
    /// sha256 of the wasm, hex.
    pub digest: String,
    /// `step-plugin` or `tool-plugin`.
    pub world: &'static str,
    /// The producers the component and its modules record (`language`, `processed-by`,
    /// `sdk`), and its own `version` and `description` if it carries them.
    pub metadata: Value,
}

impl Runtime {
    /// Checks that `wasm` is a component that fits the step or the tool world, compiles it
    /// into the AOT cache (or finds it there), and reads its metadata.
    pub fn prepare_plugin(&self, wasm: &[u8]) -> Result<PreparedPlugin, String> {
        let (component, digest) = self.compile(wasm)?;
        let fit = |world| self.fits(&component, world);
        let world = match (fit(World::Step), fit(World::Tool)) {
            (Ok(()), _) => "step-plugin",
            (_, Ok(())) => "tool-plugin",
            (Err(step), Err(tool)) => {
                return Err(format!(
                    "fits neither tether world:\n  as a step (world step-plugin): {step}\n  \
                     as a tool (world tool-plugin): {tool}\n  \
                     build it against wit/tether.wit (`tether new step|tool NAME` makes a project that does)"
                ))
            }
        };
        Ok(PreparedPlugin { digest, world, metadata: metadata(wasm) })
    }
}

/// The union of the producers sections of the component and every module inside it,
/// plus the top-level `version` and `description` custom sections (as `wasm-tools
/// metadata add` writes them). Empty for a binary without any.
fn metadata(wasm: &[u8]) -> Value {
    use wasmparser::{KnownCustom, Parser, Payload};
    let mut producers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut out = serde_json::Map::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(c) => match c.as_known() {
                KnownCustom::Producers(reader) => {
                    for field in reader.into_iter().flatten() {
                        for value in field.values.into_iter().flatten() {
                            let entry = match value.version {
                                "" => value.name.to_string(),
                                v => format!("{} {v}", value.name),
                            };
                            producers.entry(field.name.to_string()).or_default().insert(entry);
                        }
                    }
                }
                _ if depth == 0 && matches!(c.name(), "version" | "description") => {
                    if let Ok(text) = std::str::from_utf8(c.data()) {
                        out.insert(c.name().to_string(), json!(text));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    if !producers.is_empty() {
        out.insert("producers".into(), json!(producers));
    }
    Value::Object(out)
}
