//! The support-triage demo: classify, look up the customer with a tool, draft a reply.

use serde_json::json;
use tether_types::{LogLevel, RunStatus};

use crate::support::{run, workflow};

const TRIAGE: &str = r#"
name = "support-triage"
[tools.customer-lookup]
component = "{lookup}"
[[steps]]
name = "classify"
component = "{classify}"
[[steps]]
name = "draft-reply"
component = "{draft}"
tools = ["customer-lookup"]
"#;

#[test]
fn a_known_customer_gets_a_personal_prioritised_reply() {
    let r = run(
        &workflow(TRIAGE),
        json!({"from": "ada@example.com", "subject": "Charged twice", "body": "Please refund the duplicate payment ASAP"}),
    );
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    let o = &r.output;
    assert_eq!(o["to"], "ada@example.com");
    assert_eq!(o["category"], "billing");
    assert_eq!(o["priority"], "p1");
    assert_eq!(o["customer_plan"], "enterprise");
    assert!(o["body"].as_str().unwrap().starts_with("Hello Ada,"));
    assert_eq!(r.steps.len(), 2);
    assert_eq!(r.steps[1].stats.tool_calls[0].tool, "customer-lookup");
    assert!(r.totals.usage["tokens"] > 0.0);
    let tool_log = r.steps[1].stats.logs.iter().find(|l| l.message == "looking up ada@example.com").unwrap();
    assert_eq!(tool_log.tool.as_deref(), Some("customer-lookup"), "tool log lines name their tool");
}

#[test]
fn an_unknown_sender_gets_a_generic_reply_and_a_warning() {
    let r = run(
        &workflow(TRIAGE),
        json!({"from": "nobody@example.net", "subject": "Idea", "body": "It would be nice to export reports"}),
    );
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(r.output["category"], "feature-request");
    assert_eq!(r.output["customer_plan"], serde_json::Value::Null);
    assert_eq!(r.output["priority"], "p3");
    let draft = &r.steps[1].stats;
    assert_eq!(draft.tool_calls[0].outcome, "guest_error", "the tool returned not-found");
    assert!(draft.logs.iter().any(|l| l.level == LogLevel::Warn && l.message.contains("no customer record")));
}

#[test]
fn an_empty_ticket_fails_classify_with_the_guests_reason() {
    let r = run(&workflow(TRIAGE), json!({"from": "ada@example.com", "subject": "x", "body": "  "}));
    let e = r.error.unwrap();
    assert_eq!((e.step.as_str(), e.message.as_str()), ("classify", "the ticket body is empty"));
    assert_eq!(r.steps.len(), 1, "the run stops at the first failure");
}
