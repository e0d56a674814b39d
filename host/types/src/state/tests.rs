//! The fold alone: malformed journals, compensation bookkeeping, and a folded journal
//! giving the state its events built one by one.

use serde_json::json;

use super::{Compensating, FoldError, RunState};
use crate::event::{EventKind, HostRead, ToolResult};
use crate::failure::{FailureClass, GuestFailureKind};
use crate::next::Next;
use crate::report::RunError;
use crate::testing::{completed, failure, journal, plan, run_started, started, Run};

const TWO: &str = "[[steps]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[steps]]\nname = \"b\"\ncomponent = \"b.wasm\"\n";

fn fold_error(kinds: Vec<EventKind>) -> FoldError {
    RunState::fold("r", &journal(kinds)).expect_err("the journal must be refused")
}

fn read(step: &str) -> EventKind {
    EventKind::HostRead { step: step.into(), read: HostRead::Random { hex: "00".into() } }
}

#[test]
fn malformed_journals_are_refused_with_the_event_and_the_reason() {
    let plan = plan(TWO);
    let start = || run_started(&plan, json!({}));
    let empty = RunState::fold("r", &[]).unwrap_err();
    assert_eq!(empty.to_string(), "run r: event 0: the run has no events");
    let headless = fold_error(vec![EventKind::RunCompleted { output: json!(1) }]);
    assert_eq!(headless.to_string(), "run r: event 1: the first event is not run_started");
    let twice = fold_error(vec![start(), start()]);
    assert_eq!(twice, FoldError { run: "r".into(), seq: 2, reason: "a second run_started".into() });
    let stray = fold_error(vec![start(), read("a")]);
    assert_eq!(stray.to_string(), "run r: event 2: an interaction outside any open attempt of its step");
    let late = fold_error(vec![start(), started("a", 1, json!({})), completed("a", 1, json!(1)), read("a")]);
    assert_eq!((late.seq, late.reason.as_str()), (4, "an interaction outside any open attempt of its step"));
    let elsewhere = fold_error(vec![start(), started("a", 1, json!({})), read("b")]);
    assert_eq!(elsewhere.seq, 3, "b has no open attempt, a's does not count");
    let bad_plan = fold_error(vec![EventKind::RunStarted {
        workflow: "t".into(),
        workflow_digest: String::new(),
        plan: json!({"workflow": "t", "steps": "none"}),
        input: json!({}),
        identity: "bot".into(),
        origin: None,
    }]);
    assert_eq!(bad_plan.seq, 1);
    assert!(bad_plan.reason.starts_with("bad plan: "), "{}", bad_plan.reason);
    // An attempt or a skip of a step the plan does not have is another run's journal.
    let stranger = fold_error(vec![start(), started("c[2]", 1, json!({}))]);
    assert_eq!(
        (stranger.seq, stranger.reason.as_str()),
        (2, "step_attempt_started names step `c[2]`, which the run's plan does not have")
    );
    let skipped = fold_error(vec![start(), EventKind::StepSkipped { step: "zz".into(), reason: "no".into() }]);
    assert!(skipped.reason.contains("names step `zz`"), "{}", skipped.reason);
    // Runs of a step of the plan are its own.
    assert!(RunState::fold("r", &journal(vec![start(), started("a#2", 1, json!({}))])).is_ok());
}

#[test]
fn a_folded_journal_is_the_state_its_events_built_one_by_one() {
    let mut run = Run::new(TWO, json!({"x": 1}));
    run.start(&["a"]);
    run.apply([read("a")]);
    run.complete("a", json!({"y": 2}));
    run.start(&["b"]);
    let mut kinds = vec![run_started(&run.state.plan, json!({"x": 1}))];
    kinds.extend(run.journal.iter().cloned());
    let events = journal(kinds);
    let folded = RunState::fold("r", &events).unwrap();
    let last = events.last().unwrap();
    assert_eq!(folded.last, (last.seq, last.hash.clone()));
    assert_eq!(RunState { last: folded.last.clone(), ..run.state.clone() }, folded);
    assert_eq!(folded.instances["b"].open.as_ref().map(|o| &o.input), Some(&json!({"y": 2})));
}

#[test]
fn a_plan_recorded_before_needs_existed_chains_its_steps() {
    let plan = plan(TWO);
    let mut recorded = serde_json::to_value(&plan).unwrap();
    for step in recorded["steps"].as_array_mut().unwrap() {
        step.as_object_mut().unwrap().remove("needs");
    }
    let start = EventKind::RunStarted {
        workflow: "t".into(),
        workflow_digest: plan.digest(),
        plan: recorded,
        input: json!({}),
        identity: "bot".into(),
        origin: None,
    };
    let state = RunState::fold("r", &journal(vec![start])).unwrap();
    assert_eq!(state.plan.needs_of("a"), &[] as &[String]);
    assert_eq!(state.plan.needs_of("b"), &["a".to_string()]);
}

const SAGA: &str = r#"
[tools.undo]
component = "undo.wasm"

[[steps]]
name = "book"
needs = []
component = "book.wasm"
for_each = "input.hotels"
compensate = { tool = "undo" }

[[steps]]
name = "charge"
component = "charge.wasm"
compensate = { component = "refund.wasm" }

[[steps]]
name = "notify"
component = "notify.wasm"
"#;

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

#[test]
fn compensation_is_tracked_across_the_steps_it_undoes() {
    let mut run = Run::new(SAGA, json!({"hotels": ["h1", "h2"]}));
    run.record();
    run.start(&["book[0]", "book[1]"]);
    run.complete("book[1]", json!("b1"));
    run.complete("book[0]", json!("b0"));
    run.record();
    run.run(&["charge"], |_| json!("c"));
    run.start(&["notify"]);
    run.fail("notify", failure(FailureClass::Trap));
    // What completed, in order of completion, each run of a step under its own key.
    let keys: Vec<(&str, &serde_json::Value)> = run.state.completed.iter().map(|(k, i, _)| (k.as_str(), i)).collect();
    assert_eq!(keys, [("book[1]", &json!("h2")), ("book[0]", &json!("h1")), ("charge", &json!(["b0", "b1"]))]);
    // The core says the run fails; the host decides what to undo, and journals it.
    let Next::Fail(error) = run.next() else { panic!("expected the run to fail") };
    assert_eq!(error, RunError { class: FailureClass::Trap, step: "notify".into(), message: "it failed: trap".into() });
    run.apply([EventKind::CompensationBegun { error: error.clone() }]);
    let begun = Compensating { error: error.clone(), done: vec![], failed: vec![] };
    assert_eq!(run.state.compensating, Some(begun));
    run.apply([compensated("charge", true), compensated("book[0]", false)]);
    let c = run.state.compensating.as_ref().unwrap();
    assert_eq!(
        (c.done.as_slice(), c.failed.as_slice()),
        (&["charge".to_string(), "book[0]".into()][..], &["book[0]".to_string()][..])
    );
    assert_eq!(run.state.outcome, None, "not over until the last one");
    run.apply([compensated("book[1]", true)]);
    run.apply([EventKind::RunCompensationFailed { error: error.clone(), failed: vec!["book[0]".into()] }]);
    assert_eq!(run.state.outcome, Some(Err(error)));
    let c = run.state.compensating.as_ref().unwrap();
    assert_eq!((c.done.len(), c.failed.len()), (3, 1));
}

#[test]
fn a_host_restarted_while_compensating_finds_what_was_done() {
    let plan = plan(SAGA);
    let error = RunError { class: FailureClass::Trap, step: "notify".into(), message: "x".into() };
    let events = journal(vec![
        run_started(&plan, json!({"hotels": ["h1"]})),
        EventKind::ForEachStarted { step: "book".into(), items: 1 },
        started("book[0]", 1, json!("h1")),
        completed("book[0]", 1, json!("b0")),
        EventKind::ForEachGathered { step: "book".into(), output: json!(["b0"]) },
        started("charge", 1, json!(["b0"])),
        completed("charge", 1, json!("c")),
        EventKind::CompensationBegun { error: error.clone() },
        compensated("charge", true),
    ]);
    let state = RunState::fold("r", &events).unwrap();
    assert_eq!(state.compensating, Some(Compensating { error, done: vec!["charge".into()], failed: vec![] }));
    assert_eq!(state.completed.len(), 2);
    assert_eq!(state.outcome, None);
}
