//! Where a durable step's time goes. Run: `cargo bench -p tether-tests --bench profile`.
//!
//! Runs `PROFILE_RUNS` (default 200) runs of 10 sequential trivial steps, one at a time on
//! a single-threaded runtime (as the CLI does), with `synchronous=FULL` on a real SQLite
//! file, after 20 runs of warm-up. It prints, per step: heap allocations and bytes
//! allocated (a counting allocator), wall time; and the journal file it wrote, so events,
//! bytes per event and syncs can be read off it. It is deliberately small and quiet so it
//! can run under valgrind's callgrind (instructions are stable where wall time is not):
//! run it with `PROFILE_RUNS=0` and with `PROFILE_RUNS=100` and the difference, divided
//! by 1,000, is the instructions per step.

// The counting allocator is the one unsafe thing here: `GlobalAlloc` is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tether_runtime::{Driver, Runtime, RuntimeConfig};
use tether_store::{Durability, SqliteStore, StoreConfig};
use tether_tests::{artifacts, cache_dir, peak_rss_mib, repo_root};
use tether_types::{RunId, Workflow};

/// Counts every allocation this process makes (all threads: the writer's work counts).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(new_size as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const STEPS: usize = 10;

fn main() {
    std::env::remove_var("RUST_BACKTRACE");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("PROFILE_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir: PathBuf = repo_root().join("target").join("bench-journal");
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("profile.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }

    let in_flight_runs: Option<usize> = std::env::var("PROFILE_IN_FLIGHT").ok().and_then(|v| v.parse().ok());
    // Runs in flight share as many sandboxes as the journal bench gives them; one run at a
    // time needs few (and valgrind cannot reserve a large pool's address space).
    let max_sandboxes = if in_flight_runs.is_some() { 64 } else { 4 };
    let runtime =
        Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir()), max_sandboxes, ..RuntimeConfig::default() })
            .unwrap();
    let body: String =
        (0..STEPS).map(|i| format!("[[steps]]\nname = \"s{i}\"\ncomponent = {:?}\n", artifacts::TRIVIAL)).collect();
    let wf = Workflow::parse("bench.toml", &format!("name = \"bench\"\n{body}")).unwrap();
    let wf = Arc::new(runtime.load_workflow(wf, Path::new("/")).unwrap());

    if let Some(n) = in_flight_runs {
        in_flight(&runtime, &wf, &db, n);
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut config = StoreConfig::new(db.display().to_string());
        config.durability = Durability::Full;
        let driver = Driver::new(runtime.clone(), Arc::new(SqliteStore::open(&config).await.unwrap()));
        let one = |n: usize| {
            let (driver, wf) = (&driver, &wf);
            async move {
                let id = RunId::from_suffix(&format!("p{n}")).unwrap();
                let r = driver.start(wf, id, json!({}), "bench", |_| {}).await.unwrap();
                assert!(r.error.is_none(), "{:?}", r.error);
            }
        };
        for n in 0..20 {
            one(n).await;
        }
        let (allocs, bytes) = (ALLOCS.load(Relaxed), ALLOC_BYTES.load(Relaxed));
        let t = Instant::now();
        for n in 20..20 + runs {
            one(n).await;
        }
        let wall = t.elapsed().as_secs_f64();
        let steps = (runs * STEPS).max(1) as f64;
        println!("{runs} runs of {STEPS} trivial steps, one at a time, synchronous=FULL; per step:");
        println!("  heap allocations: {:.0}", (ALLOCS.load(Relaxed) - allocs) as f64 / steps);
        println!("  bytes allocated: {:.0}", (ALLOC_BYTES.load(Relaxed) - bytes) as f64 / steps);
        println!("  wall time: {:.1} us", wall * 1e6 / steps);
        println!("  journal: {}", db.display());
    });
}

/// `PROFILE_IN_FLIGHT=N`: where the memory of N runs in flight at once goes (as the
/// journal bench's peak RSS figure runs them, on two threads); run it under a heap
/// profiler.
fn in_flight(runtime: &Runtime, wf: &Arc<tether_runtime::LoadedWorkflow>, db: &Path, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let config = StoreConfig::new(db.display().to_string());
        let driver = Driver::new(runtime.clone(), Arc::new(SqliteStore::open(&config).await.unwrap()));
        let base = peak_rss_mib();
        let probe = driver.start(wf, RunId::from_suffix("size").unwrap(), json!({}), "bench", |_| {});
        println!("a run's future: {} bytes", std::mem::size_of_val(&probe));
        drop(probe);
        // `PROFILE_CONCURRENCY=C`: at most C at once (the journal bench's throughput uses 256).
        let at_once = std::env::var("PROFILE_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(n);
        let permits = Arc::new(tokio::sync::Semaphore::new(at_once));
        let t = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
            let (driver, wf) = (driver.clone(), Arc::clone(wf));
            tasks.push(tokio::spawn(async move {
                let id = RunId::from_suffix(&format!("f{i}")).unwrap();
                let report = driver.start(&wf, id, json!({}), "bench", |_| {}).await.unwrap();
                assert!(report.error.is_none(), "{:?}", report.error);
                drop(permit);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let steps_per_s = (n * STEPS) as f64 / t.elapsed().as_secs_f64();
        println!(
            "{n} runs, {at_once} at once: peak RSS {:.0} MiB (before them: {base:.0} MiB), {steps_per_s:.0} steps/s",
            peak_rss_mib()
        );
        if std::env::var_os("PROFILE_MAPS").is_some() {
            resident_by_mapping();
        }
    });
}

/// The largest resident mappings now, from /proc/self/smaps (`PROFILE_MAPS=1`).
fn resident_by_mapping() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let size = parts[0].split('-').map(|h| u64::from_str_radix(h, 16).unwrap_or(0)).collect::<Vec<_>>();
            name = format!("{} ({} KiB mapped)", parts.get(5).unwrap_or(&"[anon]"), (size[1] - size[0]) / 1024);
        } else if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            maps.push((kib, name.clone()));
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (kib, name) in maps.iter().take(15) {
        println!("  {kib:>8} KiB  {name}");
    }
}
