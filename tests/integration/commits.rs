//! How much a run costs the journal, counted (not timed): durable commits and events for
//! a pure run and for a run with one tool call. Output commit makes a pure step's end
//! durable in the background, and a new run's start goes with its first batch; what must
//! be durable before it leaves the host (a tool's effect and its result, the run's end,
//! with which its id is given out) is synced. If a change puts a sync
//! back on every step, or adds events, these counts say so.

use std::sync::Arc;

use serde_json::json;
use tether_runtime::{Driver, LeaseConfig};
use tether_store::{SqliteStore, StoreConfig};
use tether_types::store::Journal;
use tether_types::RunId;

use crate::support::{fresh_dir, hostile, workflow};

/// Runs `wf` once on a fresh journal; returns (commits, event kinds).
fn counted(name: &str, wf: &tether_runtime::LoadedWorkflow, input: serde_json::Value) -> (u64, Vec<String>) {
    let db = fresh_dir(name).join("journal.db");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&StoreConfig::new(db.display().to_string())).await.unwrap();
        let driver =
            Driver::new(tether_tests::runtime().clone(), Arc::new(store.clone())).with_leases(LeaseConfig::default());
        // A first run stores the components; the second is the one counted.
        let first = RunId::from_suffix(&format!("{name}-first")).unwrap();
        driver.start(wf, first, input.clone(), "test", |_| {}).await.unwrap();
        let before = store.commits();
        let id = RunId::from_suffix(name).unwrap();
        let report = driver.start(wf, id.clone(), input, "test", |_| {}).await.unwrap();
        assert!(report.error.is_none(), "{:?}", report.error);
        let commits = store.commits() - before;
        let kinds = store.events(id.as_str()).await.unwrap().into_iter().map(|e| e.kind).collect();
        (commits, kinds)
    })
}

#[test]
fn a_pure_ten_step_run_is_one_commit() {
    let mut text = String::from("name = \"ten\"\n");
    for i in 0..10 {
        text.push_str(&format!("[[steps]]\nname = \"s{i}\"\ncomponent = \"{{trivial}}\"\n"));
    }
    let (commits, kinds) = counted("commits-pure", &workflow(&text), json!({}));
    // run_started, then each step's attempt and end, then run_completed.
    let mut expected = vec!["run_started".to_string()];
    for _ in 0..10 {
        expected.extend(["step_attempt_started".to_string(), "step_completed".to_string()]);
    }
    expected.push("run_completed".into());
    assert_eq!(kinds, expected);
    // One commit, at the end: the start, every step and the end together, the lease taken
    // and given up in it. One or two more only if the host was slow enough (a loaded
    // machine running the whole suite) for buffered events to be sent meanwhile. Eleven
    // before output commit.
    assert!((1..=3).contains(&commits), "{commits} commits for a pure 10-step run");
}

#[test]
fn a_tool_call_is_synced_before_and_after_its_effect() {
    let wf = hostile("", "");
    let (commits, kinds) =
        counted("commits-tool", &wf, json!({"mode": "call-tool", "tool": "echo", "input": {"text": "hi"}}));
    let expected = [
        "run_started",
        "step_attempt_started",
        "tool_call_requested",
        "tool_call_completed",
        "step_completed",
        "run_completed",
    ];
    assert_eq!(kinds, expected);
    // The run up to the request (its start included), before the tool runs; its result,
    // before the step sees it; the end.
    assert!((3..=4).contains(&commits), "{commits} commits for a run with one tool call");
}
