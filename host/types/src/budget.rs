//! Budgets: hard limits on what one step attempt (or one tool call) may consume.
//! Manifests give partial [`BudgetSpec`]s; they are layered over the built-in defaults
//! into complete budgets that the runtime enforces.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A partial budget as written in a manifest: every field optional, layered over defaults.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Fuel units (deterministic CPU). 1 ms of guest CPU is roughly 10-30 million units.
    pub fuel: Option<u64>,
    /// Wall-clock time for the attempt, including time blocked in host calls.
    #[serde(default, deserialize_with = "crate::units::duration")]
    pub wall_time: Option<Duration>,
    /// Total bytes across all of the component's linear memories.
    #[serde(default, deserialize_with = "crate::units::size")]
    pub memory: Option<u64>,
    /// Number of tool calls (steps only).
    pub tool_calls: Option<u32>,
    /// Largest output accepted, in bytes of JSON text.
    #[serde(default, deserialize_with = "crate::units::size")]
    pub output: Option<u64>,
    /// Clock and random reads per attempt (steps only).
    pub host_reads: Option<u32>,
    /// Bytes of secure random per attempt (steps only).
    #[serde(default, deserialize_with = "crate::units::size")]
    pub random_bytes: Option<u64>,
    /// Outbound HTTP requests per attempt or tool call.
    pub http_requests: Option<u32>,
    /// Bytes of HTTP response bodies per attempt or tool call (each body is journaled).
    #[serde(default, deserialize_with = "crate::units::size")]
    pub http_bytes: Option<u64>,
    /// Model calls per attempt (steps only).
    pub model_calls: Option<u32>,
}

impl BudgetSpec {
    /// This spec with every field it leaves unset taken from `under`.
    pub fn over(&self, under: &BudgetSpec) -> BudgetSpec {
        BudgetSpec {
            fuel: self.fuel.or(under.fuel),
            wall_time: self.wall_time.or(under.wall_time),
            memory: self.memory.or(under.memory),
            tool_calls: self.tool_calls.or(under.tool_calls),
            output: self.output.or(under.output),
            host_reads: self.host_reads.or(under.host_reads),
            random_bytes: self.random_bytes.or(under.random_bytes),
            http_requests: self.http_requests.or(under.http_requests),
            http_bytes: self.http_bytes.or(under.http_bytes),
            model_calls: self.model_calls.or(under.model_calls),
        }
    }
}

/// The complete budget of one step attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepBudget {
    /// Fuel units for the step and every tool it calls.
    pub fuel: u64,
    /// Wall-clock limit.
    #[serde(with = "duration_ms")]
    pub wall_time: Duration,
    /// Total linear-memory bytes.
    pub memory: u64,
    /// Tool calls allowed.
    pub tool_calls: u32,
    /// Output bytes allowed.
    pub output: u64,
    /// Clock and random reads allowed. Each is a journal event, so a guest reading the
    /// clock in a loop would otherwise fill the host's memory and the journal.
    #[serde(default = "default_host_reads")]
    pub host_reads: u32,
    /// Bytes of secure random allowed in total (each call is one journal event holding
    /// the bytes).
    #[serde(default = "default_random_bytes")]
    pub random_bytes: u64,
    /// Outbound HTTP requests allowed (each is a journal event).
    #[serde(default = "default_http_requests", skip_serializing_if = "is_default_http_requests")]
    pub http_requests: u32,
    /// Bytes of HTTP response bodies allowed in total; a response that would pass it is
    /// refused, not cut (the journal holds every body the guest read, for replay).
    #[serde(default = "default_http_bytes", skip_serializing_if = "is_default_http_bytes")]
    pub http_bytes: u64,
    /// Model calls allowed (each is a journal event and a paid request).
    #[serde(default = "default_model_calls", skip_serializing_if = "is_default_model_calls")]
    pub model_calls: u32,
}

fn default_model_calls() -> u32 {
    StepBudget::DEFAULT.model_calls
}

fn is_default_model_calls(n: &u32) -> bool {
    *n == default_model_calls()
}

fn default_http_requests() -> u32 {
    StepBudget::DEFAULT.http_requests
}

fn default_http_bytes() -> u64 {
    StepBudget::DEFAULT.http_bytes
}

// The HTTP fields are left out of a budget's JSON at their defaults, so plans (and their
// digests) written before they existed read and hash the same.
fn is_default_http_requests(n: &u32) -> bool {
    *n == default_http_requests()
}

fn is_default_http_bytes(n: &u64) -> bool {
    *n == default_http_bytes()
}

fn default_host_reads() -> u32 {
    StepBudget::DEFAULT.host_reads
}

fn default_random_bytes() -> u64 {
    StepBudget::DEFAULT.random_bytes
}

/// The complete budget of one tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolBudget {
    /// Fuel units for the call.
    pub fuel: u64,
    /// Wall-clock limit.
    #[serde(with = "duration_ms")]
    pub wall_time: Duration,
    /// Total linear-memory bytes.
    pub memory: u64,
    /// Output bytes allowed.
    pub output: u64,
    /// Outbound HTTP requests allowed.
    #[serde(default = "default_http_requests", skip_serializing_if = "is_default_http_requests")]
    pub http_requests: u32,
    /// Bytes of HTTP response bodies allowed in total.
    #[serde(default = "default_http_bytes", skip_serializing_if = "is_default_http_bytes")]
    pub http_bytes: u64,
}

impl StepBudget {
    /// Defaults for a step when the manifest says nothing: about a second of CPU, 30 s of
    /// wall time, 64 MiB, 32 tool calls, 1 MiB of output, 10,000 clock and random reads,
    /// 64 KiB of secure random, 32 HTTP requests reading at most 8 MiB of responses, and
    /// 16 model calls.
    pub const DEFAULT: StepBudget = StepBudget {
        fuel: 10_000_000_000,
        wall_time: Duration::from_secs(30),
        memory: 64 << 20,
        tool_calls: 32,
        output: 1 << 20,
        host_reads: 10_000,
        random_bytes: 64 << 10,
        http_requests: 32,
        http_bytes: 8 << 20,
        model_calls: 16,
    };

    /// Fills `spec`'s gaps from the defaults.
    pub fn from_spec(spec: &BudgetSpec) -> StepBudget {
        let d = Self::DEFAULT;
        StepBudget {
            fuel: spec.fuel.unwrap_or(d.fuel),
            wall_time: spec.wall_time.unwrap_or(d.wall_time),
            memory: spec.memory.unwrap_or(d.memory),
            tool_calls: spec.tool_calls.unwrap_or(d.tool_calls),
            output: spec.output.unwrap_or(d.output),
            host_reads: spec.host_reads.unwrap_or(d.host_reads),
            random_bytes: spec.random_bytes.unwrap_or(d.random_bytes),
            http_requests: spec.http_requests.unwrap_or(d.http_requests),
            http_bytes: spec.http_bytes.unwrap_or(d.http_bytes),
            model_calls: spec.model_calls.unwrap_or(d.model_calls),
        }
    }
}

impl ToolBudget {
    /// Defaults for a tool call: a fifth of a step's CPU and 10 s of wall time.
    pub const DEFAULT: ToolBudget = ToolBudget {
        fuel: 2_000_000_000,
        wall_time: Duration::from_secs(10),
        memory: 64 << 20,
        output: 1 << 20,
        http_requests: StepBudget::DEFAULT.http_requests,
        http_bytes: StepBudget::DEFAULT.http_bytes,
    };

    /// Fills `spec`'s gaps from the defaults.
    pub fn from_spec(spec: &BudgetSpec) -> ToolBudget {
        let d = Self::DEFAULT;
        ToolBudget {
            fuel: spec.fuel.unwrap_or(d.fuel),
            wall_time: spec.wall_time.unwrap_or(d.wall_time),
            memory: spec.memory.unwrap_or(d.memory),
            output: spec.output.unwrap_or(d.output),
            http_requests: spec.http_requests.unwrap_or(d.http_requests),
            http_bytes: spec.http_bytes.unwrap_or(d.http_bytes),
        }
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
