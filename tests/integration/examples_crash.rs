//! Crash injection on the example workflows in plugins/workflows/ that run without a human
//! (support triage, contract review, research fan-out, the coding loop, and the
//! four-language workflow), run from their files through the real `tether` executable.
//!
//! For each: a crash-free run gives the reference output and the time a run takes; then
//! each of N runs is SIGKILLed at a random delay in [0, 1.5 x that time] and resumed
//! (the resumed host sometimes killed again) until it completes. Asserts: every run
//! completes with the reference output; `tether replay` of every run matches its journal
//! event for event (no divergence); `tether verify` finds every run (and the whole
//! journal) intact.
//!
//! At least one kill per workflow must interrupt a run: catch it in the middle (its start
//! durable, its end not, so it is resumed) or, for a workflow whose pure work is done in
//! a few milliseconds and so written in one commit (output commit: nothing of it left
//! the host), before that commit (the run never existed, and is started again). If none
//! of the first N did, more runs are killed within the run time until one does.
//!
//! Seeded and printed; reproduce with `TETHER_CRASH_SEED=N`. `TETHER_EXAMPLE_CRASH_RUNS`
//! changes N, the number of killed runs per workflow (default 12).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_tests::repo_root;

use crate::chaos::{env_u64, kill_after, resume_to_end, seed, Kills, PrivateDir, Rng};
use crate::support::{tether_cmd, tether_json};

/// Every component file a workflow names (relative paths resolved against its
/// directory) that does not exist.
fn missing_components(wf: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(wf).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("component"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .filter_map(|v| v.trim().split('"').nth(1))
        .map(|c| wf.parent().unwrap().join(c))
        .filter(|p| !p.exists())
        .collect()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the example `name` (plugins/workflows/NAME.toml with INPUT.json) crash-free and
/// then under crash injection; see the module doc.
fn crash_example(name: &str, input: &str) {
    let wf_path = repo_root().join("plugins/workflows").join(format!("{name}.toml"));
    // The test build (tests/build.rs) builds every example's components.
    let missing = missing_components(&wf_path);
    assert!(missing.is_empty(), "examples crash {name}: components not built: {missing:?}");
    let seed = seed();
    let iterations = env_u64("TETHER_EXAMPLE_CRASH_RUNS").unwrap_or(12);
    eprintln!("examples crash {name}: seed {seed}, {iterations} killed runs (reproduce with TETHER_CRASH_SEED={seed})");
    let mut rng = Rng(seed);

    let dir = PrivateDir::new(&format!("examples-crash-{name}"));
    let db = dir.join("journal.db");
    let wf = wf_path.display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows").join(input).display());
    let run_cmd = |run: &str| {
        let mut c = tether_cmd(&db);
        c.args(["run", &wf, "--input", &input, "--run-id", run, "--json"]);
        c
    };

    // Crash-free runs: the first for the reference output (and to fill the compile
    // cache), the second for the time a run takes with a warm cache.
    let (code, reference) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_reference", "--json"]);
    assert_eq!(code, Some(0), "{name}: the crash-free run: {reference}");
    assert_eq!(reference["status"], "completed", "{reference}");
    let started = Instant::now();
    let (code, again) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_reference-2", "--json"]);
    let run_time = started.elapsed();
    assert_eq!(code, Some(0), "{name}: the second crash-free run: {again}");
    assert_eq!(again["output"], reference["output"], "{name}: two crash-free runs disagree");
    let max_delay = (run_time.as_millis() as u64 * 3 / 2).max(20);
    eprintln!("examples crash {name}: a run takes {run_time:?}; kills within {max_delay} ms");

    let (mut kills, mut landed, mut resubmitted, mut resumed_runs) = (0, 0, 0, 0);
    let mut runs = vec!["run_reference".to_string(), "run_reference-2".to_string()];
    let run_ms = run_time.as_millis() as u64;
    for i in 0.. {
        // The first `iterations` kills anywhere in [0, 1.5 x run time]; if none of them
        // caught a run in the middle, more in [run time / 4, run time] until one does.
        let delay = if i < iterations {
            rng.below(max_delay)
        } else if resumed_runs + resubmitted == 0 && i < 4 * iterations {
            run_ms / 4 + rng.below(run_ms - run_ms / 4)
        } else {
            break;
        };
        let run = format!("run_{name}-{seed}-{i}");
        let child = run_cmd(&run).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        landed += u32::from(kill_after(child, Duration::from_millis(delay)));
        kills += 1;
        let mut counts = Kills::default();
        let o = resume_to_end(&db, &run, &mut rng, max_delay, || run_cmd(&run), &mut counts);
        (kills, landed, resubmitted) = (kills + counts.sent, landed + counts.landed, resubmitted + counts.resubmitted);
        assert_eq!(o.status.code(), Some(0), "{name}: run {run} (seed {seed}): {}", stderr(&o));
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["status"], "completed", "{name}: run {run} (seed {seed}): {report}");
        assert_eq!(report["output"], reference["output"], "{name}: run {run} (seed {seed}, killed after {delay} ms)");
        let (_, history) = tether_json(&db, &["history", &run, "--json"]);
        if history.as_array().unwrap().iter().any(|e| e["type"] == "run_resumed") {
            resumed_runs += 1;
        }
        runs.push(run);
    }

    // Every run, killed or not, replays exactly and verifies.
    for run in &runs {
        let o = tether_cmd(&db).args(["replay", run, "--json"]).output().unwrap();
        let replay: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{name}: replay {run} printed no JSON (seed {seed}): {}", stderr(&o)));
        assert_eq!(o.status.code(), Some(0), "{name}: replay {run} (seed {seed}): {replay}\n{}", stderr(&o));
        assert_eq!(replay["divergence"], Value::Null, "{name}: replay {run} diverged (seed {seed}): {replay}");
        assert!(replay["matched"].as_u64().unwrap() > 0, "{name}: replay {run} matched nothing: {replay}");
        assert_eq!(replay["matched"], replay["events"], "{name}: replay {run} (seed {seed}): {replay}");
        let o = tether_cmd(&db).args(["verify", run]).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: verify {run} (seed {seed}):\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
    }
    let o = tether_cmd(&db).arg("verify").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{name}: verify (all) (seed {seed}):\n{}", String::from_utf8_lossy(&o.stdout));
    let (code, listed) = tether_json(&db, &["runs", "--json", "--limit", "1000"]);
    assert_eq!(code, Some(0));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), runs.len(), "{name}: `tether runs` lists every run: {listed:?}");
    assert!(listed.iter().all(|r| r["status"] == "completed"), "{name}: {listed:?}");
    assert!(resumed_runs + resubmitted > 0, "{name}: no kill interrupted a run; the test proves little (seed {seed})");
    eprintln!(
        "examples crash {name}: {} killed runs, {kills} kills ({landed} while the host was still running), \
         {resubmitted} resubmitted (killed before the start was durable), {resumed_runs} resumed from the middle; \
         {} runs replayed and verified",
        runs.len() - 2,
        runs.len()
    );
}

#[test]
fn support_triage_survives_kills() {
    crash_example("support-triage", "ticket.json");
}

#[test]
fn contract_review_survives_kills() {
    crash_example("contract-review", "contract.json");
}

#[test]
fn research_fan_out_survives_kills() {
    crash_example("research", "question.json");
}

#[test]
fn coding_loop_survives_kills() {
    crash_example("coding-loop", "task.json");
}

#[test]
fn four_language_workflow_survives_kills() {
    crash_example("languages", "message.json");
}
