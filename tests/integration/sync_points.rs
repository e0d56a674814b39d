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
