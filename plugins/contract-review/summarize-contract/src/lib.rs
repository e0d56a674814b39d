//! Contract review, step 1: split a contract into numbered clauses and summarize it.
//! Input: `{"title", "text"}`; clauses are lines starting with `N.`.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

struct Summarize;

impl Step for Summarize {
    type Input = Value;
    type Output = Value;

    fn run(c: Value) -> Result<Value, Failure> {
        let text = c["text"].as_str().ok_or_else(|| Failure::invalid_input("the contract has no `text`"))?;
        let mut clauses = Vec::new();
        for line in text.lines().map(str::trim) {
            let Some((num, rest)) = line.split_once(". ") else { continue };
            if num.chars().all(|ch| ch.is_ascii_digit()) && !num.is_empty() {
                let (heading, body) = rest.split_once(':').unwrap_or(("", rest));
                clauses.push(json!({"id": num.parse::<u32>().unwrap_or(0), "heading": heading.trim(), "text": body.trim()}));
            }
        }
        if clauses.is_empty() {
            return Err(Failure::invalid_input("no numbered clauses (lines like `1. Term: ...`) found"));
        }
        let headings: Vec<&str> = clauses.iter().filter_map(|c| c["heading"].as_str()).filter(|h| !h.is_empty()).collect();
        let summary = format!("{} clauses covering {}.", clauses.len(), headings.join(", "));
        tether_sdk::report_usage("tokens", text.split_whitespace().count() as f64);
        Ok(json!({"title": c["title"], "summary": summary, "clauses": clauses}))
    }
}

tether_sdk::export_step!(Summarize);
