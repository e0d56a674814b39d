//! Cold start of a deployed Python component. Run: `cargo bench -p tether --bench cold_start`
//! (release build; unset RUST_BACKTRACE).
//!
//! Deploys the 18 MB componentize-py step `summarize` (and its Python tool) with
//! `tether plugin add`, which compiles them into the AOT cache, then starts a new `tether
//! run` process per sample and measures, from just before the process is spawned:
//! - to `run_started` being journaled (process start, journal open, workflow read, plugin
//!   resolved, compiled component mapped from the cache and pre-instantiated);
//! - to the step's first host call (its first `log`, at the top of `run` after parsing its
//!   input): the cold-start figure, target <= 50 ms;
//! - to the process's exit.
//!
//! It also checks that no sample compiled anything (the cache directory is unchanged) and
//! prints what the compile at `plugin add` took, for comparison. With root, one more
//! sample runs after dropping the OS page cache (the first start after a reboot).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tether_tests::{artifacts, repo_root};
use tether_types::store::Journal;

const SAMPLES: usize = 30;

fn tether(dir: &Path, args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_tether"))
        .current_dir(dir)
        .env("TETHER_CACHE_DIR", dir.join("cache"))
        .env("TETHER_DATABASE_URL", dir.join("journal.db"))
        .env_remove("RUST_BACKTRACE")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "tether {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Names, sizes and modification times of the cache's files: any compile changes them.
fn snapshot(cache: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (e.file_name().to_string_lossy().into_owned(), (m.len(), m.modified().unwrap()))
        })
        .collect()
}

struct Sample {
    to_started: Duration,
    to_first_call: Duration,
    to_exit: Duration,
}

fn sample(dir: &Path, i: usize) -> Sample {
    let run_id = format!("run_cold-{i}");
    let input = r#"{"text": "The export is broken again. Please fix it, thanks."}"#;
    let (t0, started) = (now_us(), Instant::now());
    tether(dir, &["run", "flow.toml", "--run-id", &run_id, "--input", input, "--json"]);
    let to_exit = started.elapsed();
    let events = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
        let store = tether_store::SqliteStore::open(&tether_store::StoreConfig::new(
            dir.join("journal.db").display().to_string(),
        ))
        .await
        .unwrap();
        store.events(&run_id).await.unwrap()
    });
    let at = |kind: &str| events.iter().find(|e| e.kind == kind).unwrap_or_else(|| panic!("no {kind}")).at_us;
    let since = |us: u64| Duration::from_micros(us.saturating_sub(t0));
    Sample { to_started: since(at("run_started")), to_first_call: since(at("guest_log")), to_exit }
}

fn stats(label: &str, mut values: Vec<Duration>) {
    values.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pick = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    println!(
        "{label:<44} median {:>6.1} ms   p10 {:>6.1}   p90 {:>6.1}   min {:>6.1}   max {:>6.1}",
        ms(pick(0.5)),
        ms(pick(0.1)),
        ms(pick(0.9)),
        ms(values[0]),
        ms(values[values.len() - 1])
    );
}

fn main() {
    let dir: PathBuf = repo_root().join("target").join("bench-cold-start");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let size = std::fs::metadata(artifacts::SUMMARIZE).unwrap().len();

    let added = tether(&dir, &["plugin", "add", artifacts::SUMMARIZE, "--version", "1.0.0", "--json"]);
    let added: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    tether(&dir, &["plugin", "add", artifacts::SENTIMENT, "--version", "1.0.0"]);
    std::fs::write(
        dir.join("flow.toml"),
        "name = \"cold-start\"\n[tools.sentiment]\ncomponent = \"sentiment@1.0.0\"\nbudget = { memory = \"64MiB\" }\n\
         [[steps]]\nname = \"summarize\"\ncomponent = \"summarize@1.0.0\"\ntools = [\"sentiment\"]\n\
         budget = { memory = \"64MiB\" }\n",
    )
    .unwrap();
    println!(
        "summarize.wasm: {:.1} MB (componentize-py); compiled by `tether plugin add` in {:.2} s",
        size as f64 / 1e6,
        added["compile_ms"].as_f64().unwrap() / 1e3
    );
    // One run to create the journal's tables, as on a host that has run before.
    sample(&dir, 0);
    let before = snapshot(&dir.join("cache"));

    let samples: Vec<Sample> = (1..=SAMPLES).map(|i| sample(&dir, i)).collect();
    assert_eq!(snapshot(&dir.join("cache")), before, "a sample compiled something: the cache changed");
    println!("{SAMPLES} new processes, each running the deployed step once (no compile: cache unchanged):");
    stats("process start -> run_started journaled", samples.iter().map(|s| s.to_started).collect());
    stats("process start -> step's first host call", samples.iter().map(|s| s.to_first_call).collect());
    stats("process start -> process exit", samples.iter().map(|s| s.to_exit).collect());

    if std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok() {
        let s = sample(&dir, SAMPLES + 1);
        println!(
            "after dropping the page cache: first host call at {:.1} ms, exit at {:.1} ms",
            s.to_first_call.as_secs_f64() * 1e3,
            s.to_exit.as_secs_f64() * 1e3
        );
    }
    let target = Duration::from_millis(50);
    let median = {
        let mut v: Vec<Duration> = samples.iter().map(|s| s.to_first_call).collect();
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "cold start (median, process start -> first instruction's host call): {:.1} ms; target <= 50 ms: {}",
        median.as_secs_f64() * 1e3,
        if median <= target { "met" } else { "NOT met" }
    );
}
