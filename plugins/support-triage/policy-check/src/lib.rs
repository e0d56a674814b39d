//! Support triage, last step: check a drafted reply against the support policy before it
//! goes out. Passes the draft through with a `policy` verdict added.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

/// Phrases a reply must never contain, with the reason.
const FORBIDDEN: &[(&str, &str)] = &[
    ("guarantee", "no guarantees may be promised"),
    ("we will refund", "refunds are decided by billing, not promised by support"),
    ("password is", "never send credentials"),
];

struct PolicyCheck;

impl Step for PolicyCheck {
    type Input = Value;
    type Output = Value;

    fn run(mut draft: Value) -> Result<Value, Failure> {
        let body = draft["body"].as_str().ok_or_else(|| Failure::invalid_input("the draft has no `body`"))?;
        let lower = body.to_lowercase();
        let mut issues: Vec<&str> = FORBIDDEN.iter().filter(|(p, _)| lower.contains(p)).map(|(_, why)| *why).collect();
        if body.len() > 2000 {
            issues.push("the reply is longer than 2000 characters");
        }
        if !body.contains("Support") {
            issues.push("the reply is not signed by Support");
        }
        tether_sdk::info(&format!("policy check: {} issue(s)", issues.len()));
        draft["policy"] = json!({"passed": issues.is_empty(), "issues": issues});
        Ok(draft)
    }
}

tether_sdk::export_step!(PolicyCheck);
