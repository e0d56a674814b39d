//! Support triage, outage branch: page the on-call team instead of drafting a routine
//! reply. A deterministic stand-in; a real one would call a paging tool.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

struct Escalate;

impl Step for Escalate {
    type Input = Value;
    type Output = Value;

    fn run(t: Value) -> Result<Value, Failure> {
        let from = t["from"].as_str().ok_or_else(|| Failure::invalid_input("the ticket has no `from`"))?;
        let subject = t["subject"].as_str().unwrap_or("your report");
        let team = if t["urgency"] == "high" { "oncall-primary" } else { "oncall-secondary" };
        tether_sdk::warn(&format!("paging {team} for an outage reported by {from}"));
        let body = format!(
            "Hello,\n\nThank you for reporting \"{subject}\". Our on-call engineers have been paged and are investigating now.\n\nKind regards,\nSupport"
        );
        tether_sdk::report_usage("tokens", body.split_whitespace().count() as f64);
        Ok(json!({"to": from, "subject": format!("Re: {subject}"), "body": body, "category": t["category"], "priority": "p1", "paged": team}))
    }
}

tether_sdk::export_step!(Escalate);
