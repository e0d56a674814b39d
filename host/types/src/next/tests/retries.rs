//! Failures, retries and run budgets in a flow. Whether a failure is retried, and when a
//! run pauses, is decided when the attempt ends (`after::after_attempt`, tested in
//! `after.rs`): the harness records what it decides, as the host does. The flow decides
//! from what is recorded.

use serde_json::json;

use crate::event::EventKind;
use crate::failure::{FailureClass, GuestFailureKind, StepFailure};
use crate::next::{Launch, Next};
use crate::state::PendingRetry;
use crate::testing::{failure, Run};

const RETRIED: &str = r#"
[[steps]]
name = "call"
component = "call.wasm"
retry = { max_attempts = 3, initial_backoff = "200ms", jitter = 0.0, on = ["trap", "transient"] }

[[steps]]
name = "after"
component = "after.wasm"
"#;

#[test]
fn a_retryable_failure_is_launched_again_with_its_backoff_and_the_next_attempt_number() {
    let mut run = Run::new(RETRIED, json!({"q": 1}));
    run.start(&["call"]);
    let not_before = run.fail("call", failure(FailureClass::Trap)).expect("a trap is retried");
    assert_eq!(not_before, run.now + 200_000);
    let inst = &run.state.instances["call"];
    assert_eq!((inst.failed.as_ref(), inst.attempts), (None, 1), "a scheduled retry is not a failure");
    assert_eq!(inst.retry, Some(PendingRetry { step: "call".into(), attempt: 2, not_before_us: not_before }));
    let retry = Launch {
        key: "call".into(),
        step: "call".into(),
        input: json!({"q": 1}),
        attempt: 2,
        resume: None,
        not_before_us: Some(not_before),
    };
    assert_eq!(run.next(), Next::Run(vec![retry.clone()]));
    // The launch carries the time; waiting for it is the host's (the answer is the same
    // before and after it).
    assert_eq!(run.flow.next(&run.state, &run.busy, not_before + 1), Next::Run(vec![retry]));
    run.start(&["call"]);
    assert_eq!(run.state.instances["call"].retry, None, "the attempt started");
    // The second wait doubles.
    let transient = StepFailure::from_guest(GuestFailureKind::Transient, "busy");
    assert_eq!(run.fail("call", transient), Some(run.now + 400_000));
    let third = run.start(&["call"]);
    assert_eq!(third[0].attempt, 3);
    run.complete("call", json!("ok"));
    let after = run.run(&["after"], |_| json!("done"));
    assert_eq!(after[0].input, json!("ok"));
    assert_eq!(run.next(), Next::Complete(json!("done")));
}

#[test]
fn the_last_attempts_failure_fails_the_run() {
    let mut run = Run::new(RETRIED, json!({}));
    for attempt in 1..=3 {
        let launches = run.start(&["call"]);
        assert_eq!(launches[0].attempt, attempt);
        let retried = run.fail("call", failure(FailureClass::Trap));
        assert_eq!(retried.is_some(), attempt < 3, "attempt {attempt}");
    }
    let Next::Fail(error) = run.next() else { panic!("expected the run to fail") };
    assert_eq!(
        (error.class, error.step.as_str(), error.message.as_str()),
        (FailureClass::Trap, "call", "it failed: trap")
    );
}

#[test]
fn a_failure_the_policy_does_not_retry_fails_the_run_at_once() {
    for f in [
        failure(FailureClass::FuelExhausted),
        failure(FailureClass::TimedOut),
        StepFailure::from_guest(GuestFailureKind::Internal, "bug"),
        StepFailure::from_guest(GuestFailureKind::Denied, "no"),
    ] {
        let mut run = Run::new(RETRIED, json!({}));
        run.start(&["call"]);
        assert_eq!(run.fail("call", f.clone()), None, "{f}");
        assert!(run.state.instances["call"].retry.is_none());
        let Next::Fail(error) = run.next() else { panic!("expected the run to fail after {f}") };
        assert_eq!((error.class, error.step.as_str()), (f.class, "call"));
    }
}

#[test]
fn no_step_starts_after_a_failure_while_others_finish() {
    let toml = r#"
[[steps]]
name = "a"
needs = []
component = "a.wasm"
[[steps]]
name = "b"
needs = []
component = "b.wasm"
[[steps]]
name = "d"
needs = ["b"]
component = "d.wasm"
"#;
    let mut run = Run::new(toml, json!({}));
    run.start(&["a", "b"]);
    run.fail("a", failure(FailureClass::Trap));
    let fail = run.next();
    assert!(matches!(&fail, Next::Fail(e) if e.step == "a"), "{fail:?}");
    run.complete("b", json!(1));
    assert_eq!(run.next(), fail, "d is ready but does not start");
}

const BUDGET: &str = r#"
[run]
budget = { fuel = 100, usage = { tokens = 10 } }

[[steps]]
name = "a"
component = "a.wasm"

[[steps]]
name = "b"
component = "b.wasm"
"#;

#[test]
fn a_run_budget_running_out_is_no_failure_and_the_step_gets_a_fresh_attempt() {
    let mut run = Run::new(BUDGET, json!({}));
    run.start(&["a"]);
    run.apply([EventKind::UsageReported { step: "a".into(), metric: "tokens".into(), amount: 4.0 }]);
    // The host names the run's budget as the cause (the step's own limits were clipped to it).
    run.busy.remove("a");
    run.apply([EventKind::StepFailed {
        step: "a".into(),
        attempt: 1,
        failure: failure(FailureClass::RunBudgetExceeded),
        fuel: 90,
        tool_fuel: 30,
        wall_us: 7,
        peak_memory: 0,
    }]);
    assert_eq!(run.state.instances["a"].failed, None);
    assert_eq!((run.state.used.fuel, run.state.used.wall_us, run.state.used.usage["tokens"]), (120, 7, 4.0));
    let budget = |run: &Run| run.state.plan.run_budget.raised(&run.state.raises).remaining(&run.state.used);
    assert_eq!(budget(&run).unwrap_err(), ("fuel".to_string(), 120.0, 100.0));
    // The host pauses the run; the core itself would launch the step again.
    run.apply([EventKind::RunPaused { step: "a".into(), exceeded: "fuel".into(), used: 120.0, limit: 100.0 }]);
    assert_eq!(run.state.paused, Some(("a".to_string(), "fuel".to_string())));
    let again = run.launches();
    assert_eq!((again[0].key.as_str(), again[0].attempt, again[0].resume.as_ref()), ("a", 2, None));
    // Resumed with the budget raised.
    run.apply([
        EventKind::RunResumed { pid: 1 },
        EventKind::BudgetRaised { metric: "fuel".into(), by: 50.0, requested_by: None },
    ]);
    assert_eq!(run.state.paused, None);
    assert_eq!(budget(&run).unwrap().fuel, Some(30));
    run.start(&["a"]);
    run.complete("a", json!("a"));
    run.run(&["b"], |_| json!("b"));
    assert_eq!(run.next(), Next::Complete(json!("b")));
}
