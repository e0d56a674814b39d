//! Model calls and agent steps against a real OpenAI-compatible server on 127.0.0.1 with
//! scripted answers (tool calls, then an answer, with usage), through the real `tether`
//! executable: the agent loop's tool calls go through `call-tool`, every turn is
//! journaled, replay needs no server, and tokens are charged from the provider's count.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tether_tests::artifacts;

use crate::http_server::{Answer, Server};
use crate::support::{fresh_dir, tether_cmd};

const KEY: &str = "sk-test-model-7d1e";

/// A chat completion as a provider sends it.
fn completion(message: Value, finish: &str, (prompt, completion): (u32, u32)) -> Answer {
    Answer::json(
        200,
        &json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000u32, "model": "test-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }),
    )
}

fn tool_call(id: &str, name: &str, arguments: Value) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments.to_string()}})
}

/// The agent fixture with the echo tool, `step_extra` added to the step, a policy with
/// `[model]` at `server` and `policy_extra`, and `run_extra` (a `[run]` table) if any.
fn agent_workflow(
    name: &str,
    server: &Server,
    step_extra: &str,
    policy_extra: &str,
    run_extra: &str,
) -> (PathBuf, String) {
    let dir = fresh_dir(name);
    let wf = dir.join("wf.toml");
    std::fs::write(
        &wf,
        format!(
            "name = \"agent\"\npolicy_file = \"policy.toml\"\n{run_extra}\n[tools.echo]\ncomponent = {:?}\n[[steps]]\nname = \"agent\"\ncomponent = {:?}\ntools = [\"echo\"]\n{step_extra}\n",
            artifacts::ECHO_TOOL,
            artifacts::AGENT_STEP
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "[model]\nurl = \"{}\"\nkey = \"TEST_MODEL_KEY\"\nmodels = [\"test-model\", \"big-model\"]\nprices = {{ \"test-model\" = {{ input = 1.0, output = 2.0 }} }}\n{policy_extra}",
            server.url("/v1")
        ),
    )
    .unwrap();
    (dir.join("journal.db"), wf.display().to_string())
}

fn tether(db: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let o = tether_cmd(db).env("TEST_MODEL_KEY", KEY).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (o.status.code(), v, format!("{stdout}{}", String::from_utf8_lossy(&o.stderr)))
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[test]
fn an_agent_calls_its_tools_through_call_tool_answers_and_replays_without_the_model() {
    let server = Server::start();
    server.script(
        "/v1/chat/completions",
        vec![
            completion(json!({"role": "assistant", "content": null, "tool_calls": [tool_call("c1", "echo", json!({"order": 7}))]}), "tool_calls", (40, 10)),
            completion(json!({"role": "assistant", "content": "Order 7 is on its way."}), "stop", (60, 8)),
        ],
    );
    let (db, wf) = agent_workflow("model-agent", &server, "model = true", "", "");
    let input = json!({"system": "You help.", "user": "Where is order 7?", "tools": ["echo"]});
    let (code, report, out) = tether(&db, &["run", &wf, "--input", &input.to_string(), "--json"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["output"], json!({"answer": "Order 7 is on its way.", "calls": [["echo", true]], "turns": 2}));

    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].headers["authorization"], format!("Bearer {KEY}"));
    let first: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(first["model"], "test-model");
    assert_eq!(first["tools"][0]["function"]["name"], "echo", "the tool's describe() is the model's tool list");
    assert!(first["tools"][0]["function"]["description"].as_str().unwrap().starts_with("Echoes its input"));
    let second: Value = serde_json::from_slice(&received[1].body).unwrap();
    let messages = second["messages"].as_array().unwrap();
    let tool_message = messages.iter().find(|m| m["role"] == "tool").expect("the tool's result went back");
    assert_eq!(tool_message["tool_call_id"], "c1");
    assert_eq!(serde_json::from_str::<Value>(tool_message["content"].as_str().unwrap()).unwrap(), json!({"order": 7}));

    let run_id = report["run_id"].as_str().unwrap();
    let (_, events, _) = tether(&db, &["history", run_id, "--json"]);
    let events = events.as_array().unwrap();
    let calls = of_type(events, "model_called");
    assert_eq!(calls.len(), 2, "one event per model turn");
    assert_eq!(calls[0]["usage"]["tokens"], 50.0);
    assert_eq!(calls[1]["usage"]["cost_usd"], (60.0 * 1.0 + 8.0 * 2.0) / 1e6);
    assert_eq!(of_type(events, "tool_call_completed").len(), 1, "the model's tool call went through call-tool");
    assert_eq!(report["totals"]["usage"]["tokens"], 118.0);
    assert!(!serde_json::to_string(events).unwrap().contains(KEY), "the key is not in the journal");

    drop(server);
    let (code, _, out) = tether(&db, &["replay", run_id]);
    assert_eq!(code, Some(0), "replay with the model's server stopped: {out}");
}

#[test]
fn tokens_are_charged_from_the_providers_count_whatever_the_guest_reports() {
    let server = Server::start();
    server.route("/v1/chat/completions", completion(json!({"role": "assistant", "content": "ok"}), "stop", (300, 200)));
    let run = "[run]\nbudget = { usage = { tokens = 400 } }";
    let (db, wf) = agent_workflow("model-tokens", &server, "model = true", "", run);
    let input = json!({"user": "hi", "ask": {"max_tokens": 1000}, "report_tokens": 1.0});
    let (code, report, out) = tether(&db, &["run", &wf, "--input", &input.to_string(), "--json"]);
    // 500 tokens counted by the provider: past the run's 400, so the run pauses.
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(report["status"], "paused", "{report}");
    let sent: Value = serde_json::from_slice(&server.received()[0].body).unwrap();
    assert!(sent["max_completion_tokens"].as_u64().unwrap() <= 399, "max_tokens capped by the budget: {sent}");
}

#[test]
fn a_step_that_did_not_ask_or_an_identity_not_granted_cannot_call_the_model() {
    let server = Server::start();
    server.route("/v1/chat/completions", completion(json!({"role": "assistant", "content": "ok"}), "stop", (1, 1)));
    let ask = json!({"user": "hi", "ask": {}}).to_string();
    let (db, wf) = agent_workflow("model-not-asked", &server, "", "", "");
    let (code, report, out) = tether(&db, &["run", &wf, "--input", &ask, "--json"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(report["error"]["class"], "denied", "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("add `model = true`"), "{report}");

    let ids = "[identities.local]\ntools = [\"echo\"]\n";
    let (db, wf) = agent_workflow("model-not-granted", &server, "model = true", ids, "");
    let (code, report, out) = tether(&db, &["run", &wf, "--input", &ask, "--json"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        report["error"]["message"].as_str().unwrap().contains("identity `local` is not granted the model"),
        "{report}"
    );

    let big = json!({"user": "hi", "ask": {"model": "gpt-99"}}).to_string();
    let (db, wf) = agent_workflow("model-not-allowed", &server, "model = true", "", "");
    let (code, report, out) = tether(&db, &["run", &wf, "--input", &big, "--json"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(report["error"]["message"].as_str().unwrap().contains("allowed: test-model, big-model"), "{report}");
    assert!(server.received().is_empty(), "nothing reached the model");
}

#[test]
fn the_support_agent_example_runs_waits_for_the_refund_approval_and_replays() {
    let server = Server::start();
    server.script(
        "/v1/chat/completions",
        vec![
            completion(json!({"role": "assistant", "content": null, "tool_calls": [tool_call("a", "customer-lookup", json!({"email": "ada@example.com"}))]}), "tool_calls", (200, 20)),
            completion(json!({"role": "assistant", "content": null, "tool_calls": [tool_call("b", "kb-search", json!({"query": "refund damaged order"}))]}), "tool_calls", (300, 20)),
            completion(json!({"role": "assistant", "content": null, "tool_calls": [tool_call("c", "payments", json!({"order_id": "A-1042", "amount": 42.5}))]}), "tool_calls", (400, 20)),
            completion(json!({"role": "assistant", "content": "Sorry about the screen, Ada: 42.50 is on its way back to you."}), "stop", (500, 30)),
        ],
    );
    let root = tether_tests::repo_root().join("plugins/workflows");
    let wf = root.join("support-agent.toml").display().to_string();
    let input = format!("@{}", root.join("damaged-order.json").display());
    let db = fresh_dir("model-support-agent").join("journal.db");
    let env = |c: &mut std::process::Command| {
        c.env("TETHER_MODEL_URL", server.url("/v1"))
            .env("TETHER_MODEL_KEY", KEY)
            .env("PAYMENTS_URL", "https://pay.example/agent");
    };
    let mut run = tether_cmd(&db);
    env(&mut run);
    let o = run.args(["run", &wf, "--input", &input, "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(
        o.status.code(),
        Some(3),
        "the refund waits for a person: {report} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(server.received().len(), 3, "three model turns before the refund");
    let run_id = report["run_id"].as_str().unwrap().to_string();

    let mut approve = tether_cmd(&db);
    env(&mut approve);
    let o = approve.args(["approve", &run_id, "refund", "--as", "alice", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(o.status.code(), Some(0), "{report} {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report["output"]["reply"], "Sorry about the screen, Ada: 42.50 is on its way back to you.");
    let actions: Vec<&str> =
        report["output"]["actions"].as_array().unwrap().iter().map(|a| a["tool"].as_str().unwrap()).collect();
    assert_eq!(actions, ["customer-lookup", "kb-search", "payments"]);
    assert!(report["output"]["actions"].as_array().unwrap().iter().all(|a| a["ok"] == true), "{report}");
    assert_eq!(
        server.received().len(),
        4,
        "the turns before the approval were served from the journal, not asked again"
    );
    assert_eq!(report["totals"]["usage"]["tokens"], 1490.0);

    let (_, events, _) = tether(&db, &["history", &run_id, "--json"]);
    let events = events.as_array().unwrap();
    assert_eq!(of_type(events, "model_called").len(), 4);
    assert_eq!(of_type(events, "approval_decided").len(), 1);
    let paid = of_type(events, "tool_call_completed").into_iter().filter(|e| e["tool"] == "payments").count();
    assert_eq!(paid, 1, "paid once");

    drop(server);
    let (code, _, out) = tether(&db, &["replay", &run_id]);
    assert_eq!(code, Some(0), "the whole agent run replays without the model: {out}");
}

/// The support agent's model for the crash test: each answer follows from the
/// conversation it is sent (how many turns it already holds), so a request sent again
/// after a kill gets the same answer.
fn scripted_support_model() -> Server {
    let server = Server::start();
    let turns = [
        completion(
            json!({"role": "assistant", "content": null, "tool_calls": [tool_call("a", "customer-lookup", json!({"email": "ada@example.com"}))]}),
            "tool_calls",
            (200, 20),
        ),
        completion(
            json!({"role": "assistant", "content": null, "tool_calls": [tool_call("b", "kb-search", json!({"query": "refund damaged order"}))]}),
            "tool_calls",
            (300, 20),
        ),
        completion(
            json!({"role": "assistant", "content": null, "tool_calls": [tool_call("c", "payments", json!({"order_id": "A-1042", "amount": 42.5}))]}),
            "tool_calls",
            (400, 20),
        ),
        completion(json!({"role": "assistant", "content": "Refunded 42.50."}), "stop", (500, 30)),
    ];
    server.respond("/v1/chat/completions", move |r| {
        let request: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let done = request["messages"].as_array().map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
        turns[done.min(turns.len() - 1)].clone()
    });
    server
}

#[test]
fn the_support_agent_killed_anywhere_pays_once_answers_the_same_and_replays() {
    use crate::chaos::{env_u64, kill_after, seed, Rng};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let server = scripted_support_model();
    let root = tether_tests::repo_root().join("plugins/workflows");
    let wf = root.join("support-agent.toml").display().to_string();
    let input = format!("@{}", root.join("damaged-order.json").display());
    let db = fresh_dir("model-support-agent-crash").join("journal.db");
    let url = server.url("/v1");
    let cmd = |args: &[&str]| {
        let mut c = tether_cmd(&db);
        c.env("TETHER_MODEL_URL", &url).env("TETHER_MODEL_KEY", KEY).env("PAYMENTS_URL", "https://pay.example/agent");
        c.args(args);
        c
    };
    let seed = seed();
    let runs = env_u64("TETHER_AGENT_CRASH_RUNS").unwrap_or(8);
    eprintln!("agent crash: seed {seed}, {runs} killed runs (reproduce with TETHER_CRASH_SEED={seed})");
    let mut rng = Rng(seed);

    // Crash-free: the time to the gate and from the approval to the end, and the answer.
    let started = Instant::now();
    let o = cmd(&["run", &wf, "--input", &input, "--run-id", "run_agent-reference", "--json"]).output().unwrap();
    let to_gate = started.elapsed();
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let started = Instant::now();
    let o = cmd(&["approve", "run_agent-reference", "refund", "--as", "alice", "--json"]).output().unwrap();
    let to_end = started.elapsed();
    let reference: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(reference["status"], "completed", "{reference}");
    let gate_ms = (to_gate.as_millis() as u64 * 3 / 2).max(20);
    let end_ms = (to_end.as_millis() as u64 * 3 / 2).max(20);

    let mut ids = vec!["run_agent-reference".to_string()];
    let (mut kills, mut landed) = (0, 0);
    for i in 0..runs {
        let run = format!("run_agent-{seed}-{i}");
        let child = cmd(&["run", &wf, "--input", &input, "--run-id", &run, "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        landed += u32::from(kill_after(child, Duration::from_millis(rng.below(gate_ms))));
        kills += 1;
        let mut report = Value::Null;
        for attempt in 0.. {
            assert!(attempt < 30, "run {run} (seed {seed}) did not end");
            // To the gate (or the end): resume, sometimes killed; submit again if the
            // run never became durable.
            let o = cmd(&["resume", &run, "--json"]).output().unwrap();
            let code = o.status.code();
            if code == Some(2) && String::from_utf8_lossy(&o.stderr).contains("unknown run") {
                let o = cmd(&["run", &wf, "--input", &input, "--run-id", &run, "--json"]).output().unwrap();
                assert_eq!(o.status.code(), Some(3), "resubmitting {run}: {}", String::from_utf8_lossy(&o.stderr));
            } else if code == Some(0) {
                report = serde_json::from_slice(&o.stdout).unwrap();
                break;
            } else {
                assert_eq!(code, Some(3), "resume {run} (seed {seed}): {}", String::from_utf8_lossy(&o.stderr));
            }
            // Waiting at the gate: approve, sometimes killed while it continues the run.
            if rng.below(2) == 0 {
                let child = cmd(&["approve", &run, "refund", "--as", "alice"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                landed += u32::from(kill_after(child, Duration::from_millis(rng.below(end_ms))));
                kills += 1;
                continue;
            }
            let o = cmd(&["approve", &run, "refund", "--as", "alice", "--json"]).output().unwrap();
            match o.status.code() {
                Some(0) => {
                    report = serde_json::from_slice(&o.stdout).unwrap();
                    break;
                }
                Some(2) if String::from_utf8_lossy(&o.stderr).contains("already decided") => {}
                other => panic!("approve {run} exited {other:?} (seed {seed}): {}", String::from_utf8_lossy(&o.stderr)),
            }
        }
        assert_eq!(report["status"], "completed", "run {run} (seed {seed}): {report}");
        assert_eq!(report["output"], reference["output"], "run {run} (seed {seed})");
        ids.push(run);
    }
    let ledger = std::fs::read_to_string(root.join("support-ledger/refunds.log")).unwrap_or_default();
    for run in &ids {
        let paid = ledger.lines().filter(|l| l.starts_with(&format!("{run}/"))).count();
        assert_eq!(paid, 1, "run {run} (seed {seed}) paid {paid} times");
        let (code, _, out) = tether(&db, &["replay", run]);
        assert_eq!(code, Some(0), "replay {run} (seed {seed}): {out}");
    }
    eprintln!(
        "agent crash: {} runs, {kills} kills ({landed} while running); every run paid once and replays",
        ids.len()
    );
}

const MODEL_RULES: &str = "[identities.local]\ntools = [\"echo\"]\nmodel = true\n\n[identities.alice]\napproves = [\"models\"]\n\n[gates.models]\napprovals = 1\n\n[[rules]]\nname = \"big-needs-a-person\"\non = \"model_call\"\nwhen = \"model == 'big-model'\"\nverdict = \"require_approval\"\ngate = \"models\"\n\n[[rules]]\nname = \"no-echo-for-models\"\non = \"model_call\"\nwhen = \"'echo' in tools\"\nverdict = \"deny\"\n";

#[test]
fn model_call_rules_deny_a_call_or_make_it_wait_for_a_person() {
    let server = Server::start();
    server.route("/v1/chat/completions", completion(json!({"role": "assistant", "content": "ok"}), "stop", (3, 1)));
    let (db, wf) = agent_workflow("model-rules", &server, "model = true", MODEL_RULES, "");
    let denied = json!({"user": "hi", "tools": ["echo"]}).to_string();
    let (code, report, out) = tether(&db, &["run", &wf, "--input", &denied, "--json"]);
    assert_eq!(code, Some(1), "{out}");
    let msg = report["error"]["message"].as_str().unwrap();
    assert!(msg.contains("denied by rule `no-echo-for-models` at the `model_call` checkpoint"), "{report}");
    assert!(server.received().is_empty());

    let big = json!({"user": "hi", "ask": {"model": "big-model"}}).to_string();
    let (code, report, out) = tether(&db, &["run", &wf, "--input", &big, "--run-id", "run_big-model", "--json"]);
    assert_eq!(code, Some(3), "the call waits for a person: {out}");
    assert_eq!(report["status"], "waiting");
    assert!(server.received().is_empty(), "nothing reached the model before the approval");
    let (code, report, out) = tether(&db, &["approve", "run_big-model", "models", "--as", "alice", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["output"]["answer"], "ok");
    assert_eq!(server.received().len(), 1);
}
