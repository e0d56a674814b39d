//! Crash injection: the host is killed with SIGKILL at random points while running a
//! multi-step workflow whose tool has a real external effect (a ledger file outside the
//! journal), then resumed, possibly killed again, until the run completes.
//!
//! Asserts: every run completes; its output equals a crash-free run's; no completed step
//! ran again; every tool effect is in the ledger exactly once.
//!
//! Seeded and printed; reproduce with `TETHER_CRASH_SEED=N`. `TETHER_CRASH_ITERATIONS`
//! changes the number of runs (default 50).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tether_tests::artifacts;

use crate::chaos::{env_u64, kill_after, unhex, Rng};
use crate::support::{tether_cmd, tether_json};

const STEPS: u32 = 4;

fn workflow(dir: &Path) -> String {
    let steps: String = (1..=STEPS)
        .map(|k| {
            format!("[[steps]]\nname = \"s{k}\"\ncomponent = {:?}\ntools = [\"ledger\"]\n", artifacts::DURABLE_STEP)
        })
        .collect();
    let text = format!(
        "name = \"crash\"\n[tools.ledger]\ncomponent = {:?}\ndirs = [{{ host = \"ledger\", guest = \"/ledger\", write = true }}]\n{steps}",
        artifacts::LEDGER_TOOL
    );
    let path = dir.join("crash.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn killed_runs_resume_to_the_same_output_with_every_effect_exactly_once() {
    let seed = crate::chaos::seed();
    let iterations = env_u64("TETHER_CRASH_ITERATIONS").unwrap_or(50);
    eprintln!("crash injection: seed {seed}, {iterations} runs (reproduce with TETHER_CRASH_SEED={seed})");
    let mut rng = Rng(seed);

    let dir = crate::chaos::PrivateDir::new("crash");
    std::fs::create_dir_all(dir.join("ledger")).unwrap();
    let db = dir.join("journal.db");
    let wf = workflow(&dir);
    let input = json!({"n": 1, "trail": [], "spin": 4_000_000}).to_string();

    // A crash-free run, for the expected output and the time a run takes.
    let started = std::time::Instant::now();
    let (code, reference) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_reference", "--json"]);
    let run_time = started.elapsed();
    assert_eq!(code, Some(0), "{reference}");
    let expected: Vec<String> = (1..=STEPS).flat_map(|k| [format!("step{k}-a"), format!("step{k}-b")]).collect();
    assert_eq!(reference["output"]["trail"], json!(expected));
    let max_delay = (run_time.as_millis() as u64 * 3 / 2).max(50);

    let (mut kills, mut resumes, mut mid_attempt) = (0, 0, 0);
    for i in 0..iterations {
        let run = format!("run_crash-{seed}-{i}");
        let submit = || {
            let mut c = tether_cmd(&db);
            c.args(["run", &wf, "--input", &input, "--run-id", &run, "--json"]);
            c
        };
        kill_after(
            submit().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
            Duration::from_millis(rng.below(max_delay)),
        );
        kills += 1;
        // Resume, sometimes killing the resumed host too, until the run is done.
        let mut report = Value::Null;
        for attempt in 0.. {
            assert!(attempt < 20, "run {run} did not finish after 20 resumes");
            if attempt < 4 && rng.below(3) == 0 {
                let child =
                    tether_cmd(&db).args(["resume", &run]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
                kill_after(child, Duration::from_millis(rng.below(max_delay)));
                kills += 1;
                continue;
            }
            let o = tether_cmd(&db).args(["resume", &run, "--json"]).output().unwrap();
            if o.status.code() == Some(2) && String::from_utf8_lossy(&o.stderr).contains("unknown run") {
                // Killed before the run's start was durable: submit it again, same id.
                let o = submit().output().unwrap();
                report = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            } else {
                assert_eq!(o.status.code(), Some(0), "resume {run}: {}", String::from_utf8_lossy(&o.stderr));
                report = serde_json::from_slice(&o.stdout).unwrap();
            }
            break;
        }
        assert_eq!(report["status"], "completed", "run {run}: {report}");
        assert_eq!(report["output"], reference["output"], "run {run} (seed {seed})");
        let (r, m) = assert_no_step_ran_after_completing(&db, &run);
        resumes += r;
        mid_attempt += m;
    }

    // Every effect exactly once: one record per (run, step, call), none missing (the
    // key's file, made once, atomically), and one line in the aggregate log (appended
    // after the record; a line a kill left out is added by the call's retry).
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("ledger/keys")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        *counts.entry(unhex(&name)).or_default() += 1;
    }
    let ledger = std::fs::read_to_string(dir.join("ledger/effects.log")).unwrap();
    let mut lines: BTreeMap<&str, u32> = BTreeMap::new();
    for line in ledger.lines() {
        *lines.entry(line.split('\t').next().unwrap()).or_default() += 1;
    }
    assert!(lines.values().all(|n| *n == 1), "a key appears twice in effects.log (seed {seed})");
    let runs =
        std::iter::once("run_reference".to_string()).chain((0..iterations).map(|i| format!("run_crash-{seed}-{i}")));
    let mut expected_keys = 0;
    for run in runs {
        for k in 1..=STEPS {
            for call in 0..2 {
                let key = format!("{run}/s{k}/{call}");
                assert_eq!(counts.get(&key), Some(&1), "effect {key} (seed {seed})");
                assert_eq!(lines.get(key.as_str()), Some(&1), "effect {key} in effects.log (seed {seed})");
                expected_keys += 1;
            }
        }
    }
    assert_eq!(counts.len(), expected_keys, "no unexpected effects");
    let invocations = std::fs::read_to_string(dir.join("ledger/invocations.log")).unwrap().lines().count();
    eprintln!(
        "crash injection: {iterations} runs, {kills} kills, {resumes} resumes of a started run ({mid_attempt} in the \
         middle of a step); {expected_keys} effects each recorded once; the tool was invoked {invocations} times \
         ({} repeated after a crash and absorbed by the idempotency key)",
        invocations - expected_keys
    );
    assert!(mid_attempt > 0, "no kill landed inside a step; the test would prove little (seed {seed})");
}

/// From the journal: each step completed once, and nothing of it ran after that.
/// Returns how many times the run was resumed, and how many of those picked up an
/// attempt in the middle (its start durable, its end not).
fn assert_no_step_ran_after_completing(db: &Path, run: &str) -> (u32, u32) {
    let (_, events) = tether_json(db, &["history", run, "--json"]);
    let events = events.as_array().unwrap();
    let (mut resumes, mut mid_attempt, mut open) = (0, 0, false);
    for e in events {
        match e["type"].as_str() {
            Some("step_attempt_started") => open = true,
            Some("step_completed") | Some("step_failed") => open = false,
            Some("run_resumed") => {
                resumes += 1;
                mid_attempt += u32::from(open);
            }
            _ => {}
        }
    }
    for k in 1..=STEPS {
        let step = format!("s{k}");
        let completed: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e["type"] == "step_completed" && e["step"] == step)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(completed.len(), 1, "run {run}: step {step} completed {} times", completed.len());
        let after = events[completed[0] + 1..].iter().find(|e| e["step"] == step);
        assert!(after.is_none(), "run {run}: step {step} did something after completing: {}", after.unwrap());
    }
    (resumes, mid_attempt)
}
