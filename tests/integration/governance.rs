//! Governance through the CLI, on the refund components: identity grants (least
//! privilege), policy verdicts, approval gates (single, dual, after a restart, timeout,
//! override), earned autonomy (relax, re-arm), replay after a policy change, stats,
//! secrets, and bad input.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tether_tests::artifacts;

use crate::support::{fresh_dir, tether_cmd, tether_json};

/// A refund workflow in a fresh directory: `approval_when` gates the assessment; the
/// policy file is `policy` (with `{ledger}` standing for the ledger directory).
pub(crate) struct Refund {
    pub(crate) dir: PathBuf,
    pub(crate) db: PathBuf,
}

pub(crate) const POLICY: &str = r#"
[identities.support-bot]
tools = ["payments"]
dirs = [{ host = "ledger", write = true }]
env = ["PAYMENTS_URL", { name = "PAYMENTS_API_KEY", secret = true }]

[identities.alice]
approves = ["refund", "large-payment"]

[identities.bob]
approves = ["refund", "large-payment"]

[identities.intern]
tools = ["payments"]

[gates.refund]
approvals = 1

[gates.large-payment]
approvals = 2

[[rules]]
name = "refund-ceiling"
on = "tool_call"
when = "tool == 'payments' && input.amount > 5000.0"
verdict = "deny"

[[rules]]
name = "large-payments"
on = "tool_call"
when = "tool == 'payments' && effect == 'external' && input.amount > 1000.0"
verdict = "require_approval"
gate = "large-payment"
"#;

impl Refund {
    pub(crate) fn new(name: &str, approval_when: &str, policy: &str) -> Refund {
        let dir = fresh_dir(name);
        std::fs::create_dir_all(dir.join("ledger")).unwrap();
        let workflow = format!(
            r#"name = "refund-{name}"
identity = "support-bot"
policy_file = "policy.toml"

[tools.payments]
component = "{payments}"
dirs = [{{ host = "ledger", guest = "/ledger", write = true }}]
env = ["PAYMENTS_URL"]

[[steps]]
name = "assess"
component = "{assess}"
approval = {{ gate = "refund", when = "{approval_when}" }}

[[steps]]
name = "issue"
component = "{issue}"
tools = ["payments"]
env = ["PAYMENTS_API_KEY"]
"#,
            payments = artifacts::PAYMENTS,
            assess = artifacts::ASSESS_REFUND,
            issue = artifacts::ISSUE_REFUND,
        );
        std::fs::write(dir.join("refund.toml"), workflow).unwrap();
        std::fs::write(dir.join("policy.toml"), policy).unwrap();
        let db = dir.join("journal.db");
        Refund { dir, db }
    }

    pub(crate) fn workflow(&self) -> String {
        self.dir.join("refund.toml").display().to_string()
    }

    /// `tether run --json` with `amount`, plus extra flags; (exit code, report).
    pub(crate) fn run(&self, amount: f64, extra: &[&str]) -> (Option<i32>, Value) {
        let input = json!({"order_id": "A-1", "amount": amount, "reason": "arrived damaged"}).to_string();
        let mut args = vec!["run", self.workflow().leak() as &str, "--input", input.leak(), "--json"];
        args.extend_from_slice(extra);
        tether_json(&self.db, &args)
    }

    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        tether_cmd(&self.db).args(args).output().unwrap()
    }

    pub(crate) fn events(&self, run: &str) -> Vec<Value> {
        let (code, v) = tether_json(&self.db, &["history", run, "--json"]);
        assert_eq!(code, Some(0));
        v.as_array().unwrap().clone()
    }

    pub(crate) fn ledger(&self) -> String {
        std::fs::read_to_string(self.dir.join("ledger/refunds.log")).unwrap_or_default()
    }
}

pub(crate) fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The verdicts on tool calls.
fn tool_verdicts(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["type"] == "policy_verdict" && e["on"] == "tool_call").collect()
}

pub(crate) fn run_id(report: &Value) -> String {
    report["run_id"].as_str().unwrap().to_string()
}

pub(crate) fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_identity_gets_only_what_it_is_granted_and_every_refusal_is_journaled() {
    let r = Refund::new("gov-least", "false", POLICY);
    // `intern` may call payments but has no directory and no environment variables.
    let (code, report) = r.run(50.0, &["--as", "intern"]);
    assert_eq!(code, Some(1), "the tool cannot open its ledger: {report}");
    let events = r.events(&run_id(&report));
    let grants = of_type(&events, "grants_applied");
    let refused: Vec<&str> = grants[0]["refused"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(refused.iter().any(|r| r.contains("tool `payments`: directory")), "{refused:?}");
    assert!(refused.iter().any(|r| r.contains("environment variable PAYMENTS_API_KEY")), "{refused:?}");
    assert!(refused.iter().any(|r| r.contains("environment variable PAYMENTS_URL")), "{refused:?}");
    assert!(r.ledger().is_empty(), "nothing may be written without the directory grant");

    // An identity without the tool: the call is refused with `denied`, which the step handles.
    let policy = POLICY.replace("[identities.intern]\ntools = [\"payments\"]", "[identities.intern]");
    let r = Refund::new("gov-least-tool", "false", &policy);
    let (code, report) = r.run(50.0, &["--as", "intern"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["refunded"], false);
    assert_eq!(report["output"]["key_present"], false, "the secret was not granted to intern");
    let msg = report["output"]["payment"]["refused"].as_str().unwrap();
    assert!(msg.contains("identity `intern` is not granted tool `payments`"), "{msg}");
    let events = r.events(&run_id(&report));
    let call = of_type(&events, "tool_call_completed");
    assert_eq!(call[0]["result"]["err"]["class"], "denied", "{:?}", call[0]);
    assert!(of_type(&events, "grants_applied")[0]["refused"].to_string().contains("step `issue`: tool `payments`"));
    assert!(r.ledger().is_empty());
}

#[test]
fn each_verdict_is_journaled_with_its_rule_and_a_denied_call_reaches_the_guest() {
    let r = Refund::new("gov-verdicts", "false", POLICY);
    // Allowed by grant: no rule applies.
    let (code, report) = r.run(80.0, &[]);
    assert_eq!(code, Some(0), "{report}");
    let events = r.events(&run_id(&report));
    let v = tool_verdicts(&events);
    assert_eq!((v[0]["verdict"].as_str(), v[0]["rule"].as_str()), (Some("allow"), None));
    assert_eq!(v[0]["identity"], "support-bot");
    assert_eq!(r.ledger().lines().count(), 1);

    // Denied by a rule: the step gets `denied` and handles it; nothing is paid.
    let (code, report) = r.run(6000.0, &[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["refunded"], false);
    assert!(report["output"]["payment"]["refused"].as_str().unwrap().contains("refund-ceiling"));
    let events = r.events(&run_id(&report));
    let v = tool_verdicts(&events);
    assert_eq!((v[0]["verdict"].as_str(), v[0]["rule"].as_str()), (Some("deny"), Some("refund-ceiling")));
    assert_eq!(r.ledger().lines().count(), 1, "a denied payment is never made");

    // Requires approval: the run waits (exit 3) with no payment made.
    let (code, report) = r.run(1500.0, &[]);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["status"], "waiting");
    assert_eq!(
        (report["next"]["what"].as_str(), report["next"]["command"].as_str()),
        (Some("decide"), Some("tether inbox"))
    );
    let events = r.events(&run_id(&report));
    let v = tool_verdicts(&events);
    assert_eq!((v[0]["verdict"].as_str(), v[0]["gate"].as_str()), (Some("require_approval"), Some("large-payment")));
    assert_eq!(of_type(&events, "run_waiting").len(), 1);
    assert_eq!(r.ledger().lines().count(), 1);
    // Without --json a person is told how to decide.
    let input = json!({"order_id": "A-2", "amount": 1500.0, "reason": "arrived damaged"}).to_string();
    let o = r.cli(&["run", &r.workflow(), "--input", &input]);
    assert_eq!(o.status.code(), Some(3));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("is waiting: waiting for approval of"), "{said}");
    assert!(said.contains("decide: `tether inbox`, then `tether approve run_"), "{said}");
}

#[test]
fn a_dual_gate_needs_two_different_approvers_and_the_payment_happens_once() {
    let r = Refund::new("gov-dual", "false", POLICY);
    let (code, report) = r.run(1500.0, &[]);
    assert_eq!(code, Some(3));
    let run = run_id(&report);

    let (code, inbox) = tether_json(&r.db, &["inbox", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(inbox[0]["gate"], "large-payment");
    assert_eq!(inbox[0]["proposal"]["amount"], 1500.0);
    assert_eq!(inbox[0]["approvals_needed"], 2);

    let o = r.cli(&["approve", &run, "large-payment", "--as", "alice"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 more approval(s) needed"), "{}", stderr(&o));
    let before = r.events(&run).len();
    let o = r.cli(&["approve", &run, "large-payment", "--as", "alice"]);
    assert_eq!(o.status.code(), Some(2), "the same approver cannot count twice");
    assert!(stderr(&o).contains("already approved"), "{}", stderr(&o));
    assert_eq!(r.events(&run).len(), before, "a refused decision changes nothing");
    assert!(r.ledger().is_empty());

    let (code, report) = tether_json(&r.db, &["approve", &run, "large-payment", "--as", "bob", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["status"], "completed");
    assert_eq!(report["output"]["refunded"], true);
    assert_eq!(r.ledger().lines().count(), 1, "paid exactly once");
    let events = r.events(&run);
    let by: Vec<&str> = of_type(&events, "approval_decided").iter().map(|e| e["by"].as_str().unwrap()).collect();
    assert_eq!(by, ["alice", "bob"]);
}

#[test]
fn a_step_gate_survives_kill_9_and_an_edited_approval_is_an_override() {
    let r = Refund::new("gov-restart", "output.amount > 100.0", POLICY);
    let input = json!({"order_id": "A-7", "amount": 240.0, "reason": "broken"}).to_string();
    let mut child = tether_cmd(&r.db)
        .args(["run", &r.workflow(), "--input", &input, "--run-id", "run_gate-restart"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(r.dir.join("host.err")).unwrap())
        .spawn()
        .unwrap();
    // Kill the host as soon as the request is durable (it may already have exited).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let o = r.cli(&["history", "run_gate-restart", "--json"]);
        if String::from_utf8_lossy(&o.stdout).contains("approval_requested") {
            break;
        }
        let log = || std::fs::read_to_string(r.dir.join("host.err")).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "no approval was requested; the host said:\n{}", log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(r.ledger().is_empty());

    // Approve with an edited proposal: a partial refund.
    let edited = json!({"order_id": "A-7", "amount": 120.0, "reason": "broken", "category": "damaged", "risk": 0.1});
    let (code, report) = tether_json(
        &r.db,
        &["approve", "run_gate-restart", "refund", "--as", "alice", "--payload", &edited.to_string(), "--json"],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["amount"], 120.0, "the approver's edit is what runs on");
    assert_eq!(r.ledger().lines().count(), 1);
    let events = r.events("run_gate-restart");
    let decided = of_type(&events, "approval_decided");
    assert_eq!(decided[0]["payload"]["amount"], 120.0, "the override is recorded as such");
    assert_eq!(decided[0]["by"], "alice");

    let (_, stats) = tether_json(&r.db, &["stats", "--json"]);
    assert_eq!(stats["gates"]["refund"]["overrides"], 1, "{stats}");
    assert_eq!(stats["gates"]["refund"]["override_rate"], 1.0);
}

#[test]
fn a_request_nobody_decides_takes_the_gates_default_at_its_deadline() {
    let policy = POLICY.replace("[gates.refund]\napprovals = 1", "[gates.refund]\napprovals = 1\ndeadline = \"1s\"");
    let r = Refund::new("gov-timeout", "true", &policy);
    let (code, report) = r.run(40.0, &[]);
    assert_eq!(code, Some(3), "{report}");
    let run = run_id(&report);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // The sweep succeeded (exit 0); the run it continued was rejected by default.
    let (code, swept) = tether_json(&r.db, &["sweep", "--json"]);
    assert_eq!(code, Some(0), "{swept}");
    assert_eq!(swept["continued"].as_array().map(Vec::len), Some(1), "{swept}");
    assert_eq!(swept["continued"][0]["status"], "failed", "{swept}");
    let (_, report) = tether_json(&r.db, &["resume", &run, "--json"]);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["error"]["class"], "rejected", "{report}");
    let events = r.events(&run);
    let decided = of_type(&events, "approval_decided");
    assert_eq!((decided[0]["by"].as_str(), decided[0]["decision"].as_str()), (Some("deadline"), Some("reject")));
    assert!(r.ledger().is_empty());
}

#[test]
fn a_gate_relaxes_once_its_record_earns_it_and_one_override_re_arms_it() {
    let policy = POLICY.replace(
        "[gates.refund]\napprovals = 1",
        "[gates.refund]\napprovals = 1\nrelax_after = { decisions = 2, max_override_rate = 0.0 }",
    );
    let r = Refund::new("gov-relax", "true", &policy);
    for _ in 0..2 {
        let (code, report) = r.run(30.0, &[]);
        assert_eq!(code, Some(3), "{report}");
        let o = r.cli(&["approve", &run_id(&report), "refund", "--as", "bob"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    // Two approvals without change: the third request is approved by the gate itself.
    let (code, report) = r.run(30.0, &[]);
    assert_eq!(code, Some(0), "{report}");
    let auto_run = run_id(&report);
    let events = r.events(&auto_run);
    let decided = of_type(&events, "approval_decided");
    assert_eq!(decided[0]["by"], "autonomy");
    assert_eq!(decided[0]["evidence"]["decisions"], 2, "the evidence is journaled: {:?}", decided[0]);
    assert_eq!(decided[0]["evidence"]["override_rate"], 0.0);

    // A reviewer finds that approval wrong: the gate re-arms and asks a human again.
    let o =
        r.cli(&["override", &auto_run, "refund", "--as", "alice", "--comment", "should have been partial", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((doc["gate"].as_str(), doc["rearmed"].as_bool()), (Some("refund"), Some(true)), "{doc}");
    // Once: a second override of the same approval would count it twice.
    let o = r.cli(&["override", &auto_run, "refund", "--as", "bob"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("was already overridden (by alice)"), "{}", stderr(&o));
    let (code, report) = r.run(30.0, &[]);
    assert_eq!(code, Some(3), "re-armed: {report}");
    let (_, stats) = tether_json(&r.db, &["stats", "--json"]);
    assert_eq!(stats["gates"]["refund"]["auto_approved"], 1);
    assert_eq!(stats["gates"]["refund"]["auto_overridden"], 1);

    // Only automatic approvals can be overridden after the fact.
    let first = tether_json(&r.db, &["runs", "--json"]).1.as_array().unwrap().last().unwrap()["run_id"].clone();
    let o = r.cli(&["override", first.as_str().unwrap(), "refund", "--as", "alice"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn replay_uses_the_recorded_verdicts_after_the_policy_file_changed() {
    let r = Refund::new("gov-replay", "false", POLICY);
    let (code, denied) = r.run(6000.0, &[]);
    assert_eq!(code, Some(0));
    let (code, waiting) = r.run(1500.0, &[]);
    assert_eq!(code, Some(3));
    for who in ["alice", "bob"] {
        assert_eq!(r.cli(&["approve", &run_id(&waiting), "large-payment", "--as", who]).status.code(), Some(0));
    }
    // Today's policy would allow everything; the recorded runs keep their verdicts.
    std::fs::write(r.dir.join("policy.toml"), POLICY.split("[[rules]]").next().unwrap()).unwrap();
    for run in [run_id(&denied), run_id(&waiting)] {
        let (code, replay) = tether_json(&r.db, &["replay", &run, "--json"]);
        assert_eq!(code, Some(0), "{replay}");
        assert!(replay["divergence"].is_null(), "{replay}");
        assert_eq!(replay["matched"], replay["events"]);
    }
    assert_eq!(r.ledger().lines().count(), 1, "replay pays nothing");
}

#[test]
fn stats_match_a_known_set_of_runs() {
    let r = Refund::new("gov-stats", "output.amount > 100.0", POLICY);
    let (code, _) = r.run(50.0, &[]); // completes without a human
    assert_eq!(code, Some(0));
    let (_, b) = r.run(240.0, &[]); // approved
    assert_eq!(r.cli(&["approve", &run_id(&b), "refund", "--as", "alice"]).status.code(), Some(0));
    let (_, c) = r.run(300.0, &[]); // rejected
                                    // The rejection is recorded (exit 0) and the run it continued fails.
    assert_eq!(r.cli(&["reject", &run_id(&c), "refund", "--as", "bob", "--comment", "no"]).status.code(), Some(0));
    assert_eq!(tether_json(&r.db, &["show", &run_id(&c), "--json"]).1["status"], "failed");
    let (_, d) = r.run(400.0, &[]); // still waiting
    let _ = d;

    let (code, s) = tether_json(&r.db, &["stats", "--json", "--workflow", "refund-gov-stats"]);
    assert_eq!(code, Some(0));
    assert_eq!(s["runs"], 4);
    assert_eq!(s["finished"], 3);
    assert_eq!(s["completed"], 2);
    assert_eq!(s["waiting"], 1);
    assert!((s["success_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9, "{s}");
    assert_eq!(s["escalation_rate"], 0.75, "3 of 4 runs needed a human");
    assert_eq!(s["rollback_rate"], 0.0);
    assert_eq!(s["steps"]["assess"]["count"], 4);
    assert_eq!(s["steps"]["issue"]["count"], 2);
    assert_eq!(s["usage_per_success"]["tokens"], 120.0);
    let g = &s["gates"]["refund"];
    assert_eq!((g["decisions"].as_u64(), g["approved"].as_u64(), g["overrides"].as_u64()), (Some(2), Some(1), Some(1)));
    assert_eq!(g["override_rate"], 0.5);
    let text = String::from_utf8_lossy(&r.cli(&["stats"]).stdout).into_owned();
    assert!(text.contains("success rate:    66.7%") && text.contains("refund"), "{text}");
}

#[test]
fn secrets_reach_the_guest_but_never_the_journal() {
    let r = Refund::new("gov-secret", "false", POLICY);
    let input = json!({"order_id": "A-9", "amount": 20.0}).to_string();
    let o = tether_cmd(&r.db)
        .env("PAYMENTS_API_KEY", "sk-test-7f3a9c\"quoted")
        .env("PAYMENTS_URL", "https://pay.example")
        .args(["run", &r.workflow(), "--input", &input, "--json", "--verbose"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["output"]["key_present"], true);
    assert_eq!(report["output"]["payment"]["provider"], "https://pay.example");
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(!all.contains("sk-test-7f3a9c"), "the secret leaked into the output");
    let history = String::from_utf8_lossy(&r.cli(&["history", &run_id(&report), "--json"]).stdout).into_owned();
    assert!(!history.contains("sk-test-7f3a9c"), "the secret leaked into the journal");
    assert!(history.contains("authorizing with key [secret]"), "{history}");
    assert!(history.contains("\"PAYMENTS_URL\": \"https://pay.example\""), "non-secret values are journaled");
    let raw = std::fs::read(&r.db).unwrap();
    assert!(!raw.windows(14).any(|w| w == b"sk-test-7f3a9c"), "the secret is in the database file");
}

#[test]
fn bad_governance_input_is_a_usage_error_that_changes_nothing() {
    let r = Refund::new("gov-bad", "output.amount > 100.0", POLICY);
    let expect2 = |o: std::process::Output, needle: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(needle), "expected {needle:?} in:\n{}", stderr(&o));
    };
    let input = json!({"order_id": "A-1", "amount": 500.0}).to_string();
    let wf = r.workflow();
    expect2(r.cli(&["run", &wf, "--input", &input, "--as", "mallory"]), "identity `mallory` is not declared");

    let (code, report) = r.run(500.0, &[]);
    assert_eq!(code, Some(3));
    let run = run_id(&report);
    let before = r.events(&run).len();
    expect2(r.cli(&["approve", &run, "refund", "--as", "intern"]), "may not decide gate `refund`");
    expect2(r.cli(&["approve", &run, "refund", "--as", "nobody"]), "is not declared by the run's policy");
    expect2(r.cli(&["approve", &run, "large-payment", "--as", "alice"]), "has no request at gate `large-payment`");
    expect2(
        r.cli(&["approve", &run, "refund", "--as", "alice", "--payload", "{not json"]),
        "--payload: not valid JSON",
    );
    // An edit must keep the proposal's shape: a partial or mistyped one is refused now,
    // not found by the next step after the run went on.
    let partial = r.cli(&["approve", &run, "refund", "--as", "alice", "--payload", r#"{"amount": "80"}"#]);
    expect2(partial, "/amount: is a string, but the proposal has a number there");
    let partial = r.cli(&["approve", &run, "refund", "--as", "alice", "--payload", r#"{"amount": 80}"#]);
    expect2(partial, "/order_id: missing (the proposal has it)");
    assert_eq!(r.events(&run).len(), before, "the run is unchanged");
    assert_eq!(r.cli(&["approve", &run, "refund", "--as", "alice"]).status.code(), Some(0));
    expect2(r.cli(&["reject", &run, "refund", "--as", "bob"]), "already decided");

    let bad = |name: &str, policy: &str, needle: &str| {
        let r = Refund::new(name, "false", policy);
        let o = r.cli(&["run", &r.workflow(), "--input", "{}"]);
        expect2(o, needle);
        assert!(!Path::new(&r.db).exists() || r.cli(&["runs", "--json"]).stdout.starts_with(b"[]"));
    };
    bad(
        "gov-bad-expr",
        &POLICY.replace("input.amount > 5000.0", "input.amount >> 5000"),
        "policy.toml:25:8: rule `refund-ceiling` `when`",
    );
    bad("gov-bad-field", &format!("{POLICY}\n[gates.extra]\napprovers = 2\n"), "unknown field `approvers`");
    bad(
        "gov-bad-gate",
        &POLICY.replace("gate = \"large-payment\"", "gate = \"huge\""),
        "names gate `huge`, which is not declared",
    );
}

#[test]
fn the_readme_refund_example_waits_for_alice_then_pays() {
    let dir = fresh_dir("gov-example");
    let db = dir.join("journal.db");
    let root = tether_tests::repo_root();
    let workflow = root.join("plugins/workflows/refund.toml").display().to_string();
    let input = format!("@{}", root.join("plugins/workflows/refund-request.json").display());
    assert_eq!(tether_cmd(&db).args(["validate", &workflow]).output().unwrap().status.code(), Some(0));
    let (code, report) = tether_json(&db, &["run", &workflow, "--input", &input, "--json"]);
    assert_eq!(code, Some(3), "{report}");
    let (code, report) = tether_json(&db, &["approve", &run_id(&report), "refund", "--as", "alice", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["refunded"], true);
    assert_eq!(report["output"]["amount"], 240.0);
}

#[test]
fn rules_also_judge_steps_before_they_run_and_tool_results_before_the_step_sees_them() {
    let policy = format!(
        r#"{POLICY}
[[rules]]
name = "no-huge-assessments"
on = "step"
when = "step == 'assess' && input.amount > 9000.0"
verdict = "deny"

[[rules]]
name = "configured-provider-only"
on = "tool_result"
when = "output.provider == 'unconfigured'"
verdict = "deny"
"#
    );
    let r = Refund::new("gov-step-rules", "false", &policy);
    let (code, report) = r.run(9500.0, &[]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "denied");
    let events = r.events(&run_id(&report));
    assert!(of_type(&events, "step_attempt_started").is_empty(), "a denied step never starts");
    let v = of_type(&events, "policy_verdict");
    assert_eq!((v[0]["on"].as_str(), v[0]["rule"].as_str()), (Some("step"), Some("no-huge-assessments")));

    // The tool runs (its effect happens), but the step is refused its result.
    let (code, report) = r.run(20.0, &[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["refunded"], false);
    assert!(report["output"]["payment"]["refused"].as_str().unwrap().contains("configured-provider-only"));
    let events = r.events(&run_id(&report));
    let after: Vec<&Value> =
        of_type(&events, "policy_verdict").into_iter().filter(|e| e["on"] == "tool_result").collect();
    assert_eq!(after[0]["verdict"], "deny");
    assert_eq!(r.ledger().lines().count(), 1);
}

#[test]
fn a_secret_written_by_a_guest_never_reaches_the_terminal() {
    let dir = crate::support::fresh_dir("gov-secret-terminal");
    std::fs::write(dir.join("policy.toml"), "[identities.local]\nenv = [{ name = \"LEAK_KEY\", secret = true }]\n")
        .unwrap();
    let wf = dir.join("leak.toml");
    let text = format!(
        "name = \"leak\"\npolicy_file = \"policy.toml\"\n[[steps]]\nname = \"leak\"\ncomponent = {:?}\nenv = [\"LEAK_KEY\"]\n",
        artifacts::HOSTILE
    );
    std::fs::write(&wf, text).unwrap();
    let db = dir.join("journal.db");
    let input = r#"{"mode": "leak", "var": "LEAK_KEY"}"#;
    // Text mode (what an operator reads, every log line shown), then JSON mode.
    for extra in [&["--verbose"][..], &["--json"][..]] {
        let mut args = vec!["run", wf.to_str().unwrap(), "--input", input];
        args.extend_from_slice(extra);
        let o = tether_cmd(&db).env("LEAK_KEY", "sk-leak-5e2b91").args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert!(!all.contains("sk-leak-5e2b91"), "the secret reached the terminal:\n{all}");
        assert!(all.contains("failing with [secret]"), "{all}");
        if extra == ["--verbose"] {
            assert!(all.contains("stdout has [secret]") && all.contains("stderr has [secret]"), "{all}");
        }
    }
}

#[test]
fn the_plan_a_run_records_is_the_one_its_identity_narrowed() {
    // A workflow keeps the plan its runs record from run to run; narrowing it for an
    // identity after a run started from it must show in what the next run records (a
    // resume runs by it).
    let dir = crate::support::fresh_dir("gov-narrowed-plan");
    let text = format!(
        "name = \"narrow\"\n[[steps]]\nname = \"only\"\ncomponent = {:?}\nbudget = {{ fuel = 100_000_000_000 }}\n\
         [policy.identities.local]\nbudget = {{ fuel = 123456789 }}\n",
        artifacts::TRIVIAL
    );
    let wf = tether_types::Workflow::parse("narrow.toml", &text).unwrap();
    let mut loaded = tether_tests::runtime().load_workflow(wf, &dir).unwrap();
    let db = dir.join("journal.db");
    let recorded_fuel = |loaded: &tether_runtime::LoadedWorkflow, run: &str| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = tether_store::SqliteStore::open(&tether_store::StoreConfig::new(db.display().to_string()))
                .await
                .unwrap();
            let driver = tether_runtime::Driver::new(tether_tests::runtime().clone(), std::sync::Arc::new(store));
            let id = tether_types::RunId::from_suffix(run).unwrap();
            driver.start(loaded, id.clone(), json!({}), "local", |_| {}).await.unwrap();
            let events = driver.events(id.as_str()).await.unwrap();
            match &events[0].kind {
                tether_types::EventKind::RunStarted { plan, .. } => plan["steps"][0]["budget"]["fuel"].clone(),
                other => panic!("{other:?}"),
            }
        })
    };
    assert_eq!(recorded_fuel(&loaded, "wide"), json!(100_000_000_000u64));
    tether_runtime::apply_identity(&mut loaded, "local").unwrap();
    assert_eq!(recorded_fuel(&loaded, "narrowed"), json!(123456789));
}
