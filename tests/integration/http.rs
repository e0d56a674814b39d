//! Outbound HTTP from a real component, through the real `tether` executable and a real
//! server on 127.0.0.1: grants (host, port, scheme, method, path), the address check on
//! resolved names, redirects, budgets, the journal, resume after a kill in the middle of
//! a request, and replay with no network at all.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_tests::artifacts;

use crate::http_server::{Answer, Server};
use crate::support::{fresh_dir, tether_cmd, tether_json};

/// A one-step workflow over the HTTP fixture with `http` as the step's grants (TOML array
/// body) and `budget` as its budget (inline table body); returns (journal, workflow).
fn http_workflow(name: &str, http: &str, budget: &str) -> (PathBuf, String) {
    let dir = fresh_dir(name);
    let wf = dir.join("wf.toml");
    std::fs::write(
        &wf,
        format!(
            "name = \"http\"\n[[steps]]\nname = \"fetch\"\ncomponent = {:?}\nhttp = [{http}]\nbudget = {{ {budget} }}\n",
            artifacts::HTTP_STEP
        ),
    )
    .unwrap();
    (dir.join("journal.db"), wf.display().to_string())
}

fn run(db: &Path, wf: &str, input: Value) -> (Option<i32>, Value) {
    tether_json(db, &["run", wf, "--input", &input.to_string(), "--json"])
}

fn history(db: &Path, run: &str) -> Vec<Value> {
    let (_, events) = tether_json(db, &["history", run, "--json"]);
    events.as_array().unwrap().clone()
}

fn exchanges(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["type"] == "http_exchanged").collect()
}

fn get(url: &str) -> Value {
    json!({"method": "GET", "url": url})
}

#[test]
fn a_granted_request_is_answered_journaled_once_and_replayed_without_the_network() {
    let server = Server::start();
    server.route("/v1/customers/42", Answer::json(200, &json!({"plan": "pro"})));
    let (db, wf) = http_workflow("http-granted", &format!("\"{}\"", server.url("")), "");
    let (code, report) = run(&db, &wf, json!({"requests": [get(&server.url("/v1/customers/42?x=1"))]}));
    assert_eq!(code, Some(0), "{report}");
    let answer = &report["output"]["answers"][0];
    assert_eq!(answer["status"], 200, "{report}");
    assert_eq!(answer["body"], json!({"plan": "pro"}).to_string());
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v1/customers/42?x=1");
    assert_eq!(received[0].headers["host"], format!("127.0.0.1:{}", server.port));

    let run_id = report["run_id"].as_str().unwrap();
    let events = history(&db, run_id);
    let ex = exchanges(&events);
    assert_eq!(ex.len(), 1, "one event per exchange");
    assert_eq!(ex[0]["request"]["method"], "GET");
    assert_eq!(ex[0]["request"]["url"], server.url("/v1/customers/42?x=1"));
    assert_eq!(ex[0]["outcome"], "answer");
    assert_eq!(ex[0]["status"], 200);
    assert_eq!(ex[0]["body"]["text"], json!({"plan": "pro"}).to_string());

    // Replay serves the answer: nothing reaches the server, and with the server gone
    // the run still replays exactly.
    let o = tether_cmd(&db).args(["replay", run_id]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server.received().len(), 1, "replay made a request");
    drop(server);
    let o = tether_cmd(&db).args(["replay", run_id]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "replay with the server stopped: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn requests_no_grant_allows_are_refused_and_the_refusal_names_the_grant_to_add() {
    let server = Server::start();
    server.route("/v1/ok", Answer::json(200, &json!({})));
    let other = Server::start();
    let grant = format!("{{ url = \"{}\", methods = [\"GET\"], path = \"/v1\" }}", server.url(""));
    let (db, wf) = http_workflow("http-refused", &grant, "");
    let https = format!("https://127.0.0.1:{}/v1/ok", server.port);
    let requests = json!([
        get(&server.url("/v1/ok")),
        {"method": "POST", "url": server.url("/v1/ok")},
        get(&server.url("/v10")),
        get(&server.url("/admin")),
        get(&other.url("/v1/ok")),
        get(&https),
        get("http://example.invalid/v1/ok"),
        get(&server.url("/v1/../admin")),
        {"method": "GET", "url": server.url("/v1/ok"), "headers": [["X-HTTP-Method-Override", "DELETE"]]},
    ]);
    let (code, report) = run(&db, &wf, json!({ "requests": requests }));
    assert_eq!(code, Some(0), "{report}");
    let answers = report["output"]["answers"].as_array().unwrap();
    assert_eq!(answers[0]["status"], 200, "{report}");
    for (i, a) in answers.iter().enumerate().skip(1) {
        assert_eq!(a["kind"], "Denied", "request {i}: {a}");
    }
    assert_eq!(server.received().len(), 1, "only the granted request reached the server");
    assert!(other.received().is_empty());

    let events = history(&db, report["run_id"].as_str().unwrap());
    let ex = exchanges(&events);
    assert_eq!(ex.len(), 9);
    assert!(ex[7]["message"].as_str().unwrap().contains("`..` segments"), "{}", ex[7]);
    assert!(ex[8]["message"].as_str().unwrap().contains("x-http-method-override"), "{}", ex[8]);
    let post = &ex[1];
    assert_eq!(post["outcome"], "failed");
    assert_eq!(post["error"], "denied");
    let msg = post["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("POST {}/v1/ok is not among the requests step `fetch` asks for", server.url(""))),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("add http = [{{ url = \"{}\", methods = [\"POST\"], path = \"/v1\" }}]", server.url(""))),
        "{msg}"
    );
    let other_port = ex[4]["message"].as_str().unwrap();
    assert!(other_port.contains(&other.url("")), "{other_port}");
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused_unless_a_grant_names_the_network() {
    let server = Server::start();
    server.route("/", Answer::json(200, &json!({"reached": true})));
    let by_name = format!("http://localhost:{}/", server.port);
    let (db, wf) = http_workflow("http-loopback", &format!("\"http://localhost:{}\"", server.port), "");
    let (code, report) = run(&db, &wf, json!({"requests": [get(&by_name)]}));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["answers"][0]["kind"], "Denied", "{report}");
    assert!(server.received().is_empty(), "a loopback address was connected to");
    let events = history(&db, report["run_id"].as_str().unwrap());
    let msg = exchanges(&events)[0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("loopback"), "{msg}");

    // Named explicitly, the network is allowed.
    let grants = format!("\"http://localhost:{0}\", \"http://127.0.0.0/8:{0}\"", server.port);
    let (db, wf) = http_workflow("http-loopback-named", &grants, "");
    let (code, report) = run(&db, &wf, json!({"requests": [get(&by_name)]}));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["answers"][0]["status"], 200, "{report}");
    let _ = db;
}

#[test]
fn a_redirect_is_an_answer_and_is_not_followed() {
    let server = Server::start();
    let mut redirect = Answer::json(302, &json!({}));
    redirect.headers.push(("location".into(), "http://169.254.169.254/latest/meta-data".into()));
    server.route("/go", redirect);
    let (db, wf) = http_workflow("http-redirect", &format!("\"{}\"", server.url("")), "");
    let (code, report) = run(&db, &wf, json!({"requests": [get(&server.url("/go"))]}));
    assert_eq!(code, Some(0), "{report}");
    let a = &report["output"]["answers"][0];
    assert_eq!(a["status"], 302);
    assert_eq!(a["headers"]["location"], "http://169.254.169.254/latest/meta-data");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn more_requests_than_the_budget_allows_stop_the_step() {
    let server = Server::start();
    server.route("/", Answer::json(200, &json!({})));
    let (db, wf) = http_workflow("http-budget", &format!("\"{}\"", server.url("")), "http_requests = 3");
    let (code, report) = run(&db, &wf, json!({"requests": [get(&server.url("/"))], "loop": 1000}));
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "http_budget_exceeded", "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("http_requests budget is 3"), "{report}");
    assert_eq!(server.received().len(), 3);
    let events = history(&db, report["run_id"].as_str().unwrap());
    assert_eq!(exchanges(&events).len(), 3, "a request past the budget is not journaled");
}

#[test]
fn a_response_larger_than_what_the_budget_has_left_is_refused_not_cut() {
    let server = Server::start();
    let big = Answer { status: 200, headers: vec![], body: vec![b'x'; 50_000], delay: Duration::ZERO };
    server.route("/big", big);
    let (db, wf) = http_workflow("http-bytes", &format!("\"{}\"", server.url("")), "http_bytes = \"40KiB\"");
    let (code, report) = run(&db, &wf, json!({"requests": [get(&server.url("/big"))]}));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["answers"][0]["kind"], "Transient", "{report}");
    let events = history(&db, report["run_id"].as_str().unwrap());
    assert_eq!(exchanges(&events)[0]["error"], "response_too_large");
}

/// Starts run `run` in the background (with `env` set) and kills it once the server has
/// received its first request.
fn kill_during_request(db: &Path, wf: &str, input: Value, server: &Server, run: &str) {
    kill_during_request_with(db, wf, input, server, run, &[]);
}

fn kill_during_request_with(db: &Path, wf: &str, input: Value, server: &Server, run: &str, env: &[(&str, &str)]) {
    let mut child = tether_cmd(db)
        .envs(env.iter().copied())
        .args(["run", wf, "--input", &input.to_string(), "--run-id", run, "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.received().is_empty() {
        assert!(Instant::now() < deadline, "the request never reached the server");
        assert!(matches!(child.try_wait(), Ok(None)), "the run ended before its request arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_get_in_flight_at_a_kill_is_sent_again_on_resume_and_served_after() {
    let server = Server::start();
    server.route("/slow", Answer::json(200, &json!({"n": 1})).after(Duration::from_secs(30)));
    let (db, wf) = http_workflow("http-kill-get", &format!("\"{}\"", server.url("")), "wall_time = \"60s\"");
    kill_during_request(&db, &wf, json!({"requests": [get(&server.url("/slow"))]}), &server, "run_kill-get");
    server.route("/slow", Answer::json(200, &json!({"n": 2})));
    let (code, report) = tether_json(&db, &["resume", "run_kill-get", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["answers"][0]["body"], json!({"n": 2}).to_string());
    assert_eq!(server.received().len(), 2, "a GET in flight at the kill is sent again");
    let o = tether_cmd(&db).args(["replay", "run_kill-get"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server.received().len(), 2);
}

#[test]
fn a_post_in_flight_at_a_kill_is_sent_again_with_the_same_idempotency_key() {
    let server = Server::start();
    server.route("/v1/refunds", Answer::json(201, &json!({"id": 7})).after(Duration::from_secs(30)));
    let (db, wf) = http_workflow("http-kill-post", &format!("\"{}\"", server.url("")), "wall_time = \"60s\"");
    let post = json!({"method": "POST", "url": server.url("/v1/refunds"), "body": "{\"amount\":20}"});
    kill_during_request(&db, &wf, json!({ "requests": [post] }), &server, "run_kill-post");
    server.route("/v1/refunds", Answer::json(201, &json!({"id": 7})));
    let (code, report) = tether_json(&db, &["resume", "run_kill-post", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| r.method == "POST"));
    let key = &received[0].headers["idempotency-key"];
    assert_eq!(key, "run_kill-post/fetch/http/0");
    assert_eq!(&received[1].headers["idempotency-key"], key, "the repeat carries the same key");
    assert_eq!(received[1].body, b"{\"amount\":20}");
}

#[test]
fn a_post_without_an_idempotency_key_in_flight_at_a_kill_is_in_doubt_and_not_sent_again() {
    let server = Server::start();
    server.route("/v1/refunds", Answer::json(201, &json!({"id": 7})).after(Duration::from_secs(30)));
    let grant = format!("{{ url = \"{}\", idempotency_key = false }}", server.url(""));
    let (db, wf) = http_workflow("http-kill-doubt", &grant, "wall_time = \"60s\"");
    let post = json!({"method": "POST", "url": server.url("/v1/refunds"), "body": "{}"});
    kill_during_request(&db, &wf, json!({ "requests": [post] }), &server, "run_kill-doubt");
    assert!(!server.received()[0].headers.contains_key("idempotency-key"));
    let (code, report) = tether_json(&db, &["resume", "run_kill-doubt", "--json"]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "in_doubt", "{report}");
    let msg = report["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("POST {}/v1/refunds was in flight", server.url(""))), "{msg}");
    assert_eq!(server.received().len(), 1, "an in-doubt request is never sent again");
}

/// The HTTP workflow under a policy (workflow identity `bot`) written to `policy.toml`.
fn governed_workflow(name: &str, http: &str, policy: &str) -> (PathBuf, String) {
    let (db, wf) = http_workflow(name, http, "");
    let text = std::fs::read_to_string(&wf).unwrap();
    let text =
        text.replacen("name = \"http\"\n", "name = \"http\"\nidentity = \"bot\"\npolicy_file = \"policy.toml\"\n", 1);
    std::fs::write(&wf, text).unwrap();
    std::fs::write(Path::new(&wf).with_file_name("policy.toml"), policy).unwrap();
    (db, wf)
}

const SECRET: &str = "sk-live-4f9a8b7c6d5e";

#[test]
fn a_credential_is_added_on_the_way_out_and_neither_the_guest_nor_the_journal_holds_it() {
    let server = Server::start();
    // The server echoes the header back, as a careless API might.
    server.route("/v1/me", Answer::json(200, &json!({})));
    let policy = format!(
        "[identities.bot]\nhttp = [{{ url = \"{}\", credential = {{ secret = \"TEST_API_KEY\" }} }}]\n",
        server.url("")
    );
    let (db, wf) = governed_workflow("http-credential", &format!("\"{}\"", server.url("")), &policy);
    let echo = json!({"requests": [get(&server.url("/v1/me"))]});
    let o = tether_cmd(&db)
        .env("TEST_API_KEY", SECRET)
        .args(["run", &wf, "--input", &echo.to_string(), "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let received = server.received();
    assert_eq!(received[0].headers["authorization"], format!("Bearer {SECRET}"), "the host added the credential");
    assert_eq!(received[0].headers["accept-encoding"], "identity", "an echo cannot come back compressed");
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    let events = history(&db, run_id);
    let ex = exchanges(&events);
    assert_eq!(ex[0]["request"]["credential"], "authorization from TEST_API_KEY");
    let journal = serde_json::to_string(&events).unwrap();
    assert!(!journal.contains(SECRET), "the journal holds the secret");
    assert!(!String::from_utf8_lossy(&o.stdout).contains(SECRET), "the guest or the report saw the secret");

    // A guest that sets the header itself to that destination is refused.
    let forged = json!({"requests": [{"url": server.url("/v1/me"), "headers": [["Authorization", "Bearer mine"]]}]});
    let o = tether_cmd(&db)
        .env("TEST_API_KEY", SECRET)
        .args(["run", &wf, "--input", &forged.to_string(), "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["output"]["answers"][0]["kind"], "Denied", "{report}");
    assert_eq!(server.received().len(), 1);

    // Without the secret in tether's environment, nothing is sent in its place.
    let o = tether_cmd(&db)
        .env_remove("TEST_API_KEY")
        .args(["run", &wf, "--input", &echo.to_string(), "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["output"]["answers"][0]["kind"], "Denied", "{report}");
    assert_eq!(server.received().len(), 1, "a request went out without its credential");
    let events = history(&db, report["run_id"].as_str().unwrap());
    let msg = exchanges(&events)[0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("`TEST_API_KEY` is not set in tether's environment"), "{msg}");
}

#[test]
fn an_answer_that_echoes_the_credential_reaches_the_guest_without_it() {
    let server = Server::start();
    server.route("/echo", Answer::json(200, &json!({"you_sent": format!("Bearer {SECRET}")})));
    let policy = format!(
        "[identities.bot]\nhttp = [{{ url = \"{}\", credential = {{ secret = \"TEST_API_KEY\" }} }}]\n",
        server.url("")
    );
    let (db, wf) = governed_workflow("http-credential-echo", &format!("\"{}\"", server.url("")), &policy);
    let input = json!({"requests": [get(&server.url("/echo"))]});
    let o = tether_cmd(&db)
        .env("TEST_API_KEY", SECRET)
        .args(["run", &wf, "--input", &input.to_string(), "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(stdout.contains("[secret TEST_API_KEY]"), "{stdout}");
}

#[test]
fn identity_grants_and_http_request_rules_both_decide() {
    let server = Server::start();
    server.route("/v1/charges", Answer::json(200, &json!({})));
    server.route("/v1/refunds", Answer::json(200, &json!({})));
    let policy = format!(
        "[identities.bot]\nhttp = [{{ url = \"{}\", path = \"/v1\" }}]\n\n[[rules]]\nname = \"no-charges\"\non = \"http_request\"\nwhen = \"method == 'POST' && path.startsWith('/v1/charges')\"\nverdict = \"deny\"\n",
        server.url("")
    );
    // The workflow asks for more than the identity is granted.
    let (db, wf) = governed_workflow("http-governed", &format!("\"{}\"", server.url("")), &policy);
    let requests = json!([
        {"method": "POST", "url": server.url("/v1/refunds")},
        {"method": "POST", "url": server.url("/v1/charges")},
        get(&server.url("/admin")),
    ]);
    let (code, report) = run(&db, &wf, json!({ "requests": requests }));
    assert_eq!(code, Some(0), "{report}");
    let answers = &report["output"]["answers"];
    assert_eq!(answers[0]["status"], 200, "{report}");
    assert_eq!(answers[1]["kind"], "Denied", "{report}");
    assert_eq!(answers[2]["kind"], "Denied", "{report}");
    assert_eq!(server.received().len(), 1);
    let events = history(&db, report["run_id"].as_str().unwrap());
    let ex = exchanges(&events);
    assert!(
        ex[1]["message"].as_str().unwrap().contains("denied by rule `no-charges` at the `http_request` checkpoint"),
        "{}",
        ex[1]
    );
    let admin = ex[2]["message"].as_str().unwrap();
    assert!(admin.contains("identity `bot` is not granted it; to allow it, add http = ["), "{admin}");
    assert!(admin.contains("under [identities.bot] in the policy"), "{admin}");
}

#[test]
fn a_workflow_cannot_bind_a_credential_itself() {
    let (db, wf) = http_workflow(
        "http-credential-in-workflow",
        "{ url = \"https://api.example.com\", credential = { secret = \"HOME\" } }",
        "",
    );
    let o = tether_cmd(&db).args(["validate", &wf]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a credential is bound to a destination by the policy, not the workflow"), "{err}");
    assert!(err.contains("wf.toml:5:"), "the error names the line: {err}");
}

#[test]
fn a_server_slower_than_the_attempt_ends_the_step_at_its_deadline() {
    let server = Server::start();
    server.route("/slow", Answer::json(200, &json!({})).after(Duration::from_secs(20)));
    let (db, wf) = http_workflow("http-deadline", &format!("\"{}\"", server.url("")), "wall_time = \"1s\"");
    let started = Instant::now();
    let (code, report) = run(&db, &wf, json!({"requests": [get(&server.url("/slow"))]}));
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "timed_out", "{report}");
    assert!(took < Duration::from_secs(10), "the host waited {took:?} for a 1s attempt");
}

/// The hostile step calling the HTTP tool `api`, which asks for `http`; `policy` (if any)
/// is the run's policy, for identity `bot`.
fn tool_workflow(name: &str, http: &str, policy: Option<&str>) -> (PathBuf, String) {
    let dir = fresh_dir(name);
    let wf = dir.join("wf.toml");
    let governed = if policy.is_some() { "identity = \"bot\"\npolicy_file = \"policy.toml\"\n" } else { "" };
    std::fs::write(
        &wf,
        format!(
            "name = \"http-tool\"\n{governed}[tools.api]\ncomponent = {:?}\nhttp = [{http}]\nbudget = {{ wall_time = \"60s\" }}\n[[steps]]\nname = \"call\"\ncomponent = {:?}\ntools = [\"api\"]\nbudget = {{ wall_time = \"60s\" }}\n",
            artifacts::HTTP_TOOL,
            artifacts::HOSTILE
        ),
    )
    .unwrap();
    if let Some(p) = policy {
        std::fs::write(dir.join("policy.toml"), p).unwrap();
    }
    (dir.join("journal.db"), wf.display().to_string())
}

fn tool_input(requests: Value) -> Value {
    json!({"mode": "call-tool", "tool": "api", "input": {"requests": requests}})
}

#[test]
fn a_tools_requests_are_journaled_with_its_call_and_replayed_without_the_network() {
    let server = Server::start();
    server.route("/v1/x", Answer::json(200, &json!({"x": 1})));
    let (db, wf) = tool_workflow("http-tool", &format!("\"{}\"", server.url("")), None);
    let (code, report) = run(&db, &wf, tool_input(json!([get(&server.url("/v1/x")), get("http://10.0.0.1/")])));
    assert_eq!(code, Some(0), "{report}");
    let answers = &report["output"]["tool_output"]["answers"];
    assert_eq!(answers[0]["status"], 200, "{report}");
    assert_eq!(answers[1]["kind"], "Denied", "{report}");
    let run_id = report["run_id"].as_str().unwrap();
    let events = history(&db, run_id);
    let ex = exchanges(&events);
    assert_eq!(ex.len(), 2);
    assert!(ex.iter().all(|e| e["tool_call"] == 0), "each names the tool call that made it: {ex:?}");
    assert!(ex[1]["message"].as_str().unwrap().contains("tool `api`"), "{}", ex[1]);
    drop(server);
    let o = tether_cmd(&db).args(["replay", run_id]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_tool_killed_in_the_middle_of_a_post_sends_it_again_with_the_same_key_and_its_credential() {
    let server = Server::start();
    server.route("/v1/refunds", Answer::json(201, &json!({"id": 9})).after(Duration::from_secs(30)));
    let policy = format!(
        "[identities.bot]\ntools = [\"api\"]\nhttp = [{{ url = \"{}\", credential = {{ secret = \"TEST_API_KEY\", header = \"x-api-key\", format = \"{{secret}}\" }} }}]\n",
        server.url("")
    );
    let (db, wf) = tool_workflow("http-tool-kill", &format!("\"{}\"", server.url("")), Some(&policy));
    let input = tool_input(json!([{"method": "POST", "url": server.url("/v1/refunds"), "body": "{}"}]));
    kill_during_request_with(&db, &wf, input, &server, "run_tool-kill", &[("TEST_API_KEY", SECRET)]);
    server.route("/v1/refunds", Answer::json(201, &json!({"id": 9})));
    let o = tether_cmd(&db).env("TEST_API_KEY", SECRET).args(["resume", "run_tool-kill", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(o.status.code(), Some(0), "{report} {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report["output"]["tool_output"]["answers"][0]["status"], 201, "{report}");
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].headers["idempotency-key"], "run_tool-kill/call/0/http/0");
    assert_eq!(received[1].headers["idempotency-key"], received[0].headers["idempotency-key"]);
    assert!(received.iter().all(|r| r.headers["x-api-key"] == SECRET), "the credential went with both");
    assert!(!String::from_utf8_lossy(&o.stdout).contains(SECRET));
}

#[test]
fn a_python_step_makes_granted_requests_with_its_toolchains_own_wasi_http() {
    let server = Server::start();
    server.route("/status", Answer::json(200, &json!({"up": true})));
    let dir = fresh_dir("http-python");
    let wf = dir.join("wf.toml");
    std::fs::write(
        &wf,
        format!(
            "name = \"py\"\n[[steps]]\nname = \"fetch\"\ncomponent = {:?}\nhttp = [\"{}\"]\nbudget = {{ memory = \"128MiB\" }}\n",
            artifacts::FETCH,
            server.url("")
        ),
    )
    .unwrap();
    let (db, wf) = (dir.join("journal.db"), wf.display().to_string());
    let (code, report) = run(&db, &wf, json!({"url": server.url("/status")}));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"], json!({"status": 200, "body": json!({"up": true}).to_string()}));
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(exchanges(&history(&db, &run_id)).len(), 1);

    let (code, report) = run(&db, &wf, json!({"url": "http://127.0.0.1:9/elsewhere"}));
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "denied", "{report}");
    assert_eq!(server.received().len(), 1);
    drop(server);
    let o = tether_cmd(&db).args(["replay", &run_id]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Identity `bot` may reach `server`; every POST waits at gate `payments` for alice.
fn approval_policy(server: &Server) -> String {
    format!("[identities.bot]\nhttp = [\"{}\"]\n{APPROVALS}", server.url(""))
}

const APPROVALS: &str = "\n[identities.alice]\napproves = [\"payments\"]\n\n[gates.payments]\napprovals = 1\n\n[[rules]]\nname = \"posts-need-a-person\"\non = \"http_request\"\nwhen = \"method == 'POST'\"\nverdict = \"require_approval\"\ngate = \"payments\"\n";

#[test]
fn a_request_a_rule_gates_waits_for_a_person_and_leaves_only_once_approved() {
    let server = Server::start();
    server.route("/v1/charges", Answer::json(201, &json!({"charged": true})));
    server.route("/v1/status", Answer::json(200, &json!({})));
    let (db, wf) = governed_workflow("http-approval", &format!("\"{}\"", server.url("")), &approval_policy(&server));
    let requests = json!([get(&server.url("/v1/status")), {"method": "POST", "url": server.url("/v1/charges"), "body": "{\"amount\":5}"}]);
    let input = json!({ "requests": requests }).to_string();
    let o =
        tether_cmd(&db).args(["run", &wf, "--input", &input, "--run-id", "run_http-gate", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(3), "the POST waits: {report}");
    assert_eq!(report["status"], "waiting", "{report}");
    let received = server.received();
    assert_eq!(received.len(), 1, "only the GET left before the approval");
    assert_eq!(received[0].method, "GET");
    let events = history(&db, "run_http-gate");
    let asked = events.iter().find(|e| e["type"] == "approval_requested").expect("an approval request");
    assert_eq!(asked["id"], "fetch/http/1@http_request");
    assert_eq!(asked["proposal"]["method"], "POST");

    let o = tether_cmd(&db).args(["approve", "run_http-gate", "payments", "--as", "alice", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(o.status.code(), Some(0), "{report} {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report["output"]["answers"][1]["status"], 201, "{report}");
    let received = server.received();
    assert_eq!(received.len(), 2, "the GET was served from the journal, the POST left once");
    assert_eq!(received[1].method, "POST");
    let o = tether_cmd(&db).args(["replay", "run_http-gate"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server.received().len(), 2);
}

#[test]
fn a_rejected_request_is_refused_to_the_guest_and_never_leaves() {
    let server = Server::start();
    server.route("/v1/charges", Answer::json(201, &json!({})));
    let (db, wf) = governed_workflow("http-rejected", &format!("\"{}\"", server.url("")), &approval_policy(&server));
    let input = json!({"requests": [{"method": "POST", "url": server.url("/v1/charges")}]}).to_string();
    let o =
        tether_cmd(&db).args(["run", &wf, "--input", &input, "--run-id", "run_http-no", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stdout));
    let o = tether_cmd(&db)
        .args(["reject", "run_http-no", "payments", "--as", "alice", "--comment", "not today", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(o.status.code(), Some(0), "{report} {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report["output"]["answers"][0]["kind"], "Denied", "{report}");
    assert!(server.received().is_empty(), "a rejected request left");
    let ex = history(&db, "run_http-no");
    let msg = exchanges(&ex)[0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("rejected by alice at gate `payments`: not today"), "{msg}");
}

#[test]
fn a_runs_http_requests_budget_pauses_it_and_a_raise_lets_it_finish() {
    let server = Server::start();
    server.route("/", Answer::json(200, &json!({})));
    let (db, wf) = http_workflow("http-run-budget", &format!("\"{}\"", server.url("")), "");
    let text = std::fs::read_to_string(&wf).unwrap();
    std::fs::write(
        &wf,
        text.replacen("name = \"http\"\n", "name = \"http\"\n[run]\nbudget = { http_requests = 2 }\n", 1),
    )
    .unwrap();
    let input = json!({"requests": [get(&server.url("/"))], "loop": 3}).to_string();
    let o = tether_cmd(&db)
        .args(["run", &wf, "--input", &input, "--run-id", "run_http-budget", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(3), "{report}");
    assert_eq!(report["status"], "paused", "{report}");
    assert_eq!(server.received().len(), 2, "no request past the run's budget");
    let paused = history(&db, "run_http-budget").into_iter().find(|e| e["type"] == "run_paused").unwrap();
    assert_eq!(paused["exceeded"], "http_requests", "{paused}");
    let (code, report) = tether_json(&db, &["resume", "run_http-budget", "--budget", "http_requests=+10", "--json"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["output"]["answers"].as_array().unwrap().len(), 3, "{report}");
}

#[test]
fn a_replay_whose_component_makes_another_request_diverges_at_that_exchange() {
    let server = Server::start();
    server.route("/a", Answer::json(200, &json!({"a": 1})));
    server.route("/b", Answer::json(200, &json!({"b": 2})));
    let (db, wf) = http_workflow("http-diverge", &format!("\"{}\"", server.url("")), "memory = \"128MiB\"");
    // Recorded with the Python step, which reads `url`; replayed with the Rust fixture,
    // which reads `requests`.
    let text = std::fs::read_to_string(&wf).unwrap().replace(artifacts::HTTP_STEP, artifacts::FETCH);
    std::fs::write(&wf, text).unwrap();
    let input = json!({"url": server.url("/a"), "requests": [get(&server.url("/b"))]});
    let (code, report) = run(&db, &wf, input);
    assert_eq!(code, Some(0), "{report}");
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let seq = exchanges(&history(&db, &run_id))[0]["seq"].as_u64().unwrap();
    let with = format!("fetch={}", artifacts::HTTP_STEP);
    let (code, replay) = tether_json(&db, &["replay", &run_id, "--with", &with, "--json"]);
    assert_eq!(code, Some(1), "{replay}");
    let d = &replay["divergence"];
    assert_eq!(d["seq"].as_u64(), Some(seq), "{replay}");
    assert_eq!(d["expected"]["request"]["url"], server.url("/a"));
    assert_eq!(d["actual"]["type"], "http_exchanged");
    assert_eq!(d["actual"]["request"]["url"], server.url("/b"));
    assert_eq!(server.received().len(), 1, "replay made no request");
}

#[test]
fn an_encoded_answer_to_a_credentialed_request_is_refused() {
    let server = Server::start();
    let mut gz = Answer::json(200, &json!({}));
    gz.headers.push(("content-encoding".into(), "gzip".into()));
    server.route("/v1/me", gz);
    let policy = format!(
        "[identities.bot]\nhttp = [{{ url = \"{}\", credential = {{ secret = \"TEST_API_KEY\" }} }}]\n",
        server.url("")
    );
    let (db, wf) = governed_workflow("http-credential-gzip", &format!("\"{}\"", server.url("")), &policy);
    let input = json!({"requests": [{"url": server.url("/v1/me"), "headers": [["accept-encoding", "gzip"], ["range", "bytes=3-9"]]}]});
    let o = tether_cmd(&db)
        .env("TEST_API_KEY", SECRET)
        .args(["run", &wf, "--input", &input.to_string(), "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["output"]["answers"][0]["kind"], "Transient", "{report}");
    let received = server.received();
    assert_eq!(received[0].headers["accept-encoding"], "identity");
    assert!(!received[0].headers.contains_key("range"), "a range would bring the credential back in pieces");
    let msg = exchanges(&history(&db, report["run_id"].as_str().unwrap()))[0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("came gzip"), "{msg}");
}

#[test]
fn an_unkeyed_post_that_gets_no_answer_fails_in_doubt_and_is_not_retried() {
    let server = Server::start();
    server.route("/v1/charges", Answer { status: 0, headers: vec![], body: vec![], delay: Duration::ZERO });
    let grant = format!("{{ url = \"{}\", idempotency_key = false }}", server.url(""));
    let (db, wf) = http_workflow("http-no-answer", &grant, "");
    let text = std::fs::read_to_string(&wf).unwrap();
    std::fs::write(
        &wf,
        format!("{text}retry = {{ max_attempts = 3, on = [\"trap\", \"host_fault\", \"timed_out\"] }}\n"),
    )
    .unwrap();
    let input = json!({"requests": [{"method": "POST", "url": server.url("/v1/charges"), "body": "{}"}]});
    let (code, report) = run(&db, &wf, input);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["error"]["class"], "in_doubt", "{report}");
    assert_eq!(server.received().len(), 1, "a request in doubt is sent once");
}

#[test]
fn an_approval_that_edits_a_request_refuses_it() {
    let server = Server::start();
    server.route("/v1/charges", Answer::json(201, &json!({})));
    let (db, wf) =
        governed_workflow("http-approval-edit", &format!("\"{}\"", server.url("")), &approval_policy(&server));
    let input = json!({"requests": [{"method": "POST", "url": server.url("/v1/charges"), "body": "{\"amount\":5}"}]})
        .to_string();
    let o =
        tether_cmd(&db).args(["run", &wf, "--input", &input, "--run-id", "run_http-edit", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stdout));
    let asked = history(&db, "run_http-edit").into_iter().find(|e| e["type"] == "approval_requested").unwrap();
    let mut edited = asked["proposal"].clone();
    edited["body"] = json!("{\"amount\":1}");
    let o = tether_cmd(&db)
        .args(["approve", "run_http-edit", "payments", "--as", "alice", "--payload", &edited.to_string(), "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(o.status.code(), Some(0), "{report} {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report["output"]["answers"][0]["kind"], "Denied", "{report}");
    assert!(server.received().is_empty(), "an edited approval sent the request");
}

#[test]
fn a_granted_secret_in_a_request_or_its_answer_is_journaled_as_secret_and_replays() {
    let server = Server::start();
    server.route("/echo", Answer::json(200, &json!({"seen": "tok-9c1d4e"})));
    let policy = format!(
        "[identities.bot]\nenv = [{{ name = \"TEST_ENV_TOKEN\", secret = true }}]\nhttp = [\"{}\"]\n",
        server.url("")
    );
    let (db, wf) = governed_workflow("http-env-secret", &format!("\"{}\"", server.url("")), &policy);
    let text = std::fs::read_to_string(&wf).unwrap().replace("http = [", "env = [\"TEST_ENV_TOKEN\"]\nhttp = [");
    std::fs::write(&wf, text).unwrap();
    let input = json!({"requests": [{"url": server.url("/echo"), "headers": [["x-token", "tok-9c1d4e"]]}]});
    let o = tether_cmd(&db)
        .env("TEST_ENV_TOKEN", "tok-9c1d4e")
        .args(["run", &wf, "--input", &input.to_string(), "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{report}");
    assert_eq!(report["output"]["answers"][0]["body"], json!({"seen": "[secret]"}).to_string(), "{report}");
    let run_id = report["run_id"].as_str().unwrap().to_string();
    // The run's input is the caller's own text; every event after it shows the secret's name.
    let events = history(&db, &run_id);
    let after_start: Vec<&Value> = events.iter().filter(|e| e["type"] != "run_started").collect();
    assert!(!serde_json::to_string(&after_start).unwrap().contains("tok-9c1d4e"), "{after_start:?}");
    assert_eq!(exchanges(&events)[0]["request"]["headers"][0][1], "[secret]");
    drop(server);
    let o = tether_cmd(&db).env("TEST_ENV_TOKEN", "tok-9c1d4e").args(["replay", &run_id]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn a_tools_requests_draw_on_the_calling_steps_http_budget() {
    let server = Server::start();
    server.route("/x", Answer::json(200, &json!({})));
    let (db, wf) = tool_workflow("http-tool-budget", &format!("\"{}\"", server.url("")), None);
    let text = std::fs::read_to_string(&wf).unwrap();
    let text = text.replacen(
        "tools = [\"api\"]\nbudget = { wall_time = \"60s\" }",
        "tools = [\"api\"]\nbudget = { wall_time = \"60s\", http_requests = 2 }",
        1,
    );
    std::fs::write(&wf, text).unwrap();
    let (code, report) =
        run(&db, &wf, tool_input(json!([get(&server.url("/x")), get(&server.url("/x")), get(&server.url("/x"))])));
    assert_eq!(code, Some(1), "{report}");
    assert!(report["error"]["message"].as_str().unwrap().contains("http_budget_exceeded"), "{report}");
    assert_eq!(server.received().len(), 2, "the tool could not make more requests than its step may");
}

/// A step's POST and GET, killed by the host's own crash point just before or just after
/// sync `n`, then continued; `false` if the run has fewer syncs.
fn http_killed_at(n: u32, side: &str) -> bool {
    let server = Server::start();
    server.route("/v1/refunds", Answer::json(201, &json!({"id": 3})));
    server.route("/v1/status", Answer::json(200, &json!({"ok": true})));
    let (db, wf) = http_workflow(&format!("http-sync-{n}-{side}"), &format!("\"{}\"", server.url("")), "");
    let run = format!("run_http-sync-{n}-{side}");
    let input = json!({"requests": [
        {"method": "POST", "url": server.url("/v1/refunds"), "body": "{\"amount\":3}"},
        get(&server.url("/v1/status")),
    ]})
    .to_string();
    let start = ["run", wf.as_str(), "--input", input.as_str(), "--run-id", run.as_str(), "--json"];
    let o = tether_cmd(&db).env("TETHER_CRASH_AT_SYNC", format!("{n}:{side}")).args(start).output().unwrap();
    if o.status.code() == Some(0) {
        return false;
    }
    assert_eq!(
        o.status.code(),
        None,
        "sync {n} {side}: the host did not abort: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = tether_cmd(&db).args(["resume", &run, "--json"]).output().unwrap();
    let o = if String::from_utf8_lossy(&o.stderr).contains("unknown run") {
        tether_cmd(&db).args(start).output().unwrap()
    } else {
        o
    };
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(
        o.status.code(),
        Some(0),
        "sync {n} {side}: continuing: {report} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(report["output"]["answers"][0]["status"], 201, "sync {n} {side}: {report}");
    assert_eq!(report["output"]["answers"][1]["status"], 200, "sync {n} {side}: {report}");
    let posts: Vec<_> = server.received().into_iter().filter(|r| r.method == "POST").collect();
    assert!(!posts.is_empty() && posts.len() <= 2, "sync {n} {side}: {} POSTs", posts.len());
    let key = format!("{run}/fetch/http/0");
    assert!(posts.iter().all(|p| p.headers["idempotency-key"] == key), "sync {n} {side}: a repeat without its key");
    assert_eq!(exchanges(&history(&db, &run)).len(), 2, "sync {n} {side}: one event per exchange");
    for check in [vec!["verify", run.as_str()], vec!["replay", run.as_str()]] {
        let o = tether_cmd(&db).args(&check).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "sync {n} {side}: {check:?}: {}", String::from_utf8_lossy(&o.stdout));
    }
    true
}

#[test]
fn a_kill_just_before_or_just_after_any_sync_of_an_http_step_loses_and_repeats_nothing_unkeyed() {
    let mut killed = 0;
    for n in 1..=10 {
        let before = http_killed_at(n, "before");
        let after = http_killed_at(n, "after");
        assert_eq!(before, after, "sync {n} was reached on one side only");
        if !before {
            break;
        }
        killed += 2;
    }
    assert!(
        killed >= 6,
        "an HTTP step crosses at least three syncs (before each request, after each answer); killed {killed}"
    );
}
