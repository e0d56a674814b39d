//! The SQLite journal store: durable group commit, the run index, and refusing files
//! that are not ours, are newer, or events that are too large.

use std::sync::Arc;

use tether_store::{testing, SqliteStore, StoreConfig};
use tether_types::event::{verify_and_decode, Chain, EventKind};
use tether_types::store::{Append, JournalStore, RunIndexStatus, StoreError};
use tether_types::RunId;

fn db_path(name: &str) -> String {
    let dir = tether_tests::repo_root().join("target").join("journal-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path.display().to_string()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

fn started() -> EventKind {
    EventKind::RunStarted {
        workflow: "wf".into(),
        workflow_digest: "d".into(),
        plan: serde_json::json!({}),
        input: serde_json::json!({}),
        identity: "test".into(),
    }
}

fn usage(n: u32) -> EventKind {
    EventKind::UsageReported { step: "s".into(), metric: "tokens".into(), amount: n as f64 }
}

#[test]
fn concurrent_runs_append_durably_and_read_back_in_order() {
    let path = db_path("concurrent");
    block_on(async {
        let store = Arc::new(SqliteStore::open(&StoreConfig::new(&path)).await.unwrap());
        let tasks: Vec<_> = (0..64)
            .map(|r| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let run = RunId::from_suffix(&format!("c{r}")).unwrap();
                    let mut chain = Chain::new();
                    store
                        .append(Append { run_id: run.clone(), events: vec![chain.seal(&started(), 1)] })
                        .await
                        .unwrap();
                    for batch in 0..5u32 {
                        let mut events: Vec<_> = (0..3).map(|i| chain.seal(&usage(batch * 3 + i), 10)).collect();
                        if batch == 4 {
                            events.push(chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 99));
                        }
                        store.append(Append { run_id: run.clone(), events }).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // A fresh store (as after a restart) sees everything, chained and in order.
        drop(store);
        let store = SqliteStore::open(&StoreConfig::new(&path)).await.unwrap();
        for r in [0, 31, 63] {
            let run = format!("run_c{r}");
            let events = verify_and_decode(&run, &store.events(&run).await.unwrap()).unwrap();
            assert_eq!(events.len(), 17);
            assert_eq!(events[15].kind, usage(14));
        }
        // The run index follows from the events.
        let done = store.runs(Some(RunIndexStatus::Completed), 1000).await.unwrap();
        assert_eq!(done.len(), 64);
        assert!(done
            .iter()
            .all(|r| r.finished_us == Some(99) && r.started_us == 1 && r.workflow == "wf" && r.identity == "test"));
        assert!(store.runs(Some(RunIndexStatus::Running), 10).await.unwrap().is_empty());
        assert!(matches!(store.events("run_nope").await, Err(StoreError::UnknownRun(_))));
    });
}

#[test]
fn a_second_writer_of_the_same_event_is_refused_not_merged() {
    let path = db_path("conflict");
    block_on(async {
        let store = SqliteStore::open(&StoreConfig::new(&path)).await.unwrap();
        let run = RunId::from_suffix("dup").unwrap();
        let first = Chain::new().seal(&usage(1), 1);
        let other = Chain::new().seal(&usage(2), 1);
        store.append(Append { run_id: run.clone(), events: vec![first] }).await.unwrap();
        let err = store.append(Append { run_id: run.clone(), events: vec![other] }).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { seq: 1, .. }), "{err}");
        let events = verify_and_decode("run_dup", &store.events("run_dup").await.unwrap()).unwrap();
        assert_eq!(events[0].kind, usage(1), "the recorded event is untouched");
    });
}

#[test]
fn an_event_above_the_size_cap_is_refused_with_its_position() {
    let path = db_path("cap");
    block_on(async {
        let mut config = StoreConfig::new(&path);
        config.max_event_bytes = 1024;
        let store = SqliteStore::open(&config).await.unwrap();
        let mut chain = Chain::new();
        let big = EventKind::GuestLog {
            step: "s".into(),
            level: tether_types::LogLevel::Info,
            stream: "log".into(),
            tool: None,
            message: "x".repeat(2000),
        };
        let events = vec![chain.seal(&usage(1), 1), chain.seal(&big, 2)];
        let err = store.append(Append { run_id: RunId::from_suffix("big").unwrap(), events }).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("run run_big: event 2 (guest_log) is"), "{msg}");
        assert!(msg.contains("above the journal's cap of 1024 bytes"), "{msg}");
        assert!(matches!(store.events("run_big").await, Err(StoreError::UnknownRun(_))), "nothing was written");
    });
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
                .args(["runs", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
    }
}
