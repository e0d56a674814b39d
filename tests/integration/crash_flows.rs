//! Crash injection on the shapes the plain sequential test (durability.rs) does not
//! cover, through the real `tether` executable, with SIGKILL at random (and at chosen)
//! points and resumes (themselves sometimes killed) until each run ends:
//!
//! 1. A governed refund: identity grants (a directory, a non-secret and a secret
//!    environment variable) and an approval gate decided by `tether approve`, whose
//!    process continues the run and is itself killed at times. Some runs are killed right
//!    after `run_started` is durable (the window where grants were once lost), by the
//!    host's own crash point at its first sync. Resumes
//!    run WITHOUT `PAYMENTS_URL` in the environment: the value given at start must reach
//!    the payment anyway. Every payment exactly once.
//! 2. A saga: a `for_each` of effectful tool calls, a `route`, a step that fails on
//!    purpose, and compensations (an effectful one through the ledger tool, and a slow
//!    one, so kills land inside the compensation phase). Every run ends as a crash-free
//!    run does, and every effect is in the ledger exactly once.
//!
//! Every run is then verified (`tether verify`) and replayed (`tether replay`, no
//! divergence). Seeded and printed; reproduce with `TETHER_CRASH_SEED=N`;
//! `TETHER_CRASH_ITERATIONS` changes the number of killed runs per test (defaults 40 and
//! 20).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_tests::artifacts;

use crate::chaos::{env_u64, kill_after, resume_to_end, seed, unhex, Kills, Rng};
use crate::governance::{of_type, stderr, Refund, POLICY};
use crate::support::{fresh_dir, tether_cmd, tether_json};

/// Kills `child` as soon as `run`'s journal holds `count` events of type `kind` (polling
/// `tether history` in a tight loop), after a further `delay`; returns whether it was
/// still running when killed (false: it exited first).
fn kill_when(db: &Path, run: &str, (kind, count): (&str, usize), delay: Duration, mut child: Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    // Read the journal's file directly: a `tether history` process per look would be too
    // slow to land in the short windows between a run's sync points.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let path = db.display().to_string();
    loop {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let recorded = db.exists()
            && rt.block_on(tether_store::testing::try_count_events(&path, run, kind)).unwrap_or(0) >= count as i64;
        if recorded {
            std::thread::sleep(delay);
            return kill_after(child, Duration::ZERO);
        }
        assert!(Instant::now() < deadline, "run {run} never recorded {kind}");
    }
}

/// The run's journal, or nothing if the run is unknown (not started yet).
fn events(db: &Path, run: &str) -> Vec<Value> {
    let o = tether_cmd(db).args(["history", run, "--json"]).output().unwrap();
    match serde_json::from_slice::<Value>(&o.stdout) {
        Ok(Value::Array(events)) if o.status.success() => events,
        _ => Vec::new(),
    }
}

fn has_event(events: &[Value], kind: &str) -> bool {
    events.iter().any(|e| e["type"] == kind)
}

fn hex(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Every idempotency key recorded under `ledger/keys/`, with how many files name it.
fn recorded_keys(ledger: &Path) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(ledger.join("keys")) {
        for entry in dir {
            let name = entry.unwrap().file_name().into_string().unwrap();
            *counts.entry(unhex(&name)).or_default() += 1;
        }
    }
    counts
}

/// `tether verify RUN` passes and `tether replay RUN` (with `env` set: secrets are read
/// from the environment each time) matches the journal event for event.
fn assert_verifies_and_replays(db: &Path, run: &str, env: &[(&str, &str)], seed: u64) {
    let o = tether_cmd(db).args(["verify", run]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "verify {run} (seed {seed}):\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let o = tether_cmd(db).envs(env.iter().copied()).args(["replay", run, "--json"]).output().unwrap();
    let replay: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("replay {run} printed no JSON (seed {seed}): {}", stderr(&o)));
    assert_eq!(o.status.code(), Some(0), "replay {run} (seed {seed}): {replay}\n{}", stderr(&o));
    assert_eq!(replay["divergence"], Value::Null, "replay {run} diverged (seed {seed}): {replay}");
    assert_eq!(replay["matched"], replay["events"], "replay {run} (seed {seed}): {replay}");
}

// ---------------------------------------------------------------------------------------
// 1. The governed refund.

/// The value of the secret `PAYMENTS_API_KEY`, in the environment of every process
/// (secrets are read from the environment each time, never from the journal).
const REFUND_KEY: &str = "secret";

/// What happened to one killed refund run, for the counts at the end.
#[derive(Default)]
struct RefundCounts {
    kills: u32,
    /// Kills of a host that was still running, in any process.
    landed: u32,
    /// Submissions killed right after their first commit, the one that makes `run_started`
    /// durable (the window where grants were once lost). Here it is also the commit in
    /// which the run waits at its gate: a run's start goes with its first sync point.
    after_start: u32,
    /// Of those, how many had `run_started` durable but not yet `grants_applied`.
    started_without_grants: u32,
    /// `tether approve` processes killed after the decision was durable, while they were
    /// continuing the run.
    approve_mid_run: u32,
    resubmitted: u32,
    already_decided: u32,
    resumes: u32,
}

#[test]
fn a_governed_refund_killed_anywhere_pays_once_with_the_grants_it_started_with() {
    let seed = seed();
    let iterations = env_u64("TETHER_CRASH_ITERATIONS").unwrap_or(40);
    eprintln!("crash flows (refund): seed {seed}, {iterations} runs (reproduce with TETHER_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let r = Refund::new("crash-flows-refund", "output.amount > 100.0", POLICY);
    let wf = r.workflow();
    let input = json!({"order_id": "A-1", "amount": 240.0, "reason": "arrived damaged"}).to_string();
    let db = r.db.clone();
    // The submission has the payment provider's URL; nothing after it does.
    let submit = |run: &str, url: &str| {
        let mut c = tether_cmd(&db);
        c.env("PAYMENTS_URL", url).env("PAYMENTS_API_KEY", REFUND_KEY);
        c.args(["run", &wf, "--input", &input, "--run-id", run, "--json"]);
        c
    };
    let later = |args: &[&str]| {
        let mut c = tether_cmd(&db);
        c.env_remove("PAYMENTS_URL").env("PAYMENTS_API_KEY", REFUND_KEY).args(args);
        c
    };

    // Crash-free: the times a submission (to the gate) and an approval (to the end) take.
    let url = "https://pay.example/reference";
    let started = Instant::now();
    let o = submit("run_reference", url).output().unwrap();
    let submit_time = started.elapsed();
    assert_eq!(o.status.code(), Some(3), "the reference run waits at its gate: {}", stderr(&o));
    let started = Instant::now();
    let o = later(&["approve", "run_reference", "refund", "--as", "alice", "--json"]).output().unwrap();
    let approve_time = started.elapsed();
    assert_eq!(o.status.code(), Some(0), "approve the reference run: {}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["output"]["payment"]["provider"], url, "{report}");
    let submit_ms = (submit_time.as_millis() as u64 * 3 / 2).max(20);
    let approve_ms = (approve_time.as_millis() as u64 * 3 / 2).max(20);
    eprintln!(
        "crash flows (refund): a submission takes {submit_time:?}, an approval {approve_time:?}; kills within \
         {submit_ms} and {approve_ms} ms"
    );

    let mut c = RefundCounts::default();
    let mut runs = vec![("run_reference".to_string(), url.to_string())];
    for i in 0.. {
        // Past `iterations`, more runs only while a kind of kill has not landed yet.
        let forcing = i >= iterations;
        let landed_everywhere = c.after_start > 0 && c.approve_mid_run > 0 && c.already_decided > 0;
        if forcing && (landed_everywhere || i >= 4 * iterations) {
            break;
        }
        let run = format!("run_refund-{seed}-{i}");
        let url = format!("https://pay.example/{i}");

        // The submission: killed right after its start is durable, or at a random delay.
        // A run's start is durable with its first sync point (here the commit in which it
        // waits at its gate), so the host aborts itself right after that commit, as
        // `kill -9` would (`TETHER_CRASH_AT_SYNC`), before it can report or exit.
        let early = if forcing { c.after_start == 0 } else { rng.below(2) == 0 };
        let running = if early {
            let o = submit(&run, &url).env("TETHER_CRASH_AT_SYNC", "1:after").output().unwrap();
            o.status.code().is_none()
        } else {
            let child = submit(&run, &url).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            kill_after(child, Duration::from_millis(rng.below(submit_ms)))
        };
        c.kills += 1;
        c.landed += u32::from(running);
        if running && early {
            let ev = events(&db, &run);
            if has_event(&ev, "run_started") {
                c.after_start += 1;
                c.started_without_grants += u32::from(!has_event(&ev, "grants_applied"));
            }
        }

        // Drive it to the end: resume (sometimes killed), approve when it waits
        // (sometimes killed while it continues the run).
        let mut report = Value::Null;
        let (mut approves, mut approve_next) = (0, false);
        for attempt in 0.. {
            assert!(attempt < 30, "run {run} did not finish after 30 resumes (seed {seed})");
            if !approve_next {
                if attempt < 4 && rng.below(3) == 0 {
                    let child = later(&["resume", &run]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
                    c.landed += u32::from(kill_after(child, Duration::from_millis(rng.below(approve_ms))));
                    c.kills += 1;
                    continue;
                }
                let o = later(&["resume", &run, "--json"]).output().unwrap();
                match o.status.code() {
                    Some(0) => {
                        report = serde_json::from_slice(&o.stdout).unwrap();
                        break;
                    }
                    Some(2) if stderr(&o).contains("unknown run") => {
                        // Killed before the run's start was durable: submit it again, same id.
                        c.resubmitted += 1;
                        let o = submit(&run, &url).output().unwrap();
                        assert_eq!(o.status.code(), Some(3), "resubmitting {run} (seed {seed}): {}", stderr(&o));
                        continue;
                    }
                    Some(3) => {}
                    other => panic!(
                        "resume {run} exited {other:?} (seed {seed}):\n{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        stderr(&o)
                    ),
                }
            }
            // Waiting at the gate (or an approve was killed just now): approve.
            approve_next = false;
            approves += 1;
            let kill_it = if forcing {
                approves <= 3 && (c.approve_mid_run == 0 || c.already_decided == 0)
            } else {
                approves <= 3 && rng.below(2) == 0
            };
            if kill_it {
                let child = later(&["approve", &run, "refund", "--as", "alice"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let running = kill_after(child, Duration::from_millis(rng.below(approve_ms)));
                c.kills += 1;
                c.landed += u32::from(running);
                let ev = events(&db, &run);
                if running && has_event(&ev, "approval_decided") && !has_event(&ev, "run_completed") {
                    c.approve_mid_run += 1;
                }
                // Then sometimes approve again (the decision may already be recorded).
                approve_next = forcing || rng.below(2) == 0;
                continue;
            }
            let o = later(&["approve", &run, "refund", "--as", "alice", "--json"]).output().unwrap();
            match o.status.code() {
                Some(0) => {
                    report = serde_json::from_slice(&o.stdout).unwrap();
                    break;
                }
                // A killed approve had recorded the decision: resume instead.
                Some(2) if stderr(&o).contains("already decided") => c.already_decided += 1,
                other => panic!(
                    "approve {run} exited {other:?} (seed {seed}):\n{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    stderr(&o)
                ),
            }
        }
        assert_eq!(report["status"], "completed", "run {run} (seed {seed}): {report}");
        assert_eq!(
            report["output"]["payment"]["provider"], url,
            "run {run} (seed {seed}): the payment did not get the PAYMENTS_URL granted at the start: {report}"
        );
        assert_eq!(report["output"]["refunded"], true, "run {run} (seed {seed}): {report}");
        assert_eq!(report["output"]["key_present"], true, "run {run} (seed {seed}): the secret was not granted");
        runs.push((run, url));
    }

    // Every run: its grants applied once, at the start; paid exactly once, by a call that
    // had the URL; a journal that verifies and replays.
    let ledger = r.ledger();
    let keys = recorded_keys(&r.dir.join("ledger"));
    for (run, url) in &runs {
        let ev = r.events(run);
        let grants = of_type(&ev, "grants_applied");
        assert_eq!(grants.len(), 1, "run {run} (seed {seed}): grants applied {} times: {grants:?}", grants.len());
        assert_eq!(grants[0]["seq"], 2, "run {run} (seed {seed}): grants applied at {}", grants[0]["seq"]);
        assert_eq!(grants[0]["env"]["PAYMENTS_URL"], url.as_str(), "run {run} (seed {seed}): {}", grants[0]);
        c.resumes += of_type(&ev, "run_resumed").len() as u32;
        let issued = of_type(&ev, "step_completed").into_iter().filter(|e| e["step"] == "issue").count();
        assert_eq!(issued, 1, "run {run} (seed {seed}): the paying step completed {issued} times");
        assert_eq!(of_type(&ev, "run_completed").len(), 1, "run {run} (seed {seed})");
        assert_eq!(of_type(&ev, "approval_decided").len(), 1, "run {run} (seed {seed})");

        let key = format!("{run}/issue/0");
        assert_eq!(keys.get(&key), Some(&1), "run {run} (seed {seed}): the payment record for {key}");
        let record = std::fs::read_to_string(r.dir.join("ledger/keys").join(hex(&key))).unwrap();
        let record: Value = serde_json::from_str(record.trim_end()).unwrap_or(Value::Null);
        assert_eq!(record["provider"], url.as_str(), "run {run} (seed {seed}): the payment as made: {record}");
        let lines = ledger.lines().filter(|l| l.starts_with(&format!("{key}\t"))).count();
        assert_eq!(
            lines, 1,
            "run {run} (seed {seed}): {lines} lines in refunds.log for {key}, whose payment record is {record} \
             (no line: a host was killed between the payments tool writing the record and appending the line)"
        );
        assert_verifies_and_replays(&r.db, run, &[("PAYMENTS_API_KEY", REFUND_KEY)], seed);
    }
    assert_eq!(keys.len(), runs.len(), "one payment per run and no other (seed {seed}): {keys:?}");
    assert_eq!(ledger.lines().count(), runs.len(), "refunds.log (seed {seed}):\n{ledger}");
    eprintln!(
        "crash flows (refund): {} killed runs, {} kills ({} while the host was running): {} right after the start \
         was durable ({} of them before the grants were), {} approvals killed while continuing the run after the \
         decision; {} resubmitted, {} approvals found already decided, {} resumes of a started run; every run \
         paid once with the URL it started with",
        runs.len() - 1,
        c.kills,
        c.landed,
        c.after_start,
        c.started_without_grants,
        c.approve_mid_run,
        c.resubmitted,
        c.already_decided,
        c.resumes
    );
    assert!(c.after_start > 0, "no kill landed right after a run's start (seed {seed}); the test proves little");
    assert!(c.approve_mid_run > 0, "no approval was killed while continuing a run (seed {seed})");
    assert!(c.already_decided > 0, "no approval came after a killed one had recorded the decision (seed {seed})");
}

// ---------------------------------------------------------------------------------------
// 2. A saga: for_each, route, a failure on purpose, compensations.

const ITEMS: u64 = 4;

/// `open` (an echo) is compensated by a slow component (200 ms), last since it completed
/// first, so that kills land between compensations; `work` fans out over the items
/// (durable-step: two ledger calls each), compensated by the ledger tool (an effect with
/// key RUN/compensate/work[i]); `route` picks `big` (more than two items) over `small`;
/// `big` is compensated by the ledger too; `charge` records its attempt in the ledger
/// and then fails, never retried.
fn saga_workflow(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("ledger")).unwrap();
    let text = format!(
        r#"name = "crash-saga"
[tools.ledger]
component = {ledger:?}
dirs = [{{ host = "ledger", guest = "/ledger", write = true }}]

[[steps]]
name = "open"
component = {hostile:?}
input = "{{'mode': 'echo', 'undo': {{'mode': 'sleep', 'ms': 200}}}}"
compensate = {{ component = {hostile:?} }}

[[steps]]
name = "work"
component = {durable:?}
tools = ["ledger"]
for_each = "input.items"
concurrency = 2
input = "{{'n': item, 'trail': [], 'spin': input.spin}}"
compensate = {{ tool = "ledger" }}

[[steps]]
name = "route"
route = [
  {{ when = "size(steps.work) > 2", to = "big" }},
  {{ to = "small" }},
]

[[steps]]
name = "big"
needs = ["route"]
component = {durable:?}
tools = ["ledger"]
input = "{{'n': 100, 'trail': steps.work.map(r, r.trail[0]), 'spin': input.spin}}"
compensate = {{ tool = "ledger" }}

[[steps]]
name = "small"
needs = ["route"]
component = {durable:?}
tools = ["ledger"]
input = "{{'n': 200, 'trail': [], 'spin': 0}}"
compensate = {{ tool = "ledger" }}

[[steps]]
name = "charge"
needs = ["big", "small"]
component = {flaky:?}
tools = ["ledger"]
input = "{{'succeed_on': 1000000}}"
retry = {{ max_attempts = 1 }}
"#,
        ledger = artifacts::LEDGER_TOOL,
        durable = artifacts::DURABLE_STEP,
        hostile = artifacts::HOSTILE,
        flaky = artifacts::FLAKY_STEP,
    );
    let path = dir.join("saga.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Where the resumes of a run picked it up, from its journal.
#[derive(Default)]
struct Phases {
    resumes: u32,
    mid_attempt: u32,
    mid_fan_out: u32,
    mid_compensation: u32,
}

fn phases(events: &[Value]) -> Phases {
    let mut p = Phases::default();
    let (mut open, mut fan_out, mut compensating) = (BTreeSet::new(), false, false);
    for e in events {
        let step = e["step"].as_str().unwrap_or_default().to_string();
        match e["type"].as_str().unwrap_or_default() {
            "step_attempt_started" => {
                open.insert(step);
            }
            "step_completed" | "step_failed" => {
                open.remove(&step);
            }
            "for_each_started" => fan_out = true,
            "for_each_gathered" => fan_out = false,
            "compensation_begun" => compensating = true,
            "run_resumed" => {
                p.resumes += 1;
                p.mid_attempt += u32::from(!open.is_empty());
                p.mid_fan_out += u32::from(fan_out);
                p.mid_compensation += u32::from(compensating);
            }
            _ => {}
        }
    }
    p
}

/// The outcome of a saga run that must not depend on crashes: its status, which step
/// failed and how, what each completed step's compensation returned (ok, or the kind of
/// failure), which compensations the run's end says failed, and the effect keys it
/// recorded (without the run id).
fn saga_outcome(report: &Value, events: &[Value], keys: &BTreeMap<String, u32>, run: &str) -> Value {
    let compensations: BTreeMap<String, Value> = of_type(events, "step_compensated")
        .iter()
        .map(|e| {
            let result =
                if e["result"]["ok"].is_null() { json!({"err": e["result"]["err"]["kind"]}) } else { json!("ok") };
            (e["step"].as_str().unwrap().to_string(), json!({"via": e["via"], "result": result}))
        })
        .collect();
    // The compensations that failed, as the run's end records them.
    let mut failed: Vec<&str> = of_type(events, "run_compensation_failed")
        .iter()
        .flat_map(|e| e["failed"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str())
        .collect();
    failed.sort();
    let prefix = format!("{run}/");
    let effects: Vec<&str> = keys.keys().filter_map(|k| k.strip_prefix(&prefix)).collect();
    json!({
        "status": report["status"],
        "failed_step": report["error"]["step"],
        "class": report["error"]["class"],
        "compensations": compensations,
        "failed_compensations": failed,
        "effects": effects,
    })
}

/// From the journal: every step ran to completion once and did nothing after that but
/// be compensated (once); the fan-out, the route, the compensation phase and the end
/// each happened once.
fn assert_saga_journal(events: &[Value], run: &str, seed: u64) {
    let completed: Vec<&str> = of_type(events, "step_completed").iter().map(|e| e["step"].as_str().unwrap()).collect();
    for step in &completed {
        let at: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e["type"] == "step_completed" && e["step"] == *step)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 1, "run {run} (seed {seed}): step {step} completed {} times", at.len());
        let after = events[at[0] + 1..].iter().find(|e| e["step"] == *step && e["type"] != "step_compensated");
        assert!(
            after.is_none(),
            "run {run} (seed {seed}): step {step} did something after completing: {}",
            after.unwrap()
        );
        let undone = of_type(events, "step_compensated").iter().filter(|e| e["step"] == *step).count();
        assert!(undone <= 1, "run {run} (seed {seed}): step {step} compensated {undone} times");
    }
    for kind in ["for_each_started", "for_each_gathered", "routed", "compensation_begun"] {
        assert_eq!(of_type(events, kind).len(), 1, "run {run} (seed {seed}): {kind}");
    }
    let ends =
        events.iter().filter(|e| matches!(e["type"].as_str(), Some("run_compensated" | "run_compensation_failed")));
    assert_eq!(ends.count(), 1, "run {run} (seed {seed}): the run ended more than once, or never");
    assert!(
        matches!(events.last().unwrap()["type"].as_str(), Some("run_compensated" | "run_compensation_failed")),
        "run {run} (seed {seed}): the end is not the last event: {}",
        events.last().unwrap()
    );
}

#[test]
fn a_saga_killed_anywhere_ends_as_a_crash_free_run_with_every_effect_once() {
    let seed = seed();
    let iterations = env_u64("TETHER_CRASH_ITERATIONS").unwrap_or(20);
    eprintln!("crash flows (saga): seed {seed}, {iterations} runs (reproduce with TETHER_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = fresh_dir("crash-flows-saga");
    let db = dir.join("journal.db");
    let wf = saga_workflow(&dir);
    let items: Vec<u64> = (1..=ITEMS).collect();
    let input = json!({"items": items, "spin": 3_000_000}).to_string();
    let submit = |run: &str| {
        let mut c: Command = tether_cmd(&db);
        c.args(["run", &wf, "--input", &input, "--run-id", run, "--json"]);
        c
    };

    // Crash-free: the first run fills the compile cache; the second is the reference
    // outcome and gives the time a run takes.
    let (code, warm) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_warm", "--json"]);
    assert_eq!(code, Some(1), "a saga run fails (and is compensated): {warm}");
    let started = Instant::now();
    let o = submit("run_reference").output().unwrap();
    let run_time = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "the reference run: {}", stderr(&o));
    let reference_report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let reference_events = events(&db, "run_reference");
    let reference =
        saga_outcome(&reference_report, &reference_events, &recorded_keys(&dir.join("ledger")), "run_reference");
    assert_eq!(
        saga_outcome(&warm, &events(&db, "run_warm"), &recorded_keys(&dir.join("ledger")), "run_warm"),
        reference,
        "two crash-free runs disagree"
    );
    assert_saga_journal(&reference_events, "run_reference", seed);
    let max_delay = (run_time.as_millis() as u64 * 3 / 2).max(50);
    eprintln!("crash flows (saga): a run takes {run_time:?}; kills within {max_delay} ms; reference: {reference}");

    let (mut kills, mut landed, mut resubmitted) = (0, 0, 0);
    let mut p = Phases::default();
    let mut runs = vec!["run_warm".to_string(), "run_reference".to_string()];
    for i in 0.. {
        let forcing = i >= iterations;
        if forcing && ((p.mid_fan_out > 0 && p.mid_compensation > 0 && p.mid_attempt > 0) || i >= 4 * iterations) {
            break;
        }
        let run = format!("run_saga-{seed}-{i}");
        // A third of the runs are killed inside the compensation phase: among the
        // ledger's compensations, or in the slow one that comes after them; the others
        // at a random point.
        let child = submit(&run).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let in_compensation = if forcing { p.mid_compensation == 0 } else { rng.below(3) == 0 };
        landed += u32::from(if in_compensation && rng.below(2) == 0 {
            kill_when(&db, &run, ("compensation_begun", 1), Duration::from_millis(rng.below(30)), child)
        } else if in_compensation {
            let ledger_compensations = ITEMS as usize + 1;
            let delay = Duration::from_millis(rng.below(150));
            kill_when(&db, &run, ("step_compensated", ledger_compensations), delay, child)
        } else {
            kill_after(child, Duration::from_millis(rng.below(max_delay)))
        });
        kills += 1;
        let mut counts = Kills::default();
        let o = resume_to_end(&db, &run, &mut rng, max_delay, || submit(&run), &mut counts);
        (kills, landed, resubmitted) = (kills + counts.sent, landed + counts.landed, resubmitted + counts.resubmitted);
        assert_eq!(o.status.code(), Some(1), "resume {run} (seed {seed}): {}", stderr(&o));
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        let ev = events(&db, &run);
        let outcome = saga_outcome(&report, &ev, &recorded_keys(&dir.join("ledger")), &run);
        assert!(
            outcome == reference,
            "run {run} (seed {seed}) ended unlike the crash-free run:\n  this run:   {outcome}\n  crash-free: \
             {reference}\n  its error:  {}",
            report["error"]
        );
        assert_saga_journal(&ev, &run, seed);
        let q = phases(&ev);
        p.resumes += q.resumes;
        p.mid_attempt += q.mid_attempt;
        p.mid_fan_out += q.mid_fan_out;
        p.mid_compensation += q.mid_compensation;
        runs.push(run);
    }

    // Every effect exactly once: per run, the reference's effect keys, each recorded by
    // one file under keys/ and never twice in effects.log; nothing else.
    let ledger_dir = dir.join("ledger");
    let counts = recorded_keys(&ledger_dir);
    let log = std::fs::read_to_string(ledger_dir.join("effects.log")).unwrap();
    let mut lines: BTreeMap<&str, u32> = BTreeMap::new();
    for line in log.lines() {
        *lines.entry(line.split('\t').next().unwrap()).or_default() += 1;
    }
    let twice: Vec<(&&str, &u32)> = lines.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "keys more than once in effects.log (seed {seed}): {twice:?}");
    let per_run: Vec<&str> = reference["effects"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for run in &runs {
        for effect in &per_run {
            let key = format!("{run}/{effect}");
            assert_eq!(counts.get(&key), Some(&1), "effect {key} (seed {seed})");
        }
        assert_verifies_and_replays(&db, run, &[], seed);
    }
    assert_eq!(counts.len(), per_run.len() * runs.len(), "no unexpected effects (seed {seed})");
    let invocations = std::fs::read_to_string(ledger_dir.join("invocations.log")).unwrap().lines().count();
    eprintln!(
        "crash flows (saga): {} killed runs, {kills} kills ({landed} while the host was running), {resubmitted} \
         resubmitted; {} resumes of a started run: {} in the middle of an attempt, {} in the fan-out, {} in the \
         compensations; {} effects each recorded once; the ledger tool ran {invocations} times",
        runs.len() - 2,
        p.resumes,
        p.mid_attempt,
        p.mid_fan_out,
        p.mid_compensation,
        counts.len()
    );
    assert!(p.mid_attempt > 0, "no kill landed inside an attempt (seed {seed})");
    assert!(p.mid_fan_out > 0, "no kill landed inside the fan-out (seed {seed})");
    assert!(p.mid_compensation > 0, "no kill landed inside the compensations (seed {seed})");

    // What the saga is for, checked last so that the crash checks above run whatever the
    // compensations' outcome: every completed step undone (the run `compensated`), the
    // ledger compensations' effects among the recorded ones.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for i in 0..ITEMS {
        for call in 0..2 {
            expected.insert(format!("work[{i}]/{call}"));
        }
        expected.insert(format!("compensate/work[{i}]"));
    }
    expected.extend(["big/0", "big/1", "compensate/big", "charge/0"].map(String::from));
    assert_eq!(reference["failed_step"], "charge", "{reference}");
    let compensated: BTreeSet<&String> = reference["compensations"].as_object().unwrap().keys().collect();
    let undo: BTreeSet<String> =
        (0..ITEMS).map(|i| format!("work[{i}]")).chain(["big", "open"].map(String::from)).collect();
    assert_eq!(compensated, undo.iter().collect(), "the completed steps compensated: {reference}");
    assert_eq!(
        reference["status"], "compensated",
        "every compensation should succeed (seed {seed}); the crash-free run ended: {reference_report}"
    );
    let effects: BTreeSet<String> = per_run.iter().map(|s| s.to_string()).collect();
    assert_eq!(effects, expected, "the effects of a run (seed {seed})");
}
