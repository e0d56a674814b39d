//! Research, fan-in step: merge the per-source results (a list, in source order) and
//! rank every hit.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

struct Combine;

impl Step for Combine {
    type Input = Value;
    type Output = Value;

    fn run(results: Value) -> Result<Value, Failure> {
        let results = results.as_array().ok_or_else(|| Failure::invalid_input("expected the list of source results"))?;
        let mut hits: Vec<Value> = results.iter().flat_map(|r| r["hits"].as_array().cloned().unwrap_or_default()).collect();
        // Stable: equal scores keep source order.
        hits.sort_by(|a, b| b["score"].as_u64().cmp(&a["score"].as_u64()));
        let sources: Vec<&Value> = results.iter().map(|r| &r["source"]).collect();
        Ok(json!({"sources": sources, "hits": hits}))
    }
}

tether_sdk::export_step!(Combine);
