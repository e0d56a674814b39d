//! What follows an attempt's end (`after::after_attempt`), from hand-written outcomes:
//! the end event, retries with their seeded jitter, and run budgets that pause the run.

use std::time::Duration;

use serde_json::json;

use crate::event::EventKind;
use crate::failure::{FailureClass, GuestFailureKind, StepFailure};
use crate::next::after::{after_attempt, end_event, exhausted, After, Ended};
use crate::report::StepStats;
use crate::retry::{jitter_unit, RetryOn, RetryPolicy};
use crate::run_budget::Capped;
use crate::testing::{failure, started, Run, RUN};

const NOW: u64 = 5_000_000;

fn stats() -> StepStats {
    StepStats { fuel: 40, tool_fuel: 2, wall_us: 300, peak_memory: 65_536, ..StepStats::default() }
}

/// Three attempts, a constant 1 s wait before jitter (up to half of it): only the jitter
/// tells attempts apart.
fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_secs(1),
        multiplier: 1.0,
        jitter: 0.5,
        on: vec![RetryOn::Trap, RetryOn::TimedOut, RetryOn::Transient],
        ..RetryPolicy::default()
    }
}

fn after(run: &str, key: &str, attempt: u32, outcome: Result<serde_json::Value, StepFailure>) -> After {
    after_with(&policy(), run, key, attempt, outcome, Capped::default())
}

fn after_with(
    retry: &RetryPolicy,
    run: &str,
    key: &str,
    attempt: u32,
    outcome: Result<serde_json::Value, StepFailure>,
    capped: Capped,
) -> After {
    let stats = stats();
    let ended = Ended { run, key, attempt, outcome, stats: &stats, capped };
    after_attempt(retry, ended, NOW).expect("not a wait for approval")
}

fn failed(key: &str, attempt: u32, failure: StepFailure) -> EventKind {
    EventKind::StepFailed {
        step: key.into(),
        attempt,
        failure,
        fuel: 40,
        tool_fuel: 2,
        wall_us: 300,
        peak_memory: 65_536,
    }
}

#[test]
fn a_completed_attempt_records_its_end_with_its_stats_and_nothing_else() {
    let a = after(RUN, "search[2]", 1, Ok(json!({"hits": 3})));
    let completed = EventKind::StepCompleted {
        step: "search[2]".into(),
        attempt: 1,
        output: json!({"hits": 3}),
        fuel: 40,
        tool_fuel: 2,
        wall_us: 300,
        peak_memory: 65_536,
    };
    assert_eq!(
        a,
        After { events: vec![completed.clone()], outcome: Ok(json!({"hits": 3})), retry_in: None, pause: None }
    );
    assert_eq!(end_event("search[2]", 1, &Ok(json!({"hits": 3})), &stats()), completed);
}

#[test]
fn a_retried_failure_schedules_the_next_attempt_after_its_seeded_backoff() {
    let trap = failure(FailureClass::Trap);
    let a = after(RUN, "fix#3", 1, Err(trap.clone()));
    let backoff = policy().backoff_for(RUN, "fix#3", 1);
    assert_eq!(a.retry_in, Some(backoff));
    assert_eq!(
        a.events,
        vec![
            failed("fix#3", 1, trap.clone()),
            EventKind::RetryScheduled {
                step: "fix#3".into(),
                attempt: 2,
                not_before_us: NOW + backoff.as_micros() as u64,
                backoff_ms: backoff.as_millis() as u64,
            },
        ]
    );
    assert_eq!((a.outcome, a.pause), (Err(trap.clone()), None));
    // The jitter takes off at most half of the second, as drawn from the run, the key
    // and the attempt.
    assert!(backoff > Duration::from_millis(500) && backoff <= Duration::from_secs(1), "{backoff:?}");
    assert_eq!(backoff, policy().backoff(1, jitter_unit(RUN, "fix#3", 1)));
    // The same failure waits the same, on any host; another attempt, key or run does not.
    assert_eq!(after(RUN, "fix#3", 1, Err(trap.clone())).retry_in, Some(backoff));
    let others = [
        after(RUN, "fix#3", 2, Err(trap.clone())).retry_in,
        after(RUN, "fix#2", 1, Err(trap.clone())).retry_in,
        after("run_other", "fix#3", 1, Err(trap)).retry_in,
    ];
    assert!(others.iter().all(|o| o.is_some_and(|d| d != backoff)), "{backoff:?} {others:?}");
}

#[test]
fn the_last_attempt_is_not_retried() {
    let transient = StepFailure::from_guest(GuestFailureKind::Transient, "busy");
    let second = after(RUN, "call", 2, Err(transient.clone()));
    assert_eq!(second.events.len(), 2, "attempt 2 of 3 is retried");
    let last = after(RUN, "call", 3, Err(transient.clone()));
    assert_eq!(last.events, vec![failed("call", 3, transient)]);
    assert_eq!(last.retry_in, None);
    let once = RetryPolicy::default();
    let only = after_with(&once, RUN, "call", 1, Err(failure(FailureClass::Trap)), Capped::default());
    assert_eq!((only.events.len(), only.retry_in), (1, None), "by default a step has one attempt");
}

#[test]
fn classes_the_policy_does_not_take_are_not_retried_and_keep_their_class() {
    for f in [
        failure(FailureClass::FuelExhausted),
        failure(FailureClass::ToolBudgetExceeded),
        failure(FailureClass::InvalidInput),
        failure(FailureClass::HostFault),
        StepFailure::from_guest(GuestFailureKind::Internal, "bug"),
        StepFailure::from_guest(GuestFailureKind::Denied, "no"),
    ] {
        let a = after(RUN, "call", 1, Err(f.clone()));
        assert_eq!(a.events, vec![failed("call", 1, f.clone())], "{f}");
        assert_eq!((a.outcome, a.retry_in, a.pause), (Err(f), None, None));
    }
}

#[test]
fn a_failure_the_run_budget_explains_pauses_the_run_and_is_not_retried() {
    let timed_out = failure(FailureClass::TimedOut);
    // The step's own wall time: retried like any timeout.
    assert!(after(RUN, "call", 1, Err(timed_out.clone())).retry_in.is_some());
    // Its wall time clipped to what the run had left: the run's budget ran out.
    let clipped = Capped { wall_time: true, ..Capped::default() };
    let a = after_with(&policy(), RUN, "call", 1, Err(timed_out.clone()), clipped);
    let as_recorded = StepFailure { class: FailureClass::RunBudgetExceeded, ..timed_out };
    assert_eq!(a.events, vec![failed("call", 1, as_recorded.clone())]);
    assert_eq!((a.outcome, a.retry_in), (Err(as_recorded), None));
    assert_eq!(a.pause, Some(("wall_time".to_string(), 0.0, 0.0)), "named, without figures");
    // Fuel and tool calls likewise; a limit that was not clipped is the step's own.
    let fuel = Capped { fuel: true, ..Capped::default() };
    let out_of_fuel = after_with(&policy(), RUN, "call", 1, Err(failure(FailureClass::FuelExhausted)), fuel);
    assert_eq!(out_of_fuel.pause.map(|p| p.0), Some("fuel".to_string()));
    let tools = after_with(&policy(), RUN, "call", 1, Err(failure(FailureClass::ToolBudgetExceeded)), fuel);
    assert_eq!((tools.pause, tools.outcome.unwrap_err().class), (None, FailureClass::ToolBudgetExceeded));
    // A reported metric running out is the run's budget whatever was clipped.
    let usage = after(RUN, "call", 1, Err(failure(FailureClass::RunBudgetExceeded)));
    assert_eq!((usage.pause.map(|p| p.0), usage.retry_in), (Some("usage".to_string()), None));
    // A success is never the budget's doing.
    assert_eq!(after_with(&policy(), RUN, "call", 1, Ok(json!(1)), clipped).pause, None);
}

#[test]
fn an_attempt_stopped_in_a_tool_call_for_approval_records_nothing() {
    let stats = stats();
    let waiting = failure(FailureClass::AwaitingApproval);
    let ended =
        Ended { run: RUN, key: "pay", attempt: 1, outcome: Err(waiting), stats: &stats, capped: Capped::default() };
    assert_eq!(after_attempt(&policy(), ended, NOW), None);
}

const BUDGET: &str = r#"
[run]
budget = { fuel = 100, usage = { tokens = 10 } }

[[steps]]
name = "a"
component = "a.wasm"
retry = { max_attempts = 3, on = ["trap"] }
"#;

#[test]
fn a_paused_run_names_what_ran_out_with_its_figures_and_how_to_raise_it() {
    let mut run = Run::new(BUDGET, json!({}));
    run.start(&["a"]);
    run.busy.remove("a");
    let fuel = Capped { fuel: true, ..Capped::default() };
    let retry = run.state.plan.steps[0].retry.clone();
    let a = after_with(&retry, RUN, "a", 1, Err(failure(FailureClass::FuelExhausted)), fuel);
    run.apply(a.events);
    let named = a.pause.expect("the run pauses");
    // The totals show the limit used up (40 + 2 of 100 is not): the name as given.
    assert_eq!(exhausted(&run.state, named.clone()), named);
    run.start(&["a"]);
    run.busy.remove("a");
    run.apply([EventKind::StepCompleted {
        step: "a".into(),
        attempt: 2,
        output: json!(1),
        fuel: 60,
        tool_fuel: 0,
        wall_us: 1,
        peak_memory: 0,
    }]);
    assert_eq!(exhausted(&run.state, named), ("fuel".to_string(), 102.0, 100.0), "the totals' figures");
    assert_eq!(run.state.paused_error(), None, "not paused yet");
    run.apply([EventKind::RunPaused { step: "a".into(), exceeded: "fuel".into(), used: 102.0, limit: 100.0 }]);
    let error = run.state.paused_error().expect("paused");
    assert_eq!((error.class, error.step.as_str()), (FailureClass::RunBudgetExceeded, "a"));
    assert_eq!(error.message, "the run's `fuel` budget is used up");
    run.apply([EventKind::RunResumed { pid: 1 }]);
    assert_eq!(run.state.paused_error(), None);
}

#[test]
fn a_run_budget_failure_leaves_the_step_to_run_again_while_the_step_own_fails_it() {
    let mut run = Run::new(BUDGET, json!({}));
    run.start(&["a"]);
    run.busy.remove("a");
    let retry = run.state.plan.steps[0].retry.clone();
    let wall = Capped { wall_time: true, ..Capped::default() };
    let a = after_with(&retry, RUN, "a", 1, Err(failure(FailureClass::TimedOut)), wall);
    run.apply(a.events);
    assert_eq!(run.state.instances["a"].failed, None, "no failure of the step's");
    assert_eq!(run.launches()[0].attempt, 2, "it runs again (once the run is resumed)");
    run.apply([started("a", 2, json!({}))]);
    let own = after_with(&retry, RUN, "a", 2, Err(failure(FailureClass::TimedOut)), Capped::default());
    assert_eq!(own.events.len(), 1, "timeouts are not in this step's `on`");
    run.apply(own.events);
    assert_eq!(run.state.instances["a"].failed.as_ref().map(|f| f.class), Some(FailureClass::TimedOut));
}
