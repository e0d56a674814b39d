//! `tether serve` as a real process on an ephemeral port, asked over real HTTP: health,
//! runs, one run, its events page by page, JSON errors with stable codes, and a clean
//! stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_tests::repo_root;

use crate::support::{fresh_dir, tether_cmd, tether_json};

/// A running `tether serve` and its address.
struct Served {
    child: Child,
    address: String,
}

impl Served {
    fn start(db: &std::path::Path) -> Served {
        let mut child = tether_cmd(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line}")).to_string();
        Served { child, address }
    }

    /// GET `path`: (status, JSON body or the text as a string).
    fn get(&self, path: &str) -> (u16, Value) {
        let mut s = TcpStream::connect(&self.address).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", self.address).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_api_answers_runs_a_run_and_its_events_and_stops_on_sigterm() {
    let dir = fresh_dir("serve-read");
    let db = dir.join("journal.db");
    let wf = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    let (code, report) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_served", "--json"]);
    assert_eq!(code, Some(0), "{report}");

    let mut served = Served::start(&db);
    assert_eq!(served.get("/healthz"), (200, json!("ok")));
    let (status, runs) = served.get("/v1/runs?status=completed&limit=10");
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["runs"][0]["run_id"], "run_served", "{runs}");
    let (status, run) = served.get("/v1/runs/run_serv");
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], report["output"]);

    // Events page by page, in order, until no next page.
    let (_, history) = tether_json(&db, &["history", "run_served", "--json"]);
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = served.get(&format!("/v1/runs/run_served/events?after={after}&limit=5"));
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
        let (s, body) = served.get(path);
        assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)), "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
    assert_eq!(served.get("/v1/runs?limit=0").1["error"]["field"], "limit");

    // SIGTERM: a clean stop.
    let pid = served.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "tether serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_api_lists_pending_approvals_and_stats_as_the_cli_does() {
    let dir = fresh_dir("serve-approvals");
    let db = dir.join("journal.db");
    let wf = repo_root().join("plugins/workflows/refund.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/refund-request.json").display());
    let (code, waiting) = tether_json(&db, &["run", &wf, "--input", &input, "--run-id", "run_waits", "--json"]);
    assert_eq!(code, Some(3), "{waiting}");

    let served = Served::start(&db);
    let (status, approvals) = served.get("/v1/approvals?state=pending");
    assert_eq!(status, 200, "{approvals}");
    let (_, inbox) = tether_json(&db, &["inbox", "--json"]);
    assert_eq!(approvals["approvals"], inbox, "the API and the CLI show the same requests");
    assert_eq!(approvals["approvals"][0]["run_id"], "run_waits");
    assert_eq!(approvals["approvals"][0]["gate"], "refund");
    let (status, body) = served.get("/v1/approvals?state=decided");
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("state")), "{body}");

    let (status, stats) = served.get("/v1/stats");
    assert_eq!(status, 200, "{stats}");
    let (_, cli_stats) = tether_json(&db, &["stats", "--json"]);
    assert_eq!(stats, cli_stats, "the API and the CLI count the same");
    assert_eq!(stats["runs"], 1);
}
