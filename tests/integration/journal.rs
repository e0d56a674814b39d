//! The SQLite journal store: durable group commit, the run index, and refusing files
//! that are not ours, are newer, or events that are too large.

use std::sync::Arc;

use tether_store::{testing, SqliteStore, StoreConfig};
use tether_types::chain::{verify_and_decode, Chain};
use tether_types::event::EventKind;
use tether_types::store::{Append, Fence, JournalStore, LeaseChange, LeaseTake, RunIndexStatus, StoreError};
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

/// Takes `run`'s lease for `owner` (it must be free) and returns its fence.
async fn take(store: &SqliteStore, run: &str, owner: &str, ttl_ms: u64) -> Fence {
    match store.take_lease(run, owner, ttl_ms, None).await.unwrap() {
        LeaseTake::Taken(lease) => lease.fence(),
        LeaseTake::Held(h) => panic!("{run} is held by {}", h.owner),
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
                    let fence = take(&store, run.as_str(), "host-a", 60_000).await;
                    let mut chain = Chain::new();
                    let first = Append {
                        lease: LeaseChange::Keep,
                        run_id: run.clone(),
                        fence: fence.clone(),
                        events: vec![chain.seal(&started(), 1)],
                    };
                    store.append(first).await.unwrap();
                    for batch in 0..5u32 {
                        let mut events: Vec<_> = (0..3).map(|i| chain.seal(&usage(batch * 3 + i), 10)).collect();
                        if batch == 4 {
                            events.push(chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 99));
                        }
                        store
                            .append(Append {
                                lease: LeaseChange::Keep,
                                run_id: run.clone(),
                                fence: fence.clone(),
                                events,
                            })
                            .await
                            .unwrap();
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
        let fence = take(&store, run.as_str(), "host-a", 60_000).await;
        let first = Chain::new().seal(&usage(1), 1);
        let other = Chain::new().seal(&usage(2), 1);
        store
            .append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: fence.clone(), events: vec![first] })
            .await
            .unwrap();
        let err = store
            .append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence, events: vec![other] })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { seq: 1, head: 1, .. }), "{err}");
        assert!(err.to_string().contains("event 1 (usage_reported) conflicts"), "the message names the event: {err}");
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
        let fence = take(&store, "run_big", "host-a", 60_000).await;
        let err = store
            .append(Append { lease: LeaseChange::Keep, run_id: RunId::from_suffix("big").unwrap(), fence, events })
            .await
            .unwrap_err();
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

#[test]
fn a_host_whose_lease_was_taken_over_cannot_append_again() {
    let path = db_path("fenced");
    block_on(async {
        let store = SqliteStore::open(&StoreConfig::new(&path)).await.unwrap();
        let run = RunId::from_suffix("fenced").unwrap();
        let mut chain = Chain::new();
        let a = take(&store, run.as_str(), "host-a", 200).await;
        store
            .append(Append {
                lease: LeaseChange::Keep,
                run_id: run.clone(),
                fence: a.clone(),
                events: vec![chain.seal(&started(), 1)],
            })
            .await
            .unwrap();

        // While A's lease lasts, B is refused the run.
        match store.take_lease(run.as_str(), "host-b", 60_000, None).await.unwrap() {
            LeaseTake::Held(h) => assert_eq!((h.owner.as_str(), h.epoch), ("host-a", 1)),
            LeaseTake::Taken(_) => panic!("a live lease was taken"),
        }
        // Once it lapses (A stopped renewing: paused, partitioned, killed), B takes it.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let b = take(&store, run.as_str(), "host-b", 60_000).await;
        assert_eq!(b.epoch, 2, "every take-over increases the epoch");

        // A wakes up and tries to go on from where it was: fenced, nothing written.
        let stale = Append {
            lease: LeaseChange::Keep,
            run_id: run.clone(),
            fence: a.clone(),
            events: vec![chain.clone().seal(&usage(1), 2)],
        };
        let err = store.append(stale).await.unwrap_err();
        assert!(matches!(&err, StoreError::LeaseLost { epoch: 1, holder_epoch: 2, .. }), "{err}");
        assert!(err.to_string().contains("host-b"), "the message names the new holder: {err}");
        let lease =
            tether_types::store::Lease { run_id: run.to_string(), owner: a.owner.clone(), epoch: 1, expires_us: 0 };
        assert!(matches!(store.renew_lease(&lease, 1000).await, Err(StoreError::LeaseLost { .. })));

        // B continues the chain; the journal holds B's event and not A's.
        store
            .append(Append {
                lease: LeaseChange::Release,
                run_id: run.clone(),
                fence: b,
                events: vec![chain.seal(&usage(7), 3)],
            })
            .await
            .unwrap();
        let events = verify_and_decode(run.as_str(), &store.events(run.as_str()).await.unwrap()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].kind, usage(7));
        let head = store.run_record(run.as_str()).await.unwrap().head.unwrap();
        assert_eq!(
            (head.seq, head.hash.as_str()),
            (2, events[1].hash.as_str()),
            "the run is anchored where its last append gave it up"
        );
    });
}

#[test]
fn a_dead_holder_is_broken_only_at_the_epoch_it_was_seen_at() {
    let path = db_path("breaking");
    block_on(async {
        let store = SqliteStore::open(&StoreConfig::new(&path)).await.unwrap();
        let a = take(&store, "run_brk", "host-a", 60_000).await;
        let run = RunId::from_suffix("brk").unwrap();
        let started = vec![Chain::new().seal(&started(), 1)];
        store
            .append(Append { lease: LeaseChange::Keep, run_id: run, fence: a.clone(), events: started })
            .await
            .unwrap();
        // A caller that saw an older epoch (someone else already took over) breaks nothing.
        assert!(matches!(
            store.take_lease("run_brk", "host-b", 60_000, Some(a.epoch + 5)).await.unwrap(),
            LeaseTake::Held(_)
        ));
        match store.take_lease("run_brk", "host-b", 60_000, Some(a.epoch)).await.unwrap() {
            LeaseTake::Taken(l) => assert_eq!((l.owner.as_str(), l.epoch), ("host-b", 2)),
            LeaseTake::Held(_) => panic!("the dead holder's lease was not broken"),
        }
        // A released lease is free for anyone at once.
        let lease =
            tether_types::store::Lease { run_id: "run_brk".into(), owner: "host-b".into(), epoch: 2, expires_us: 0 };
        store.release_lease(&lease).await.unwrap();
        assert_eq!(take(&store, "run_brk", "host-c", 60_000).await.epoch, 3);
    });
}

#[test]
fn a_run_that_never_got_an_event_leaves_no_lease_behind() {
    let path = db_path("ghost");
    block_on(async {
        let store = SqliteStore::open(&StoreConfig::new(&path)).await.unwrap();
        let fence = take(&store, "run_ghost", "host-a", 60_000).await;
        let lease =
            tether_types::store::Lease { run_id: "run_ghost".into(), owner: fence.owner, epoch: 1, expires_us: 0 };
        store.release_lease(&lease).await.unwrap();
        assert_eq!(take(&store, "run_ghost", "host-b", 60_000).await.epoch, 1, "the empty run's row was removed");
        assert!(store.run_ids().await.unwrap().is_empty());
    });
}

#[test]
fn a_new_runs_first_append_takes_its_lease_and_its_last_gives_it_up() {
    let path = db_path("riding");
    block_on(async {
        let store = SqliteStore::open(&StoreConfig::new(&path)).await.unwrap();
        let run = RunId::from_suffix("riding").unwrap();
        let a = Fence { owner: "host-a".into(), epoch: 1 };
        let mut chain = Chain::new();
        let first = vec![chain.seal(&started(), 1)];
        let take_new = LeaseChange::TakeNew { ttl_ms: 60_000 };
        store.append(Append { lease: take_new, run_id: run.clone(), fence: a.clone(), events: first }).await.unwrap();
        // Taken by that append: another host is refused the run.
        assert!(matches!(store.take_lease(run.as_str(), "host-b", 60_000, None).await.unwrap(), LeaseTake::Held(_)));
        // A second host that also thinks the run id is new is refused, and writes nothing.
        let b = Fence { owner: "host-b".into(), epoch: 1 };
        let other = vec![Chain::new().seal(&started(), 2)];
        let err =
            store.append(Append { lease: take_new, run_id: run.clone(), fence: b, events: other }).await.unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
        // The last append releases the lease with its events: the run is free at once.
        let last = vec![chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 3)];
        store
            .append(Append { lease: LeaseChange::Release, run_id: run.clone(), fence: a, events: last })
            .await
            .unwrap();
        assert_eq!(take(&store, run.as_str(), "host-b", 60_000).await.epoch, 2);
        assert_eq!(store.events(run.as_str()).await.unwrap().len(), 2);
    });
}

#[test]
fn a_refused_append_in_a_large_batch_leaves_its_neighbours_written() {
    let path = db_path("mixed-batch");
    block_on(async {
        let store = Arc::new(SqliteStore::open(&StoreConfig::new(&path)).await.unwrap());
        // 40 runs, each started; then all append at once, one of them with a stale fence.
        let mut chains = Vec::new();
        for r in 0..40 {
            let run = RunId::from_suffix(&format!("m{r}")).unwrap();
            let fence = take(&store, run.as_str(), "host-a", 60_000).await;
            let mut chain = Chain::new();
            let first = vec![chain.seal(&started(), 1)];
            store
                .append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: fence.clone(), events: first })
                .await
                .unwrap();
            chains.push((run, fence, chain));
        }
        let tasks: Vec<_> = chains
            .into_iter()
            .enumerate()
            .map(|(i, (run, mut fence, mut chain))| {
                if i == 17 {
                    fence.epoch += 1; // a host that thinks it holds a later lease than it does
                }
                let store = Arc::clone(&store);
                let events = (0..3).map(|n| chain.seal(&usage(n), 2)).collect();
                tokio::spawn(async move {
                    (i, store.append(Append { lease: LeaseChange::Release, run_id: run, fence, events }).await)
                })
            })
            .collect();
        for t in tasks {
            let (i, result) = t.await.unwrap();
            let run = format!("run_m{i}");
            let events = store.events(&run).await.unwrap();
            if i == 17 {
                assert!(matches!(result, Err(StoreError::LeaseLost { .. })), "{result:?}");
                assert_eq!(events.len(), 1, "the refused append wrote nothing");
            } else {
                result.unwrap();
                assert_eq!(events.len(), 4, "run {run}");
                assert_eq!(store.run_record(&run).await.unwrap().head.unwrap().seq, 4);
            }
        }
        // Every written run's lease was given up with its append; the refused one's was not.
        assert!(matches!(store.take_lease("run_m3", "host-b", 1000, None).await.unwrap(), LeaseTake::Taken(_)));
        assert!(matches!(store.take_lease("run_m17", "host-b", 1000, None).await.unwrap(), LeaseTake::Held(_)));
    });
}
