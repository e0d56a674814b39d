//! One host per run, through the real CLI: two processes that want the same run at the
//! same moment (two resumes, a decision racing a resume, two decisions on one gate) end
//! with exactly one executing it, every effect once and a journal that verifies; and a
//! run whose host was killed on another machine is taken over once its lease lapses.
//!
//! `TETHER_RACE_TRIALS` changes the number of trials per race (default 50).

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_tests::artifacts;

use crate::governance::{of_type, run_id, stderr, Refund, POLICY};
use crate::support::{fresh_dir, tether_cmd, tether_json};

fn trials() -> usize {
    std::env::var("TETHER_RACE_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(50)
}

fn spawn(r: &Refund, args: &[&str]) -> Child {
    tether_cmd(&r.db).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// A refund run waiting for a human at the `refund` gate.
fn waiting(r: &Refund, name: &str) -> String {
    let (code, report) = r.run(240.0, &["--run-id", name]);
    assert_eq!(code, Some(3), "{report}");
    run_id(&report)
}

/// The run's journal verifies, and the payment it makes was made once.
fn assert_paid_once(r: &Refund, run: &str) -> Vec<Value> {
    let o = r.cli(&["verify", run]);
    assert_eq!(o.status.code(), Some(0), "verify {run}: {}", stderr(&o));
    let events = r.events(run);
    let issued = of_type(&events, "step_completed").into_iter().filter(|e| e["step"] == "issue").count();
    assert_eq!(issued, 1, "run {run}: the paying step completed {issued} times");
    assert_eq!(of_type(&events, "run_completed").len(), 1, "run {run}: {events:?}");
    let line = format!("{run}/issue/0\t");
    let paid = r.ledger().lines().filter(|l| l.starts_with(&line)).count();
    assert_eq!(paid, 1, "run {run} paid {paid} times");
    events
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn two_resumes_of_one_run_started_together_execute_it_once() {
    let r = Refund::new("race-resumes", "output.amount > 100.0", POLICY);
    let (mut refused, mut reported) = (0, 0);
    for i in 0..trials() {
        let run = waiting(&r, &format!("run_two-resumes-{i}"));
        let o = r.cli(&["approve", &run, "refund", "--as", "alice", "--no-continue"]);
        assert_eq!(code(&o), Some(0), "{}", stderr(&o));
        let a = spawn(&r, &["resume", &run, "--json"]);
        let b = spawn(&r, &["resume", &run, "--json"]);
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        for o in &outs {
            match code(o) {
                Some(0) => reported += 1,
                Some(4) => {
                    refused += 1;
                    assert!(stderr(o).contains("is being executed by another host"), "{}", stderr(o));
                }
                other => panic!("resume {run} exited {other:?}: {}", stderr(o)),
            }
        }
        assert!(outs.iter().any(|o| code(o) == Some(0)), "neither resume finished run {run}");
        let events = assert_paid_once(&r, &run);
        assert_eq!(of_type(&events, "run_resumed").len(), 1, "run {run}: exactly one process executed it");
    }
    eprintln!(
        "{} trials: the second resume was refused {refused} times and reported the finished run {} times",
        trials(),
        reported - trials()
    );
}

/// Two processes started with one new run id at once. A run's start is not synced on its
/// own (it goes with the run's first batch), so both may do pure work; the first append
/// decides, and it always comes before the payment tool runs. Exactly one executes the
/// run and pays; the other is told the run exists (2) or is being executed (4).
#[test]
fn two_starts_of_one_new_run_id_execute_it_once() {
    let r = Refund::new("race-starts", "false", POLICY);
    let input = json!({"order_id": "A-1", "amount": 30.0, "reason": "arrived damaged"}).to_string();
    let wf = r.workflow();
    let (mut exists, mut busy) = (0, 0);
    for i in 0..trials() {
        let run = format!("run_two-starts-{i}");
        let args = ["run", wf.as_str(), "--input", input.as_str(), "--run-id", run.as_str(), "--json"];
        let a = spawn(&r, &args);
        let b = spawn(&r, &args);
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let mut finished = 0;
        for o in &outs {
            match code(o) {
                Some(0) => finished += 1,
                Some(2) => {
                    exists += 1;
                    assert!(stderr(o).contains(&format!("run {run} already exists")), "{}", stderr(o));
                }
                Some(4) => {
                    busy += 1;
                    assert!(stderr(o).contains("is being executed by another host"), "{}", stderr(o));
                }
                other => panic!("start of {run} exited {other:?}: {}", stderr(o)),
            }
        }
        assert_eq!(finished, 1, "run {run}: exactly one start executes it");
        let events = assert_paid_once(&r, &run);
        assert_eq!(of_type(&events, "run_started").len(), 1, "run {run}: one start in the journal");
        assert_eq!(of_type(&events, "run_completed").len(), 1, "run {run}");
    }
    eprintln!("{} trials: the second start was told the run exists {exists} times, busy {busy} times", trials());
}

#[test]
fn a_decision_racing_a_resume_continues_the_run_once() {
    let r = Refund::new("race-approve-resume", "output.amount > 100.0", POLICY);
    for i in 0..trials() {
        let run = waiting(&r, &format!("run_approve-resume-{i}"));
        let approve = spawn(&r, &["approve", &run, "refund", "--as", "alice", "--json"]);
        let resume = spawn(&r, &["resume", &run, "--json"]);
        let (approve, resume) = (approve.wait_with_output().unwrap(), resume.wait_with_output().unwrap());
        assert_eq!(code(&approve), Some(0), "approve {run}: {}", stderr(&approve));
        // The resume either ran first (and found the run still waiting: 3), finished it
        // after the decision (0), or found the approver's process executing it (4).
        assert!(matches!(code(&resume), Some(0 | 3 | 4)), "resume {run}: {}", stderr(&resume));
        let events = assert_paid_once(&r, &run);
        assert_eq!(of_type(&events, "approval_decided").len(), 1, "run {run}");
    }
}

#[test]
fn an_approve_and_a_reject_of_one_gate_at_once_record_one_decision() {
    let r = Refund::new("race-decisions", "output.amount > 100.0", POLICY);
    let mut approved = 0;
    for i in 0..trials() {
        let run = waiting(&r, &format!("run_decisions-{i}"));
        let yes = spawn(&r, &["approve", &run, "refund", "--as", "alice", "--no-continue"]);
        let no = spawn(&r, &["reject", &run, "refund", "--as", "bob", "--no-continue"]);
        let (yes, no) = (yes.wait_with_output().unwrap(), no.wait_with_output().unwrap());
        let decided = of_type(&r.events(&run), "approval_decided").iter().map(|e| e["by"].clone()).collect::<Vec<_>>();
        assert_eq!(decided.len(), 1, "run {run}: both decisions were recorded: {decided:?}");
        let (winner, loser) = if decided[0] == "alice" { (&yes, &no) } else { (&no, &yes) };
        approved += usize::from(decided[0] == "alice");
        assert_eq!(code(winner), Some(0), "{}", stderr(winner));
        assert_eq!(code(loser), Some(2), "{}", stderr(loser));
        let expected = format!("was already decided by {}", decided[0].as_str().unwrap());
        assert!(stderr(loser).contains(&expected), "the loser is told who decided: {}", stderr(loser));
        assert_eq!(code(&r.cli(&["verify", &run])), Some(0));
    }
    eprintln!("{} trials: approve won {approved}, reject won {}", trials(), trials() - approved);
}

/// A slow two-step workflow with an effectful tool, for kill tests.
fn slow_workflow(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir.join("ledger")).unwrap();
    let steps: String = (1..=2)
        .map(|k| {
            format!("[[steps]]\nname = \"s{k}\"\ncomponent = {:?}\ntools = [\"ledger\"]\n", artifacts::DURABLE_STEP)
        })
        .collect();
    let text = format!(
        "name = \"slow\"\n[tools.ledger]\ncomponent = {:?}\ndirs = [{{ host = \"ledger\", guest = \"/ledger\", write = true }}]\n{steps}",
        artifacts::LEDGER_TOOL
    );
    let path = dir.join("slow.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Waits until the run's journal holds `kind`.
fn wait_for(db: &std::path::Path, run: &str, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = tether_cmd(db).args(["history", run, "--json"]).output().unwrap();
        if String::from_utf8_lossy(&o.stdout).contains(&format!("\"{kind}\"")) {
            return;
        }
        assert!(Instant::now() < deadline, "run {run} never recorded {kind}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_live_host_keeps_its_run_and_one_killed_elsewhere_loses_it_when_its_lease_lapses() {
    let dir = fresh_dir("lease-takeover");
    let db = dir.join("journal.db");
    let wf = slow_workflow(&dir);
    let input = json!({"n": 1, "trail": [], "spin": 150_000_000}).to_string();

    // A live host: another process is refused, and told who has the run.
    let log = dir.join("live.err");
    let mut live = tether_cmd(&db)
        .args(["run", &wf, "--input", &input, "--run-id", "run_live"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    if std::panic::catch_unwind(|| wait_for(&db, "run_live", "tool_call_completed")).is_err() {
        panic!("the live run never made a tool call; it said:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    let o = tether_cmd(&db).args(["resume", "run_live"]).output().unwrap();
    let running = live.try_wait().unwrap().is_none();
    if running {
        assert_eq!(code(&o), Some(4), "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("/pid:{}/", live.id())), "names the holder: {}", stderr(&o));
    }
    assert_eq!(live.wait().unwrap().code(), Some(0));
    assert!(running, "the run finished before a second process could try it; raise its spin");

    // A host on another machine (as far as this one can tell) is killed mid-run: its
    // lease holds the run until it lapses, then a waiting resume takes it over.
    let mut elsewhere = tether_cmd(&db)
        .args(["run", &wf, "--input", &input, "--run-id", "run_elsewhere"])
        .env("TETHER_HOST_ID", "other-machine")
        .env("TETHER_LEASE_TTL", "3s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&db, "run_elsewhere", "tool_call_completed");
    let _ = elsewhere.kill();
    let _ = elsewhere.wait();
    let killed = Instant::now();
    let o = tether_cmd(&db).args(["resume", "run_elsewhere"]).output().unwrap();
    assert_eq!(code(&o), Some(4), "a lease that has not lapsed is respected: {}", stderr(&o));
    assert!(stderr(&o).contains("other-machine"), "{}", stderr(&o));
    let (code, report) = tether_json(&db, &["resume", "run_elsewhere", "--wait", "20s", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "completed");
    let waited = killed.elapsed();
    assert!(waited >= Duration::from_millis(1500), "taken over after {waited:?}, before the lease lapsed");
    assert_eq!(report["output"]["trail"], json!(["step1-a", "step1-b", "step2-a", "step2-b"]));
    let o = tether_cmd(&db).args(["verify", "run_elsewhere"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
