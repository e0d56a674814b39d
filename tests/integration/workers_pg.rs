//! Several `tether serve` workers on one PostgreSQL journal, as on several machines (each
//! names itself with `TETHER_HOST_ID`, so none can tell that another's process died and
//! each waits for a lease to lapse): runs shared between them, a worker SIGKILLed in the
//! middle of steps whose runs the others take over with every effect once, two workers
//! racing to claim one dead worker's runs, and a worker frozen past its leases (SIGSTOP)
//! that cannot write when it wakes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_tests::artifacts;

use crate::served::{token, Served};
use crate::support::{fresh_dir, tether_json};

const STEPS: u32 = 4;
const LEASE_TTL: &str = "2s";

/// A workflow of durable steps that each record two ledger entries (an external effect,
/// at most once per idempotency key) with CPU work around them.
fn workflow(dir: &Path) {
    std::fs::create_dir_all(dir.join("ledger")).unwrap();
    let steps: String = (1..=STEPS)
        .map(|k| {
            format!("[[steps]]\nname = \"s{k}\"\ncomponent = {:?}\ntools = [\"ledger\"]\n", artifacts::DURABLE_STEP)
        })
        .collect();
    let text = format!(
        "name = \"shared\"\n[tools.ledger]\ncomponent = {:?}\ndirs = [{{ host = \"ledger\", guest = \"/ledger\", write = true }}]\n{steps}",
        artifacts::LEDGER_TOOL
    );
    std::fs::write(dir.join("shared.toml"), text).unwrap();
}

/// Worker `name` on the journal `url`, with short leases and a small connection pool.
fn worker(url: &Path, dir: &Path, name: &str) -> Served {
    let workflows = dir.display().to_string();
    let log = dir.join(format!("{name}.log"));
    let env = [("TETHER_HOST_ID", name), ("TETHER_LEASE_TTL", LEASE_TTL), ("TETHER_LOG", "info")];
    Served::start_with(url, log, &env, &["--workflows", &workflows, "--concurrency", "8", "--db-pool", "4"])
}

fn events(url: &Path, run: &str) -> Vec<Value> {
    let (code, v) = tether_json(url, &["history", run, "--json"]);
    assert_eq!(code, Some(0), "{v}");
    v.as_array().unwrap().clone()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Every ledger entry, by idempotency key, with how many times it was recorded.
fn effects(dir: &Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let log = std::fs::read_to_string(dir.join("ledger/effects.log")).unwrap_or_default();
    for line in log.lines() {
        *seen.entry(line.split_whitespace().next().unwrap_or("").to_string()).or_default() += 1;
    }
    seen
}

/// Starts a run of the shared workflow on `worker`; its id.
fn submit(worker: &Served, runner: &str, input: &Value) -> String {
    let (status, created) = worker.post_as(runner, "/v1/runs", &json!({"workflow": "shared", "input": input}));
    assert_eq!(status, 201, "{created}");
    created["run_id"].as_str().unwrap().to_string()
}

/// A step that completed was never begun again, nor completed twice.
fn no_step_ran_again(run: &str, ev: &[Value]) {
    let mut completed = std::collections::HashSet::new();
    for e in ev {
        let step = e["step"].as_str().unwrap_or("");
        match e["type"].as_str() {
            Some("step_completed") => assert!(completed.insert(step.to_string()), "{run}: {step} completed twice"),
            Some("step_attempt_started") => assert!(!completed.contains(step), "{run}: {step} ran again"),
            _ => {}
        }
    }
}

/// Every effect of `runs` runs of the shared workflow is in the ledger, once.
fn every_effect_once(dir: &Path, runs: usize) {
    let seen = effects(dir);
    assert_eq!(seen.len(), runs * 2 * STEPS as usize, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "an effect was recorded twice: {seen:?}");
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

#[test]
fn three_workers_share_runs_and_a_killed_workers_runs_are_taken_over_with_every_effect_once() {
    let url = PathBuf::from(crate::journal_pg::fresh_database("workers_kill"));
    let dir = fresh_dir("workers-kill");
    workflow(&dir);
    let runner = token(&url, "ci", "ci-bot", &["runner"]);
    let mut workers: Vec<Served> = ["worker-a", "worker-b", "worker-c"].iter().map(|n| worker(&url, &dir, n)).collect();

    // 30 runs, submitted round-robin, each step spinning long enough that many are in
    // the middle of a step at any moment.
    let input = json!({"n": 1, "trail": [], "spin": 10_000_000});
    let mut runs = Vec::new();
    for i in 0..30 {
        runs.push(submit(&workers[i % 3], &runner, &input));
    }
    // Kill worker A while its runs are mid-step: one of its steps has begun and not ended
    // (asked of A itself, which answers at once: an attempt in flight shows as
    // `interrupted` in a run's view).
    let a_runs: Vec<&String> = runs.iter().step_by(3).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mid_step = |run: &str| {
        let (_, view) = workers[0].get_as(&runner, &format!("/v1/runs/{run}"));
        view["steps"].as_array().is_some_and(|s| s.iter().any(|s| s["status"] == "interrupted"))
    };
    while !a_runs.iter().any(|r| mid_step(r)) {
        assert!(Instant::now() < deadline, "worker A began nothing:\n{}", workers[0].log());
    }
    let killed_us = now_us();
    workers[0].kill();
    // Its leases are still there, lapsing: `tether workers` names it with its runs.
    let (code, held) = tether_json(&url, &["workers", "--json"]);
    assert_eq!(code, Some(0), "{held}");
    let a = held.as_array().unwrap().iter().find(|w| w["host"] == "worker-a").cloned();
    let a = a.unwrap_or_else(|| panic!("worker A's leases are not listed: {held}"));
    assert!(!a["runs"].as_array().unwrap().is_empty() && a["pid"].is_u64(), "{a}");
    let unfinished = a_runs.iter().filter(|r| of_type(&events(&url, r), "run_completed").is_empty()).count();
    eprintln!("worker A killed with {unfinished} of its runs unfinished");

    // The others finish every run, worker A's included, once its leases lapse.
    for run in &runs {
        workers[1].wait_status(&runner, run, "completed", Duration::from_secs(90));
    }
    let expected: Vec<String> = (1..=STEPS).flat_map(|k| [format!("step{k}-a"), format!("step{k}-b")]).collect();
    let mut taken_over = Vec::new();
    for run in &runs {
        let ev = events(&url, run);
        let done = of_type(&ev, "run_completed");
        assert_eq!(done[0]["output"]["trail"], json!(expected), "{run}");
        no_step_ran_again(run, &ev);
        let resumed: Vec<u64> = of_type(&ev, "run_resumed").iter().filter_map(|e| e["at_us"].as_u64()).collect();
        if let Some(at) = resumed.iter().find(|at| **at > killed_us) {
            taken_over.push((at - killed_us) as f64 / 1e3);
        }
        let (code, verified) = tether_json(&url, &["verify", run, "--json"]);
        assert_eq!(code, Some(0), "{verified}");
    }
    assert!(!taken_over.is_empty(), "no run of the killed worker was taken over");
    // Every run is over: nobody holds one. B and C are listed by their heartbeats, live;
    // A's heartbeat has lapsed.
    let (_, hosts) = tether_json(&url, &["workers", "--json"]);
    let hosts = hosts.as_array().unwrap();
    assert!(hosts.iter().all(|w| w["runs"] == json!([])), "{hosts:?}");
    let lapsed = |name: &str| hosts.iter().find(|w| w["host"] == name).map(|w| w["lapsed"].as_bool().unwrap());
    assert_eq!((lapsed("worker-a"), lapsed("worker-b"), lapsed("worker-c")), (Some(true), Some(false), Some(false)));
    // Every effect once: 8 entries per run, each key recorded once.
    every_effect_once(&dir, runs.len());
    taken_over.sort_by(f64::total_cmp);
    eprintln!(
        "{} run(s) taken over after the kill, in {:.0}-{:.0} ms (lease {LEASE_TTL})",
        taken_over.len(),
        taken_over[0],
        taken_over[taken_over.len() - 1]
    );
    // Taken over within about a lease period (plus the 1 s scan), not left stranded.
    assert!(taken_over[taken_over.len() - 1] < 6_000.0, "{taken_over:?}");
    let others: String = workers[1..].iter().map(Served::log).collect();
    assert!(others.contains("taken over (lease epoch"), "{others}");
    // Each survivor's /metrics counts the runs it took over, and the journal's hosts.
    let mut counted = 0;
    for w in &workers[1..] {
        let (status, text) = w.get_as(&runner, "/metrics");
        assert_eq!(status, 200, "{text}");
        let text = text.as_str().unwrap().to_string();
        let sample =
            |name: &str| text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()));
        counted += sample("tether_runs_taken_over_total ").unwrap_or_else(|| panic!("{text}")) as usize;
        assert_eq!(sample("tether_hosts{heartbeat=\"live\"} "), Some(2.0), "{text}");
        assert_eq!(sample("tether_hosts{heartbeat=\"lapsed\"} "), Some(1.0), "{text}");
    }
    assert!(counted >= taken_over.len(), "{counted} counted, {} taken over", taken_over.len());
}

#[test]
fn a_worker_frozen_past_its_leases_cannot_write_when_it_wakes_and_the_runs_finish_once() {
    let url = PathBuf::from(crate::journal_pg::fresh_database("workers_stop"));
    let dir = fresh_dir("workers-stop");
    workflow(&dir);
    let runner = token(&url, "ci", "ci-bot", &["runner"]);
    let mut a = worker(&url, &dir, "worker-a");
    let input = json!({"n": 1, "trail": [], "spin": 20_000_000});
    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(submit(&a, &runner, &input));
    }
    // Freeze A in the middle of its steps, past its leases; B takes the runs over.
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs.iter().all(|r| of_type(&events(&url, r), "step_attempt_started").is_empty()) {
        assert!(Instant::now() < deadline, "worker A began nothing:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = a.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let b = worker(&url, &dir, "worker-b");
    for run in &runs {
        b.wait_status(&runner, run, "completed", Duration::from_secs(120));
    }
    // A wakes: whatever it was doing, its appends are refused by the fence.
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_secs(3));
    let expected: Vec<String> = (1..=STEPS).flat_map(|k| [format!("step{k}-a"), format!("step{k}-b")]).collect();
    for run in &runs {
        let ev = events(&url, run);
        assert_eq!(of_type(&ev, "run_completed").len(), 1, "{run}: {ev:?}");
        assert_eq!(ev.last().unwrap()["type"], "run_completed", "{run}: nothing after the end: {ev:?}");
        assert_eq!(of_type(&ev, "run_completed")[0]["output"]["trail"], json!(expected));
        let (code, verified) = tether_json(&url, &["verify", run, "--json"]);
        assert_eq!(code, Some(0), "{verified}");
    }
    // Each effect was claimed once: the ledger's record of a key is made by exactly one
    // call (an atomic link). Its aggregate log is not compared here: a call frozen inside
    // the tool goes on when its process wakes (no fence reaches into a tool already
    // running), and the ledger's repair of a missing log line may then run twice.
    let claimed = std::fs::read_dir(dir.join("ledger/keys"))
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(claimed, runs.len() * 2 * STEPS as usize);
    assert!(effects(&dir).len() == claimed, "every claimed effect is in the ledger's log");
    // A is still serving (it re-joins), or it has stopped: never a panic, never a write.
    // Its first heartbeat after waking found it had lapsed.
    let log = a.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("heartbeat had lapsed"), "{log}");
    if a.child.try_wait().unwrap().is_none() {
        let (code, _) = a.get("/healthz");
        assert_eq!(code, 200, "{log}");
    }
}

#[test]
fn a_schedule_fired_by_three_workers_runs_once_per_tick() {
    let url = PathBuf::from(crate::journal_pg::fresh_database("workers_cron"));
    let dir = fresh_dir("workers-cron");
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let workflow = format!("name = \"tick\"\n[[steps]]\nname = \"echo\"\ncomponent = {:?}\n", artifacts::TRIVIAL);
    std::fs::write(dir.join("workflows/tick.toml"), workflow).unwrap();
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        "workflows = \"workflows\"\n[[schedules]]\nname = \"every-second\"\nworkflow = \"tick\"\n\
         cron = \"* * * * * *\"\noverlap = \"allow\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let start = |name: &str| {
        let env = [("TETHER_HOST_ID", name), ("TETHER_LEASE_TTL", LEASE_TTL)];
        Served::start_with(&url, dir.join(format!("{name}.log")), &env, &["--config", &config])
    };
    let workers: Vec<Served> = ["worker-a", "worker-b", "worker-c"].iter().map(|n| start(n)).collect();
    std::thread::sleep(Duration::from_millis(5500));
    drop(workers);
    let (code, runs) = tether_json(&url, &["runs", "--json", "--limit", "1000"]);
    assert_eq!(code, Some(0), "{runs}");
    let runs = runs.as_array().unwrap();
    assert!(runs.len() >= 4, "a tick a second for 5.5 s: {runs:?}");
    let mut ticks = std::collections::BTreeSet::new();
    for r in runs {
        let ev = events(&url, r["run_id"].as_str().unwrap());
        let origin = &ev[0]["origin"];
        assert_eq!(origin["via"], "schedule", "{origin}");
        assert!(ticks.insert(origin["key"].as_str().unwrap().to_string()), "a tick ran twice: {origin}");
    }
}

/// A PostgreSQL server of this test's own (to stop and start under running workers),
/// stopped when dropped.
struct OwnServer(PathBuf);

impl OwnServer {
    fn start(dir: &Path) -> (OwnServer, String) {
        let o = std::process::Command::new(tether_tests::repo_root().join("scripts/postgres-server"))
            .args(["start", &dir.display().to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", crate::support::output(&o));
        (OwnServer(dir.to_path_buf()), String::from_utf8(o.stdout).unwrap().trim().to_string())
    }

    fn control(&self, command: &str) {
        let o = std::process::Command::new(tether_tests::repo_root().join("scripts/postgres-server"))
            .args([command, &self.0.display().to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{command}: {}", crate::support::output(&o));
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(tether_tests::repo_root().join("scripts/postgres-server"))
            .args(["destroy", &self.0.display().to_string()])
            .output();
    }
}

#[test]
fn workers_carry_on_when_the_postgres_server_restarts_under_them() {
    let dir = fresh_dir("workers-restart");
    workflow(&dir);
    let (server, url) = OwnServer::start(&dir.join("postgres"));
    let url = PathBuf::from(url);
    let runner = token(&url, "ci", "ci-bot", &["runner"]);
    let workers: Vec<Served> = ["worker-a", "worker-b"].iter().map(|n| worker(&url, &dir, n)).collect();
    let input = json!({"n": 1, "trail": [], "spin": 10_000_000});
    let mut runs = Vec::new();
    for i in 0..10 {
        runs.push(submit(&workers[i % 2], &runner, &input));
    }
    // Down for three seconds while steps run, then up again on its port.
    server.control("stop");
    std::thread::sleep(Duration::from_secs(3));
    server.control("resume");
    for run in &runs {
        workers[1].wait_status(&runner, run, "completed", Duration::from_secs(120));
    }
    let expected: Vec<String> = (1..=STEPS).flat_map(|k| [format!("step{k}-a"), format!("step{k}-b")]).collect();
    for run in &runs {
        let ev = events(&url, run);
        assert_eq!(of_type(&ev, "run_completed")[0]["output"]["trail"], json!(expected), "{run}");
        let (code, verified) = tether_json(&url, &["verify", run, "--json"]);
        assert_eq!(code, Some(0), "{verified}");
    }
    every_effect_once(&dir, runs.len());
    // Both still serve: a new run through each completes.
    for w in &workers {
        w.wait_status(&runner, &submit(w, &runner, &input), "completed", Duration::from_secs(60));
    }
}

#[test]
fn a_decision_made_elsewhere_is_pushed_and_a_worker_continues_the_run_at_once() {
    let r = crate::governance::Refund::new("workers-decide", "output.amount > 100.0", crate::governance::POLICY);
    let url = PathBuf::from(crate::journal_pg::fresh_database("workers_decide"));
    let runner = token(&url, "ci", "ci-bot", &["runner"]);
    let workflows = r.dir.display().to_string();
    let start = |name: &str| {
        let env = [("TETHER_HOST_ID", name), ("TETHER_LEASE_TTL", LEASE_TTL)];
        Served::start_with(&url, r.dir.join(format!("{name}.log")), &env, &["--workflows", &workflows])
    };
    let (a, b) = (start("worker-a"), start("worker-b"));
    let input = json!({"order_id": "A-1", "amount": 500.0, "reason": "arrived damaged"});
    let (status, created) =
        a.post_as(&runner, "/v1/runs", &json!({"workflow": "refund-workers-decide", "input": input}));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    a.wait_status(&runner, &run, "waiting", Duration::from_secs(60));
    // Both rescan every 10 s. Decided by a process of its own that does not continue the
    // run, it goes on at once on a worker, told by the journal.
    std::thread::sleep(Duration::from_secs(1));
    let decided = Instant::now();
    let o = crate::support::tether_cmd(&url)
        .args(["approve", &run, "refund", "--as", "alice", "--no-continue"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", crate::support::output(&o));
    b.wait_status(&runner, &run, "completed", Duration::from_secs(30));
    let took = decided.elapsed();
    assert!(took < Duration::from_secs(5), "continued {took:?} after the decision (the rescan is every 10 s)");
    let ev = events(&url, &run);
    let resumed = of_type(&ev, "run_resumed");
    assert_eq!(resumed.len(), 1, "continued once: {ev:?}");
    let by = resumed[0]["pid"].as_u64().unwrap() as u32;
    assert!(by == a.child.id() || by == b.child.id(), "continued by a worker, not by the deciding process: {ev:?}");
    let (code, verified) = tether_json(&url, &["verify", &run, "--json"]);
    assert_eq!(code, Some(0), "{verified}");
}

#[test]
fn a_decision_through_one_workers_api_is_continued_by_another_when_that_worker_freezes() {
    let r = crate::governance::Refund::new("workers-api-decide", "output.amount > 100.0", crate::governance::POLICY);
    let url = PathBuf::from(crate::journal_pg::fresh_database("workers_api_decide"));
    let runner = token(&url, "ci", "ci-bot", &["runner"]);
    let alice = token(&url, "alice", "alice", &["approver"]);
    let workflows = r.dir.display().to_string();
    let start = |name: &str| {
        let env = [("TETHER_HOST_ID", name), ("TETHER_LEASE_TTL", LEASE_TTL), ("TETHER_LOG", "info")];
        Served::start_with(&url, r.dir.join(format!("{name}.log")), &env, &["--workflows", &workflows])
    };
    let (a, b) = (start("worker-a"), start("worker-b"));
    let input = json!({"order_id": "A-2", "amount": 500.0, "reason": "arrived damaged"});
    let (status, created) =
        a.post_as(&runner, "/v1/runs", &json!({"workflow": "refund-workers-api-decide", "input": input}));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    a.wait_status(&runner, &run, "waiting", Duration::from_secs(60));
    // Alice decides through A's API; A freezes as it answers, before or while it
    // continues the run. B continues it: told by the journal if A never took the run, or
    // claiming it once A's heartbeat lapses if A had.
    let (_, pending) = a.get_as(&alice, "/v1/approvals");
    let request = pending["approvals"][0].clone();
    let path = request["decide"].as_str().unwrap().to_string();
    let decision = json!({"decision": "approve", "comment": "checked", "version": request["version"]});
    let (status, body) = a.post_as(&alice, &path, &decision);
    let pid = a.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    assert!(status == 200 || status == 202, "{status}: {body}");
    let done = b.wait_status(&runner, &run, "completed", Duration::from_secs(30));
    assert_eq!(done["output"]["refunded"], true, "{done}");
    let ev = events(&url, &run);
    let decided = of_type(&ev, "approval_decided");
    assert_eq!((decided.len(), decided[0]["by"].as_str()), (1, Some("alice")), "{ev:?}");
    let resumed = of_type(&ev, "run_resumed");
    let last = resumed.last().and_then(|e| e["pid"].as_u64()).unwrap() as u32;
    assert_eq!(last, b.child.id(), "continued by B: {ev:?}");
    // A wakes: it writes nothing more to the run.
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_secs(2));
    let after = events(&url, &run);
    assert_eq!(after.len(), ev.len(), "A wrote to the run after B finished it");
    assert_eq!(after.last().unwrap()["type"], "run_completed");
    let (code, verified) = tether_json(&url, &["verify", &run, "--json"]);
    assert_eq!(code, Some(0), "{verified}");
    assert!(!a.log().contains("panicked"), "{}", a.log());
}

#[test]
fn two_workers_racing_for_a_dead_workers_runs_execute_each_run_once() {
    let url = PathBuf::from(crate::journal_pg::fresh_database("workers_race"));
    let dir = fresh_dir("workers-race");
    workflow(&dir);
    let runner = token(&url, "ci", "ci-bot", &["runner"]);
    // Worker X starts 16 runs and is killed while they are mid-step.
    let mut x = worker(&url, &dir, "worker-x");
    let input = json!({"n": 1, "trail": [], "spin": 20_000_000});
    let mut runs = Vec::new();
    for _ in 0..16 {
        runs.push(submit(&x, &runner, &input));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs.iter().all(|r| of_type(&events(&url, r), "step_completed").is_empty()) {
        assert!(Instant::now() < deadline, "worker X finished no step:\n{}", x.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    x.kill();
    let killed_us = now_us();
    // B and C come up together while X's heartbeat is still fresh: both look every
    // second, and both see its runs free at the same moment. Each has 8 slots.
    let (b, c) = std::thread::scope(|s| {
        let b = s.spawn(|| worker(&url, &dir, "worker-b"));
        let c = s.spawn(|| worker(&url, &dir, "worker-c"));
        (b.join().unwrap(), c.join().unwrap())
    });
    for run in &runs {
        b.wait_status(&runner, run, "completed", Duration::from_secs(120));
    }
    // Each run was taken once after the kill (one resume, by B or C), no step began
    // again once completed, every effect is recorded once, and every run verifies.
    let mut taken = BTreeMap::new();
    for run in &runs {
        let ev = events(&url, run);
        let resumes: Vec<&Value> =
            of_type(&ev, "run_resumed").into_iter().filter(|e| e["at_us"].as_u64() > Some(killed_us)).collect();
        let unfinished = of_type(&ev, "run_completed").first().and_then(|e| e["at_us"].as_u64()) > Some(killed_us);
        if unfinished {
            assert_eq!(resumes.len(), 1, "{run}: taken over {} times: {ev:?}", resumes.len());
            *taken.entry(resumes[0]["pid"].as_u64().unwrap()).or_insert(0) += 1;
        }
        no_step_ran_again(run, &ev);
        let (code, verified) = tether_json(&url, &["verify", run, "--json"]);
        assert_eq!(code, Some(0), "{verified}");
    }
    assert!(!taken.is_empty(), "no run was left for B and C to take over");
    let pids = [u64::from(b.child.id()), u64::from(c.child.id())];
    assert!(taken.keys().all(|pid| pids.contains(pid)), "taken by {taken:?}, not B or C ({pids:?})");
    eprintln!("runs taken over, by worker pid: {taken:?} (B {}, C {})", pids[0], pids[1]);
    every_effect_once(&dir, runs.len());
    // Neither was fenced out of a run the other took: claims never overlapped.
    for w in [&b, &c] {
        let log = w.log();
        assert!(!log.contains("was taken over by") && !log.contains("panicked"), "{log}");
    }
}

#[test]
fn two_workers_asked_at_once_with_one_idempotency_key_start_one_run() {
    let url = PathBuf::from(crate::journal_pg::fresh_database("workers_idem"));
    let dir = fresh_dir("workers-idem");
    workflow(&dir);
    let runner = token(&url, "ci", "ci-bot", &["runner"]);
    let (a, b) = (worker(&url, &dir, "worker-a"), worker(&url, &dir, "worker-b"));
    let body = json!({"workflow": "shared", "input": {"n": 1, "trail": [], "spin": 1_000}}).to_string();
    let mut runs = Vec::new();
    for i in 0..12 {
        let key = format!("order-{i}");
        let header = [("idempotency-key", key.as_str())];
        // The same request to both workers at the same moment.
        let ask = |w: &Served| w.call("POST", "/v1/runs", Some(&runner), Some(&body), &header);
        let (first, second) = std::thread::scope(|s| {
            let (x, y) = (s.spawn(|| ask(&a)), s.spawn(|| ask(&b)));
            (x.join().unwrap(), y.join().unwrap())
        });
        let mut statuses = [first.0, second.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 201], "{key}: one creates, the other finds it: {first:?} {second:?}");
        assert_eq!(first.1["run_id"], second.1["run_id"], "{key}: one run: {first:?} {second:?}");
        runs.push(first.1["run_id"].as_str().unwrap().to_string());
    }
    for run in &runs {
        a.wait_status(&runner, run, "completed", Duration::from_secs(60));
        let ev = events(&url, run);
        assert_eq!(of_type(&ev, "run_started").len(), 1, "{run}: {ev:?}");
        let (code, verified) = tether_json(&url, &["verify", run, "--json"]);
        assert_eq!(code, Some(0), "{verified}");
    }
    let (_, listed) = a.get_as(&runner, "/v1/runs?limit=100");
    assert_eq!(listed["runs"].as_array().unwrap().len(), runs.len(), "{listed}");
    every_effect_once(&dir, runs.len());
}

#[test]
fn a_pool_too_small_for_a_server_is_refused_naming_what_the_connections_are_for() {
    let url = PathBuf::from(crate::journal_pg::fresh_database("workers_pool"));
    let o =
        crate::support::tether_cmd(&url).args(["serve", "--listen", "127.0.0.1:0", "--db-pool", "2"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("db_pool 2: a server needs at least 3 connections"), "{stderr}");
    assert!(stderr.contains("its writer, its listener and one for reads"), "{stderr}");
}
