//! The SQLite journal store: the conformance suite every backend passes, and what is
//! SQLite's own: refusing files that are not ours or are newer, and processes racing to
//! create one journal.

use std::sync::Arc;

use tether_store::{testing, SqliteStore, StoreConfig};
use tether_types::store::JournalStore;

use crate::conformance::{conformance_suite, Backend};

fn db_path(name: &str) -> String {
    let dir = tether_tests::repo_root().join("target").join("journal-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path.display().to_string()
}

/// SQLite journals under `target/journal-tests`, one file per case.
const SQLITE: Backend = Backend {
    fresh: |name, cap| {
        Box::pin(async move {
            let mut config = StoreConfig::new(db_path(name));
            if let Some(cap) = cap {
                config.max_event_bytes = cap;
            }
            Arc::new(SqliteStore::open(&config).await.unwrap()) as Arc<dyn JournalStore>
        })
    },
    reopen: |name| {
        Box::pin(async move {
            let path = tether_tests::repo_root().join("target").join("journal-tests").join(format!("{name}.db"));
            Arc::new(SqliteStore::open(&StoreConfig::new(path.display().to_string())).await.unwrap())
                as Arc<dyn JournalStore>
        })
    },
};

conformance_suite!(SQLITE);

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

#[test]
fn files_that_are_not_our_journal_are_refused_untouched() {
    block_on(async {
        let text = db_path("text");
        std::fs::write(&text, "these are my notes, not a database").unwrap();
        let err = SqliteStore::open(&StoreConfig::new(&text)).await.err().unwrap();
        assert!(err.to_string().contains("is not a SQLite database"), "{err}");
        assert_eq!(std::fs::read_to_string(&text).unwrap(), "these are my notes, not a database");

        let foreign = db_path("foreign");
        testing::foreign_database(&foreign).await;
        let err = SqliteStore::open(&StoreConfig::new(&foreign)).await.err().unwrap();
        assert!(err.to_string().contains("is a SQLite database but not a tether journal"), "{err}");

        let newer = db_path("newer");
        drop(SqliteStore::open(&StoreConfig::new(&newer)).await.unwrap());
        testing::pretend_newer_schema(&newer).await;
        let err = SqliteStore::open(&StoreConfig::new(&newer)).await.err().unwrap();
        assert!(err.to_string().contains("was written by a newer tether (schema version 9999"), "{err}");
    });
}

#[test]
fn processes_creating_one_new_journal_at_once_all_open_it() {
    // Several `tether` processes started together on a fresh file race to migrate it;
    // the losers must wait for the winner, not fail on what it created.
    let db = db_path("race");
    let children: Vec<_> = (0..6)
        .map(|_| {
            crate::support::tether_cmd(std::path::Path::new(&db))
                .args(["migrate"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = crate::support::tether_cmd(std::path::Path::new(&db)).args(["runs", "--json"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]", "{}", String::from_utf8_lossy(&o.stderr));
}
