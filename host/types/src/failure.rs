//! Every way a step attempt can end without an output has exactly one class. Retries,
//! escalation and exit codes are decided by class, never by parsing messages.

use serde::{Deserialize, Serialize};

/// Why a step attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The component returned `err` with a failure of its own.
    GuestError,
    /// The component trapped (panic, `unreachable`, stack overflow, bad host call).
    Trap,
    /// The step used up its fuel (CPU) budget, including fuel charged by its tool calls.
    FuelExhausted,
    /// The step ran past its wall-time budget, whether computing or blocked in a host call.
    TimedOut,
    /// The component tried to grow its memories beyond the memory budget (a total across
    /// all of its memories).
    MemoryExceeded,
    /// The step made more tool calls than its budget allows.
    ToolBudgetExceeded,
    /// The step read the clock or random numbers more often, or drew more random
    /// bytes, than its budget allows (`host_reads`, `random_bytes`).
    HostReadsExceeded,
    /// The step made more outbound HTTP requests, or read more response bytes, than its
    /// budget allows (`http_requests`, `http_bytes`).
    HttpBudgetExceeded,
    /// The step asked the model more often than its `model_calls` budget allows.
    ModelBudgetExceeded,
    /// A request that is not safe to repeat was in flight when its host stopped, and no
    /// idempotency key lets the server recognise a repeat: whether it took effect is not
    /// known, so it is not sent again. A person must look.
    InDoubt,
    /// The step's output was larger than its output budget.
    OutputTooLarge,
    /// The step returned something that is not JSON.
    InvalidOutput,
    /// The step was refused something it was not granted (for example a tool) and
    /// returned that refusal.
    Denied,
    /// The step's input could not be built or was rejected by the host.
    InvalidInput,
    /// The host itself failed (for example a component could not be loaded). Not the
    /// guest's fault; reported so it is never disguised as one.
    HostFault,
    /// The run's budget (fuel, wall time, tool calls or a usage metric across all steps)
    /// ran out during this attempt. The run is paused, not failed.
    RunBudgetExceeded,
    /// A loop ran its `max_iterations` without its `until` holding.
    LoopExhausted,
    /// A human rejected the action at an approval gate (or its deadline passed and the
    /// gate's default is to reject).
    Rejected,
    /// A person cancelled the run (`tether cancel`); its completed steps were undone.
    Cancelled,
    /// Not a failure: the attempt stopped to wait for an approval, holding no sandbox
    /// while it waits. Never journaled as a step's end; the attempt continues from the
    /// journal once the request is decided.
    AwaitingApproval,
}

impl FailureClass {
    /// Every class, in the order they are documented.
    pub const ALL: [FailureClass; 20] = [
        Self::GuestError,
        Self::Trap,
        Self::FuelExhausted,
        Self::TimedOut,
        Self::MemoryExceeded,
        Self::ToolBudgetExceeded,
        Self::HostReadsExceeded,
        Self::HttpBudgetExceeded,
        Self::ModelBudgetExceeded,
        Self::InDoubt,
        Self::OutputTooLarge,
        Self::InvalidOutput,
        Self::Denied,
        Self::InvalidInput,
        Self::HostFault,
        Self::RunBudgetExceeded,
        Self::LoopExhausted,
        Self::Rejected,
        Self::Cancelled,
        Self::AwaitingApproval,
    ];

    /// The stable snake_case name used in JSON output and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GuestError => "guest_error",
            Self::Trap => "trap",
            Self::FuelExhausted => "fuel_exhausted",
            Self::TimedOut => "timed_out",
            Self::MemoryExceeded => "memory_exceeded",
            Self::ToolBudgetExceeded => "tool_budget_exceeded",
            Self::HostReadsExceeded => "host_reads_exceeded",
            Self::HttpBudgetExceeded => "http_budget_exceeded",
            Self::ModelBudgetExceeded => "model_budget_exceeded",
            Self::InDoubt => "in_doubt",
            Self::OutputTooLarge => "output_too_large",
            Self::InvalidOutput => "invalid_output",
            Self::Denied => "denied",
            Self::InvalidInput => "invalid_input",
            Self::HostFault => "host_fault",
            Self::RunBudgetExceeded => "run_budget_exceeded",
            Self::LoopExhausted => "loop_exhausted",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::AwaitingApproval => "awaiting_approval",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind a component gave its own failure (mirrors the WIT `failure-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestFailureKind {
    /// Malformed input.
    InvalidInput,
    /// Something looked for does not exist.
    NotFound,
    /// Refused by a grant or policy.
    Denied,
    /// Temporary; may be retried.
    Transient,
    /// A bug or unexpected state.
    Internal,
}

/// A failed step attempt: its class and a message for humans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The failure class.
    pub class: FailureClass,
    /// What happened, for humans. For traps, the trap message.
    pub message: String,
    /// For `guest_error` and `denied`: the kind the component reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_kind: Option<GuestFailureKind>,
}

impl StepFailure {
    /// A failure of `class` with a message.
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        StepFailure { class, message: message.into(), guest_kind: None }
    }

    /// The failure a component returned itself: class `denied` for kind `denied`,
    /// otherwise `guest_error`.
    pub fn from_guest(kind: GuestFailureKind, message: impl Into<String>) -> Self {
        let class = match kind {
            GuestFailureKind::Denied => FailureClass::Denied,
            _ => FailureClass::GuestError,
        };
        StepFailure { class, message: message.into(), guest_kind: Some(kind) }
    }
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}
