//! What a step may call, as its store data carries it: the tools it was granted (and
//! those its identity was refused), its `tool_calls` budget, and what the calls need of
//! the run (its governance, its environment values). [`ToolCallView`] is how the
//! capabilities' host functions reach it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::capabilities::tool::LoadedTool;
use crate::durable::tape::TapeView;
use crate::govern::env::EnvValues;
use crate::govern::governance::Governance;

/// A step's view of the tools it was granted and how many calls it may make.
pub(crate) struct ToolGrants {
    pub(crate) step_name: String,
    /// For idempotency keys.
    pub(crate) run_id: String,
    pub(crate) tools: Arc<HashMap<String, Arc<LoadedTool>>>,
    pub(crate) max_calls: u32,
    pub(crate) deadline: Instant,
    pub(crate) max_tool_input: u64,
    /// Tools the step declared that its identity may not use, with the reason.
    pub(crate) refused_tools: Arc<BTreeMap<String, String>>,
    /// The run's policy and identity, when it has a policy.
    pub(crate) governance: Option<Arc<Governance>>,
    /// Granted environment values, for the tools the step calls.
    pub(crate) env: Arc<EnvValues>,
    /// The model, or why the step may not call it.
    pub(crate) model: ModelAccess,
    /// The `model_calls` budget.
    pub(crate) max_model_calls: u32,
}

/// Whether a step may call the model: the operator's configuration, or why not.
pub(crate) type ModelAccess = Result<Arc<tether_types::model::ModelConfig>, String>;

/// A store's data that may call tools: a step's.
pub(crate) trait ToolCallView: TapeView {
    /// What the step may call.
    fn grants(&self) -> &ToolGrants;

    /// The attempt's HTTP budget, which its tools' requests draw on.
    fn http_budget(&self) -> Arc<crate::capabilities::http::AttemptBudget>;
}
