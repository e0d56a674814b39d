//! The workflow language: `needs` (a DAG), parallel steps, `for_each` with a concurrency
//! cap, `when` and routes (skips and their rules), loops, expression failures, and a
//! host killed in the middle of a fan-out. All through the CLI, on a real journal.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_tests::{artifacts, repo_root};

use crate::support::{fresh_dir, tether_cmd, tether_json};

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("wf.toml");
    std::fs::write(&path, text.replace("{hostile}", artifacts::HOSTILE)).unwrap();
    path.display().to_string()
}

fn events(db: &Path, run: &str) -> Vec<Value> {
    tether_json(db, &["history", run, "--json"]).1.as_array().unwrap().clone()
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The most attempts that were running at once, from the journal's order of events.
fn max_overlap(events: &[Value]) -> usize {
    let (mut open, mut max) = (0usize, 0usize);
    for e in events {
        match e["type"].as_str() {
            Some("step_attempt_started") => {
                open += 1;
                max = max.max(open);
            }
            Some("step_completed" | "step_failed") if e["attempt"].as_u64().is_some() => open = open.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[test]
fn independent_steps_run_at_the_same_time_and_a_fan_in_sees_both() {
    let dir = fresh_dir("flow-parallel");
    let db = dir.join("journal.db");
    let wf = write(
        &dir,
        r#"
name = "parallel"
[[steps]]
name = "left"
needs = []
component = "{hostile}"
input = "{'mode': 'sleep', 'ms': 600, 'tag': 'L'}"
[[steps]]
name = "right"
needs = []
component = "{hostile}"
input = "{'mode': 'sleep', 'ms': 600, 'tag': 'R'}"
[[steps]]
name = "join"
needs = ["left", "right"]
component = "{hostile}"
input = "{'mode': 'echo', 'both': [steps.left.tag, steps.right.tag]}"
"#,
    );
    let started = Instant::now();
    let (code, report) = tether_json(&db, &["run", &wf, "--json"]);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["both"], json!(["L", "R"]));
    let ev = events(&db, report["run_id"].as_str().unwrap());
    assert_eq!(max_overlap(&ev), 2, "both sleeping steps were running at once");
    let ends: Vec<u64> = of(&ev, "step_completed").iter().take(2).map(|e| e["at_us"].as_u64().unwrap()).collect();
    let starts: Vec<u64> =
        of(&ev, "step_attempt_started").iter().take(2).map(|e| e["at_us"].as_u64().unwrap()).collect();
    assert!(starts.iter().max() < ends.iter().min(), "the second started before the first ended: {starts:?} {ends:?}");
    assert!(took < Duration::from_millis(1150), "two 600 ms steps in parallel took {took:?}");
}

#[test]
fn for_each_respects_its_cap_and_gathers_in_item_order() {
    let dir = fresh_dir("flow-for-each");
    let db = dir.join("journal.db");
    let wf = write(
        &dir,
        r#"
name = "fan-out"
[[steps]]
name = "work"
component = "{hostile}"
for_each = "input.items"
concurrency = 2
# Later items sleep less, so they would finish first if order were by completion.
input = "{'mode': 'sleep', 'ms': 400 - index * 100, 'tag': item}"
[[steps]]
name = "gather"
component = "{hostile}"
input = "{'mode': 'echo', 'tags': steps.work.map(r, r.tag)}"
"#,
    );
    let (code, report) = tether_json(&db, &["run", &wf, "--input", r#"{"items":["a","b","c","d"]}"#, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["tags"], json!(["a", "b", "c", "d"]));
    let ev = events(&db, report["run_id"].as_str().unwrap());
    assert_eq!(max_overlap(&ev), 2, "concurrency = 2");
    assert_eq!(of(&ev, "for_each_started")[0]["items"], 4);
    let keys: Vec<&str> = of(&ev, "step_completed").iter().filter_map(|e| e["step"].as_str()).collect();
    for i in 0..4 {
        assert!(keys.contains(&format!("work[{i}]").as_str()), "{keys:?}");
    }
    assert_eq!(of(&ev, "for_each_gathered")[0]["output"][3]["tag"], "d");
}

#[test]
fn when_skips_a_step_and_its_dependents_follow_the_rules() {
    let dir = fresh_dir("flow-when");
    let db = dir.join("journal.db");
    let wf = write(
        &dir,
        r#"
name = "skips"
[[steps]]
name = "first"
component = "{hostile}"
input = "{'mode': 'echo', 'risky': input.risky}"
[[steps]]
name = "review"
component = "{hostile}"
when = "steps.first.risky"
input = "{'mode': 'echo', 'reviewed': true}"
# Needs only the skipped step: skipped too.
[[steps]]
name = "after-review"
component = "{hostile}"
input = "{'mode': 'echo'}"
# Needs a skipped and a completed step: runs, and sees only the completed one.
[[steps]]
name = "report"
needs = ["first", "after-review"]
component = "{hostile}"
input = "{'mode': 'echo', 'saw': steps.map(k, k)}"
"#,
    );
    let (code, report) = tether_json(&db, &["run", &wf, "--input", r#"{"risky": false}"#, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["saw"], json!(["first"]));
    let ev = events(&db, report["run_id"].as_str().unwrap());
    let skipped: Vec<(&str, &str)> =
        of(&ev, "step_skipped").iter().map(|e| (e["step"].as_str().unwrap(), e["reason"].as_str().unwrap())).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0], ("review", "`when` did not hold: steps.first.risky"));
    assert_eq!(skipped[1].0, "after-review");
    assert!(skipped[1].1.contains("every step it needs was skipped (review)"), "{skipped:?}");
    // With the condition true, everything runs.
    let (code, report) = tether_json(&db, &["run", &wf, "--input", r#"{"risky": true}"#, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    let mut saw: Vec<String> =
        report["output"]["saw"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    saw.sort();
    assert_eq!(saw, vec!["after-review", "first", "review"]);
}

#[test]
fn an_expression_that_fails_at_run_time_fails_the_step_as_invalid_input() {
    let dir = fresh_dir("flow-bad-expr");
    let db = dir.join("journal.db");
    let wf = write(
        &dir,
        r#"
name = "bad-expr"
[[steps]]
name = "first"
component = "{hostile}"
input = "{'mode': 'echo'}"
[[steps]]
name = "second"
component = "{hostile}"
input = "{'mode': 'echo', 'x': steps.first.missing * 2}"
"#,
    );
    let (code, report) = tether_json(&db, &["run", &wf, "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "invalid_input");
    assert_eq!(report["error"]["step"], "second");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("steps.first.missing * 2") && message.contains("missing"), "{message}");
    let ev = events(&db, report["run_id"].as_str().unwrap());
    assert_eq!(of(&ev, "step_attempt_started").len(), 1, "the second step never started");
}

#[test]
fn a_loop_that_never_converges_fails_unless_told_to_continue() {
    let dir = fresh_dir("flow-loop");
    let db = dir.join("journal.db");
    let text = r#"
name = "loop"
[loops.again]
until = "steps.try.n >= 10"
max_iterations = 3
ON_EXHAUSTED
[[steps]]
name = "try"
loop = "again"
component = "{hostile}"
input = "{'mode': 'echo', 'n': iteration, 'before': has(previous.try) ? previous.try.n : 0}"
"#;
    let wf = write(&dir, &text.replace("ON_EXHAUSTED", ""));
    let (code, report) = tether_json(&db, &["run", &wf, "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "loop_exhausted");
    let ev = events(&db, report["run_id"].as_str().unwrap());
    let iterations: Vec<(u64, bool)> = of(&ev, "loop_iteration_ended")
        .iter()
        .map(|e| (e["iteration"].as_u64().unwrap(), e["until"].as_bool().unwrap()))
        .collect();
    assert_eq!(iterations, vec![(1, false), (2, false), (3, false)]);
    let keys: Vec<&str> = of(&ev, "step_completed").iter().filter_map(|e| e["step"].as_str()).collect();
    assert_eq!(keys, vec!["try#1", "try#2", "try#3"]);

    let wf = write(&dir, &text.replace("ON_EXHAUSTED", "on_exhausted = \"continue\""));
    let (code, report) = tether_json(&db, &["run", &wf, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["n"], 3, "the last iteration's output");
    assert_eq!(report["output"]["before"], 2, "each iteration sees the previous one");
}

fn example(name: &str) -> String {
    repo_root().join("plugins/workflows").join(name).display().to_string()
}

fn input_file(name: &str) -> String {
    format!("@{}", repo_root().join("plugins/workflows").join(name).display())
}

#[test]
fn the_support_triage_example_routes_outages_to_escalation() {
    let dir = fresh_dir("example-triage");
    let db = dir.join("journal.db");
    let (code, report) =
        tether_json(&db, &["run", &example("support-triage.toml"), "--input", &input_file("ticket.json"), "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["category"], "billing");
    assert_eq!(report["output"]["policy"]["passed"], true);
    assert_eq!(report["output"]["customer_plan"], "enterprise", "the draft looked the customer up");

    let outage =
        r#"{"from":"ops@example.com","subject":"Site down","body":"Everything is down with error 500 for all users"}"#;
    let (code, report) = tether_json(&db, &["run", &example("support-triage.toml"), "--input", outage, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["paged"], "oncall-primary");
    assert_eq!(report["output"]["policy"]["passed"], true);
    let ev = events(&db, report["run_id"].as_str().unwrap());
    assert_eq!(of(&ev, "routed")[0]["to"], "escalate");
    let skipped = of(&ev, "step_skipped");
    assert_eq!((skipped.len(), skipped[0]["step"].as_str()), (1, Some("draft-reply")));
}

#[test]
fn the_contract_research_and_coding_examples_run() {
    let dir = fresh_dir("examples");
    let db = dir.join("journal.db");
    let (code, r) =
        tether_json(&db, &["run", &example("contract-review.toml"), "--input", &input_file("contract.json"), "--json"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        (r["output"]["verdict"].as_str(), r["output"]["flags"].as_u64()),
        (Some("needs legal sign-off"), Some(3))
    );

    let (code, r) =
        tether_json(&db, &["run", &example("research.toml"), "--input", &input_file("question.json"), "--json"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["output"]["citations"].as_array().unwrap().len(), 3);
    let ev = events(&db, r["run_id"].as_str().unwrap());
    assert_eq!(of(&ev, "for_each_started")[0]["items"], 3);
    let sources: Vec<&Value> =
        of(&ev, "for_each_gathered")[0]["output"].as_array().unwrap().iter().map(|s| &s["source"]).collect();
    assert_eq!(sources, vec!["docs", "forum", "changelog"], "gathered in item order");

    let (code, r) =
        tether_json(&db, &["run", &example("coding-loop.toml"), "--input", &input_file("task.json"), "--json"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["output"]["tests"]["passed"], true);
    let ev = events(&db, r["run_id"].as_str().unwrap());
    let ends = of(&ev, "loop_iteration_ended");
    assert!(ends.len() >= 2 && ends.len() <= 6, "{}", ends.len());
    assert!(ends[..ends.len() - 1].iter().all(|e| e["until"] == false) && ends[ends.len() - 1]["until"] == true);

    for wf in ["support-triage.toml", "contract-review.toml", "research.toml", "coding-loop.toml"] {
        let o = tether_cmd(&db).args(["validate", &example(wf)]).output().unwrap();
        assert!(o.status.success(), "{wf}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

fn fan_out_workflow(dir: &Path) -> String {
    write(
        dir,
        r#"
name = "slow-fan-out"
[[steps]]
name = "work"
component = "{hostile}"
for_each = "input.items"
concurrency = 2
input = "{'mode': 'sleep', 'ms': 500, 'tag': item}"
[[steps]]
name = "gather"
component = "{hostile}"
input = "{'mode': 'echo', 'tags': steps.work.map(r, r.tag)}"
"#,
    )
}

#[test]
fn a_host_killed_during_a_fan_out_resumes_without_repeating_finished_items() {
    let dir: PathBuf = fresh_dir("flow-kill-fan-out");
    let db = dir.join("journal.db");
    let wf = fan_out_workflow(&dir);
    let run = "run_fan-out-kill";
    let mut child = tether_cmd(&db)
        .args(["run", &wf, "--input", r#"{"items":[1,2,3,4,5,6]}"#, "--run-id", run])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once some items are done and others are running.
    let done_before = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(25));
            let o = tether_cmd(&db).args(["history", run, "--json"]).output().ok()?;
            let ev: Value = serde_json::from_slice(&o.stdout).ok()?;
            let n = of(ev.as_array()?, "step_completed").len();
            (n >= 2).then_some(n)
        })
        .expect("items completed");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(done_before < 6, "the kill came before the fan-out ended");

    let (code, report) = tether_json(&db, &["resume", run, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["tags"], json!([1, 2, 3, 4, 5, 6]));
    let ev = events(&db, run);
    for i in 0..6 {
        let key = format!("work[{i}]");
        let completed = of(&ev, "step_completed").iter().filter(|e| e["step"] == key.as_str()).count();
        assert_eq!(completed, 1, "{key} completed exactly once");
    }
    assert_eq!(of(&ev, "for_each_started").len(), 1, "the fan-out was not begun again");
    assert_eq!(of(&ev, "run_resumed").len(), 1);
}

#[test]
fn components_can_be_referenced_by_digest_and_the_workflow_names_its_identity() {
    let dir = fresh_dir("flow-digest");
    let db = dir.join("journal.db");
    // A first run stores the component in the journal.
    let by_path =
        write(&dir, "name = \"a\"\nidentity = \"triage-bot\"\n[[steps]]\nname = \"s\"\ncomponent = \"{hostile}\"\n");
    let (code, first) = tether_json(&db, &["run", &by_path, "--input", r#"{"mode":"echo","n":1}"#, "--json"]);
    assert_eq!(code, Some(0), "{first}");
    let ev = events(&db, first["run_id"].as_str().unwrap());
    assert_eq!(ev[0]["identity"], "triage-bot", "the workflow's identity, as no --as was given");
    let (_, info) = tether_json(&db, &["inspect", artifacts::HOSTILE, "--json"]);
    let digest = info["sha256"].as_str().unwrap();

    let by_digest = dir.join("by-digest.toml");
    std::fs::write(&by_digest, format!("name = \"b\"\n[[steps]]\nname = \"s\"\ncomponent = \"sha256:{digest}\"\n"))
        .unwrap();
    let by_digest = by_digest.display().to_string();
    let (code, r) =
        tether_json(&db, &["run", &by_digest, "--input", r#"{"mode":"echo","n":2}"#, "--as", "ops", "--json"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["output"]["n"], 2);
    assert_eq!(events(&db, r["run_id"].as_str().unwrap())[0]["identity"], "ops", "--as wins");
    let o = tether_cmd(&db).args(["validate", &by_digest]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A digest the journal does not have, and one that is not a digest.
    let other = dir.join("other.toml");
    std::fs::write(
        &other,
        format!("name = \"c\"\n[[steps]]\nname = \"s\"\ncomponent = \"sha256:{}\"\n", "0".repeat(64)),
    )
    .unwrap();
    let o = tether_cmd(&db).args(["run", other.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("other.toml:4:13") && err.contains("no component with this digest is stored"), "{err}");
    std::fs::write(&other, "name = \"c\"\n[[steps]]\nname = \"s\"\ncomponent = \"sha256:abc\"\n").unwrap();
    let o = tether_cmd(&db).args(["validate", other.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("`sha256:abc` is not a sha256 digest"), "{err}");
}
