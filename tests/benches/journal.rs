//! Journal benchmark. Run: `cargo bench -p tether-tests --bench journal`.
//!
//! Prints, with `synchronous=FULL` on a real SQLite file:
//! - peak host memory while 1,000 runs are in flight (measured first, in a fresh process);
//! - durable throughput: concurrent runs of 10 trivial steps, steps/s (median of rounds);
//! - latency: one run of 10 sequential trivial steps end to end, median and p99;
//! - replay speed: events/s replaying a run of 100,000 events;
//! - the throughput again with 100,000 finished runs in the database, and the ratio.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tether_runtime::{Driver, LoadedWorkflow, Runtime, RuntimeConfig};
use tether_store::{Durability, SqliteStore, StoreConfig};
use tether_tests::{artifacts, cache_dir, peak_rss_mib, repo_root};
use tether_types::{RunId, Workflow};

const ROUNDS: usize = 5;
const CONCURRENT_RUNS: usize = 256;
const RUNS_PER_ROUND: usize = 2_000;
const HISTORY_RUNS: usize = 100_000;

fn dir() -> PathBuf {
    repo_root().join("target").join("bench-journal")
}

fn fresh_db(name: &str) -> String {
    let path = dir().join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path.display().to_string()
}

/// A driver on a journal, and the journal (to count its commits).
async fn driver(runtime: &Runtime, db: &str) -> (Driver, SqliteStore) {
    let store = SqliteStore::open(&StoreConfig::new(db)).await.expect("journal opens");
    (Driver::new(runtime.clone(), Arc::new(store.clone())), store)
}

fn workflow(runtime: &Runtime, steps: usize, component: &str) -> Arc<LoadedWorkflow> {
    let body: String = (0..steps)
        .map(|i| {
            format!("[[steps]]\nname = \"s{i}\"\ncomponent = {component:?}\nbudget = {{ fuel = 100_000_000_000 }}\n")
        })
        .collect();
    let wf = Workflow::parse("bench.toml", &format!("name = \"bench\"\n{body}")).unwrap();
    Arc::new(runtime.load_workflow(wf, Path::new("/")).unwrap())
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn run_id() -> RunId {
    RunId::from_suffix(&format!("b{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))).unwrap()
}

/// Runs `total` runs of `wf`, at most `concurrency` at a time; returns steps per second.
async fn throughput(driver: &Driver, wf: &Arc<LoadedWorkflow>, total: usize, concurrency: usize) -> f64 {
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(total);
    for _ in 0..total {
        let permit = Arc::clone(&sem).acquire_owned().await.unwrap();
        let (driver, wf) = (driver.clone(), Arc::clone(wf));
        tasks.push(tokio::spawn(async move {
            let r = driver.start(&wf, run_id(), json!({}), "bench", |_| {}).await.expect("durable run");
            assert!(r.error.is_none(), "{:?}", r.error);
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (total * wf.steps.len()) as f64 / start.elapsed().as_secs_f64()
}

/// One run of 10 sequential trivial steps at a time, on a single-threaded runtime as
/// the CLI uses: median and p99 of 200 runs.
fn latency(runtime: &Runtime, wf: &Arc<LoadedWorkflow>, durability: Durability) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut config = StoreConfig::new(fresh_db("latency"));
        config.durability = durability;
        let d = Driver::new(runtime.clone(), Arc::new(SqliteStore::open(&config).await.unwrap()));
        let mut lat = Vec::new();
        for i in 0..220 {
            let t = Instant::now();
            d.start(wf, run_id(), json!({}), "bench", |_| {}).await.unwrap();
            if i >= 20 {
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "latency, one run of 10 sequential trivial steps end to end, synchronous={durability:?}: median {:.2} ms, p99 {:.2} ms ({} runs)",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.len()
        );
    });
}

/// The disk's floor in ms: a durable commit cannot be faster, so a pure run of 10 steps
/// (one commit: its start, steps and end together) cannot be faster than one of these.
fn fdatasync_floor_ms() -> f64 {
    tether_tests::fdatasync_floor_us(&dir()) / 1e3
}

/// The same 10 steps with no journal at all: what the journal adds is the difference.
fn latency_without_journal(runtime: &Runtime, wf: &Arc<LoadedWorkflow>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut lat: Vec<f64> = (0..220)
        .map(|_| {
            let t = Instant::now();
            rt.block_on(runtime.run_workflow(wf, run_id(), "{}", |_| {}));
            t.elapsed().as_secs_f64() * 1e3
        })
        .skip(20)
        .collect();
    lat.sort_by(f64::total_cmp);
    println!("  for reference, the same 10 steps without a journal: median {:.2} ms", pct(&lat, 0.5));
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("{:.1} (rounds {:.1}..{:.1})", pct(&v, 0.5), v[0], v[v.len() - 1])
}

fn main() {
    std::env::remove_var("RUST_BACKTRACE");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    std::fs::create_dir_all(dir()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let runtime =
        Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir()), max_sandboxes: 64, ..RuntimeConfig::default() })
            .unwrap();
    let ten = workflow(&runtime, 10, artifacts::TRIVIAL);

    rt.block_on(async {
        // Memory first, so the process's peak RSS is this measurement's.
        let base = peak_rss_mib();
        let (d, _) = driver(&runtime, &fresh_db("inflight")).await;
        let steps_per_s = throughput(&d, &ten, 1_000, 1_000).await;
        println!("1,000 runs in flight (10 trivial steps each): peak host RSS {:.0} MiB (before: {base:.0} MiB), {steps_per_s:.0} steps/s", peak_rss_mib());

        let fresh = fresh_db("throughput");
        let (d, store) = driver(&runtime, &fresh).await;
        throughput(&d, &ten, 200, CONCURRENT_RUNS).await; // warm up
        let mut fresh_rounds = Vec::new();
        let commits_before = store.commits();
        for _ in 0..ROUNDS {
            fresh_rounds.push(throughput(&d, &ten, RUNS_PER_ROUND, CONCURRENT_RUNS).await / 1e3);
        }
        let steps = (ROUNDS * RUNS_PER_ROUND * 10) as f64;
        println!("durable throughput, {CONCURRENT_RUNS} concurrent runs of 10 trivial steps, synchronous=FULL");
        println!("  fresh database, thousand steps/s: {}", summary(fresh_rounds.clone()));
        println!("  durable commits (transactions) per step: {:.3}", (store.commits() - commits_before) as f64 / steps);


        // Its own thread: it runs on a single-threaded runtime of its own.
        std::thread::scope(|s| {
            s.spawn(|| {
                latency(&runtime, &ten, Durability::Full);
                latency(&runtime, &ten, Durability::Normal);
                latency_without_journal(&runtime, &ten);
                let floor = fdatasync_floor_ms();
                println!("  the disk's floor now: fdatasync median {floor:.3} ms, which the run's one commit takes at least");
            });
        });

        let replay_db = fresh_db("replay");
        let (d3, _) = driver(&runtime, &replay_db).await;
        // Ten steps of 10,000 usage reports each (the most one attempt may make).
        let flood = workflow(&runtime, 10, artifacts::HOSTILE);
        let id = run_id();
        let r = d3.start(&flood, id.clone(), json!({"mode": "usage-flood", "n": 10_000}), "bench", |_| {}).await.unwrap();
        assert!(r.error.is_none(), "{:?}", r.error);
        let mut speeds = Vec::new();
        let mut events = 0;
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let rep = d3.replay(id.as_str(), &Default::default()).await.unwrap();
            assert!(rep.divergence.is_none());
            events = rep.events;
            speeds.push(rep.events as f64 / t.elapsed().as_secs_f64() / 1e3);
        }
        println!("replay speed, one run of {events} events (load, verify chain, re-execute, compare), thousand events/s: {}", summary(speeds));

        let one = workflow(&runtime, 1, artifacts::TRIVIAL);
        let t = Instant::now();
        throughput(&d, &one, HISTORY_RUNS, 512).await;
        println!("  (added {HISTORY_RUNS} finished runs in {:.1} s)", t.elapsed().as_secs_f64());
        let mut hist_rounds = Vec::new();
        for _ in 0..ROUNDS {
            hist_rounds.push(throughput(&d, &ten, RUNS_PER_ROUND, CONCURRENT_RUNS).await / 1e3);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            pct(&v, 0.5)
        };
        let ratio = median(hist_rounds.clone()) / median(fresh_rounds);
        println!("  with {HISTORY_RUNS}+ finished runs, thousand steps/s: {} (ratio to fresh {ratio:.2})", summary(hist_rounds));
    });
}
