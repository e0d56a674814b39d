//! `tether copy` from a SQLite journal to PostgreSQL, one of whose runs is damaged (it is
//! named, not copied): killed part way and run again, then everything compared (runs,
//! statuses, every event, tokens with their revocations, plugins), the copied journal
//! verified, and a run that was waiting for a person continued on PostgreSQL.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tether_tests::{artifacts, repo_root};

use crate::chaos::{seed, Rng};
use crate::governance::run_id;
use crate::served::{token, Served};
use crate::support::{fresh_dir, output, tether_cmd, tether_json};

fn sorted_runs(db: &std::path::Path) -> Vec<(String, String)> {
    let (code, runs) = tether_json(db, &["runs", "--json", "--limit", "1000"]);
    assert_eq!(code, Some(0), "{runs}");
    let mut out: Vec<(String, String)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_sqlite_journal_copied_to_postgres_killed_part_way_finishes_verifies_and_runs_on() {
    let seed = seed();
    let dir = fresh_dir("copy-pg");
    let sqlite = dir.join("journal.db");
    let pg = PathBuf::from(crate::journal_pg::fresh_database("copy_target"));
    let root = repo_root();

    // The source: finished runs, a run waiting for alice, a token and a plugin.
    let triage = root.join("plugins/workflows/support-triage.toml").display().to_string();
    let ticket = format!("@{}", root.join("plugins/workflows/ticket.json").display());
    let mut finished = Vec::new();
    for _ in 0..6 {
        let (code, report) = tether_json(&sqlite, &["run", &triage, "--input", &ticket, "--json"]);
        assert_eq!(code, Some(0), "{report}");
        finished.push(run_id(&report));
    }
    // One finished run is damaged: its last event was cut.
    let cut = finished[0].clone();
    crate::conformance::block_on(tether_store::testing::delete_last_events(&sqlite.display().to_string(), &cut, 1));
    let refund = root.join("plugins/workflows/refund.toml").display().to_string();
    let request = format!("@{}", root.join("plugins/workflows/refund-request.json").display());
    let (code, report) = tether_json(&sqlite, &["run", &refund, "--input", &request, "--json"]);
    assert_eq!(code, Some(3), "{report}");
    let waiting = run_id(&report);
    let secret = token(&sqlite, "ci", "ci-bot", &["runner"]);
    let revoked = token(&sqlite, "old", "ci-bot", &["runner"]);
    let o = tether_cmd(&sqlite).args(["token", "revoke", "old"]).output().unwrap();
    assert!(o.status.success(), "{}", output(&o));
    let o = tether_cmd(&sqlite).args(["plugin", "add", artifacts::REDACT, "--version", "1.0.0"]).output().unwrap();
    assert!(o.status.success(), "{}", output(&o));

    // A copy killed at a random moment, then run again to the end.
    let delay = Rng(seed).below(150);
    let mut child = tether_cmd(&sqlite)
        .args(["copy", "--to", &pg.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(delay));
    let _ = child.kill();
    let _ = child.wait();
    // The damaged run is named and not copied; the others are, and verify there.
    let (code, copied) = tether_json(&sqlite, &["copy", "--to", &pg.display().to_string(), "--json"]);
    assert_eq!(code, Some(1), "seed {seed}, killed after {delay} ms: {copied}");
    assert_eq!(copied["verified"], 6, "{copied}");
    assert_eq!(copied["broken"], Value::Array(vec![]), "{copied}");
    let c = &copied["copied"];
    assert_eq!(c["runs"].as_u64().unwrap() + c["present"].as_u64().unwrap(), 6, "{copied}");
    let refused = c["refused"].as_array().unwrap();
    assert_eq!((refused.len(), refused[0]["run_id"].as_str()), (1, Some(cut.as_str())), "{copied}");
    assert!(refused[0]["why"].as_str().unwrap().contains("its tail was cut"), "{copied}");
    eprintln!("copy: killed after {delay} ms (seed {seed}), then {c}");

    // The same runs with the same statuses, every event identical, the same tokens
    // and plugins.
    let runs: Vec<(String, String)> = sorted_runs(&sqlite).into_iter().filter(|(run, _)| *run != cut).collect();
    assert_eq!(runs.len(), 6);
    assert_eq!(sorted_runs(&pg), runs);
    for (run, _) in &runs {
        let (_, from) = tether_json(&sqlite, &["history", run, "--json"]);
        let (_, to) = tether_json(&pg, &["history", run, "--json"]);
        assert_eq!(from, to, "{run}");
    }
    let list = |db: &std::path::Path, what: &[&str]| tether_json(db, what).1;
    assert_eq!(list(&sqlite, &["token", "list", "--json"]), list(&pg, &["token", "list", "--json"]));
    assert_eq!(list(&sqlite, &["plugin", "list", "--json"]), list(&pg, &["plugin", "list", "--json"]));
    // The token's hash came along: a server on PostgreSQL accepts the same secret.
    let served = Served::start_with(&pg, dir.join("serve.log"), &[], &[]);
    let (status, listed) = served.get_as(&secret, "/v1/runs");
    assert_eq!(status, 200, "{listed}");
    // A token revoked in the source stays revoked.
    let (status, refused) = served.get_as(&revoked, "/v1/runs");
    assert_eq!(status, 401, "{refused}");
    drop(served);

    // A finished run replays on PostgreSQL; the waiting one goes on there.
    let done = runs.iter().find(|(_, s)| s == "completed").unwrap().0.clone();
    let o = tether_cmd(&pg).args(["replay", &done]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
    let (code, report) = tether_json(&pg, &["approve", &waiting, "refund", "--as", "alice", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["refunded"], true);

    // Copying again writes nothing: every run is there already, and the continued one
    // now differs from the source's: it is named, the others passed over (exit 1).
    let (code, again) = tether_json(&sqlite, &["copy", "--to", &pg.display().to_string(), "--json"]);
    assert_eq!(code, Some(1), "{again}");
    let counts = (again["copied"]["runs"].as_u64(), again["copied"]["present"].as_u64());
    assert_eq!(counts, (Some(0), Some(5)), "{again}");
    let refused = again["copied"]["refused"].as_array().unwrap();
    let why = |run: &str| refused.iter().find(|r| r["run_id"] == run).and_then(|r| r["why"].as_str());
    assert_eq!(refused.len(), 2, "{again}");
    assert!(why(&waiting).unwrap().contains("is in the destination journal already, and differs"), "{again}");
    assert!(why(&cut).unwrap().contains("its tail was cut"), "{again}");
}
