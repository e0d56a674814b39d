//! Checks against a real server, when `TETHER_TEST_POSTGRES` names one
//! (`postgres://USER@HOST:PORT/DB`); skipped otherwise. Each test works in a database
//! of its own, created fresh and dropped after. The conformance suite covers the rest.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tether_types::chain::{verify_and_decode, Chain};
use tether_types::event::EventKind;
use tether_types::store::{
    Append, Fence, Journal, LeaseChange, LeaseTake, Leases, RunIndex, RunIndexStatus, RunQuery, StoreError, Upkeep,
};
use tether_types::RunId;

use super::PostgresStore;
use crate::StoreConfig;

/// A fresh database on the test server, dropped when this is.
struct Scratch {
    server: String,
    name: String,
    url: String,
}

impl Scratch {
    async fn new(case: &str) -> Option<Scratch> {
        let Ok(server) = std::env::var("TETHER_TEST_POSTGRES") else {
            eprintln!("skipped: TETHER_TEST_POSTGRES names no PostgreSQL server");
            return None;
        };
        let name = format!("tether_store_{case}_{}", std::process::id());
        let base = server.split('?').next().unwrap_or(&server);
        let at = base.rfind('/').filter(|i| *i > "postgres://".len()).unwrap_or(base.len());
        let url = format!("{}/{name}", &base[..at]);
        let scratch = Scratch { server, name, url };
        scratch.admin(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", scratch.name)).await;
        scratch.admin(&format!("CREATE DATABASE \"{}\"", scratch.name)).await;
        Some(scratch)
    }

    async fn admin(&self, sql: &str) {
        let options = PgConnectOptions::from_str(&self.server).expect("a server URL");
        let mut c = PgConnection::connect_with(&options).await.expect("the test server answers");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut c).await.expect(sql);
    }

    /// Runs `sql` in the scratch database.
    async fn exec(&self, sql: &'static str) {
        let mut c = PgConnection::connect(&self.url).await.expect("the scratch database answers");
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    }

    async fn open(&self) -> PostgresStore {
        PostgresStore::open(&StoreConfig::new(&self.url)).await.expect("the journal opens")
    }

    async fn drop_it(self) {
        self.admin(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await;
    }
}

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

fn usage(n: u32) -> EventKind {
    EventKind::UsageReported { step: "s".into(), metric: "tokens".into(), amount: n as f64 }
}

async fn take(store: &PostgresStore, run: &str, owner: &str, ttl_ms: u64) -> Fence {
    match store.take_lease(run, owner, ttl_ms, None).await.unwrap() {
        LeaseTake::Taken(lease) => lease.fence(),
        LeaseTake::Held(h) => panic!("{run} is held by {}", h.owner),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_read_back_and_only_the_lease_holder_writes() {
    let Some(db) = Scratch::new("fence").await else { return };
    let store = db.open().await;
    let run = RunId::from_suffix("f").unwrap();
    let a = take(&store, run.as_str(), "host-a", 200).await;
    let mut chain = Chain::new();
    let events = vec![chain.seal(&started(), 1), chain.seal(&usage(1), 2)];
    store.append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: a.clone(), events }).await.unwrap();
    let read = verify_and_decode(run.as_str(), &store.events(run.as_str()).await.unwrap()).unwrap();
    assert_eq!((read.len(), &read[1].kind), (2, &usage(1)));

    // Held while it lasts (by the server's clock); taken over once it lapses.
    assert!(matches!(store.take_lease(run.as_str(), "host-b", 1000, None).await.unwrap(), LeaseTake::Held(_)));
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let b = take(&store, run.as_str(), "host-b", 60_000).await;
    assert_eq!(b.epoch, 2);
    let stale = vec![chain.clone().seal(&usage(2), 3)];
    let err = store
        .append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: a, events: stale })
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::LeaseLost { epoch: 1, holder_epoch: 2, .. }), "{err}");
    assert!(err.to_string().contains("host-b"), "{err}");
    assert_eq!(store.events(run.as_str()).await.unwrap().len(), 2, "the stale host wrote nothing");

    // The holder's last append gives the lease up and anchors the head there.
    let last = vec![chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 4)];
    let hash = last[0].hash.clone();
    store.append(Append { lease: LeaseChange::Release, run_id: run.clone(), fence: b, events: last }).await.unwrap();
    let record = store.run_record(run.as_str()).await.unwrap();
    assert_eq!((record.head.map(|h| (h.seq, h.hash)), record.held), (Some((3, hash)), false));
    assert_eq!(store.last_event(run.as_str()).await.unwrap().0, 3);

    // A position written already, under a lease that holds: a conflict naming the event,
    // and what its writer queued after it is refused too.
    let other = RunId::from_suffix("g").unwrap();
    let fence = take(&store, other.as_str(), "host-a", 60_000).await;
    let first = vec![Chain::new().seal(&started(), 1)];
    store
        .append(Append { lease: LeaseChange::Keep, run_id: other.clone(), fence: fence.clone(), events: first })
        .await
        .unwrap();
    let mut stale = Chain::new();
    let again = vec![stale.seal(&usage(9), 1)];
    let next = vec![stale.seal(&usage(10), 2)];
    let again =
        store.enqueue(Append { lease: LeaseChange::Keep, run_id: other.clone(), fence: fence.clone(), events: again });
    let again = again.await.unwrap();
    let next = store.enqueue(Append { lease: LeaseChange::Keep, run_id: other.clone(), fence, events: next });
    let next = next.await.unwrap();
    let err = again.await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { seq: 1, head: 1, .. }), "{err}");
    assert!(err.to_string().contains("event 1 (usage_reported) conflicts"), "{err}");
    assert!(next.await.is_err(), "an append queued behind a refused one was written");
    assert_eq!(store.events(other.as_str()).await.unwrap().len(), 1);
    store.close().await.unwrap();
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_index_follows_pipelined_appends_of_one_run() {
    let Some(db) = Scratch::new("index").await else { return };
    let store = db.open().await;
    let run = RunId::from_suffix("idx-1").unwrap();
    let fence = Fence { owner: "host-a".into(), epoch: 1 };
    let mut chain = Chain::new();
    let paused = EventKind::RunPaused { step: "s".into(), exceeded: "tokens".into(), used: 5.0, limit: 5.0 };
    let resumed = EventKind::RunResumed { pid: 1 };
    // Queued without waiting: one batch may hold several appends of the run, and each
    // change counts, in order.
    let appends = [
        (vec![chain.seal(&started(), 10)], LeaseChange::TakeNew { ttl_ms: 60_000 }),
        (vec![chain.seal(&paused, 20)], LeaseChange::Keep),
        (vec![chain.seal(&resumed, 30)], LeaseChange::Keep),
        (vec![chain.seal(&paused, 40)], LeaseChange::Keep),
    ];
    let mut acks = Vec::new();
    for (events, lease) in appends {
        let append = Append { lease, run_id: run.clone(), fence: fence.clone(), events };
        acks.push(store.enqueue(append).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let rows = store.runs(None, 10).await.unwrap();
    assert_eq!((rows.len(), rows[0].status, rows[0].started_us), (1, RunIndexStatus::Paused, 10));
    let end = vec![
        chain.seal(&resumed, 50),
        chain.seal(&EventKind::RunCompleted { output: serde_json::json!(1) }, 60),
        chain.seal(&resumed, 70),
    ];
    store.append(Append { lease: LeaseChange::Release, run_id: run.clone(), fence, events: end }).await.unwrap();
    let row = &store.runs(Some(RunIndexStatus::Completed), 10).await.unwrap()[0];
    assert_eq!((row.run_id.as_str(), row.finished_us), ("run_idx-1", Some(60)));
    let events = verify_and_decode(run.as_str(), &store.events(run.as_str()).await.unwrap()).unwrap();
    assert_eq!(tether_types::run_index::index_status(&events), RunIndexStatus::Completed);

    // An id prefix is a key range, its `_` and `-` taken literally.
    let prefix = |p: &str| RunQuery { id_prefix: Some(p.into()), limit: 10, ..RunQuery::default() };
    assert_eq!(store.runs_page(&prefix("run_idx-")).await.unwrap().len(), 1);
    assert!(store.runs_page(&prefix("run_idx_")).await.unwrap().is_empty());
    assert!(store.runs_page(&prefix("run%")).await.unwrap().is_empty());
    store.close().await.unwrap();
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_that_are_not_our_journal_are_refused() {
    let Some(db) = Scratch::new("refused").await else { return };
    let mut config = StoreConfig::new(&db.url);
    config.create = false;
    let err = PostgresStore::open(&config).await.err().unwrap();
    assert!(matches!(err, StoreError::NoJournal(_)), "an empty database is not opened without create: {err}");

    db.exec("CREATE TABLE invoices (id BIGINT PRIMARY KEY)").await;
    let err = PostgresStore::open(&StoreConfig::new(&db.url)).await.err().unwrap();
    assert!(err.to_string().contains("is not a tether journal"), "{err}");
    db.exec("DROP TABLE invoices").await;

    drop(db.open().await);
    db.exec(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
    )
    .await;
    let err = PostgresStore::open(&StoreConfig::new(&db.url)).await.err().unwrap();
    assert!(err.to_string().contains("was written by a newer tether (schema version 9999"), "{err}");
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_over_by_another_host_sees_every_append_of_the_old_holder() {
    let Some(db) = Scratch::new("takeover").await else { return };
    let (a_store, b_store) = (db.open().await, db.open().await);
    let run = RunId::from_suffix("t").unwrap();
    let a = take(&a_store, run.as_str(), "host-a", 60_000).await;
    // Host A appends as fast as its commits go, until it is fenced out.
    let writing = tokio::spawn({
        let (store, run) = (a_store.clone(), run.clone());
        async move {
            let mut chain = Chain::new();
            let mut kind = started();
            loop {
                let events = vec![chain.seal(&kind, 1)];
                let append = Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: a.clone(), events };
                if let Err(e) = store.append(append).await {
                    return e;
                }
                kind = usage(1);
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Host B breaks A's lease through its own store (its own writer and connections):
    // once that returns, the journal holds every event A will ever have written. (The
    // lock that makes it so closes a window of a statement's length, which this test
    // does not reliably hit: it checks the outcome, not the lock.)
    let taken = b_store.take_lease(run.as_str(), "host-b", 60_000, Some(1)).await.unwrap();
    assert!(matches!(taken, LeaseTake::Taken(ref l) if l.epoch == 2), "{taken:?}");
    let seen = b_store.events(run.as_str()).await.unwrap().len();
    let err = writing.await.unwrap();
    assert!(matches!(err, StoreError::LeaseLost { holder_epoch: 2, .. }), "{err}");
    assert!(seen > 1, "host A wrote while it held the lease");
    assert_eq!(b_store.events(run.as_str()).await.unwrap().len(), seen, "host A wrote after the take-over");
    a_store.close().await.unwrap();
    b_store.close().await.unwrap();
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_locked_by_a_frozen_transaction_is_held_then_freed_by_the_server() {
    let Some(db) = Scratch::new("frozen").await else { return };
    let store = db.open().await;
    let run = RunId::from_suffix("frozen").unwrap();
    let a = take(&store, run.as_str(), "host-a", 1).await;
    let events = vec![Chain::new().seal(&started(), 1)];
    store.append(Append { lease: LeaseChange::Keep, run_id: run.clone(), fence: a, events }).await.unwrap();
    // A process that froze inside a transaction holding the run's lease row, on a
    // connection made as the store makes its own.
    let options = super::open::connect_options(&StoreConfig::new(&db.url)).unwrap();
    let mut frozen = PgConnection::connect_with(&options).await.unwrap();
    sqlx::query("BEGIN").execute(&mut frozen).await.unwrap();
    sqlx::query("SELECT 1 FROM run_leases WHERE run_id = $1 FOR SHARE")
        .bind(run.as_str())
        .execute(&mut frozen)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Another host is answered at once, not made to wait: the run is held.
    let started_at = std::time::Instant::now();
    let other = db.open().await;
    match other.take_lease(run.as_str(), "host-b", 60_000, None).await.unwrap() {
        LeaseTake::Held(h) => assert_eq!(h.owner, "host-a"),
        LeaseTake::Taken(l) => panic!("taken under another transaction's lock: {l:?}"),
    }
    assert!(started_at.elapsed() < std::time::Duration::from_secs(2), "{:?}", started_at.elapsed());
    assert!(other.claim_interrupted("host-b", 60_000, 10, &[]).await.unwrap().is_empty());
    // The server ends the idle transaction (5 s), and its lock with it: the run is free.
    tokio::time::sleep(std::time::Duration::from_millis(5_600)).await;
    assert!(sqlx::query("SELECT 1").execute(&mut frozen).await.is_err(), "the frozen session was ended");
    let claimed = other.claim_interrupted("host-b", 60_000, 10, &[]).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    store.close().await.unwrap();
    other.close().await.unwrap();
    db.drop_it().await;
}
