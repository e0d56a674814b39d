//! Run budgets: totals across all steps pause the run (resumable) instead of failing it,
//! and `tether resume RUN --budget METRIC=+N` raises them.

use serde_json::Value;
use tether_tests::artifacts;

use crate::support::{fresh_dir, tether_cmd, tether_json};

fn workflow(dir: &std::path::Path, budget: &str, steps: usize) -> String {
    let body: String = (1..=steps)
        .map(|k| {
            format!(
                "[[steps]]\nname = \"s{k}\"\ncomponent = {:?}\nbudget = {{ fuel = 100_000_000_000 }}\n",
                artifacts::HOSTILE
            )
        })
        .collect();
    let path = dir.join("wf.toml");
    std::fs::write(&path, format!("name = \"budgeted\"\n[run]\nbudget = {{ {budget} }}\n{body}")).unwrap();
    path.display().to_string()
}

fn events(db: &std::path::Path, run: &str) -> Vec<Value> {
    tether_json(db, &["history", run, "--json"]).1.as_array().unwrap().clone()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

#[test]
fn a_usage_budget_pauses_the_run_and_a_raise_lets_it_finish() {
    let dir = fresh_dir("budget-tokens");
    let db = dir.join("journal.db");
    let wf = workflow(&dir, "usage = { tokens = 50 }", 3);
    let input = r#"{"mode":"usage-flood","n":30}"#;
    let (code, report) = tether_json(&db, &["run", &wf, "--input", input, "--json"]);
    assert_eq!(code, Some(3), "paused runs exit with 3: {report}");
    assert_eq!(report["status"], "paused");
    assert_eq!(report["error"]["class"], "run_budget_exceeded");
    assert_eq!(report["error"]["step"], "s2");
    let run = report["run_id"].as_str().unwrap().to_string();
    let ev = events(&db, &run);
    let pause = ev.iter().find(|e| e["type"] == "run_paused").unwrap();
    assert_eq!(
        (pause["exceeded"].as_str(), pause["used"].as_f64(), pause["limit"].as_f64()),
        (Some("tokens"), Some(51.0), Some(50.0))
    );
    // The second step was stopped at the 21st token: exactly what the run had left.
    let limited = ev.iter().find(|e| e["type"] == "step_attempt_started" && e["step"] == "s2").unwrap();
    assert_eq!(limited["usage_limits"]["tokens"], 20.0);

    let (_, paused) = tether_json(&db, &["runs", "--status", "paused", "--json"]);
    assert!(paused.as_array().unwrap().iter().any(|r| r["run_id"] == run.as_str()));

    // Resuming without more budget pauses again at once, without running anything; a
    // person is told which budget to raise, and how.
    let o = tether_cmd(&db).args(["resume", &run]).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("the run's `tokens` budget is used up"), "{said}");
    assert!(said.contains(&format!("raise it: `tether resume {run} --budget tokens=+N`")), "{said}");
    let (code, again) = tether_json(&db, &["resume", &run, "--json"]);
    assert_eq!(code, Some(3), "{again}");
    assert!(!again["error"]["message"].as_str().unwrap().contains("tether"), "the report names no command: {again}");
    // Scripts get the same next step as a field.
    assert_eq!(again["next"]["what"], "raise it", "{again}");
    assert_eq!(again["next"]["command"], format!("tether resume {run} --budget tokens=+N"), "{again}");
    let ev = events(&db, &run);
    assert_eq!(count(&ev, "run_paused"), 3, "each resume without a raise pauses again");
    assert_eq!(count(&ev, "step_attempt_started"), 2, "no new attempt without budget");

    // A raise is journaled and the run completes; s2 gets a fresh attempt.
    let (code, done) = tether_json(&db, &["resume", &run, "--budget", "tokens=+100", "--json"]);
    assert_eq!(code, Some(0), "{done}");
    assert_eq!(done["status"], "completed");
    assert!(done.get("next").is_none(), "a run that ended has nothing next: {done}");
    let ev = events(&db, &run);
    let raised = ev.iter().find(|e| e["type"] == "budget_raised").unwrap();
    assert_eq!((raised["metric"].as_str(), raised["by"].as_f64()), (Some("tokens"), Some(100.0)));
    let s2: Vec<u64> = ev
        .iter()
        .filter(|e| e["type"] == "step_attempt_started" && e["step"] == "s2")
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(s2, vec![1, 2]);
    let (_, completed) = tether_json(&db, &["runs", "--status", "completed", "--json"]);
    assert!(completed.as_array().unwrap().iter().any(|r| r["run_id"] == run.as_str()));
}

#[test]
fn a_fuel_budget_across_steps_pauses_instead_of_failing() {
    let dir = fresh_dir("budget-fuel");
    let db = dir.join("journal.db");
    let wf = workflow(&dir, "fuel = 50_000_000", 1);
    let (code, report) = tether_json(&db, &["run", &wf, "--input", r#"{"mode":"loop"}"#, "--json"]);
    assert_eq!(code, Some(3), "{report}");
    let run = report["run_id"].as_str().unwrap();
    let ev = events(&db, run);
    let pause = ev.iter().find(|e| e["type"] == "run_paused").unwrap();
    assert_eq!(pause["exceeded"], "fuel");
    let failed = ev.iter().find(|e| e["type"] == "step_failed").unwrap();
    assert_eq!(failed["failure"]["class"], "run_budget_exceeded", "the run's budget ended the attempt, not the step's");
    assert!(failed["failure"]["message"].as_str().unwrap().contains("fuel"), "{failed}");
    assert!(failed["fuel"].as_u64().unwrap() <= 50_000_000);
}

#[test]
fn raising_a_budget_the_run_does_not_have_is_a_usage_error() {
    let dir = fresh_dir("budget-bad-raise");
    let db = dir.join("journal.db");
    let wf = workflow(&dir, "usage = { tokens = 5 }", 1);
    let (_, report) = tether_json(&db, &["run", &wf, "--input", r#"{"mode":"usage-flood","n":30}"#, "--json"]);
    let run = report["run_id"].as_str().unwrap();
    for (arg, expected) in [
        ("cost_usd=+5", "this run has no `cost_usd` budget to raise (it has: tokens)"),
        ("tokens=5", "write METRIC=+N"),
        ("tokens=+abc", "write METRIC=+N"),
    ] {
        let o = tether_cmd(&db).args(["resume", run, "--budget", arg]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{arg}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(expected), "{arg}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn concurrent_items_share_what_is_left_and_never_pass_the_run_budget() {
    let dir = fresh_dir("budget-fan-out");
    let db = dir.join("journal.db");
    let wf = dir.join("wf.toml");
    let text = format!(
        r#"name = "fan-out-budget"
[run]
budget = {{ tool_calls = 3 }}
[tools.echo]
component = {echo:?}
[[steps]]
name = "work"
component = {hostile:?}
tools = ["echo"]
for_each = "input.items"
concurrency = 4
input = "{{'mode': 'tool-flood', 'n': 1}}"
budget = {{ tool_calls = 5 }}
"#,
        echo = artifacts::ECHO_TOOL,
        hostile = artifacts::HOSTILE
    );
    std::fs::write(&wf, text).unwrap();
    let wf = wf.display().to_string();
    let (code, report) = tether_json(&db, &["run", &wf, "--input", r#"{"items":[1,2,3,4]}"#, "--json"]);
    assert_eq!(code, Some(3), "{report}");
    let run = report["run_id"].as_str().unwrap().to_string();
    let ev = events(&db, &run);
    // Four items start together with one call each; the run may make three.
    assert_eq!(count(&ev, "tool_call_completed"), 3, "the run's total never passes its limit");
    let pause = ev.iter().find(|e| e["type"] == "run_paused").unwrap();
    assert_eq!((pause["used"].as_f64(), pause["limit"].as_f64()), (Some(3.0), Some(3.0)), "{pause}");
    assert_eq!(count(&ev, "step_completed"), 3);

    let (code, done) = tether_json(&db, &["resume", &run, "--budget", "tool_calls=+1", "--json"]);
    assert_eq!(code, Some(0), "{done}");
    assert_eq!(count(&events(&db, &run), "tool_call_completed"), 4);
}
