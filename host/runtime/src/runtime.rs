//! The [`Runtime`]: one engine, the linkers of the two worlds, the AOT cache, and the
//! components loaded in this process. It sits above the step and tool stores because its
//! linkers are typed by them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::Linker;
use wasmtime::Engine;

use crate::capabilities::tool::{tool_linker, ToolState};
use crate::sandbox::cache::AotCache;
use crate::sandbox::engine::{RuntimeConfig, Ticker};
use crate::step::store::{step_linker, StepState};

/// Runs steps and tools. Create one per process and share it; it is cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) step_linker: Linker<StepState>,
    pub(crate) tool_linker: Linker<ToolState>,
    pub(crate) cache: AotCache,
    /// Components loaded in this process, by sha256, so each is compiled or read once.
    pub(crate) loaded: Mutex<HashMap<[u8; 32], wasmtime::component::Component>>,
    /// Stops when the runtime is dropped.
    _ticker: Ticker,
}

impl Runtime {
    /// Builds the engine, the linkers and the cache, and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> wasmtime::Result<Runtime> {
        let engine = crate::sandbox::engine::engine(&config)?;
        let step_linker = step_linker(&engine)?;
        let tool_linker = tool_linker(&engine)?;
        let cache = AotCache::new(config.cache_dir.clone(), &engine, config.on_compile.clone());
        let ticker = Ticker::start(&engine, config.epoch_tick).map_err(wasmtime::Error::new)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                step_linker,
                tool_linker,
                cache,
                loaded: Mutex::new(HashMap::new()),
                _ticker: ticker,
            }),
        })
    }

    pub(crate) fn engine_ref(&self) -> &Engine {
        &self.inner.engine
    }

    /// The engine, for callers that need to compile or inspect components themselves.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }
}
