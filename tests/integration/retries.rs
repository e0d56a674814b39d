//! Retries by failure class: backoff recorded and waited, non-retryable classes not
//! retried, and a backoff that survives the host being killed.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tether_tests::artifacts;

use crate::support::{fresh_dir, tether_cmd, tether_json};

fn flaky_workflow(dir: &std::path::Path, retry: &str) -> String {
    std::fs::create_dir_all(dir.join("ledger")).unwrap();
    let text = format!(
        "name = \"flaky\"\n[tools.ledger]\ncomponent = {:?}\ndirs = [{{ host = \"ledger\", guest = \"/ledger\", write = true }}]\n\
         [[steps]]\nname = \"call-upstream\"\ncomponent = {:?}\ntools = [\"ledger\"]\nretry = {{ {retry} }}\n",
        artifacts::LEDGER_TOOL,
        artifacts::FLAKY_STEP
    );
    let path = dir.join("flaky.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn a_transient_failure_is_retried_and_succeeds_on_attempt_3_with_backoff_recorded() {
    let dir = fresh_dir("retry-3");
    let db = dir.join("journal.db");
    let wf = flaky_workflow(&dir, "max_attempts = 5, initial_backoff = \"100ms\", multiplier = 2.0, jitter = 0.0");
    let (code, report) = tether_json(&db, &["run", &wf, "--input", r#"{"succeed_on": 3}"#, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["succeeded_on_try"], 3);

    let run = report["run_id"].as_str().unwrap();
    let (_, events) = tether_json(&db, &["history", run, "--json"]);
    let events = events.as_array().unwrap();
    let failed = of_type(events, "step_failed");
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|f| f["failure"]["class"] == "guest_error" && f["failure"]["guest_kind"] == "transient"));
    let scheduled = of_type(events, "retry_scheduled");
    assert_eq!(scheduled.iter().map(|s| s["attempt"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(scheduled.iter().map(|s| s["backoff_ms"].as_u64().unwrap()).collect::<Vec<_>>(), vec![100, 200]);
    let started = of_type(events, "step_attempt_started");
    assert_eq!(started.iter().map(|s| s["attempt"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    for (s, next) in scheduled.iter().zip(&started[1..]) {
        assert!(next["at_us"].as_u64() >= s["not_before_us"].as_u64(), "attempt started before its backoff ended");
    }
    assert_eq!(of_type(events, "step_completed")[0]["attempt"], 3);
}

#[test]
fn a_non_retryable_class_is_not_retried() {
    let dir = fresh_dir("retry-denied");
    let db = dir.join("journal.db");
    let wf = dir.join("wf.toml");
    // `guest_error` covers any failure the guest returns, but never `denied`.
    std::fs::write(
        &wf,
        format!(
            "name = \"d\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\nretry = {{ max_attempts = 3, on = [\"guest_error\", \"trap\"] }}\n",
            artifacts::HOSTILE
        ),
    )
    .unwrap();
    let (code, report) =
        tether_json(&db, &["run", wf.to_str().unwrap(), "--input", r#"{"mode":"ungranted-tool"}"#, "--json"]);
    assert_eq!(code, Some(1));
    assert_eq!(report["error"]["class"], "denied");
    let (_, events) = tether_json(&db, &["history", report["run_id"].as_str().unwrap(), "--json"]);
    assert_eq!(of_type(events.as_array().unwrap(), "step_attempt_started").len(), 1);
    assert!(of_type(events.as_array().unwrap(), "retry_scheduled").is_empty());

    // Asking to retry a class that is never retried is a manifest error.
    std::fs::write(
        &wf,
        format!(
            "name = \"d\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\nretry = {{ on = [\"denied\"] }}\n",
            artifacts::HOSTILE
        ),
    )
    .unwrap();
    let o = tether_cmd(&db).args(["validate", wf.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("step `s`: `denied` is never retried"));
}

#[test]
fn a_host_killed_during_a_backoff_resumes_it_at_the_right_time() {
    let dir = fresh_dir("retry-kill");
    let db = dir.join("journal.db");
    let wf = flaky_workflow(&dir, "max_attempts = 3, initial_backoff = \"1500ms\", jitter = 0.0");
    let run = "run_backoff-kill";
    let mut child = tether_cmd(&db)
        .args(["run", &wf, "--input", r#"{"succeed_on": 2}"#, "--run-id", run])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the retry is durably scheduled, then kill the host in its backoff.
    let scheduled = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            let o = tether_cmd(&db).args(["history", run, "--json"]).output().unwrap();
            let events: Value = serde_json::from_slice(&o.stdout).ok()?;
            events.as_array()?.iter().find(|e| e["type"] == "retry_scheduled").cloned()
        })
        .expect("a retry was scheduled");
    child.kill().unwrap();
    child.wait().unwrap();

    let (code, report) = tether_json(&db, &["resume", run, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["succeeded_on_try"], 2);
    let (_, events) = tether_json(&db, &["history", run, "--json"]);
    let events = events.as_array().unwrap();
    let second = of_type(events, "step_attempt_started")[1];
    assert_eq!(second["attempt"], 2);
    assert!(
        second["at_us"].as_u64().unwrap() >= scheduled["not_before_us"].as_u64().unwrap(),
        "the resumed host started attempt 2 before the recorded backoff ended"
    );
    assert_eq!(of_type(events, "run_resumed").len(), 1);
}

#[test]
fn the_progress_shows_each_attempt_and_the_wait_before_the_next() {
    let dir = fresh_dir("retry-progress");
    let db = dir.join("journal.db");
    let wf = flaky_workflow(&dir, "max_attempts = 5, initial_backoff = \"100ms\", multiplier = 2.0, jitter = 0.0");
    let o = tether_cmd(&db).args(["run", &wf, "--input", r#"{"succeed_on": 3}"#]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("attempt 1 failed; attempt 2 in 100.0ms"), "{err}");
    assert!(err.contains("attempt 2 failed; attempt 3 in 200.0ms"), "{err}");
    assert!(err.contains("(attempt 3)"), "{err}");
}
