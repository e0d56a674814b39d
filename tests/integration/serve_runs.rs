//! `tether serve` executing runs, as users and operators meet it: runs started over the
//! API (with idempotency keys), decisions made as each token's identity (dual approval,
//! stale and forbidden decisions), an approval deadline fired by the server itself, a
//! cancel, an authorization matrix, and the server SIGKILLed with runs in flight, then
//! restarted: every run completes, each effect once.

use std::time::Duration;

use serde_json::{json, Value};
use tether_tests::artifacts;

use crate::governance::{of_type, Refund, POLICY};
use crate::served::{token, Served};
use crate::support::{fresh_dir, tether_json};

fn events(db: &std::path::Path, run: &str) -> Vec<Value> {
    let (code, v) = tether_json(db, &["history", run, "--json"]);
    assert_eq!(code, Some(0), "{v}");
    v.as_array().unwrap().clone()
}

fn refund_input(amount: f64) -> Value {
    json!({"order_id": "A-1", "amount": amount, "reason": "arrived damaged"})
}

#[test]
fn runs_start_over_the_api_once_per_idempotency_key_and_journal_who_asked() {
    let r = Refund::new("serve-submit", "false", POLICY);
    let runner = token(&r.db, "ci", "ci-bot", &["runner"]);
    let viewer = token(&r.db, "dash", "vera", &["viewer"]);
    let dir = r.dir.display().to_string();
    let served = Served::start(&r.db, &["--workflows", &dir]);
    let workflow = "refund-serve-submit";

    let (status, listed) = served.get_as(&viewer, "/v1/workflows");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["workflows"][0]["name"], workflow, "{listed}");

    // A viewer may not start runs; a runner may.
    let body = json!({"workflow": workflow, "input": refund_input(40.0)});
    let (status, refused) = served.post_as(&viewer, "/v1/runs", &body);
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("forbidden")), "{refused}");
    let key = [("idempotency-key", "order-A-1")];
    let (status, created) = served.call("POST", "/v1/runs", Some(&runner), Some(&body.to_string()), &key);
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    let view = served.wait_status(&viewer, &run, "completed", Duration::from_secs(60));
    assert_eq!(view["output"]["amount"], 40.0, "{view}");

    // The same key again: the same run, nothing new started, no second payment.
    let (status, again) = served.call("POST", "/v1/runs", Some(&runner), Some(&body.to_string()), &key);
    assert_eq!(status, 200, "{again}");
    assert_eq!((again["run_id"].as_str(), again["created"].as_bool()), (Some(run.as_str()), Some(false)));
    assert_eq!(again["status"], "completed");
    assert_eq!(r.ledger().lines().count(), 1, "one payment: {}", r.ledger());
    let (_, runs) = served.get_as(&viewer, "/v1/runs");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");

    // Who asked, and with which key, is journaled with the run's start.
    let started = &events(&r.db, &run)[0];
    assert_eq!(started["origin"], json!({"via": "api", "by": "ci-bot", "key": "order-A-1"}), "{started}");
    assert_eq!(started["identity"], "support-bot", "the run acts as the workflow's identity");

    // Bad input: a clear error, nothing started.
    let bad: [(&str, u16, &str, Option<&str>); 4] = [
        (r#"{"workflow": "nope"}"#, 404, "unknown_workflow", None),
        (r#"{"workflow": "#, 400, "invalid_request", Some("body")),
        (r#"{"workflow": "x", "inputs": {}}"#, 400, "invalid_request", Some("body")),
        (r#"{"input": {}}"#, 400, "invalid_request", Some("body")),
    ];
    for (text, status, code, field) in bad {
        let (s, body) = served.call("POST", "/v1/runs", Some(&runner), Some(text), &[]);
        assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)), "{text}: {body}");
        assert_eq!(body["error"]["field"].as_str(), field, "{text}: {body}");
    }
    let huge = json!({"workflow": workflow, "input": {"pad": "x".repeat(2 << 20)}}).to_string();
    let (s, body) = served.call("POST", "/v1/runs", Some(&runner), Some(&huge), &[]);
    assert_eq!((s, body["error"]["code"].as_str()), (413, Some("too_large")), "{body}");
    let (s, body) =
        served.call("POST", "/v1/runs", Some(&runner), Some(&body_text(workflow)), &[("idempotency-key", "")]);
    assert_eq!((s, body["error"]["field"].as_str()), (400, Some("Idempotency-Key")), "{body}");
    let (_, runs) = served.get_as(&viewer, "/v1/runs");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "nothing started by bad input: {runs}");
}

fn body_text(workflow: &str) -> String {
    json!({"workflow": workflow, "input": refund_input(10.0)}).to_string()
}

#[test]
fn two_approvers_decide_as_their_tokens_and_stale_or_unauthorized_decisions_are_refused() {
    let r = Refund::new("serve-dual", "false", POLICY);
    let runner = token(&r.db, "ci", "ci-bot", &["runner"]);
    let alice = token(&r.db, "alice", "alice", &["approver"]);
    let bob = token(&r.db, "bob", "bob", &["approver"]);
    let intern = token(&r.db, "intern", "intern", &["approver"]);
    let viewer = token(&r.db, "dash", "vera", &["viewer"]);
    let dir = r.dir.display().to_string();
    let served = Served::start(&r.db, &["--workflows", &dir]);

    // 2000 is a large payment: two different approvers must agree.
    let body = json!({"workflow": "refund-serve-dual", "input": refund_input(2000.0)});
    let (status, created) = served.post_as(&runner, "/v1/runs", &body);
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    served.wait_status(&viewer, &run, "waiting", Duration::from_secs(60));
    let (_, pending) = served.get_as(&viewer, "/v1/approvals");
    let request = pending["approvals"][0].clone();
    assert_eq!(request["gate"], "large-payment", "{pending}");
    let path = request["decide"].as_str().unwrap().to_string();
    assert_eq!(path, format!("/v1/approvals/{}/decision", request["id"].as_str().unwrap().replace('/', "%2F")));
    let version = request["version"].as_u64().unwrap();

    let approve = |v: u64| json!({"decision": "approve", "comment": "checked", "version": v});
    let (status, body) = served.post_as(&viewer, &path, &approve(version));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "a viewer: {body}");
    let (status, body) = served.post_as(&intern, &path, &approve(version));
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("not_approver")), "{body}");
    let (status, body) = served.post_as(&alice, &path, &json!({"decision": "maybe"}));
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("decision")), "{body}");

    let (status, first) = served.post_as(&alice, &path, &approve(version));
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["settled"].as_bool(), first["by"].as_str()), (Some(false), Some("alice")), "{first}");
    let (status, body) = served.post_as(&alice, &path, &approve(version));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("stale_decision")), "{body}");
    let (_, pending) = served.get_as(&viewer, "/v1/approvals");
    let now = pending["approvals"][0]["version"].as_u64().unwrap();
    assert!(now > version, "{pending}");
    let (status, body) = served.post_as(&alice, &path, &approve(now));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("already_approved")), "{body}");
    // Bob saw the request before Alice approved: refused, nothing journaled.
    let (status, body) = served.post_as(&bob, &path, &approve(version));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("stale_decision")), "{body}");
    assert_eq!(of_type(&events(&r.db, &run), "approval_decided").len(), 1);

    let (status, second) = served.post_as(&bob, &path, &approve(now));
    assert_eq!(status, 200, "{second}");
    assert_eq!((second["settled"].as_bool(), second["continues"].as_bool()), (Some(true), Some(true)), "{second}");
    served.wait_status(&viewer, &run, "completed", Duration::from_secs(60));
    let decided: Vec<String> = of_type(&events(&r.db, &run), "approval_decided")
        .iter()
        .map(|e| e["by"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(decided, ["alice", "bob"]);
    assert_eq!(r.ledger().lines().count(), 1, "paid once: {}", r.ledger());
    let (status, body) = served.post_as(&bob, &path, &approve(now));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("already_decided")), "{body}");

    // The gates' records: the large-payment gate decided once, the refund gate never.
    let (status, gates) = served.get_as(&viewer, "/v1/gates?workflow=refund-serve-dual");
    assert_eq!(status, 200, "{gates}");
    let gate = |name: &str| gates["gates"].as_array().unwrap().iter().find(|g| g["gate"] == name).cloned().unwrap();
    let large = gate("large-payment");
    assert_eq!((large["spec"]["approvals"].as_u64(), large["records"][0]["decisions"].as_u64()), (Some(2), Some(1)));
    assert_eq!(large["records"][0]["override_rate"], 0.0);
    assert_eq!(large["records"][0]["relaxed"], false);
    assert_eq!(gate("refund")["records"][0]["decisions"], 0);

    // What happened shows in /metrics, with no run id among the labels.
    let (status, text) = served.get_as(&viewer, "/metrics");
    assert_eq!(status, 200, "{text}");
    let text = text.as_str().unwrap().to_string();
    for expected in [
        "tether_runs_ended_total{workflow=\"refund-serve-dual\",outcome=\"waiting\"} 1",
        "tether_runs_ended_total{workflow=\"refund-serve-dual\",outcome=\"completed\"} 1",
        "tether_approval_decisions_total{gate=\"large-payment\",decision=\"approve\"} 2",
        "tether_step_duration_seconds_count{workflow=\"refund-serve-dual\"} 2",
        "tether_runs{status=\"completed\"} 1",
        "tether_runs{status=\"waiting\"} 0",
        "tether_approvals_pending 0",
        "tether_gate_decisions{gate=\"large-payment\"} 1",
        "tether_gate_override_ratio{gate=\"large-payment\"} 0.0",
    ] {
        assert!(text.lines().any(|l| l == expected), "no `{expected}` in:\n{text}");
    }
    assert!(!text.contains("run_"), "a run id is a label:\n{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(value.parse::<f64>().is_ok() && series.starts_with("tether_"), "not a sample: {line}");
    }
    let (status, _) = served.get("/metrics");
    assert_eq!(status, 401);
}

#[test]
fn the_server_fires_an_approval_deadline_with_nobody_sweeping_and_cancels_a_run_as_its_operator() {
    let policy = POLICY.replace("[gates.refund]\napprovals = 1", "[gates.refund]\napprovals = 1\ndeadline = \"2s\"");
    let r = Refund::new("serve-deadline", "output.amount > 100.0", &policy);
    let ops = token(&r.db, "ops", "olga", &["operator"]);
    let dir = r.dir.display().to_string();
    let served = Served::start(&r.db, &["--workflows", &dir]);
    let body = json!({"workflow": "refund-serve-deadline", "input": refund_input(500.0)});
    let (status, created) = served.post_as(&ops, "/v1/runs", &body);
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    served.wait_status(&ops, &run, "waiting", Duration::from_secs(60));
    // Nobody decides; the gate's default (reject) is taken by the server at the deadline.
    let view = served.wait_status(&ops, &run, "failed", Duration::from_secs(30));
    let journal = events(&r.db, &run);
    let decided = of_type(&journal, "approval_decided").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(
        (decided[0]["by"].as_str(), decided[0]["decision"].as_str()),
        (Some("deadline"), Some("reject")),
        "{view}"
    );
    assert!(r.ledger().is_empty());
    // Fired on time by the server itself, not found later by a periodic scan.
    let deadline_us = of_type(&journal, "approval_requested")[0]["deadline_us"].as_u64().unwrap();
    let late_us = decided[0]["at_us"].as_u64().unwrap().saturating_sub(deadline_us);
    assert!(late_us < 2_000_000, "the deadline was taken {late_us} µs late");

    // A second run, cancelled while it waits: journaled as the operator, then undone.
    let (_, created) = served.post_as(&ops, "/v1/runs", &body);
    let run = created["run_id"].as_str().unwrap().to_string();
    served.wait_status(&ops, &run, "waiting", Duration::from_secs(60));
    let (status, cancelled) = served.post_as(&ops, &format!("/v1/runs/{run}/cancel"), &json!({"reason": "duplicate"}));
    assert_eq!(status, 202, "{cancelled}");
    served.wait_status(&ops, &run, "cancelled", Duration::from_secs(30));
    let cancel = of_type(&events(&r.db, &run), "run_cancelled").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!((cancel[0]["by"].as_str(), cancel[0]["reason"].as_str()), (Some("olga"), Some("duplicate")));
    let (status, body) = served.post_as(&ops, &format!("/v1/runs/{run}/cancel"), &json!({}));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("run_ended")), "{body}");
}

#[test]
fn every_role_reaches_exactly_the_endpoints_it_is_allowed() {
    let r = Refund::new("serve-roles", "false", POLICY);
    let dir = r.dir.display().to_string();
    let mut tokens = Vec::new();
    for role in ["viewer", "runner", "approver", "operator", "admin"] {
        tokens.push((role, token(&r.db, role, "alice", &[role])));
    }
    let revoked = token(&r.db, "gone", "alice", &["admin"]);
    let o = crate::support::tether_cmd(&r.db).args(["token", "revoke", "gone"]).output().unwrap();
    assert!(o.status.success(), "{}", crate::support::output(&o));
    let expired = {
        let o = crate::support::tether_cmd(&r.db)
            .args(["token", "create", "old", "--identity", "alice", "--role", "admin", "--expires-in", "1ms"])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let (_, list) = tether_json(&r.db, &["token", "list", "--json"]);
    let names: Vec<&str> = list["tokens"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "approver", "gone", "old", "operator", "runner", "viewer"]);
    assert!(!list.to_string().contains("tether_"), "no token value is ever listed: {list}");

    let served = Served::start(&r.db, &["--workflows", &dir]);
    let start = json!({"workflow": "refund-serve-roles", "input": refund_input(5.0)}).to_string();
    let decision = json!({"decision": "approve"}).to_string();
    // (method, path, body, the weakest role allowed)
    let endpoints: [(&str, &str, Option<&str>, &str); 10] = [
        ("GET", "/v1/runs", None, "viewer"),
        ("GET", "/v1/runs/run_none", None, "viewer"),
        ("GET", "/v1/runs/run_none/events", None, "viewer"),
        ("GET", "/v1/approvals", None, "viewer"),
        ("GET", "/v1/stats", None, "viewer"),
        ("GET", "/v1/workflows", None, "viewer"),
        ("POST", "/v1/runs", Some(&start), "runner"),
        ("POST", "/v1/approvals/run_none:x/decision", Some(&decision), "approver"),
        ("POST", "/v1/runs/run_none/cancel", Some("{}"), "operator"),
        ("POST", "/v1/runs/run_none/resume", Some("{}"), "operator"),
    ];
    let allows = |held: &str, needed: &str| {
        held == "admin" || needed == "viewer" || held == needed || (held == "operator" && needed != "admin")
    };
    for (method, path, body, needed) in endpoints {
        for (role, token) in &tokens {
            let (status, answer) = served.call(method, path, Some(token), body, &[]);
            if allows(role, needed) {
                assert!(![401, 403, 500].contains(&status), "{role} {method} {path}: {status} {answer}");
            } else {
                assert_eq!(
                    (status, answer["error"]["code"].as_str()),
                    (403, Some("forbidden")),
                    "{role} {method} {path}"
                );
            }
        }
        for (who, bad) in [("no token", None), ("revoked", Some(revoked.as_str())), ("expired", Some(expired.as_str()))]
        {
            let (status, answer) = served.call(method, path, bad, body, &[]);
            assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthenticated")), "{who} {path}");
        }
    }
}

fn flaky_workflow(dir: &std::path::Path) {
    flaky_workflow_with(dir, "2s");
}

fn flaky_workflow_with(dir: &std::path::Path, backoff: &str) {
    std::fs::create_dir_all(dir.join("ledger")).unwrap();
    let text = format!(
        "name = \"flaky\"\n[tools.ledger]\ncomponent = {:?}\ndirs = [{{ host = \"ledger\", guest = \"/ledger\", write = true }}]\n\
         [[steps]]\nname = \"call-upstream\"\ncomponent = {:?}\ntools = [\"ledger\"]\n\
         retry = {{ max_attempts = 3, initial_backoff = {backoff:?}, jitter = 0.0 }}\n",
        artifacts::LEDGER_TOOL,
        artifacts::FLAKY_STEP
    );
    std::fs::write(dir.join("flaky.toml"), text).unwrap();
}

#[test]
fn a_server_killed_with_runs_in_backoff_is_restarted_and_every_run_completes_on_time_once() {
    let dir = fresh_dir("serve-kill");
    let db = dir.join("journal.db");
    flaky_workflow(&dir);
    let runner = token(&db, "ci", "ci-bot", &["runner"]);
    let workflows = dir.display().to_string();
    let mut served = Served::start(&db, &["--workflows", &workflows]);
    let mut runs = Vec::new();
    for _ in 0..3 {
        let (status, created) =
            served.post_as(&runner, "/v1/runs", &json!({"workflow": "flaky", "input": {"succeed_on": 2}}));
        assert_eq!(status, 201, "{created}");
        runs.push(created["run_id"].as_str().unwrap().to_string());
    }
    // Every run failed its first attempt and waits out its backoff in the server: kill it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !runs.iter().all(|run| !of_type(&events(&db, run), "retry_scheduled").is_empty()) {
        assert!(std::time::Instant::now() < deadline, "no backoff began:\n{}", served.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    served.kill();

    // Restarted, the server takes every interrupted run over by itself.
    let mut served = Served::start(&db, &["--workflows", &workflows]);
    for run in &runs {
        let view = served.wait_status(&runner, run, "completed", Duration::from_secs(60));
        assert_eq!(view["output"]["succeeded_on_try"], 2, "{view}");
        let events = events(&db, run);
        let scheduled = of_type(&events, "retry_scheduled")[0]["not_before_us"].as_u64().unwrap();
        let attempts = of_type(&events, "step_attempt_started");
        assert_eq!(attempts.len(), 2, "one attempt after the restart: {events:?}");
        assert!(attempts[1]["at_us"].as_u64().unwrap() >= scheduled, "attempt 2 ran before its backoff ended");
        assert_eq!(of_type(&events, "run_resumed").len(), 1);
        let (code, verified) = tether_json(&db, &["verify", run, "--json"]);
        assert_eq!(code, Some(0), "{verified}");
    }
    assert!(served.log().contains("taking it over"), "{}", served.log());
    // Each run's effect happened once, though its host was killed and another took it over.
    let effects = std::fs::read_to_string(dir.join("ledger/effects.log")).unwrap();
    for run in &runs {
        assert_eq!(effects.lines().filter(|l| l.contains(run.as_str())).count(), 1, "{run}: {effects}");
    }
    assert_eq!(effects.lines().count(), runs.len(), "{effects}");
    assert_eq!(served.terminate(Duration::from_secs(30)), Some(0));
    assert!(served.log().contains("stopped:"), "{}", served.log());
}

#[test]
fn sigterm_stops_at_once_during_a_backoff_and_the_next_start_finishes_the_run() {
    let dir = fresh_dir("serve-drain");
    let db = dir.join("journal.db");
    flaky_workflow_with(&dir, "4s");
    let runner = token(&db, "ci", "ci-bot", &["runner"]);
    let workflows = dir.display().to_string();
    let mut served = Served::start(&db, &["--workflows", &workflows]);
    let (status, created) =
        served.post_as(&runner, "/v1/runs", &json!({"workflow": "flaky", "input": {"succeed_on": 2}}));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while of_type(&events(&db, &run), "retry_scheduled").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no backoff began:\n{}", served.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // A backoff is not an attempt: the server stops at once, starting nothing new.
    let asked = std::time::Instant::now();
    assert_eq!(served.terminate(Duration::from_secs(30)), Some(0));
    assert!(asked.elapsed() < Duration::from_secs(3), "the stop waited for the backoff: {:?}", asked.elapsed());
    assert!(served.log().contains("1 run(s) settled, 0 interrupted"), "{}", served.log());
    let events_now = events(&db, &run);
    assert_eq!(of_type(&events_now, "step_attempt_started").len(), 1, "no attempt began during the stop");
    let (_, runs) = tether_json(&db, &["runs", "--json"]);
    assert_eq!(runs[0]["status"], "running", "left for the next start: {runs}");

    let served = Served::start(&db, &["--workflows", &workflows]);
    // Followed live as server-sent events until the run ends, from where a reconnecting
    // client left off (`Last-Event-ID`).
    let accept = [("accept", "text/event-stream"), ("last-event-id", "1")];
    let (status, stream) = served.call("GET", &format!("/v1/runs/{run}/events"), Some(&runner), None, &accept);
    assert_eq!(status, 200, "{stream}");
    let stream = stream.as_str().unwrap().to_string();
    let ids: Vec<u64> = stream.lines().filter_map(|l| l.strip_prefix("id: ")).map(|i| i.parse().unwrap()).collect();
    let kinds: Vec<&str> = stream.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    let view = served.wait_status(&runner, &run, "completed", Duration::from_secs(60));
    assert_eq!(view["output"]["succeeded_on_try"], 2, "{view}");
    let events = events(&db, &run);
    let all: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).filter(|s| *s > 1).collect();
    assert_eq!(ids, all, "every event after the first, once, in order:\n{stream}");
    assert_eq!(kinds.last(), Some(&"end"), "{stream}");
    assert!(kinds.contains(&"run_resumed") && kinds.contains(&"run_completed"), "{stream}");
    assert!(stream.contains(r#""status":"completed""#), "{stream}");
    let not_before = of_type(&events, "retry_scheduled")[0]["not_before_us"].as_u64().unwrap();
    assert!(of_type(&events, "step_attempt_started")[1]["at_us"].as_u64().unwrap() >= not_before);
}

#[test]
fn an_operator_deploys_a_plugin_over_the_api_and_others_may_only_list_it() {
    let dir = fresh_dir("serve-plugins");
    let db = dir.join("journal.db");
    let ops = token(&db, "ops", "olga", &["operator"]);
    let runner = token(&db, "ci", "ci-bot", &["runner"]);
    let served = Served::start(&db, &[]);
    let wasm = std::fs::read(artifacts::TRIVIAL).unwrap();
    let wasm_type = [("content-type", "application/wasm")];
    let path = "/v1/plugins?name=trivial&version=1.0.0";
    let (status, body) = served.send("POST", path, Some(&runner), Some(&wasm), &wasm_type);
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, deployed) = served.send("POST", path, Some(&ops), Some(&wasm), &wasm_type);
    assert_eq!(status, 201, "{deployed}");
    assert_eq!(deployed["plugin"]["world"], "step-plugin", "{deployed}");
    let (status, again) = served.send("POST", path, Some(&ops), Some(&wasm), &wasm_type);
    assert_eq!(status, 200, "the same component again changes nothing: {again}");
    let (status, bad) =
        served.send("POST", "/v1/plugins?name=junk&version=1.0.0", Some(&ops), Some(b"\0asm junk"), &wasm_type);
    assert_eq!((status, bad["error"]["code"].as_str()), (400, Some("invalid_request")), "{bad}");
    let (status, listed) = served.get_as(&runner, "/v1/plugins");
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["trivial"]);
    let (_, cli) = tether_json(&db, &["plugin", "list", "--json"]);
    assert_eq!(cli[0]["digest"], listed["plugins"][0]["digest"], "{cli}");

    // A deployed step plugin runs as a one-step workflow.
    let (status, created) = served.post_as(&runner, "/v1/runs", &json!({"plugin": "trivial@1.0.0", "input": {"x": 1}}));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    let view = served.wait_status(&runner, &run, "completed", Duration::from_secs(60));
    assert_eq!(view["output"], json!({"x": 1}), "{view}");
    let (status, body) = served.post_as(&runner, "/v1/runs", &json!({"plugin": "trivial@9.9.9"}));
    assert_eq!(status, 400, "an unknown version: {body}");
    let (status, body) = served.post_as(&runner, "/v1/runs", &json!({"plugin": "trivial@1.0.0", "workflow": "x"}));
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("body")), "{body}");
    // Without a workflows directory there is nowhere to register a workflow.
    let workflow = "name = \"echo\"\n[[steps]]\nname = \"echo\"\ncomponent = \"trivial@1.0.0\"\n";
    let toml = [("content-type", "application/toml")];
    let (status, body) = served.send("POST", "/v1/workflows", Some(&ops), Some(workflow.as_bytes()), &toml);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("no_workflows_directory")), "{body}");
}

#[test]
fn an_operator_registers_a_workflow_over_the_api_and_it_outlives_a_restart() {
    let dir = fresh_dir("serve-register");
    let db = dir.join("journal.db");
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let ops = token(&db, "ops", "olga", &["operator"]);
    let runner = token(&db, "ci", "ci-bot", &["runner"]);
    let o = crate::support::tether_cmd(&db)
        .args(["plugin", "add", artifacts::TRIVIAL, "--name", "trivial", "--version", "1.0.0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", crate::support::output(&o));
    let workflows = dir.join("workflows").display().to_string();
    let mut served = Served::start(&db, &["--workflows", &workflows]);
    let toml = [("content-type", "application/toml")];
    let workflow = "name = \"echo\"\n[[steps]]\nname = \"first\"\ncomponent = \"trivial@1.0.0\"\n";
    let (status, body) = served.send("POST", "/v1/workflows", Some(&runner), Some(workflow.as_bytes()), &toml);
    assert_eq!(status, 403, "a runner may not register: {body}");
    for (bad, what) in [
        ("name = \"broken\"\n[[steps]]\nname = \"s\"\n", "a step without a component"),
        ("name = \"x\"\n[[steps]]\nname = \"s\"\ncomponent = \"absent@1.0.0\"\n", "a plugin not deployed"),
        ("not toml at all [", "not TOML"),
    ] {
        let (status, body) = served.send("POST", "/v1/workflows", Some(&ops), Some(bad.as_bytes()), &toml);
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{what}: {body}");
    }
    let (status, body) = served.send("POST", "/v1/workflows", Some(&ops), Some(workflow.as_bytes()), &toml);
    assert_eq!((status, body["replaced"].as_bool()), (201, Some(false)), "{body}");
    let (status, created) = served.post_as(&runner, "/v1/runs", &json!({"workflow": "echo", "input": {"n": 1}}));
    assert_eq!(status, 201, "{created}");
    let first = created["run_id"].as_str().unwrap().to_string();
    served.wait_status(&runner, &first, "completed", Duration::from_secs(60));

    // Replaced, then still there after a restart: the file is in the workflows directory.
    let second = workflow.replace("first", "second");
    let (status, body) = served.send("POST", "/v1/workflows", Some(&ops), Some(second.as_bytes()), &toml);
    assert_eq!((status, body["replaced"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(served.terminate(Duration::from_secs(30)), Some(0));
    let served = Served::start(&db, &["--workflows", &workflows]);
    let (_, listed) = served.get_as(&runner, "/v1/workflows");
    assert_eq!(listed["workflows"][0]["steps"], json!(["second"]), "{listed}");
    let (_, created) = served.post_as(&runner, "/v1/runs", &json!({"workflow": "echo", "input": {"n": 2}}));
    let run = created["run_id"].as_str().unwrap().to_string();
    served.wait_status(&runner, &run, "completed", Duration::from_secs(60));
    // The first run keeps the workflow it pinned.
    let started = &events(&db, &first)[0];
    assert_eq!(started["plan"]["steps"][0]["name"], "first", "{started}");
}

#[test]
fn a_run_executing_on_the_server_is_cancelled_through_the_api() {
    let dir = fresh_dir("serve-cancel-live");
    let db = dir.join("journal.db");
    flaky_workflow_with(&dir, "30s");
    let ops = token(&db, "ops", "olga", &["operator"]);
    let workflows = dir.display().to_string();
    let served = Served::start(&db, &["--workflows", &workflows]);
    let (status, created) = served.post_as(&ops, "/v1/runs", &json!({"workflow": "flaky", "input": {"succeed_on": 2}}));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while of_type(&events(&db, &run), "retry_scheduled").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no backoff began:\n{}", served.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server holds the run (in its 30 s backoff): the cancel is asked for, and the
    // run ends cancelled long before the backoff would have ended.
    let (status, body) = served.call("POST", &format!("/v1/runs/{run}/cancel"), Some(&ops), Some("not json"), &[]);
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("body")), "{body}");
    let (status, cancelled) =
        served.post_as(&ops, &format!("/v1/runs/{run}/cancel"), &json!({"reason": "customer withdrew"}));
    assert_eq!((status, cancelled["cancel"].as_str()), (202, Some("requested")), "{cancelled}");
    served.wait_status(&ops, &run, "cancelled", Duration::from_secs(10));
    let journal = events(&db, &run);
    let cancel = of_type(&journal, "run_cancelled");
    assert_eq!((cancel[0]["by"].as_str(), cancel[0]["reason"].as_str()), (Some("olga"), Some("customer withdrew")));
    assert_eq!(of_type(&journal, "step_attempt_started").len(), 1, "the retry never ran");
    let (code, verified) = tether_json(&db, &["verify", &run, "--json"]);
    assert_eq!(code, Some(0), "{verified}");
}

#[test]
fn a_paused_run_is_resumed_over_the_api_with_a_raise_journaled_as_the_operator() {
    let dir = fresh_dir("serve-resume");
    let db = dir.join("journal.db");
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let steps: String = (1..=3)
        .map(|k| {
            format!(
                "[[steps]]\nname = \"s{k}\"\ncomponent = {:?}\nbudget = {{ fuel = 100_000_000_000 }}\n",
                artifacts::HOSTILE
            )
        })
        .collect();
    let text = format!("name = \"budgeted\"\n[run]\nbudget = {{ usage = {{ tokens = 50 }} }}\n{steps}");
    std::fs::write(dir.join("workflows/budgeted.toml"), text).unwrap();
    let ops = token(&db, "ops", "olga", &["operator"]);
    let workflows = dir.join("workflows").display().to_string();
    let served = Served::start(&db, &["--workflows", &workflows]);
    let input = json!({"mode": "usage-flood", "n": 30});
    let (status, created) = served.post_as(&ops, "/v1/runs", &json!({"workflow": "budgeted", "input": input}));
    assert_eq!(status, 201, "{created}");
    let run = created["run_id"].as_str().unwrap().to_string();
    served.wait_status(&ops, &run, "paused", Duration::from_secs(60));

    let path = format!("/v1/runs/{run}/resume");
    let (status, body) = served.post_as(&ops, &path, &json!({"budget": {"fuel": 5}}));
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("budget")), "no fuel budget: {body}");
    let (status, body) = served.post_as(&ops, &path, &json!({"budget": {"tokens": -5}}));
    assert_eq!(status, 400, "{body}");
    let (status, resumed) = served.post_as(&ops, &path, &json!({"budget": {"tokens": 100}}));
    assert_eq!(status, 202, "{resumed}");
    served.wait_status(&ops, &run, "completed", Duration::from_secs(60));
    let journal = events(&db, &run);
    let raised = of_type(&journal, "budget_raised");
    assert_eq!(raised.len(), 1, "{journal:?}");
    assert_eq!((raised[0]["metric"].as_str(), raised[0]["by"].as_f64()), (Some("tokens"), Some(100.0)));
    assert_eq!(raised[0]["requested_by"], "olga", "who raised it is journaled");
    let (status, body) = served.post_as(&ops, &path, &json!({}));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("run_ended")), "{body}");
}
