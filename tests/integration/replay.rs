//! `tether replay` and `tether verify` on recorded runs.

use serde_json::Value;
use tether_tests::artifacts;

use crate::support::{fresh_dir, tether_cmd, tether_json};

/// Records one run of the replay probe (a step that logs, reads the wall clock, calls
/// `echo` and reports usage); returns (journal path, run id, events).
fn recorded_run(name: &str) -> (std::path::PathBuf, String, Vec<Value>) {
    let dir = fresh_dir(name);
    let db = dir.join("journal.db");
    let wf = dir.join("wf.toml");
    std::fs::write(
        &wf,
        format!(
            "name = \"probe\"\n[tools.echo]\ncomponent = {:?}\n[[steps]]\nname = \"probe\"\ncomponent = {:?}\ntools = [\"echo\"]\n",
            artifacts::ECHO_TOOL,
            artifacts::REPLAY_PROBE
        ),
    )
    .unwrap();
    let (code, report) = tether_json(&db, &["run", wf.to_str().unwrap(), "--input", r#"{"q": 1}"#, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    let run = report["run_id"].as_str().unwrap().to_string();
    let (_, events) = tether_json(&db, &["history", &run, "--json"]);
    (db, run, events.as_array().unwrap().clone())
}

fn seq_of(events: &[Value], kind: &str) -> u64 {
    events.iter().find(|e| e["type"] == kind).unwrap_or_else(|| panic!("no {kind} event"))["seq"].as_u64().unwrap()
}

#[test]
fn a_recorded_run_replays_clean() {
    let (db, run, events) = recorded_run("replay-clean");
    assert!(
        events.iter().any(|e| e["type"] == "host_read" && e["read"]["source"] == "wall_clock"),
        "the probe read the clock"
    );
    let o = tether_cmd(&db).args(["replay", &run]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("replay matched {} events (1 step attempts re-executed)", events.len())
    );
    // Replay has no side effects: the journal is unchanged.
    let (_, after) = tether_json(&db, &["history", &run, "--json"]);
    assert_eq!(after.as_array().unwrap().len(), events.len());
}

#[test]
fn a_component_that_calls_a_tool_differently_diverges_at_that_call() {
    let (db, run, events) = recorded_run("replay-tool");
    let with = format!("probe={}", artifacts::REPLAY_PROBE_TOOL);
    let (code, r) = tether_json(&db, &["replay", &run, "--with", &with, "--json"]);
    assert_eq!(code, Some(1));
    let d = &r["divergence"];
    assert_eq!(d["seq"].as_u64(), Some(seq_of(&events, "tool_call_requested")));
    assert_eq!(d["step"], "probe");
    assert_eq!(d["expected"]["input"]["x"], 1);
    assert_eq!(d["actual"]["type"], "tool_call_requested");
    assert_eq!(d["actual"]["input"]["x"], 2);
    assert_eq!(r["matched"].as_u64(), Some(seq_of(&events, "tool_call_requested") - 1));
}

#[test]
fn a_component_that_reads_the_clock_differently_diverges_at_that_read() {
    let (db, run, events) = recorded_run("replay-clock");
    let with = format!("probe={}", artifacts::REPLAY_PROBE_CLOCK);
    let (code, r) = tether_json(&db, &["replay", &run, "--with", &with, "--json"]);
    assert_eq!(code, Some(1));
    let d = &r["divergence"];
    // The recorded run called the tool right after reading the wall clock; the new
    // version reads the monotonic clock there instead.
    assert_eq!(d["seq"].as_u64(), Some(seq_of(&events, "tool_call_requested")));
    assert_eq!(d["expected"]["type"], "tool_call_requested");
    assert_eq!(d["actual"]["type"], "host_read");
    assert_eq!(d["actual"]["read"]["source"], "monotonic_clock");

    // Human output names the position, the expected and the actual event.
    let o = tether_cmd(&db).args(["replay", &run, "--with", &with]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("at event:  {}", seq_of(&events, "tool_call_requested"))), "{text}");
    assert!(text.contains("expected:  {\"type\":\"tool_call_requested\""), "{text}");
}

#[test]
fn replay_with_an_unknown_step_is_a_usage_error() {
    let (db, run, _) = recorded_run("replay-unknown-step");
    let o = tether_cmd(&db)
        .args(["replay", &run, "--with", &format!("nope={}", artifacts::REPLAY_PROBE)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("--with names step `nope`, which this run does not have (its steps: probe)"));
}

#[test]
fn verify_detects_an_edited_event_and_nothing_trusts_it() {
    let (db, run, events) = recorded_run("verify-tamper");
    let o = tether_cmd(&db).args(["verify", &run]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{} events, hash chain intact", events.len())));

    let seq = seq_of(&events, "usage_reported");
    let path = db.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let original = rt.block_on(tether_store::testing::payload(&path, &run, seq));
    rt.block_on(tether_store::testing::tamper_payload(&path, &run, seq, &original.replace("7.0", "7000.0")));

    let expected = format!("run {run}: the hash chain is broken at event {seq}");
    for args in [vec!["verify", &run], vec!["history", &run], vec!["replay", &run], vec!["resume", &run]] {
        let o = tether_cmd(&db).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn resuming_an_unknown_run_is_a_usage_error() {
    let dir = fresh_dir("unknown-run");
    assert_eq!(tether_cmd(&dir.join("journal.db")).arg("migrate").output().unwrap().status.code(), Some(0));
    let o = tether_cmd(&dir.join("journal.db")).args(["resume", "run_doesnotexist"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown run `run_doesnotexist`; `tether runs` lists the runs"));
}

#[test]
fn a_run_id_cannot_be_used_twice() {
    let (db, run, events) = recorded_run("duplicate-id");
    let wf = tether_tests::repo_root().join("target/test-dirs/duplicate-id/wf.toml");
    let o = tether_cmd(&db).args(["run", wf.to_str().unwrap(), "--run-id", &run]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("run {run} already exists; continue it with `tether resume {run}`")), "{err}");
    let (_, after) = tether_json(&db, &["history", &run, "--json"]);
    assert_eq!(after.as_array().unwrap().len(), events.len(), "the recorded run is untouched");
}
