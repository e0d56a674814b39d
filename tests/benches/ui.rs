//! Web UI benchmark. Run: `cargo bench -p tether --bench ui` (release build; unset
//! RUST_BACKTRACE).
//!
//! A real SQLite journal is filled by the driver in process with 100,000 finished runs
//! (a few of them failed, a few of another workflow) and one run of more than 100,000
//! events (2,000 fan-out items making 24 tool calls each). A real `tether serve` then
//! serves it, and the bench times whole requests of a logged-in session to 127.0.0.1
//! (server side: request to last byte, no browser), printing p50, p90 and max, and the
//! page's size, for:
//! - the runs page: newest first, a rare status, a rare workflow, an id prefix, and a
//!   page 50,000 runs deep (by its cursor);
//! - the page of the run of 100,000 events (its summary, graph, timeline and newest 200
//!   events), an earlier page of its events, and a small run's page for reference.
//!
//! `-- --reuse` serves the journal the last run filled, to compare two builds on it.

mod served;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use served::{percentile, Server};
use tether_runtime::{Driver, LoadedWorkflow, Runtime, RuntimeConfig};
use tether_store::{SqliteStore, StoreConfig};
use tether_tests::{artifacts, cache_dir, repo_root};
use tether_types::{RunId, Workflow};

const RUNS: usize = 100_000;
const RARE: usize = 100;
const ITEMS: usize = 2_000;
const CALLS: usize = 24;
const SAMPLES: usize = 40;
const COLD: usize = 10;

fn dir() -> PathBuf {
    repo_root().join("target").join("bench-ui")
}

fn load(runtime: &Runtime, toml: &str) -> Arc<LoadedWorkflow> {
    Arc::new(runtime.load_workflow(Workflow::parse("bench.toml", toml).unwrap(), Path::new("/")).unwrap())
}

/// Runs `total` runs of `wf` named `{prefix}{i}`, at most 256 at a time.
async fn fill(driver: &Driver, wf: &Arc<LoadedWorkflow>, prefix: &str, total: usize, input: serde_json::Value) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..256)
        .map(|_| {
            let (driver, wf, next, input, prefix) =
                (driver.clone(), wf.clone(), next.clone(), input.clone(), prefix.to_string());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let id = RunId::from_suffix(&format!("{prefix}{i}")).unwrap();
                    driver.start(&wf, id, input.clone(), "bench", |_| {}).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The journal: 100,000 runs and one run of 100,000+ events. Returns the big run's id.
fn populate(d: &Path) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir()), max_sandboxes: 512, ..Default::default() })
            .unwrap();
        let db = d.join("journal.db").display().to_string();
        let store = SqliteStore::open(&StoreConfig::new(&db)).await.unwrap();
        let driver = Driver::new(runtime.clone(), Arc::new(store));
        let t = Instant::now();
        let rare = format!("name = \"rare\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\n", artifacts::TRIVIAL);
        fill(&driver, &load(&runtime, &rare), "rare", RARE, json!({})).await;
        let failing = format!("name = \"bulk\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\n", artifacts::HOSTILE);
        fill(&driver, &load(&runtime, &failing), "failed", RARE, json!({"mode": "fail"})).await;
        // The rare ones first: the newest 99,800 runs must be passed over to find them.
        let one = format!("name = \"bulk\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\n", artifacts::TRIVIAL);
        fill(&driver, &load(&runtime, &one), "bulk", RUNS - 2 * RARE, json!({})).await;
        println!("(filled {RUNS} runs in {:.1} s)", t.elapsed().as_secs_f64());

        let t = Instant::now();
        let big = format!(
            "name = \"fan-out\"\n[tools.echo]\ncomponent = {echo:?}\n[[steps]]\nname = \"fetch\"\ncomponent = {hostile:?}\n\
             tools = [\"echo\"]\nfor_each = \"input.items\"\nconcurrency = 16\n\
             input = \"{{'mode': 'tool-flood', 'n': {CALLS}}}\"\nbudget = {{ tool_calls = {CALLS} }}\n",
            echo = artifacts::ECHO_TOOL,
            hostile = artifacts::HOSTILE
        );
        let id = RunId::from_suffix("big").unwrap();
        let items: Vec<usize> = (0..ITEMS).collect();
        let r = driver.start(&load(&runtime, &big), id.clone(), json!({"items": items}), "bench", |_| {}).await.unwrap();
        assert!(r.error.is_none(), "{:?}", r.error);
        println!("(ran the fan-out run in {:.1} s)", t.elapsed().as_secs_f64());
        id.as_str().to_string()
    })
}

/// Logs in with the server's token: the session cookie.
fn login(server: &Server) -> String {
    let form = format!("token={}&next=%2Fui%2Fruns", server.token);
    let (status, head, _) =
        server.send("POST", "/ui/login", "content-type: application/x-www-form-urlencoded\r\n", &form);
    assert_eq!(status, 303, "{head}");
    let line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a session cookie");
    line.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_string()
}

/// Times `path` SAMPLES times (after 3 to warm up); prints p50, p90, max and the size.
/// Returns the page.
fn time(server: &Server, cookie: &str, what: &str, path: &str, must_contain: &str) -> String {
    let headers = format!("cookie: {cookie}\r\n");
    let mut ms = Vec::new();
    let mut page = String::new();
    for i in 0..SAMPLES + 3 {
        let t = Instant::now();
        let (status, _, body) = server.send("GET", path, &headers, "");
        let took = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains(must_contain), "{path} lacks {must_contain:?}");
        page = body;
        if i >= 3 {
            ms.push(took);
        }
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "  {what:<44} p50 {:>7.2} ms  p90 {:>7.2} ms  max {:>7.2} ms  ({:.0} KiB)",
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        ms[ms.len() - 1],
        page.len() as f64 / 1024.0
    );
    page
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `--reuse` keeps the journal of the last run (to compare two builds on one journal).
    let d = dir();
    let big = if std::env::args().any(|a| a == "--reuse") && d.join("journal.db").exists() {
        RunId::from_suffix("big").unwrap().as_str().to_string()
    } else {
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("workflows")).unwrap();
        populate(&d)
    };
    // The first view of the long run after a start: drawn from its whole journal.
    let mut first = Vec::new();
    for _ in 0..COLD {
        let server = Server::start(&d, 32);
        let cookie = login(&server);
        let t = Instant::now();
        let (status, _, body) = server.send("GET", &format!("/ui/runs/{big}"), &format!("cookie: {cookie}\r\n"), "");
        first.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status, 200, "{body}");
    }
    first.sort_by(f64::total_cmp);
    let server = Server::start(&d, 32);
    let cookie = login(&server);
    println!("{SAMPLES} requests each, logged in, to a real server on a journal of {RUNS}+ runs:");
    let (_, list) = server.request("GET", "/v1/runs?limit=1&workflow=bulk", None, "*/*");
    let newest =
        serde_json::from_str::<serde_json::Value>(&list).unwrap()["runs"][0]["run_id"].as_str().unwrap().to_string();
    time(&server, &cookie, "runs page, newest first", "/ui/runs", "Older runs");
    time(&server, &cookie, "runs page, status failed (100 of 100,000)", "/ui/runs?status=failed", "run_failed");
    time(&server, &cookie, "runs page, workflow rare (100 of 100,000)", "/ui/runs?workflow=rare", "run_rare");
    time(
        &server,
        &cookie,
        "runs page, an id prefix (one run)",
        &format!("/ui/runs?q={}", &newest[..newest.len() - 1]),
        &newest,
    );
    // A page 50,000 runs deep, by the cursor the pages hand out.
    let (_, deep) = server.request("GET", "/v1/runs?limit=1000", None, "*/*");
    let mut cursor =
        serde_json::from_str::<serde_json::Value>(&deep).unwrap()["next_cursor"].as_str().map(str::to_string);
    for _ in 0..49 {
        let (_, page) = server.request("GET", &format!("/v1/runs?limit=1000&cursor={}", cursor.unwrap()), None, "*/*");
        cursor = serde_json::from_str::<serde_json::Value>(&page).unwrap()["next_cursor"].as_str().map(str::to_string);
    }
    let cursor = cursor.expect("a page 50,000 runs deep");
    time(&server, &cookie, "runs page, 50,000 runs deep", &format!("/ui/runs?cursor={cursor}"), "Older runs");
    let page =
        time(&server, &cookie, "run page, 100,000+ events, again", &format!("/ui/runs/{big}"), "Load earlier events");
    let n = page.split("Events (").nth(1).and_then(|r| r.split(')').next()).unwrap_or("?").to_string();
    println!("  (that run has {n} events)");
    println!(
        "  {:<44} p50 {:>7.2} ms  p90 {:>7.2} ms  max {:>7.2} ms  ({COLD} server starts)",
        "its first view after a start (whole journal)",
        percentile(&first, 0.5),
        percentile(&first, 0.9),
        first[first.len() - 1]
    );
    time(
        &server,
        &cookie,
        "  its events before #50,000",
        &format!("/ui/runs/{big}?before=50000"),
        "Load earlier events",
    );
    time(&server, &cookie, "run page, one step (for reference)", &format!("/ui/runs/{newest}"), "Timeline");
}
