//! A payments tool with an external effect: it pays a refund at most once per
//! idempotency key. It needs the `/ledger` directory granted read-write; the payment
//! provider's URL comes from `PAYMENTS_URL`.
//!
//! The payment's record is `/ledger/keys/<the key in hex>`, made atomically and whole
//! (see `once.rs`): however many calls are made with one key, exactly one pays, and every
//! other call returns the payment recorded there (same `payment_id`). A call whose key was
//! used for another order or amount fails with `invalid-input`. `/ledger/refunds.log` has
//! one line per payment (key, order, amount).

#[path = "../../../common/once.rs"]
mod once;

use serde::{Deserialize, Serialize};
use tether_sdk::{Descriptor, Effect, Failure, Tool};

const LEDGER: &str = "/ledger/refunds.log";

#[derive(Deserialize)]
struct Input {
    order_id: String,
    amount: f64,
}

#[derive(Serialize, Deserialize)]
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
        let id: u32 = key.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let payment =
            Payment { payment_id: format!("pay-{id:08x}"), order_id: input.order_id, amount: input.amount, provider };
        let json = serde_json::to_string(&payment).map_err(|e| Failure::internal(e.to_string()))?;
        let payment = match once::claim("/ledger", &key, &json)? {
            once::Claim::Won => payment,
            once::Claim::Recorded(text) => {
                let recorded: Payment = serde_json::from_str(&text)
                    .map_err(|e| Failure::internal(format!("the payment record for key {key} is damaged: {e}")))?;
                if recorded.order_id != payment.order_id || recorded.amount != payment.amount {
                    return Err(Failure::invalid_input(format!(
                        "idempotency key {key} was already used to pay {} for order {}",
                        recorded.amount, recorded.order_id
                    )));
                }
                tether_sdk::info(&format!("already paid for idempotency key {key}: {}", recorded.payment_id));
                recorded
            }
        };
        once::log_once(LEDGER, &key, &format!("{key}\t{}\t{}\n", payment.order_id, payment.amount))?;
        Ok(payment)
    }
}

tether_sdk::export_tool!(Payments);
