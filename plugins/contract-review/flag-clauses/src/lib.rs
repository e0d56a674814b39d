//! Contract review, step 2: flag risky clauses. Input: the summary with its clauses.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

/// Patterns, their risk weight and why they matter.
const RISKS: &[(&str, f64, &str)] = &[
    ("unlimited liability", 0.5, "liability is not capped"),
    ("indemnify", 0.2, "we carry the other side's losses"),
    ("automatically renew", 0.2, "renews without a decision"),
    ("without notice", 0.3, "can be ended or changed without notice"),
    ("exclusive", 0.2, "exclusivity limits other deals"),
];

struct Flag;

impl Step for Flag {
    type Input = Value;
    type Output = Value;

    fn run(s: Value) -> Result<Value, Failure> {
        let clauses = s["clauses"].as_array().ok_or_else(|| Failure::invalid_input("no `clauses` list"))?;
        let mut flags = Vec::new();
        let mut score: f64 = 0.0;
        for c in clauses {
            let text = c["text"].as_str().unwrap_or_default().to_lowercase();
            for (pattern, weight, why) in RISKS {
                if text.contains(pattern) {
                    flags.push(json!({"clause": c["id"], "heading": c["heading"], "risk": if *weight >= 0.3 { "high" } else { "medium" }, "reason": why}));
                    score += weight;
                }
            }
        }
        tether_sdk::info(&format!("{} clause(s) flagged", flags.len()));
        Ok(json!({"title": s["title"], "summary": s["summary"], "flags": flags, "risk": (score.min(1.0) * 100.0).round() / 100.0}))
    }
}

tether_sdk::export_step!(Flag);
