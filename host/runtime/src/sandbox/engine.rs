//! The one wasmtime `Engine`, configured for many short-lived sandboxes, and the epoch
//! ticker that gives every store a wall clock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::sandbox::cache::{AotCache, CompileNotice};
use crate::sandbox::limits::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES};

/// How the runtime is set up. The defaults suit a CLI run or a test suite.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Sandboxes (step attempts plus tool calls) that may exist at once.
    pub max_sandboxes: u32,
    /// Epoch tick: the resolution of wall-time budgets.
    pub epoch_tick: Duration,
    /// Meter fuel. Only benchmarks turn this off, to measure what metering costs.
    pub fuel: bool,
    /// Told before a component is compiled (not found in the cache): it can take seconds.
    pub on_compile: Option<CompileNotice>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: AotCache::default_dir(),
            max_sandboxes: 128,
            epoch_tick: Duration::from_millis(1),
            fuel: true,
            on_compile: None,
        }
    }
}

/// The engine `config` describes.
pub(crate) fn engine(config: &RuntimeConfig) -> wasmtime::Result<Engine> {
    Engine::new(&engine_config(config))
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let n = config.max_sandboxes.max(2);
    let mut pool = PoolingAllocationConfig::default();
    // Keeping the first MiB of each memory resident (zeroed, not unmapped) is what makes
    // a fresh sandbox per attempt cost microseconds rather than tens of microseconds.
    pool.linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 4)
        .total_stacks(n)
        // wasmtime's default is one memory per module; components built from other
        // languages, and hostile ones, may declare more (the memory budget is a total).
        .max_memories_per_module(4)
        .max_core_instances_per_component(MAX_CORE_INSTANCES)
        .max_memories_per_component(MAX_MEMORIES)
        .max_tables_per_component(MAX_TABLES)
        .max_memory_size(tether_types::manifest::MAX_MEMORY as usize);
    let mut cfg = Config::new();
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Stores skip the bookkeeping for component-model-async, which tether does not use;
    // components that need it are rejected when they are loaded.
    cfg.concurrency_support(false);
    cfg.consume_fuel(config.fuel);
    cfg.epoch_interruption(true);
    // Replay needs the same floats on every machine.
    cfg.cranelift_nan_canonicalization(true);
    cfg.relaxed_simd_deterministic(true);
    cfg.wasm_component_model(true);
    cfg
}

/// Advances the engine's epoch every tick until dropped.
pub(crate) struct Ticker(Arc<AtomicBool>);

impl Ticker {
    /// Starts the ticker's thread.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), tick, Arc::clone(&stop))?;
        Ok(Ticker(stop))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn spawn_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("tether-epoch".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            engine.increment_epoch();
        }
    })?;
    Ok(())
}
