//! The `{{name}}` step: a tether step component written in Rust.
//!
//! It receives the run's (or the previous step's) JSON input and returns JSON. Replace the
//! body of `run` with your own logic; the host calls it once per attempt, in a fresh sandbox.

wit_bindgen::generate!({ path: "wit", world: "step-plugin" });

use exports::tether::plugin::step::Guest;
use serde_json::{json, Value};
use tether::plugin::host;
use tether::plugin::types::{Failure, FailureKind, Level};

struct Step;

impl Guest for Step {
    fn run(input: String) -> Result<String, Failure> {
        // Returning `Err` ends the step with class `guest_error` (a panic would trap).
        let input: Value = serde_json::from_str(&input).map_err(|e| fail(&format!("input is not JSON: {e}")))?;
        let Some(fields) = input.as_object() else { return Err(fail("input must be a JSON object")) };
        let who = fields.get("name").and_then(Value::as_str).unwrap_or("world");
        host::log(Level::Info, &format!("greeting {who}"));

        // Tools are called by name; the workflow must grant them to this step.
        let tool = match fields.get("tool").and_then(Value::as_str) {
            Some(name) => {
                let request = json!({ "text": who }).to_string();
                let answer = host::call_tool(name, &request)?;
                serde_json::from_str(&answer).unwrap_or(Value::Null)
            }
            None => Value::Null,
        };

        // Usage the host cannot measure itself (model tokens, money) is reported by name.
        host::report_usage("tokens", who.split_whitespace().count() as f64);
        Ok(json!({ "greeting": format!("hello, {who}"), "step": "{{name}}", "tool": tool }).to_string())
    }
}

fn fail(message: &str) -> Failure {
    Failure { kind: FailureKind::InvalidInput, message: message.to_string() }
}

export!(Step);
