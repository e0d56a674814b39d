//! A payments tool with an external effect: it pays a refund at most once per
//! idempotency key. It needs the `/ledger` directory granted read-write; the payment
//! provider's URL comes from `PAYMENTS_URL`.
//!
//! The payment's record is the file `/ledger/keys/<the key in hex>`, created with
//! `create_new` (O_CREAT|O_EXCL). However many times a call is made with one key (retries,
//! resumes after the host was killed, two hosts at once), exactly one creates the file,
//! and only that one pays; every other call reads the payment recorded there and returns
//! it (same `payment_id`) without paying again. A call whose key was used for another
//! order or amount fails with `invalid-input`.
//!
//! `/ledger/refunds.log` has one line per payment (key, order, amount), appended by the
//! call that won the key, after it wrote the record. So no key is ever in it twice; a kill
//! between writing the record and appending the line can at worst leave a payment out of
//! it, and the record under `keys/` is what counts. A kill between creating the record and
//! writing it (consecutive calls: a window of microseconds) leaves the key claimed with no
//! payment in it: later calls with the key fail with `internal` rather than pay, because
//! whether the payment was made cannot be known.

use std::io::{ErrorKind, Write};

use serde::{Deserialize, Serialize};
use tether_sdk::{Descriptor, Effect, Failure, Tool};

const LEDGER: &str = "/ledger/refunds.log";
const KEYS: &str = "/ledger/keys";

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

/// The key as a file name: hex, so `/`, `.` and any other byte are safe.
fn file_name(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn io_failure(what: &str, path: &str, e: std::io::Error) -> Failure {
    Failure::internal(format!("cannot {what} {path}: {e}"))
}

/// The payment recorded for `key` by the call that won it.
fn recorded(path: &str, key: &str, input: &Input) -> Result<Payment, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| io_failure("read the payment record", path, e))?;
    // A complete record is one line of JSON, written in one go.
    let Some(payment) = text.strip_suffix('\n').and_then(|t| serde_json::from_str::<Payment>(t).ok()) else {
        return Err(Failure::internal(format!(
            "the payment for idempotency key {key} was started but its record {path} is incomplete (the call was \
             interrupted, or is still running elsewhere); it is not paid again: check with the provider"
        )));
    };
    if payment.order_id != input.order_id || payment.amount != input.amount {
        return Err(Failure::invalid_input(format!(
            "idempotency key {key} was already used to pay {} for order {}",
            payment.amount, payment.order_id
        )));
    }
    tether_sdk::info(&format!("already paid for idempotency key {key}: {}", payment.payment_id));
    Ok(payment)
}

impl Tool for Payments {
    type Input = Input;
    type Output = Payment;

    fn describe() -> Descriptor {
        Descriptor::new("payments", "Pays a refund to the customer's original payment method.", Effect::External)
    }

    fn call(input: Input) -> Result<Payment, Failure> {
        let key = tether_sdk::idempotency_key();
        let mut ledger = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(LEDGER)
            .map_err(|e| io_failure("open the ledger", LEDGER, e))?;
        match std::fs::create_dir(KEYS) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_failure("create", KEYS, e)),
        }
        // The claim: exactly one call per key creates this file.
        let path = format!("{KEYS}/{}", file_name(&key));
        let mut record = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return recorded(&path, &key, &input),
            Err(e) => return Err(io_failure("create the payment record", &path, e)),
        };

        // This call won the key: pay, and record the payment.
        let provider = std::env::var("PAYMENTS_URL").unwrap_or_else(|_| "unconfigured".into());
        let id: u32 = key.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let payment =
            Payment { payment_id: format!("pay-{id:08x}"), order_id: input.order_id, amount: input.amount, provider };
        let json = serde_json::to_string(&payment).map_err(|e| Failure::internal(e.to_string()))? + "\n";
        record.write_all(json.as_bytes()).map_err(|e| io_failure("write", &path, e))?;
        let line = format!("{key}\t{}\t{}\n", payment.order_id, payment.amount);
        ledger.write_all(line.as_bytes()).map_err(|e| io_failure("write", LEDGER, e))?;
        record.sync_all().map_err(|e| io_failure("sync", &path, e))?;
        ledger.sync_all().map_err(|e| io_failure("sync", LEDGER, e))?;
        Ok(payment)
    }
}

tether_sdk::export_tool!(Payments);
