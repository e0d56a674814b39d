//! The store conformance suite: what every journal backend must do, written against the
//! store trait alone (group commit, fencing by lease, the run index following the
//! events, components and plugins, cancel requests). A backend runs all of it with one
//! line, `conformance_suite!(BACKEND)`: SQLite in `journal.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tether_types::chain::{verify_and_decode, verify_and_decode_after, Chain, JournalError};
use tether_types::event::EventKind;
use tether_types::store::{
    Append, Fence, JournalStore, LeaseChange, LeaseTake, PluginAdded, PluginRecord, RunIndexStatus, RunQuery,
    StoreError,
};
use tether_types::RunId;

/// A future the suite awaits.
pub(crate) type Opening = Pin<Box<dyn Future<Output = Arc<dyn JournalStore>>>>;

/// How the suite gets journals of one backend.
pub(crate) struct Backend {
    /// A fresh, empty journal named `name` (events above the size, when given, refused).
    pub(crate) fresh: fn(&'static str, Option<usize>) -> Opening,
    /// The journal `name` opened again, as by a restarted host.
    pub(crate) reopen: fn(&'static str) -> Opening,
}

pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

/// One `#[test]` per case of the suite, for `$backend` (a `Backend` value).
macro_rules! conformance_suite {
    ($backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::block_on($crate::conformance::$case(&$backend));
            }
        )*
    };
    ($backend:expr) => {
        $crate::conformance::conformance_suite!($backend;
            concurrent_runs_append_durably_and_read_back_in_order,
            a_second_writer_of_the_same_event_is_refused_not_merged,
            an_event_above_the_size_cap_is_refused_with_its_position,
            a_host_whose_lease_was_taken_over_cannot_append_again,
            a_dead_holder_is_broken_only_at_the_epoch_it_was_seen_at,
            a_run_that_never_got_an_event_leaves_no_lease_behind,
            a_new_runs_first_append_takes_its_lease_and_its_last_gives_it_up,
            a_whole_run_in_one_append_takes_and_gives_up_its_lease,
            a_refused_append_in_a_large_batch_leaves_its_neighbours_written,
            the_run_index_follows_each_runs_events,
            a_refused_append_changes_no_index_row,
            components_and_plugins_are_kept_and_pinned_by_unfinished_runs,
            a_cancel_request_is_kept_once_for_the_executing_host,
            appends_queued_behind_a_refused_one_are_refused,
            a_page_of_a_journal_is_read_alone_and_ties_to_its_chain,
            the_run_index_pages_by_status_workflow_and_literal_id_prefix,
            status_changes_of_one_run_queued_together_all_count_in_order,
            one_heartbeat_keeps_every_lease_of_its_host_and_a_stale_one_loses_them,
            claims_share_interrupted_runs_out_and_take_only_free_running_ones,
        );
    };
}
pub(crate) use conformance_suite;

fn started() -> EventKind {
    EventKind::RunStarted {
        workflow: "wf".into(),
        workflow_digest: "d".into(),
        plan: serde_json::json!({}),
        input: serde_json::json!({}),
        identity: "test".into(),
        origin: None,
    }
}

/// Takes `run`'s lease for `owner` (it must be free) and returns its fence.
async fn take(store: &dyn JournalStore, run: &str, owner: &str, ttl_ms: u64) -> Fence {
    match store.take_lease(run, owner, ttl_ms, None).await.unwrap() {
        LeaseTake::Taken(lease) => lease.fence(),
        LeaseTake::Held(h) => panic!("{run} is held by {}", h.owner),
    }
}

fn usage(n: u32) -> EventKind {
    EventKind::UsageReported { step: "s".into(), metric: "tokens".into(), amount: n as f64 }
}

pub(crate) async fn concurrent_runs_append_durably_and_read_back_in_order(backend: &Backend) {
    let store = (backend.fresh)("concurrent", None).await;
    let tasks: Vec<_> = (0..64)
        .map(|r| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let run = RunId::from_suffix(&format!("c{r}")).unwrap();
                let fence = take(&*store, run.as_str(), "host-a", 60_000).await;
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
                        .append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: fence.clone(), events })
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
    let store = (backend.reopen)("concurrent").await;
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
}

pub(crate) async fn a_second_writer_of_the_same_event_is_refused_not_merged(backend: &Backend) {
    let store = (backend.fresh)("conflict", None).await;
    let run = RunId::from_suffix("dup").unwrap();
    let fence = take(&*store, run.as_str(), "host-a", 60_000).await;
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
}

pub(crate) async fn an_event_above_the_size_cap_is_refused_with_its_position(backend: &Backend) {
    let store = (backend.fresh)("cap", Some(1024)).await;
    let mut chain = Chain::new();
    let big = EventKind::GuestLog {
        step: "s".into(),
        level: tether_types::LogLevel::Info,
        stream: "log".into(),
        tool: None,
        message: "x".repeat(2000),
    };
    let events = vec![chain.seal(&usage(1), 1), chain.seal(&big, 2)];
    let fence = take(&*store, "run_big", "host-a", 60_000).await;
    let err = store
        .append(Append { lease: LeaseChange::Keep, run_id: RunId::from_suffix("big").unwrap(), fence, events })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("run run_big: event 2 (guest_log) is"), "{msg}");
    assert!(msg.contains("above the journal's cap of 1024 bytes"), "{msg}");
    assert!(matches!(store.events("run_big").await, Err(StoreError::UnknownRun(_))), "nothing was written");
}

pub(crate) async fn a_host_whose_lease_was_taken_over_cannot_append_again(backend: &Backend) {
    let store = (backend.fresh)("fenced", None).await;
    let run = RunId::from_suffix("fenced").unwrap();
    let mut chain = Chain::new();
    let a = take(&*store, run.as_str(), "host-a", 200).await;
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
    // Once it lapses (A never beat: paused, partitioned, killed), B takes it.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let b = take(&*store, run.as_str(), "host-b", 60_000).await;
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
}

pub(crate) async fn a_dead_holder_is_broken_only_at_the_epoch_it_was_seen_at(backend: &Backend) {
    let store = (backend.fresh)("breaking", None).await;
    let a = take(&*store, "run_brk", "host-a", 60_000).await;
    let run = RunId::from_suffix("brk").unwrap();
    let started = vec![Chain::new().seal(&started(), 1)];
    store.append(Append { lease: LeaseChange::Keep, run_id: run, fence: a.clone(), events: started }).await.unwrap();
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
    assert_eq!(take(&*store, "run_brk", "host-c", 60_000).await.epoch, 3);
}

pub(crate) async fn a_run_that_never_got_an_event_leaves_no_lease_behind(backend: &Backend) {
    let store = (backend.fresh)("ghost", None).await;
    let fence = take(&*store, "run_ghost", "host-a", 60_000).await;
    let lease = tether_types::store::Lease { run_id: "run_ghost".into(), owner: fence.owner, epoch: 1, expires_us: 0 };
    store.release_lease(&lease).await.unwrap();
    assert_eq!(take(&*store, "run_ghost", "host-b", 60_000).await.epoch, 1, "the empty run's row was removed");
    assert!(store.run_ids().await.unwrap().is_empty());
}

pub(crate) async fn a_new_runs_first_append_takes_its_lease_and_its_last_gives_it_up(backend: &Backend) {
    let store = (backend.fresh)("riding", None).await;
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
    let err = store.append(Append { lease: take_new, run_id: run.clone(), fence: b, events: other }).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    // The last append releases the lease with its events: the run is free at once.
    let last = vec![chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 3)];
    store.append(Append { lease: LeaseChange::Release, run_id: run.clone(), fence: a, events: last }).await.unwrap();
    assert_eq!(take(&*store, run.as_str(), "host-b", 60_000).await.epoch, 2);
    assert_eq!(store.events(run.as_str()).await.unwrap().len(), 2);
}

pub(crate) async fn a_whole_run_in_one_append_takes_and_gives_up_its_lease(backend: &Backend) {
    let store = (backend.fresh)("whole", None).await;
    let run = RunId::from_suffix("whole").unwrap();
    let a = Fence { owner: "host-a".into(), epoch: 1 };
    let whole = LeaseChange::TakeAndRelease { ttl_ms: 60_000 };
    let mut chain = Chain::new();
    let events =
        vec![chain.seal(&started(), 1), chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 2)];
    store.append(Append { lease: whole, run_id: run.clone(), fence: a.clone(), events }).await.unwrap();
    assert_eq!(store.events(run.as_str()).await.unwrap().len(), 2);
    // Given up in the same commit: another host takes the run at the next epoch.
    let b = take(&*store, run.as_str(), "host-b", 60_000).await;
    assert_eq!(b.epoch, 2);
    // While host-b holds it, a host that thinks the id is new writes nothing.
    let again = vec![Chain::new().seal(&started(), 3)];
    let err = store.append(Append { lease: whole, run_id: run.clone(), fence: a, events: again }).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert_eq!(store.events(run.as_str()).await.unwrap().len(), 2);
    // A run id whose run finished and whose lease is free is refused at its first event.
    let lease = tether_types::store::Lease { run_id: run.as_str().into(), owner: b.owner, epoch: 2, expires_us: 0 };
    store.release_lease(&lease).await.unwrap();
    let c = Fence { owner: "host-c".into(), epoch: 1 };
    let again = vec![Chain::new().seal(&started(), 4)];
    let err = store.append(Append { lease: whole, run_id: run.clone(), fence: c, events: again }).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. } | StoreError::Conflict { seq: 1, .. }), "{err}");
    assert_eq!(store.events(run.as_str()).await.unwrap().len(), 2);
}

pub(crate) async fn a_refused_append_in_a_large_batch_leaves_its_neighbours_written(backend: &Backend) {
    let store = (backend.fresh)("mixed-batch", None).await;
    // 40 runs, each started; then all append at once, one of them with a stale fence.
    let mut chains = Vec::new();
    for r in 0..40 {
        let run = RunId::from_suffix(&format!("m{r}")).unwrap();
        let fence = take(&*store, run.as_str(), "host-a", 60_000).await;
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
}

pub(crate) async fn the_run_index_follows_each_runs_events(backend: &Backend) {
    let store = (backend.fresh)("index", None).await;
    let append = |run: &RunId, fence: &Fence, events, lease| {
        let store = Arc::clone(&store);
        let a = Append { lease, run_id: run.clone(), fence: fence.clone(), events };
        async move { store.append(a).await.unwrap() }
    };
    let status = |run: &'static str| {
        let store = Arc::clone(&store);
        async move {
            let all = store.runs(None, 100).await.unwrap();
            all.into_iter().find(|r| r.run_id == run).unwrap_or_else(|| panic!("{run} is not in the index"))
        }
    };
    let fence = Fence { owner: "host-a".into(), epoch: 1 };
    let take_new = LeaseChange::TakeNew { ttl_ms: 60_000 };
    let run = RunId::from_suffix("life").unwrap();
    let mut chain = Chain::new();
    append(&run, &fence, vec![chain.seal(&started(), 10)], take_new).await;
    let row = status("run_life").await;
    assert_eq!((row.status, row.workflow.as_str(), row.identity.as_str()), (RunIndexStatus::Running, "wf", "test"));
    assert_eq!((row.started_us, row.finished_us), (10, None));
    let waiting = EventKind::RunWaiting { approvals: vec!["a1".into()] };
    append(&run, &fence, vec![chain.seal(&waiting, 20)], LeaseChange::Keep).await;
    assert_eq!(status("run_life").await.status, RunIndexStatus::Waiting);
    assert_eq!(store.runs(Some(RunIndexStatus::Waiting), 10).await.unwrap().len(), 1);
    append(&run, &fence, vec![chain.seal(&EventKind::RunResumed { pid: 1 }, 30)], LeaseChange::Keep).await;
    assert_eq!(status("run_life").await.status, RunIndexStatus::Running);
    let paused = EventKind::RunPaused { step: "s".into(), exceeded: "tokens".into(), used: 5.0, limit: 5.0 };
    // Paused and resumed in one append: running.
    let both = vec![chain.seal(&paused, 35), chain.seal(&EventKind::RunResumed { pid: 1 }, 36)];
    append(&run, &fence, both, LeaseChange::Keep).await;
    assert_eq!(status("run_life").await.status, RunIndexStatus::Running);
    append(&run, &fence, vec![chain.seal(&paused, 40)], LeaseChange::Keep).await;
    assert_eq!(status("run_life").await.status, RunIndexStatus::Paused);
    // Several changes in one append: the last one stands.
    let end = vec![
        chain.seal(&EventKind::RunResumed { pid: 2 }, 50),
        chain.seal(&usage(1), 55),
        chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 60),
    ];
    append(&run, &fence, end, LeaseChange::Release).await;
    let row = status("run_life").await;
    assert_eq!((row.status, row.finished_us), (RunIndexStatus::Completed, Some(60)));
    // A resume recorded after the end (a late `resume` of a finished run) leaves it ended.
    let fence2 = take(&*store, "run_life", "host-b", 60_000).await;
    append(&run, &fence2, vec![chain.seal(&EventKind::RunResumed { pid: 3 }, 70)], LeaseChange::Release).await;
    assert_eq!(status("run_life").await.status, RunIndexStatus::Completed);

    // A person's cancel ends the run `cancelled`, undone or not.
    let run = RunId::from_suffix("stopped").unwrap();
    let mut chain = Chain::new();
    let error = tether_types::RunError {
        class: tether_types::FailureClass::Cancelled,
        step: String::new(),
        message: "cancelled by alice".into(),
    };
    let events = vec![
        chain.seal(&started(), 1),
        chain.seal(&EventKind::RunCancelled { by: "alice".into(), reason: None }, 2),
        chain.seal(&EventKind::RunCompensated { error }, 3),
    ];
    append(&run, &fence, events, take_new).await;
    let row = status("run_stopped").await;
    assert_eq!((row.status, row.finished_us), (RunIndexStatus::Cancelled, Some(3)));
    // What the store holds agrees with the fold of the events, for every run.
    for run in store.run_ids().await.unwrap() {
        let events = verify_and_decode(&run, &store.events(&run).await.unwrap()).unwrap();
        let record = store.run_record(&run).await.unwrap();
        let folded = tether_types::run_index::index_status(&events);
        assert_eq!(record.index_status.as_deref(), Some(folded.as_str()), "{run}");
    }
}

pub(crate) async fn a_refused_append_changes_no_index_row(backend: &Backend) {
    let store = (backend.fresh)("index-fenced", None).await;
    let a = take(&*store, "run_idx", "host-a", 60_000).await;
    let run = RunId::from_suffix("idx").unwrap();
    let mut chain = Chain::new();
    let first = vec![chain.seal(&started(), 1)];
    store
        .append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: a.clone(), events: first })
        .await
        .unwrap();
    // A stale host's end of the run is refused, and the index does not end the run.
    let stale = Fence { owner: "host-a".into(), epoch: a.epoch + 1 };
    let end = vec![chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 2)];
    let err = store.append(Append { lease: LeaseChange::Keep, run_id: run, fence: stale, events: end }).await;
    assert!(matches!(err, Err(StoreError::LeaseLost { .. })), "{err:?}");
    let rows = store.runs(None, 10).await.unwrap();
    assert_eq!((rows.len(), rows[0].status, rows[0].finished_us), (1, RunIndexStatus::Running, None));
    // A second host that took the run id for new writes neither events nor a row.
    let other = Fence { owner: "host-b".into(), epoch: 1 };
    let events = vec![Chain::new().seal(&started(), 5)];
    let run = RunId::from_suffix("idx").unwrap();
    let take_new = LeaseChange::TakeNew { ttl_ms: 60_000 };
    assert!(store.append(Append { lease: take_new, run_id: run, fence: other, events }).await.is_err());
    let rows = store.runs(None, 10).await.unwrap();
    assert_eq!((rows.len(), rows[0].started_us), (1, 1), "the first start stands");
}

pub(crate) async fn components_and_plugins_are_kept_and_pinned_by_unfinished_runs(backend: &Backend) {
    let store = (backend.fresh)("plugins", None).await;
    let wasm = b"\0asm fake component bytes".to_vec();
    assert!(!store.has_component("d-one").await.unwrap());
    store.put_component("d-one", &wasm).await.unwrap();
    store.put_component("d-one", &wasm).await.unwrap();
    assert!(store.has_component("d-one").await.unwrap());
    assert_eq!(store.component("d-one").await.unwrap().as_deref(), Some(wasm.as_slice()));
    assert_eq!(store.component("d-none").await.unwrap(), None);

    let record = |version: &str, digest: &str| PluginRecord {
        name: "redact".into(),
        version: version.into(),
        digest: digest.into(),
        world: "step-plugin".into(),
        size: wasm.len() as u64,
        metadata: serde_json::json!({}),
        added_us: 1,
    };
    assert_eq!(store.add_plugin(&record("1.0.0", "d-one"), &wasm).await.unwrap(), PluginAdded::Added);
    assert_eq!(store.add_plugin(&record("1.0.0", "d-one"), &wasm).await.unwrap(), PluginAdded::AlreadyPresent);
    let err = store.add_plugin(&record("1.0.0", "d-two"), &wasm).await.unwrap_err();
    assert!(matches!(err, StoreError::PluginConflict { .. }), "a version means one component: {err}");
    assert_eq!(store.add_plugin(&record("2.0.0", "d-two"), &wasm).await.unwrap(), PluginAdded::Added);
    let versions: Vec<String> = store.plugins(Some("redact")).await.unwrap().into_iter().map(|p| p.version).collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"]);
    assert!(store.plugins(Some("other")).await.unwrap().is_empty());

    // A running run whose plan names d-one (as a tool here) pins 1.0.0, not 2.0.0.
    let plan =
        serde_json::json!({"steps": [{"name": "s", "component": "d-zero"}], "tools": {"t": {"component": "d-one"}}});
    let start = EventKind::RunStarted {
        workflow: "wf".into(),
        workflow_digest: "x".into(),
        plan,
        input: serde_json::json!({}),
        identity: "test".into(),
        origin: None,
    };
    let fence = Fence { owner: "host-a".into(), epoch: 1 };
    let run = RunId::from_suffix("pin").unwrap();
    let mut chain = Chain::new();
    let take_new = LeaseChange::TakeNew { ttl_ms: 60_000 };
    let events = vec![chain.seal(&start, 1)];
    store.append(Append { lease: take_new, run_id: run.clone(), fence: fence.clone(), events }).await.unwrap();
    match store.remove_plugin("redact", "1.0.0").await {
        Err(StoreError::PluginInUse { runs, .. }) => assert_eq!(runs, ["run_pin"]),
        other => panic!("a pinned plugin was removed: {other:?}"),
    }
    assert_eq!(store.remove_plugin("redact", "2.0.0").await.unwrap().digest, "d-two");
    // Once the run is over, nothing pins it.
    let end = vec![chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 2)];
    store.append(Append { lease: LeaseChange::Release, run_id: run, fence, events: end }).await.unwrap();
    assert_eq!(store.remove_plugin("redact", "1.0.0").await.unwrap().digest, "d-one");
    assert!(matches!(store.remove_plugin("redact", "1.0.0").await, Err(StoreError::UnknownPlugin(_))));
    assert!(store.has_component("d-one").await.unwrap(), "a removed plugin's bytes stay for its runs' replays");
}

pub(crate) async fn a_cancel_request_is_kept_once_for_the_executing_host(backend: &Backend) {
    let store = (backend.fresh)("cancels", None).await;
    assert_eq!(store.cancel_request("run_c").await.unwrap(), None);
    assert!(store.request_cancel("run_c", "alice", Some("wrong customer")).await.unwrap());
    assert!(!store.request_cancel("run_c", "bob", None).await.unwrap(), "the first request is kept");
    assert_eq!(store.cancel_request("run_c").await.unwrap(), Some(("alice".into(), Some("wrong customer".into()))));
}

pub(crate) async fn appends_queued_behind_a_refused_one_are_refused(backend: &Backend) {
    let store = (backend.fresh)("queued", None).await;
    let fence = take(&*store, "run_queued", "host-a", 60_000).await;
    let run = RunId::from_suffix("queued").unwrap();
    let first = vec![Chain::new().seal(&started(), 1)];
    store
        .append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: fence.clone(), events: first })
        .await
        .unwrap();
    // A writer that lost track queues event 1 again (taken) and then event 2 (free): if
    // the second were written, the journal would hold a run whose event 2 follows an
    // event 1 it never saw.
    let mut stale = Chain::new();
    let again = vec![stale.seal(&usage(1), 2)];
    let next = vec![stale.seal(&usage(2), 3)];
    let a =
        store.enqueue(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: fence.clone(), events: again });
    let a = a.await.unwrap();
    let b = store.enqueue(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence, events: next }).await.unwrap();
    assert!(matches!(a.await, Err(StoreError::Conflict { seq: 1, .. })));
    assert!(b.await.is_err(), "an append queued behind a refused one was written");
    let events = store.events(run.as_str()).await.unwrap();
    assert_eq!(events.len(), 1, "the journal holds only what was written in order");
}

pub(crate) async fn a_page_of_a_journal_is_read_alone_and_ties_to_its_chain(backend: &Backend) {
    let store = (backend.fresh)("pages", None).await;
    let run = RunId::from_suffix("long").unwrap();
    let fence = take(&*store, run.as_str(), "host-a", 60_000).await;
    let mut chain = Chain::new();
    let mut events = vec![chain.seal(&started(), 1)];
    events.extend((0..40).map(|i| chain.seal(&usage(i), 2 + i as u64)));
    store.append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence, events }).await.unwrap();
    let all = store.events(run.as_str()).await.unwrap();
    assert_eq!(store.last_event(run.as_str()).await.unwrap(), (41, all[40].hash.clone()));
    let page = store.events_between(run.as_str(), 11, 20).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), (11..=20).collect::<Vec<_>>());
    let decoded = verify_and_decode_after(run.as_str(), (10, &all[9].hash), &page).unwrap();
    assert_eq!(decoded[0].kind, usage(9), "seq 11 is the tenth usage report");
    // Tied to the wrong event, or with an event missing, the page is refused.
    let wrong = verify_and_decode_after(run.as_str(), (10, &all[8].hash), &page);
    assert_eq!(wrong, Err(JournalError::BrokenChain { run: "run_long".into(), seq: 11 }));
    let gap = verify_and_decode_after(run.as_str(), (10, &all[9].hash), &page[1..]);
    assert!(matches!(gap, Err(JournalError::Gap { expected: 11, found: 12, .. })), "{gap:?}");
    assert_eq!(store.events_between(run.as_str(), 39, 99).await.unwrap().len(), 3, "a range past the end is cut");
    assert!(store.events_between(run.as_str(), 42, 50).await.unwrap().is_empty());
    assert!(matches!(store.last_event("run_nope").await, Err(StoreError::UnknownRun(_))));
    // The store's clock, which leases are judged by, is a clock: here, this machine's time.
    let local = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    assert!(store.clock_us().await.unwrap().abs_diff(local) < 5_000_000);
}

pub(crate) async fn the_run_index_pages_by_status_workflow_and_literal_id_prefix(backend: &Backend) {
    let store = (backend.fresh)("paging", None).await;
    // 30 runs: every third of workflow `b`, every fifth left running; ids `a-0`, `ab1`,
    // `a-2`, ...: a prefix's `_` and `%` must match literally, not as wildcards.
    for i in 0..30u64 {
        let suffix = if i % 2 == 0 { format!("a-{i}") } else { format!("ab{i}") };
        let run = RunId::from_suffix(&suffix).unwrap();
        let fence = take(&*store, run.as_str(), "host-a", 60_000).await;
        let mut chain = Chain::new();
        let workflow = if i % 3 == 0 { "b" } else { "a" };
        let start = EventKind::RunStarted {
            workflow: workflow.into(),
            workflow_digest: "d".into(),
            plan: serde_json::json!({}),
            input: serde_json::json!({}),
            identity: "test".into(),
            origin: None,
        };
        let mut events = vec![chain.seal(&start, 1_000 + i)];
        if i % 5 != 0 {
            events.push(chain.seal(&EventKind::RunCompleted { output: serde_json::json!(i) }, 2_000 + i));
        }
        store.append(Append { lease: LeaseChange::Keep, run_id: run, fence, events }).await.unwrap();
    }
    let ids = |q: RunQuery| {
        let store = Arc::clone(&store);
        async move { store.runs_page(&q).await.unwrap().into_iter().map(|r| r.run_id).collect::<Vec<_>>() }
    };
    let all = ids(RunQuery { limit: 100, ..RunQuery::default() }).await;
    assert_eq!(all.len(), 30);
    assert_eq!(all[0], "run_ab29", "newest first");
    // Pages by cursor add up to the whole list, whatever the filter.
    for (status, workflow) in [
        (None, None),
        (Some(RunIndexStatus::Completed), None),
        (None, Some("b")),
        (Some(RunIndexStatus::Running), Some("b")),
    ] {
        let want: Vec<String> = store
            .runs_page(&RunQuery { status, workflow: workflow.map(str::to_string), limit: 100, ..RunQuery::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let q = RunQuery {
                status,
                workflow: workflow.map(str::to_string),
                before: before.clone(),
                limit: 4,
                ..RunQuery::default()
            };
            let page = store.runs_page(&q).await.unwrap();
            got.extend(page.iter().map(|r| r.run_id.clone()));
            match page.last() {
                Some(last) if page.len() == 4 => before = Some((last.started_us, last.run_id.clone())),
                _ => break,
            }
        }
        assert_eq!(got, want, "{status:?} {workflow:?}");
        let expected = (0..30u64).filter(|i| {
            status.is_none_or(|s| (s == RunIndexStatus::Running) == (i % 5 == 0))
                && workflow.is_none_or(|w| (w == "b") == (i % 3 == 0))
        });
        assert_eq!(want.len(), expected.count(), "{status:?} {workflow:?}");
    }
    let prefix = |p: &str| RunQuery { id_prefix: Some(p.into()), limit: 100, ..RunQuery::default() };
    assert_eq!(ids(prefix("run_a-")).await.len(), 15);
    assert!(ids(prefix("run_a_")).await.is_empty(), "`_` is matched literally");
    assert_eq!(ids(prefix("run_ab2")).await, vec!["run_ab29", "run_ab27", "run_ab25", "run_ab23", "run_ab21"]);
    assert_eq!(ids(prefix("run_a-1")).await, vec!["run_a-18", "run_a-16", "run_a-14", "run_a-12", "run_a-10"]);
    assert!(ids(prefix("run_a%")).await.is_empty(), "`%` is matched literally");
    assert!(ids(prefix("run_zz")).await.is_empty());
    let q = RunQuery {
        id_prefix: Some("run_a-".into()),
        status: Some(RunIndexStatus::Running),
        workflow: Some("b".into()),
        limit: 100,
        ..RunQuery::default()
    };
    assert_eq!(ids(q).await, vec!["run_a-0"], "every filter at once");
}

pub(crate) async fn status_changes_of_one_run_queued_together_all_count_in_order(backend: &Backend) {
    let store = (backend.fresh)("together", None).await;
    let waiting = || EventKind::RunWaiting { approvals: vec!["a".into()] };
    let resumed = || EventKind::RunResumed { pid: 1 };
    // Runs whose appends are queued back to back (so they share a commit): waiting then
    // resumed ends `running`; waiting, resumed, waiting ends `waiting`. Whichever single
    // change a store kept, one of the two would be wrong.
    let patterns: [(&str, Vec<EventKind>, RunIndexStatus); 2] = [
        ("wr", vec![waiting(), resumed()], RunIndexStatus::Running),
        ("wrw", vec![waiting(), resumed(), waiting()], RunIndexStatus::Waiting),
    ];
    for (name, kinds, want) in patterns {
        for i in 0..10 {
            let run = RunId::from_suffix(&format!("{name}{i}")).unwrap();
            let fence = take(&*store, run.as_str(), "host-a", 60_000).await;
            let mut chain = Chain::new();
            let first = vec![chain.seal(&started(), 1)];
            store
                .append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: fence.clone(), events: first })
                .await
                .unwrap();
            let mut acks = Vec::new();
            for (k, kind) in kinds.iter().enumerate() {
                let events = vec![chain.seal(kind, 2 + k as u64)];
                let append = Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: fence.clone(), events };
                acks.push(store.enqueue(append).await.unwrap());
            }
            for ack in acks {
                ack.await.unwrap();
            }
            let row = store.runs(None, 1000).await.unwrap().into_iter().find(|r| r.run_id == run.as_str()).unwrap();
            assert_eq!(row.status, want, "{run}: {kinds:?}");
        }
    }
}

/// A run started by `owner` under a lease lasting `ttl_ms` (its index row: running).
async fn running_run(store: &dyn JournalStore, suffix: &str, owner: &str, ttl_ms: u64, at_us: u64) -> (RunId, Chain) {
    let run = RunId::from_suffix(suffix).unwrap();
    let mut chain = Chain::new();
    let fence = Fence { owner: owner.into(), epoch: 1 };
    let first = vec![chain.seal(&started(), at_us)];
    let lease = LeaseChange::TakeNew { ttl_ms };
    store.append(Append { lease, run_id: run.clone(), fence, events: first }).await.unwrap();
    (run, chain)
}

pub(crate) async fn one_heartbeat_keeps_every_lease_of_its_host_and_a_stale_one_loses_them(backend: &Backend) {
    let store = (backend.fresh)("heartbeat", None).await;
    // A takes two runs with leases of their own that last 300 ms, then beats for a minute.
    let (one, mut chain) = running_run(&*store, "beat1", "host-a", 300, 1).await;
    let (two, _) = running_run(&*store, "beat2", "host-a", 300, 2).await;
    let first = store.heartbeat("host-a", 60_000).await.unwrap();
    assert_eq!((first.lapsed_since_us, first.found), (None, false), "a first beat has nothing to have lapsed");
    assert!(first.expires_us >= first.now_us + 60_000_000);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Past their own expiry, the heartbeat keeps both: B is refused each, and reads when
    // they lapse as the heartbeat's expiry.
    for run in [&one, &two] {
        match store.take_lease(run.as_str(), "host-b", 60_000, None).await.unwrap() {
            LeaseTake::Held(h) => assert_eq!((h.owner.as_str(), h.expires_us), ("host-a", first.expires_us)),
            LeaseTake::Taken(_) => panic!("{run}: a lease kept by its host's heartbeat was taken"),
        }
        assert_eq!(store.lease(run.as_str()).await.unwrap().unwrap().expires_us, first.expires_us);
    }
    assert!(store.claim_interrupted("host-b", 60_000, 10, &[]).await.unwrap().is_empty(), "nothing is free");
    let (clock, hosts) = store.hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!((hosts[0].owner.as_str(), hosts[0].expires_us), ("host-a", first.expires_us));
    assert!(hosts[0].since_us <= hosts[0].beat_us && hosts[0].beat_us <= clock);

    // A stops beating (its last beat lasted 50 ms): B takes one run over.
    store.heartbeat("host-a", 50).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    let b = take(&*store, one.as_str(), "host-b", 60_000).await;
    assert_eq!(b.epoch, 2);
    // A wakes: its next beat says it had lapsed, and it cannot write the run B took.
    let again = store.heartbeat("host-a", 60_000).await.unwrap();
    let since = again.lapsed_since_us.expect("the beat after a lapse says so");
    assert!(again.found && since <= again.now_us);
    let stale = Append {
        lease: LeaseChange::Keep,
        run_id: one.clone(),
        fence: Fence { owner: "host-a".into(), epoch: 1 },
        events: vec![chain.seal(&usage(1), 5)],
    };
    assert!(matches!(store.append(stale).await, Err(StoreError::LeaseLost { holder_epoch: 2, .. })));
    // The run nobody took is A's again, kept by the new beat.
    let (_, held) = store.held_leases().await.unwrap();
    let mine: Vec<(&str, &str)> = held.iter().map(|l| (l.run_id.as_str(), l.owner.as_str())).collect();
    assert_eq!(mine, [(two.as_str(), "host-a"), (one.as_str(), "host-b")], "by owner, then run");
    // A leaves: no heartbeat row, and its run lapses with the lease's own expiry (past).
    store.leave("host-a").await.unwrap();
    assert!(store.hosts().await.unwrap().1.is_empty());
    assert_eq!(take(&*store, two.as_str(), "host-c", 60_000).await.epoch, 2);
    // A beat after leaving finds no heartbeat of its host: it cannot know what happened
    // meanwhile, and says so.
    assert!(!store.heartbeat("host-a", 60_000).await.unwrap().found);
}

pub(crate) async fn claims_share_interrupted_runs_out_and_take_only_free_running_ones(backend: &Backend) {
    let store = (backend.fresh)("claims", None).await;
    // Twelve runs left running by a host that died (short leases, no heartbeat) ...
    let mut dead = Vec::new();
    for i in 0..12u64 {
        dead.push(running_run(&*store, &format!("dead{i:02}"), "host-dead", 1, 100 + i).await.0);
    }
    // ... one running under a live host's heartbeat, and one ended (its lease released).
    let (live, _) = running_run(&*store, "live", "host-live", 1, 1).await;
    store.heartbeat("host-live", 60_000).await.unwrap();
    let (ended, mut chain) = running_run(&*store, "ended", "host-dead", 60_000, 2).await;
    let last = vec![chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 3)];
    let fence = Fence { owner: "host-dead".into(), epoch: 1 };
    store.append(Append { lease: LeaseChange::Release, run_id: ended.clone(), fence, events: last }).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // A claim takes the oldest first, up to its limit, and passes over what it skips.
    let skip = vec![dead[0].to_string()];
    let first = store.claim_interrupted("host-a", 60_000, 2, &skip).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|l| l.run_id.as_str()).collect();
    assert_eq!(ids, [dead[1].as_str(), dead[2].as_str()]);
    assert!(first.iter().all(|l| l.owner == "host-a" && l.epoch == 2));

    // Two hosts (each with its own handle, as two processes) claiming at once divide the
    // rest between them: each run to one.
    let other = (backend.reopen)("claims").await;
    let (b, c) = tokio::join!(
        store.claim_interrupted("host-b", 60_000, 100, &[]),
        other.claim_interrupted("host-c", 60_000, 100, &[]),
    );
    let (b, c) = (b.unwrap(), c.unwrap());
    let mut all: Vec<&str> = b.iter().chain(&c).map(|l| l.run_id.as_str()).collect();
    all.sort_unstable();
    let mut rest: Vec<&str> = dead.iter().map(|r| r.as_str()).filter(|r| !ids.contains(r)).collect();
    rest.sort_unstable();
    assert_eq!(all, rest, "every free running run claimed once: host-b {b:?}, host-c {c:?}");
    // What each claimed is its own now; the live host's and the ended run are untouched.
    for l in b.iter().chain(&c) {
        assert_eq!(store.lease(&l.run_id).await.unwrap().unwrap().owner, l.owner);
    }
    assert_eq!(store.lease(live.as_str()).await.unwrap().unwrap().owner, "host-live");
    assert_eq!(store.lease(ended.as_str()).await.unwrap().unwrap().owner, "");
    assert!(store.claim_interrupted("host-d", 60_000, 100, &[]).await.unwrap().is_empty());
}
