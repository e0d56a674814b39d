//! How a failed or cancelled run ends (`undo`): what is undone, in what order, and the
//! last event, from hand-written journals.

use serde_json::{json, Value};

use crate::event::{EventKind, ToolResult};
use crate::failure::{FailureClass, GuestFailureKind};
use crate::next::undo::{undo, Compensation, Undo};
use crate::report::{RunError, RunStatus};
use crate::state::RunState;
use crate::testing::{completed, journal, plan, run_started, started};

const SAGA: &str = r#"
[tools.undo]
component = "undo.wasm"

[[steps]]
name = "search"
needs = []
component = "search.wasm"
for_each = "input.queries"
compensate = { tool = "undo" }

[loops.repair]
until = "steps.fix.ok"
max_iterations = 5

[[steps]]
name = "fix"
needs = ["search"]
loop = "repair"
component = "fix.wasm"
compensate = { component = "unfix.wasm" }

[[steps]]
name = "note"
needs = ["fix"]
component = "note.wasm"

[[steps]]
name = "ship"
needs = ["note"]
component = "ship.wasm"
compensate = { tool = "undo" }
"#;

/// The order the runs of steps completed in: fan-out items out of item order, loop
/// iterations, and a step without a compensation.
const DONE: [&str; 7] = ["search[1]", "search[0]", "search[2]", "fix#1", "fix#2", "fix#3", "note"];

fn error() -> RunError {
    RunError { class: FailureClass::Trap, step: "ship".into(), message: "it failed: trap".into() }
}

/// A run's state from its events after `run_started`.
fn state(events: Vec<EventKind>) -> RunState {
    let plan = plan(SAGA);
    let mut all = vec![run_started(&plan, json!({"queries": ["q0", "q1", "q2"]}))];
    all.extend(events);
    RunState::fold("r", &journal(all)).expect("the journal folds")
}

/// Each of `keys` started and completed, with its key as its input.
fn ran(keys: &[&str]) -> Vec<EventKind> {
    keys.iter().flat_map(|k| [started(k, 1, json!(k)), completed(k, 1, json!({"done": k}))]).collect()
}

fn compensated(step: &str, ok: bool) -> EventKind {
    let result = if ok {
        ToolResult::Ok(json!({"undone": step}))
    } else {
        ToolResult::Err {
            kind: GuestFailureKind::Internal,
            message: "gone".into(),
            class: Some(FailureClass::GuestError),
        }
    };
    EventKind::StepCompensated { step: step.into(), via: "tool:undo".into(), result, fuel: 0, wall_us: 0 }
}

/// Whether the step of `name` has a compensation, as the plan says.
fn compensates(state: &RunState) -> impl Fn(&str) -> bool + '_ {
    |name| state.plan.step(name).is_some_and(|s| s.compensate.is_some())
}

fn compensation<'a>(state: &'a RunState, error: &RunError) -> Compensation<'a> {
    match undo(state, error, compensates(state)) {
        Undo::Compensate(c) => c,
        Undo::Fail(event) => panic!("expected compensations, got {event:?}"),
    }
}

fn keys(c: &Compensation<'_>) -> Vec<String> {
    c.steps.iter().map(|(k, _, _)| k.clone()).collect()
}

#[test]
fn completed_steps_are_undone_in_reverse_order_of_completion_each_run_under_its_key() {
    let mut state = state(ran(&DONE));
    let c = compensation(&state, &error());
    assert_eq!(c.begin, Some(EventKind::CompensationBegun { error: error() }));
    assert_eq!(keys(&c), ["fix#3", "fix#2", "fix#1", "search[2]", "search[0]", "search[1]"], "`note` has none");
    let first: &(String, Value, Value) = c.steps[0];
    assert_eq!(first, &("fix#3".to_string(), json!("fix#3"), json!({"done": "fix#3"})), "with its input and output");
    let recorded: Vec<EventKind> = keys(&c).iter().map(|k| compensated(k, true)).collect();
    let (end, status) = c.end(&recorded);
    assert_eq!((end.clone(), status), (EventKind::RunCompensated { error: error() }, RunStatus::Compensated));
    for (seq, e) in
        [EventKind::CompensationBegun { error: error() }].into_iter().chain(recorded).chain([end]).enumerate()
    {
        state.apply(100 + seq as u64, &e).unwrap();
    }
    assert_eq!(state.outcome, Some(Err(error())));
}

#[test]
fn failed_compensations_are_named_in_the_runs_end() {
    let state = state(ran(&["search[0]", "fix#1", "ship"]));
    let c = compensation(&state, &error());
    assert_eq!(keys(&c), ["ship", "fix#1", "search[0]"]);
    let recorded = [compensated("ship", false), compensated("fix#1", true), compensated("search[0]", false)];
    let failed = vec!["ship".to_string(), "search[0]".into()];
    assert_eq!(
        c.end(&recorded),
        (EventKind::RunCompensationFailed { error: error(), failed }, RunStatus::CompensationFailed)
    );
}

#[test]
fn a_host_restarted_while_compensating_undoes_only_what_is_left() {
    let mut events = ran(&DONE);
    events.extend([
        EventKind::CompensationBegun { error: error() },
        compensated("fix#3", true),
        compensated("fix#2", false),
    ]);
    let state = state(events.clone());
    let c = compensation(&state, &error());
    assert_eq!(c.begin, None, "begun already");
    assert_eq!(keys(&c), ["fix#1", "search[2]", "search[0]", "search[1]"]);
    let recorded: Vec<EventKind> = keys(&c).iter().map(|k| compensated(k, k != "search[0]")).collect();
    let failed = vec!["fix#2".to_string(), "search[0]".into()];
    assert_eq!(c.end(&recorded).0, EventKind::RunCompensationFailed { error: error(), failed }, "before and since");
    // Restarted once every compensation ran, before the end was recorded.
    events.extend(["fix#1", "search[2]", "search[0]", "search[1]"].map(|k| compensated(k, true)));
    let state = self::state(events);
    let c = compensation(&state, &error());
    assert_eq!((c.begin.is_none(), c.steps.len()), (true, 0));
    let (end, status) = c.end(&[]);
    assert_eq!(end, EventKind::RunCompensationFailed { error: error(), failed: vec!["fix#2".into()] });
    assert_eq!(status, RunStatus::CompensationFailed);
}

#[test]
fn a_run_with_nothing_to_undo_just_fails() {
    let failed = Undo::Fail(EventKind::RunFailed { error: error() });
    let nothing = state(vec![]);
    assert_eq!(undo(&nothing, &error(), compensates(&nothing)), failed, "nothing completed");
    let uncompensated = state(ran(&["note"]));
    assert_eq!(undo(&uncompensated, &error(), compensates(&uncompensated)), failed, "no compensation");
    let everything = state(ran(&DONE));
    assert_eq!(undo(&everything, &error(), |_| false), failed, "none of the steps has one");
    // The steps' names, not their keys, say whether they have one.
    let c = compensation(&everything, &error());
    let only_fix = match undo(&everything, &error(), |name| name == "fix") {
        Undo::Compensate(c) => keys(&c),
        other => panic!("{other:?}"),
    };
    assert_eq!(only_fix, ["fix#3", "fix#2", "fix#1"]);
    assert_eq!(c.steps.len(), 6);
}

#[test]
fn a_cancelled_run_folds_to_its_cancel_and_undoes_what_it_completed() {
    let mut events = ran(&["search[0]", "search[1]", "search[2]"]);
    // `fix#1` was running: its attempt stays open, and there is nothing of it to undo.
    events.push(started("fix#1", 1, json!("fix#1")));
    events.push(EventKind::RunCancelled { by: "alice".into(), reason: Some("wrong queries".into()) });
    let mut state = state(events.clone());
    assert_eq!(state.cancelled, Some(("alice".to_string(), Some("wrong queries".to_string()))));
    assert_eq!(state.outcome, None, "not over until it is undone");
    let cancel = state.cancel_error().expect("cancelled");
    assert_eq!(
        cancel,
        RunError {
            class: FailureClass::Cancelled,
            step: "-".into(),
            message: "cancelled by alice: wrong queries".into()
        }
    );
    let c = compensation(&state, &cancel);
    assert_eq!(c.begin, Some(EventKind::CompensationBegun { error: cancel.clone() }));
    assert_eq!(keys(&c), ["search[2]", "search[1]", "search[0]"]);
    // Restarted after the first compensation: the rest, and the cancel stays the error.
    events.extend([EventKind::CompensationBegun { error: cancel.clone() }, compensated("search[2]", true)]);
    let restarted = self::state(events);
    let begun = restarted.compensating.clone().expect("begun");
    assert_eq!(begun.error, cancel);
    let rest = compensation(&restarted, &begun.error);
    assert_eq!((rest.begin.clone(), keys(&rest)), (None, vec!["search[1]".to_string(), "search[0]".into()]));
    let recorded = [compensated("search[1]", true), compensated("search[0]", true)];
    let (end, status) = rest.end(&recorded);
    assert_eq!((end.clone(), status), (EventKind::RunCompensated { error: cancel.clone() }, RunStatus::Compensated));
    state.apply(100, &end).unwrap();
    assert_eq!(state.outcome, Some(Err(cancel)));
}

#[test]
fn a_cancelled_run_with_nothing_to_undo_ends_failed_with_its_cancel() {
    let mut events = ran(&["note"]);
    let mut state = state(events.clone());
    assert_eq!((state.cancelled.as_ref(), state.cancel_error()), (None, None), "not cancelled");
    events.push(EventKind::RunCancelled { by: "bob".into(), reason: None });
    state = self::state(events);
    let cancel = state.cancel_error().expect("cancelled");
    assert_eq!((cancel.class, cancel.message.as_str()), (FailureClass::Cancelled, "cancelled by bob"));
    let Undo::Fail(end) = undo(&state, &cancel, compensates(&state)) else { panic!("nothing to undo") };
    assert_eq!(end, EventKind::RunFailed { error: cancel.clone() });
    state.apply(100, &end).unwrap();
    assert_eq!(state.outcome, Some(Err(cancel)));
}
