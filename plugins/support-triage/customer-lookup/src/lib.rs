//! A read-only CRM lookup tool: finds a customer by email in a small built-in directory.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_sdk::{Descriptor, Effect, Failure, Tool};

#[derive(Deserialize)]
struct Query {
    email: String,
}

#[derive(Serialize)]
struct Customer {
    name: &'static str,
    plan: &'static str,
    open_tickets: u32,
}

const DIRECTORY: &[(&str, Customer)] = &[
    ("ada@example.com", Customer { name: "Ada", plan: "enterprise", open_tickets: 1 }),
    ("grace@example.com", Customer { name: "Grace", plan: "pro", open_tickets: 3 }),
    ("linus@example.org", Customer { name: "Linus", plan: "free", open_tickets: 0 }),
];

struct CustomerLookup;

impl Tool for CustomerLookup {
    type Input = Query;
    type Output = &'static Customer;

    fn describe() -> Descriptor {
        Descriptor::new("customer-lookup", "Finds a customer record by email address.", Effect::ReadOnly).schemas(
            json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}),
            json!({"type": "object", "properties": {"name": {"type": "string"}, "plan": {"type": "string"}, "open_tickets": {"type": "integer"}}}),
        )
    }

    fn call(q: Query) -> Result<&'static Customer, Failure> {
        let email = q.email.trim().to_lowercase();
        tether_sdk::debug(&format!("looking up {email}"));
        DIRECTORY
            .iter()
            .find(|(e, _)| *e == email)
            .map(|(_, c)| c)
            .ok_or_else(|| Failure::not_found(format!("no customer with email {email}")))
    }
}

tether_sdk::export_tool!(CustomerLookup);
