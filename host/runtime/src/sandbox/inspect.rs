//! Whether a component fits the step or the tool world by its names, with the exact
//! import or export that is wrong when it does not. Type mismatches are found when it is
//! linked (see the crate's `inspect.rs`).

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::sandbox::bindings::names;

/// The two worlds of `tether:plugin`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum World {
    /// `step-plugin`.
    Step,
    /// `tool-plugin`.
    Tool,
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
        if name == names::MODEL && world == World::Step {
            continue;
        }
        if name == names::MODEL {
            return Err(format!("imports `{name}`, which only steps get: a tool cannot call the model"));
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
