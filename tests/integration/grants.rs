//! Deny by default: nothing is reachable without a grant, and tools are charged to the step.

use serde_json::json;
use tether_types::{FailureClass, RunStatus};

use crate::support::{expect_failure, hostile, run};

#[test]
fn files_env_args_and_ungranted_tools_are_all_out_of_reach() {
    let r = run(&hostile("", ""), json!({"mode": "probe"}));
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    let o = &r.output;
    assert!(o["file"].as_str().unwrap().starts_with("Err"), "read /etc/passwd: {}", o["file"]);
    assert!(o["dir"].as_str().unwrap().starts_with("Err"), "read_dir(.): {}", o["dir"]);
    assert!(o["root"].as_str().unwrap().starts_with("Err"), "read_dir(/): {}", o["root"]);
    assert!(o["home"].is_null() && o["path"].is_null(), "env leaked: {o}");
    assert_eq!(o["env_count"], 0);
    assert_eq!(o["args"], 0);
    assert!(o["tool"].as_str().unwrap().contains("Denied"), "{}", o["tool"]);
}

#[test]
fn a_granted_tool_is_called_and_its_fuel_is_charged_to_the_run() {
    let r = run(&hostile("", ""), json!({"mode": "call-tool", "tool": "echo", "input": {"spin": 2_000_000}}));
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(r.output["tool_output"]["spun"], 2_000_000);
    let s = &r.steps[0].stats;
    assert_eq!(s.tool_calls.len(), 1);
    let call_fuel = s.tool_calls[0].fuel;
    assert!(call_fuel > 2_000_000, "a 2M-iteration loop costs more than 2M fuel: {call_fuel}");
    assert_eq!(s.tool_fuel, call_fuel);
    assert!(s.fuel < call_fuel, "the step's own fuel excludes the tool's");
    assert_eq!(r.totals.fuel, s.fuel + call_fuel, "the run total includes the tool");
}

#[test]
fn a_tool_cannot_spend_more_than_the_calling_step_has_left() {
    // The tool's own budget is large, but the step has only 20M fuel: the tool is cut
    // off at what the step has left, and the step then has nothing left either.
    let r = expect_failure(
        &hostile("fuel = 20_000_000", "fuel = 10_000_000_000"),
        json!({"mode": "call-tool", "tool": "echo", "input": {"spin": 100_000_000}}),
        FailureClass::FuelExhausted,
    );
    let s = &r.steps[0].stats;
    assert_eq!(s.tool_calls[0].outcome, "fuel_exhausted");
    assert!(s.total_fuel() <= 20_000_000, "charged {} of a 20M budget", s.total_fuel());
}

#[test]
fn tool_usage_and_logs_are_folded_into_the_step() {
    let r = run(&hostile("", ""), json!({"mode": "tool-flood", "n": 3}));
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    let s = &r.steps[0].stats;
    assert_eq!(s.tool_calls.len(), 3);
    assert_eq!(s.usage.get("echo_calls"), Some(&3.0));
    assert_eq!(r.totals.usage.get("echo_calls"), Some(&3.0));
}

#[test]
fn the_network_is_out_of_reach() {
    // A real listener on loopback: the guest knows its port but must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = run(&hostile("", ""), json!({"mode": "connect", "port": port}));
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert!(r.output["tcp"].as_str().unwrap().starts_with("Err"), "tcp connect: {}", r.output["tcp"]);
    assert!(r.output["udp"].as_str().unwrap().starts_with("Err"), "udp bind: {}", r.output["udp"]);
    let accepted = listener.accept();
    assert_eq!(accepted.err().map(|e| e.kind()), Some(std::io::ErrorKind::WouldBlock), "a connection arrived");
}

#[test]
fn a_symlink_may_not_point_outside_the_directory_it_is_made_from() {
    let dir = crate::support::fresh_dir("symlink-escape");
    std::fs::create_dir_all(dir.join("out/sub")).unwrap();
    let wf = crate::support::workflow(&format!(
        "name = \"links\"\n[[steps]]\nname = \"s\"\ncomponent = \"{{hostile}}\"\ndirs = [{{ host = {:?}, guest = \"/out\", write = true }}]\n",
        dir.join("out").display().to_string()
    ));
    let links = json!([
        ["data.txt", "/out/inside"],
        ["../data.txt", "/out/sub/up-but-inside"],
        ["../../../../../../etc/passwd", "/out/escape"],
        ["../secret", "/out/just-outside"],
        ["sub/../../secret", "/out/dotted"],
        ["/etc/passwd", "/out/absolute"],
    ]);
    let r = run(&wf, json!({"mode": "symlink", "links": links}));
    assert_eq!(r.error, None, "{r:?}");
    let results: Vec<String> = serde_json::from_value(r.output).unwrap();
    assert_eq!(results[..2], ["created", "created"], "{results:?}");
    for (k, name) in ["escape", "just-outside", "dotted", "absolute"].iter().enumerate() {
        assert_eq!(results[k + 2], "PermissionDenied", "{name}: {results:?}");
        assert!(std::fs::symlink_metadata(dir.join("out").join(name)).is_err(), "{name} was created");
    }
    assert_eq!(std::fs::read_link(dir.join("out/inside")).unwrap(), std::path::Path::new("data.txt"));
}

#[test]
fn a_guest_leaking_file_handles_is_stopped_at_the_handle_cap() {
    let dir = crate::support::fresh_dir("leak-handles");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/file"), "x").unwrap();
    let wf = crate::support::workflow(&format!(
        "name = \"leak\"\n[[steps]]\nname = \"s\"\ncomponent = \"{{hostile}}\"\ndirs = [{{ host = {:?}, guest = \"/out\" }}]\n",
        dir.join("out").display().to_string()
    ));
    // Below the cap the handles are there to use; past it the guest is stopped.
    let r = run(&wf, json!({"mode": "leak-handles", "n": 5000}));
    assert_eq!(r.error, None, "{r:?}");
    let r = run(&wf, json!({"mode": "leak-handles"}));
    let err = r.error.expect("a guest opening files forever must be stopped");
    assert_eq!(err.class, FailureClass::Trap, "{err:?}");
    assert_eq!(err.message, "held more than 10000 resource handles (files, streams, pollables) at once");
}
