//! `tether serve` as a real process on an ephemeral port, asked over real HTTP: health,
//! runs, one run, its events page by page, JSON errors with stable codes, and a clean
//! stop on SIGTERM.

use std::time::Duration;

use serde_json::json;
use tether_tests::repo_root;

use crate::served::{token, Served};
use crate::support::{fresh_dir, tether_json};

#[test]
fn the_api_answers_runs_a_run_and_its_events_and_stops_on_sigterm() {
    let dir = fresh_dir("serve-read");
    let db = dir.join("journal.db");
    let wf = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    let (code, report) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_served", "--json"]);
    assert_eq!(code, Some(0), "{report}");

    let viewer = token(&db, "viewer", "vera", &["viewer"]);
    let mut served = Served::start(&db, &[]);
    assert_eq!(served.get("/healthz"), (200, json!("ok")));
    assert_eq!(served.get("/readyz"), (200, json!("ready")));
    let (status, body) = served.get("/v1/runs");
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    let (status, body) = served.get_as("tether_0000", "/v1/runs");
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    let served_get = |path: &str| served.get_as(&viewer, path);
    let (status, runs) = served_get("/v1/runs?status=completed&limit=10");
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["runs"][0]["run_id"], "run_served", "{runs}");
    let (status, run) = served_get("/v1/runs/run_serv");
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], report["output"]);

    // Events page by page, in order, until no next page.
    let (_, history) = tether_json(&db, &["history", "run_served", "--json"]);
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = served_get(&format!("/v1/runs/run_served/events?after={after}&limit=5"));
        assert_eq!(status, 200, "{page}");
        seen.extend(page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()));
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let all: Vec<u64> = history.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seen, all, "every event once, in order");

    for (path, status, code) in [
        ("/v1/runs/run_nope", 404, "unknown_run"),
        ("/v1/runs?limit=0", 400, "invalid_request"),
        ("/v1/runs?status=sideways", 400, "invalid_request"),
        ("/v1/runs?bogus=1", 400, "invalid_request"),
        ("/v1/nothing", 404, "not_found"),
    ] {
        let (s, body) = served_get(path);
        assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
    assert_eq!(served_get("/v1/runs?limit=0").1["error"]["field"], "limit");

    // SIGTERM: a clean stop.
    assert_eq!(served.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn the_api_lists_pending_approvals_and_stats_as_the_cli_does() {
    let dir = fresh_dir("serve-approvals");
    let db = dir.join("journal.db");
    let wf = repo_root().join("plugins/workflows/refund.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/refund-request.json").display());
    let (code, waiting) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_waits", "--json"]);
    assert_eq!(code, Some(3), "{waiting}");

    let viewer = token(&db, "viewer", "vera", &["viewer"]);
    let served = Served::start(&db, &[]);
    let served_get = |path: &str| served.get_as(&viewer, path);
    let (status, approvals) = served_get("/v1/approvals?state=pending");
    assert_eq!(status, 200, "{approvals}");
    let (_, inbox) = tether_json(&db, &["inbox", "--json"]);
    // The API adds each request's id, which its decision is posted to.
    let mut listed = approvals["approvals"].clone();
    assert_eq!(listed[0]["id"].as_str(), Some(format!("run_waits:{}", inbox[0]["request"].as_str().unwrap()).as_str()));
    listed[0].as_object_mut().unwrap().remove("id");
    listed[0].as_object_mut().unwrap().remove("decide");
    assert_eq!(listed, inbox, "the API and the CLI show the same requests");
    assert_eq!(approvals["approvals"][0]["run_id"], "run_waits");
    assert_eq!(approvals["approvals"][0]["gate"], "refund");
    let (status, body) = served_get("/v1/approvals?state=decided");
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("state")), "{body}");

    let (status, stats) = served_get("/v1/stats");
    assert_eq!(status, 200, "{stats}");
    let (_, cli_stats) = tether_json(&db, &["stats", "--json"]);
    assert_eq!(stats, cli_stats, "the API and the CLI count the same");
    assert_eq!(stats["runs"], 1);
}

/// The toolchains' schemathesis (installed by the test command, scripts/guest-toolchains).
fn schemathesis() -> std::path::PathBuf {
    let dir = std::env::var_os("TETHER_TOOLCHAINS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/toolchains"));
    dir.join("py/bin/schemathesis")
}

#[test]
fn the_live_server_holds_to_its_openapi_document_under_property_based_requests() {
    let tester = schemathesis();
    assert!(tester.exists(), "{} is missing: run the tests with scripts/test, which installs it", tester.display());
    let r = crate::governance::Refund::new("serve-openapi", "output.amount > 100.0", crate::governance::POLICY);
    let admin = token(&r.db, "admin", "alice", &["admin"]);
    let dir = r.dir.display().to_string();
    let served = Served::start(&r.db, &["--workflows", &dir]);
    let (status, doc) = served.get("/v1/openapi.json");
    assert_eq!(status, 200, "{doc}");
    assert!(doc["paths"]["/v1/runs"]["post"].is_object(), "{doc}");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer", "{doc}");

    let url = format!("http://{}/v1/openapi.json", served.address);
    let header = format!("Authorization: Bearer {admin}");
    let o = std::process::Command::new(&tester)
        .current_dir(&r.dir)
        .args(["run", &url, "-H", &header, "--max-examples", "12", "--workers", "1", "--seed", "7"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing", "--no-color", "--request-timeout", "20"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "schemathesis found the server breaking its document:\n{said}\n{}", served.log());
    // The server went on answering throughout.
    assert_eq!(served.get("/healthz"), (200, json!("ok")));
}
