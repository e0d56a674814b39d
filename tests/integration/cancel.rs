//! `tether cancel`: a waiting, paused or interrupted run is cancelled at once, its completed
//! steps undone, its status `cancelled`; a run another live process executes is refused.

use std::time::{Duration, Instant};

use serde_json::Value;
use tether_tests::artifacts;

use crate::governance::{of_type, Refund, POLICY};
use crate::support::{fresh_dir, output, tether_cmd, tether_json};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_run_waiting_for_approval_is_cancelled_and_nothing_is_paid() {
    let r = Refund::new("cancel-waiting", "true", POLICY);
    let (code, report) = r.run(240.0, &[]);
    assert_eq!(code, Some(3), "{report}");
    let run = report["run_id"].as_str().unwrap().to_string();

    let o = r.cli(&["cancel", &run[..16], "--as", "alice", "--reason", "customer withdrew", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(after["error"]["class"], "cancelled", "{after}");
    assert_eq!(after["error"]["message"], "cancelled by alice: customer withdrew");

    let events = r.events(&run);
    let cancelled = of_type(&events, "run_cancelled");
    assert_eq!(
        (cancelled[0]["by"].as_str(), cancelled[0]["reason"].as_str()),
        (Some("alice"), Some("customer withdrew"))
    );
    assert_eq!(events.last().unwrap()["type"], "run_failed");
    assert!(r.ledger().is_empty(), "a cancelled refund paid: {}", r.ledger());
    let (_, view) = tether_json(&r.db, &["show", &run, "--json"]);
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["waiting_on"], Value::Array(Vec::new()));
    let (_, listed) = tether_json(&r.db, &["runs", "--status", "cancelled", "--json"]);
    assert_eq!(listed[0]["run_id"], run.as_str());
    let (_, inbox) = tether_json(&r.db, &["inbox", "--json"]);
    assert_eq!(inbox, Value::Array(Vec::new()), "a cancelled run's request is still in the inbox");
    let (code, verified) = tether_json(&r.db, &["verify", &run, "--json"]);
    assert_eq!(code, Some(0), "{verified}");
    // Neither a success nor a failure in the figures.
    let (_, stats) = tether_json(&r.db, &["stats", "--json"]);
    assert_eq!((stats["cancelled"].as_u64(), stats["finished"].as_u64()), (Some(1), Some(0)), "{stats}");

    // Over is over: no second cancel, no late decision.
    let o = r.cli(&["cancel", &run, "--as", "bob"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("has already ended (cancelled)"), "{}", stderr(&o));
    let o = r.cli(&["approve", &run, "refund", "--as", "alice"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("has ended (cancelled)"), "{}", stderr(&o));
}

/// A two-step saga: `book` (undone by the echo tool), then `wait` sleeping `ms`.
fn saga(dir: &std::path::Path, ms: u64) -> String {
    let text = format!(
        r#"name = "trip"
[tools.echo]
component = {echo:?}
[[steps]]
name = "book"
component = {hostile:?}
input = "{{'mode': 'echo', 'seat': '12A'}}"
compensate = {{ tool = "echo" }}
[[steps]]
name = "wait"
component = {hostile:?}
needs = ["book"]
input = "{{'mode': 'sleep', 'ms': {ms}}}"
budget = {{ wall_time = "60s" }}
"#,
        echo = artifacts::ECHO_TOOL,
        hostile = artifacts::HOSTILE,
    );
    let path = dir.join("trip.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Starts the saga as `run` and SIGKILLs it once `book` has completed (`wait` sleeping):
/// a run its host left in the middle.
fn start_and_kill(db: &std::path::Path, wf: &str, run: &str) {
    let mut child = tether_cmd(db)
        .args(["run", wf, "--run-id", run, "--input", "{}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(db, run, "step_completed");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Polls `history RUN` until an event of `kind` is there.
fn wait_for(db: &std::path::Path, run: &str, kind: &str) {
    let start = Instant::now();
    loop {
        let o = tether_cmd(db).args(["history", run, "--json"]).output().unwrap();
        if let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(&o.stdout) {
            if events.iter().any(|e| e["type"] == kind) {
                return;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no {kind} in {run}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_run_in_flight_is_cancelled_by_the_host_executing_it() {
    let dir = fresh_dir("cancel-live");
    let db = dir.join("journal.db");
    let wf = saga(&dir, 60_000);
    let run = "run_cancel-live";
    let child = tether_cmd(&db)
        .args(["run", &wf, "--run-id", run, "--input", "{}"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&db, run, "step_completed");
    std::thread::sleep(Duration::from_millis(300)); // `wait` is sleeping in its sandbox
    let started = Instant::now();
    let o = tether_cmd(&db).args(["cancel", run, "--as", "ops", "--reason", "stop", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(stderr(&o).contains("is being executed by another process: asked it to cancel"), "{}", output(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["error"]["message"], "cancelled by ops: stop", "{report}");
    // The executing process interrupted its 60 s attempt and ended the run itself.
    let done = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&done.stderr).contains("cancelled by ops: stop"), "{}", output(&done));
    let (_, events) = tether_json(&db, &["history", run, "--json"]);
    let events = events.as_array().unwrap();
    assert_eq!(of_type(events, "run_cancelled")[0]["by"], "ops");
    assert_eq!(of_type(events, "step_compensated").len(), 1);
    assert!(!events.iter().any(|e| e["type"] == "step_completed" && e["step"] == "wait"), "the sleep ran to its end");
    let o = tether_cmd(&db).args(["verify", run]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
}

#[test]
fn a_request_whose_host_died_is_carried_out_by_the_next_resume() {
    let dir = fresh_dir("cancel-request");
    let db = dir.join("journal.db");
    let wf = saga(&dir, 20_000);
    let run = "run_cancel-request";
    start_and_kill(&db, &wf, run);
    // A request left for a host that died before it looked.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use tether_types::store::{CancelRequests, Upkeep};
        let store =
            tether_store::SqliteStore::open(&tether_store::StoreConfig::new(db.display().to_string())).await.unwrap();
        assert!(store.request_cancel(run, "ops", Some("late")).await.unwrap());
        assert!(!store.request_cancel(run, "bob", None).await.unwrap(), "the first request is kept");
        store.close().await.unwrap();
    });
    let (code, report) = tether_json(&db, &["resume", run, "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["message"], "cancelled by ops: late", "{report}");
    let (_, view) = tether_json(&db, &["show", run, "--json"]);
    assert_eq!(view["status"], "cancelled");
}

#[test]
fn a_killed_run_is_cancelled_with_its_completed_steps_undone() {
    let dir = fresh_dir("cancel-saga");
    let db = dir.join("journal.db");
    let wf = saga(&dir, 20_000);
    let run = "run_cancel-saga";
    // Killed mid-run (`book` done, `wait` sleeping): the cancel takes the dead host's run.
    start_and_kill(&db, &wf, run);
    let o = tether_cmd(&db).args(["cancel", run, "--as", "ops", "--reason", "trip called off"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
    assert!(
        stderr(&o).contains("cancelled by ops: trip called off; its completed steps were undone"),
        "{}",
        output(&o)
    );

    let (_, events) = tether_json(&db, &["history", run, "--json"]);
    let events = events.as_array().unwrap();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let at = |k: &str| kinds.iter().position(|x| *x == k).unwrap_or_else(|| panic!("no {k}: {kinds:?}"));
    assert!(at("run_cancelled") < at("compensation_begun") && at("compensation_begun") < at("step_compensated"));
    assert_eq!(kinds.last(), Some(&"run_compensated"));
    let undone = events.iter().find(|e| e["type"] == "step_compensated").unwrap();
    assert_eq!((undone["step"].as_str(), undone["via"].as_str()), (Some("book"), Some("tool:echo")));
    assert_eq!(undone["result"]["ok"]["output"]["seat"], "12A", "the compensation saw what it undoes");

    let (_, view) = tether_json(&db, &["show", run, "--json"]);
    assert_eq!(view["status"], "cancelled");
    for check in ["replay", "verify"] {
        let o = tether_cmd(&db).args([check, run]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{check}: {}", output(&o));
    }
    // A resume of the cancelled run only reports it.
    let before = events.len();
    let (code, report) = tether_json(&db, &["resume", run, "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "cancelled");
    let (_, events) = tether_json(&db, &["history", run, "--json"]);
    assert_eq!(events.as_array().unwrap().len(), before, "a resume after the end wrote events");
}

#[test]
fn a_cancel_killed_before_the_run_ended_is_finished_by_the_next_resume() {
    let dir = fresh_dir("cancel-resume");
    let db = dir.join("journal.db");
    let wf = saga(&dir, 20_000);
    let run = "run_cancel-resume";
    start_and_kill(&db, &wf, run);
    // Record the cancel, then kill the canceller as soon as the cancel is durable.
    let mut canceller = tether_cmd(&db)
        .args(["cancel", run, "--as", "ops"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&db, run, "run_cancelled");
    let _ = canceller.kill();
    canceller.wait().unwrap();
    // Whatever the canceller got done, a resume finishes the cancellation.
    let (code, report) = tether_json(&db, &["resume", run, "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "cancelled", "{report}");
    let (_, events) = tether_json(&db, &["history", run, "--json"]);
    let events = events.as_array().unwrap();
    assert_eq!(of_type(events, "run_cancelled").len(), 1);
    assert_eq!(of_type(events, "step_compensated").len(), 1, "the completed step is undone once");
    let (_, view) = tether_json(&db, &["show", run, "--json"]);
    assert_eq!(view["status"], "cancelled");
}
