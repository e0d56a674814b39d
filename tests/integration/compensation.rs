//! Compensation (saga): when a run fails after steps completed, their compensations run
//! in reverse order of completion, each journaled, and the run ends as `compensated` or
//! `compensation_failed`.

use serde_json::Value;
use tether_tests::artifacts;

use crate::support::{fresh_dir, tether_cmd, tether_json};

/// book-flight and book-hotel complete (and can be undone), notify has nothing to undo,
/// charge-card fails (its input lacks what the flaky step needs).
fn saga(dir: &std::path::Path, hotel_undo: &str) -> String {
    std::fs::create_dir_all(dir.join("ledger")).unwrap();
    let text = format!(
        r#"name = "trip"
[tools.echo]
component = {echo:?}
[tools.ledger]
component = {ledger:?}
dirs = [{{ host = "ledger", guest = "/ledger", write = true }}]

[[steps]]
name = "book-flight"
component = {hostile:?}
compensate = {{ tool = "echo" }}

[[steps]]
name = "book-hotel"
component = {hostile:?}
compensate = {{ {hotel_undo} }}

[[steps]]
name = "notify"
component = {hostile:?}

[[steps]]
name = "charge-card"
component = {flaky:?}
tools = ["ledger"]
"#,
        echo = artifacts::ECHO_TOOL,
        ledger = artifacts::LEDGER_TOOL,
        hostile = artifacts::HOSTILE,
        flaky = artifacts::FLAKY_STEP,
    );
    let path = dir.join("saga.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn events(db: &std::path::Path, run: &str) -> Vec<Value> {
    tether_json(db, &["history", run, "--json"]).1.as_array().unwrap().clone()
}

#[test]
fn completed_steps_are_undone_in_reverse_order_and_the_run_ends_compensated() {
    let dir = fresh_dir("saga-ok");
    let db = dir.join("journal.db");
    let wf = saga(&dir, &format!("component = {:?}", artifacts::TRIVIAL));
    let (code, report) = tether_json(&db, &["run", &wf, "--input", r#"{"mode":"echo","trip":42}"#, "--json"]);
    assert_eq!(code, Some(1), "a compensated run still failed: {report}");
    assert_eq!(report["status"], "compensated");
    assert_eq!(report["error"]["step"], "charge-card");
    let run = report["run_id"].as_str().unwrap();
    let ev = events(&db, run);
    let kinds: Vec<&str> = ev.iter().filter_map(|e| e["type"].as_str()).collect();
    let begun = kinds.iter().position(|k| *k == "compensation_begun").unwrap();
    assert!(kinds[..begun].contains(&"step_failed") && !kinds.contains(&"run_failed"));
    let undone: Vec<(&str, &str)> = ev
        .iter()
        .filter(|e| e["type"] == "step_compensated")
        .map(|e| (e["step"].as_str().unwrap(), e["via"].as_str().unwrap()))
        .collect();
    assert_eq!(undone.len(), 2, "notify has no compensation; charge-card never completed");
    assert_eq!(undone[0].0, "book-hotel", "reverse order of completion");
    assert!(undone[0].1.starts_with("component:"));
    assert_eq!(undone[1], ("book-flight", "tool:echo"));
    // The compensation saw what it undoes: the step's input and output.
    let flight = ev.iter().find(|e| e["type"] == "step_compensated" && e["step"] == "book-flight").unwrap();
    assert_eq!(flight["result"]["ok"]["step"], "book-flight");
    assert_eq!(flight["result"]["ok"]["input"]["trip"], 42);
    assert_eq!(flight["result"]["ok"]["output"]["trip"], 42);
    assert_eq!(kinds.last(), Some(&"run_compensated"));
    let (_, listed) = tether_json(&db, &["runs", "--status", "compensated", "--json"]);
    assert!(listed.as_array().unwrap().iter().any(|r| r["run_id"] == run));
}

#[test]
fn a_failing_compensation_ends_the_run_as_compensation_failed() {
    let dir = fresh_dir("saga-bad");
    let db = dir.join("journal.db");
    // The hotel's compensation is the flaky step, which rejects this input.
    let wf = saga(&dir, &format!("component = {:?}", artifacts::FLAKY_STEP));
    let (code, report) = tether_json(&db, &["run", &wf, "--input", r#"{"mode":"echo"}"#, "--json"]);
    assert_eq!(code, Some(1));
    assert_eq!(report["status"], "compensation_failed");
    assert!(report["error"]["message"].as_str().unwrap().contains("compensating book-hotel failed"), "{report}");
    let ev = events(&db, report["run_id"].as_str().unwrap());
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "run_compensation_failed");
    assert_eq!(last["failed"], serde_json::json!(["book-hotel"]));
    // The flight was still undone after the hotel's compensation failed.
    assert!(ev
        .iter()
        .any(|e| e["type"] == "step_compensated" && e["step"] == "book-flight" && e["result"]["ok"].is_object()));
}

#[test]
fn a_compensation_must_name_a_declared_tool_or_one_component() {
    let dir = fresh_dir("saga-manifest");
    let wf = dir.join("wf.toml");
    let db = dir.join("journal.db");
    for (compensate, expected) in [
        ("{ tool = \"refund\" }", "step `a` is compensated by tool `refund`, which is not declared"),
        ("{ tool = \"refund\", component = \"x.wasm\" }", "`compensate` takes exactly one of `tool` or `component`"),
    ] {
        std::fs::write(
            &wf,
            format!(
                "name = \"s\"\n[[steps]]\nname = \"a\"\ncomponent = {:?}\ncompensate = {compensate}\n",
                artifacts::HOSTILE
            ),
        )
        .unwrap();
        let o = tether_cmd(&db).args(["validate", wf.to_str().unwrap()]).output().unwrap();
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains(expected), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn a_host_killed_while_compensating_finishes_the_compensations_on_resume() {
    let dir = fresh_dir("saga-kill");
    let db = dir.join("journal.db");
    // The hotel's compensation takes 1.5 s: the host is killed inside it.
    let wf = saga(&dir, &format!("component = {:?}", artifacts::HOSTILE));
    let run = "run_saga-kill";
    let input = r#"{"mode":"echo","undo":{"mode":"sleep","ms":1500}}"#;
    let mut child = tether_cmd(&db)
        .args(["run", &wf, "--input", input, "--run-id", run])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let begun = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let o = tether_cmd(&db).args(["history", run, "--json"]).output().unwrap();
        serde_json::from_slice::<Value>(&o.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.iter().any(|e| e["type"] == "compensation_begun")))
            .unwrap_or(false)
    });
    assert!(begun, "the run reached its compensations");
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let ev = events(&db, run);
    assert!(!ev.iter().any(|e| e["type"] == "step_compensated"), "killed during the first compensation");

    let (code, report) = tether_json(&db, &["resume", run, "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["status"], "compensated");
    let ev = events(&db, run);
    let undone: Vec<&str> =
        ev.iter().filter(|e| e["type"] == "step_compensated").map(|e| e["step"].as_str().unwrap()).collect();
    assert_eq!(undone, vec!["book-hotel", "book-flight"], "each undone once, in order");
    assert_eq!(ev.iter().filter(|e| e["type"] == "compensation_begun").count(), 1);
}
