//! What a step can reach beyond its sandbox, one file per capability behind the same
//! seam: a store-data accessor trait its host functions are generic over, governance
//! asked before anything is done, and every interaction served from or recorded on the
//! attempt's tape. Today that is calling tools (`call_tool.rs`, with `checkpoint.rs` for
//! the policy's verdicts and approvals, `tool.rs` for the tool's own sandbox, and
//! `grants.rs` for what a step may call).
//!
//! Above governance, the journal and the sandbox; below the step attempt that assembles
//! them all.

pub(crate) mod call_tool;
pub(crate) mod checkpoint;
pub(crate) mod egress;
pub(crate) mod grants;
pub(crate) mod http;
pub(crate) mod model;
pub(crate) mod served;
pub(crate) mod tool;
