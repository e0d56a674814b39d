//! One test per failure class: the class is right, and the host keeps working after it.

use std::time::{Duration, Instant};

use serde_json::json;
use tether_types::{FailureClass, GuestFailureKind, LogLevel};

use crate::support::{assert_host_still_works, expect_failure, hostile, run};

#[test]
fn guest_error_carries_the_guests_kind_and_message() {
    let r = expect_failure(&hostile("", ""), json!({"mode": "fail"}), FailureClass::GuestError);
    let step = &r.steps[0];
    let f = step.error.as_ref().unwrap();
    assert_eq!(f.guest_kind, Some(GuestFailureKind::Transient));
    assert_eq!(f.message, "upstream model unavailable");
    assert_host_still_works();
}

#[test]
fn a_panic_is_a_trap_that_quotes_the_panic_message() {
    let r = expect_failure(&hostile("", ""), json!({"mode": "panic"}), FailureClass::Trap);
    let msg = &r.error.as_ref().unwrap().message;
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(msg.contains("hostile step panicked on purpose"), "{msg}");
    assert_host_still_works();
}

#[test]
fn deep_recursion_is_a_stack_overflow_trap() {
    let r = expect_failure(&hostile("", ""), json!({"mode": "recursion"}), FailureClass::Trap);
    assert!(r.error.unwrap().message.contains("stack overflow"));
    assert_host_still_works();
}

#[test]
fn overflowing_the_shadow_stack_in_linear_memory_is_a_trap() {
    // Rust keeps address-taken locals on a stack inside linear memory; running off its
    // end is an out-of-bounds access, not a wasm stack overflow.
    let r = expect_failure(&hostile("", ""), json!({"mode": "shadow-recursion"}), FailureClass::Trap);
    assert!(r.error.unwrap().message.contains("out of bounds memory access"));
    assert_host_still_works();
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let r = expect_failure(
        &hostile("fuel = 50_000_000, wall_time = \"60s\"", ""),
        json!({"mode": "loop"}),
        FailureClass::FuelExhausted,
    );
    let stats = &r.steps[0].stats;
    // All of the budget was used, and no more.
    assert!(stats.fuel > 49_000_000 && stats.fuel <= 50_000_000, "fuel used: {}", stats.fuel);
    assert_host_still_works();
}

#[test]
fn an_infinite_loop_is_stopped_by_the_wall_clock() {
    let start = Instant::now();
    let r = expect_failure(
        &hostile("fuel = 1_000_000_000_000, wall_time = \"200ms\"", ""),
        json!({"mode": "loop"}),
        FailureClass::TimedOut,
    );
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert!(r.steps[0].stats.wall_us >= 200_000);
    assert_host_still_works();
}

#[test]
fn a_guest_blocked_in_a_host_call_is_stopped_by_the_wall_clock() {
    let start = Instant::now();
    expect_failure(
        &hostile("wall_time = \"300ms\"", ""),
        json!({"mode": "sleep", "ms": 60_000}),
        FailureClass::TimedOut,
    );
    assert!(start.elapsed() < Duration::from_secs(5), "a 60 s sleep was not cut short: {:?}", start.elapsed());
    assert_host_still_works();
}

#[test]
fn a_step_waiting_on_a_slow_tool_is_stopped_by_its_own_wall_clock() {
    let start = Instant::now();
    expect_failure(
        &hostile("wall_time = \"300ms\"", "wall_time = \"60s\""),
        json!({"mode": "call-tool", "tool": "echo", "input": {"sleep_ms": 60_000}}),
        FailureClass::TimedOut,
    );
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert_host_still_works();
}

#[test]
fn growing_memory_past_the_budget_is_memory_exceeded() {
    let r = expect_failure(&hostile("memory = \"16MiB\"", ""), json!({"mode": "memory"}), FailureClass::MemoryExceeded);
    let stats = &r.steps[0].stats;
    assert!(stats.peak_memory <= 16 << 20, "peak {}", stats.peak_memory);
    assert!(stats.peak_memory > 8 << 20, "the hog did grow first: peak {}", stats.peak_memory);
    assert!(r.error.unwrap().message.contains("16.0 MiB"));
    assert_host_still_works();
}

#[test]
fn too_many_tool_calls_is_tool_budget_exceeded() {
    let r = expect_failure(
        &hostile("tool_calls = 5", ""),
        json!({"mode": "tool-flood", "n": 10_000}),
        FailureClass::ToolBudgetExceeded,
    );
    let stats = &r.steps[0].stats;
    assert_eq!(stats.tool_calls.len(), 5, "exactly the budgeted calls ran");
    assert!(stats.tool_calls.iter().all(|c| c.outcome == "ok"));
    assert_host_still_works();
}

#[test]
fn output_above_the_budget_is_output_too_large() {
    let r = expect_failure(
        &hostile("output = \"1MiB\", memory = \"64MiB\"", ""),
        json!({"mode": "huge-output", "mib": 2}),
        FailureClass::OutputTooLarge,
    );
    assert!(r.error.unwrap().message.contains("the output budget is 1048576 bytes"));

    // Far above the budget, wasmtime's own copy limit stops it before the host sees the
    // whole string; that is classified the same way.
    let r = expect_failure(
        &hostile("output = \"1MiB\", memory = \"64MiB\"", ""),
        json!({"mode": "huge-output", "mib": 8}),
        FailureClass::OutputTooLarge,
    );
    assert!(r.error.unwrap().message.contains("more than"), "names the limit");
    assert_host_still_works();
}

#[test]
fn output_that_is_not_json_is_invalid_output() {
    let r = expect_failure(&hostile("", ""), json!({"mode": "invalid-output"}), FailureClass::InvalidOutput);
    assert!(r.error.unwrap().message.contains("this is {not json"));
    assert_host_still_works();
}

#[test]
fn returning_a_denied_tool_call_is_denied() {
    let r = expect_failure(&hostile("", ""), json!({"mode": "ungranted-tool"}), FailureClass::Denied);
    let stats = &r.steps[0].stats;
    assert_eq!(stats.tool_calls.len(), 1);
    assert_eq!(stats.tool_calls[0].outcome, "denied");
    assert!(r.error.unwrap().message.contains("tool `secret-tool` is not granted to step `misbehave`"));
    assert_host_still_works();
}

#[test]
fn an_invalid_usage_report_is_a_trap() {
    let r = expect_failure(&hostile("", ""), json!({"mode": "bad-usage"}), FailureClass::Trap);
    assert!(r.error.unwrap().message.contains("invalid usage report"));
    assert_host_still_works();
}

#[test]
fn output_the_host_cannot_read_exactly_is_invalid_output_never_null() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for text in [deep.as_str(), "\"\\ud800\"", "1e999", "{\"a\": 1e999}"] {
        let r =
            expect_failure(&hostile("", ""), json!({"mode": "raw-output", "text": text}), FailureClass::InvalidOutput);
        assert_eq!(r.output, serde_json::Value::Null);
        assert!(r.error.unwrap().message.contains("not JSON tether accepts"), "{text}");
    }
    // The same shapes within the limits are accepted as they are.
    let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let r = run(&hostile("", ""), json!({"mode": "raw-output", "text": fine}));
    assert_eq!(r.output.to_string(), fine);
}

#[test]
fn usage_amounts_are_bounded_so_no_total_can_overflow() {
    // Two reports of 1.5e308 would make any total infinite: the first is refused.
    for amount in [1.5e308, 1.1e15] {
        let input = json!({"mode": "bad-usage", "amount": amount, "times": 2});
        let r = expect_failure(&hostile("", ""), input, FailureClass::Trap);
        let message = r.error.unwrap().message;
        assert!(message.contains("must be a number from 0 to 1e15"), "{message}");
        assert!(r.steps[0].stats.usage.values().all(|v| v.is_finite()), "{:?}", r.steps[0].stats.usage);
    }
    // 10,000 reports per attempt at most: each is a journal event.
    let r = expect_failure(&hostile("", ""), json!({"mode": "usage-flood", "n": 10_001}), FailureClass::Trap);
    assert!(r.error.unwrap().message.contains("more than 10000 usage reports in one attempt"));
    assert_eq!(run(&hostile("", ""), json!({"mode": "usage-flood", "n": 10_000})).error, None);
    // The largest amount is accepted, and adds up.
    let r = run(&hostile("", ""), json!({"mode": "bad-usage", "amount": 1e15, "times": 3}));
    assert_eq!(r.error, None);
    assert_eq!(r.steps[0].stats.usage["tokens"], 3e15);
}

#[test]
fn tool_input_that_is_not_json_is_refused_without_running_the_tool() {
    // Not JSON at all, and JSON no tool could read as it was sent (a number beyond f64).
    for text in [None, Some("{\"amount\": 1e999}")] {
        let mut input = json!({"mode": "call-tool-invalid-json"});
        if let Some(text) = text {
            input["text"] = json!(text);
        }
        let r = run(&hostile("", ""), input);
        assert_eq!(r.output["error"].as_str().unwrap().split(':').next(), Some("tool input is not JSON"), "{text:?}");
        assert_eq!(r.steps[0].stats.tool_calls[0].outcome, "invalid_input");
        assert_eq!(r.steps[0].stats.tool_fuel, 0);
    }
}

#[test]
fn stdout_and_stderr_are_captured_as_log_lines_and_capped() {
    let r = run(&hostile("", ""), json!({"mode": "stdout", "lines": 3}));
    let logs = &r.steps[0].stats.logs;
    assert!(logs.iter().any(|l| l.stream == "stdout" && l.message == "stdout line 2"));
    assert!(logs.iter().any(|l| l.stream == "stderr" && l.message == "stderr line 0" && l.level == LogLevel::Warn));

    // 100k lines is ~1.6 MB per stream: kept up to the cap, the rest counted, never a trap.
    let r = run(&hostile("", ""), json!({"mode": "stdout", "lines": 100_000}));
    assert!(r.error.is_none(), "{:?}", r.error);
    let logs = &r.steps[0].stats.logs;
    assert!(logs.iter().any(|l| l.message.contains("more bytes of stdout dropped")), "truncation is recorded");
}

#[test]
fn log_lines_are_capped_and_the_drop_is_counted() {
    let r = run(&hostile("", ""), json!({"mode": "log-flood", "n": 5_000}));
    let stats = &r.steps[0].stats;
    // 1,000 lines kept, then the host's notice of the rest.
    assert_eq!(stats.logs.len(), 1001);
    assert_eq!(stats.logs_dropped, 4000);
    assert_eq!(stats.logs[1000].message, "[4000 more log lines dropped: the cap is 1000 lines per attempt]");
}

#[test]
fn a_run_input_that_is_not_json_is_invalid_input() {
    let wf = hostile("", "");
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let id = tether_types::RunId::from_suffix("bad-input").unwrap();
    let r = rt.block_on(tether_tests::runtime().run_workflow(&wf, id, "{not json", |_| {}));
    let e = r.error.unwrap();
    assert_eq!(e.class, FailureClass::InvalidInput);
    assert!(e.message.contains("the run input is not JSON"), "{}", e.message);
}

#[test]
fn running_out_of_sandboxes_is_a_host_fault_not_the_guests() {
    // A runtime with room for two sandboxes at once; three sleeping steps need three.
    let small = tether_runtime::Runtime::new(tether_runtime::RuntimeConfig {
        cache_dir: Some(tether_tests::cache_dir()),
        max_sandboxes: 2,
        ..Default::default()
    })
    .unwrap();
    let text = format!(
        "name = \"t\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\nbudget = {{ wall_time = \"2s\" }}\n",
        tether_tests::artifacts::HOSTILE
    );
    let wf = small
        .load_workflow(tether_types::Workflow::parse("t.toml", &text).unwrap(), std::path::Path::new("/"))
        .unwrap();
    let step = &wf.steps[0];
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let input = json!({"mode": "sleep", "ms": 300}).to_string();
    let runs = rt.block_on(async {
        tokio::join!(small.run_step(step, &input), small.run_step(step, &input), small.run_step(step, &input))
    });
    let classes: Vec<_> =
        [&runs.0, &runs.1, &runs.2].iter().map(|r| r.output.as_ref().err().map(|f| f.class)).collect();
    assert_eq!(classes.iter().filter(|c| c.is_none()).count(), 2, "two steps got a sandbox: {classes:?}");
    assert_eq!(classes.iter().filter(|c| **c == Some(FailureClass::HostFault)).count(), 1, "{classes:?}");
    let fault = [runs.0, runs.1, runs.2].into_iter().find_map(|r| r.output.err()).unwrap();
    assert!(fault.message.starts_with("could not create the sandbox"), "{}", fault.message);
}

/// A step component with two memories of `pages` 64 KiB pages each, written in WAT;
/// `run` returns `ok("{}")`.
fn two_memory_step(pages: u32) -> std::path::PathBuf {
    let wat = format!(
        r#"(component
  (core module $m
    (memory (export "memory") {pages})
    (memory $second {pages})
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "run") (param i32 i32) (result i32)
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (i32.const 16))
      (i32.store (i32.const 8) (i32.const 2))
      (i32.store16 (i32.const 16) (i32.const 0x7d7b))
      (i32.const 0)))
  (core instance $i (instantiate $m))
  (type $kind (enum "invalid-input" "not-found" "denied" "transient" "internal"))
  (export $kind-e "failure-kind" (type $kind))
  (type $failure (record (field "kind" $kind-e) (field "message" string)))
  (export $failure-e "failure" (type $failure))
  (func $run (param "input" string) (result (result string (error $failure-e)))
    (canon lift (core func $i "run") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (instance $step (export "failure-kind" (type $kind-e)) (export "failure" (type $failure-e)) (export "run" (func $run)))
  (export "tether:plugin/step@0.1.0" (instance $step)))"#
    );
    let dir = tether_tests::repo_root().join("target").join("wat-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("two-memories-{pages}.wasm"));
    std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
    path
}

#[test]
fn the_memory_budget_is_a_total_across_all_memories() {
    // Two memories of 40 MiB: each fits a 64 MiB budget, together they do not.
    let path = two_memory_step(640);
    let wf = |budget: &str| {
        crate::support::workflow(&format!(
            "name = \"m\"\n[[steps]]\nname = \"s\"\ncomponent = {:?}\nbudget = {{ memory = \"{budget}\" }}\n",
            path.display().to_string()
        ))
    };
    let r = expect_failure(&wf("64MiB"), json!({}), FailureClass::MemoryExceeded);
    assert!(r.error.unwrap().message.contains("80.0 MiB in total"));
    let r = run(&wf("96MiB"), json!({}));
    assert_eq!(r.error, None);
    assert_eq!(r.steps[0].stats.peak_memory, 80 << 20);
    assert_host_still_works();
}
