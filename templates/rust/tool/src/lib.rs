//! The `{{name}}` tool: a tether tool component written in Rust.
//!
//! Steps call it by name with JSON input (`call-tool`); each call runs in its own sandbox.
//! `describe` tells the host and the steps what it does and what it changes in the world.

wit_bindgen::generate!({ path: "wit", world: "tool-plugin" });

use std::io::{ErrorKind, Write};

use exports::tether::plugin::tool::Guest;
use serde_json::{json, Value};
use tether::plugin::tool_host;
use tether::plugin::types::{Descriptor, Effect, Failure, FailureKind, Level};

/// Where the tool records its results by idempotency key, if the workflow grants it this
/// directory: `dirs = [{ host = "state", guest = "/state", write = true }]` in `[tools.{{name}}]`.
const STATE: &str = "/state";

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
        let count = || {
            let chars = text.chars().count();
            tool_host::log(Level::Debug, &format!("{chars} characters"));
            tool_host::report_usage("chars", chars as f64);
            Ok(json!({ "tool": "{{name}}", "chars": chars }).to_string())
        };
        // Counting changes nothing, so it needs no idempotency. A tool with an external
        // effect (it pays, sends mail) declares `Effect::External` and does the effect
        // inside `at_most_once`, as this one does with its count when /state is granted.
        if std::path::Path::new(STATE).is_dir() {
            at_most_once(&tool_host::idempotency_key(), count)
        } else {
            count()
        }
    }
}

/// Runs `act` at most once per idempotency key, however often the call is repeated
/// (retries, resumes after a crash, two hosts at once), and returns its result each time.
///
/// The claim is atomic: creating `/state/<the key in hex>` with `create_new`
/// (O_CREAT|O_EXCL) succeeds for exactly one call per key; only that call acts, then
/// writes its result into the file. Every other call returns the recorded result instead
/// of acting again. `act` returns `Err` only if it did nothing: the claim is then removed
/// so that a retry may act. If the tool is killed after claiming and before recording,
/// whether `act` happened is unknown, so later calls fail rather than act again.
fn at_most_once(key: &str, act: impl FnOnce() -> Result<String, Failure>) -> Result<String, Failure> {
    let path = format!("{STATE}/{}", key.bytes().map(|b| format!("{b:02x}")).collect::<String>());
    let io = |e: std::io::Error| Failure { kind: FailureKind::Internal, message: format!("{path}: {e}") };
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(mut claim) => {
            let result = act().inspect_err(|_| drop(std::fs::remove_file(&path)))?;
            // One line: a record without its final newline was cut short.
            claim.write_all(format!("{result}\n").as_bytes()).and_then(|()| claim.sync_all()).map_err(io)?;
            Ok(result)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            match std::fs::read_to_string(&path).map_err(io)?.strip_suffix('\n') {
                Some(recorded) => Ok(recorded.to_string()),
                None => Err(Failure {
                    kind: FailureKind::Internal,
                    message: format!("a call with idempotency key {key} started and recorded no result: not repeated"),
                }),
            }
        }
        Err(e) => Err(io(e)),
    }
}

export!(Tool);
