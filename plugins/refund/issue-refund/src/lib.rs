//! Refund, step 2: issue the (approved) refund through the `payments` tool. A refused
//! payment (denied by policy, or rejected by a human) is handled: the step reports that
//! nothing was paid instead of failing. Reads the `PAYMENTS_API_KEY` environment
//! variable when its identity is granted it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tether_sdk::{Failure, FailureKind, Step};

#[derive(Deserialize)]
struct Approved {
    order_id: String,
    amount: f64,
}

#[derive(Serialize)]
struct Outcome {
    order_id: String,
    amount: f64,
    refunded: bool,
    /// The payment, or why there is none.
    payment: Value,
    /// Whether the API key was granted (its value is never shown).
    key_present: bool,
}

struct IssueRefund;

impl Step for IssueRefund {
    type Input = Approved;
    type Output = Outcome;

    fn run(a: Approved) -> Result<Outcome, Failure> {
        let key = std::env::var("PAYMENTS_API_KEY").ok();
        if let Some(k) = &key {
            // A careless log line: the host redacts the secret before it is recorded.
            tether_sdk::debug(&format!("authorizing with key {k}"));
        }
        let call = tether_sdk::call_tool::<_, Value>("payments", &json!({"order_id": a.order_id, "amount": a.amount}));
        let (refunded, payment) = match call {
            Ok(p) => (true, p),
            Err(f) if f.kind == FailureKind::Denied => {
                tether_sdk::warn(&format!("payment refused: {}", f.message));
                (false, json!({"refused": f.message}))
            }
            Err(f) => return Err(f),
        };
        Ok(Outcome { order_id: a.order_id, amount: a.amount, refunded, payment, key_present: key.is_some() })
    }
}

tether_sdk::export_step!(IssueRefund);
