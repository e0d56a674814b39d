//! Executing and recording runs: the driver (start, resume, replay, appended decisions),
//! the scheduler that launches attempts as their needs allow and records how each ended,
//! compensation of failed runs, and running steps without a journal. The top of the
//! crate: it may use every other part, and nothing below names it.

pub(crate) mod compensation;
pub(crate) mod driver;
pub(crate) mod error;
pub(crate) mod scheduler;
pub(crate) mod workflow;
