//! What makes a run durable: the run's journal (events sealed into its hash chain,
//! buffered, made durable at the driver's points), the lease it is written under, and
//! each attempt's tape, which journals the guest's interactions live and serves them
//! from the journal on resume and replay (clocks and random included).
//!
//! Below governance and the capabilities, which journal their decisions through the
//! tape; above the sandbox, into which it plugs its clocks and random numbers.

pub(crate) mod clocks;
pub(crate) mod held;
pub(crate) mod journal;
pub(crate) mod lease;
pub(crate) mod owner;
pub(crate) mod presence;
pub(crate) mod tape;
pub(crate) mod time;
