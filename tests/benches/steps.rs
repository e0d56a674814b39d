//! Step overhead benchmark. Run: `cargo bench -p tether-tests` (release build).
//!
//! Prints, each over several rounds (median of the rounds, and their min..max):
//! - per-step overhead of a trivial step through `Runtime::run_step` (fresh store,
//!   instantiate from the cached `InstancePre`, one call, drop): median and p99;
//! - trivial steps per second on 1 and 2 threads;
//! - fuel-metering overhead on a CPU-bound step, as the ratio of its median time with
//!   fuel to the same step on a runtime without fuel, measured in the same process.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_runtime::{LoadedWorkflow, Runtime, RuntimeConfig};
use tether_tests::{artifacts, cache_dir};
use tether_types::Workflow;

const ROUNDS: usize = 5;
const LATENCY_SAMPLES: usize = 20_000;
const THROUGHPUT_STEPS: usize = 40_000;
const CPU_SAMPLES: usize = 40;
/// Two CPU-bound workloads: a tight loop (xorshift and table updates) and library-style
/// code (build, serialize and parse JSON), which is where metering costs most.
const CPU_WORKLOADS: [(&str, &str); 2] = [
    ("tight loop (xorshift + table, n=2M)", r#"{"mode":"work","n":2000000}"#),
    ("library code (serde_json, 2000 records)", r#"{"mode":"json-work","n":2000}"#),
];

fn runtime(fuel: bool) -> Runtime {
    Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir()), max_sandboxes: 16, fuel, ..RuntimeConfig::default() })
        .expect("runtime starts")
}

fn one_step(rt: &Runtime, component: &str) -> LoadedWorkflow {
    let text = format!("name = \"bench\"\n[[steps]]\nname = \"s\"\ncomponent = {component:?}\n");
    let wf = Workflow::parse("bench.toml", &text).unwrap();
    rt.load_workflow(wf, Path::new("/")).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Median of the rounds, with their spread.
fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!("{:.2} (rounds {:.2}..{:.2})", percentile(&values, 0.5), values[0], values[values.len() - 1])
}

fn latency_round(rt: &Runtime, wf: &LoadedWorkflow) -> (f64, f64) {
    let step = &wf.steps[0];
    block_on(async {
        for _ in 0..1000 {
            rt.run_step(step, "{}").await.output.unwrap();
        }
        let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
        for _ in 0..LATENCY_SAMPLES {
            let t = Instant::now();
            let run = rt.run_step(step, "{}").await;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(run.output.is_ok());
        }
        samples.sort_by(f64::total_cmp);
        (percentile(&samples, 0.5), percentile(&samples, 0.99))
    })
}

fn throughput_round(rt: &Runtime, wf: &Arc<LoadedWorkflow>, threads: usize) -> f64 {
    let per_thread = THROUGHPUT_STEPS / threads;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (rt, wf) = (rt.clone(), Arc::clone(wf));
            std::thread::spawn(move || {
                block_on(async {
                    for _ in 0..per_thread {
                        rt.run_step(&wf.steps[0], "{}").await.output.unwrap();
                    }
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (per_thread * threads) as f64 / start.elapsed().as_secs_f64()
}

fn cpu_median(rt: &Runtime, wf: &LoadedWorkflow, input: &str) -> Duration {
    block_on(async {
        let mut samples = Vec::with_capacity(CPU_SAMPLES);
        for _ in 0..CPU_SAMPLES {
            let t = Instant::now();
            rt.run_step(&wf.steps[0], input).await.output.unwrap();
            samples.push(t.elapsed());
        }
        samples.sort();
        samples[samples.len() / 2]
    })
}

fn main() {
    // Every trap would capture a Rust backtrace; no trap is expected here, but keep
    // measurements free of it regardless.
    std::env::remove_var("RUST_BACKTRACE");
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    let metered = runtime(true);
    let unmetered = runtime(false);
    let trivial = Arc::new(one_step(&metered, artifacts::TRIVIAL));
    let work_metered = one_step(&metered, artifacts::HOSTILE);
    let work_unmetered = one_step(&unmetered, artifacts::HOSTILE);

    let (mut medians, mut p99s, mut one, mut two) = (vec![], vec![], vec![], vec![]);
    let mut cpu: Vec<[Vec<f64>; 3]> = CPU_WORKLOADS.iter().map(|_| [vec![], vec![], vec![]]).collect();
    for round in 1..=ROUNDS {
        let (median, p99) = latency_round(&metered, &trivial);
        medians.push(median);
        p99s.push(p99);
        one.push(throughput_round(&metered, &trivial, 1) / 1e3);
        two.push(throughput_round(&metered, &trivial, 2) / 1e3);
        for ((_, input), [with, without, ratio]) in CPU_WORKLOADS.iter().zip(cpu.iter_mut()) {
            let (f, nf) = (cpu_median(&metered, &work_metered, input), cpu_median(&unmetered, &work_unmetered, input));
            with.push(f.as_secs_f64() * 1e3);
            without.push(nf.as_secs_f64() * 1e3);
            ratio.push(f.as_secs_f64() / nf.as_secs_f64());
        }
        eprintln!("round {round}/{ROUNDS} done");
    }
    println!(
        "trivial step overhead (fresh store + instantiate + call + drop), {LATENCY_SAMPLES} samples x {ROUNDS} rounds"
    );
    println!("  median µs: {}", summary(medians));
    println!("  p99 µs:    {}", summary(p99s));
    println!("trivial steps per second (thousands), {THROUGHPUT_STEPS} steps per round");
    println!("  1 thread:  {}", summary(one));
    println!("  2 threads: {}", summary(two));
    for ((name, _), [with, without, ratio]) in CPU_WORKLOADS.iter().zip(cpu) {
        println!("fuel metering on a CPU-bound step: {name}, median of {CPU_SAMPLES} runs");
        println!("  with fuel ms:    {}", summary(with));
        println!("  without fuel ms: {}", summary(without));
        println!("  ratio:           {}", summary(ratio));
    }
}
