//! Coding loop, generate/fix step: writes a text-transformation "program" (a list of
//! rewrite rules). The first version is naive; later iterations read the previous test
//! failures and add the one rule that explains the first failure, as a model fixing one
//! bug at a time would. Input: `{"task", "program", "failures"}`.

use serde_json::{json, Value};
use tether_sdk::{Failure, Step};

/// Rules in the order a fix would discover them, with how to recognise the need.
fn needed(input: &str, expected: &str, program: &[String]) -> Option<&'static str> {
    let has = |r: &str| program.iter().any(|p| p == r);
    if !has("trim") && input.trim() != input && expected.trim() == expected {
        return Some("trim");
    }
    if !has("spaces-to-dash") && input.trim().contains(' ') && expected.contains('-') {
        return Some("spaces-to-dash");
    }
    if !has("strip-punctuation") && input.chars().any(|c| c.is_ascii_punctuation() && c != '-') {
        return Some("strip-punctuation");
    }
    if !has("collapse-dashes") && !expected.contains("--") {
        return Some("collapse-dashes");
    }
    None
}

struct Generate;

impl Step for Generate {
    type Input = Value;
    type Output = Value;

    fn run(i: Value) -> Result<Value, Failure> {
        let mut program: Vec<String> =
            i["program"].as_array().map(|p| p.iter().filter_map(|r| r.as_str().map(String::from)).collect()).unwrap_or_default();
        if program.is_empty() {
            program.push("lowercase".into());
        }
        if let Some(first) = i["failures"].as_array().and_then(|f| f.first()) {
            let (input, expected) = (first["input"].as_str().unwrap_or(""), first["expected"].as_str().unwrap_or(""));
            match needed(input, expected, &program) {
                Some(rule) => {
                    tether_sdk::info(&format!("fixing `{input}`: adding rule {rule}"));
                    program.push(rule.into());
                }
                None => return Err(Failure::internal(format!("cannot see how to fix `{input}` -> `{expected}`"))),
            }
        }
        tether_sdk::report_usage("tokens", 50.0 * program.len() as f64);
        Ok(json!({"program": program}))
    }
}

tether_sdk::export_step!(Generate);
