//! The CLI as a client of `tether serve` (`--server URL`, `TETHER_TOKEN`): the same
//! commands print exactly what they print over the journal itself; decisions and cancels
//! are made as the token's identity; a missing or refused token and an unreachable
//! server are clear errors.

use std::time::Duration;

use serde_json::json;

use crate::governance::{of_type, Refund, POLICY};
use crate::served::{token, Served};
use crate::support::{output, tether_cmd};

/// `tether ARGS` against the server (`--server` is added), as `token`.
fn remote(r: &Refund, url: &str, token: &str, args: &[&str]) -> std::process::Output {
    tether_cmd(&r.db).args(args).args(["--server", url]).env("TETHER_TOKEN", token).output().unwrap()
}

/// `tether ARGS` on the journal itself.
fn local(r: &Refund, args: &[&str]) -> std::process::Output {
    tether_cmd(&r.db).args(args).output().unwrap()
}

#[test]
fn the_cli_over_a_server_prints_what_it_prints_over_the_journal() {
    let r = Refund::new("serve-client", "output.amount > 100.0", POLICY);
    let alice = token(&r.db, "alice", "alice", &["runner", "approver"]);
    let ops = token(&r.db, "ops", "olga", &["operator"]);
    let dir = r.dir.display().to_string();
    let served = Served::start(&r.db, &["--workflows", &dir]);
    let url = format!("http://{}", served.address);

    // A run started through the server waits for approval: exit 3, as locally.
    let input = json!({"order_id": "A-1", "amount": 500.0, "reason": "arrived damaged"}).to_string();
    let o = remote(&r, &url, &alice, &["run", "refund-serve-client", "--input", &input, "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", output(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let run = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(report["status"], "waiting", "{report}");
    assert_eq!(report["next"]["what"], "decide", "{report}");

    let same = |args: &[&str]| {
        let (here, there) = (local(&r, args), remote(&r, &url, &alice, args));
        assert_eq!(there.status.code(), here.status.code(), "{args:?}: {}", output(&there));
        assert_eq!(
            String::from_utf8_lossy(&there.stdout),
            String::from_utf8_lossy(&here.stdout),
            "{args:?} differs over the server"
        );
    };
    for args in [
        vec!["runs"],
        vec!["runs", "--json"],
        vec!["show", &run],
        vec!["show", &run, "--json"],
        vec!["history", &run],
        vec!["history", &run, "--json"],
        vec!["inbox"],
        vec!["inbox", "--json"],
        vec!["stats", "--json"],
        vec!["stats"],
    ] {
        same(&args);
    }

    // Decided as the token's identity; `--as` is refused over a server.
    let o = remote(&r, &url, &alice, &["approve", &run, "refund", "--as", "bob"]);
    assert_eq!(o.status.code(), Some(2), "{}", output(&o));
    let o = remote(&r, &url, &alice, &["approve", &run, "refund", "--comment", "checked the photos"]);
    assert!(o.status.success(), "{}", output(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("by alice: approved"), "{}", output(&o));
    served.wait_status(&alice, &run, "completed", Duration::from_secs(60));
    same(&["show", &run, "--json"]);
    same(&["history", &run]);
    let (_, events) = crate::support::tether_json(&r.db, &["history", &run, "--json"]);
    let decided = of_type(events.as_array().unwrap(), "approval_decided").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(
        (decided[0]["by"].as_str(), decided[0]["comment"].as_str()),
        (Some("alice"), Some("checked the photos"))
    );

    // A second run, cancelled through the server as the operator.
    let o = remote(&r, &url, &alice, &["run", "refund-serve-client", "--input", &input, "--json"]);
    let second: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let second = second["run_id"].as_str().unwrap().to_string();
    let o = remote(&r, &url, &alice, &["cancel", &second]);
    assert_eq!(o.status.code(), Some(2), "a runner may not cancel: {}", output(&o));
    let o = remote(&r, &url, &ops, &["cancel", &second, "--reason", "duplicate"]);
    assert!(o.status.success(), "{}", output(&o));
    served.wait_status(&ops, &second, "cancelled", Duration::from_secs(30));

    // Clear errors: no token, a refused token, an unreachable server, a local command
    // without --as.
    let o = tether_cmd(&r.db).args(["runs", "--server", &url]).env_remove("TETHER_TOKEN").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", output(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("TETHER_TOKEN"), "{}", output(&o));
    let o = remote(&r, &url, "tether_not-a-token", &["runs"]);
    assert_eq!(o.status.code(), Some(2), "{}", output(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused the token"), "{}", output(&o));
    let o = remote(&r, "http://127.0.0.1:9", &alice, &["runs"]);
    assert_eq!(o.status.code(), Some(1), "{}", output(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach the server"), "{}", output(&o));
    let o = local(&r, &["approve", &second, "refund"]);
    assert_eq!(o.status.code(), Some(2), "{}", output(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--as NAME"), "{}", output(&o));
}
