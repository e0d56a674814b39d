//! Kills placed exactly at each sync point, just before it and just after it (the host
//! aborts there, as `kill -9` would: `TETHER_CRASH_AT_SYNC=N:before|after`). Output
//! commit keeps pure work in memory between sync points, so these are the instants where
//! a crash could lose or repeat what left the host. A governed refund crosses every kind
//! of point on its way (the payment tool before and after it runs, its end):
//! killed at any of them and continued, it pays exactly once, and its journal verifies
//! and replays.

use serde_json::json;

use crate::governance::{Refund, POLICY};
use crate::support::tether_cmd;

/// One refund, killed at sync `n` on `side`; `false` if the run has fewer syncs.
fn killed_at(n: u32, side: &str) -> bool {
    let r = Refund::new(&format!("sync-{n}-{side}"), "false", POLICY);
    let run = format!("run_sync-{n}-{side}");
    let input = json!({"order_id": "A-9", "amount": 40.0, "reason": "arrived damaged"}).to_string();
    let wf = r.workflow();
    let start = ["run", wf.as_str(), "--input", input.as_str(), "--run-id", run.as_str()];
    let o = tether_cmd(&r.db).env("TETHER_CRASH_AT_SYNC", format!("{n}:{side}")).args(start).output().unwrap();
    if o.status.code() == Some(0) {
        return false; // it ended before its n-th sync
    }
    assert_eq!(
        o.status.code(),
        None,
        "sync {n} {side}: the host did not abort: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Continue it: resumed, or started again if its start was never durable.
    let o = tether_cmd(&r.db).args(["resume", &run]).output().unwrap();
    let o = if String::from_utf8_lossy(&o.stderr).contains("unknown run") {
        tether_cmd(&r.db).args(start).output().unwrap()
    } else {
        o
    };
    assert_eq!(o.status.code(), Some(0), "sync {n} {side}: continuing: {}", String::from_utf8_lossy(&o.stderr));
    let key = format!("{run}/issue/0");
    let paid = r.ledger().lines().filter(|l| l.starts_with(&format!("{key}\t"))).count();
    assert_eq!(paid, 1, "sync {n} {side}: paid {paid} times:\n{}", r.ledger());
    for check in [vec!["verify", run.as_str()], vec!["replay", run.as_str()]] {
        let o = tether_cmd(&r.db).args(&check).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "sync {n} {side}: {check:?}: {}", String::from_utf8_lossy(&o.stdout));
    }
    true
}

#[test]
fn a_kill_just_before_or_just_after_any_sync_point_pays_once() {
    let mut killed = 0;
    for n in 1..=12 {
        let before = killed_at(n, "before");
        let after = killed_at(n, "after");
        assert_eq!(before, after, "sync {n} was reached on one side only");
        if !before {
            break;
        }
        killed += 2;
    }
    eprintln!("sync points: {killed} kills, each continued to one payment and a journal that verifies and replays");
    // The payment before and after it runs, the end: at least three syncs.
    assert!(killed >= 6, "only {killed} kills landed at sync points");
}

/// The CLI names a run as started ("resume it with ...") only once its start is durable,
/// and only while it goes on: a run that ends in the same commit as its start is named by
/// its report alone.
#[test]
fn a_run_is_named_started_only_once_its_start_is_durable() {
    use std::io::{BufRead, BufReader};
    let dir = crate::support::fresh_dir("named-started");
    let db = dir.join("journal.db");
    let wf = dir.join("slow.toml");
    let text = format!(
        "name = \"slow\"\n[[steps]]\nname = \"nap\"\ncomponent = {:?}\nbudget = {{ wall_time = \"30s\" }}\n",
        tether_tests::artifacts::HOSTILE
    );
    std::fs::write(&wf, text).unwrap();
    let wf = wf.display().to_string();

    // Slow: the line comes while the step still sleeps, and the start is in the journal.
    let input = json!({"mode": "sleep", "ms": 1500}).to_string();
    let mut child = tether_cmd(&db)
        .args(["run", &wf, "--input", &input, "--run-id", "run_slow"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut named = false;
    // Read to the end: a closed pipe would fail the run's later output.
    for line in stderr.lines() {
        let line = line.unwrap();
        if !named && line.contains("run run_slow started (resume it with `tether resume run_slow`") {
            named = true;
            assert!(child.try_wait().unwrap().is_none(), "named only after the run ended");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let path = db.display().to_string();
            let durable = rt.block_on(tether_store::testing::try_count_events(&path, "run_slow", "run_started"));
            assert_eq!(durable, Some(1), "named before its start was durable");
        }
    }
    assert!(named, "a run that goes on is named as started");
    assert!(child.wait().unwrap().success());

    // Fast: one commit, and no "started" line; the report names the run.
    let fast = json!({"mode": "sleep", "ms": 0}).to_string();
    let o = tether_cmd(&db).args(["run", &wf, "--input", &fast, "--run-id", "run_fast"]).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("started"), "{err}");
    assert!(err.contains("run run_fast completed"), "{err}");
}
