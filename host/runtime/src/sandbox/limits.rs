//! The limits of one attempt, and what enforces the memory budget: a total across all
//! of a component's memories. wasmtime's `StoreLimits` caps each memory separately, so
//! the host keeps its own tally.

use std::time::Duration;

use tether_types::ToolBudget;
use wasmtime::ResourceLimiter;

/// The limits of one attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) fuel: u64,
    pub(crate) wall_time: Duration,
    pub(crate) memory: u64,
    pub(crate) output: u64,
}

impl From<ToolBudget> for Limits {
    fn from(b: ToolBudget) -> Self {
        Limits { fuel: b.fuel, wall_time: b.wall_time, memory: b.memory, output: b.output }
    }
}

/// Tables may not grow beyond this many elements (a guest cannot use them to eat host memory).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Core instances, tables and memories one component may create. The engine refuses a
/// component over these when it is loaded, so a guest cannot get past the load check and
/// then fail to instantiate (which would look like the host's fault).
pub(crate) const MAX_CORE_INSTANCES: u32 = 64;
pub(crate) const MAX_TABLES: u32 = 64;
pub(crate) const MAX_MEMORIES: u32 = 16;

pub(crate) struct MemoryLimiter {
    cap: u64,
    total: u64,
    peak: u64,
    /// The total a refused growth asked for. A Rust guest that is refused memory usually
    /// aborts with `unreachable`; this is how the host knows the real cause.
    pub(crate) refused: Option<u64>,
}

impl MemoryLimiter {
    pub(crate) fn new(cap: u64) -> Self {
        MemoryLimiter { cap, total: 0, peak: 0, refused: None }
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current as u64).saturating_add(desired as u64);
        if total > self.cap {
            self.refused = Some(total);
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }
    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_a_total_across_memories() {
        let mut l = MemoryLimiter::new(10 << 20);
        assert!(l.memory_growing(0, 6 << 20, None).unwrap(), "first memory");
        assert!(!l.memory_growing(0, 6 << 20, None).unwrap(), "second memory would make 12 MiB");
        assert_eq!(l.refused, Some(12 << 20));
        assert!(l.memory_growing(0, 4 << 20, None).unwrap(), "second memory fits at 4 MiB");
        assert!(l.memory_growing(6 << 20, 5 << 20, None).unwrap(), "shrinking accounting stays exact");
        assert_eq!(l.peak(), 10 << 20);
    }
}
