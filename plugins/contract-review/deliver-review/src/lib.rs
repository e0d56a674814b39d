//! Contract review, step 3: write the review for the requester.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

struct Deliver;

impl Step for Deliver {
    type Input = Value;
    type Output = Value;

    fn run(r: Value) -> Result<Value, Failure> {
        let to = r["to"].as_str().ok_or_else(|| Failure::invalid_input("no `to` address"))?;
        let flags = r["review"]["flags"].as_array().cloned().unwrap_or_default();
        let mut body = format!("Review of {}\n\n{}\n\n", r["review"]["title"].as_str().unwrap_or("the contract"), r["review"]["summary"].as_str().unwrap_or_default());
        if flags.is_empty() {
            body.push_str("No risky clauses found.\n");
        }
        for f in &flags {
            body.push_str(&format!("- clause {} ({}): {} [{}]\n", f["clause"], f["heading"].as_str().unwrap_or(""), f["reason"].as_str().unwrap_or(""), f["risk"].as_str().unwrap_or("")));
        }
        let verdict = if r["review"]["risk"].as_f64().unwrap_or(0.0) >= 0.5 { "needs legal sign-off" } else { "ok to sign" };
        body.push_str(&format!("\nVerdict: {verdict}\n"));
        Ok(json!({"to": to, "subject": format!("Contract review: {verdict}"), "body": body, "verdict": verdict, "flags": flags.len()}))
    }
}

tether_sdk::export_step!(Deliver);
