//! `tether serve` benchmark. Run: `cargo bench -p tether --bench serve` (release build;
//! unset RUST_BACKTRACE).
//!
//! Against a real `tether serve` process on 127.0.0.1 and a real SQLite journal
//! (`synchronous=FULL`), it prints:
//! - submit-to-completed latency of a 10-step run over HTTP (`POST /v1/runs`, then the
//!   run followed as server-sent events until its `end`), p50 and p99, beside the same
//!   run executed in process by the driver, and their ratio;
//! - throughput with K runs in flight over HTTP (K clients each submitting and following
//!   runs), runs/s and steps/s;
//! - the server's resident memory with 1,000 runs in flight (each in a 60 s retry
//!   backoff, so all are held at once) and with 10,000 runs waiting for approval (no
//!   instance is held for a waiting run).

mod served;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use served::{summary, Server};
use tether_runtime::{Driver, Runtime, RuntimeConfig};
use tether_store::{SqliteStore, StoreConfig};
use tether_tests::{artifacts, cache_dir, repo_root};
use tether_types::{RunId, Workflow};

const LATENCY_RUNS: usize = 200;
const THROUGHPUT_RUNS: usize = 400;

fn dir() -> PathBuf {
    let d = repo_root().join("target").join("bench-serve");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("workflows")).unwrap();
    d
}

fn ten_steps() -> String {
    let steps: String =
        (0..10).map(|i| format!("[[steps]]\nname = \"s{i}\"\ncomponent = {:?}\n", artifacts::TRIVIAL)).collect();
    format!("name = \"ten\"\n{steps}")
}

fn main() {
    let d = dir();
    std::fs::write(d.join("workflows/ten.toml"), ten_steps()).unwrap();

    // In process: the driver on its own journal, one run at a time.
    let in_process = {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir()), ..Default::default() }).unwrap();
            let db = d.join("in-process.db").display().to_string();
            let store = SqliteStore::open(&StoreConfig::new(&db)).await.unwrap();
            let driver = Driver::new(runtime.clone(), Arc::new(store));
            let wf = Workflow::parse("ten.toml", &ten_steps()).unwrap();
            let wf = runtime.load_workflow(wf, Path::new("/")).unwrap();
            let mut samples = Vec::new();
            for i in 0..LATENCY_RUNS + 10 {
                let id = RunId::from_suffix(&format!("p{i}")).unwrap();
                let t = Instant::now();
                let r = driver.start(&wf, id, json!({}), "bench", |_| {}).await.unwrap();
                assert!(r.error.is_none());
                if i >= 10 {
                    samples.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            summary(samples)
        })
    };

    let server = Server::start(&d, 32);
    for _ in 0..10 {
        let run = server.submit("ten");
        server.follow(&run);
    }
    let mut samples = Vec::new();
    for _ in 0..LATENCY_RUNS {
        let t = Instant::now();
        let run = server.submit("ten");
        assert_eq!(server.follow(&run), "completed");
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let over_http = summary(samples);
    println!("10-step run, submit to completed ({LATENCY_RUNS} runs, one at a time, synchronous=FULL):");
    println!(
        "  over HTTP:  p50 {:.2} ms  p99 {:.2} ms  (min {:.2}, max {:.2})",
        over_http.0, over_http.1, over_http.2, over_http.3
    );
    println!(
        "  in process: p50 {:.2} ms  p99 {:.2} ms  (min {:.2}, max {:.2})",
        in_process.0, in_process.1, in_process.2, in_process.3
    );
    println!("  ratio (HTTP / in process, p50): {:.2}", over_http.0 / in_process.0);

    println!("throughput over HTTP ({THROUGHPUT_RUNS} runs of 10 steps per K):");
    for k in [1usize, 8, 32] {
        let server = Arc::new(&server);
        let t = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..k {
                let server = Arc::clone(&server);
                scope.spawn(move || {
                    for _ in 0..THROUGHPUT_RUNS / k {
                        let run = server.submit("ten");
                        assert_eq!(server.follow(&run), "completed");
                    }
                });
            }
        });
        let runs = (THROUGHPUT_RUNS / k * k) as f64;
        let secs = t.elapsed().as_secs_f64();
        println!("  K = {k:>2} in flight: {:>7.1} runs/s  {:>8.1} steps/s", runs / secs, runs * 10.0 / secs);
    }
    drop(server);

    // 1,000 runs in flight at once: each waits out a 60 s retry backoff in the server.
    let d = dir();
    std::fs::create_dir_all(d.join("workflows/ledger")).unwrap();
    let flaky = format!(
        "name = \"flaky\"\n[tools.ledger]\ncomponent = {:?}\ndirs = [{{ host = \"ledger\", guest = \"/ledger\", write = true }}]\n\
         [[steps]]\nname = \"call\"\ncomponent = {:?}\ntools = [\"ledger\"]\nretry = {{ max_attempts = 2, initial_backoff = \"60s\", jitter = 0.0 }}\n",
        artifacts::LEDGER_TOOL,
        artifacts::FLAKY_STEP
    );
    std::fs::write(d.join("workflows/flaky.toml"), flaky).unwrap();
    let server = Server::start(&d, 1000);
    let idle = server.rss_mib();
    for _ in 0..1000 {
        let body = json!({"workflow": "flaky", "input": {"succeed_on": 2}}).to_string();
        let (status, answer) = server.request("POST", "/v1/runs", Some(&body), "*/*");
        assert_eq!(status, 201, "{answer}");
    }
    let t = Instant::now();
    while server.count("running") < 1000 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    println!("server memory: {idle:.1} MiB idle; {:.1} MiB with 1,000 runs in flight", server.rss_mib());
    drop(server);

    // 10,000 runs waiting for approval.
    let d = dir();
    std::fs::write(d.join("workflows/policy.toml"), "[identities.bot]\n\n[gates.g]\napprovals = 1\n").unwrap();
    let gated = format!(
        "name = \"gated\"\nidentity = \"bot\"\npolicy_file = \"policy.toml\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\n\
         approval = {{ gate = \"g\", when = \"true\" }}\n",
        artifacts::TRIVIAL
    );
    std::fs::write(d.join("workflows/gated.toml"), gated).unwrap();
    let server = Server::start(&d, 32);
    let t = Instant::now();
    let server = Arc::new(server);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let server = Arc::clone(&server);
            scope.spawn(move || {
                for _ in 0..10_000 / 8 {
                    server.submit("gated");
                }
            });
        }
    });
    let submitted = t.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let (_, body) = server.request("GET", "/v1/stats?limit=100000", None, "*/*");
    let waiting = serde_json::from_str::<Value>(&body).unwrap()["waiting"].as_u64().unwrap_or(0);
    println!(
        "server memory: {:.1} MiB with {waiting} runs waiting for approval (10,000 submitted in {:.1} s)",
        server.rss_mib(),
        submitted.as_secs_f64()
    );
}
