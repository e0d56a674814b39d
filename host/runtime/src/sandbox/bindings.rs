//! Generated bindings for `tether:plugin@0.1.0`, in one place. Only the exports are used
//! from here: the host imports are registered by hand (`linker.rs` here, and the layers
//! above for theirs), because `call-tool` needs the calling store (to charge the tool's
//! fuel to the step).

pub(crate) mod step {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tether:plugin/step-plugin",
        exports: { default: async },
    });
}

pub(crate) mod tool {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tether:plugin/tool-plugin",
        exports: { default: async },
        with: { "tether:plugin/types": super::step::tether::plugin::types },
    });
}

pub(crate) use step::tether::plugin::types::{Descriptor, Effect, Failure, FailureKind, Level};

/// The WIT names the host provides and expects, used for clear fit errors.
pub(crate) mod names {
    pub const HOST: &str = "tether:plugin/host@0.1.0";
    pub const TOOL_HOST: &str = "tether:plugin/tool-host@0.1.0";
    pub const MODEL: &str = "tether:plugin/model@0.1.0";
    pub const TYPES: &str = "tether:plugin/types@0.1.0";
    pub const STEP: &str = "tether:plugin/step@0.1.0";
    pub const TOOL: &str = "tether:plugin/tool@0.1.0";
    /// The version wasmtime-wasi 48 defines; the step linker replaces two of its
    /// functions (imports of older 0.2 versions resolve to it).
    pub const WASI_RANDOM: &str = "wasi:random/random@0.2.12";
}
