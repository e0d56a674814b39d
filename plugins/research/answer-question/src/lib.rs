//! Research, last step: answer from the best findings, citing them.
//! Input: `{"question", "findings": {"hits": [...]}}`.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

struct Answer;

impl Step for Answer {
    type Input = Value;
    type Output = Value;

    fn run(i: Value) -> Result<Value, Failure> {
        let question = i["question"].as_str().ok_or_else(|| Failure::invalid_input("no `question`"))?;
        let hits = i["findings"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            return Ok(json!({"question": question, "answer": "No source had anything on this.", "citations": []}));
        }
        let best: Vec<&Value> = hits.iter().take(3).collect();
        let answer = best.iter().filter_map(|h| h["snippet"].as_str()).collect::<Vec<_>>().join(" ");
        let citations: Vec<String> =
            best.iter().map(|h| format!("{}: {}", h["source"].as_str().unwrap_or("?"), h["title"].as_str().unwrap_or("?"))).collect();
        tether_sdk::report_usage("tokens", answer.split_whitespace().count() as f64);
        Ok(json!({"question": question, "answer": answer, "citations": citations}))
    }
}

tether_sdk::export_step!(Answer);
