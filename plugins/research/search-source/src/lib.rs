//! Research, fan-out step: search one source for a question. Each source is a small
//! built-in corpus, so the example needs no network; a real one would call a search tool.
//! Input: `{"source", "question"}`.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

const CORPUS: &[(&str, &str, &str)] = &[
    ("docs", "Durable execution", "A durable run survives a crash and resumes from its journal without repeating completed steps."),
    ("docs", "Budgets", "Each step has fuel, wall time and memory budgets; a run can also have totals such as tokens."),
    ("docs", "Sandboxing", "Components get no files, network or environment unless they are granted them."),
    ("forum", "Resuming after kill -9", "After a kill the run resumed from the journal and the tool was not called twice."),
    ("forum", "Token budgets", "We cap tokens per run so a runaway agent pauses instead of spending money."),
    ("changelog", "0.2: parallel steps", "Independent steps now run concurrently and for_each fans out with a concurrency cap."),
    ("changelog", "0.1: journal", "Every call across a component boundary is journaled in SQLite."),
];

struct Search;

impl Step for Search {
    type Input = Value;
    type Output = Value;

    fn run(q: Value) -> Result<Value, Failure> {
        let source = q["source"].as_str().ok_or_else(|| Failure::invalid_input("no `source`"))?;
        let question = q["question"].as_str().ok_or_else(|| Failure::invalid_input("no `question`"))?.to_lowercase();
        if !CORPUS.iter().any(|(s, _, _)| *s == source) {
            return Err(Failure::not_found(format!("unknown source `{source}`")));
        }
        let words: Vec<&str> = question.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 3).collect();
        let mut hits: Vec<Value> = CORPUS
            .iter()
            .filter(|(s, _, _)| *s == source)
            .filter_map(|(_, title, text)| {
                let lower = format!("{title} {text}").to_lowercase();
                let score = words.iter().filter(|w| lower.contains(*w)).count();
                (score > 0).then(|| json!({"source": source, "title": title, "snippet": text, "score": score}))
            })
            .collect();
        hits.sort_by(|a, b| b["score"].as_u64().cmp(&a["score"].as_u64()));
        tether_sdk::info(&format!("{source}: {} hit(s)", hits.len()));
        tether_sdk::report_usage("tokens", (words.len() * 40) as f64);
        Ok(json!({"source": source, "hits": hits}))
    }
}

tether_sdk::export_step!(Search);
