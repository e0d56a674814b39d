//! A journal can be copied safely:
//! - after every tether command that exits cleanly the SQLite write-ahead log is
//!   checkpointed (journal.db-wal absent or empty), so journal.db copied alone holds every
//!   run: the copy lists both runs completed and verifies;
//! - `tether backup OUT` writes a consistent copy that lists, verifies and replays both
//!   runs;
//! - `tether backup` refuses a file that exists (exit 2) and leaves it untouched.

use std::path::Path;

use serde_json::Value;
use tether_tests::repo_root;

use crate::chaos::PrivateDir;
use crate::support::{output, tether_cmd, tether_json};

/// Asserts the journal's write-ahead log is absent or empty, after `what`.
fn assert_wal_checkpointed(db: &Path, what: &str) {
    let wal = format!("{}-wal", db.display());
    match std::fs::metadata(&wal) {
        Ok(m) => assert_eq!(m.len(), 0, "after {what}, {wal} holds {} bytes (not checkpointed)", m.len()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{wal}: {e}"),
    }
}
/// Asserts the journal at `file` lists exactly `runs`, each completed, verifies, and
/// (when `replay`) replays each with no divergence.
fn assert_holds(db_env: &Path, file: &Path, runs: &[&str], replay: bool) {
    let file = file.display().to_string();
    let (code, listed) = tether_json(db_env, &["runs", "--db", &file, "--json"]);
    assert_eq!(code, Some(0), "runs --db {file}: {listed}");
    let mut ids: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, runs, "{file} lists: {listed}");
    assert!(listed.as_array().unwrap().iter().all(|r| r["status"] == "completed"), "{file}: {listed}");
    let o = tether_cmd(db_env).args(["verify", "--db", &file]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "verify --db {file}: {}", output(&o));
    if replay {
        for run in runs {
            let (code, r) = tether_json(db_env, &["replay", run, "--db", &file, "--json"]);
            assert_eq!(code, Some(0), "replay {run} --db {file}: {r}");
            assert_eq!(r["divergence"], Value::Null, "replay {run} --db {file}: {r}");
        }
    }
}

#[test]
fn a_journal_copied_alone_or_backed_up_holds_every_run() {
    let dir = PrivateDir::new("backup");
    let db = dir.join("journal.db");
    let wf = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    for run in ["run_first", "run_second"] {
        let (code, report) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", run, "--json"]);
        assert_eq!(code, Some(0), "{report}");
        assert_wal_checkpointed(&db, &format!("`tether run` ({run})"));
    }
    let o = tether_cmd(&db).args(["history", "run_first"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
    assert_wal_checkpointed(&db, "`tether history`");

    // journal.db alone, as a careless `cp` would take it.
    let copy = dir.join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    assert!(!dir.join("copy.db-wal").exists());
    assert_holds(&db, &copy, &["run_first", "run_second"], false);

    // A backup.
    let out = dir.join("backup.db");
    let o = tether_cmd(&db).args(["backup", &out.display().to_string()]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "backup: {}", output(&o));
    assert_wal_checkpointed(&db, "`tether backup`");
    assert_holds(&db, &out, &["run_first", "run_second"], true);

    // Refused over an existing file, which is left as it was: an earlier backup, or a
    // file that has nothing to do with tether.
    let before = std::fs::read(&out).unwrap();
    let o = tether_cmd(&db).args(["backup", &out.display().to_string()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "backup over an existing backup: {}", output(&o));
    assert_eq!(std::fs::read(&out).unwrap(), before, "the existing backup was changed");
    let precious = dir.join("precious.txt");
    std::fs::write(&precious, "not a journal").unwrap();
    let o = tether_cmd(&db).args(["backup", &precious.display().to_string()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "backup over an existing file: {}", output(&o));
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "not a journal");
}
