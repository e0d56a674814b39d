//! PostgreSQL journal and several workers benchmark. Run: `cargo bench -p tether --bench
//! workers` (release build; unset RUST_BACKTRACE). It starts a PostgreSQL server of its own
//! (`scripts/postgres-server`, fsync on) and real `tether serve` workers on 127.0.0.1, all
//! on this machine, and prints:
//! - durable throughput: runs of 10 trivial steps submitted over HTTP across 1, 2 and 3
//!   workers on one PostgreSQL journal, and across 1 worker on SQLite for reference;
//! - the latency of one 10-step run, submitted and followed to its end (server-sent
//!   events), one at a time, on PostgreSQL and on SQLite;
//! - takeover after SIGKILL: a worker killed in the middle of a step, and the time from its
//!   lease's expiry (its last heartbeat plus the lifetime) to the new owner taking the run
//!   up (its `run_resumed`, after which the step runs again), lease 2 s, over 20 kills.

mod served;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use served::{percentile, summary, Server};
use tether_tests::{artifacts, repo_root};

const RUNS: usize = 600;
const CLIENTS: usize = 8;
const LATENCY_RUNS: usize = 100;
const KILLS: usize = 20;

fn dir() -> PathBuf {
    let d = repo_root().join("target").join("bench-workers");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("workflows")).unwrap();
    d
}

/// The bench's own PostgreSQL server, stopped when dropped.
struct Postgres(PathBuf, String);

impl Postgres {
    fn start(dir: &Path) -> Postgres {
        let o = std::process::Command::new(repo_root().join("scripts/postgres-server"))
            .args(["start", &dir.display().to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Postgres(dir.to_path_buf(), String::from_utf8(o.stdout).unwrap().trim().to_string())
    }

    /// A new, empty database on it: its URL.
    fn database(&self, name: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(tether_store::testing::recreate_postgres_database(&self.1, name));
        tether_store::testing::postgres_database_url(&self.1, name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo_root().join("scripts/postgres-server"))
            .args(["destroy", &self.0.display().to_string()])
            .output();
    }
}

fn workflows(d: &Path) {
    let ten: String =
        (0..10).map(|i| format!("[[steps]]\nname = \"s{i}\"\ncomponent = {:?}\n", artifacts::TRIVIAL)).collect();
    std::fs::write(d.join("workflows/ten.toml"), format!("name = \"ten\"\n{ten}")).unwrap();
    let slow = format!(
        "name = \"slow\"\n[[steps]]\nname = \"wait\"\ncomponent = {:?}\ninput = \"{{'mode': 'sleep', 'ms': 4000}}\"\n\
         budget = {{ wall_time = \"20s\" }}\n",
        artifacts::HOSTILE
    );
    std::fs::write(d.join("workflows/slow.toml"), slow).unwrap();
}

/// `k` workers on the journal `url`.
fn workers(url: &str, d: &Path, k: usize, lease: &str) -> Vec<Server> {
    (0..k)
        .map(|i| {
            let host = format!("bench-worker-{i}");
            Server::start_on(url, d, 32, &[("TETHER_HOST_ID", &host), ("TETHER_LEASE_TTL", lease)])
        })
        .collect()
}

/// Steps per second: RUNS runs of 10 steps submitted round-robin by CLIENTS clients, each
/// then followed to its end.
fn throughput(servers: &[Server]) -> f64 {
    for s in servers {
        for _ in 0..5 {
            s.follow(&s.submit("ten"));
        }
    }
    let t = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            scope.spawn(move || {
                let mine: Vec<(usize, String)> = (0..RUNS / CLIENTS)
                    .map(|i| {
                        let s = (c + i) % servers.len();
                        (s, servers[s].submit("ten"))
                    })
                    .collect();
                for (s, run) in mine {
                    assert_eq!(servers[s].follow(&run), "completed");
                }
            });
        }
    });
    (RUNS * 10) as f64 / t.elapsed().as_secs_f64()
}

fn latency(server: &Server) -> (f64, f64, f64, f64) {
    let mut ms = Vec::new();
    for i in 0..LATENCY_RUNS + 10 {
        let t = Instant::now();
        assert_eq!(server.follow(&server.submit("ten")), "completed");
        if i >= 10 {
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    summary(ms)
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// One kill: worker A runs a step, is SIGKILLed; the time from its lease's expiry to
/// worker B taking the run up (its `run_resumed`, just before the step runs again), in ms.
fn takeover(url: &str, d: &Path) -> f64 {
    let mut pair = workers(url, d, 2, "2s");
    let run = pair[0].submit("slow");
    let events = |s: &Server| -> Vec<Value> {
        let (_, body) = s.request("GET", &format!("/v1/runs/{run}/events?limit=1000"), None, "*/*");
        serde_json::from_str::<Value>(&body).unwrap()["events"].as_array().cloned().unwrap_or_default()
    };
    let attempts = |ev: &[Value]| ev.iter().filter(|e| e["type"] == "step_attempt_started").count();
    while attempts(&events(&pair[0])) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = pair[0].child.kill();
    let _ = pair[0].child.wait();
    // Read after the kill: A beats no more, so when its lease lapses is settled.
    let o = served::tether_on(url).args(["workers", "--json"]).output().unwrap();
    let held: Value = serde_json::from_slice(&o.stdout).unwrap();
    let lapses_in_ms = held
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["runs"].as_array().cloned().unwrap_or_default())
        .find(|r| r["run_id"] == run.as_str())
        .and_then(|r| r["lapses_in_ms"].as_i64())
        .expect("A holds the run");
    let expires_us = (now_us() as i64 + lapses_in_ms * 1000) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        let ev = events(&pair[1]);
        // The new owner journals `run_resumed`, then runs the interrupted attempt again
        // (under its recorded number, with what it had recorded served from the journal).
        if let Some(e) = ev.iter().find(|e| e["type"] == "run_resumed") {
            break e["at_us"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "not taken over: {ev:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    second.saturating_sub(expires_us) as f64 / 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    std::env::remove_var("RUST_BACKTRACE");
    let d = dir();
    workflows(&d);
    let pg = Postgres::start(&d.join("postgres"));

    println!("durable throughput, {RUNS} runs of 10 trivial steps over HTTP ({CLIENTS} clients, each worker --concurrency 32):");
    let sqlite = d.join("journal.db").display().to_string();
    {
        let one = workers(&sqlite, &d, 1, "30s");
        println!("  SQLite, 1 worker:     {:>7.0} steps/s", throughput(&one));
    }
    for k in 1..=3 {
        let url = pg.database(&format!("throughput{k}"));
        let servers = workers(&url, &d, k, "30s");
        println!("  PostgreSQL, {k} worker(s): {:>7.0} steps/s", throughput(&servers));
    }

    println!("10-step run, submit to completed over HTTP ({LATENCY_RUNS} runs, one at a time):");
    for (name, url) in [("SQLite", sqlite.clone()), ("PostgreSQL", pg.database("latency"))] {
        let one = workers(&url, &d, 1, "30s");
        let (p50, p99, min, max) = latency(&one[0]);
        println!("  {name:<11} p50 {p50:.2} ms  p99 {p99:.2} ms  (min {min:.2}, max {max:.2})");
    }

    let url = pg.database("takeover");
    let mut ms: Vec<f64> = (0..KILLS).map(|_| takeover(&url, &d)).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "takeover after SIGKILL, lease expiry to the new owner taking the run ({KILLS} kills, lease 2 s): \
         median {:.0} ms, p90 {:.0} ms (min {:.0}, max {:.0})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        ms[0],
        ms[ms.len() - 1]
    );
}
