//! Coding loop, test step: runs the generated program on every case.
//! Input: `{"program": [rules], "cases": [{"input", "expected"}]}`.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

fn apply(rule: &str, s: String) -> Result<String, Failure> {
    Ok(match rule {
        "lowercase" => s.to_lowercase(),
        "trim" => s.trim().to_string(),
        "spaces-to-dash" => s.replace(' ', "-"),
        "strip-punctuation" => s.chars().filter(|c| !c.is_ascii_punctuation() || *c == '-').collect(),
        "collapse-dashes" => s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-"),
        other => return Err(Failure::invalid_input(format!("unknown rule `{other}`"))),
    })
}

struct RunTests;

impl Step for RunTests {
    type Input = Value;
    type Output = Value;

    fn run(i: Value) -> Result<Value, Failure> {
        let program = i["program"].as_array().ok_or_else(|| Failure::invalid_input("no `program`"))?;
        let cases = i["cases"].as_array().ok_or_else(|| Failure::invalid_input("no `cases`"))?;
        let mut failures = Vec::new();
        for case in cases {
            let mut out = case["input"].as_str().unwrap_or_default().to_string();
            for rule in program {
                out = apply(rule.as_str().unwrap_or_default(), out)?;
            }
            if out != case["expected"].as_str().unwrap_or_default() {
                failures.push(json!({"input": case["input"], "expected": case["expected"], "got": out}));
            }
        }
        tether_sdk::info(&format!("{} of {} cases pass", cases.len() - failures.len(), cases.len()));
        Ok(json!({"passed": failures.is_empty(), "failures": failures, "total": cases.len()}))
    }
}

tether_sdk::export_step!(RunTests);
