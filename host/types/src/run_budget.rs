//! Run budgets: totals across every step and tool of a run (fuel, active wall time, tool
//! calls, and any reported usage metric such as tokens). Exhausting one pauses the run
//! (resumable) instead of failing it; `tether resume RUN --budget METRIC=+N` raises it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A run budget. Absent limits are unlimited.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBudget {
    /// Fuel of all steps and tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall time spent running attempts (waits for retries are not counted).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_ms")]
    pub wall_time: Option<Duration>,
    /// Tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<u64>,
    /// Outbound HTTP requests, of steps and tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_requests: Option<u64>,
    /// Bytes of HTTP response bodies, of steps and tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_bytes: Option<u64>,
    /// Reported usage, per metric (for example `tokens`, `cost_usd`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, f64>,
}

/// What a run has consumed so far (folded from its journal).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunUsage {
    /// Fuel of steps and tools.
    pub fuel: u64,
    /// Microseconds spent in attempts.
    pub wall_us: u64,
    /// Tool calls made.
    pub tool_calls: u64,
    /// Outbound HTTP requests made.
    #[serde(default)]
    pub http_requests: u64,
    /// Bytes of HTTP response bodies read.
    #[serde(default)]
    pub http_bytes: u64,
    /// Reported usage per metric.
    pub usage: BTreeMap<String, f64>,
}

impl RunUsage {
    /// Adds one attempt's consumption.
    pub fn add(&mut self, stats: &crate::report::StepStats) {
        self.fuel = self.fuel.saturating_add(stats.total_fuel());
        self.wall_us = self.wall_us.saturating_add(stats.wall_us);
        self.tool_calls += stats.tool_calls.len() as u64;
        for (m, a) in &stats.usage {
            *self.usage.entry(m.clone()).or_default() += a;
        }
    }
}

/// What is left of a run budget; `None` is unlimited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Remaining {
    /// Fuel.
    pub fuel: Option<u64>,
    /// Wall time.
    pub wall_time: Option<Duration>,
    /// Tool calls.
    pub tool_calls: Option<u64>,
    /// HTTP requests.
    pub http_requests: Option<u64>,
    /// HTTP response bytes.
    pub http_bytes: Option<u64>,
    /// Usage per metric.
    pub usage: BTreeMap<String, f64>,
}

impl Remaining {
    /// One of `n` equal shares (rounded up, so a share of something left is never
    /// nothing): what each of `n` attempts starting together may take.
    pub fn share(&self, n: usize) -> Remaining {
        let n = n.max(1) as u64;
        Remaining {
            fuel: self.fuel.map(|f| f.div_ceil(n)),
            wall_time: self.wall_time.map(|w| Duration::from_micros((w.as_micros() as u64).div_ceil(n))),
            tool_calls: self.tool_calls.map(|t| t.div_ceil(n)),
            http_requests: self.http_requests.map(|h| h.div_ceil(n)),
            http_bytes: self.http_bytes.map(|h| h.div_ceil(n)),
            usage: self.usage.iter().map(|(m, a)| (m.clone(), a / n as f64)).collect(),
        }
    }
}

/// The first limit that is used up: (what, used, limit).
pub type Exhausted = (String, f64, f64);

impl RunBudget {
    /// This budget raised by `raises` (metric name to amount; `fuel`, `wall_time` in ms,
    /// `tool_calls`, or a usage metric).
    pub fn raised(&self, raises: &BTreeMap<String, f64>) -> RunBudget {
        let mut b = self.clone();
        for (metric, by) in raises {
            match metric.as_str() {
                "fuel" => b.fuel = b.fuel.map(|f| f.saturating_add(*by as u64)),
                "wall_time" => b.wall_time = b.wall_time.map(|w| w + Duration::from_millis(*by as u64)),
                "tool_calls" => b.tool_calls = b.tool_calls.map(|t| t.saturating_add(*by as u64)),
                "http_requests" => b.http_requests = b.http_requests.map(|h| h.saturating_add(*by as u64)),
                "http_bytes" => b.http_bytes = b.http_bytes.map(|h| h.saturating_add(*by as u64)),
                other => {
                    if let Some(limit) = b.usage.get_mut(other) {
                        // Saturating, like the counts above: raises never make a limit
                        // infinite (which JSON cannot show).
                        *limit = (*limit + by).min(f64::MAX);
                    }
                }
            }
        }
        b
    }

    /// What is left after `used`, or the first limit already used up.
    pub fn remaining(&self, used: &RunUsage) -> Result<Remaining, Exhausted> {
        if let Some(f) = self.fuel {
            if used.fuel >= f {
                return Err(("fuel".into(), used.fuel as f64, f as f64));
            }
        }
        if let Some(w) = self.wall_time {
            if used.wall_us >= w.as_micros() as u64 {
                return Err(("wall_time".into(), used.wall_us as f64 / 1e3, w.as_millis() as f64));
            }
        }
        if let Some(t) = self.tool_calls {
            if used.tool_calls >= t {
                return Err(("tool_calls".into(), used.tool_calls as f64, t as f64));
            }
        }
        if let Some(h) = self.http_requests {
            if used.http_requests >= h {
                return Err(("http_requests".into(), used.http_requests as f64, h as f64));
            }
        }
        if let Some(h) = self.http_bytes {
            if used.http_bytes >= h {
                return Err(("http_bytes".into(), used.http_bytes as f64, h as f64));
            }
        }
        let mut usage = BTreeMap::new();
        for (metric, limit) in &self.usage {
            let u = used.usage.get(metric).copied().unwrap_or(0.0);
            if u >= *limit {
                return Err((metric.clone(), u, *limit));
            }
            usage.insert(metric.clone(), limit - u);
        }
        Ok(Remaining {
            fuel: self.fuel.map(|f| f - used.fuel),
            wall_time: self.wall_time.map(|w| w - Duration::from_micros(used.wall_us)),
            tool_calls: self.tool_calls.map(|t| t - used.tool_calls),
            http_requests: self.http_requests.map(|h| h - used.http_requests),
            http_bytes: self.http_bytes.map(|h| h - used.http_bytes),
            usage,
        })
    }

    /// Names a budget can be raised by.
    pub fn raisable(&self, metric: &str) -> bool {
        match metric {
            "fuel" => self.fuel.is_some(),
            "wall_time" => self.wall_time.is_some(),
            "tool_calls" => self.tool_calls.is_some(),
            "http_requests" => self.http_requests.is_some(),
            "http_bytes" => self.http_bytes.is_some(),
            other => self.usage.contains_key(other),
        }
    }
}

mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Which of an attempt's limits were clipped by the run's budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capped {
    /// Fuel.
    pub fuel: bool,
    /// Wall time.
    pub wall_time: bool,
    /// Tool calls.
    pub tool_calls: bool,
    /// HTTP requests.
    pub http_requests: bool,
    /// HTTP response bytes (running out refuses an answer; it never ends the attempt).
    pub http_bytes: bool,
}

impl Capped {
    /// Whether any limit was clipped.
    pub fn any(&self) -> bool {
        self.fuel || self.wall_time || self.tool_calls || self.http_requests || self.http_bytes
    }

    /// Whether this failure is the run's budget running out rather than the step's.
    pub fn explains(&self, f: &crate::StepFailure) -> bool {
        match f.class {
            crate::FailureClass::RunBudgetExceeded => true,
            crate::FailureClass::FuelExhausted => self.fuel,
            crate::FailureClass::TimedOut => self.wall_time,
            crate::FailureClass::ToolBudgetExceeded => self.tool_calls,
            crate::FailureClass::HttpBudgetExceeded => self.http_requests,
            _ => false,
        }
    }

    /// What ran out, as a run budget's name, for a failure this explains.
    pub fn name(&self, f: &crate::StepFailure) -> (String, f64, f64) {
        let what = match f.class {
            crate::FailureClass::FuelExhausted => "fuel",
            crate::FailureClass::TimedOut => "wall_time",
            crate::FailureClass::ToolBudgetExceeded => "tool_calls",
            crate::FailureClass::HttpBudgetExceeded => "http_requests",
            _ => "usage",
        };
        (what.to_string(), 0.0, 0.0)
    }
}

/// Whether a fresh attempt may start now, decided from the run's budget alone.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// It starts with its step's budget clipped to its share of what the run has left.
    Start(AttemptLimits),
    /// Nothing is left and no running attempt holds any of it: the run pauses.
    Pause(Exhausted),
    /// What is left is held by running attempts: ask again once one ends.
    Wait,
}

impl RunBudget {
    /// Admits a fresh attempt of a step with budget `step`, one of `sharing` starting
    /// together, when the run has `committed` (used, plus what running attempts hold);
    /// `others_hold`: some attempts are running.
    pub fn admit(&self, committed: &RunUsage, others_hold: bool, step: crate::StepBudget, sharing: usize) -> Admission {
        match self.remaining(committed) {
            Ok(remaining) => Admission::Start(AttemptLimits::clip(step, &remaining.share(sharing))),
            Err(exhausted) if !others_hold => Admission::Pause(exhausted),
            Err(_) => Admission::Wait,
        }
    }
}

/// An attempt's effective limits.
#[derive(Debug, PartialEq)]
pub struct AttemptLimits {
    /// The step's budget, clipped.
    pub budget: crate::StepBudget,
    /// Usage the attempt may report, per metric, before the run's budget runs out.
    pub usage: BTreeMap<String, f64>,
    /// Which limits the run's budget clipped.
    pub capped: Capped,
}

impl AttemptLimits {
    /// The step's budget, clipped to what the run has left.
    pub fn clip(mut budget: crate::StepBudget, remaining: &Remaining) -> AttemptLimits {
        let mut capped = Capped::default();
        if let Some(f) = remaining.fuel.filter(|f| *f < budget.fuel) {
            budget.fuel = f;
            capped.fuel = true;
        }
        if let Some(w) = remaining.wall_time.filter(|w| *w < budget.wall_time) {
            budget.wall_time = w;
            capped.wall_time = true;
        }
        if let Some(t) = remaining.tool_calls.filter(|t| *t < u64::from(budget.tool_calls)) {
            budget.tool_calls = t as u32;
            capped.tool_calls = true;
        }
        if let Some(h) = remaining.http_requests.filter(|h| *h < u64::from(budget.http_requests)) {
            budget.http_requests = h as u32;
            capped.http_requests = true;
        }
        // A response larger than what is left is refused to the guest, not cut; the run
        // pauses when an attempt would start with nothing left.
        if let Some(h) = remaining.http_bytes.filter(|h| *h < budget.http_bytes) {
            budget.http_bytes = h;
            capped.http_bytes = true;
        }
        AttemptLimits { budget, usage: remaining.usage.clone(), capped }
    }

    /// The most the attempt can take from the run's budget.
    pub fn reservation(&self) -> RunUsage {
        RunUsage {
            fuel: self.budget.fuel,
            wall_us: self.budget.wall_time.as_micros() as u64,
            tool_calls: u64::from(self.budget.tool_calls),
            http_requests: u64::from(self.budget.http_requests),
            http_bytes: self.budget.http_bytes,
            usage: self.usage.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_starts_with_its_share_pauses_the_run_or_waits_for_the_others() {
        let budget = RunBudget { fuel: Some(1_000), ..RunBudget::default() };
        let step = crate::StepBudget { fuel: 800, ..crate::StepBudget::DEFAULT };
        let used = |fuel| RunUsage { fuel, ..RunUsage::default() };
        // Alone with 1000 left: the step's own 800.
        match budget.admit(&used(0), false, step, 1) {
            Admission::Start(l) => assert_eq!((l.budget.fuel, l.capped.fuel), (800, false)),
            other => panic!("{other:?}"),
        }
        // Two starting together with 600 left: 300 each, clipped.
        match budget.admit(&used(400), false, step, 2) {
            Admission::Start(l) => assert_eq!((l.budget.fuel, l.capped.fuel), (300, true)),
            other => panic!("{other:?}"),
        }
        // Nothing left: the run pauses, naming what ran out, unless others hold it.
        assert_eq!(budget.admit(&used(1_000), false, step, 1), Admission::Pause(("fuel".into(), 1_000.0, 1_000.0)));
        assert_eq!(budget.admit(&used(1_000), true, step, 1), Admission::Wait);
        // An unlimited run never pauses.
        assert!(matches!(RunBudget::default().admit(&used(u64::MAX), false, step, 3), Admission::Start(_)));
    }

    #[test]
    fn remaining_names_the_first_exhausted_limit_and_raises_add_up() {
        let b =
            RunBudget { tool_calls: Some(5), usage: [("tokens".to_string(), 100.0)].into(), ..RunBudget::default() };
        let mut used = RunUsage { tool_calls: 2, ..RunUsage::default() };
        used.usage.insert("tokens".into(), 40.0);
        let r = b.remaining(&used).unwrap();
        assert_eq!((r.tool_calls, r.usage["tokens"]), (Some(3), 60.0));
        used.usage.insert("tokens".into(), 100.0);
        assert_eq!(b.remaining(&used).unwrap_err(), ("tokens".to_string(), 100.0, 100.0));
        let raised = b.raised(&[("tokens".to_string(), 50.0)].into());
        assert_eq!(raised.remaining(&used).unwrap().usage["tokens"], 50.0);
        assert!(raised.raisable("tokens") && !raised.raisable("fuel"));
    }

    #[test]
    fn an_attempt_is_clipped_to_what_the_run_has_left_and_knows_which_limit_it_was() {
        let step = crate::StepBudget::DEFAULT;
        let remaining = Remaining { fuel: Some(1_000), tool_calls: Some(100), ..Remaining::default() };
        let limits = AttemptLimits::clip(step, &remaining);
        assert_eq!(limits.budget.fuel, 1_000);
        assert_eq!(limits.budget.tool_calls, step.tool_calls, "more is left than the step may use");
        assert!(limits.capped.fuel && !limits.capped.tool_calls && limits.capped.any());
        let out_of_fuel = crate::StepFailure::new(crate::FailureClass::FuelExhausted, "x");
        assert!(limits.capped.explains(&out_of_fuel));
        assert_eq!(limits.capped.name(&out_of_fuel).0, "fuel");
        let timed_out = crate::StepFailure::new(crate::FailureClass::TimedOut, "x");
        assert!(!limits.capped.explains(&timed_out), "the step's own wall time ran out");
        assert_eq!(limits.reservation().fuel, 1_000);
    }

    #[test]
    fn raises_saturate_instead_of_making_a_limit_infinite() {
        let huge = RunBudget { usage: [("tokens".to_string(), f64::MAX)].into(), ..RunBudget::default() };
        let raised = huge.raised(&[("tokens".to_string(), f64::MAX)].into());
        assert_eq!(raised.usage["tokens"], f64::MAX);
    }
}
