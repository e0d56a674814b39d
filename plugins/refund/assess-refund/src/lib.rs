//! Refund, step 1: assess a refund request. Stands in for a model call: the risk grows
//! with the amount and with the customer's earlier refunds, and the reason is classed.

use serde::{Deserialize, Serialize};
use tether_sdk::{Failure, Step};

#[derive(Deserialize)]
struct Request {
    order_id: String,
    amount: f64,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    previous_refunds: u32,
}

#[derive(Serialize)]
struct Assessment {
    order_id: String,
    amount: f64,
    reason: String,
    /// `damaged`, `late`, `changed-mind` or `other`.
    category: &'static str,
    /// 0 (safe) to 1 (risky).
    risk: f64,
}

struct AssessRefund;

impl Step for AssessRefund {
    type Input = Request;
    type Output = Assessment;

    fn run(r: Request) -> Result<Assessment, Failure> {
        if !(r.amount.is_finite() && r.amount > 0.0) {
            return Err(Failure::invalid_input(format!("amount must be a positive number, not {}", r.amount)));
        }
        let text = r.reason.to_lowercase();
        let category = if text.contains("damag") || text.contains("broken") {
            "damaged"
        } else if text.contains("late") || text.contains("never arrived") {
            "late"
        } else if text.contains("changed my mind") || text.contains("don't want") {
            "changed-mind"
        } else {
            "other"
        };
        let base = if category == "damaged" || category == "late" { 0.05 } else { 0.2 };
        let risk = (base + r.amount / 2000.0 + f64::from(r.previous_refunds) * 0.1).min(1.0);
        let risk = (risk * 1000.0).round() / 1000.0;
        tether_sdk::info(&format!("order {}: {category}, risk {risk}", r.order_id));
        tether_sdk::report_usage("tokens", 120.0);
        Ok(Assessment { order_id: r.order_id, amount: r.amount, reason: r.reason, category, risk })
    }
}

tether_sdk::export_step!(AssessRefund);
