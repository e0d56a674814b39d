//! `tether verify` names every kind of damage to a recorded run, through the real
//! executable, on journals damaged on purpose (tether_store::testing):
//! - a cut tail (the last 1, 2 or 3 events deleted): exit 1, the run named, "tail was cut";
//! - an event moved from one run to the end of another: both runs named;
//! - a run index status that disagrees with the journal (`waiting` on a completed run,
//!   `completed` on a waiting run, a bogus `zzz`): the run named, and `tether runs` still
//!   lists every run, the bogus one as `damaged`;
//! - a deleted run index row: the run named;
//! - an intact journal: exit 0, every run intact.
//!
//! Both forms are checked each time: `tether verify RUN` and `tether verify` (every run in
//! the journal), which must name each damaged run and no intact one; and `--json`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tether_tests::repo_root;

use crate::chaos::PrivateDir;
use crate::support::{tether_cmd, tether_json};

/// Runs tether_store::testing's async damage helpers.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn example(file: &str) -> String {
    repo_root().join("plugins/workflows").join(file).display().to_string()
}

/// A fresh journal for one test, in a directory that lives as long as the first value.
fn journal(name: &str) -> (PrivateDir, PathBuf, String) {
    let dir = PrivateDir::new(&format!("verify-{name}"));
    let db = dir.join("journal.db");
    let path = db.display().to_string();
    (dir, db, path)
}

/// Runs the support-triage example to completion as `run`.
fn complete(db: &Path, run: &str) {
    let input = format!("@{}", example("ticket.json"));
    let (code, report) =
        tether_json(db, &["run", &example("support-triage.toml"), "--input", &input, "--run-id", run, "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "completed");
}

/// Runs the refund example until it waits for an approval (exit 3) as `run`.
fn waiting(db: &Path, run: &str) {
    let input = format!("@{}", example("refund-request.json"));
    let (code, report) =
        tether_json(db, &["run", &example("refund.toml"), "--input", &input, "--run-id", run, "--json"]);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["status"], "waiting");
}

struct Verified {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Verified {
    /// Every problem reported about `run`: lines `error: run RUN: PROBLEM` on stderr.
    fn damage(&self, run: &str) -> Vec<&str> {
        let prefix = format!("error: run {run}: ");
        self.stderr.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect()
    }

    /// Whether `run` is reported intact (`run RUN: N events, hash chain intact ...`).
    fn intact(&self, run: &str) -> bool {
        let prefix = format!("run {run}: ");
        self.stdout.lines().any(|l| l.starts_with(&prefix) && l.contains("hash chain intact"))
            && self.damage(run).is_empty()
    }
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\nstdout:\n{}stderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

/// `tether verify [RUN]`.
fn verify(db: &Path, run: Option<&str>) -> Verified {
    let o = tether_cmd(db).arg("verify").args(run).output().unwrap();
    Verified {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `tether verify --json` (every run): run id -> its problems.
fn verify_json(db: &Path) -> (Option<i32>, Vec<(String, Vec<String>)>) {
    let (code, v) = tether_json(db, &["verify", "--json"]);
    let checked = v
        .as_array()
        .unwrap_or_else(|| panic!("verify --json prints an array: {v}"))
        .iter()
        .map(|c| {
            let problems = c["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
            (c["run_id"].as_str().unwrap().to_string(), problems)
        })
        .collect();
    (code, checked)
}

/// Asserts `tether verify RUN` exits 1 naming `run` with a problem containing `says`, and
/// returns its problems.
fn assert_damaged(db: &Path, run: &str, says: &str) -> Vec<String> {
    let v = verify(db, Some(run));
    assert_eq!(v.code, Some(1), "verify {run}: {v}");
    let damage = v.damage(run);
    assert!(damage.iter().any(|p| p.contains(says)), "verify {run} should say `{says}`: {v}");
    damage.into_iter().map(str::to_string).collect()
}

/// Asserts `tether verify` (every run) and `tether verify --json` exit 1, name exactly the
/// runs in `damaged` as damaged, and report every run in `intact` as intact.
fn assert_journal_damaged(db: &Path, damaged: &[&str], intact: &[&str]) {
    let v = verify(db, None);
    assert_eq!(v.code, Some(1), "verify (all): {v}");
    for run in damaged {
        assert!(!v.damage(run).is_empty(), "verify (all) should name {run}: {v}");
    }
    for run in intact {
        assert!(v.intact(run), "verify (all) should report {run} intact: {v}");
    }
    let (code, checked) = verify_json(db);
    assert_eq!(code, Some(1), "verify --json: {checked:?}");
    for run in damaged.iter().chain(intact) {
        let problems = &checked.iter().find(|(r, _)| r == run).unwrap_or_else(|| panic!("{run} in {checked:?}")).1;
        assert_eq!(problems.is_empty(), intact.contains(run), "verify --json about {run}: {problems:?}");
    }
}

#[test]
fn a_cut_tail_is_named() {
    let (_dir, db, path) = journal("cut");
    complete(&db, "run_intact");
    for n in 1..=3 {
        let run = format!("run_cut{n}");
        complete(&db, &run);
        block_on(tether_store::testing::delete_last_events(&path, &run, n));
        let problems = assert_damaged(&db, &run, "tail was cut");
        eprintln!("verify: {n} event(s) cut from {run}: {problems:?}");
    }
    assert_journal_damaged(&db, &["run_cut1", "run_cut2", "run_cut3"], &["run_intact"]);
}

#[test]
fn an_event_moved_to_another_run_is_named_in_both() {
    let (_dir, db, path) = journal("moved");
    for run in ["run_from", "run_to", "run_intact"] {
        complete(&db, run);
    }
    block_on(tether_store::testing::move_last_event(&path, "run_from", "run_to"));
    let from = assert_damaged(&db, "run_from", "tail was cut");
    let v = verify(&db, Some("run_to"));
    assert_eq!(v.code, Some(1), "verify run_to: {v}");
    assert!(!v.damage("run_to").is_empty(), "verify run_to: {v}");
    eprintln!("verify: moved an event: run_from {from:?}; run_to {:?}", v.damage("run_to"));
    assert_journal_damaged(&db, &["run_from", "run_to"], &["run_intact"]);
}

#[test]
fn an_index_status_that_disagrees_with_the_journal_is_named() {
    let (_dir, db, path) = journal("status");
    for run in ["run_marked-waiting", "run_bogus", "run_intact"] {
        complete(&db, run);
    }
    waiting(&db, "run_marked-completed");
    waiting(&db, "run_waiting");
    block_on(tether_store::testing::set_index_status(&path, "run_marked-waiting", "waiting"));
    block_on(tether_store::testing::set_index_status(&path, "run_bogus", "zzz"));
    block_on(tether_store::testing::set_index_status(&path, "run_marked-completed", "completed"));
    assert_damaged(&db, "run_marked-waiting", "run index says `waiting`, but its journal says `completed`");
    assert_damaged(&db, "run_bogus", "`zzz`");
    assert_damaged(&db, "run_marked-completed", "run index says `completed`, but its journal says `waiting`");
    assert_journal_damaged(
        &db,
        &["run_marked-waiting", "run_bogus", "run_marked-completed"],
        &["run_intact", "run_waiting"],
    );

    // `tether runs` still lists every run, the bogus one as damaged.
    let o = tether_cmd(&db).arg("runs").output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "runs: {stdout}{}", String::from_utf8_lossy(&o.stderr));
    let line = |run: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(run))
            .unwrap_or_else(|| panic!("`tether runs` lists {run}:\n{stdout}"))
            .to_string()
    };
    assert!(line("run_bogus").split_whitespace().any(|w| w == "damaged"), "{stdout}");
    assert!(line("run_marked-waiting").split_whitespace().any(|w| w == "waiting"), "{stdout}");
    assert!(line("run_marked-completed").split_whitespace().any(|w| w == "completed"), "{stdout}");
    assert!(line("run_intact").split_whitespace().any(|w| w == "completed"), "{stdout}");
    assert!(line("run_waiting").split_whitespace().any(|w| w == "waiting"), "{stdout}");
    let (code, runs) = tether_json(&db, &["runs", "--json"]);
    assert_eq!(code, Some(0));
    let status = |run: &str| runs.as_array().unwrap().iter().find(|r| r["run_id"] == run).map(|r| r["status"].clone());
    assert_eq!(status("run_bogus"), Some(Value::from("damaged")), "{runs}");
    assert_eq!(runs.as_array().unwrap().len(), 5, "{runs}");
}

#[test]
fn a_missing_index_row_is_named() {
    let (_dir, db, path) = journal("row");
    for run in ["run_unindexed", "run_intact"] {
        complete(&db, run);
    }
    block_on(tether_store::testing::delete_index_row(&path, "run_unindexed"));
    assert_damaged(&db, "run_unindexed", "no row");
    assert_journal_damaged(&db, &["run_unindexed"], &["run_intact"]);
}

#[test]
fn an_intact_journal_verifies() {
    let (_dir, db, _) = journal("intact");
    for run in ["run_one", "run_two"] {
        complete(&db, run);
    }
    waiting(&db, "run_waiting");
    for run in ["run_one", "run_two", "run_waiting"] {
        let v = verify(&db, Some(run));
        assert_eq!(v.code, Some(0), "verify {run}: {v}");
        assert!(v.intact(run), "verify {run}: {v}");
    }
    let v = verify(&db, None);
    assert_eq!(v.code, Some(0), "verify (all): {v}");
    for run in ["run_one", "run_two", "run_waiting"] {
        assert!(v.intact(run), "verify (all) should report {run} intact: {v}");
    }
    let (code, checked) = verify_json(&db);
    assert_eq!(code, Some(0));
    assert_eq!(checked.len(), 3, "{checked:?}");
    assert!(checked.iter().all(|(_, p)| p.is_empty()), "{checked:?}");
}
