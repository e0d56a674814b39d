//! Guests in Python (componentize-py), JavaScript (componentize-qjs) and C (clang +
//! wasi-libc + the preview1 adapter), built from plugins/{python,js,c} by
//! scripts/build-guests: each step logs, calls a tool in its own language, reports usage
//! and returns a typed failure; an uncaught exception traps. And the workflow that mixes
//! all four languages, run from its file through the CLI.

use serde_json::{json, Value};
use tether_tests::artifacts;
use tether_types::{FailureClass, RunReport, RunStatus};

use crate::support::{expect_failure, fresh_dir, run, tether_cmd, workflow};

/// One step granted one tool, both from the given artifacts; Python needs more memory.
fn pair(step: &str, tool_name: &str, tool: &str) -> tether_runtime::LoadedWorkflow {
    workflow(&format!(
        r#"name = "pair"
[tools.{tool_name}]
component = "{tool}"
budget = {{ memory = "64MiB" }}
[[steps]]
name = "step"
component = "{step}"
tools = ["{tool_name}"]
budget = {{ memory = "64MiB", tool_calls = 2 }}
"#
    ))
}

/// Asserts the step and its tool both logged and reported usage, and the tool was called once.
fn assert_used_the_host(r: &RunReport, tool: &str, step_metric: &str, tool_metric: &str) {
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    let stats = &r.steps[0].stats;
    assert_eq!(stats.tool_calls.len(), 1);
    assert_eq!((stats.tool_calls[0].tool.as_str(), stats.tool_calls[0].outcome.as_str()), (tool, "ok"));
    assert!(stats.logs.iter().any(|l| l.tool.is_none()), "the step logged: {:?}", stats.logs);
    assert!(stats.logs.iter().any(|l| l.tool.as_deref() == Some(tool)), "the tool logged: {:?}", stats.logs);
    assert!(stats.usage.get(step_metric).copied().unwrap_or(0.0) > 0.0, "step usage: {:?}", stats.usage);
    assert!(stats.usage.get(tool_metric).copied().unwrap_or(0.0) > 0.0, "tool usage: {:?}", stats.usage);
}

#[test]
fn a_python_step_calls_a_python_tool() {
    let wf = pair(artifacts::SUMMARIZE, "sentiment", artifacts::SENTIMENT);
    let r = run(&wf, json!({"text": "The export is broken. I am frustrated. Please fix it soon."}));
    assert_used_the_host(&r, "sentiment", "tokens", "words_scored");
    assert_eq!(r.output["summary"], "The export is broken. I am frustrated. Please fix it soon.");
    assert_eq!((r.output["tone"].as_str(), r.output["tone_score"].as_i64()), (Some("negative"), Some(-1)));
}

#[test]
fn python_err_is_a_guest_error_and_an_exception_is_a_trap() {
    let wf = pair(artifacts::SUMMARIZE, "sentiment", artifacts::SENTIMENT);
    let r = expect_failure(&wf, json!({"text": ""}), FailureClass::GuestError);
    assert_eq!(r.error.unwrap().message, "`text` must be a non-empty string");
    let r = expect_failure(&wf, json!({"crash": true}), FailureClass::Trap);
    let logs = &r.steps[0].stats.logs;
    assert!(logs.iter().any(|l| l.message.contains("RuntimeError: asked to crash")), "traceback kept: {logs:?}");
    // A Python tool describes itself.
    let described = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(tether_tests::runtime().describe_tool(&wf.tools["sentiment"].component))
        .unwrap();
    assert_eq!((described.name.as_str(), described.effect), ("sentiment", tether_types::Effect::ReadOnly));
}

#[test]
fn a_javascript_step_calls_a_javascript_tool() {
    let wf = pair(artifacts::FORMAT_REPORT, "markdown-table", artifacts::MARKDOWN_TABLE);
    let r = run(&wf, json!({"subject": "Export | broken", "summary": "It fails.", "category": "outage"}));
    assert_used_the_host(&r, "markdown-table", "chars", "cells");
    let md = r.output["markdown"].as_str().unwrap();
    assert!(md.starts_with("## Export | broken\n\nIt fails.\n\n| field | value |\n| --- | --- |\n"), "{md}");
    assert!(md.contains("| category | outage |") && md.contains("| urgency | normal |"), "{md}");
    assert_eq!(r.output["lines"], 9);
}

#[test]
fn javascript_thrown_payload_is_a_guest_error_and_an_error_is_a_trap() {
    let wf = pair(artifacts::FORMAT_REPORT, "markdown-table", artifacts::MARKDOWN_TABLE);
    let r = expect_failure(&wf, json!({"subject": "x"}), FailureClass::GuestError);
    assert_eq!(r.error.unwrap().message, "`summary` must be a non-empty string");
    let r = expect_failure(&wf, json!({"crash": true}), FailureClass::Trap);
    assert!(r.steps[0].stats.logs.iter().any(|l| l.message.contains("asked to crash")));
}

#[test]
fn a_c_step_calls_a_c_tool() {
    let wf = pair(artifacts::REDACT, "word-count", artifacts::WORD_COUNT);
    let text = "Mail me at ada.l@example.com or call 0612345678 \u{2014} \"quoted\"\tref 123.";
    let r = run(&wf, json!({ "text": text }));
    assert_used_the_host(&r, "word-count", "chars_scanned", "bytes_counted");
    assert_eq!(r.output["text"], "Mail me at [email] or call [number] \u{2014} \"quoted\"\tref 123.");
    assert_eq!((r.output["redactions"].as_i64(), r.output["words"].as_i64()), (Some(2), Some(11)));
}

#[test]
fn c_failures_keep_their_kind() {
    let wf = pair(artifacts::REDACT, "word-count", artifacts::WORD_COUNT);
    let r = expect_failure(&wf, json!({"body": "no text field"}), FailureClass::GuestError);
    assert_eq!(r.error.unwrap().message, "`text` must be a string");
    // The step passes on the failure of a tool it was not granted: kind `denied`.
    let ungranted = workflow(&format!(
        "name = \"u\"\n[[steps]]\nname = \"step\"\ncomponent = \"{}\"\nbudget = {{ tool_calls = 1 }}\n",
        artifacts::REDACT
    ));
    let r = expect_failure(&ungranted, json!({"text": "hi"}), FailureClass::Denied);
    assert!(r.error.unwrap().message.contains("word-count"));
}

/// The README's mixed-language example, through the CLI: Rust -> C -> Python -> JavaScript.
#[test]
fn the_mixed_language_workflow_runs_from_its_file() {
    let dir = fresh_dir("languages");
    let db = dir.join("journal.db");
    let root = tether_tests::repo_root();
    let o = tether_cmd(&db)
        .current_dir(&root)
        .args(["run", "plugins/workflows/languages.toml", "--input", "@plugins/workflows/message.json", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let out = &report["output"];
    assert_eq!(out["redactions"], 2, "{out}");
    let md = out["report"].as_str().unwrap();
    assert!(md.starts_with("## Dashboard down, cannot log in\n\n"), "{md}");
    assert!(md.contains("write to [email]. Please") && md.contains("[number]") && !md.contains("example.org"), "{md}");
    assert!(md.contains("| category | outage |") && md.contains("| urgency | high |"), "{md}");
    assert!(md.contains("| tone | negative |"), "{md}");
    let steps: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(steps, ["classify", "redact", "summarize", "format-report"]);
    for metric in ["tokens", "chars_scanned", "bytes_counted", "words_scored", "chars", "cells"] {
        assert!(report["totals"]["usage"][metric].as_f64().unwrap_or(0.0) > 0.0, "{metric}: {}", report["totals"]);
    }
}
