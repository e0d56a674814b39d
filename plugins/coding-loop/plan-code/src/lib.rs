//! Coding loop, step 1: turn a task and its examples into a plan and a test suite.
//! Input: `{"task", "examples": [[input, expected], ...]}`.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

struct Plan;

impl Step for Plan {
    type Input = Value;
    type Output = Value;

    fn run(t: Value) -> Result<Value, Failure> {
        let task = t["task"].as_str().ok_or_else(|| Failure::invalid_input("no `task`"))?;
        let examples = t["examples"].as_array().ok_or_else(|| Failure::invalid_input("no `examples` list"))?;
        let cases: Vec<Value> = examples
            .iter()
            .map(|e| match (e[0].as_str(), e[1].as_str()) {
                (Some(i), Some(o)) => Ok(json!({"input": i, "expected": o})),
                _ => Err(Failure::invalid_input("each example is [input, expected], both strings")),
            })
            .collect::<Result<_, _>>()?;
        Ok(json!({"task": task, "plan": ["write a first version", "run the examples as tests", "fix what fails"], "cases": cases}))
    }
}

tether_sdk::export_step!(Plan);
