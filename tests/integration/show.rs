//! `tether show`: one run at a glance, and run ids by a unique prefix.

use serde_json::Value;
use tether_tests::repo_root;

use crate::support::{fresh_dir, output, tether_cmd, tether_json};

#[test]
fn show_says_what_a_waiting_run_waits_on_and_how_to_continue_it() {
    let dir = fresh_dir("show-waiting");
    let db = dir.join("journal.db");
    let wf = repo_root().join("plugins/workflows/refund.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/refund-request.json").display());
    let (code, report) = tether_json(&db, &["run", &wf, "--input", &input, "--json"]);
    assert_eq!(code, Some(3), "{report}");
    let run = report["run_id"].as_str().unwrap().to_string();

    // By a unique prefix of the id.
    let (code, view) = tether_json(&db, &["show", &run[..14], "--json"]);
    assert_eq!(code, Some(0), "{view}");
    assert_eq!(view["run_id"], run.as_str());
    assert_eq!(view["status"], "waiting");
    assert_eq!(view["identity"], "support-bot");
    let pending = &view["waiting_on"][0];
    assert_eq!(pending["gate"], "refund");
    assert_eq!(pending["step"], "assess");
    assert_eq!((pending["needed"].as_u64(), pending["approved_by"].as_array().map(Vec::len)), (Some(1), Some(0)));
    assert_eq!(pending["on_timeout"], "reject");
    assert!(pending["deadline"].as_str().unwrap().ends_with('Z'), "{pending}");
    let approval = pending["approval"].as_str().unwrap();
    assert_eq!(
        view["next"],
        format!("tether approve {run} {approval} --as NAME (or tether reject {run} {approval} --as NAME)")
    );
    assert_eq!(view["steps"][0]["status"], "awaiting check");
    assert!(view["totals"]["usage"]["tokens"].as_f64().unwrap() > 0.0);

    let o = tether_cmd(&db).args(["show", &run]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("waiting on {approval}: gate refund at step assess, 0 of 1 approvals")), "{text}");
    assert!(text.contains("next:   tether approve"), "{text}");
}

#[test]
fn a_prefix_of_several_runs_or_of_none_is_a_usage_error() {
    let dir = fresh_dir("show-prefix");
    let db = dir.join("journal.db");
    let wf = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (code, report) = tether_json(&db, &["run", &wf, "--input", &input, "--json"]);
        assert_eq!(code, Some(0), "{report}");
        runs.push(report["run_id"].as_str().unwrap().to_string());
    }
    // Both ids share their first characters (a time-ordered prefix).
    let common: String = runs[0].chars().zip(runs[1].chars()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    assert!(common.len() >= 6, "{runs:?}");
    let o = tether_cmd(&db).args(["show", &common]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", output(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is the start of 2 runs"), "{}", output(&o));
    for id in [&runs[0][..], "run_0", "run_zzzzzz"] {
        let o = tether_cmd(&db).args(["history", id]).output().unwrap();
        let expected = if id == runs[0] { Some(0) } else { Some(2) };
        assert_eq!(o.status.code(), expected, "{id}: {}", output(&o));
    }
    // `runs --json` has RFC 3339 times and the duration with its unit.
    let (_, listed) = tether_json(&db, &["runs", "--json"]);
    let first = &listed[0];
    assert!(first["started"].as_str().unwrap().ends_with('Z') && first["finished"].as_str().is_some(), "{first}");
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0, "{first}");
    let (_, events) = tether_json(&db, &["history", &runs[0], "--json"]);
    assert!(events[0]["at"].as_str().unwrap().ends_with('Z') && events[0]["at_us"].as_u64().is_some(), "{}", events[0]);
    let (_, view) = tether_json(&db, &["show", &runs[1], "--json"]);
    assert_eq!(view["status"], "completed");
    assert_eq!(view["output"]["category"], "billing");
    // Steps in the order the journal names them, skips included.
    let steps: Vec<(String, String)> = view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap().into(), s["status"].as_str().unwrap().into()))
        .collect();
    assert_eq!(steps.first().map(|s| s.0.as_str()), Some("classify"), "{steps:?}");
    assert!(steps.contains(&("escalate".into(), "skipped".into())), "{steps:?}");
    assert_eq!(view.get("next"), None::<&Value>);
}

/// `tether ARGS` on a terminal `cols` wide (through `script`, which gives it a pty).
fn on_terminal(db: &std::path::Path, cols: u32, args: &str) -> String {
    let tether = env!("CARGO_BIN_EXE_tether");
    let command = format!("stty cols {cols}; {tether} {args}");
    let o = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("TETHER_DATABASE_URL", db)
        .env("TETHER_CACHE_DIR", tether_tests::cache_dir())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("script(1) runs");
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
    String::from_utf8_lossy(&o.stdout).replace('\r', "")
}

#[test]
fn history_and_runs_fit_the_terminal_and_not_a_pipe() {
    let dir = fresh_dir("fit-width");
    let db = dir.join("journal.db");
    let wf = repo_root().join("plugins/workflows/support-triage.toml").display().to_string();
    let input = format!("@{}", repo_root().join("plugins/workflows/ticket.json").display());
    let (_, report) = tether_json(&db, &["run", &wf, "--input", &input, "--json"]);
    let run = report["run_id"].as_str().unwrap();
    for args in [format!("history {run}"), "runs".to_string()] {
        let text = on_terminal(&db, 72, &args);
        assert!(text.lines().count() > 1, "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 72, "{args}: a line is wider than the terminal: {line:?}");
        }
    }
    // Into a pipe nothing is cut.
    let o = tether_cmd(&db).args(["history", run]).output().unwrap();
    let widest = String::from_utf8_lossy(&o.stdout).lines().map(|l| l.chars().count()).max().unwrap();
    assert!(widest > 72, "{widest}");
}
