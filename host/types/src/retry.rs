//! Retries by failure class. A step's policy says how many attempts it gets, how long to
//! wait between them, and which failure classes are worth another attempt. Budget
//! exhaustion, denials and invalid input are never retried: another attempt would fail
//! the same way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::failure::{FailureClass, GuestFailureKind, StepFailure};

/// What may be retried, as written in `on = [...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The component trapped.
    Trap,
    /// The attempt ran out of wall time.
    TimedOut,
    /// The component returned a failure of kind `transient`.
    Transient,
    /// The component returned any failure of its own (except `denied`).
    GuestError,
    /// The component returned something that is not JSON.
    InvalidOutput,
    /// The host could not create the sandbox.
    HostFault,
}

impl RetryOn {
    /// Parses a name, or says why it cannot be retried.
    pub fn parse(name: &str) -> Result<RetryOn, String> {
        Ok(match name {
            "trap" => RetryOn::Trap,
            "timed_out" => RetryOn::TimedOut,
            "transient" => RetryOn::Transient,
            "guest_error" => RetryOn::GuestError,
            "invalid_output" => RetryOn::InvalidOutput,
            "host_fault" => RetryOn::HostFault,
            "denied" | "fuel_exhausted" | "memory_exceeded" | "tool_budget_exceeded" | "host_reads_exceeded"
            | "http_budget_exceeded" | "model_budget_exceeded" | "in_doubt" | "output_too_large" | "invalid_input" => {
                return Err(format!("`{name}` is never retried: another attempt would fail the same way"))
            }
            other => {
                return Err(format!(
                    "unknown failure class `{other}`; retry accepts trap, timed_out, transient, guest_error, invalid_output, host_fault"
                ))
            }
        })
    }

    fn matches(self, f: &StepFailure) -> bool {
        match self {
            RetryOn::Trap => f.class == FailureClass::Trap,
            RetryOn::TimedOut => f.class == FailureClass::TimedOut,
            RetryOn::Transient => {
                f.class == FailureClass::GuestError && f.guest_kind == Some(GuestFailureKind::Transient)
            }
            RetryOn::GuestError => f.class == FailureClass::GuestError,
            RetryOn::InvalidOutput => f.class == FailureClass::InvalidOutput,
            RetryOn::HostFault => f.class == FailureClass::HostFault,
        }
    }
}

/// A step's retry policy, complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, including the first. 1 means no retry.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    #[serde(with = "ms")]
    pub initial_backoff: Duration,
    /// Each further wait is the previous one times this.
    pub multiplier: f64,
    /// No wait is longer than this.
    #[serde(with = "ms")]
    pub max_backoff: Duration,
    /// Each wait is randomly shortened by up to this fraction (0 to 1), so that many
    /// failing runs do not retry in lockstep.
    pub jitter: f64,
    /// The failures that are retried.
    pub on: Vec<RetryOn>,
}

impl Default for RetryPolicy {
    /// No retries; if `max_attempts` is raised, traps, timeouts and transient guest
    /// errors are retried after 100 ms, 200 ms, 400 ms ... up to 30 s, with 10% jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(30),
            jitter: 0.1,
            on: vec![RetryOn::Trap, RetryOn::TimedOut, RetryOn::Transient],
        }
    }
}

impl RetryPolicy {
    /// Whether `failure` after attempt `attempt` (from 1) gets another attempt.
    pub fn retries(&self, failure: &StepFailure, attempt: u32) -> bool {
        attempt < self.max_attempts && self.on.iter().any(|o| o.matches(failure))
    }

    /// The wait after attempt `attempt` of step `key` in run `run`, jitter included. The
    /// jitter is drawn from the run, the step and the attempt, not from a random source: the
    /// same failure waits the same on every host, and a replay can tell what was decided.
    pub fn backoff_for(&self, run: &str, key: &str, attempt: u32) -> Duration {
        self.backoff(attempt, jitter_unit(run, key, attempt))
    }

    /// The wait after attempt `attempt` (from 1), before jitter; `unit` in [0, 1) picks
    /// how much jitter takes off.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self.multiplier.max(1.0).powi(attempt.saturating_sub(1) as i32);
        let base = (self.initial_backoff.as_secs_f64() * exp).min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(base * (1.0 - self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0)))
    }
}

/// A number in [0, 1) fixed by the run, the step's key and the attempt.
pub fn jitter_unit(run: &str, key: &str, attempt: u32) -> f64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{run}/{key}/{attempt}").as_bytes());
    let bits = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    // The top 53 bits, as an f64 in [0, 1).
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A retry policy as written in a manifest; unset fields come from `[defaults]` and then
/// from [`RetryPolicy::default`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all.
    pub max_attempts: Option<u32>,
    /// First wait.
    #[serde(default, deserialize_with = "crate::units::duration")]
    pub initial_backoff: Option<Duration>,
    /// Growth of the wait.
    pub multiplier: Option<f64>,
    /// Longest wait.
    #[serde(default, deserialize_with = "crate::units::duration")]
    pub max_backoff: Option<Duration>,
    /// Jitter fraction.
    pub jitter: Option<f64>,
    /// Classes to retry.
    pub on: Option<Vec<String>>,
}

impl RetrySpec {
    /// This spec over `under`, then the defaults; `Err` lists what is invalid.
    pub fn resolve(&self, under: &RetrySpec) -> Result<RetryPolicy, Vec<String>> {
        let d = RetryPolicy::default();
        let mut errors = Vec::new();
        let max_attempts = self.max_attempts.or(under.max_attempts).unwrap_or(d.max_attempts);
        if max_attempts == 0 || max_attempts > 100 {
            errors.push(format!("retry `max_attempts` must be 1 to 100, not {max_attempts}"));
        }
        let multiplier = self.multiplier.or(under.multiplier).unwrap_or(d.multiplier);
        if !(1.0..=10.0).contains(&multiplier) {
            errors.push(format!("retry `multiplier` must be 1 to 10, not {multiplier}"));
        }
        let jitter = self.jitter.or(under.jitter).unwrap_or(d.jitter);
        if !(0.0..=1.0).contains(&jitter) {
            errors.push(format!("retry `jitter` must be 0 to 1, not {jitter}"));
        }
        let on = match self.on.as_ref().or(under.on.as_ref()) {
            None => d.on,
            Some(names) => names.iter().filter_map(|n| RetryOn::parse(n).map_err(|e| errors.push(e)).ok()).collect(),
        };
        let policy = RetryPolicy {
            max_attempts,
            initial_backoff: self.initial_backoff.or(under.initial_backoff).unwrap_or(d.initial_backoff),
            multiplier,
            max_backoff: self.max_backoff.or(under.max_backoff).unwrap_or(d.max_backoff),
            jitter,
            on,
        };
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }
}

mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_fixed_by_run_step_and_attempt() {
        let a = jitter_unit("run_1", "pay", 1);
        assert_eq!(a, jitter_unit("run_1", "pay", 1));
        let others = [jitter_unit("run_1", "pay", 2), jitter_unit("run_2", "pay", 1), jitter_unit("run_1", "ship", 1)];
        assert!(others.iter().all(|o| *o != a), "{a} {others:?}");
        assert!((0..1000).map(|k| jitter_unit("r", "s", k)).all(|u| (0.0..1.0).contains(&u)));
        let p = RetryPolicy { jitter: 0.5, ..RetryPolicy::default() };
        assert_eq!(p.backoff_for("run_1", "pay", 1), p.backoff(1, a));
    }

    fn failure(class: FailureClass, kind: Option<GuestFailureKind>) -> StepFailure {
        StepFailure { class, message: String::new(), guest_kind: kind }
    }

    #[test]
    fn only_retryable_classes_are_retried_and_only_up_to_max_attempts() {
        let p = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        assert!(p.retries(&failure(FailureClass::Trap, None), 1));
        assert!(p.retries(&failure(FailureClass::GuestError, Some(GuestFailureKind::Transient)), 2));
        assert!(!p.retries(&failure(FailureClass::Trap, None), 3), "third attempt was the last");
        assert!(!p.retries(&failure(FailureClass::GuestError, Some(GuestFailureKind::Internal)), 1));
        assert!(!p.retries(&failure(FailureClass::Denied, Some(GuestFailureKind::Denied)), 1));
        assert!(!p.retries(&failure(FailureClass::FuelExhausted, None), 1));
    }

    #[test]
    fn backoff_grows_caps_and_jitters_down() {
        let p = RetryPolicy { max_backoff: Duration::from_millis(300), ..RetryPolicy::default() };
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(300), "capped");
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(190), "10% jitter at most");
    }

    #[test]
    fn never_retried_classes_are_refused_by_name() {
        let spec = RetrySpec { on: Some(vec!["trap".into(), "denied".into(), "bogus".into()]), ..RetrySpec::default() };
        let errors = spec.resolve(&RetrySpec::default()).unwrap_err();
        assert!(errors[0].contains("`denied` is never retried"));
        assert!(errors[1].contains("unknown failure class `bogus`"));
    }
}
