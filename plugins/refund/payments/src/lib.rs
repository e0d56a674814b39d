//! A payments tool with an external effect: it pays a refund at most once per
//! idempotency key, recording it in `/ledger/refunds.log` when it is granted that
//! directory (read-write). The payment provider's URL comes from `PAYMENTS_URL`.

use std::io::Write;

use serde::{Deserialize, Serialize};
use tether_sdk::{Descriptor, Effect, Failure, Tool};

#[derive(Deserialize)]
struct Input {
    order_id: String,
    amount: f64,
}

#[derive(Serialize)]
struct Payment {
    payment_id: String,
    order_id: String,
    amount: f64,
    provider: String,
}

struct Payments;

impl Tool for Payments {
    type Input = Input;
    type Output = Payment;

    fn describe() -> Descriptor {
        Descriptor::new("payments", "Pays a refund to the customer's original payment method.", Effect::External)
    }

    fn call(input: Input) -> Result<Payment, Failure> {
        let key = tether_sdk::idempotency_key();
        let provider = std::env::var("PAYMENTS_URL").unwrap_or_else(|_| "unconfigured".into());
        let line = format!("{key}\t{}\t{}\n", input.order_id, input.amount);
        let mut ledger = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open("/ledger/refunds.log")
            .map_err(|e| Failure::internal(format!("cannot open the ledger /ledger/refunds.log: {e}")))?;
        ledger.write_all(line.as_bytes()).map_err(|e| Failure::internal(format!("cannot write the ledger: {e}")))?;
        let id: u32 = key.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        Ok(Payment { payment_id: format!("pay-{id:08x}"), order_id: input.order_id, amount: input.amount, provider })
    }
}

tether_sdk::export_tool!(Payments);
