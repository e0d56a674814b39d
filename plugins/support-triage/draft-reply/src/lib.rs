//! Support triage, step 2: look up the customer with the `customer-lookup` tool and draft
//! a reply that fits the category, the urgency and the customer's plan.

use serde::{Deserialize, Serialize};
use tether_sdk::{Failure, FailureKind, Step};

#[derive(Deserialize)]
struct Classified {
    from: String,
    subject: String,
    category: String,
    urgency: String,
}

#[derive(Serialize)]
struct Lookup<'a> {
    email: &'a str,
}

#[derive(Deserialize)]
struct Customer {
    name: String,
    plan: String,
    open_tickets: u32,
}

#[derive(Serialize)]
struct Draft {
    to: String,
    subject: String,
    body: String,
    category: String,
    priority: &'static str,
    customer_plan: Option<String>,
}

struct DraftReply;

impl Step for DraftReply {
    type Input = Classified;
    type Output = Draft;

    fn run(c: Classified) -> Result<Draft, Failure> {
        let customer = match tether_sdk::call_tool::<_, Customer>("customer-lookup", &Lookup { email: &c.from }) {
            Ok(customer) => Some(customer),
            // An unknown sender still gets a reply, just not a personal one.
            Err(f) if f.kind == FailureKind::NotFound => {
                tether_sdk::warn(&format!("no customer record for {}", c.from));
                None
            }
            Err(f) => return Err(f),
        };
        let greeting = customer.as_ref().map_or("Hello".to_string(), |c| format!("Hello {}", c.name));
        let plan = customer.as_ref().map(|c| c.plan.clone());
        let priority = match (c.urgency.as_str(), plan.as_deref()) {
            ("high", _) | (_, Some("enterprise")) => "p1",
            _ if customer.as_ref().is_some_and(|c| c.open_tickets > 2) => "p2",
            _ => "p3",
        };
        let promise = match c.category.as_str() {
            "billing" => "Our billing team is reviewing the charge and will confirm any refund within one business day.",
            "outage" => "Our engineers are investigating the disruption now; we will update you as soon as it is resolved.",
            "account" => "For your security we have sent a verification link to the address on file.",
            "feature-request" => "Thank you for the suggestion; we have shared it with the product team.",
            _ => "A member of our team will follow up shortly.",
        };
        let body = format!("{greeting},\n\nThank you for contacting us about \"{}\". {promise}\n\nKind regards,\nSupport", c.subject);
        tether_sdk::report_usage("tokens", body.split_whitespace().count() as f64);
        Ok(Draft {
            to: c.from,
            subject: format!("Re: {}", c.subject),
            body,
            category: c.category,
            priority,
            customer_plan: plan,
        })
    }
}

tether_sdk::export_step!(DraftReply);
