//! Support triage, step 1: classify an incoming message by topic and urgency.
//!
//! A deterministic stand-in for a model call: keyword scores, so the demo needs no network.

use serde::{Deserialize, Serialize};
use tether_sdk::{Failure, Step};

#[derive(Deserialize)]
struct Ticket {
    from: String,
    subject: String,
    body: String,
}

#[derive(Serialize)]
struct Classified {
    from: String,
    subject: String,
    body: String,
    category: &'static str,
    urgency: &'static str,
    confidence: f64,
}

const CATEGORIES: &[(&str, &[&str])] = &[
    ("billing", &["invoice", "refund", "charge", "charged", "payment", "billing", "price"]),
    ("outage", &["down", "outage", "error", "500", "unavailable", "cannot log in", "broken"]),
    ("account", &["password", "login", "account", "email change", "delete my"]),
    ("feature-request", &["feature", "would be nice", "could you add", "suggestion"]),
];

const URGENT: &[&str] = &["urgent", "asap", "immediately", "production", "all users", "losing money"];

struct Classify;

impl Step for Classify {
    type Input = Ticket;
    type Output = Classified;

    fn run(t: Ticket) -> Result<Classified, Failure> {
        if t.body.trim().is_empty() {
            return Err(Failure::invalid_input("the ticket body is empty"));
        }
        let text = format!("{} {}", t.subject, t.body).to_lowercase();
        let scores: Vec<(&str, usize)> = CATEGORIES
            .iter()
            .map(|(name, words)| (*name, words.iter().filter(|w| text.contains(*w)).count()))
            .collect();
        let total: usize = scores.iter().map(|(_, s)| s).sum();
        let (category, best) = scores
            .iter()
            .copied()
            .max_by_key(|(_, s)| *s)
            .filter(|(_, s)| *s > 0)
            .unwrap_or(("general", 0));
        let confidence = if total == 0 { 0.5 } else { best as f64 / total as f64 };
        let urgency = if URGENT.iter().any(|w| text.contains(w)) { "high" } else { "normal" };
        tether_sdk::info(&format!("classified as {category} ({urgency}), confidence {confidence:.2}"));
        // A model would report its real token count; this stand-in charges one per word.
        tether_sdk::report_usage("tokens", text.split_whitespace().count() as f64);
        Ok(Classified { from: t.from, subject: t.subject, body: t.body, category, urgency, confidence })
    }
}

tether_sdk::export_step!(Classify);
