//! Governance in the runtime: which grants the run's identity keeps (`identity.rs`), the
//! values of granted environment variables with the secrets among them (`env.rs`), and
//! what tool-call checkpoints decide: the policy's verdicts, approvals, and the gates'
//! earned autonomy (`governance.rs`).
//!
//! Decisions only: the capabilities journal them and enforce them. Below the
//! capabilities, above the journal (a request is stamped with its time) and the sandbox.

pub(crate) mod env;
pub(crate) mod governance;
pub(crate) mod identity;
