//! Support agent: a model reads a ticket and decides what to do with three tools: look
//! the customer up, search the knowledge base, and pay a refund (behind an approval gate
//! in the policy). Every tool call goes through the host, so grants, rules, the gate and
//! budgets apply to each; every model turn is journaled.

use serde::Deserialize;
use serde_json::{json, Value};
use tether_sdk::agent::Agent;
use tether_sdk::{Failure, Step};

const SYSTEM: &str = "You are a support agent. Read the ticket. Look the customer up by email, \
search the knowledge base for the relevant policy, and follow it. Pay a refund with the payments \
tool only when the policy allows it (order id and amount from the ticket). Finish with the reply \
to send the customer, in two or three sentences.";

#[derive(Deserialize)]
struct Ticket {
    email: String,
    message: String,
}

struct SupportAgent;

impl Step for SupportAgent {
    type Input = Ticket;
    type Output = Value;

    fn run(ticket: Ticket) -> Result<Value, Failure> {
        let outcome = Agent::new(SYSTEM)
            .tools(&["customer-lookup", "kb-search", "payments"])
            .max_turns(8)
            .run(&format!("From: {}\n\n{}", ticket.email, ticket.message))?;
        tether_sdk::info(&format!("answered after {} model turns", outcome.turns));
        let actions: Vec<Value> = outcome.calls.iter().map(|(tool, ok)| json!({"tool": tool, "ok": ok})).collect();
        Ok(json!({ "reply": outcome.answer, "actions": actions }))
    }
}

tether_sdk::export_step!(SupportAgent);
