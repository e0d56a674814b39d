//! The `{{name}}` tool: a tether tool component written in Rust.
//!
//! Steps call it by name with JSON input (`call-tool`); each call runs in its own sandbox.
//! `describe` tells the host and the steps what it does and what it changes in the world.

wit_bindgen::generate!({ path: "wit", world: "tool-plugin" });

use exports::tether::plugin::tool::Guest;
use serde_json::{json, Value};
use tether::plugin::tool_host;
use tether::plugin::types::{Descriptor, Effect, Failure, FailureKind, Level};

struct Tool;

impl Guest for Tool {
    fn describe() -> Descriptor {
        Descriptor {
            name: "{{name}}".into(),
            description: "Counts the characters of a text.".into(),
            input_schema: json!({"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}})
                .to_string(),
            output_schema: json!({"type": "object", "properties": {"chars": {"type": "integer"}}}).to_string(),
            // read-only, idempotent or external: policies and approvals look at it.
            effect: Effect::ReadOnly,
        }
    }

    fn call(input: String) -> Result<String, Failure> {
        let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
        let Some(text) = input.get("text").and_then(Value::as_str) else {
            return Err(Failure { kind: FailureKind::InvalidInput, message: "expected {\"text\": string}".into() });
        };
        let chars = text.chars().count();
        tool_host::log(Level::Debug, &format!("{chars} characters"));
        tool_host::report_usage("chars", chars as f64);
        Ok(json!({ "tool": "{{name}}", "chars": chars }).to_string())
    }
}

export!(Tool);
