//! Pure types shared by every part of tether: failure classes, budgets, the workflow
//! manifest and the reports a run produces. Nothing here performs I/O, so the parser and
//! the rules it enforces can be tested without a file system or an engine.

pub mod access;
pub mod autonomy;
pub mod budget;
pub mod chain;
pub mod egress;
pub mod event;
pub mod exchange;
pub mod expr;
pub mod failure;
pub mod flow;
pub mod ids;
pub mod manifest;
pub mod model;
pub mod names;
pub mod next;
pub mod plan;
pub mod plugin_ref;
pub mod policy;
pub mod report;
pub mod resolve;
pub mod retry;
pub mod run_budget;
pub mod run_index;
pub mod state;
pub mod store;
#[cfg(test)]
mod testing;
pub mod timeline;
pub mod track;
pub mod units;

pub use budget::{BudgetSpec, StepBudget, ToolBudget};
pub use chain::{Chain, JournalError, SealedEvent, StoredEvent};
pub use event::{Event, EventKind, HostRead, Origin, ToolResult};
pub use failure::{FailureClass, GuestFailureKind, StepFailure};
pub use ids::RunId;
pub use manifest::{Compensation, ManifestError, ManifestErrors, StepSpec, ToolSpec, Workflow};
pub use report::{
    Effect, LogLevel, LogLine, RunError, RunReport, RunStatus, RunTotals, StepReport, StepStats, ToolCallReport,
    ToolDescriptor,
};
